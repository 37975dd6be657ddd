//! Sessions: the items of the programme, each with its time, place, capacity and speakers.

use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, web};
use chrono::{DateTime, FixedOffset, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::access::{self, EventAction, EventContext};
use crate::auth::Caller;
use crate::conditional::{IfMatch, etag_header, is_fresh};
use crate::dates::Timestamp;
use crate::db::schema::{sessions, tracks, venues};
use crate::error::{ApiError, ApiResult, Problem};
use crate::events::Event;
use crate::extract::{Body, Query};
use crate::openapi::{BodyErrors, EventErrors};
use crate::pagination::{Page, check_limit, decode_cursor};
use crate::patch;
use crate::registrations;
use crate::state::State;
use crate::validation::Validator;

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(list_sessions)
        .service(create_session)
        .service(get_session)
        .service(session_ics)
        .service(update_session)
        .service(delete_session);
}

crate::text_enum! {
    pub enum SessionKind {
        Plenary => "plenary",
        BusinessSession => "business_session",
        RoundTable => "round_table",
        Workshop => "workshop",
        Excursion => "excursion",
        Other => "other",
    }
}

crate::text_enum! {
    /// Only `published` sessions appear in the public programme and take registrations.
    pub enum SessionStatus {
        Draft => "draft",
        Published => "published",
        Cancelled => "cancelled",
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = sessions)]
pub struct Session {
    pub id: Uuid,
    pub event_id: Uuid,
    pub title: String,
    pub description: Option<String>,
    pub kind: SessionKind,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub venue_id: Option<Uuid>,
    pub track_id: Option<Uuid>,
    pub capacity: Option<i32>,
    pub waitlist_enabled: bool,
    pub registration_opens_at: Option<DateTime<Utc>>,
    pub registration_closes_at: Option<DateTime<Utc>>,
    pub status: SessionStatus,
    pub language: Option<String>,
    pub tags: Vec<Option<String>>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Session {
    /// Names this version of the session as shown: its times carry the offset of the event's
    /// time zone, so a new zone makes a new representation too.
    pub fn etag(&self, event: &Event) -> String {
        format!(
            "\"s{}-{}-{}\"",
            self.version,
            self.id.simple(),
            event.time_zone
        )
    }

    pub fn tags(&self) -> Vec<String> {
        self.tags.iter().flatten().cloned().collect()
    }
}

/// A session of the programme. Times carry the event's UTC offset.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    pub id: Uuid,
    pub event_id: Uuid,
    #[schema(example = "Социальное партнёрство. Социальное проектирование")]
    pub title: String,
    pub description: Option<String>,
    pub kind: SessionKind,
    #[schema(value_type = String, format = DateTime, example = "2026-04-24T11:00:00+03:00")]
    pub starts_at: DateTime<FixedOffset>,
    #[schema(value_type = String, format = DateTime, example = "2026-04-24T13:00:00+03:00")]
    pub ends_at: DateTime<FixedOffset>,
    pub venue_id: Option<Uuid>,
    pub track_id: Option<Uuid>,
    /// Seats; null: unlimited.
    pub capacity: Option<i32>,
    /// Whether registrations beyond capacity join a waitlist (otherwise they are refused).
    pub waitlist_enabled: bool,
    /// Overrides the event's registration window when set.
    pub registration_opens_at: Option<DateTime<Utc>>,
    pub registration_closes_at: Option<DateTime<Utc>>,
    pub status: SessionStatus,
    /// Language of the session, as a BCP 47 tag (`ru`, `en`).
    pub language: Option<String>,
    pub tags: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl SessionView {
    pub fn new(s: Session, event: &Event) -> Self {
        let tz = event.tz();
        SessionView {
            tags: s.tags(),
            id: s.id,
            event_id: s.event_id,
            title: s.title,
            description: s.description,
            kind: s.kind,
            starts_at: s.starts_at.with_timezone(&tz).fixed_offset(),
            ends_at: s.ends_at.with_timezone(&tz).fixed_offset(),
            venue_id: s.venue_id,
            track_id: s.track_id,
            capacity: s.capacity,
            waitlist_enabled: s.waitlist_enabled,
            registration_opens_at: s.registration_opens_at,
            registration_closes_at: s.registration_closes_at,
            status: s.status,
            language: s.language,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

/// A new session; it starts as a `draft` unless told otherwise.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSession {
    #[schema(max_length = 300)]
    pub title: String,
    #[serde(default)]
    #[schema(max_length = 20000)]
    pub description: Option<String>,
    pub kind: SessionKind,
    /// With a UTC offset, e.g. `2026-04-24T11:00:00+03:00`.
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    #[serde(default)]
    pub venue_id: Option<Uuid>,
    #[serde(default)]
    pub track_id: Option<Uuid>,
    /// Seats; absent or null: unlimited.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 100000)]
    pub capacity: Option<i32>,
    /// `true` when absent.
    #[serde(default)]
    pub waitlist_enabled: Option<bool>,
    #[serde(default)]
    pub registration_opens_at: Option<Timestamp>,
    #[serde(default)]
    pub registration_closes_at: Option<Timestamp>,
    #[serde(default)]
    pub status: Option<SessionStatus>,
    #[serde(default)]
    #[schema(example = "ru", max_length = 35)]
    pub language: Option<String>,
    #[serde(default)]
    #[schema(max_items = 20)]
    pub tags: Option<Vec<String>>,
}

/// Changes to a session (merge patch: absent = unchanged, null = cleared).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionPatch {
    #[serde(default, deserialize_with = "patch::non_null")]
    #[schema(nullable = false)]
    #[schema(max_length = 300)]
    pub title: Option<String>,
    #[serde(default, deserialize_with = "patch::nullable")]
    #[schema(value_type = Option<String>, max_length = 20000)]
    pub description: Option<Option<String>>,
    #[serde(default, deserialize_with = "patch::non_null")]
    #[schema(nullable = false)]
    pub kind: Option<SessionKind>,
    #[serde(default, deserialize_with = "patch::non_null")]
    #[schema(nullable = false)]
    pub starts_at: Option<Timestamp>,
    #[serde(default, deserialize_with = "patch::non_null")]
    #[schema(nullable = false)]
    pub ends_at: Option<Timestamp>,
    #[serde(default, deserialize_with = "patch::nullable")]
    #[schema(value_type = Option<Uuid>)]
    pub venue_id: Option<Option<Uuid>>,
    #[serde(default, deserialize_with = "patch::nullable")]
    #[schema(value_type = Option<Uuid>)]
    pub track_id: Option<Option<Uuid>>,
    /// Raising it promotes waitlisted registrations at once; it cannot go below the number
    /// of confirmed registrations.
    #[serde(default, deserialize_with = "patch::nullable")]
    #[schema(value_type = Option<i32>, minimum = 0, maximum = 100000)]
    pub capacity: Option<Option<i32>>,
    #[serde(default, deserialize_with = "patch::non_null")]
    #[schema(nullable = false)]
    pub waitlist_enabled: Option<bool>,
    #[serde(default, deserialize_with = "patch::nullable")]
    #[schema(value_type = Option<Timestamp>)]
    pub registration_opens_at: Option<Option<Timestamp>>,
    #[serde(default, deserialize_with = "patch::nullable")]
    #[schema(value_type = Option<Timestamp>)]
    pub registration_closes_at: Option<Option<Timestamp>>,
    #[serde(default, deserialize_with = "patch::non_null")]
    #[schema(nullable = false)]
    pub status: Option<SessionStatus>,
    #[serde(default, deserialize_with = "patch::nullable")]
    #[schema(value_type = Option<String>, max_length = 35)]
    pub language: Option<Option<String>>,
    #[serde(default, deserialize_with = "patch::nullable")]
    #[schema(value_type = Option<Vec<String>>, max_items = 20)]
    pub tags: Option<Option<Vec<String>>>,
}

impl SessionPatch {
    fn apply(self, s: &Session, tz: chrono_tz::Tz) -> NewSession {
        NewSession {
            title: self.title.unwrap_or_else(|| s.title.clone()),
            description: self.description.unwrap_or_else(|| s.description.clone()),
            kind: self.kind.unwrap_or(s.kind),
            starts_at: self
                .starts_at
                .unwrap_or_else(|| s.starts_at.with_timezone(&tz).fixed_offset().into()),
            ends_at: self
                .ends_at
                .unwrap_or_else(|| s.ends_at.with_timezone(&tz).fixed_offset().into()),
            venue_id: self.venue_id.unwrap_or(s.venue_id),
            track_id: self.track_id.unwrap_or(s.track_id),
            capacity: self.capacity.unwrap_or(s.capacity),
            waitlist_enabled: Some(self.waitlist_enabled.unwrap_or(s.waitlist_enabled)),
            registration_opens_at: self
                .registration_opens_at
                .unwrap_or(s.registration_opens_at.map(Timestamp::from)),
            registration_closes_at: self
                .registration_closes_at
                .unwrap_or(s.registration_closes_at.map(Timestamp::from)),
            status: Some(self.status.unwrap_or(s.status)),
            language: self.language.unwrap_or_else(|| s.language.clone()),
            tags: Some(
                self.tags
                    .unwrap_or_else(|| Some(s.tags()))
                    .unwrap_or_default(),
            ),
        }
    }
}

fn is_language_tag(value: &str) -> bool {
    let mut parts = value.split('-');
    let primary_ok = parts
        .next()
        .is_some_and(|p| (2..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphabetic()));
    primary_ok
        && value.len() <= 35
        && parts.all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Checks a session as it would be stored, against its event.
async fn validate(conn: &mut AsyncPgConnection, event: &Event, s: &NewSession) -> ApiResult<()> {
    let mut v = Validator::new();
    v.line("title", &s.title, 300);
    v.opt_text("description", s.description.as_deref(), 20000);
    let (starts_at, ends_at) = (s.starts_at.utc(), s.ends_at.utc());
    if ends_at <= starts_at {
        v.error("ends_at", "must be after starts_at");
    } else if ends_at - starts_at > chrono::Duration::days(7) {
        v.error("ends_at", "a session lasts at most 7 days");
    }
    let (first, last) = super::event_bounds(event.tz(), event.starts_on, event.ends_on);
    if starts_at < first || starts_at >= last {
        v.error(
            "starts_at",
            format!(
                "must be within the event's days ({} to {}, {})",
                event.starts_on, event.ends_on, event.time_zone
            ),
        );
    }
    if ends_at > last {
        v.error(
            "ends_at",
            format!(
                "must not be after the event's last day ({}, {})",
                event.ends_on, event.time_zone
            ),
        );
    }
    if let Some(capacity) = s.capacity {
        v.range("capacity", capacity, 0, 100_000);
    }
    if let (Some(opens), Some(closes)) = (s.registration_opens_at, s.registration_closes_at) {
        v.check(
            closes > opens,
            "registration_closes_at",
            "must be after registration_opens_at",
        );
    }
    if let Some(language) = &s.language {
        v.check(
            is_language_tag(language),
            "language",
            "must be a language tag such as ru or en",
        );
    }
    if let Some(tags) = &s.tags {
        v.list_len("tags", tags, 20);
        for (i, tag) in tags.iter().enumerate() {
            v.line(&format!("tags[{i}]"), tag, 50);
        }
    }
    if let Some(venue_id) = s.venue_id {
        let found: bool = diesel::select(diesel::dsl::exists(
            venues::table.filter(venues::id.eq(venue_id).and(venues::event_id.eq(event.id))),
        ))
        .get_results(conn)
        .await
        .and_then(crate::db::single)?;
        v.check(found, "venue_id", "is not a venue of this event");
    }
    if let Some(track_id) = s.track_id {
        let found: bool = diesel::select(diesel::dsl::exists(
            tracks::table.filter(tracks::id.eq(track_id).and(tracks::event_id.eq(event.id))),
        ))
        .get_results(conn)
        .await
        .and_then(crate::db::single)?;
        v.check(found, "track_id", "is not a track of this event");
    }
    v.finish()
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SessionListParams {
    /// Only sessions with this status (organisers; the public sees published ones only).
    pub status: Option<SessionStatus>,
    pub track_id: Option<Uuid>,
    pub venue_id: Option<Uuid>,
    /// Items per page, 1 to 200; 50 when absent.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// The event's sessions by start time; the public sees published ones only.
#[utoipa::path(
    tag = "programme",
    params(("event" = String, Path, description = "Event slug or id"), SessionListParams),
    responses(
        (status = 200, description = "One page of sessions.", body = Page<SessionView>),
        (status = 422, description = "`validation_failed`: bad `limit` or `cursor`.",
         body = Problem, content_type = "application/problem+json"),
        EventErrors,
    ),
    security((), ("bearer" = []))
)]
#[get("/events/{event}/sessions")]
async fn list_sessions(
    state: State,
    caller: Caller,
    path: web::Path<String>,
    params: Query<SessionListParams>,
) -> ApiResult<web::Json<Page<SessionView>>> {
    let limit = check_limit(params.limit)?;
    let after: Option<(Timestamp, Uuid)> =
        params.cursor.as_deref().map(decode_cursor).transpose()?;
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &path, EventAction::View).await?;
    let mut query = sessions::table
        .filter(sessions::event_id.eq(ctx.event.id))
        .select(Session::as_select())
        .order((sessions::starts_at, sessions::id))
        .limit(limit + 1)
        .into_boxed();
    if !ctx.sees_private() {
        query = query.filter(sessions::status.eq(SessionStatus::Published));
    }
    if let Some(status) = params.status {
        query = query.filter(sessions::status.eq(status));
    }
    if let Some(track_id) = params.track_id {
        query = query.filter(sessions::track_id.eq(track_id));
    }
    if let Some(venue_id) = params.venue_id {
        query = query.filter(sessions::venue_id.eq(venue_id));
    }
    if let Some((starts_at, id)) = after {
        let starts_at = starts_at.utc();
        query = query.filter(
            sessions::starts_at
                .gt(starts_at)
                .or(sessions::starts_at.eq(starts_at).and(sessions::id.gt(id))),
        );
    }
    let rows = query.load(&mut conn).await?;
    Ok(web::Json(
        Page::from_rows(rows, limit, |s| (Timestamp::from(s.starts_at), s.id))
            .map(|s| SessionView::new(s, &ctx.event)),
    ))
}

fn with_etag(session: Session, event: &Event, status: actix_web::http::StatusCode) -> HttpResponse {
    let etag = session.etag(event);
    HttpResponse::build(status)
        .insert_header(etag_header(&etag))
        .json(SessionView::new(session, event))
}

/// Validates a session against its event and adds it, with its pool of seats.
pub async fn create(
    conn: &mut AsyncPgConnection,
    event: &Event,
    s: &NewSession,
) -> ApiResult<Session> {
    validate(conn, event, s).await?;
    conn.transaction::<_, ApiError, _>(async |conn| {
        let session: Session = diesel::insert_into(sessions::table)
            .values((
                sessions::id.eq(Uuid::now_v7()),
                sessions::event_id.eq(event.id),
                sessions::title.eq(&s.title),
                sessions::description.eq(&s.description),
                sessions::kind.eq(s.kind),
                sessions::starts_at.eq(s.starts_at.utc()),
                sessions::ends_at.eq(s.ends_at.utc()),
                sessions::venue_id.eq(s.venue_id),
                sessions::track_id.eq(s.track_id),
                sessions::capacity.eq(s.capacity),
                sessions::waitlist_enabled.eq(s.waitlist_enabled.unwrap_or(true)),
                sessions::registration_opens_at.eq(s.registration_opens_at.map(Timestamp::utc)),
                sessions::registration_closes_at.eq(s.registration_closes_at.map(Timestamp::utc)),
                sessions::status.eq(s.status.unwrap_or(SessionStatus::Draft)),
                sessions::language.eq(&s.language),
                sessions::tags.eq(s.tags.clone().unwrap_or_default()),
            ))
            .returning(Session::as_returning())
            .get_results(conn)
            .await
            .and_then(crate::db::single)?;
        registrations::capacity::set_session_capacity(conn, &session, None).await?;
        Ok(session)
    })
    .await
}

/// Add a session.
#[utoipa::path(
    tag = "programme",
    params(("event" = String, Path, description = "Event slug or id")),
    request_body = NewSession,
    responses(
        (status = 201, description = "The session was added.", body = SessionView, headers(("ETag" = String))),
        EventErrors, BodyErrors,
    ),
    security(("bearer" = []))
)]
#[post("/events/{event}/sessions")]
async fn create_session(
    state: State,
    caller: Caller,
    path: web::Path<String>,
    body: Body<NewSession>,
) -> ApiResult<HttpResponse> {
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &path, EventAction::Edit).await?;
    let session = create(&mut conn, &ctx.event, &body).await?;
    state.event_changed(ctx.event.id);
    Ok(with_etag(
        session,
        &ctx.event,
        actix_web::http::StatusCode::CREATED,
    ))
}

