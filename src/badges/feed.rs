//! The attendee feed for badge printers and desks, and per-session attendee lists.
//!
//! The feed is ordered by the transaction that last changed each registration (`change_xid`)
//! and only returns changes of transactions older than every one still running
//! (`pg_snapshot_xmin`). A change that commits late, after a poll already returned later
//! ones, therefore has a position after that poll's cursor and comes in the next poll: no
//! change is ever skipped, whatever order transactions commit in.

use std::collections::HashMap;

use actix_web::{get, web};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::qr;
use crate::access::{self, EventAction, EventContext};
use crate::auth::Caller;
use crate::db::schema::{checkins, registration_sessions, registrations, sessions};
use crate::error::{ApiError, ApiResult};
use crate::extract::Query;
use crate::forms::answers;
use crate::openapi::EventErrors;
use crate::pagination::{Page, PageParams, decode_cursor, encode_cursor};
use crate::registrations::{RegistrationStatus, SessionRegistrationStatus};
use crate::state::State;

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(attendee_feed).service(session_attendees);
}

pub const FEED_DEFAULT_LIMIT: i64 = 100;
pub const FEED_MAX_LIMIT: i64 = 1000;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = registrations)]
pub struct AttendeeRow {
    pub id: Uuid,
    pub event_id: Uuid,
    pub full_name: String,
    pub organisation: Option<String>,
    pub position: Option<String>,
    pub city: Option<String>,
    pub category: String,
    pub status: RegistrationStatus,
    pub checked_in_at: Option<DateTime<Utc>>,
    pub badge_printed_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    pub change_xid: i64,
    pub answers: serde_json::Value,
}

/// What a badge printer or desk needs of one attendee.
#[derive(Debug, Serialize, ToSchema)]
pub struct Attendee {
    pub registration_id: Uuid,
    pub full_name: String,
    pub organisation: Option<String>,
    pub position: Option<String>,
    pub city: Option<String>,
    /// The code of one of the event's categories.
    #[schema(example = "business")]
    pub category: String,
    /// `cancelled` attendees come through the feed too, so devices can drop them.
    pub status: RegistrationStatus,
    /// Sessions the attendee is confirmed for.
    pub sessions: Vec<Uuid>,
    /// Checked in at the event's entrance.
    pub checked_in_at: Option<DateTime<Utc>>,
    pub badge_printed_at: Option<DateTime<Utc>>,
    /// The signed payload of the badge's QR code (see `/checkin-key`).
    pub qr_code: String,
    pub updated_at: DateTime<Utc>,
    /// Answers to the event's questions by key, as in the registration. Device keys do not
    /// get the answers to questions marked `personal` (as they get no contact details).
    #[schema(value_type = Object, example = json!({"transfer": true, "direction": "projects"}))]
    pub answers: serde_json::Value,
}

/// The keys of the answers the caller may not read (see [`Attendee::answers`]).
pub async fn withheld_answers(
    conn: &mut AsyncPgConnection,
    ctx: &EventContext,
) -> ApiResult<Vec<String>> {
    if ctx.sees_private() {
        Ok(Vec::new())
    } else {
        answers::personal_keys(conn, ctx.event.id).await
    }
}

/// Attendee records for the given rows, with their confirmed sessions and QR codes, without
/// the answers `withheld`.
pub async fn attendees(
    conn: &mut AsyncPgConnection,
    key: &SigningKey,
    rows: Vec<AttendeeRow>,
    withheld: &[String],
) -> ApiResult<Vec<Attendee>> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let mut sessions: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
    let confirmed: Vec<(Uuid, Uuid)> = registration_sessions::table
        .filter(registration_sessions::registration_id.eq_any(&ids))
        .filter(registration_sessions::status.eq(SessionRegistrationStatus::Confirmed))
        .select((
            registration_sessions::registration_id,
            registration_sessions::session_id,
        ))
        .order((
            registration_sessions::registration_id,
            registration_sessions::session_id,
        ))
        .load(conn)
        .await?;
    for (registration_id, session_id) in confirmed {
        sessions
            .entry(registration_id)
            .or_default()
            .push(session_id);
    }
    Ok(rows
        .into_iter()
        .map(|r| Attendee {
            qr_code: qr::encode(key, r.event_id, r.id),
            sessions: sessions.remove(&r.id).unwrap_or_default(),
            registration_id: r.id,
            full_name: r.full_name,
            organisation: r.organisation,
            position: r.position,
            city: r.city,
            category: r.category,
            status: r.status,
            checked_in_at: r.checked_in_at,
            badge_printed_at: r.badge_printed_at,
            updated_at: r.updated_at,
            answers: answers::withhold(r.answers, withheld),
        })
        .collect())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FeedParams {
    /// The `next_cursor` of the previous poll; absent: from the beginning.
    pub since: Option<String>,
    /// Records per poll, 1 to 1000; 100 when absent.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

/// One poll of the feed.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttendeeFeed {
    /// Attendees created, changed or cancelled since the cursor, oldest change first.
    pub items: Vec<Attendee>,
    /// Poll again with this as `since` (it stays the same while nothing changes).
    pub next_cursor: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct FeedCursor(i64, Uuid);

/// The attendee feed: every attendee created, changed or cancelled since the cursor.
///
/// Poll with the last `next_cursor`. No change is ever missed, even one whose transaction
/// commits after a poll has already returned later changes; cancellations come as records
/// with status `cancelled`.
#[utoipa::path(
    tag = "badges",
    params(("event" = String, Path, description = "Event slug or id"), FeedParams),
    responses(
        (status = 200, description = "Changes since the cursor.", body = AttendeeFeed),
        (status = 422, description = "`validation_failed`: bad `limit` or `since`.",
         body = crate::error::Problem, content_type = "application/problem+json"),
        EventErrors,
    ),
    security(("bearer" = []))
)]
#[get("/events/{event}/attendees")]
async fn attendee_feed(
    state: State,
    caller: Caller,
    path: web::Path<String>,
    params: Query<FeedParams>,
) -> ApiResult<web::Json<AttendeeFeed>> {
    let limit = params.limit.unwrap_or(FEED_DEFAULT_LIMIT);
    if !(1..=FEED_MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("must be between 1 and {FEED_MAX_LIMIT}"),
        ));
    }
    let since: FeedCursor = match params.since.as_deref() {
        Some(cursor) => decode_cursor(cursor)
            .map_err(|_| ApiError::invalid("since", "is not a cursor this feed returned"))?,
        None => FeedCursor::default(),
    };
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &path, EventAction::ReadAttendees).await?;
    let rows: Vec<AttendeeRow> = registrations::table
        .filter(registrations::event_id.eq(ctx.event.id))
        // A row comparison, so that the index (event_id, change_xid, id) bounds the scan.
        .filter(
            diesel::dsl::sql::<diesel::sql_types::Bool>(
                "(registrations.change_xid, registrations.id) > (",
            )
            .bind::<diesel::sql_types::BigInt, _>(since.0)
            .sql(", ")
            .bind::<diesel::sql_types::Uuid, _>(since.1)
            .sql(")"),
        )
        .filter(
            registrations::change_xid.lt(diesel::dsl::sql::<diesel::sql_types::BigInt>(
                "pg_snapshot_xmin(pg_current_snapshot())::text::bigint",
            )),
        )
        .order((registrations::change_xid, registrations::id))
        .limit(limit)
        .select(AttendeeRow::as_select())
        .load(&mut conn)
        .await?;
    let next = rows
        .last()
        .map(|r| FeedCursor(r.change_xid, r.id))
        .unwrap_or(since);
    let key = qr::signing_key(&mut conn, &state.sealing, ctx.event.id).await?;
    let withheld = withheld_answers(&mut conn, &ctx).await?;
    let items = attendees(&mut conn, &key, rows, &withheld).await?;
    Ok(web::Json(AttendeeFeed {
        items,
        next_cursor: encode_cursor(&next),
    }))
}

