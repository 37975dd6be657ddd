//! The mail queue (`email_messages`): what the change log's `email` consumer and the
//! reminder round put in it, how delivery leases and settles its mails, and its figures.
//!
//! A row says which registration is to be told what (its kind, the change and session it is
//! about) and how its delivery goes; nothing a participant wrote and no token is in it, so
//! data changed or erased later never comes back through it. One registration's mails go
//! out in the order they were queued: only the first of its queued mails can be leased.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Double, Integer, Nullable, Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::changes;
use crate::error::ApiError;
use crate::notifications::retry::Backoff;
use crate::state::AppState;

/// The change log's consumer that queues mail.
pub const CONSUMER: &str = "email";
/// Changes read per transaction.
const BATCH: i64 = 500;
/// Mails leased per delivery round.
pub const LEASED: i64 = 20;
/// How long a leased mail is left to its instance before another may send it (an instance
/// that died mid-delivery leaves it leased).
pub const LEASE: Duration = Duration::from_secs(300);
/// Finished mails are kept this long, then deleted.
const KEPT_DAYS: i32 = 90;

crate::text_enum! {
    /// What a mail tells the participant.
    pub enum MailKind {
        Registered => "registered",
        /// Registered, but waiting for a seat in every session asked for.
        Waitlisted => "waitlisted",
        Promoted => "promoted",
        Cancelled => "cancelled",
        SessionChanged => "session_changed",
        SessionCancelled => "session_cancelled",
        Reminder => "reminder",
        ConfirmAddress => "confirm_address",
        ManageLink => "manage_link",
    }
}

impl MailKind {
    /// Mails that carry the badge's QR code.
    pub fn carries_badge(self) -> bool {
        matches!(
            self,
            MailKind::Registered | MailKind::Promoted | MailKind::Reminder
        )
    }
}

/// What one consumer round did.
pub struct Consumed {
    /// Mails queued.
    pub queued: usize,
    /// More changes may be waiting.
    pub more: bool,
}

/// Queues the mails the next changes of the log call for, and moves the consumer's cursor
/// past them, in one transaction.
pub async fn consume(state: &AppState) -> anyhow::Result<Consumed> {
    let mut conn = state.db.get().await?;
    let consumed = conn
        .transaction::<_, ApiError, _>(async |conn| {
            let Some(batch) = changes::next_batch(conn, CONSUMER, BATCH).await? else {
                return Ok(Consumed {
                    queued: 0,
                    more: false,
                });
            };
            if batch.changes.is_empty() {
                return Ok(Consumed {
                    queued: 0,
                    more: false,
                });
            }
            let ids: Vec<i64> = batch.changes.iter().map(|c| c.id).collect();
            let queued = queue_for(conn, &ids).await?;
            changes::advance(conn, CONSUMER, batch.end).await?;
            Ok(Consumed {
                queued,
                more: ids.len() as i64 == BATCH,
            })
        })
        .await
        .map_err(super::background)?;
    Ok(consumed)
}

