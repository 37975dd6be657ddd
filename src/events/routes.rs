use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, web};
use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{Event, EventStatus, EventView, Language, MemberRole, members};
use crate::access::{self, EventAction};
use crate::auth::Caller;
use crate::conditional::{IfMatch, etag_header, is_fresh};
use crate::config::Environment;
use crate::dates::{Day, Timestamp};
use crate::db::schema::{event_members, events, sessions};
use crate::db::{self};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{Body, Query};
use crate::openapi::{BodyErrors, EventErrors, SignedIn};
use crate::pagination::{Page, check_limit, decode_cursor};
use crate::patch;
use crate::state::State;
use crate::validation::Validator;

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(create_event)
        .service(list_events)
        .service(get_event)
        .service(update_event)
        .service(delete_event)
        .configure(members::routes);
}

/// A new event; it starts as a `draft` unless told otherwise.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEvent {
    /// Lowercase letters, digits and hyphens; unique.
    #[schema(
        example = "vii-mmdn",
        pattern = "^[a-z0-9]+(-[a-z0-9]+)*$",
        max_length = 100
    )]
    pub slug: String,
    #[schema(
        example = "VII Мурманская международная деловая неделя",
        max_length = 300
    )]
    pub title: String,
    #[serde(default)]
    #[schema(max_length = 20000)]
    pub description: Option<String>,
    /// IANA time zone.
    #[schema(example = "Europe/Moscow", max_length = 64)]
    pub time_zone: String,
    pub starts_on: Day,
    pub ends_on: Day,
    #[serde(default)]
    #[schema(example = "Мурманск", max_length = 200)]
    pub city: Option<String>,
    #[serde(default)]
    pub status: Option<EventStatus>,
    #[serde(default)]
    pub registration_opens_at: Option<Timestamp>,
    /// Absent or null: public registration for the event alone closes when the event is over
    /// (the end of its last day in its time zone).
    #[serde(default)]
    pub registration_closes_at: Option<Timestamp>,
    /// Most active registrations the event takes; absent or null: no limit.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1000000)]
    pub capacity: Option<i32>,
    #[serde(default)]
    pub allow_overlapping_sessions: Option<bool>,
    /// The language of mail to participants who chose none; `ru` when absent.
    #[serde(default)]
    pub default_language: Option<Language>,
    /// Where participants manage their registration on the organiser's frontend: an https
    /// URL (http in development) with `{token}` and usually `{id}`, which mail fills in with
    /// the manage token and the registration's id. Without it, mail carries no link.
    #[serde(default)]
    #[schema(
        example = "https://portal.example.org/r/{id}?t={token}",
        max_length = 2000
    )]
    pub manage_url_template: Option<String>,
    /// Participants registering themselves must confirm their address (false when absent).
    #[serde(default)]
    pub require_email_confirmation: Option<bool>,
    /// How long a registration waiting for its address to be confirmed holds its places, in
    /// hours; 48 when absent.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 720)]
    pub email_confirmation_hours: Option<i32>,
    /// Hours before a participant's first session that the reminder is mailed; absent or
    /// null: the service's default; 0: none.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 720)]
    pub reminder_hours: Option<i32>,
    /// Days after the event's last day that participants' personal data is kept before it
    /// is anonymised; 90 when absent.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 3650)]
    pub personal_data_retention_days: Option<i32>,
}

