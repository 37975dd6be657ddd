//! Printable badges as PDF, for an office printer when there is no badge printer at the
//! venue: the event's badges (filtered by category, session, not yet printed, or given
//! registrations) or one registration's badge, in the event's template and a layout.
//!
//! Asked with `mark_printed=true`, the badges count as printed the way the print queue's
//! acknowledgement does (`badge_printed_at`, and their open print jobs done), in the same
//! transaction that read them, and only once the PDF was made.

use actix_web::{HttpResponse, get, web};
use chrono::Utc;
use diesel::prelude::*;
use diesel::sql_types::{Array, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::feed::AttendeeRow;
use super::qr;
use super::render::{self, Badge, Layout};
use super::template::{self, Look};
use crate::access::{self, EventAction, RegistrationAction};
use crate::auth::Caller;
use crate::db::schema::{registration_sessions, registrations};
use crate::error::{ApiError, ApiResult, Problem};
use crate::events::Event;
use crate::extract::Query;
use crate::openapi::{EventErrors, RegistrationErrors};
use crate::registrations::{RegistrationStatus, SessionRegistrationStatus};
use crate::state::State;

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(event_badges).service(registration_badge);
}

/// Badges in one document at most.
pub const MAX_BADGES: i64 = 2000;
/// Registrations one `ids` may name.
const MAX_IDS: usize = 500;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct BadgesParams {
    /// `a6` (one a page), `a4x4` or `a4x8` (A4 sheets with cutting marks); the template's
    /// layout when absent.
    #[param(inline)]
    pub layout: Option<Layout>,
    /// Only attendees of this category.
    #[param(inline)]
    pub category: Option<String>,
    /// Only attendees confirmed for this session.
    pub session: Option<Uuid>,
    /// Only attendees whose badge is not printed yet.
    pub not_printed: Option<bool>,
    /// Only these registrations: ids separated by commas, at most 500.
    pub ids: Option<String>,
    /// Count the badges as printed (as the print queue does): owners, editors and printer
    /// keys.
    pub mark_printed: Option<bool>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct BadgeParams {
    /// `a6` (one a page), `a4x4` or `a4x8`; the template's layout when absent.
    #[param(inline)]
    pub layout: Option<Layout>,
    /// Count the badge as printed (as the print queue does): owners and editors only.
    pub mark_printed: Option<bool>,
}

fn parse_ids(ids: &str) -> ApiResult<Vec<Uuid>> {
    let parsed: Result<Vec<Uuid>, _> = ids
        .split(',')
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::parse)
        .collect();
    match parsed {
        Err(_) => Err(ApiError::invalid(
            "ids",
            "must be registration ids separated by commas",
        )),
        Ok(ids) if ids.is_empty() => Err(ApiError::invalid("ids", "must name a registration")),
        Ok(ids) if ids.len() > MAX_IDS => Err(ApiError::invalid(
            "ids",
            format!("must name at most {MAX_IDS} registrations"),
        )),
        Ok(ids) => Ok(ids),
    }
}

/// Whose badges to print.
enum Selection {
    Event {
        event_id: Uuid,
        category: Option<String>,
        session: Option<Uuid>,
        not_printed: bool,
        ids: Option<Vec<Uuid>>,
    },
    One(Uuid),
}