/// The statement behind `queue_for` (`$1`: the changes' ids). The batch's changes are found
/// by their ids alone. A change of another kind gets no mail kind and is left out by
/// `m.kind IS NOT NULL`; saying `c.registration_id IS NOT NULL` as well let the planner, with
/// statistics from before a burst of registrations (when the log held none), walk every
/// registration's changes to find the batch's few: 12 ms a batch on a log of 30,000, growing.
/// What a new registration's transaction did to its sessions is read from that transaction's
/// changes of the registration through its index, one registration at a time: as `EXISTS`,
/// the planner could instead read every waitlisted (and every confirmed) change of the log
/// into a hash for a batch of many registrations (150–200 ms a batch during a burst).
pub const QUEUE_MAILS: &str = "INSERT INTO email_messages (registration_id, event_id, kind, change_id, session_id, changed_at) \
     SELECT m.registration_id, m.event_id, m.kind, m.change_id, m.session_id, m.changed_at \
     FROM ( \
         SELECT c.xid, c.id AS change_id, c.registration_id, c.event_id, c.session_id, \
                c.created_at AS changed_at, \
                CASE \
                  WHEN c.kind = 'registration.created' AND c.details ? 'email_confirmation' \
                    THEN 'confirm_address' \
                  WHEN c.kind = 'registration.created' THEN \
                    CASE WHEN t.waited AND NOT t.seated THEN 'waitlisted' ELSE 'registered' END \
                  WHEN c.kind = 'registration.promoted' THEN 'promoted' \
                  WHEN c.kind = 'registration.cancelled' THEN 'cancelled' \
                  WHEN c.kind = 'registration.changed' AND c.details -> 'fields' ? 'manage_token' \
                    THEN 'manage_link' \
                  WHEN c.kind = 'registration.changed' AND c.details -> 'fields' ? 'email_confirmed' THEN \
                    CASE WHEN EXISTS (SELECT 1 FROM registration_sessions rs \
                                      WHERE rs.registration_id = c.registration_id AND rs.status = 'waitlisted') \
                          AND NOT EXISTS (SELECT 1 FROM registration_sessions rs \
                                      WHERE rs.registration_id = c.registration_id AND rs.status = 'confirmed') \
                         THEN 'waitlisted' ELSE 'registered' END \
                END AS kind \
         FROM changes c \
         LEFT JOIN LATERAL ( \
             SELECT coalesce(bool_or(w.kind = 'registration.waitlisted'), false) AS waited, \
                    coalesce(bool_or(w.kind = 'registration.confirmed'), false) AS seated \
             FROM changes w \
             WHERE c.kind = 'registration.created' AND w.registration_id = c.registration_id \
               AND w.xid = c.xid) t ON true \
         WHERE c.id = ANY($1) \
         UNION ALL \
         SELECT c.xid, c.id, rs.registration_id, c.event_id, c.session_id, c.created_at, \
                CASE c.kind WHEN 'session.changed' THEN 'session_changed' \
                            ELSE 'session_cancelled' END \
         FROM changes c \
         JOIN registration_sessions rs ON rs.session_id = c.session_id \
                                      AND rs.status IN ('confirmed', 'waitlisted') \
         JOIN registrations r ON r.id = rs.registration_id AND r.status = 'active' \
         WHERE c.id = ANY($1) \
           AND (c.kind = 'session.cancelled' \
                OR (c.kind = 'session.changed' \
                    AND c.details -> 'fields' ?| ARRAY['starts_at', 'ends_at', 'venue_id'])) \
     ) m \
     WHERE m.kind IS NOT NULL \
       AND NOT EXISTS (SELECT 1 FROM registrations e \
                       WHERE e.id = m.registration_id AND e.erased_at IS NOT NULL) \
     ORDER BY m.xid, m.change_id, m.registration_id";

/// Queues the mails that the changes `ids` call for, in the order of the log.
///
/// - `registration.created`: the link to confirm the address when the event asks for it;
///   otherwise `waitlisted` when every session asked for was (the changes of the same
///   transaction say so), else `registered`.
/// - `registration.promoted`, `registration.cancelled`: `promoted`, `cancelled`.
/// - `registration.changed` of `manage_token` (a new link was asked for): `manage_link`; of
///   `email_confirmed`: `registered` (or `waitlisted`), as the registration is then.
/// - `session.changed` of its time or venue, `session.cancelled`: to every active
///   registration holding a place (confirmed or waitlisted) in the session.
///
/// Nothing is queued for a registration whose personal data was erased.
async fn queue_for(conn: &mut AsyncPgConnection, ids: &[i64]) -> Result<usize, ApiError> {
    Ok(diesel::sql_query(QUEUE_MAILS)
        .bind::<Array<BigInt>, _>(ids)
        .execute(conn)
        .await?)
}

