//! Anonymising registrations: what is overwritten, removed or kept, in the caller's
//! transaction.
//!
//! Kept: the registration row with its status, category, source, language, dates, session
//! places, seats, waitlist order, check-ins and the change log (which holds no personal data:
//! kinds, field names, ids). So every count, statistic and check-in figure stays as it was.
//!
//! Overwritten: the name (`—`), the address (`erased-<id>@erased.invalid`, unique like the
//! address it replaces), organisation, position, city and phone (null), and the manage token
//! (its digest becomes one of a token nobody holds; the nonce it was derived from is
//! removed). Removed or emptied: idempotency records, queued mail (dropped: mail is rendered
//! when sent, from the registration as it is then, so nothing queued names the person), the
//! registration in the bodies of webhook messages (`data.registration` becomes null) and
//! what receivers answered to them, open badge print jobs, and the rate-limit entry kept
//! for the digest of the address.

use diesel::prelude::*;
use diesel::sql_types::{Array, Nullable, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::changes::Actor;
use crate::error::ApiResult;

/// The name an anonymised registration shows.
pub const ERASED_NAME: &str = "—";

crate::text_enum! {
    /// Why personal data was erased, as the history records it.
    pub enum Reason {
        /// The participant asked for it (with the manage token).
        ParticipantRequest => "participant_request",
        /// An organiser erased the registration.
        OrganiserRequest => "organiser_request",
        /// An organiser erased the whole event's personal data before its retention ended.
        EventErasure => "event_erasure",
        /// The event's retention period ended.
        Retention => "retention",
    }
}

/// Rows changed or removed, per table.
#[derive(Debug, Default, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct TableCounts {
    /// Registrations anonymised.
    pub registrations: i64,
    /// History entries added (one `erased` per registration).
    pub changes: i64,
    /// Idempotency records removed.
    pub idempotency_keys: i64,
    /// Queued mails dropped.
    pub email_messages: i64,
    /// Webhook messages whose copy of the registration was removed.
    pub webhook_deliveries: i64,
    /// Receivers' answers to those messages removed.
    pub webhook_attempts: i64,
    /// Open badge print jobs cancelled.
    pub print_jobs: i64,
    /// Rate-limit entries of the addresses removed.
    pub rate_limits: i64,
}

/// What an erasure changed (or, in a dry run, would change).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErasureReport {
    /// Nothing was stored: this is what the erasure would do now.
    pub dry_run: bool,
    /// The registrations anonymised (already anonymised ones are left out).
    pub registration_ids: Vec<Uuid>,
    pub tables: TableCounts,
}

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
}

/// Anonymises the registrations `ids` that are not anonymised yet, and records one
/// `registration.erased` change for each. Run it inside a transaction: it locks the rows.
pub async fn erase(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
    actor: Actor,
    reason: Reason,
) -> ApiResult<ErasureReport> {
    let ids: Vec<Uuid> = diesel::sql_query(
        "SELECT id FROM registrations WHERE id = ANY($1) AND erased_at IS NULL \
         ORDER BY id FOR UPDATE",
    )
    .bind::<Array<SqlUuid>, _>(ids)
    .load::<Id>(conn)
    .await?
    .into_iter()
    .map(|row| row.id)
    .collect();
    let mut tables = TableCounts::default();
    if ids.is_empty() {
        return Ok(ErasureReport {
            dry_run: false,
            registration_ids: ids,
            tables,
        });
    }
    // A round of the webhooks' fan-out holds its cursor while it reads registrations and
    // stores the messages it makes of them: waiting for it here means the messages of a
    // round that read these registrations before they change are stored, and scrubbed
    // below, and later rounds read them anonymised.
    diesel::sql_query("SELECT name FROM change_consumers WHERE name = 'webhooks' FOR UPDATE")
        .execute(conn)
        .await?;
    let run = async |conn: &mut AsyncPgConnection, sql: &str| -> ApiResult<i64> {
        let rows = diesel::sql_query(sql)
            .bind::<Array<SqlUuid>, _>(&ids)
            .execute(conn)
            .await?;
        Ok(rows as i64)
    };
    // Before the address is overwritten: the limit on mailing links again is kept per digest
    // of the address (see `ratelimit`).
    tables.rate_limits = run(
        conn,
        "DELETE FROM rate_limits WHERE bucket = 'resend-address' AND client IN ( \
             SELECT encode(sha256(convert_to(r.email_normalized, 'UTF8')), 'hex') \
             FROM registrations r WHERE r.id = ANY($1))",
    )
    .await?;
    tables.idempotency_keys = run(
        conn,
        "DELETE FROM idempotency_keys WHERE registration_id = ANY($1)",
    )
    .await?;
    tables.email_messages = run(
        conn,
        "UPDATE email_messages SET status = 'dropped', leased_until = NULL, \
                last_error = 'the personal data was erased' \
         WHERE registration_id = ANY($1) AND status = 'queued'",
    )
    .await?;
    tables.webhook_attempts = run(
        conn,
        "UPDATE webhook_attempts SET response_excerpt = NULL \
         WHERE response_excerpt IS NOT NULL AND delivery_id IN ( \
             SELECT d.id FROM webhook_deliveries d WHERE d.registration_id = ANY($1))",
    )
    .await?;
    tables.webhook_deliveries = run(
        conn,
        "UPDATE webhook_deliveries \
         SET payload = jsonb_set(payload::jsonb, '{data,registration}', 'null')::text \
         WHERE registration_id = ANY($1) \
           AND payload::jsonb #> '{data,registration}' IS DISTINCT FROM 'null'::jsonb",
    )
    .await?;
    tables.print_jobs = run(
        conn,
        "UPDATE print_jobs SET status = 'cancelled', lease_expires_at = NULL \
         WHERE registration_id = ANY($1) AND status IN ('queued', 'claimed')",
    )
    .await?;
    let anonymise = format!(
        "UPDATE registrations SET \
             full_name = '{ERASED_NAME}', \
             email = 'erased-' || id || '@erased.invalid', \
             email_normalized = 'erased-' || id || '@erased.invalid', \
             organisation = NULL, position = NULL, city = NULL, phone = NULL, \
             manage_token_hash = sha256(convert_to('erased ' || id || ' ' || gen_random_uuid(), 'UTF8')), \
             token_nonce = NULL, erased_at = now(), updated_at = now() \
         WHERE id = ANY($1)"
    );
    tables.registrations = run(conn, &anonymise).await?;
    tables.changes = diesel::sql_query(
        "INSERT INTO changes (event_id, registration_id, kind, actor, actor_id, details) \
         SELECT r.event_id, r.id, 'registration.erased', $2, $3, jsonb_build_object('reason', $4::text) \
         FROM registrations r WHERE r.id = ANY($1) ORDER BY r.id",
    )
    .bind::<Array<SqlUuid>, _>(&ids)
    .bind::<Text, _>(actor.kind.as_str())
    .bind::<Nullable<SqlUuid>, _>(actor.id)
    .bind::<Text, _>(reason.as_str())
    .execute(conn)
    .await? as i64;
    Ok(ErasureReport {
        dry_run: false,
        registration_ids: ids,
        tables,
    })
}
