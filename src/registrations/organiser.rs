//! The organisers' side: listing registrations, promoting from waitlists, counts, history.

use actix_web::{HttpRequest, get, post, web};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::capacity;
use super::counts::{self, SessionCountsView};
use super::history::{self, HistoryEntryView};
use super::{
    Registration, RegistrationStatus, RegistrationView, SessionRegistrationStatus, view_of,
    views_of,
};
use crate::access::{self, EventAction, RegistrationAction};
use crate::auth::Caller;
use crate::db::schema::{registration_sessions, registrations, sessions};
use crate::email;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{OptionalBody, from_query};
use crate::forms::{answers, categories, questions};
use crate::openapi::{BodyErrors, EventErrors, RegistrationErrors};
use crate::pagination::{Page, check_limit, decode_cursor};
use crate::programme::sessions::visible;
use crate::programme::{Session, SessionStatus};
use crate::state::State;
use crate::validation::Validator;

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(list_registrations)
        .service(registration_history)
        .service(promote)
        .service(session_counts)
        .service(event_session_counts)
        .service(waitlist);
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RegistrationListParams {
    /// `active` or `cancelled`.
    pub status: Option<RegistrationStatus>,
    /// Only registrations holding a place (confirmed or waitlisted) in this session.
    pub session_id: Option<Uuid>,
    /// With `session_id`: only those with this status in it.
    pub session_status: Option<SessionRegistrationStatus>,
    /// A category's code.
    pub category: Option<String>,
    /// Text in the name, email or organisation (case-insensitive; an address also in any of
    /// the forms that compare equal to it).
    #[param(max_length = 200)]
    pub q: Option<String>,
    /// Items per page, 1 to 200; 50 when absent.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

fn like_pattern(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// The query string split into the filters by answers (`answer.<key>`, in the order given)
/// and the other parameters.
fn split_query(query: &str) -> ApiResult<(Vec<(String, String)>, RegistrationListParams)> {
    let mut by_answer = Vec::new();
    let mut rest = form_urlencoded::Serializer::new(String::new());
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        match name.strip_prefix(answers::FILTER_PREFIX) {
            Some(key) => by_answer.push((key.to_owned(), value.into_owned())),
            None => {
                rest.append_pair(&name, &value);
            }
        }
    }
    Ok((by_answer, from_query(&rest.finish())?))
}

/// The event's registrations, oldest first, with filters.
///
/// Filter by answers with `answer.<question key>=<value>`, once per question (all must
/// hold): for a single choice the option's key, for a multiple choice an option's key
/// (among those chosen), `true` or `false` for a yes/no question, a number for a number
/// question (equal), and for the other types the answer exactly as given, e.g.
/// `?answer.direction=projects&answer.transfer=true`. An unknown question, or a value the
/// question cannot have, is a 422 naming `answer.<key>`; so is an unknown `category`.
#[utoipa::path(
    tag = "registrations",
    params(("event" = String, Path, description = "Event slug or id"), RegistrationListParams),
    responses(
        (status = 200, description = "One page of registrations.", body = Page<RegistrationView>),
        (status = 422, description = "`validation_failed`: a bad parameter, named in `errors` \
            (`q`, `category`, `answer.<key>`, `limit`, `cursor`).",
         body = Problem, content_type = "application/problem+json"),
        EventErrors,
    ),
    security(("bearer" = []))
)]
#[get("/events/{event}/registrations")]
async fn list_registrations(
    state: State,
    caller: Caller,
    path: web::Path<String>,
    req: HttpRequest,
) -> ApiResult<web::Json<Page<RegistrationView>>> {
    let (by_answer, params) = split_query(req.query_string())?;
    let limit = check_limit(params.limit)?;
    let after: Option<Uuid> = params.cursor.as_deref().map(decode_cursor).transpose()?;
    let mut v = Validator::new();
    v.opt_line("q", params.q.as_deref(), 200);
    v.finish()?;
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &path, EventAction::ViewPrivate).await?;
    let mut v = Validator::new();
    if let Some(code) = &params.category
        && !categories::of_event(&mut conn, ctx.event.id)
            .await?
            .iter()
            .any(|c| &c.code == code)
    {
        v.error("category", "is not a category of the event");
    }
    let mut contains = Vec::new();
    if !by_answer.is_empty() {
        let questions = questions::of_event(&mut conn, ctx.event.id).await?;
        for (key, value) in &by_answer {
            let field = format!("{}{key}", answers::FILTER_PREFIX);
            match questions.iter().find(|q| q.key() == key) {
                None => v.error(field, "is not a question of the event"),
                Some(q) => match answers::filter(q, value) {
                    Ok(answer) => contains.push(answer),
                    Err(message) => v.error(field, message),
                },
            }
        }
    }
    v.finish()?;
    let mut query = registrations::table
        .filter(registrations::event_id.eq(ctx.event.id))
        .select(Registration::as_select())
        .order(registrations::id)
        .limit(limit + 1)
        .into_boxed();
    if let Some(status) = params.status {
        query = query.filter(registrations::status.eq(status));
    }
    if let Some(category) = &params.category {
        query = query.filter(registrations::category.eq(category));
    }
    if let Some(session_id) = params.session_id {
        let mut holders = registration_sessions::table
            .filter(registration_sessions::session_id.eq(session_id))
            .select(registration_sessions::registration_id)
            .into_boxed();
        holders = match params.session_status {
            Some(status) => holders.filter(registration_sessions::status.eq(status)),
            None => holders
                .filter(registration_sessions::status.ne(SessionRegistrationStatus::Cancelled)),
        };
        query = query.filter(registrations::id.eq_any(holders));
    }
    if let Some(q) = params.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        let pattern = like_pattern(q);
        query = query.filter(
            registrations::full_name
                .ilike(pattern.clone())
                .or(registrations::email.ilike(pattern.clone()))
                .or(registrations::organisation.ilike(pattern))
                // An address in any of its forms (`STRASSE` finds `Straße@…`, an IDNA domain
                // finds its Unicode spelling), as addresses are compared.
                .or(registrations::email_normalized.like(like_pattern(&email::fold(q))))
                .or(registrations::email_normalized.eq(email::normalise(q))),
        );
    }
    // `@>`, which the GIN index on answers serves.
    for answer in contains {
        query = query.filter(registrations::answers.contains(answer));
    }
    if let Some(after) = after {
        query = query.filter(registrations::id.gt(after));
    }
    let rows = query.load(&mut conn).await?;
    let page = Page::from_rows(rows, limit, |r| r.id);
    let items = views_of(&mut conn, page.items).await?;
    Ok(web::Json(Page {
        items,
        next_cursor: page.next_cursor,
    }))
}

