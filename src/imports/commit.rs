//! Committing imports in the background: the rows of every import being committed are
//! registered in file order, a batch per transaction. Each row is registered in a savepoint
//! of that transaction and its outcome written beside it, so a batch either commits with
//! its registrations and their outcomes or not at all: after a crash the next round starts
//! at the first row without an outcome, and no row is registered twice.
//!
//! An import is worked by one worker at a time (of any instance): each batch takes the
//! import's advisory lock for its transaction, and skips the import when another holds it.

use std::collections::HashSet;
use std::time::Duration;

use actix_web::http::StatusCode;
use chrono::Utc;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Integer, Jsonb, Nullable, Text, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::json;
use uuid::Uuid;

use super::RowError;
use super::answers::Questions;
use super::rows::Fields;
use crate::auth::tokens;
use crate::changes::Actor;
use crate::db::schema::{events, registrations, sessions};
use crate::error::{ApiError, ApiResult};
use crate::events::Event;
use crate::forms::Form;
use crate::programme::Session;
use crate::registrations::{self as booking, Applicant, Mode, NewRegistration};
use crate::runner::Runner;
use crate::state::AppState;

/// Rows registered per transaction.
const BATCH: i64 = 25;
/// How often imports waiting to be committed are looked for without being woken.
const EVERY: Duration = Duration::from_secs(5);
/// Imports worked at once by one instance.
const PARALLEL: i64 = 4;
/// The first key of imports' advisory locks (two-key form: apart from the one-key locks of
/// events, sessions and idempotency keys).
const LOCK_SPACE: i32 = 0x494d_5054; // "IMPT"

pub fn start(runner: &mut Runner, state: &AppState) {
    let wake = state.signals.subscribe();
    let state = state.clone();
    runner.repeat("imports", EVERY, Some(wake), move || {
        let state = state.clone();
        async move { run_once(&state).await }
    });
}

/// Works a batch of each import being committed; true when there may be more to do.
pub async fn run_once(state: &AppState) -> anyhow::Result<bool> {
    let ids: Vec<Uuid> = {
        let mut conn = state.db.get().await?;
        // Housekeeping: dry runs nobody committed are of no use a week after they expired.
        diesel::sql_query(
            "DELETE FROM imports WHERE status = 'dry_run' AND expires_at < now() - interval '7 days'",
        )
        .execute(&mut conn)
        .await?;
        crate::db::schema::imports::table
            .filter(crate::db::schema::imports::status.eq("committing"))
            .order(crate::db::schema::imports::commit_requested_at)
            .select(crate::db::schema::imports::id)
            .limit(PARALLEL)
            .load(&mut conn)
            .await?
    };
    let rounds = ids.into_iter().map(|id| async move {
        let mut conn = state.db.get().await?;
        match commit_batch(&mut conn, state, id).await {
            Ok(worked) => Ok(worked),
            // Lost a race (a deadlock with another registration): the batch is undone and
            // tried again at once.
            Err(error) if error.is_retryable() => Ok(true),
            Err(error) => Err(anyhow::anyhow!("import {id}: {error}")),
        }
    });
    let results: Vec<anyhow::Result<bool>> = futures_util::future::join_all(rounds).await;
    let mut more = false;
    for result in results {
        more |= result?;
    }
    Ok(more)
}

#[derive(QueryableByName)]
struct PendingRow {
    #[diesel(sql_type = Integer)]
    row_number: i32,
    #[diesel(sql_type = Jsonb)]
    fields: serde_json::Value,
    #[diesel(sql_type = Text)]
    verdict: String,
}

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    locked: bool,
}

/// The outcome of one row.
enum Outcome {
    Created {
        registration_id: Uuid,
        sessions: serde_json::Value,
    },
    Duplicate(Option<Uuid>),
    Invalid,
    Failed(RowError),
}