/// A session the caller may see.
pub async fn visible(
    conn: &mut AsyncPgConnection,
    ctx: &EventContext,
    session_id: Uuid,
) -> ApiResult<Session> {
    let session: Option<Session> = sessions::table
        .filter(sessions::event_id.eq(ctx.event.id))
        .find(session_id)
        .select(Session::as_select())
        .first(conn)
        .await
        .optional()?;
    match session {
        Some(s) if s.status == SessionStatus::Published || ctx.sees_private() => Ok(s),
        _ => Err(ApiError::not_found("session")),
    }
}

/// One session.
#[utoipa::path(
    tag = "programme",
    params(
        ("event" = String, Path, description = "Event slug or id"),
        ("session_id" = Uuid, Path),
        ("If-None-Match" = Option<String>, Header, description = "ETag of a copy the caller holds; 304 when it is current"),
    ),
    responses(
        (status = 200, description = "The session.", body = SessionView, headers(("ETag" = String))),
        (status = 304, description = "The copy named by `If-None-Match` is current.",
         headers(("ETag" = String))),
        EventErrors,
    ),
    security((), ("bearer" = []))
)]
#[get("/events/{event}/sessions/{session_id}")]
async fn get_session(
    state: State,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<(String, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (event_ref, session_id) = path.into_inner();
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &event_ref, EventAction::View).await?;
    let session = visible(&mut conn, &ctx, session_id).await?;
    let etag = session.etag(&ctx.event);
    if is_fresh(&req, &etag) {
        return Ok(HttpResponse::NotModified()
            .insert_header(etag_header(&etag))
            .finish());
    }
    Ok(with_etag(
        session,
        &ctx.event,
        actix_web::http::StatusCode::OK,
    ))
}