/// Changes to an event (JSON merge patch: absent = unchanged, null = cleared).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventPatch {
    #[serde(default, deserialize_with = "patch::non_null")]
    #[schema(nullable = false)]
    #[schema(max_length = 100)]
    pub slug: Option<String>,
    #[serde(default, deserialize_with = "patch::non_null")]
    #[schema(nullable = false)]
    #[schema(max_length = 300)]
    pub title: Option<String>,
    #[serde(default, deserialize_with = "patch::nullable")]
    #[schema(value_type = Option<String>, max_length = 20000)]
    pub description: Option<Option<String>>,
    #[serde(default, deserialize_with = "patch::non_null")]
    #[schema(nullable = false)]
    #[schema(max_length = 64)]
    pub time_zone: Option<String>,
    #[serde(default, deserialize_with = "patch::non_null")]
    #[schema(nullable = false)]
    pub starts_on: Option<Day>,
    #[serde(default, deserialize_with = "patch::non_null")]
    #[schema(nullable = false)]
    pub ends_on: Option<Day>,
    #[serde(default, deserialize_with = "patch::nullable")]
    #[schema(value_type = Option<String>, max_length = 200)]
    pub city: Option<Option<String>>,
    #[serde(default, deserialize_with = "patch::non_null")]
    #[schema(nullable = false)]
    pub status: Option<EventStatus>,
    #[serde(default, deserialize_with = "patch::nullable")]
    #[schema(value_type = Option<Timestamp>)]
    pub registration_opens_at: Option<Option<Timestamp>>,
    /// Null: public registration for the event alone closes when the event is over.
    #[serde(default, deserialize_with = "patch::nullable")]
    #[schema(value_type = Option<Timestamp>)]
    pub registration_closes_at: Option<Option<Timestamp>>,
    #[serde(default, deserialize_with = "patch::nullable")]
    #[schema(value_type = Option<i32>, minimum = 0, maximum = 1000000)]
    pub capacity: Option<Option<i32>>,
    #[serde(default, deserialize_with = "patch::non_null")]
    #[schema(nullable = false)]
    pub allow_overlapping_sessions: Option<bool>,
    #[serde(default, deserialize_with = "patch::non_null")]
    #[schema(nullable = false)]
    pub default_language: Option<Language>,
    #[serde(default, deserialize_with = "patch::nullable")]
    #[schema(value_type = Option<String>, max_length = 2000)]
    pub manage_url_template: Option<Option<String>>,
    #[serde(default, deserialize_with = "patch::non_null")]
    #[schema(nullable = false)]
    pub require_email_confirmation: Option<bool>,
    #[serde(default, deserialize_with = "patch::non_null")]
    #[schema(nullable = false, minimum = 1, maximum = 720)]
    pub email_confirmation_hours: Option<i32>,
    #[serde(default, deserialize_with = "patch::nullable")]
    #[schema(value_type = Option<i32>, minimum = 0, maximum = 720)]
    pub reminder_hours: Option<Option<i32>>,
    #[serde(default, deserialize_with = "patch::non_null")]
    #[schema(nullable = false, minimum = 0, maximum = 3650)]
    pub personal_data_retention_days: Option<i32>,
}

impl EventPatch {
    /// The event as it would be after the patch.
    fn apply(self, e: &Event) -> NewEvent {
        NewEvent {
            slug: self.slug.unwrap_or_else(|| e.slug.clone()),
            title: self.title.unwrap_or_else(|| e.title.clone()),
            description: self.description.unwrap_or_else(|| e.description.clone()),
            time_zone: self.time_zone.unwrap_or_else(|| e.time_zone.clone()),
            starts_on: self.starts_on.unwrap_or(e.starts_on.into()),
            ends_on: self.ends_on.unwrap_or(e.ends_on.into()),
            city: self.city.unwrap_or_else(|| e.city.clone()),
            status: Some(self.status.unwrap_or(e.status)),
            registration_opens_at: self
                .registration_opens_at
                .unwrap_or(e.registration_opens_at.map(Timestamp::from)),
            registration_closes_at: self
                .registration_closes_at
                .unwrap_or(e.registration_closes_at.map(Timestamp::from)),
            capacity: self.capacity.unwrap_or(e.capacity),
            allow_overlapping_sessions: Some(
                self.allow_overlapping_sessions
                    .unwrap_or(e.allow_overlapping_sessions),
            ),
            default_language: Some(self.default_language.unwrap_or(e.default_language)),
            manage_url_template: self
                .manage_url_template
                .unwrap_or_else(|| e.manage_url_template.clone()),
            require_email_confirmation: Some(
                self.require_email_confirmation
                    .unwrap_or(e.require_email_confirmation),
            ),
            email_confirmation_hours: Some(
                self.email_confirmation_hours
                    .unwrap_or(e.email_confirmation_hours),
            ),
            reminder_hours: self.reminder_hours.unwrap_or(e.reminder_hours),
            personal_data_retention_days: Some(
                self.personal_data_retention_days
                    .unwrap_or(e.personal_data_retention_days),
            ),
        }
    }
}