/// Registers the next batch of an import's rows; false when another worker holds it or it
/// is no longer being committed.
async fn commit_batch(
    conn: &mut AsyncPgConnection,
    state: &AppState,
    import_id: Uuid,
) -> ApiResult<bool> {
    conn.transaction::<_, ApiError, _>(async |conn| {
        let locked: Locked =
            diesel::sql_query("SELECT pg_try_advisory_xact_lock($1, $2) AS locked")
                .bind::<Integer, _>(LOCK_SPACE)
                .bind::<Integer, _>(lock_key(import_id))
                .get_results(conn)
                .await
                .and_then(crate::db::single)?;
        if !locked.locked {
            return Ok(false);
        }
        let (event_id, status, over_capacity): (Uuid, String, bool) =
            crate::db::schema::imports::table
                .find(import_id)
                .select((
                    crate::db::schema::imports::event_id,
                    crate::db::schema::imports::status,
                    crate::db::schema::imports::over_capacity,
                ))
                .first(conn)
                .await?;
        if status != "committing" {
            return Ok(false);
        }
        let rows: Vec<PendingRow> = diesel::sql_query(
            "SELECT row_number, fields, verdict FROM import_rows \
             WHERE import_id = $1 AND outcome IS NULL ORDER BY row_number LIMIT $2",
        )
        .bind::<SqlUuid, _>(import_id)
        .bind::<BigInt, _>(BATCH)
        .load(conn)
        .await?;
        if rows.is_empty() {
            diesel::sql_query(
                "UPDATE imports SET status = 'committed', committed_at = now() WHERE id = $1",
            )
            .bind::<SqlUuid, _>(import_id)
            .execute(conn)
            .await?;
            return Ok(true);
        }
        let event: Event = events::table
            .find(event_id)
            .select(Event::as_select())
            .first(conn)
            .await?;
        let mode = Mode::Organiser { over_capacity };
        // The form as it is now: the answers are checked again (it may have changed since
        // the dry run) and choose their options' places by it.
        let questions = Questions::new(Form::load(conn, event.id).await?)?;
        // The organiser vouches for the consent to the processing of personal data, as with
        // a manual registration; the optional ones (photos, mailings) are the participant's
        // own to give, and an import gives none of them.
        let accepted = crate::forms::consents::accepted(
            questions
                .form()
                .consents
                .iter()
                .filter(|c| c.key == crate::forms::consents::PERSONAL_DATA),
        );
        for row in rows {
            let outcome = if row.verdict == "invalid" {
                Outcome::Invalid
            } else {
                let fields: Fields = serde_json::from_value(row.fields)
                    .map_err(|e| ApiError::internal(anyhow::anyhow!("import row: {e}")))?;
                let to_register = Row {
                    fields: &fields,
                    questions: &questions,
                    consents: &accepted,
                };
                register_row(conn, state, &event, import_id, mode, to_register).await?
            };
            record(conn, import_id, row.row_number, outcome).await?;
        }
        Ok(true)
    })
    .await
}

/// The second half of an import's advisory lock key.
fn lock_key(import_id: Uuid) -> i32 {
    let bytes = import_id.as_bytes();
    i32::from_be_bytes([bytes[12], bytes[13], bytes[14], bytes[15]])
}

/// A row to register, with what it is registered by.
struct Row<'a> {
    fields: &'a Fields,
    questions: &'a Questions,
    /// The consents recorded: `[{"key", "version"}]`.
    consents: &'a serde_json::Value,
}

