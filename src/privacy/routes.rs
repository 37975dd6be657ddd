//! The routes: a participant's export and erasure (`/registrations/{id}/…`, with the manage
//! token or as the event's organisers), and the organisers' erasure of a whole event, with a
//! dry run.

use actix_web::{get, post, web};
use chrono::Utc;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::erase::{ErasureReport, Reason, erase, erase_import_rows};
use super::export::{PersonalDataExport, collect};
use crate::access::{self, EventAction, RegistrationAction};
use crate::auth::Caller;
use crate::changes::Actor;
use crate::db::schema::registrations;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::Body;
use crate::openapi::{BodyErrors, EventErrors, RegistrationErrors};
use crate::registrations::RegistrationStatus;
use crate::state::State;

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(export_registration)
        .service(erase_registration)
        .service(erase_event);
}

/// Everything stored about the participant, as JSON: the registration, its sessions,
/// history, check-ins, mails, badge prints and webhook messages.
#[utoipa::path(
    tag = "personal data",
    params(("id" = Uuid, Path, description = "Registration id")),
    responses(
        (status = 200, description = "Everything stored about the participant.", body = PersonalDataExport),
        RegistrationErrors,
    ),
    security(("bearer" = []))
)]
#[get("/registrations/{id}/export")]
async fn export_registration(
    state: State,
    caller: Caller,
    id: web::Path<Uuid>,
) -> ApiResult<web::Json<PersonalDataExport>> {
    let mut conn = state.conn().await?;
    let ctx = access::registration(&mut conn, &caller, *id, RegistrationAction::Export).await?;
    Ok(web::Json(
        collect(&mut conn, &ctx.event, ctx.registration.id).await?,
    ))
}

/// Erase the participant's personal data: the name, address, organisation, position, city,
/// phone and manage token are overwritten, and what else names the person is removed; a
/// history entry without personal data records it. Before the event is over, an active
/// registration is cancelled first (its places go to the waitlists). It cannot be undone:
/// the manage token stops working at once. Erasing again changes nothing.
#[utoipa::path(
    tag = "personal data",
    params(("id" = Uuid, Path, description = "Registration id")),
    responses(
        (status = 200, description = "What was erased (nothing, when it was erased before).", body = ErasureReport),
        (status = 409, description = "`concurrent_change`: the registration changed at the same time, try again.",
         body = Problem, content_type = "application/problem+json"),
        RegistrationErrors,
    ),
    security(("bearer" = []))
)]
#[post("/registrations/{id}/erase")]
async fn erase_registration(
    state: State,
    caller: Caller,
    id: web::Path<Uuid>,
) -> ApiResult<web::Json<ErasureReport>> {
    let mut conn = state.conn().await?;
    let ctx = access::registration(&mut conn, &caller, *id, RegistrationAction::Erase).await?;
    let reason = if ctx.by_participant {
        Reason::ParticipantRequest
    } else {
        Reason::OrganiserRequest
    };
    if ctx.registration.erased_at.is_none()
        && ctx.registration.status == RegistrationStatus::Active
        && !super::event_over(&ctx.event, Utc::now())
    {
        crate::registrations::cancel(&mut conn, &ctx.event, &ctx.registration, ctx.actor).await?;
    }
    let report = conn
        .transaction::<_, ApiError, _>(async |conn| {
            erase(conn, &[ctx.registration.id], ctx.actor, reason).await
        })
        .await?;
    state.signals.committed();
    Ok(web::Json(report))
}

/// Erasing an event's personal data before its retention period ends.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventErasure {
    /// True: answer what would be erased, and change nothing.
    pub dry_run: bool,
}

/// Erase the personal data of every registration of the event now, instead of when its
/// retention period ends (`personal_data_retention_days` after its last day). Only once the
/// event is over. With `dry_run`, the same erasure runs and is rolled back: the answer says
/// exactly what it would change, and nothing is stored.
#[utoipa::path(
    tag = "personal data",
    params(("event" = String, Path, description = "Event slug or id")),
    request_body = EventErasure,
    responses(
        (status = 200, description = "What was (or, in a dry run, would be) erased.", body = ErasureReport),
        (status = 409, description = "`event_not_over`: the event's last day has not ended yet.",
         body = Problem, content_type = "application/problem+json"),
        EventErrors, BodyErrors,
    ),
    security(("bearer" = []))
)]
#[post("/events/{event}/personal-data/erase")]
async fn erase_event(
    state: State,
    caller: Caller,
    path: web::Path<String>,
    body: Body<EventErasure>,
) -> ApiResult<web::Json<ErasureReport>> {
    let dry_run = body.into_inner().dry_run;
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &path, EventAction::ErasePersonalData).await?;
    if !super::event_over(&ctx.event, Utc::now()) {
        return Err(ApiError::conflict(
            "event_not_over",
            "an event's personal data can be erased once its last day has ended",
        ));
    }
    let actor = match caller.user() {
        Some(user) => Actor::organiser(user.id),
        None => Actor::SYSTEM,
    };
    let report = erase_all(&mut conn, ctx.event.id, actor, dry_run).await?;
    if !dry_run {
        state.signals.committed();
    }
    Ok(web::Json(report))
}

/// Why the erasure's transaction ended without committing.
enum Stop {
    Failed(ApiError),
    /// A dry run: rolled back on purpose, with what it did.
    DryRun(ErasureReport),
}

impl From<diesel::result::Error> for Stop {
    fn from(error: diesel::result::Error) -> Self {
        Stop::Failed(error.into())
    }
}

impl From<ApiError> for Stop {
    fn from(error: ApiError) -> Self {
        Stop::Failed(error)
    }
}

/// Erases every registration of the event not erased yet; a dry run rolls it back.
async fn erase_all(
    conn: &mut AsyncPgConnection,
    event_id: Uuid,
    actor: Actor,
    dry_run: bool,
) -> ApiResult<ErasureReport> {
    let outcome = conn
        .transaction::<_, Stop, _>(async |conn| {
            let ids: Vec<Uuid> = registrations::table
                .filter(registrations::event_id.eq(event_id))
                .filter(registrations::erased_at.is_null())
                .select(registrations::id)
                .load(conn)
                .await?;
            let mut report = erase(conn, &ids, actor, Reason::EventErasure).await?;
            report.tables.import_rows += erase_import_rows(conn, &[event_id]).await?;
            if dry_run {
                Err(Stop::DryRun(ErasureReport {
                    dry_run: true,
                    ..report
                }))
            } else {
                Ok(report)
            }
        })
        .await;
    match outcome {
        Ok(report) | Err(Stop::DryRun(report)) => Ok(report),
        Err(Stop::Failed(error)) => Err(error),
    }
}
