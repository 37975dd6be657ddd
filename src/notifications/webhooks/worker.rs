//! Delivering: each instance claims due deliveries in a short transaction
//! (`FOR UPDATE SKIP LOCKED`), leases them, sends them outside any transaction, several at
//! once, and records each outcome under its lease.
//!
//! - **Leases.** Claiming moves a delivery's `next_attempt_at` a lease ahead (twice the
//!   request timeout) and gives it a fresh `lease_token`; an outcome is recorded only with
//!   that token. So two instances never send one message at the same time, and a message
//!   whose instance died mid-attempt (SIGKILL, power loss) is sent again once the lease
//!   runs out: same `webhook-id`, same body.
//! - **Order.** A delivery waits while an earlier delivery of the same endpoint and the same
//!   registration (or session, or event, for changes that concern no registration) is
//!   pending: a receiver never learns of a cancellation before the registration itself.
//! - **Isolation.** Up to `REGISTRAR_WEBHOOK_CONCURRENCY` requests run at once, each bounded
//!   by its timeout, so an endpoint that hangs holds one slot for a while and delays no other.
//! - **Outcomes.** Recording an outcome does not wait for the disk
//!   (`db::commit_without_waiting_for_disk`): should the database crash within that moment,
//!   the outcome is lost and the message is sent again when its lease runs out — at least
//!   once, as always — while under load the deliveries do not queue their commits behind the
//!   registrations'.
//! - **Failures.** A failed attempt is tried again after `Backoff` (exponential, with
//!   jitter); a message still failing three days after its first attempt has failed for
//!   good. An answer 410 disables the endpoint at once; so does failing, with no success,
//!   for three days. Disabling fails the endpoint's pending messages; the reason is on the
//!   endpoint for its organisers to see, and they can send failed messages again once it is
//!   enabled.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::Uuid as SqlUuid;
use diesel::sql_types::{BigInt, Bytea, Double, Integer, Nullable, Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use tokio::sync::watch;
use tokio::task::JoinSet;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::sender::{Attempt, Sender};
use super::signing::{PREVIOUS_SECRET, SECRET};
use crate::db;
use crate::error::ApiError;
use crate::notifications::retry::Backoff;
use crate::runner::Pace;
use crate::state::AppState;

/// The longest a worker sleeps without looking for due deliveries (other instances' new
/// deliveries wake it at once through NOTIFY; this is the fallback).
const POLL: Duration = Duration::from_secs(2);

const CHANNEL: &str = "webhook";

/// A claimed delivery, with what sending it needs.
#[derive(QueryableByName)]
struct Claimed {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    endpoint_id: Uuid,
    #[diesel(sql_type = Text)]
    payload: String,
    #[diesel(sql_type = SqlUuid)]
    lease_token: Uuid,
    #[diesel(sql_type = Integer)]
    attempts: i32,
    #[diesel(sql_type = Timestamptz)]
    first_attempt_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    changed_at: DateTime<Utc>,
    #[diesel(sql_type = Text)]
    url: String,
    #[diesel(sql_type = Bytea)]
    secret_sealed: Vec<u8>,
    #[diesel(sql_type = Nullable<Bytea>)]
    previous_secret_sealed: Option<Vec<u8>>,
}

pub struct Worker {
    state: AppState,
    sender: Sender,
    backoff: Backoff,
    lease: Duration,
    concurrency: usize,
}

impl Worker {
    pub fn new(state: AppState) -> anyhow::Result<Self> {
        let config = &state.config;
        let timeout = Duration::from_millis(config.webhook_timeout_ms.max(1));
        let backoff = Backoff {
            first: Duration::from_millis(config.webhook_first_retry_ms),
            ..Backoff::DELIVERIES
        };
        Ok(Worker {
            sender: Sender::new(super::guard::Policy::from_config(config), timeout)?,
            backoff,
            // Longer than any attempt can take, recording its outcome included.
            lease: timeout * 2,
            concurrency: config.webhook_concurrency.max(1),
            state,
        })
    }

    /// Claims and sends deliveries until `stop`, each claim once the foreground lets it
    /// (`pace`); then lets the attempts under way finish.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>, pace: Pace) {
        let mut wake = self.state.signals.subscribe();
        let mut in_flight = JoinSet::new();
        loop {
            if *stop.borrow() {
                break;
            }
            let free = self.concurrency - in_flight.len();
            let mut pause = POLL;
            // Claims in batches: when half the slots are free (or all), not at every one, so
            // a busy queue costs one claim per several deliveries.
            if free > 0 && (in_flight.is_empty() || free * 2 >= self.concurrency) {
                tokio::select! {
                    _ = stop.changed() => break,
                    () = pace.give_way() => {}
                }
                match self.claim(free).await {
                    Ok((claimed, next_due)) => {
                        for delivery in claimed {
                            in_flight.spawn(self.clone().deliver(delivery));
                        }
                        if let Some(next_due) = next_due {
                            pause = pause.min(next_due);
                        }
                    }
                    Err(error) => {
                        tracing::warn!(
                            error = format!("{error:#}"),
                            "claiming webhook deliveries failed; will try again"
                        );
                    }
                }
            }
            tokio::select! {
                _ = stop.changed() => break,
                changed = wake.changed() => {
                    if changed.is_err() {
                        // No more wake-ups: poll.
                        wake = watch::channel(0).1;
                    }
                }
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
                () = tokio::time::sleep(pause) => {}
            }
        }
        while in_flight.join_next().await.is_some() {}
    }

    /// Leases up to `limit` due deliveries; also says how soon the next one falls due.
    async fn claim(&self, limit: usize) -> anyhow::Result<(Vec<Claimed>, Option<Duration>)> {
        let mut conn = self.state.db.get().await?;
        let claimed: Vec<Claimed> = diesel::sql_query(
            "WITH due AS ( \
                 SELECT d.id FROM webhook_deliveries d \
                 JOIN webhook_endpoints e ON e.id = d.endpoint_id \
                 WHERE d.status = 'pending' AND d.next_attempt_at <= now() AND e.enabled \
                   AND NOT EXISTS ( \
                       SELECT 1 FROM webhook_deliveries p \
                       WHERE p.endpoint_id = d.endpoint_id AND p.order_key = d.order_key \
                         AND p.status = 'pending' AND p.seq < d.seq) \
                 ORDER BY d.next_attempt_at, d.seq \
                 LIMIT $1 \
                 FOR UPDATE OF d SKIP LOCKED) \
             UPDATE webhook_deliveries d \
             SET lease_token = gen_random_uuid(), \
                 next_attempt_at = now() + $2 * interval '1 millisecond', \
                 attempts = d.attempts + 1, \
                 first_attempt_at = coalesce(d.first_attempt_at, now()), \
                 last_attempt_at = now() \
             FROM due, webhook_endpoints e \
             WHERE d.id = due.id AND e.id = d.endpoint_id \
             RETURNING d.id, d.endpoint_id, d.payload, d.lease_token, d.attempts, \
                       d.first_attempt_at, d.changed_at, e.url, e.secret_sealed, \
                       CASE WHEN e.previous_secret_expires_at > now() \
                            THEN e.previous_secret_sealed END AS previous_secret_sealed",
        )
        .bind::<BigInt, _>(limit as i64)
        .bind::<BigInt, _>(self.lease.as_millis() as i64)
        .load(&mut conn)
        .await?;
        if claimed.len() == limit {
            return Ok((claimed, None));
        }
        #[derive(QueryableByName)]
        struct NextDue {
            #[diesel(sql_type = Nullable<Double>)]
            seconds: Option<f64>,
        }
        let next: NextDue = diesel::sql_query(
            "SELECT extract(epoch FROM min(next_attempt_at) - now())::float8 AS seconds \
             FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at > now()",
        )
        .get_results(&mut conn)
        .await
        .and_then(crate::db::single)?;
        let next_due = next
            .seconds
            .map(|s| Duration::from_secs_f64(s.clamp(0.0, POLL.as_secs_f64())));
        Ok((claimed, next_due))
    }

    /// Sends one claimed delivery and records what came of it.
    async fn deliver(self: Arc<Self>, delivery: Claimed) {
        let attempt = match self.secrets(&delivery) {
            Ok(secrets) => {
                let secrets: Vec<&[u8]> = secrets.iter().map(|s| s.as_slice()).collect();
                self.sender
                    .send(
                        &delivery.url,
                        &delivery.id.to_string(),
                        &delivery.payload,
                        &secrets,
                    )
                    .await
            }
            Err(error) => {
                tracing::error!(endpoint = %delivery.endpoint_id, error = format!("{error:#}"), "webhook secret cannot be opened");
                Attempt {
                    status: None,
                    error: Some(
                        "the signing secret could not be read; see the service's log".into(),
                    ),
                    excerpt: None,
                    duration: Duration::ZERO,
                }
            }
        };
        if let Err(error) = self.record(&delivery, &attempt).await {
            // The lease runs out and the message is sent again.
            tracing::warn!(
                delivery = %delivery.id,
                error = format!("{error:#}"),
                "recording a webhook attempt failed"
            );
        }
    }

    fn secrets(&self, delivery: &Claimed) -> anyhow::Result<Vec<Zeroizing<Vec<u8>>>> {
        let ring = &self.state.sealing;
        let mut secrets =
            vec![ring.open(&SECRET.place(delivery.endpoint_id), &delivery.secret_sealed)?];
        if let Some(previous) = &delivery.previous_secret_sealed {
            secrets.push(ring.open(&PREVIOUS_SECRET.place(delivery.endpoint_id), previous)?);
        }
        Ok(secrets)
    }

    async fn record(&self, delivery: &Claimed, attempt: &Attempt) -> anyhow::Result<()> {
        let now = Utc::now();
        let metrics = &self.state.metrics;
        let outcome = if attempt.delivered() {
            Outcome::Delivered
        } else if attempt.gone() {
            Outcome::Gone
        } else {
            match self.backoff.next_attempt(
                delivery.attempts.max(1) as u32,
                delivery.first_attempt_at,
                now,
            ) {
                Some(at) => Outcome::Retry(at),
                None => Outcome::GiveUp,
            }
        };
        let mut conn = self.state.db.get().await?;
        let give_up_after = chrono::Duration::from_std(self.backoff.give_up_after)?;
        let recorded = conn
            .transaction::<_, ApiError, _>(async |conn| {
                db::commit_without_waiting_for_disk(conn).await?;
                record_outcome(conn, delivery, attempt, outcome, now, give_up_after).await
            })
            .await
            .map_err(|error| anyhow::anyhow!("{error}"))?;
        if !recorded {
            return Ok(());
        }
        match outcome {
            Outcome::Delivered => {
                metrics.delivery(CHANNEL, "delivered");
                let after = (now - delivery.changed_at).num_milliseconds().max(0) as f64 / 1000.0;
                metrics.delivered_after(CHANNEL, after);
            }
            Outcome::Retry(_) => metrics.delivery(CHANNEL, "retry"),
            Outcome::Gone | Outcome::GiveUp => metrics.delivery(CHANNEL, "failed"),
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
enum Outcome {
    Delivered,
    Retry(DateTime<Utc>),
    /// Failing for too long.
    GiveUp,
    /// The endpoint answered 410.
    Gone,
}

/// Records an attempt under its lease; false when the lease was lost (the endpoint was
/// deleted, or the attempt outlived its lease and the message was claimed again).
async fn record_outcome(
    conn: &mut AsyncPgConnection,
    delivery: &Claimed,
    attempt: &Attempt,
    outcome: Outcome,
    now: DateTime<Utc>,
    give_up_after: chrono::Duration,
) -> Result<bool, ApiError> {
    let (status, next_attempt_at) = match outcome {
        Outcome::Delivered => ("delivered", None),
        Outcome::Retry(at) => ("pending", Some(at)),
        Outcome::GiveUp | Outcome::Gone => ("failed", None),
    };
    let duration_ms = attempt.duration.as_millis().min(i32::MAX as u128) as i32;
    let status_code = attempt.status.map(i32::from);
    let updated = diesel::sql_query(
        "UPDATE webhook_deliveries SET status = $3, lease_token = NULL, \
             next_attempt_at = coalesce($4, next_attempt_at), \
             last_status_code = $5, last_error = $6, last_duration_ms = $7, \
             delivered_at = CASE WHEN $3 = 'delivered' THEN $8 END, \
             failed_at = CASE WHEN $3 = 'failed' THEN $8 END \
         WHERE id = $1 AND lease_token = $2",
    )
    .bind::<SqlUuid, _>(delivery.id)
    .bind::<SqlUuid, _>(delivery.lease_token)
    .bind::<Text, _>(status)
    .bind::<Nullable<Timestamptz>, _>(next_attempt_at)
    .bind::<Nullable<Integer>, _>(status_code)
    .bind::<Nullable<Text>, _>(attempt.error.as_deref())
    .bind::<Integer, _>(duration_ms)
    .bind::<Timestamptz, _>(now)
    .execute(conn)
    .await?;
    if updated == 0 {
        return Ok(false);
    }
    diesel::sql_query(
        "INSERT INTO webhook_attempts (delivery_id, attempted_at, duration_ms, status_code, \
                                       error, response_excerpt) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind::<SqlUuid, _>(delivery.id)
    .bind::<Timestamptz, _>(now - chrono::Duration::from_std(attempt.duration).unwrap_or_default())
    .bind::<Integer, _>(duration_ms)
    .bind::<Nullable<Integer>, _>(status_code)
    .bind::<Nullable<Text>, _>(attempt.error.as_deref())
    .bind::<Nullable<Text>, _>(attempt.excerpt.as_deref())
    .execute(conn)
    .await?;
    match outcome {
        Outcome::Delivered => {
            diesel::sql_query(
                "UPDATE webhook_endpoints SET failing_since = NULL \
                 WHERE id = $1 AND failing_since IS NOT NULL",
            )
            .bind::<SqlUuid, _>(delivery.endpoint_id)
            .execute(conn)
            .await?;
        }
        Outcome::Gone => {
            disable(
                conn,
                delivery.endpoint_id,
                "the endpoint answered 410 Gone",
                now,
            )
            .await?;
        }
        Outcome::Retry(_) | Outcome::GiveUp => {
            #[derive(QueryableByName)]
            struct Failing {
                #[diesel(sql_type = Timestamptz)]
                failing_since: DateTime<Utc>,
            }
            let failing: Option<Failing> = diesel::sql_query(
                "UPDATE webhook_endpoints SET failing_since = coalesce(failing_since, $2) \
                 WHERE id = $1 RETURNING failing_since",
            )
            .bind::<SqlUuid, _>(delivery.endpoint_id)
            .bind::<Timestamptz, _>(now)
            .get_results(conn)
            .await
            .and_then(crate::db::single)
            .optional()?;
            if let Some(failing) = failing
                && now - failing.failing_since >= give_up_after
            {
                let reason = format!(
                    "every delivery failed from {} on, for {} days",
                    failing.failing_since.format("%Y-%m-%d %H:%M UTC"),
                    give_up_after.num_days()
                );
                disable(conn, delivery.endpoint_id, &reason, now).await?;
            }
        }
    }
    Ok(true)
}

/// Disables an endpoint for `reason`, failing the messages still waiting for it.
pub async fn disable(
    conn: &mut AsyncPgConnection,
    endpoint_id: Uuid,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    diesel::sql_query(
        "UPDATE webhook_endpoints SET enabled = false, disabled_reason = $2, disabled_at = $3, \
                updated_at = $3 \
         WHERE id = $1 AND enabled",
    )
    .bind::<SqlUuid, _>(endpoint_id)
    .bind::<Text, _>(reason)
    .bind::<Timestamptz, _>(now)
    .execute(conn)
    .await?;
    diesel::sql_query(
        "UPDATE webhook_deliveries SET status = 'failed', failed_at = $2, lease_token = NULL, \
                last_error = coalesce(last_error || '; ', '') || 'the endpoint was disabled' \
         WHERE endpoint_id = $1 AND status = 'pending'",
    )
    .bind::<SqlUuid, _>(endpoint_id)
    .bind::<Timestamptz, _>(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Finished deliveries are kept this long, for organisers to look into, then removed.
const KEEP_FINISHED: &str = "30 days";

/// The queue's gauges (what waits, and for how long); removing old finished deliveries, and
/// secrets whose overlap after a rotation is over.
pub async fn housekeeping(state: &AppState) -> anyhow::Result<()> {
    #[derive(QueryableByName)]
    struct Queue {
        #[diesel(sql_type = BigInt)]
        depth: i64,
        #[diesel(sql_type = Nullable<Double>)]
        oldest_seconds: Option<f64>,
    }
    let mut conn = state.db.get().await?;
    let queue: Queue = diesel::sql_query(
        "SELECT count(*) AS depth, \
                extract(epoch FROM now() - min(changed_at))::float8 AS oldest_seconds \
         FROM webhook_deliveries WHERE status = 'pending'",
    )
    .get_results(&mut conn)
    .await
    .and_then(crate::db::single)?;
    state
        .metrics
        .queue(CHANNEL, queue.depth, queue.oldest_seconds.unwrap_or(0.0));
    diesel::sql_query(format!(
        "DELETE FROM webhook_deliveries WHERE id IN ( \
             SELECT id FROM webhook_deliveries \
             WHERE status <> 'pending' \
               AND coalesce(delivered_at, failed_at) < now() - interval '{KEEP_FINISHED}' \
             LIMIT 1000)"
    ))
    .execute(&mut conn)
    .await?;
    diesel::sql_query(
        "UPDATE webhook_endpoints \
         SET previous_secret_sealed = NULL, previous_secret_expires_at = NULL \
         WHERE previous_secret_expires_at <= now()",
    )
    .execute(&mut conn)
    .await?;
    Ok(())
}
