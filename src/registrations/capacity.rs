//! Seat pools and their locks.
//!
//! A session with a capacity owns that many rows in `session_seats`; a confirmed
//! registration holds one. Registrations claim seats with `FOR UPDATE SKIP LOCKED`, so many
//! can claim seats of one session at once; only when every free seat is locked by another
//! registration still in flight does a registration wait for those to finish, so nobody is
//! waitlisted (or refused) for a seat that a failing registration gives back. Everything
//! that *frees* seats or changes a pool (cancellation, removal of a session, capacity
//! changes, deletion) takes the session's advisory lock exclusively, while registrations
//! take it shared: a seat is therefore never freed while a registration is deciding to join
//! the waitlist, and a freed seat goes to the first waitlisted registration in the same
//! transaction. Events with a capacity have an `event_seats` pool, used the same way.
//!
//! Categories' and choice options' pools (`form_seats`) follow the same pattern under
//! `form_pool_lock_key` advisory locks, taken in the database functions that register,
//! cancel and move registrations.
//!
//! Lock order, everywhere: advisory locks (event, then sessions by key, then categories' and
//! options' pools by key), then rows. A registration's row in particular is never locked
//! before its category's lock: whoever frees a place in a category gives it to the next in
//! its queue and so writes that one's row, which a cancellation of that one would otherwise
//! hold while waiting for the category.

use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Integer, Nullable, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::json;
use uuid::Uuid;

use super::SessionRegistrationStatus;
use crate::changes::{self, Actor, ChangeKind, NewChange};
use crate::db::schema::{events, registration_sessions, registrations, sessions};
use crate::error::{ApiError, ApiResult};
use crate::events::Event;
use crate::programme::Session;

const SESSION_LOCK: u64 = 0x5E55_1011_0000_0000;
const EVENT_LOCK: u64 = 0xE7E4_7000_0000_0000;

fn lock_key(kind: u64, id: Uuid) -> i64 {
    let bytes = id.as_u128().to_le_bytes();
    let low = u64::from_le_bytes(bytes[..8].try_into().expect("eight bytes"));
    (low ^ kind) as i64
}

pub fn session_lock_key(session_id: Uuid) -> i64 {
    lock_key(SESSION_LOCK, session_id)
}

pub fn event_lock_key(event_id: Uuid) -> i64 {
    lock_key(EVENT_LOCK, event_id)
}

/// Takes the given advisory locks in a stable order: shared ones for registering, exclusive
/// ones for freeing seats or changing pools.
pub async fn lock(
    conn: &mut AsyncPgConnection,
    shared: &[i64],
    exclusive: &[i64],
) -> ApiResult<()> {
    let keys = lock_order(shared, exclusive);
    if keys.is_empty() {
        return Ok(());
    }
    let (keys, modes): (Vec<i64>, Vec<bool>) = keys.into_iter().unzip();
    diesel::sql_query(
        "SELECT CASE WHEN x THEN pg_advisory_xact_lock(k)::text \
                ELSE pg_advisory_xact_lock_shared(k)::text END \
         FROM unnest($1::bigint[], $2::boolean[]) WITH ORDINALITY AS l(k, x, n) ORDER BY n",
    )
    .bind::<Array<BigInt>, _>(keys)
    .bind::<Array<diesel::sql_types::Bool>, _>(modes)
    .execute(conn)
    .await?;
    Ok(())
}

/// Each key once, in ascending order, with whether to take it exclusively: a key wanted
/// both ways is taken exclusively.
fn lock_order(shared: &[i64], exclusive: &[i64]) -> Vec<(i64, bool)> {
    let mut keys: Vec<(i64, bool)> = shared
        .iter()
        .map(|k| (*k, false))
        .chain(exclusive.iter().map(|k| (*k, true)))
        .collect();
    keys.sort_unstable_by_key(|&(k, exclusive)| (k, !exclusive));
    keys.dedup_by_key(|(k, _)| *k);
    keys
}

