//! `/registrations/{id}`: the participant's own registration (with its manage token), which
//! the event's organisers may also view, change and cancel.

use actix_web::{delete, get, patch, web};
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::booking::{self, Changes, Mode};
use super::public::check_session_list;
use super::{RegistrationView, view_of};
use crate::access::{self, RegistrationAction};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::events::Language;
use crate::extract::Body;
use crate::openapi::{BodyErrors, RegistrationErrors};
use crate::patch;
use crate::state::State;
use crate::validation::Validator;
use crate::validation::rules::is_phone;

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(get_registration)
        .service(update_registration)
        .service(cancel_registration);
}

/// Changes to a registration (merge patch). `session_ids` is the complete set wanted:
/// sessions left out are given up, new ones are booked under the same rules as registering.
/// `answers` is likewise the whole new set of answers.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistrationPatch {
    #[serde(default, deserialize_with = "patch::non_null")]
    #[schema(nullable = false)]
    #[schema(max_length = 200)]
    pub full_name: Option<String>,
    #[serde(default, deserialize_with = "patch::non_null")]
    #[schema(nullable = false)]
    #[schema(max_length = 254)]
    pub email: Option<String>,
    #[serde(default, deserialize_with = "patch::nullable")]
    #[schema(value_type = Option<String>, max_length = 300)]
    pub organisation: Option<Option<String>>,
    #[serde(default, deserialize_with = "patch::nullable")]
    #[schema(value_type = Option<String>, max_length = 300)]
    pub position: Option<Option<String>>,
    #[serde(default, deserialize_with = "patch::nullable")]
    #[schema(value_type = Option<String>, max_length = 200)]
    pub city: Option<Option<String>>,
    #[serde(default, deserialize_with = "patch::nullable")]
    #[schema(value_type = Option<String>, max_length = 50)]
    pub phone: Option<Option<String>>,
    #[serde(default, deserialize_with = "patch::non_null")]
    #[schema(nullable = false, pattern = "^[a-z0-9_-]{1,40}$")]
    pub category: Option<String>,
    /// The language of mail to the participant.
    #[serde(default, deserialize_with = "patch::non_null")]
    #[schema(nullable = false)]
    pub language: Option<Language>,
    #[serde(default, deserialize_with = "patch::non_null")]
    #[schema(nullable = false)]
    #[schema(max_items = 50)]
    pub session_ids: Option<Vec<Uuid>>,
    /// The whole new set of answers to the event's questions, by key: it replaces the old
    /// one (an answer left out is removed), and is checked against the form's JSON Schema
    /// with the registration's category (as changed in the same request) exactly as when
    /// registering; consents are not asked again. Places in choice options no longer chosen
    /// are given back, newly chosen options with places take one (`option_full` when none is
    /// left); options kept keep their place.
    #[serde(default, deserialize_with = "patch::non_null")]
    #[schema(value_type = Option<Object>, nullable = false, example = json!({"transfer": false, "direction": "projects"}))]
    pub answers: Option<serde_json::Map<String, serde_json::Value>>,
    /// Organisers only: confirm in full sessions, and take newly chosen options, beyond their
    /// capacity.
    #[serde(default)]
    pub over_capacity: bool,
}

fn validate(body: &RegistrationPatch) -> ApiResult<()> {
    let mut v = Validator::new();
    if let Some(name) = &body.full_name {
        v.line("full_name", name, 200);
    }
    if let Some(email) = &body.email {
        v.email("email", email);
    }
    // As when registering (`rules::optional_line`): these may be empty.
    v.opt_line(
        "organisation",
        body.organisation.as_ref().and_then(|o| o.as_deref()),
        300,
    );
    v.opt_line(
        "position",
        body.position.as_ref().and_then(|o| o.as_deref()),
        300,
    );
    v.opt_line("city", body.city.as_ref().and_then(|o| o.as_deref()), 200);
    if let Some(Some(phone)) = &body.phone {
        v.check(
            is_phone(phone),
            "phone",
            "must be a phone number: digits, spaces, + - ( ), at most 50 characters",
        );
    }
    if let Some(category) = &body.category {
        crate::forms::check_code(&mut v, "category", category);
    }
    if let Some(ids) = &body.session_ids {
        check_session_list(&mut v, "session_ids", ids);
    }
    v.finish()
}