/// Queues the reminders that are due: once per registration, `reminder_hours` (the event's,
/// else `REGISTRAR_EMAIL_REMINDER_HOURS`) before the participant's first confirmed session
/// (for a registration without sessions, before the event's first day begins), for active
/// registrations whose address is confirmed and that were made before the reminder's time.
pub async fn remind(state: &AppState) -> anyhow::Result<usize> {
    let mut conn = state.db.get().await?;
    let default_hours = i32::try_from(state.config.email_reminder_hours.min(720))?;
    Ok(diesel::sql_query(
        "INSERT INTO email_messages (registration_id, event_id, kind) \
         SELECT r.id, r.event_id, 'reminder' \
         FROM events e \
         CROSS JOIN LATERAL (SELECT make_interval(hours => coalesce(e.reminder_hours, $1)) AS lead) l \
         JOIN registrations r ON r.event_id = e.id AND r.status = 'active' AND r.confirm_by IS NULL \
                             AND r.erased_at IS NULL \
         CROSS JOIN LATERAL ( \
             SELECT coalesce( \
                 (SELECT min(s.starts_at) FROM registration_sessions rs \
                  JOIN sessions s ON s.id = rs.session_id \
                  WHERE rs.registration_id = r.id AND rs.status = 'confirmed' \
                    AND s.status = 'published'), \
                 CASE WHEN NOT EXISTS (SELECT 1 FROM registration_sessions rs \
                                       WHERE rs.registration_id = r.id AND rs.status <> 'cancelled') \
                      THEN e.starts_on::timestamp AT TIME ZONE e.time_zone END) AS starts_at \
         ) f \
         WHERE e.status = 'published' AND coalesce(e.reminder_hours, $1) > 0 \
           AND e.starts_on <= current_date + coalesce(e.reminder_hours, $1) / 24 + 2 \
           AND e.ends_on >= current_date - 1 \
           AND f.starts_at > now() AND f.starts_at - l.lead <= now() \
           AND r.created_at < f.starts_at - l.lead \
         ON CONFLICT (registration_id) WHERE kind = 'reminder' DO NOTHING",
    )
    .bind::<Integer, _>(default_hours)
    .execute(&mut conn)
    .await?)
}

#[derive(QueryableByName)]
struct Figures {
    #[diesel(sql_type = BigInt)]
    depth: i64,
    #[diesel(sql_type = Nullable<Double>)]
    oldest: Option<f64>,
}

/// Updates the queue's figures (mails not sent yet, the oldest one's age) and deletes
/// finished mails older than 90 days.
pub async fn observe(state: &AppState) -> anyhow::Result<()> {
    let mut conn = state.db.get().await?;
    let figures: Figures = diesel::sql_query(
        "SELECT count(*) AS depth, extract(epoch FROM now() - min(changed_at))::float8 AS oldest \
         FROM email_messages WHERE status = 'queued'",
    )
    .get_results(&mut conn)
    .await
    .and_then(crate::db::single)?;
    state
        .metrics
        .queue("email", figures.depth, figures.oldest.unwrap_or(0.0));
    diesel::sql_query(
        "DELETE FROM email_messages \
         WHERE status <> 'queued' AND created_at < now() - make_interval(days => $1)",
    )
    .bind::<Integer, _>(KEPT_DAYS)
    .execute(&mut conn)
    .await?;
    Ok(())
}

/// A mail leased for sending.
#[derive(Debug, Clone, QueryableByName)]
pub struct Leased {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    pub registration_id: Uuid,
    #[diesel(sql_type = Text)]
    pub kind: MailKind,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub change_id: Option<i64>,
    #[diesel(sql_type = Nullable<diesel::sql_types::Uuid>)]
    pub session_id: Option<Uuid>,
    /// Attempts so far, this one included.
    #[diesel(sql_type = Integer)]
    pub attempts: i32,
    #[diesel(sql_type = Timestamptz)]
    pub first_attempt_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    pub changed_at: DateTime<Utc>,
}