/// How long participants' personal data is kept after an event, unless its organisers say
/// otherwise: long enough for follow-up (certificates, questions, the report), short enough
/// that data is not kept beyond its purpose.
pub const DEFAULT_RETENTION_DAYS: i32 = 90;

pub fn is_slug(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 100
        && value.split('-').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

/// The link to a registration's page on the organiser's frontend, from the event's template.
pub fn manage_url(template: &str, registration_id: Uuid, token: &str) -> String {
    // Both are URL-safe as they are (a UUID; base64url).
    template
        .replace("{id}", &registration_id.to_string())
        .replace("{token}", token)
}

pub const MAX_MANAGE_URL_TEMPLATE: usize = 2000;

/// What is wrong with a manage link template, if anything: it must become an https URL
/// (http too when `allow_http`) once its placeholders are filled, and carry the token.
fn manage_url_problem(template: &str, allow_http: bool) -> Option<&'static str> {
    if template.chars().count() > MAX_MANAGE_URL_TEMPLATE {
        return Some("must be at most 2000 characters");
    }
    if !template.contains("{token}") {
        return Some("must contain {token}, where the manage token goes");
    }
    let filled = manage_url(
        template,
        Uuid::nil(),
        "rgm_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    );
    if filled.contains(['{', '}']) {
        return Some("may hold only the placeholders {id} and {token}");
    }
    let Ok(url) = url::Url::parse(&filled) else {
        return Some("must be an absolute URL");
    };
    match url.scheme() {
        "https" => {}
        "http" if allow_http => {}
        _ if allow_http => return Some("must be an http or https URL"),
        _ => return Some("must be an https URL"),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Some("must name a host");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Some("must not carry credentials");
    }
    None
}

fn validate(event: &NewEvent, allow_http: bool) -> ApiResult<()> {
    let mut v = Validator::new();
    if !is_slug(&event.slug) {
        v.error(
            "slug",
            "must be lowercase letters, digits and single hyphens, at most 100 characters",
        );
    } else if event.slug.parse::<Uuid>().is_ok() {
        v.error("slug", "must not look like an id");
    }
    v.line("title", &event.title, 300);
    v.opt_text("description", event.description.as_deref(), 20000);
    if event.time_zone.parse::<Tz>().is_err() {
        v.error(
            "time_zone",
            "must be an IANA time zone such as Europe/Moscow",
        );
    }
    v.opt_line("city", event.city.as_deref(), 200);
    if event.ends_on < event.starts_on {
        v.error("ends_on", "must not be before starts_on");
    } else if event.ends_on.get() - event.starts_on.get() > Duration::days(366) {
        v.error("ends_on", "an event lasts at most a year");
    }
    if let (Some(opens), Some(closes)) = (event.registration_opens_at, event.registration_closes_at)
    {
        v.check(
            closes > opens,
            "registration_closes_at",
            "must be after registration_opens_at",
        );
    }
    if let Some(capacity) = event.capacity {
        v.range("capacity", capacity, 0, 1_000_000);
    }
    if let Some(problem) = event
        .manage_url_template
        .as_deref()
        .and_then(|template| manage_url_problem(template, allow_http))
    {
        v.error("manage_url_template", problem);
    }
    if event.require_email_confirmation == Some(true) && event.manage_url_template.is_none() {
        v.error(
            "manage_url_template",
            "is required when require_email_confirmation is true: the mail asking participants \
             to confirm their address links to it",
        );
    }
    if let Some(hours) = event.email_confirmation_hours {
        v.range("email_confirmation_hours", hours, 1, 720);
    }
    if let Some(hours) = event.reminder_hours {
        v.range("reminder_hours", hours, 0, 720);
    }
    if let Some(days) = event.personal_data_retention_days {
        v.range("personal_data_retention_days", days, 0, 3650);
    }
    v.finish()
}

fn slug_taken() -> ApiError {
    ApiError::conflict("slug_taken", "another event already uses this slug").with("field", "slug")
}

fn map_slug_conflict(error: diesel::result::Error) -> ApiError {
    match db::violated_constraint(&error) {
        Some("events_slug_key") => slug_taken(),
        _ => error.into(),
    }
}

fn with_etag(event: Event, status: actix_web::http::StatusCode) -> HttpResponse {
    let etag = event.etag();
    HttpResponse::build(status)
        .insert_header(etag_header(&etag))
        .json(EventView::from(event))
}

/// Validates and creates an event, with `owner` (if any) as its first owner; admins may
/// manage an event without members. `allow_http`: a manage link may be plain http
/// (development).
pub async fn create(
    conn: &mut AsyncPgConnection,
    body: &NewEvent,
    owner: Option<Uuid>,
    allow_http: bool,
) -> ApiResult<Event> {
    validate(body, allow_http)?;
    conn.transaction::<_, ApiError, _>(async |conn| {
        let event: Event = diesel::insert_into(events::table)
            .values((
                events::id.eq(Uuid::now_v7()),
                events::slug.eq(&body.slug),
                events::title.eq(&body.title),
                events::description.eq(&body.description),
                events::time_zone.eq(&body.time_zone),
                events::starts_on.eq(body.starts_on.get()),
                events::ends_on.eq(body.ends_on.get()),
                events::city.eq(&body.city),
                events::status.eq(body.status.unwrap_or(EventStatus::Draft)),
                events::registration_opens_at.eq(body.registration_opens_at.map(Timestamp::utc)),
                events::registration_closes_at.eq(body.registration_closes_at.map(Timestamp::utc)),
                events::capacity.eq(body.capacity),
                events::allow_overlapping_sessions
                    .eq(body.allow_overlapping_sessions.unwrap_or(false)),
                events::default_language.eq(body.default_language.unwrap_or(Language::Ru)),
                events::manage_url_template.eq(&body.manage_url_template),
                events::require_email_confirmation
                    .eq(body.require_email_confirmation.unwrap_or(false)),
                events::email_confirmation_hours.eq(body.email_confirmation_hours.unwrap_or(48)),
                events::reminder_hours.eq(body.reminder_hours),
                events::personal_data_retention_days.eq(body
                    .personal_data_retention_days
                    .unwrap_or(DEFAULT_RETENTION_DAYS)),
                events::created_by.eq(owner),
            ))
            .returning(Event::as_returning())
            .get_results(conn)
            .await
            .and_then(crate::db::single)
            .map_err(map_slug_conflict)?;
        if let Some(owner) = owner {
            diesel::insert_into(event_members::table)
                .values((
                    event_members::event_id.eq(event.id),
                    event_members::user_id.eq(owner),
                    event_members::role.eq(MemberRole::Owner),
                ))
                .execute(conn)
                .await?;
        }
        crate::registrations::capacity::set_event_capacity(conn, &event, event.capacity).await?;
        Ok(event)
    })
    .await
}

/// Create an event; the caller becomes its owner.
#[utoipa::path(
    tag = "events",
    request_body = NewEvent,
    responses(
        (status = 201, description = "The event was created.", body = EventView,
         headers(("ETag" = String), ("Location" = String))),
        (status = 409, description = "`slug_taken`: another event uses this slug.",
         body = Problem, content_type = "application/problem+json"),
        SignedIn, BodyErrors,
    ),
    security(("bearer" = []))
)]
#[post("/events")]
async fn create_event(
    state: State,
    caller: Caller,
    body: Body<NewEvent>,
) -> ApiResult<HttpResponse> {
    let user = access::require_user(&caller)?.clone();
    let mut conn = state.conn().await?;
    let allow_http = state.config.environment == Environment::Development;
    let event = create(&mut conn, &body, Some(user.id), allow_http).await?;
    let location = format!("/api/v1/events/{}", event.slug);
    let mut response = with_etag(event, actix_web::http::StatusCode::CREATED);
    response.headers_mut().insert(
        actix_web::http::header::LOCATION,
        actix_web::http::header::HeaderValue::from_str(&location).expect("slugs are URL-safe"),
    );
    Ok(response)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventListParams {
    /// Only events with this status.
    pub status: Option<EventStatus>,
    /// Items per page, 1 to 200; 50 when absent.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct EventCursor(Day, Uuid);

/// List events, by start date: published ones, and for organisers also their own.
#[utoipa::path(
    tag = "events",
    params(EventListParams),
    responses(
        (status = 200, description = "One page of events.", body = Page<EventView>),
        (status = 401, description = "`invalid_token`: a token was sent but is not valid.",
         body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: bad `limit` or `cursor`.",
         body = Problem, content_type = "application/problem+json"),
    ),
    security((), ("bearer" = []))
)]
#[get("/events")]
async fn list_events(
    state: State,
    caller: Caller,
    params: Query<EventListParams>,
) -> ApiResult<web::Json<Page<EventView>>> {
    let limit = check_limit(params.limit)?;
    let after: Option<EventCursor> = params.cursor.as_deref().map(decode_cursor).transpose()?;
    let mut query = events::table
        .select(Event::as_select())
        .order((events::starts_on, events::id))
        .limit(limit + 1)
        .into_boxed();
    match caller.user() {
        Some(user) if user.is_admin() => {}
        Some(user) => {
            let mine = event_members::table
                .filter(event_members::user_id.eq(user.id))
                .select(event_members::event_id);
            query = query.filter(
                events::status
                    .eq(EventStatus::Published)
                    .or(events::id.eq_any(mine)),
            );
        }
        None => query = query.filter(events::status.eq(EventStatus::Published)),
    }
    if let Some(status) = params.status {
        query = query.filter(events::status.eq(status));
    }
    if let Some(EventCursor(date, id)) = after {
        let date = date.get();
        query = query.filter(
            events::starts_on
                .gt(date)
                .or(events::starts_on.eq(date).and(events::id.gt(id))),
        );
    }
    let mut conn = state.conn().await?;
    let rows = query.load(&mut conn).await?;
    Ok(web::Json(
        Page::from_rows(rows, limit, |e| EventCursor(e.starts_on.into(), e.id))
            .map(EventView::from),
    ))
}