/// Every change of a registration, oldest first, with who made it.
#[utoipa::path(
    tag = "registrations",
    params(("id" = Uuid, Path, description = "Registration id")),
    responses((status = 200, description = "The registration's history.", body = Vec<HistoryEntryView>), RegistrationErrors),
    security(("bearer" = []))
)]
#[get("/registrations/{id}/history")]
async fn registration_history(
    state: State,
    caller: Caller,
    id: web::Path<Uuid>,
) -> ApiResult<web::Json<Vec<HistoryEntryView>>> {
    let mut conn = state.conn().await?;
    let ctx =
        access::registration(&mut conn, &caller, *id, RegistrationAction::ViewHistory).await?;
    Ok(web::Json(
        history::of_registration(&mut conn, ctx.registration.id).await?,
    ))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromoteBody {
    /// Confirm even when the session has no free seat (recorded in the history).
    #[serde(default)]
    pub over_capacity: bool,
}

/// Promote a waitlisted registration out of turn: into a free seat, or with
/// `over_capacity` beyond the session's capacity.
#[utoipa::path(
    tag = "registrations",
    params(
        ("id" = Uuid, Path, description = "Registration id"),
        ("session_id" = Uuid, Path, description = "Session id"),
    ),
    request_body(content = Option<PromoteBody>, description = "Optional."),
    responses(
        (status = 200, description = "The registration, confirmed in the session.", body = RegistrationView),
        (status = 409, description = "`not_waitlisted`: it is not on the session's waitlist. \
            `session_full`: no free seat and `over_capacity` not set.",
         body = Problem, content_type = "application/problem+json"),
        RegistrationErrors, BodyErrors,
    ),
    security(("bearer" = []))
)]
#[post("/registrations/{id}/sessions/{session_id}/promote")]
async fn promote(
    state: State,
    caller: Caller,
    path: web::Path<(Uuid, Uuid)>,
    body: OptionalBody<PromoteBody>,
) -> ApiResult<web::Json<RegistrationView>> {
    let (id, session_id) = path.into_inner();
    let over_capacity = body.into_inner().is_some_and(|b| b.over_capacity);
    let mut conn = state.conn().await?;
    let ctx = access::registration(&mut conn, &caller, id, RegistrationAction::Manage).await?;
    let session: Session = sessions::table
        .filter(sessions::event_id.eq(ctx.event.id))
        .find(session_id)
        .select(Session::as_select())
        .first(&mut conn)
        .await
        .optional()?
        .ok_or_else(|| ApiError::not_found("session"))?;
    conn.transaction::<_, ApiError, _>(async |conn| {
        capacity::promote(conn, id, &session, over_capacity, ctx.actor).await
    })
    .await?;
    Ok(web::Json(view_of(&mut conn, id).await?))
}