/// An attendee of one session.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionAttendee {
    #[serde(flatten)]
    pub attendee: Attendee,
    /// Checked in at this session's door.
    pub session_checked_in_at: Option<DateTime<Utc>>,
}

/// Attendees confirmed for a session (active registrations), for the session's door.
#[utoipa::path(
    tag = "badges",
    params(("event" = String, Path, description = "Event slug or id"), ("session_id" = Uuid, Path), PageParams),
    responses((status = 200, description = "One page of attendees.", body = Page<SessionAttendee>), EventErrors),
    security(("bearer" = []))
)]
#[get("/events/{event}/sessions/{session_id}/attendees")]
async fn session_attendees(
    state: State,
    caller: Caller,
    path: web::Path<(String, Uuid)>,
    page: Query<PageParams>,
) -> ApiResult<web::Json<Page<SessionAttendee>>> {
    let (event_ref, session_id) = path.into_inner();
    let limit = page.limit()?;
    let after: Option<Uuid> = page.after()?;
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &event_ref, EventAction::ReadAttendees).await?;
    // Whoever may read attendees (organisers, the event's devices) sees all its sessions.
    let exists: bool = diesel::select(diesel::dsl::exists(
        sessions::table.filter(
            sessions::id
                .eq(session_id)
                .and(sessions::event_id.eq(ctx.event.id)),
        ),
    ))
    .get_results(&mut conn)
    .await
    .and_then(crate::db::single)?;
    if !exists {
        return Err(ApiError::not_found("session"));
    }
    let confirmed = registration_sessions::table
        .filter(registration_sessions::session_id.eq(session_id))
        .filter(registration_sessions::status.eq(SessionRegistrationStatus::Confirmed))
        .select(registration_sessions::registration_id);
    let mut query = registrations::table
        .filter(registrations::event_id.eq(ctx.event.id))
        .filter(registrations::status.eq(RegistrationStatus::Active))
        .filter(registrations::id.eq_any(confirmed))
        .order(registrations::id)
        .limit(limit + 1)
        .select(AttendeeRow::as_select())
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(registrations::id.gt(after));
    }
    let rows = query.load(&mut conn).await?;
    let page = Page::from_rows(rows, limit, |r| r.id);
    let ids: Vec<Uuid> = page.items.iter().map(|r| r.id).collect();
    let door: HashMap<Uuid, DateTime<Utc>> = checkins::table
        .filter(checkins::session_id.eq(session_id))
        .filter(checkins::registration_id.eq_any(&ids))
        .select((checkins::registration_id, checkins::scanned_at))
        .load::<(Uuid, DateTime<Utc>)>(&mut conn)
        .await?
        .into_iter()
        .collect();
    let key = qr::signing_key(&mut conn, &state.sealing, ctx.event.id).await?;
    let withheld = withheld_answers(&mut conn, &ctx).await?;
    let items = attendees(&mut conn, &key, page.items, &withheld)
        .await?
        .into_iter()
        .map(|attendee| SessionAttendee {
            session_checked_in_at: door.get(&attendee.registration_id).copied(),
            attendee,
        })
        .collect();
    Ok(web::Json(Page {
        items,
        next_cursor: page.next_cursor,
    }))
}