/// One event, by slug or id.
#[utoipa::path(
    tag = "events",
    params(
        ("event" = String, Path, description = "Event slug or id"),
        ("If-None-Match" = Option<String>, Header, description = "ETag of a copy the caller holds; 304 when it is current"),
    ),
    responses(
        (status = 200, description = "The event.", body = EventView, headers(("ETag" = String))),
        (status = 304, description = "The copy named by `If-None-Match` is current.",
         headers(("ETag" = String))),
        EventErrors,
    ),
    security((), ("bearer" = []))
)]
#[get("/events/{event}")]
async fn get_event(
    state: State,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &path, EventAction::View).await?;
    let etag = ctx.event.etag();
    if is_fresh(&req, &etag) {
        return Ok(HttpResponse::NotModified()
            .insert_header(etag_header(&etag))
            .finish());
    }
    Ok(with_etag(ctx.event, actix_web::http::StatusCode::OK))
}

/// Change an event (merge patch). Send the ETag as `If-Match` to be sure not to overwrite
/// someone else's change.
#[utoipa::path(
    tag = "events",
    params(
        ("event" = String, Path, description = "Event slug or id"),
        ("If-Match" = Option<String>, Header, description = "ETag the change is based on"),
    ),
    request_body(content = EventPatch, content_type = "application/json"),
    responses(
        (status = 200, description = "The changed event.", body = EventView, headers(("ETag" = String))),
        (status = 409, description = "`slug_taken`: another event uses this slug. \
            `capacity_below_registered`: more active registrations than the new capacity.",
         body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`precondition_failed`: the event changed since the ETag in `If-Match`.",
         body = Problem, content_type = "application/problem+json"),
        EventErrors, BodyErrors,
    ),
    security(("bearer" = []))
)]
#[patch("/events/{event}")]
async fn update_event(
    state: State,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
    body: Body<EventPatch>,
) -> ApiResult<HttpResponse> {
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &path, EventAction::Edit).await?;
    let event_id = ctx.event.id;
    let body = body.into_inner();
    let if_match = IfMatch::of(&req);
    let allow_http = state.config.environment == Environment::Development;
    let event = conn
        .transaction::<_, ApiError, _>(async |conn| {
            // A capacity change rebuilds the event's places under its lock; take it before
            // the row, in the order registrations take them (a slug change locks the row
            // against their foreign-key checks).
            if body.capacity.is_some() {
                crate::registrations::capacity::lock(
                    conn,
                    &[],
                    &[crate::registrations::capacity::event_lock_key(event_id)],
                )
                .await?;
            }
            let current: Event = events::table
                .find(event_id)
                .select(Event::as_select())
                .for_no_key_update()
                .first(conn)
                .await?;
            if_match.check(&current.etag())?;
            let next = body.apply(&current);
            validate(&next, allow_http)?;
            check_sessions_fit(conn, event_id, &next).await?;
            let updated: Event = diesel::update(events::table.find(event_id))
                .set((
                    events::slug.eq(&next.slug),
                    events::title.eq(&next.title),
                    events::description.eq(&next.description),
                    events::time_zone.eq(&next.time_zone),
                    events::starts_on.eq(next.starts_on.get()),
                    events::ends_on.eq(next.ends_on.get()),
                    events::city.eq(&next.city),
                    events::status.eq(next.status.unwrap_or(current.status)),
                    events::registration_opens_at
                        .eq(next.registration_opens_at.map(Timestamp::utc)),
                    events::registration_closes_at
                        .eq(next.registration_closes_at.map(Timestamp::utc)),
                    events::capacity.eq(next.capacity),
                    events::allow_overlapping_sessions
                        .eq(next.allow_overlapping_sessions.unwrap_or(false)),
                    events::default_language.eq(next.default_language.unwrap_or(Language::Ru)),
                    events::manage_url_template.eq(&next.manage_url_template),
                    events::require_email_confirmation
                        .eq(next.require_email_confirmation.unwrap_or(false)),
                    events::email_confirmation_hours
                        .eq(next.email_confirmation_hours.unwrap_or(48)),
                    events::reminder_hours.eq(next.reminder_hours),
                    events::personal_data_retention_days.eq(next
                        .personal_data_retention_days
                        .unwrap_or(DEFAULT_RETENTION_DAYS)),
                    events::version.eq(events::version + 1),
                    events::updated_at.eq(Utc::now()),
                ))
                .returning(Event::as_returning())
                .get_results(conn)
                .await
                .and_then(crate::db::single)
                .map_err(map_slug_conflict)?;
            if current.capacity != updated.capacity {
                crate::registrations::capacity::set_event_capacity(
                    conn,
                    &updated,
                    current.capacity,
                )
                .await?;
            }
            Ok(updated)
        })
        .await?;
    state.event_changed(event.id);
    Ok(with_etag(event, actix_web::http::StatusCode::OK))
}

