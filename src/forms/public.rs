//! `GET /events/{event}/registration-form`: everything a frontend needs to render and check
//! an event's registration form without code of its own per event.

use actix_web::{get, web};
use chrono::Utc;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::Localized;
use super::categories;
use super::form::{Audience, Form};
use super::questions::{self, QuestionView};
use crate::access::{self, EventAction};
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::events::Language;
use crate::openapi::EventErrors;
use crate::state::State;

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(get_registration_form);
}

/// The event the form registers for.
#[derive(Debug, Serialize, ToSchema)]
pub struct FormEvent {
    pub id: Uuid,
    pub slug: String,
    pub title: String,
    /// The event's default language.
    pub language: Language,
    #[schema(example = "Europe/Moscow")]
    pub time_zone: String,
}

/// A category participants may choose.
#[derive(Debug, Serialize, ToSchema)]
pub struct FormCategory {
    #[schema(example = "business")]
    pub code: String,
    pub name: Localized,
    /// Null: unlimited.
    pub capacity: Option<i32>,
    /// Null: unlimited.
    pub places_left: Option<i64>,
    /// When full, registrations wait in line for a place.
    pub waitlist: bool,
    /// No places left (with a waitlist, registrations still join it).
    pub full: bool,
    /// Within its registration window now.
    pub open: bool,
}

/// A consent text to accept (`consents.<key>: true`).
#[derive(Debug, Serialize, ToSchema)]
pub struct FormConsent {
    #[schema(example = "personal_data")]
    pub key: String,
    /// The version in force; registrations record the one they accepted.
    pub version: i32,
    /// Registering without accepting it is refused.
    pub required: bool,
    pub text: Localized,
}

/// The registration form of an event.
#[derive(Debug, Serialize, ToSchema)]
pub struct RegistrationForm {
    pub event: FormEvent,
    /// Public categories, in order.
    pub categories: Vec<FormCategory>,
    /// In the order to ask them.
    pub questions: Vec<QuestionView>,
    pub consents: Vec<FormConsent>,
    /// JSON Schema (2020-12) of the body of `POST /events/{event}/registrations`: the server
    /// checks bodies against this same schema.
    #[schema(value_type = Object)]
    pub schema: Value,
}

/// The registration form: categories, questions, consents, and the JSON Schema of the body.
#[utoipa::path(
    tag = "forms",
    params(("event" = String, Path, description = "Event slug or id")),
    responses((status = 200, description = "The form.", body = RegistrationForm), EventErrors),
    security((), ("bearer" = []))
)]
#[get("/events/{event}/registration-form")]
async fn get_registration_form(
    state: State,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<web::Json<RegistrationForm>> {
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &path, EventAction::View).await?;
    let event = ctx.event;
    let form = Form::load(&mut conn, event.id).await?;
    let counts = categories::counts(&mut conn, event.id).await?;
    let left = questions::places_left(&mut conn, event.id).await?;
    let now = Utc::now();
    let categories = form
        .categories
        .iter()
        .filter(|c| c.public)
        .map(|c| {
            let places_left = c.capacity.map(|capacity| {
                counts
                    .iter()
                    .find(|n| n.code == c.code)
                    .and_then(|n| n.places_left)
                    .unwrap_or(capacity.into())
            });
            FormCategory {
                code: c.code.clone(),
                name: Localized::new(&c.name_ru, &c.name_en),
                capacity: c.capacity,
                places_left,
                waitlist: c.waitlist,
                full: places_left == Some(0),
                open: c.open_at(now),
            }
        })
        .collect();
    Ok(web::Json(RegistrationForm {
        event: FormEvent {
            id: event.id,
            slug: event.slug.clone(),
            title: event.title.clone(),
            language: event.default_language,
            time_zone: event.time_zone.clone(),
        },
        categories,
        questions: form
            .questions
            .iter()
            .map(|q| QuestionView::new(q, &|o| left.get(&o.id).copied()))
            .collect(),
        consents: form
            .consents
            .iter()
            .map(|c| FormConsent {
                key: c.key.clone(),
                version: c.version,
                required: c.required,
                text: Localized::new(&c.text_ru, &c.text_en),
            })
            .collect(),
        schema: form.schema(Audience::Public),
    }))
}