/// Registers one row in a savepoint: a refusal (a duplicate address, a full session or
/// option) or a server error of its own undoes the row's work only, and is its outcome. The
/// database unavailable or a collision with another transaction fails the batch, which is
/// tried again.
async fn register_row(
    conn: &mut AsyncPgConnection,
    state: &AppState,
    event: &Event,
    import_id: Uuid,
    mode: Mode,
    row: Row<'_>,
) -> ApiResult<Outcome> {
    let Row {
        fields,
        questions,
        consents,
    } = row;
    let answers = serde_json::Value::Object(fields.answers.clone());
    let asked: HashSet<&str> = fields.answers.keys().map(String::as_str).collect();
    let errors: Vec<String> = questions
        .check(&Questions::body(&fields.category, &fields.answers), &asked)
        .into_iter()
        .map(|(field, message)| format!("{field} {message}"))
        .collect();
    if !errors.is_empty() {
        return Ok(Outcome::Failed(RowError {
            code: "validation_failed".to_owned(),
            detail: format!(
                "the event's form changed since the dry run: {}",
                errors.join("; ")
            ),
        }));
    }
    let limited_options = questions.form().limited_options(&answers);
    let attempt = conn
        .transaction::<_, ApiError, _>(async |conn| {
            let now = Utc::now();
            let ids = &fields.session_ids;
            booking::check_event(event, mode, now, !ids.is_empty())?;
            let found: Vec<Session> = if ids.is_empty() {
                Vec::new()
            } else {
                sessions::table
                    .filter(sessions::event_id.eq(event.id))
                    .filter(sessions::id.eq_any(ids))
                    .select(Session::as_select())
                    .load(conn)
                    .await?
            };
            let chosen = booking::check_bookable(event, found, ids, mode, now, "sessions")?;
            booking::check_overlaps(event, &chosen.iter().collect::<Vec<_>>())?;
            let mut nonce = [0u8; 32];
            rand::fill(&mut nonce);
            let token = tokens::derived(
                tokens::MANAGE_PREFIX,
                &state.keys.derive("manage-token"),
                &nonce,
            );
            booking::register(
                conn,
                NewRegistration {
                    event,
                    applicant: &Applicant {
                        full_name: fields.full_name.clone(),
                        email: fields.email.trim().to_owned(),
                        organisation: fields.organisation.clone(),
                        position: fields.position.clone(),
                        city: fields.city.clone(),
                        phone: fields.phone.clone(),
                        category: fields.category.clone(),
                    },
                    sessions: &chosen,
                    mode,
                    actor: Some(Actor::import(import_id)),
                    token_hash: tokens::digest(&token),
                    token_nonce: &nonce,
                    language: fields.language,
                    idempotency: None,
                    answers: &answers,
                    limited_options: &limited_options,
                    consents,
                },
            )
            .await
        })
        .await;
    match attempt {
        Ok(registered) => Ok(Outcome::Created {
            registration_id: registered.id,
            sessions: serde_json::to_value(&registered.sessions).map_err(ApiError::internal)?,
        }),
        Err(error) if error.code() == "already_registered" => {
            let holder: Option<Uuid> = registrations::table
                .filter(registrations::event_id.eq(event.id))
                .filter(registrations::status.eq(crate::registrations::RegistrationStatus::Active))
                .filter(registrations::email_normalized.eq(crate::email::normalise(&fields.email)))
                .select(registrations::id)
                .first(conn)
                .await
                .optional()?;
            Ok(Outcome::Duplicate(holder))
        }
        Err(error) if error.status().is_client_error() => Ok(Outcome::Failed(RowError {
            code: error.code().to_owned(),
            detail: error.problem().detail,
        })),
        // The row's own server error (not the database unavailable, nor a collision the
        // batch is tried again for): it would fail the same way every time and hold up every
        // row after it, so the row fails and the import goes on.
        Err(error) if error.status() == StatusCode::INTERNAL_SERVER_ERROR => {
            tracing::error!(import = %import_id, error = %error, "an import row failed");
            Ok(Outcome::Failed(RowError {
                code: error.code().to_owned(),
                detail: "the server could not register this row; the error is in its log"
                    .to_owned(),
            }))
        }
        Err(error) => Err(error),
    }
}

async fn record(
    conn: &mut AsyncPgConnection,
    import_id: Uuid,
    row: i32,
    outcome: Outcome,
) -> ApiResult<()> {
    let (name, registration, duplicate_of, result) = match outcome {
        Outcome::Created {
            registration_id,
            sessions,
        } => ("created", Some(registration_id), None, Some(sessions)),
        Outcome::Duplicate(holder) => ("duplicate", None, holder, None),
        Outcome::Invalid => ("invalid", None, None, None),
        Outcome::Failed(error) => (
            "failed",
            None,
            None,
            Some(json!({"code": error.code, "detail": error.detail})),
        ),
    };
    diesel::sql_query(
        "UPDATE import_rows SET outcome = $3, registration_id = $4, result = $5, \
                duplicate_of_registration = CASE WHEN $3 = 'duplicate' THEN $6 \
                                                 ELSE duplicate_of_registration END, \
                duplicate_of_row = CASE WHEN $3 = 'duplicate' AND $6 IS NOT NULL THEN NULL \
                                        ELSE duplicate_of_row END \
         WHERE import_id = $1 AND row_number = $2 AND outcome IS NULL",
    )
    .bind::<SqlUuid, _>(import_id)
    .bind::<Integer, _>(row)
    .bind::<Text, _>(name)
    .bind::<Nullable<SqlUuid>, _>(registration)
    .bind::<Nullable<Jsonb>, _>(result)
    .bind::<Nullable<SqlUuid>, _>(duplicate_of)
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_differ_between_imports() {
        let a = Uuid::now_v7();
        let b = Uuid::now_v7();
        assert_ne!(lock_key(a), lock_key(b));
    }
}