impl Selection {
    async fn load(self, conn: &mut AsyncPgConnection) -> ApiResult<Vec<AttendeeRow>> {
        let (event_id, category, session, not_printed, ids) = match self {
            Selection::One(id) => {
                return Ok(registrations::table
                    .find(id)
                    .select(AttendeeRow::as_select())
                    .load(conn)
                    .await?);
            }
            Selection::Event {
                event_id,
                category,
                session,
                not_printed,
                ids,
            } => (event_id, category, session, not_printed, ids),
        };
        let mut query = registrations::table
            .filter(registrations::event_id.eq(event_id))
            .filter(registrations::status.eq(RegistrationStatus::Active))
            .order((registrations::full_name, registrations::id))
            .limit(MAX_BADGES + 1)
            .select(AttendeeRow::as_select())
            .into_boxed();
        if let Some(category) = category {
            query = query.filter(registrations::category.eq(category));
        }
        if let Some(session) = session {
            let confirmed = registration_sessions::table
                .filter(registration_sessions::session_id.eq(session))
                .filter(registration_sessions::status.eq(SessionRegistrationStatus::Confirmed))
                .select(registration_sessions::registration_id);
            query = query.filter(registrations::id.eq_any(confirmed));
        }
        if not_printed {
            query = query.filter(registrations::badge_printed_at.is_null());
        }
        if let Some(ids) = ids {
            query = query.filter(registrations::id.eq_any(ids));
        }
        let rows: Vec<AttendeeRow> = query.load(conn).await?;
        if rows.len() as i64 > MAX_BADGES {
            return Err(ApiError::new(
                actix_web::http::StatusCode::UNPROCESSABLE_ENTITY,
                "too_many_badges",
                format!("more than {MAX_BADGES} badges match; narrow the filters"),
            ));
        }
        if rows.is_empty() {
            return Err(ApiError::new(
                actix_web::http::StatusCode::NOT_FOUND,
                "no_badges",
                "no attendee matches the filters",
            ));
        }
        Ok(rows)
    }
}

/// The badges of these rows, with their QR codes, in the event's look.
fn badges(key: &ed25519_dalek::SigningKey, look: &Look, rows: &[AttendeeRow]) -> Vec<Badge> {
    rows.iter()
        .map(|r| {
            let (band, colour) = look.band(&r.category);
            let shown = |show: bool, value: &Option<String>| value.clone().filter(|_| show);
            Badge {
                full_name: r.full_name.clone(),
                organisation: shown(look.fields.organisation, &r.organisation),
                position: shown(look.fields.position, &r.position),
                city: shown(look.fields.city, &r.city),
                band,
                colour,
                qr_code: qr::encode(key, r.event_id, r.id),
            }
        })
        .collect()
}

/// Renders the rows' badges and, when asked, marks them printed, in one transaction.
async fn print(
    conn: &mut AsyncPgConnection,
    state: &State,
    event: &Event,
    layout: Option<Layout>,
    mark_printed: bool,
    selection: Selection,
) -> ApiResult<(Vec<u8>, usize)> {
    let key = qr::signing_key(conn, &state.sealing, event.id).await?;
    let look = template::look(conn, event).await?;
    conn.transaction::<_, ApiError, _>(async |conn| {
        let rows = selection.load(conn).await?;
        let count = rows.len();
        let badges = badges(&key, &look, &rows);
        let layout = layout.unwrap_or(look.layout);
        let design = look.design.clone();
        let pdf = tokio::task::spawn_blocking(move || render::render(&badges, &design, layout))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)?;
        if mark_printed {
            let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
            mark(conn, &ids).await?;
        }
        Ok((pdf, count))
    })
    .await
}

/// The print queue's acknowledgement, for badges printed from a PDF.
async fn mark(conn: &mut AsyncPgConnection, ids: &[Uuid]) -> ApiResult<()> {
    diesel::update(
        registrations::table
            .filter(registrations::id.eq_any(ids))
            .filter(registrations::status.eq(RegistrationStatus::Active)),
    )
    .set(registrations::badge_printed_at.eq(Utc::now()))
    .execute(conn)
    .await?;
    diesel::sql_query(
        "UPDATE print_jobs SET status = 'done', done_at = now(), lease_expires_at = NULL \
         WHERE registration_id = ANY($1) AND status IN ('queued', 'claimed')",
    )
    .bind::<Array<SqlUuid>, _>(ids)
    .execute(conn)
    .await?;
    Ok(())
}

fn pdf_answer(pdf: Vec<u8>, count: usize, file_name: &str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/pdf")
        .insert_header((
            actix_web::http::header::CONTENT_DISPOSITION,
            format!("inline; filename=\"{file_name}\""),
        ))
        .insert_header(("Badge-Count", count.to_string()))
        .body(pdf)
}

