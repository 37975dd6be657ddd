//! Anonymising registrations: what is overwritten, removed or kept, in the caller's
//! transaction.
//!
//! Kept: the registration row with its status, category, source, language, dates, session
//! places, seats (of categories and choice options too), waitlist order, check-ins, the
//! answers that are not personal, the consents accepted and the change log (which holds no
//! personal data: kinds, field names, ids). So every count, statistic, per-question count
//! of a non-personal question and check-in figure stays as it was. The consents accepted
//! (`registration_consents`: key, version, when) say nothing about the person and stay as
//! the organiser's proof of what was agreed to.
//!
//! Overwritten: the name (`—`), the address (`erased-<id>@erased.invalid`, unique like the
//! address it replaces), organisation, position, city and phone (null), and the manage token
//! (its digest becomes one of a token nobody holds; the nonce it was derived from is
//! removed). Removed from the answers: those to questions marked `personal`, those to
//! questions of type `email` or `phone` whatever their mark (contacts are personal data by
//! what they are), and answers to questions the form no longer has (nothing says they are
//! not personal). History entries that copy answers (`details.answers`) lose those same
//! answers' values, defensively: the entries written when answers change keep only the key
//! of a personal answer already. Rows of the event's spreadsheet imports about the person
//! (the row that registered them, rows found to be them again, any row with their address)
//! lose the details and answers read and their problems' messages, which may quote a cell;
//! the event's erasure and its retention do that to every row of its imports
//! ([`erase_import_rows`]), those that registered nobody included. Removed or emptied: idempotency
//! records, queued mail (dropped: mail is rendered when sent, from the registration as it is
//! then, so nothing queued names the person), the registration in the bodies of webhook
//! messages (`data.registration` becomes null) and what receivers answered to them, open
//! badge print jobs, and the rate-limit entry kept for the digest of the address.

use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Nullable, Text, Uuid as SqlUuid};
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
    /// Answers removed: to personal questions, and to email and phone questions.
    pub answers: i64,
    /// History entries, and webhook messages copying them, whose copies of those answers
    /// were removed.
    pub history_answers: i64,
    /// Rows of spreadsheet imports whose details of people were removed.
    pub import_rows: i64,
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

/// Whether the answer to the question `key` of the event of the registration aliased `r` is
/// personal data (SQL): a question marked personal, a contact (email, phone), or a question
/// the form no longer has.
const PERSONAL_ANSWER: &str = "NOT EXISTS (SELECT 1 FROM form_questions q \
     WHERE q.event_id = r.event_id AND q.key = {key} \
       AND NOT q.personal AND q.type NOT IN ('email', 'phone'))";

fn personal_answer(key: &str) -> String {
    PERSONAL_ANSWER.replace("{key}", key)
}

/// The assignments (SQL, for `UPDATE import_rows ir`) that remove what an import read of a
/// person: the details and answers of the row, which get the erased name and the address
/// `address` (an SQL expression), and the messages of its problems, which may quote a cell.
/// A row keeps its number, verdict, outcome and the columns and fields of its problems.
fn scrub_import_row(address: &str) -> String {
    format!(
        "fields = CASE WHEN ir.fields ? 'answers' \
                       THEN jsonb_set(ir.fields, '{{answers}}', '{{}}') ELSE ir.fields END \
                  || jsonb_build_object('full_name', '{ERASED_NAME}', 'email', {address}, \
                         'organisation', NULL, 'position', NULL, 'city', NULL, 'phone', NULL), \
         email_normalized = {address}, \
         problems = coalesce(( \
             SELECT jsonb_agg(p || jsonb_build_object('message', '{ERASED_PROBLEM}') \
                              ORDER BY n) \
             FROM jsonb_array_elements(ir.problems) WITH ORDINALITY AS e(p, n)), '[]')"
    )
}