/// A registration: the participant's own (manage token), or one of the event's (organisers).
#[utoipa::path(
    tag = "registrations",
    params(("id" = Uuid, Path, description = "Registration id")),
    responses((status = 200, description = "The registration.", body = RegistrationView), RegistrationErrors),
    security(("bearer" = []))
)]
#[get("/registrations/{id}")]
async fn get_registration(
    state: State,
    caller: Caller,
    id: web::Path<Uuid>,
) -> ApiResult<web::Json<RegistrationView>> {
    let mut conn = state.conn().await?;
    let ctx = access::registration(&mut conn, &caller, *id, RegistrationAction::View).await?;
    Ok(web::Json(view_of(&mut conn, ctx.registration.id).await?))
}

/// Change contact details, category, answers and sessions.
#[utoipa::path(
    tag = "registrations",
    params(("id" = Uuid, Path, description = "Registration id")),
    request_body(content = RegistrationPatch, content_type = "application/json"),
    responses(
        (status = 200, description = "The changed registration.", body = RegistrationView),
        (status = 409, description = "`session_full`, `event_full`, `already_registered`, `schedule_conflict`, \
            `registration_closed`, `session_cancelled`, `category_full` as when registering; \
            `option_full`: a newly chosen option has no places left (`field` names `answers.<key>`, \
            `option` the option; nothing is changed); \
            `registration_cancelled`: the registration was cancelled; \
            `registration_erased`: its personal data was erased, it cannot be changed; \
            `concurrent_change`: it changed at the same time, try again.",
         body = Problem, content_type = "application/problem+json"),
        RegistrationErrors, BodyErrors,
    ),
    security(("bearer" = []))
)]
#[patch("/registrations/{id}")]
async fn update_registration(
    state: State,
    caller: Caller,
    id: web::Path<Uuid>,
    body: Body<RegistrationPatch>,
) -> ApiResult<web::Json<RegistrationView>> {
    let body = body.into_inner();
    validate(&body)?;
    let mut conn = state.conn().await?;
    let ctx = access::registration(&mut conn, &caller, *id, RegistrationAction::Change).await?;
    if ctx.registration.erased_at.is_some() {
        return Err(ApiError::conflict(
            "registration_erased",
            "the registration's personal data was erased; it cannot be changed",
        ));
    }
    let mode = if ctx.by_participant {
        if body.over_capacity {
            return Err(ApiError::forbidden(
                "only organisers may confirm beyond capacity",
            ));
        }
        Mode::Public
    } else {
        Mode::Organiser {
            over_capacity: body.over_capacity,
        }
    };
    let changes = Changes {
        full_name: body.full_name,
        email: body.email,
        organisation: body.organisation,
        position: body.position,
        city: body.city,
        phone: body.phone,
        category: body.category,
        language: body.language,
        session_ids: body.session_ids,
        answers: body.answers.map(serde_json::Value::Object),
    };
    booking::change(
        &mut conn,
        &ctx.event,
        &ctx.registration,
        changes,
        mode,
        ctx.actor,
    )
    .await?;
    Ok(web::Json(view_of(&mut conn, ctx.registration.id).await?))
}

/// Cancel the registration and every place it holds; seats go to the waitlist at once.
#[utoipa::path(
    tag = "registrations",
    params(("id" = Uuid, Path, description = "Registration id")),
    responses(
        (status = 200, description = "The cancelled registration (cancelling again changes nothing).", body = RegistrationView),
        (status = 409, description = "`concurrent_change`: it changed at the same time, try again.",
         body = Problem, content_type = "application/problem+json"),
        RegistrationErrors,
    ),
    security(("bearer" = []))
)]
#[delete("/registrations/{id}")]
async fn cancel_registration(
    state: State,
    caller: Caller,
    id: web::Path<Uuid>,
) -> ApiResult<web::Json<RegistrationView>> {
    let mut conn = state.conn().await?;
    let ctx = access::registration(&mut conn, &caller, *id, RegistrationAction::Change).await?;
    booking::cancel(&mut conn, &ctx.event, &ctx.registration, ctx.actor).await?;
    Ok(web::Json(view_of(&mut conn, ctx.registration.id).await?))
}