/// Takes the advisory locks of the event's categories a registration leaves (exclusively: a
/// place is freed) and joins (shared), in key order, before its row is locked. The database
/// functions that free or take the places take them again, which a lock already held allows.
pub async fn lock_categories(
    conn: &mut AsyncPgConnection,
    event_id: Uuid,
    leaving: &str,
    joining: Option<&str>,
) -> ApiResult<()> {
    diesel::sql_query(
        "SELECT CASE WHEN c.code = $2 THEN pg_advisory_xact_lock(form_pool_lock_key(c.id))::text \
                ELSE pg_advisory_xact_lock_shared(form_pool_lock_key(c.id))::text END \
         FROM event_categories c \
         WHERE c.event_id = $1 AND (c.code = $2 OR c.code = $3) \
         ORDER BY form_pool_lock_key(c.id)",
    )
    .bind::<SqlUuid, _>(event_id)
    .bind::<Text, _>(leaving)
    .bind::<Nullable<Text>, _>(joining)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn lock_session_exclusive(
    conn: &mut AsyncPgConnection,
    session_id: Uuid,
) -> ApiResult<()> {
    lock(conn, &[], &[session_lock_key(session_id)]).await
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct Moved {
    #[diesel(sql_type = SqlUuid)]
    registration_id: Uuid,
    #[diesel(sql_type = Text)]
    was: String,
}

/// Gives the session's free seats to those who should hold them: first registrations
/// confirmed beyond capacity (who are then within it), then waitlisted ones in order. Needs
/// the session's exclusive lock. Promotions are recorded and the promoted registrations
/// touched.
pub async fn rebalance(
    conn: &mut AsyncPgConnection,
    session: &Session,
    actor: Actor,
) -> ApiResult<Vec<Uuid>> {
    let (session_id, capacity) = (session.id, session.capacity);
    let moved: Vec<Moved> = if capacity.is_none() {
        // Unlimited: everyone waiting gets in.
        diesel::sql_query(
            "UPDATE registration_sessions SET status = 'confirmed', \
                    seat_no = NULL, updated_at = now() \
             WHERE session_id = $1 AND status = 'waitlisted' \
             RETURNING registration_id, 'waitlisted' AS was",
        )
        .bind::<SqlUuid, _>(session_id)
        .load(conn)
        .await?
    } else {
        diesel::sql_query(
            "WITH free AS ( \
                 SELECT seat_no, row_number() OVER (ORDER BY seat_no) AS n \
                 FROM session_seats WHERE session_id = $1 AND registration_id IS NULL), \
             waiting AS ( \
                 SELECT registration_id, status, \
                        row_number() OVER (ORDER BY (status = 'confirmed') DESC, waitlist_order, registration_id) AS n \
                 FROM registration_sessions \
                 WHERE session_id = $1 \
                   AND (status = 'waitlisted' OR (status = 'confirmed' AND seat_no IS NULL))), \
             pairs AS ( \
                 SELECT free.seat_no, waiting.registration_id, waiting.status AS was \
                 FROM free JOIN waiting USING (n)), \
             taken AS ( \
                 UPDATE session_seats s SET registration_id = p.registration_id \
                 FROM pairs p WHERE s.session_id = $1 AND s.seat_no = p.seat_no) \
             UPDATE registration_sessions r \
             SET status = 'confirmed', seat_no = p.seat_no, \
                 over_capacity = false, updated_at = now() \
             FROM pairs p \
             WHERE r.session_id = $1 AND r.registration_id = p.registration_id \
             RETURNING r.registration_id, p.was",
        )
        .bind::<SqlUuid, _>(session_id)
        .load(conn)
        .await?
    };
    let promoted: Vec<Uuid> = moved
        .into_iter()
        .filter(|m| m.was == "waitlisted")
        .map(|m| m.registration_id)
        .collect();
    if !promoted.is_empty() {
        diesel::update(registrations::table.filter(registrations::id.eq_any(&promoted)))
            .set(registrations::updated_at.eq(diesel::dsl::now))
            .execute(conn)
            .await?;
        let entries = promoted
            .iter()
            .map(|id| {
                NewChange::registration(
                    session.event_id,
                    *id,
                    Some(session_id),
                    ChangeKind::RegistrationPromoted,
                    actor,
                )
            })
            .collect();
        changes::record(conn, entries).await?;
    }
    Ok(promoted)
}

async fn confirmed_count(conn: &mut AsyncPgConnection, session_id: Uuid) -> ApiResult<i64> {
    Ok(registration_sessions::table
        .filter(registration_sessions::session_id.eq(session_id))
        .filter(registration_sessions::status.eq(SessionRegistrationStatus::Confirmed))
        .count()
        .get_results(conn)
        .await
        .and_then(crate::db::single)?)
}

/// Makes the session's seat pool match its (new) capacity and promotes whoever now fits.
/// `previous` is the capacity before the change (`None` for a new session).
pub async fn set_session_capacity(
    conn: &mut AsyncPgConnection,
    session: &Session,
    previous: Option<Option<i32>>,
) -> ApiResult<Vec<Uuid>> {
    let is_new = previous.is_none();
    if is_new {
        if let Some(capacity) = session.capacity {
            add_session_seats(conn, session.id, capacity).await?;
        }
        return Ok(Vec::new());
    }
    lock_session_exclusive(conn, session.id).await?;
    match session.capacity {
        None => {
            diesel::sql_query("DELETE FROM session_seats WHERE session_id = $1")
                .bind::<SqlUuid, _>(session.id)
                .execute(conn)
                .await?;
            diesel::update(
                registration_sessions::table
                    .filter(registration_sessions::session_id.eq(session.id))
                    .filter(
                        registration_sessions::seat_no
                            .is_not_null()
                            .or(registration_sessions::over_capacity),
                    ),
            )
            .set((
                registration_sessions::seat_no.eq(None::<i32>),
                // Nobody is beyond an unlimited capacity.
                registration_sessions::over_capacity.eq(false),
            ))
            .execute(conn)
            .await?;
        }
        Some(capacity) => {
            let confirmed = confirmed_count(conn, session.id).await?;
            if confirmed > i64::from(capacity) {
                return Err(ApiError::conflict(
                    "capacity_below_confirmed",
                    format!(
                        "{confirmed} registrations are confirmed; the capacity cannot be lower"
                    ),
                )
                .with("confirmed", confirmed));
            }
            let seats: Count =
                diesel::sql_query("SELECT count(*) AS n FROM session_seats WHERE session_id = $1")
                    .bind::<SqlUuid, _>(session.id)
                    .get_results(conn)
                    .await
                    .and_then(crate::db::single)?;
            let seats = seats.n as i32;
            if seats < capacity {
                add_session_seats(conn, session.id, capacity - seats).await?;
            } else if seats > capacity {
                diesel::sql_query(
                    "DELETE FROM session_seats WHERE (session_id, seat_no) IN ( \
                         SELECT session_id, seat_no FROM session_seats \
                         WHERE session_id = $1 AND registration_id IS NULL \
                         ORDER BY seat_no DESC LIMIT $2)",
                )
                .bind::<SqlUuid, _>(session.id)
                .bind::<Integer, _>(seats - capacity)
                .execute(conn)
                .await?;
            }
        }
    }
    rebalance(conn, session, Actor::SYSTEM).await
}

async fn add_session_seats(
    conn: &mut AsyncPgConnection,
    session_id: Uuid,
    count: i32,
) -> ApiResult<()> {
    diesel::sql_query(
        "INSERT INTO session_seats (session_id, seat_no) \
         SELECT $1, coalesce((SELECT max(seat_no) FROM session_seats WHERE session_id = $1), 0) + g \
         FROM generate_series(1, $2) AS g",
    )
    .bind::<SqlUuid, _>(session_id)
    .bind::<Integer, _>(count)
    .execute(conn)
    .await?;
    Ok(())
}

/// Makes the event's pool of places match its capacity; `previous` is the capacity before
/// (the same as the new one for a new event).
pub async fn set_event_capacity(
    conn: &mut AsyncPgConnection,
    event: &Event,
    previous: Option<i32>,
) -> ApiResult<()> {
    lock(conn, &[], &[event_lock_key(event.id)]).await?;
    let Some(capacity) = event.capacity else {
        diesel::sql_query("DELETE FROM event_seats WHERE event_id = $1")
            .bind::<SqlUuid, _>(event.id)
            .execute(conn)
            .await?;
        return Ok(());
    };
    let active: i64 = registrations::table
        .filter(registrations::event_id.eq(event.id))
        .filter(registrations::status.eq(super::RegistrationStatus::Active))
        .count()
        .get_results(conn)
        .await
        .and_then(crate::db::single)?;
    if active > i64::from(capacity) {
        return Err(ApiError::conflict(
            "capacity_below_registered",
            format!("{active} registrations are active; the capacity cannot be lower"),
        )
        .with("registered", active));
    }
    let seats: Count =
        diesel::sql_query("SELECT count(*) AS n FROM event_seats WHERE event_id = $1")
            .bind::<SqlUuid, _>(event.id)
            .get_results(conn)
            .await
            .and_then(crate::db::single)?;
    let seats = seats.n as i32;
    if seats < capacity {
        diesel::sql_query(
            "INSERT INTO event_seats (event_id, seat_no) \
             SELECT $1, coalesce((SELECT max(seat_no) FROM event_seats WHERE event_id = $1), 0) + g \
             FROM generate_series(1, $2) AS g",
        )
        .bind::<SqlUuid, _>(event.id)
        .bind::<Integer, _>(capacity - seats)
        .execute(conn)
        .await?;
    } else if seats > capacity {
        diesel::sql_query(
            "DELETE FROM event_seats WHERE (event_id, seat_no) IN ( \
                 SELECT event_id, seat_no FROM event_seats \
                 WHERE event_id = $1 AND registration_id IS NULL \
                 ORDER BY seat_no DESC LIMIT $2)",
        )
        .bind::<SqlUuid, _>(event.id)
        .bind::<Integer, _>(seats - capacity)
        .execute(conn)
        .await?;
    }
    if previous.is_none_or(|previous| capacity > previous) {
        // New places go first to active registrations without one: all of them when the
        // event had no limit, those added beyond capacity by organisers otherwise.
        diesel::sql_query(
            "WITH free AS ( \
                 SELECT seat_no, row_number() OVER (ORDER BY seat_no) AS n \
                 FROM event_seats WHERE event_id = $1 AND registration_id IS NULL), \
             holders AS ( \
                 SELECT r.id, row_number() OVER (ORDER BY r.created_at, r.id) AS n FROM registrations r \
                 WHERE r.event_id = $1 AND r.status = 'active' \
                   AND NOT EXISTS (SELECT 1 FROM event_seats e WHERE e.registration_id = r.id)) \
             UPDATE event_seats s SET registration_id = holders.id \
             FROM free JOIN holders USING (n) \
             WHERE s.event_id = $1 AND s.seat_no = free.seat_no",
        )
        .bind::<SqlUuid, _>(event.id)
        .execute(conn)
        .await?;
    }
    Ok(())
}

/// Claims a free place of the event for a registration (`take_event_seat` in the
/// migrations); false when the event is full. Needs the event's lock (shared is enough).
pub async fn claim_event_seat(
    conn: &mut AsyncPgConnection,
    event_id: Uuid,
    registration_id: Uuid,
) -> ApiResult<bool> {
    let seat: SeatTaken = diesel::sql_query("SELECT take_event_seat($1, $2) AS n")
        .bind::<SqlUuid, _>(event_id)
        .bind::<SqlUuid, _>(registration_id)
        .get_results(conn)
        .await
        .and_then(crate::db::single)?;
    Ok(seat.n.is_some())
}

#[derive(QueryableByName)]
struct SeatTaken {
    #[diesel(sql_type = Nullable<Integer>)]
    n: Option<i32>,
}

#[derive(Debug, QueryableByName)]
pub struct Claim {
    #[diesel(sql_type = SqlUuid)]
    pub session_id: Uuid,
    #[diesel(sql_type = Text)]
    pub status: String,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub waitlist_position: Option<i64>,
    /// Confirmed although the session had no free seat (an organiser's decision).
    #[diesel(sql_type = diesel::sql_types::Bool)]
    pub over_capacity: bool,
}

/// Takes places in `sessions` for the registration, in the order given: a seat in each while
/// there is one, and where a session is full a waitlist place (or, with `exceed`, a confirmed
/// place beyond capacity), and records them: `claim_session_places` in the migrations, which
/// registering itself uses too. Every seat is taken before any waitlist is joined, so that
/// joining a queue, which waits for the others joining it, comes last. Fails with
/// `session_full` (SQLSTATE RG409, the session as detail) for a full session without
/// waitlist. Needs the sessions' locks (shared is enough).
pub async fn claim_sessions(
    conn: &mut AsyncPgConnection,
    registration_id: Uuid,
    sessions: &[Uuid],
    exceed: bool,
) -> Result<Vec<Claim>, diesel::result::Error> {
    diesel::sql_query(
        "SELECT session_id, status, waitlist_position, over_capacity \
         FROM claim_session_places($1, $2, $3)",
    )
    .bind::<SqlUuid, _>(registration_id)
    .bind::<Array<SqlUuid>, _>(sessions)
    .bind::<diesel::sql_types::Bool, _>(exceed)
    .load(conn)
    .await
}

/// Gives up a registration's place in a session (its seat goes to whoever is next).
/// Needs the session's exclusive lock. Returns false when it held no active place.
pub async fn release_session(
    conn: &mut AsyncPgConnection,
    registration_id: Uuid,
    session: &Session,
    actor: Actor,
) -> ApiResult<bool> {
    let released = diesel::update(
        registration_sessions::table
            .find((registration_id, session.id))
            .filter(registration_sessions::status.ne(SessionRegistrationStatus::Cancelled)),
    )
    .set((
        registration_sessions::status.eq(SessionRegistrationStatus::Cancelled),
        registration_sessions::seat_no.eq(None::<i32>),
        registration_sessions::updated_at.eq(diesel::dsl::now),
    ))
    .execute(conn)
    .await?;
    if released == 0 {
        return Ok(false);
    }
    diesel::sql_query(
        "UPDATE session_seats SET registration_id = NULL WHERE session_id = $1 AND registration_id = $2",
    )
    .bind::<SqlUuid, _>(session.id)
    .bind::<SqlUuid, _>(registration_id)
    .execute(conn)
    .await?;
    rebalance(conn, session, actor).await?;
    Ok(true)
}

/// Gives up a registration's place in the event. The place goes to the oldest active
/// registration an organiser added beyond the event's capacity, if any, so the event stays
/// as full as it was. Needs the event's exclusive lock.
pub async fn release_event_seat(
    conn: &mut AsyncPgConnection,
    event_id: Uuid,
    registration_id: Uuid,
) -> ApiResult<()> {
    diesel::sql_query(
        "UPDATE event_seats SET registration_id = ( \
             SELECT r.id FROM registrations r \
             WHERE r.event_id = $1 AND r.status = 'active' AND r.id <> $2 \
               AND NOT EXISTS (SELECT 1 FROM event_seats e WHERE e.registration_id = r.id) \
             ORDER BY r.created_at, r.id LIMIT 1) \
         WHERE event_id = $1 AND registration_id = $2",
    )
    .bind::<SqlUuid, _>(event_id)
    .bind::<SqlUuid, _>(registration_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Deletes a session that has no active registrations.
pub async fn delete_session(
    conn: &mut AsyncPgConnection,
    event_id: Uuid,
    session_id: Uuid,
) -> ApiResult<()> {
    use diesel_async::AsyncConnection;
    conn.transaction::<_, ApiError, _>(async |conn| {
        lock_session_exclusive(conn, session_id).await?;
        let exists: bool = diesel::select(diesel::dsl::exists(
            sessions::table.filter(
                sessions::id
                    .eq(session_id)
                    .and(sessions::event_id.eq(event_id)),
            ),
        ))
        .get_results(conn)
        .await
        .and_then(crate::db::single)?;
        if !exists {
            return Err(ApiError::not_found("session"));
        }
        let active: i64 = registration_sessions::table
            .filter(registration_sessions::session_id.eq(session_id))
            .filter(registration_sessions::status.ne(SessionRegistrationStatus::Cancelled))
            .count()
            .get_results(conn)
            .await
            .and_then(crate::db::single)?;
        if active > 0 {
            return Err(ApiError::conflict(
                "session_has_registrations",
                format!("{active} active registrations; cancel the session instead"),
            )
            .with("active_registrations", active));
        }
        // Places given up earlier go with the session (no foreign key cascades them).
        diesel::delete(
            registration_sessions::table.filter(registration_sessions::session_id.eq(session_id)),
        )
        .execute(conn)
        .await?;
        diesel::delete(sessions::table.find(session_id))
            .execute(conn)
            .await?;
        Ok(())
    })
    .await
}

/// Deletes an event if it has no registrations at all; false otherwise.
pub async fn delete_event_without_registrations(
    conn: &mut AsyncPgConnection,
    event_id: Uuid,
) -> ApiResult<bool> {
    use diesel_async::AsyncConnection;
    conn.transaction::<_, ApiError, _>(async |conn| {
        // Registrations hold the event's lock shared while they are being made.
        lock(conn, &[], &[event_lock_key(event_id)]).await?;
        let any: bool = diesel::select(diesel::dsl::exists(
            registrations::table.filter(registrations::event_id.eq(event_id)),
        ))
        .get_results(conn)
        .await
        .and_then(crate::db::single)?;
        if any {
            return Ok(false);
        }
        diesel::delete(events::table.find(event_id))
            .execute(conn)
            .await?;
        Ok(true)
    })
    .await
}

/// Promotes a waitlisted registration into the session out of turn: into a free seat if
/// there is one, otherwise beyond capacity when `over_capacity` says so.
pub async fn promote(
    conn: &mut AsyncPgConnection,
    registration_id: Uuid,
    session: &Session,
    over_capacity: bool,
    actor: Actor,
) -> ApiResult<()> {
    lock_session_exclusive(conn, session.id).await?;
    let status: Option<SessionRegistrationStatus> = registration_sessions::table
        .find((registration_id, session.id))
        .select(registration_sessions::status)
        .for_update()
        .first(conn)
        .await
        .optional()?;
    if status != Some(SessionRegistrationStatus::Waitlisted) {
        return Err(ApiError::conflict(
            "not_waitlisted",
            "this registration is not on the session's waitlist",
        ));
    }
    let seat: Option<i32> = if session.capacity.is_some() {
        diesel::sql_query(
            "UPDATE session_seats SET registration_id = $2 \
             WHERE (session_id, seat_no) = ( \
                 SELECT session_id, seat_no FROM session_seats \
                 WHERE session_id = $1 AND registration_id IS NULL ORDER BY seat_no LIMIT 1) \
             RETURNING seat_no AS n",
        )
        .bind::<SqlUuid, _>(session.id)
        .bind::<SqlUuid, _>(registration_id)
        .get_results::<SeatNo>(conn)
        .await
        .and_then(crate::db::single)
        .optional()?
        .map(|s| s.n)
    } else {
        None
    };
    if session.capacity.is_some() && seat.is_none() && !over_capacity {
        return Err(ApiError::conflict(
            "session_full",
            "the session is full; set over_capacity to confirm beyond its capacity",
        )
        .with("session_id", session.id));
    }
    let beyond = session.capacity.is_some() && seat.is_none();
    diesel::update(registration_sessions::table.find((registration_id, session.id)))
        .set((
            registration_sessions::status.eq(SessionRegistrationStatus::Confirmed),
            registration_sessions::seat_no.eq(seat),
            registration_sessions::over_capacity.eq(beyond),
            registration_sessions::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    diesel::update(registrations::table.find(registration_id))
        .set(registrations::updated_at.eq(diesel::dsl::now))
        .execute(conn)
        .await?;
    changes::record(
        conn,
        vec![
            NewChange::registration(
                session.event_id,
                registration_id,
                Some(session.id),
                ChangeKind::RegistrationPromoted,
                actor,
            )
            .with_details(json!({"over_capacity": beyond, "out_of_turn": true})),
        ],
    )
    .await
}

#[derive(QueryableByName)]
struct SeatNo {
    #[diesel(sql_type = Integer)]
    n: i32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_are_taken_once_in_key_order_exclusive_when_wanted_so() {
        assert_eq!(
            lock_order(&[5, -3, 9, 5], &[9, 1]),
            [(-3, false), (1, true), (5, false), (9, true)]
        );
        assert_eq!(lock_order(&[], &[]), []);
    }
}