/// Leases up to `limit` due mails, each the first queued of its registration, for `LEASE`.
/// Rows another instance is leasing at this moment are skipped, never waited for.
pub async fn lease(conn: &mut AsyncPgConnection, limit: i64) -> anyhow::Result<Vec<Leased>> {
    Ok(diesel::sql_query(
        "WITH due AS ( \
             SELECT m.id FROM email_messages m \
             WHERE m.status = 'queued' AND m.next_attempt_at <= now() \
               AND (m.leased_until IS NULL OR m.leased_until < now()) \
               AND NOT EXISTS (SELECT 1 FROM email_messages e \
                               WHERE e.registration_id = m.registration_id \
                                 AND e.status = 'queued' AND e.id < m.id) \
             ORDER BY m.next_attempt_at, m.id \
             LIMIT $1 \
             FOR UPDATE SKIP LOCKED) \
         UPDATE email_messages m \
         SET leased_until = now() + make_interval(secs => $2), attempts = m.attempts + 1, \
             first_attempt_at = coalesce(m.first_attempt_at, now()) \
         FROM due WHERE m.id = due.id \
         RETURNING m.id, m.registration_id, m.kind, m.change_id, m.session_id, \
                   m.attempts, m.first_attempt_at, m.changed_at",
    )
    .bind::<BigInt, _>(limit)
    .bind::<Double, _>(LEASE.as_secs_f64())
    .load(conn)
    .await?)
}

/// How an attempt ended.
#[derive(Debug)]
pub enum Settled {
    Sent,
    /// Not worth sending any more (the registration was cancelled since, the reminder's
    /// session has begun, ...).
    Dropped(&'static str),
    /// Failed for now: tried again later, until `Backoff::DELIVERIES` gives up.
    Retry(String),
    /// Failed for good (the server refused the address for good).
    Failed(String),
}

/// The most of a reason kept.
const MAX_REASON: usize = 300;

fn short(reason: &str) -> String {
    reason.chars().take(MAX_REASON).collect()
}

/// Records how an attempt ended, and counts it.
pub async fn settle(
    state: &AppState,
    conn: &mut AsyncPgConnection,
    mail: &Leased,
    settled: Settled,
) -> anyhow::Result<()> {
    let now = Utc::now();
    let (status, next, reason, outcome) = match &settled {
        Settled::Sent => ("sent", None, None, "sent"),
        Settled::Dropped(reason) => ("dropped", None, Some(reason.to_string()), "dropped"),
        Settled::Failed(reason) => ("failed", None, Some(short(reason)), "failed"),
        Settled::Retry(reason) => {
            let failures = u32::try_from(mail.attempts).unwrap_or(1).max(1);
            match Backoff::DELIVERIES.next_attempt(failures, mail.first_attempt_at, now) {
                Some(next) => ("queued", Some(next), Some(short(reason)), "retry"),
                None => ("failed", None, Some(short(reason)), "failed"),
            }
        }
    };
    diesel::sql_query(
        "UPDATE email_messages \
         SET status = $2, next_attempt_at = coalesce($3, next_attempt_at), leased_until = NULL, \
             last_error = $4, sent_at = CASE WHEN $2 = 'sent' THEN now() END \
         WHERE id = $1",
    )
    .bind::<BigInt, _>(mail.id)
    .bind::<Text, _>(status)
    .bind::<Nullable<Timestamptz>, _>(next)
    .bind::<Nullable<Text>, _>(reason)
    .execute(conn)
    .await?;
    state.metrics.delivery("email", outcome);
    if matches!(settled, Settled::Sent) {
        let seconds = (now - mail.changed_at).num_milliseconds().max(0) as f64 / 1000.0;
        state.metrics.delivered_after("email", seconds);
    }
    Ok(())
}