/// The event's badges as a PDF to print: active attendees, by name, filtered by category,
/// session, not yet printed, or given ids (filters combine). With `mark_printed=true` they
/// count as printed, as if the print queue had printed them (their open print jobs are done).
#[utoipa::path(
    tag = "badges",
    params(("event" = String, Path, description = "Event slug or id"), BadgesParams),
    responses(
        (status = 200, description = "The badges.", body = Vec<u8>, content_type = "application/pdf",
         headers(("Badge-Count" = u32, description = "How many badges the document holds."))),
        (status = 404, description = "`not_found`: no such event, or the caller may not see it. \
            `no_badges`: no attendee matches the filters.",
         body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: a bad filter (the field is named). \
            `too_many_badges`: more than 2000 badges match; narrow the filters.",
         body = Problem, content_type = "application/problem+json"),
        EventErrors,
    ),
    security(("bearer" = []))
)]
#[get("/events/{event}/badges.pdf")]
async fn event_badges(
    state: State,
    caller: Caller,
    path: web::Path<String>,
    params: Query<BadgesParams>,
) -> ApiResult<HttpResponse> {
    let params = params.into_inner();
    let ids = params.ids.as_deref().map(parse_ids).transpose()?;
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &path, EventAction::PrintBadges).await?;
    let event_id = ctx.event.id;
    if let Some(code) = &params.category
        && !crate::forms::categories::of_event(&mut conn, event_id)
            .await?
            .iter()
            .any(|c| &c.code == code)
    {
        let mut v = crate::validation::Validator::new();
        v.error("category", "is not a category of the event");
        v.finish()?;
    }
    let (category, session, not_printed) = (
        params.category,
        params.session,
        params.not_printed.unwrap_or(false),
    );
    let selection = Selection::Event {
        event_id,
        category,
        session,
        not_printed,
        ids,
    };
    let mark_printed = params.mark_printed.unwrap_or(false);
    let (pdf, count) = print(
        &mut conn,
        &state,
        &ctx.event,
        params.layout,
        mark_printed,
        selection,
    )
    .await?;
    Ok(pdf_answer(
        pdf,
        count,
        &format!("{}-badges.pdf", ctx.event.slug),
    ))
}

/// One registration's badge as a PDF (its participant with the manage token, or organisers).
/// With `mark_printed=true` (owners and editors) it counts as printed.
#[utoipa::path(
    tag = "badges",
    params(("id" = Uuid, Path, description = "Registration id"), BadgeParams),
    responses(
        (status = 200, description = "The badge.", body = Vec<u8>, content_type = "application/pdf",
         headers(("Badge-Count" = u32, description = "How many badges the document holds."))),
        (status = 409, description = "`registration_cancelled`: a cancelled registration has no badge.",
         body = Problem, content_type = "application/problem+json"),
        RegistrationErrors,
    ),
    security(("bearer" = []))
)]
#[get("/registrations/{id}/badge.pdf")]
async fn registration_badge(
    state: State,
    caller: Caller,
    id: web::Path<Uuid>,
    params: Query<BadgeParams>,
) -> ApiResult<HttpResponse> {
    let id = id.into_inner();
    let mut conn = state.conn().await?;
    let ctx = access::registration(&mut conn, &caller, id, RegistrationAction::View).await?;
    let mark_printed = params.mark_printed.unwrap_or(false);
    if mark_printed {
        access::event(
            &mut conn,
            &caller,
            &ctx.event.id.to_string(),
            EventAction::PrintBadges,
        )
        .await?;
    }
    if ctx.registration.status != RegistrationStatus::Active {
        return Err(ApiError::conflict(
            "registration_cancelled",
            "a cancelled registration has no badge",
        ));
    }
    let selection = Selection::One(id);
    let (pdf, count) = print(
        &mut conn,
        &state,
        &ctx.event,
        params.layout,
        mark_printed,
        selection,
    )
    .await?;
    Ok(pdf_answer(pdf, count, &format!("badge-{id}.pdf")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_read_from_a_comma_separated_list() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(parse_ids(&format!("{a}, {b},")).unwrap(), [a, b]);
        for bad in ["", ",", "not-an-id", &format!("{a},x")] {
            let problem = parse_ids(bad).unwrap_err();
            assert_eq!(problem.code(), "validation_failed", "{bad}");
        }
    }
}