/// Sessions must stay within the event's days (in its time zone) when those change.
async fn check_sessions_fit(
    conn: &mut AsyncPgConnection,
    event_id: Uuid,
    next: &NewEvent,
) -> ApiResult<()> {
    let Ok(tz) = next.time_zone.parse::<Tz>() else {
        return Ok(());
    };
    type Span = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);
    let span: Option<Span> = sessions::table
        .filter(sessions::event_id.eq(event_id))
        .select((
            diesel::dsl::min(sessions::starts_at),
            diesel::dsl::max(sessions::ends_at),
        ))
        .first(conn)
        .await
        .optional()?;
    if let Some((Some(first), Some(last))) = span {
        let (start, end) =
            crate::programme::event_bounds(tz, next.starts_on.get(), next.ends_on.get());
        if first < start {
            return Err(ApiError::invalid(
                "starts_on",
                "some sessions would start before the event",
            ));
        }
        if last > end {
            return Err(ApiError::invalid(
                "ends_on",
                "some sessions would end after the event",
            ));
        }
    }
    Ok(())
}

/// Delete an event that has no registrations (archive it otherwise).
#[utoipa::path(
    tag = "events",
    params(("event" = String, Path, description = "Event slug or id")),
    responses(
        (status = 204, description = "The event and its programme were deleted."),
        (status = 409, description = "`event_has_registrations`: archive the event instead.",
         body = Problem, content_type = "application/problem+json"),
        EventErrors,
    ),
    security(("bearer" = []))
)]
#[delete("/events/{event}")]
async fn delete_event(
    state: State,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &path, EventAction::Manage).await?;
    let deleted =
        crate::registrations::delete_event_without_registrations(&mut conn, ctx.event.id).await?;
    if !deleted {
        return Err(ApiError::conflict(
            "event_has_registrations",
            "the event has registrations; archive it instead",
        ));
    }
    state.event_changed(ctx.event.id);
    Ok(HttpResponse::NoContent().finish())
}