/// One session as an iCalendar file (RFC 5545), in the event's time zone.
#[utoipa::path(
    tag = "programme",
    params(("event" = String, Path, description = "Event slug or id"), ("session_id" = Uuid, Path)),
    responses(
        (status = 200, description = "A calendar with the session.", body = String, content_type = "text/calendar"),
        EventErrors,
    ),
    security((), ("bearer" = []))
)]
#[get("/events/{event}/sessions/{session_id}/calendar.ics")]
async fn session_ics(
    state: State,
    caller: Caller,
    path: web::Path<(String, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (event_ref, session_id) = path.into_inner();
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &event_ref, EventAction::View).await?;
    let session = visible(&mut conn, &ctx, session_id).await?;
    let entries = super::public::entries_for(&mut conn, &ctx.event, vec![session]).await?;
    let calendar = super::ics::calendar(&ctx.event, &entries);
    Ok(super::ics::response(
        calendar,
        &format!("{}-{}", ctx.event.slug, session_id),
    ))
}

/// Change a session (merge patch). Send the ETag as `If-Match` so that two organisers
/// editing it cannot silently overwrite each other.
#[utoipa::path(
    tag = "programme",
    params(
        ("event" = String, Path, description = "Event slug or id"),
        ("session_id" = Uuid, Path),
        ("If-Match" = Option<String>, Header, description = "ETag the change is based on"),
    ),
    request_body(content = SessionPatch, content_type = "application/json"),
    responses(
        (status = 200, description = "The changed session.", body = SessionView, headers(("ETag" = String))),
        (status = 409, description = "`capacity_below_confirmed`: more registrations are confirmed than the new capacity.",
         body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`precondition_failed`: the session changed since the ETag in `If-Match`.",
         body = Problem, content_type = "application/problem+json"),
        EventErrors, BodyErrors,
    ),
    security(("bearer" = []))
)]
#[patch("/events/{event}/sessions/{session_id}")]
async fn update_session(
    state: State,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<(String, Uuid)>,
    body: Body<SessionPatch>,
) -> ApiResult<HttpResponse> {
    let (event_ref, session_id) = path.into_inner();
    let body = body.into_inner();
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &event_ref, EventAction::Edit).await?;
    let event = ctx.event.clone();
    let if_match = IfMatch::of(&req);
    let session = conn
        .transaction::<_, ApiError, _>(async |conn| {
            // Capacity changes rebalance seats under the session's lock; take it before the
            // row lock, in the same order as registrations do.
            if body.capacity.is_some() {
                registrations::capacity::lock_session_exclusive(conn, session_id).await?;
            }
            let current: Session = sessions::table
                .filter(sessions::event_id.eq(event.id))
                .find(session_id)
                .select(Session::as_select())
                .for_no_key_update()
                .first(conn)
                .await
                .optional()?
                .ok_or_else(|| ApiError::not_found("session"))?;
            if_match.check(&current.etag(&event))?;
            let next = body.apply(&current, event.tz());
            validate(conn, &event, &next).await?;
            let updated: Session = diesel::update(sessions::table.find(session_id))
                .set((
                    sessions::title.eq(&next.title),
                    sessions::description.eq(&next.description),
                    sessions::kind.eq(next.kind),
                    sessions::starts_at.eq(next.starts_at.utc()),
                    sessions::ends_at.eq(next.ends_at.utc()),
                    sessions::venue_id.eq(next.venue_id),
                    sessions::track_id.eq(next.track_id),
                    sessions::capacity.eq(next.capacity),
                    sessions::waitlist_enabled.eq(next.waitlist_enabled.unwrap_or(true)),
                    sessions::registration_opens_at
                        .eq(next.registration_opens_at.map(Timestamp::utc)),
                    sessions::registration_closes_at
                        .eq(next.registration_closes_at.map(Timestamp::utc)),
                    sessions::status.eq(next.status.unwrap_or(current.status)),
                    sessions::language.eq(&next.language),
                    sessions::tags.eq(next.tags.clone().unwrap_or_default()),
                    sessions::version.eq(sessions::version + 1),
                    sessions::updated_at.eq(Utc::now()),
                ))
                .returning(Session::as_returning())
                .get_results(conn)
                .await
                .and_then(crate::db::single)?;
            if updated.capacity != current.capacity {
                registrations::capacity::set_session_capacity(
                    conn,
                    &updated,
                    Some(current.capacity),
                )
                .await?;
            }
            Ok(updated)
        })
        .await?;
    state.event_changed(event.id);
    Ok(with_etag(session, &event, actix_web::http::StatusCode::OK))
}

/// Delete a session that has no active registrations (cancel it otherwise).
#[utoipa::path(
    tag = "programme",
    params(("event" = String, Path, description = "Event slug or id"), ("session_id" = Uuid, Path)),
    responses(
        (status = 204, description = "The session was deleted."),
        (status = 409, description = "`session_has_registrations`: cancel the session instead.",
         body = Problem, content_type = "application/problem+json"),
        EventErrors,
    ),
    security(("bearer" = []))
)]
#[delete("/events/{event}/sessions/{session_id}")]
async fn delete_session(
    state: State,
    caller: Caller,
    path: web::Path<(String, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (event_ref, session_id) = path.into_inner();
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &event_ref, EventAction::Edit).await?;
    registrations::capacity::delete_session(&mut conn, ctx.event.id, session_id).await?;
    state.event_changed(ctx.event.id);
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_tags() {
        for ok in ["ru", "en", "en-GB", "sr-Latn-RS"] {
            assert!(is_language_tag(ok), "{ok}");
        }
        for bad in ["", "r", "russian", "ru_RU", "ru-"] {
            assert!(!is_language_tag(bad), "{bad}");
        }
    }
}
