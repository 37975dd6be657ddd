//! The retention job: anonymises the registrations of events whose retention period has
//! ended (`personal_data_retention_days` after their last day, in their time zone).
//!
//! Every instance runs it; one at a time does the work. A round takes a transaction-scoped
//! advisory lock with `pg_try_advisory_xact_lock`: an instance that does not get it skips
//! the round (another is doing it), and the lock goes with the transaction, so an instance
//! that dies mid-round leaves nothing held. Rows are also taken `FOR UPDATE SKIP LOCKED`, so
//! a registration being changed or erased by a request at that moment waits for the next
//! round instead of blocking this one. Registrations added after an event's round (late
//! organiser additions) are found by the next one. The rows of the events' spreadsheet
//! imports lose what was read of people too, those that registered nobody included.

use std::time::Duration;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::erase::{Reason, erase, erase_import_rows};
use crate::changes::Actor;
use crate::error::ApiError;
use crate::runner::Runner;
use crate::state::AppState;

/// How often an instance looks for registrations past retention.
const EVERY: Duration = Duration::from_secs(15 * 60);
/// Registrations anonymised per transaction.
const BATCH: i64 = 500;
/// The advisory lock of the job ("privacy" in ASCII).
pub const LOCK: i64 = 0x0070_7269_7661_6379;

/// What one round did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    /// False when another instance held the job's lock: this one did nothing.
    pub ran: bool,
    /// Registrations anonymised.
    pub erased: usize,
    /// Rows of imports whose details of people were removed.
    pub import_rows: i64,
    /// More may be due.
    pub more: bool,
}

pub fn start(runner: &mut Runner, state: AppState) {
    runner.repeat("privacy: retention", EVERY, None, move || {
        let state = state.clone();
        async move {
            let mut conn = state.db.get().await?;
            let done = round(&mut conn)
                .await
                .map_err(|error| anyhow::anyhow!("{error}"))?;
            if done.erased > 0 || done.import_rows > 0 {
                tracing::info!(
                    registrations = done.erased,
                    import_rows = done.import_rows,
                    "personal data past retention anonymised"
                );
                // Webhooks announce the erasures.
                state.signals.committed();
            }
            Ok(done.more)
        }
    });
}

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    locked: bool,
}

/// The statement that finds up to `$1` registrations past retention, which are taken
/// `FOR UPDATE SKIP LOCKED`. In no particular order: ordered by id, the planner walked every
/// registration in that order looking for one of an expired event, and read them all when
/// none had expired (a second a round on 170,000 registrations); it now starts from the
/// events past retention.
pub const DUE: &str = "SELECT r.id FROM events e \
     JOIN registrations r ON r.event_id = e.id AND r.erased_at IS NULL \
     WHERE ((e.ends_on + 1 + e.personal_data_retention_days)::timestamp \
            AT TIME ZONE e.time_zone) <= now() \
     LIMIT $1 \
     FOR UPDATE OF r SKIP LOCKED";

/// The events past retention with imports whose rows may still hold details of people.
const IMPORTS_DUE: &str = "SELECT DISTINCT e.id FROM events e \
     JOIN imports i ON i.event_id = e.id AND i.personal_data_erased_at IS NULL \
     WHERE ((e.ends_on + 1 + e.personal_data_retention_days)::timestamp \
            AT TIME ZONE e.time_zone) <= now()";

#[derive(QueryableByName)]
struct Due {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
}

/// One round: anonymises up to `BATCH` registrations past their event's retention, in one
/// transaction, unless another instance is doing it.
pub async fn round(conn: &mut AsyncPgConnection) -> Result<Round, ApiError> {
    conn.transaction::<_, ApiError, _>(async |conn| {
        let lock: Locked = diesel::sql_query("SELECT pg_try_advisory_xact_lock($1) AS locked")
            .bind::<BigInt, _>(LOCK)
            .get_results(conn)
            .await
            .and_then(crate::db::single)?;
        if !lock.locked {
            return Ok(Round {
                ran: false,
                erased: 0,
                import_rows: 0,
                more: false,
            });
        }
        let due: Vec<Uuid> = diesel::sql_query(DUE)
            .bind::<BigInt, _>(BATCH)
            .load::<Due>(conn)
            .await?
            .into_iter()
            .map(|row| row.id)
            .collect();
        let report = erase(conn, &due, Actor::SYSTEM, Reason::Retention).await?;
        let events: Vec<Uuid> = diesel::sql_query(IMPORTS_DUE)
            .load::<Due>(conn)
            .await?
            .into_iter()
            .map(|row| row.id)
            .collect();
        let import_rows = if events.is_empty() {
            0
        } else {
            erase_import_rows(conn, &events).await?
        };
        Ok(Round {
            ran: true,
            erased: report.registration_ids.len(),
            import_rows,
            more: due.len() as i64 == BATCH,
        })
    })
    .await
}