/// What a problem of an erased import row says instead of its message.
pub const ERASED_PROBLEM: &str = "erased with the personal data";

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
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
    // Rows of the event's imports that are about the person: the row that registered them,
    // rows found to be them again, and any other row with their address (an invalid one,
    // say). Matched before the address is overwritten below.
    tables.import_rows = run(
        conn,
        &format!(
            "UPDATE import_rows ir SET {scrub} \
             FROM imports i, registrations r \
             WHERE r.id = ANY($1) AND i.event_id = r.event_id AND ir.import_id = i.id \
               AND (ir.registration_id = r.id OR ir.duplicate_of_registration = r.id \
                    OR ir.email_normalized = r.email_normalized)",
            scrub = scrub_import_row("'erased-' || r.id || '@erased.invalid'"),
        ),
    )
    .await?;
    // Entries that copy answers: `{"answers": {key: …}}` or `{"answers": [{"key": …, …}]}`;
    // a personal answer keeps its key, and loses what was copied of it.
    tables.history_answers = run(
        conn,
        &format!(
            "UPDATE changes c SET details = jsonb_set(c.details, '{{answers}}', \
                 CASE jsonb_typeof(c.details -> 'answers') \
                 WHEN 'object' THEN ( \
                     SELECT jsonb_object_agg(e.key, CASE WHEN {by_key} THEN 'null'::jsonb \
                                                         ELSE e.value END) \
                     FROM jsonb_each(c.details -> 'answers') e) \
                 ELSE ( \
                     SELECT jsonb_agg(CASE WHEN jsonb_typeof(e.value) = 'object' \
                                            AND e.value ? 'key' AND {by_element} \
                                           THEN jsonb_build_object('key', e.value -> 'key') \
                                           ELSE e.value END ORDER BY e.n) \
                     FROM jsonb_array_elements(c.details -> 'answers') WITH ORDINALITY e(value, n)) \
                 END) \
             FROM registrations r \
             WHERE r.id = c.registration_id AND c.registration_id = ANY($1) \
               AND jsonb_typeof(c.details -> 'answers') IN ('object', 'array') \
               AND c.details -> 'answers' <> '{{}}'::jsonb \
               AND c.details -> 'answers' <> '[]'::jsonb \
               AND EXISTS ( \
                   SELECT 1 FROM jsonb_each(CASE jsonb_typeof(c.details -> 'answers') \
                                            WHEN 'object' THEN c.details -> 'answers' END) e \
                   WHERE {by_key} AND e.value <> 'null'::jsonb \
                   UNION ALL \
                   SELECT 1 FROM jsonb_array_elements(CASE jsonb_typeof(c.details -> 'answers') \
                                                      WHEN 'array' THEN c.details -> 'answers' END) e(value) \
                   WHERE jsonb_typeof(e.value) = 'object' AND e.value ? 'key' AND {by_element} \
                     AND e.value <> jsonb_build_object('key', e.value -> 'key'))",
            by_key = personal_answer("e.key"),
            by_element = personal_answer("e.value ->> 'key'"),
        ),
    )
    .await?;
    // Webhook messages carry their change's details: they get the scrubbed ones.
    tables.history_answers += run(
        conn,
        "UPDATE webhook_deliveries d \
         SET payload = jsonb_set(d.payload::jsonb, '{data,details}', c.details)::text \
         FROM changes c \
         WHERE d.registration_id = ANY($1) AND c.registration_id = d.registration_id \
           AND c.details ? 'answers' \
           AND c.id::text = d.payload::jsonb #>> '{data,change_id}' \
           AND d.payload::jsonb #> '{data,details}' IS DISTINCT FROM c.details",
    )
    .await?;
    // The answers that are personal data go; the others stay for the statistics.
    tables.answers = diesel::sql_query(format!(
        "WITH personal AS ( \
             SELECT r.id, array_agg(k.key) AS keys \
             FROM registrations r, jsonb_object_keys(r.answers) AS k(key) \
             WHERE r.id = ANY($1) AND jsonb_typeof(r.answers) = 'object' AND {personal} \
             GROUP BY r.id), \
         removed AS ( \
             UPDATE registrations r SET answers = r.answers - p.keys \
             FROM personal p WHERE r.id = p.id RETURNING r.id) \
         SELECT coalesce(sum(cardinality(p.keys)), 0)::bigint AS n FROM personal p",
        personal = personal_answer("k.key"),
    ))
    .bind::<Array<SqlUuid>, _>(&ids)
    .get_results::<Count>(conn)
    .await
    .and_then(crate::db::single)?
    .n;
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

/// Removes what the imports of the events `event_ids` read of people, from every row that
/// still holds it: rows of registrations erased before are done already, and this reaches
/// the rows that registered nobody (invalid, failed, or duplicates of another row). For the
/// event's erasure and its retention, after its registrations are erased. A dry run not
/// committed yet can no longer be (it expires now); an import being committed is left for
/// the retention job, which finds the imports not done yet.
pub async fn erase_import_rows(conn: &mut AsyncPgConnection, event_ids: &[Uuid]) -> ApiResult<i64> {
    let done: Vec<Id> = diesel::sql_query(
        "UPDATE imports SET personal_data_erased_at = now(), \
                expires_at = CASE WHEN status = 'dry_run' THEN least(expires_at, now()) \
                                  ELSE expires_at END \
         WHERE event_id = ANY($1) AND personal_data_erased_at IS NULL \
           AND status <> 'committing' \
         RETURNING id",
    )
    .bind::<Array<SqlUuid>, _>(event_ids)
    .load(conn)
    .await?;
    if done.is_empty() {
        return Ok(0);
    }
    let imports: Vec<Uuid> = done.into_iter().map(|row| row.id).collect();
    let rows = diesel::sql_query(format!(
        "UPDATE import_rows ir SET {scrub} \
         WHERE ir.import_id = ANY($1) \
           AND ir.fields ->> 'full_name' IS DISTINCT FROM '{ERASED_NAME}'",
        scrub = scrub_import_row(
            "'erased-' || ir.import_id || '-' || ir.row_number || '@erased.invalid'"
        ),
    ))
    .bind::<Array<SqlUuid>, _>(&imports)
    .execute(conn)
    .await?;
    Ok(rows as i64)
}
