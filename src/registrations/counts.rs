//! Per-session counts, always computed from the rows themselves (no counters to drift).

use std::collections::HashMap;

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::SessionRegistrationStatus;
use crate::db::schema::registration_sessions;
use crate::error::ApiResult;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionCounts {
    pub confirmed: i64,
    pub waitlisted: i64,
}

impl SessionCounts {
    /// Seats not yet taken (never negative: organisers may confirm beyond capacity).
    pub fn seats_left(&self, capacity: Option<i32>) -> Option<i64> {
        capacity.map(|capacity| (i64::from(capacity) - self.confirmed).max(0))
    }
}

/// Confirmed and waitlisted registrations of each given session.
pub async fn for_sessions(
    conn: &mut AsyncPgConnection,
    session_ids: &[Uuid],
) -> ApiResult<HashMap<Uuid, SessionCounts>> {
    let rows: Vec<(Uuid, SessionRegistrationStatus, i64)> = registration_sessions::table
        .filter(registration_sessions::session_id.eq_any(session_ids))
        .filter(registration_sessions::status.ne(SessionRegistrationStatus::Cancelled))
        .group_by((
            registration_sessions::session_id,
            registration_sessions::status,
        ))
        .select((
            registration_sessions::session_id,
            registration_sessions::status,
            diesel::dsl::count_star(),
        ))
        .load(conn)
        .await?;
    let mut counts: HashMap<Uuid, SessionCounts> = HashMap::new();
    for (session_id, status, n) in rows {
        let entry = counts.entry(session_id).or_default();
        match status {
            SessionRegistrationStatus::Confirmed => entry.confirmed = n,
            SessionRegistrationStatus::Waitlisted => entry.waitlisted = n,
            SessionRegistrationStatus::Cancelled => {}
        }
    }
    Ok(counts)
}

/// A session's numbers.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionCountsView {
    pub session_id: Uuid,
    /// Null: unlimited.
    pub capacity: Option<i32>,
    pub confirmed: i64,
    pub waitlisted: i64,
    /// Null when unlimited.
    pub seats_left: Option<i64>,
}

impl SessionCountsView {
    pub fn new(session_id: Uuid, capacity: Option<i32>, counts: SessionCounts) -> Self {
        SessionCountsView {
            session_id,
            capacity,
            confirmed: counts.confirmed,
            waitlisted: counts.waitlisted,
            seats_left: counts.seats_left(capacity),
        }
    }
}