/// A session's capacity, confirmed and waitlisted registrations and seats left (counts only).
#[utoipa::path(
    tag = "registrations",
    params(("event" = String, Path, description = "Event slug or id"), ("session_id" = Uuid, Path)),
    responses((status = 200, description = "The session's numbers.", body = SessionCountsView), EventErrors),
    security((), ("bearer" = []))
)]
#[get("/events/{event}/sessions/{session_id}/counts")]
async fn session_counts(
    state: State,
    caller: Caller,
    path: web::Path<(String, Uuid)>,
) -> ApiResult<web::Json<SessionCountsView>> {
    let (event_ref, session_id) = path.into_inner();
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &event_ref, EventAction::View).await?;
    let session = visible(&mut conn, &ctx, session_id).await?;
    let found = counts::for_sessions(&mut conn, &[session.id]).await?;
    Ok(web::Json(SessionCountsView::new(
        session.id,
        session.capacity,
        found.get(&session.id).copied().unwrap_or_default(),
    )))
}

/// Numbers of every session of the event (the public sees published sessions only).
#[utoipa::path(
    tag = "registrations",
    params(("event" = String, Path, description = "Event slug or id")),
    responses((status = 200, description = "Each session's numbers, by start time.", body = Vec<SessionCountsView>), EventErrors),
    security((), ("bearer" = []))
)]
#[get("/events/{event}/session-counts")]
async fn event_session_counts(
    state: State,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<web::Json<Vec<SessionCountsView>>> {
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &path, EventAction::View).await?;
    let mut query = sessions::table
        .filter(sessions::event_id.eq(ctx.event.id))
        .order((sessions::starts_at, sessions::id))
        .select((sessions::id, sessions::capacity))
        .into_boxed();
    if !ctx.sees_private() {
        query = query.filter(sessions::status.eq(SessionStatus::Published));
    }
    let list: Vec<(Uuid, Option<i32>)> = query.load(&mut conn).await?;
    let ids: Vec<Uuid> = list.iter().map(|(id, _)| *id).collect();
    let found = counts::for_sessions(&mut conn, &ids).await?;
    Ok(web::Json(
        list.into_iter()
            .map(|(id, capacity)| {
                SessionCountsView::new(id, capacity, found.get(&id).copied().unwrap_or_default())
            })
            .collect(),
    ))
}

/// A place in a session's waitlist.
#[derive(Debug, Serialize, ToSchema, QueryableByName)]
pub struct WaitlistEntry {
    /// 1 = next to get a seat.
    #[diesel(sql_type = BigInt)]
    pub position: i64,
    #[diesel(sql_type = SqlUuid)]
    pub registration_id: Uuid,
    #[diesel(sql_type = Text)]
    pub full_name: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    pub organisation: Option<String>,
}

/// A session's waitlist, in order (organisers).
#[utoipa::path(
    tag = "registrations",
    params(("event" = String, Path, description = "Event slug or id"), ("session_id" = Uuid, Path)),
    responses((status = 200, description = "The waitlist, first in line first.", body = Vec<WaitlistEntry>), EventErrors),
    security(("bearer" = []))
)]
#[get("/events/{event}/sessions/{session_id}/waitlist")]
async fn waitlist(
    state: State,
    caller: Caller,
    path: web::Path<(String, Uuid)>,
) -> ApiResult<web::Json<Vec<WaitlistEntry>>> {
    let (event_ref, session_id) = path.into_inner();
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &event_ref, EventAction::ViewPrivate).await?;
    let session = visible(&mut conn, &ctx, session_id).await?;
    let entries = diesel::sql_query(
        "SELECT row_number() OVER (ORDER BY rs.waitlist_order) AS position, r.id AS registration_id, \
                r.full_name, r.organisation \
         FROM registration_sessions rs JOIN registrations r ON r.id = rs.registration_id \
         WHERE rs.session_id = $1 AND rs.status = 'waitlisted' \
         ORDER BY rs.waitlist_order",
    )
    .bind::<SqlUuid, _>(session.id)
    .load(&mut conn)
    .await?;
    Ok(web::Json(entries))
}
