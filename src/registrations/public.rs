//! Public registration, as third-party frontends call it.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::booking::{self, Applicant, Mode, NewRegistration, Registered};
use super::catalog::Catalog;
use super::idempotency::IdempotencyRequest;
use super::{RegistrationStatus, SessionOutcome};
use crate::access::{self, EventAction, EventContext};
use crate::auth::{Caller, tokens};
use crate::changes::Actor;
use crate::error::{ApiResult, Problem};
use crate::events::Language;
use crate::extract::{self, Body};
use crate::forms::{self, FormCache};
use crate::openapi::{BodyErrors, EventErrors};
use crate::state::{AppState, State};
use crate::validation::{Validator, rules};

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(register).service(register_manually);
}

pub const MAX_SESSIONS: usize = 50;

/// A participant's registration.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRegistrationBody {
    #[schema(example = "Анна Сергеевна Иванова", max_length = 200)]
    pub full_name: String,
    /// One active registration per address and event (addresses compared regardless of case,
    /// Unicode compatibility forms and IDNA spelling of the domain).
    #[schema(example = "anna@example.org", max_length = 254)]
    pub email: String,
    #[serde(default)]
    #[schema(example = "АНО «Городские события»", max_length = 300)]
    pub organisation: Option<String>,
    #[serde(default)]
    #[schema(example = "Координатор волонтёров", max_length = 300)]
    pub position: Option<String>,
    #[serde(default)]
    #[schema(example = "Мончегорск", max_length = 200)]
    pub city: Option<String>,
    #[serde(default)]
    #[schema(example = "+7 815 365-00-00", max_length = 50)]
    pub phone: Option<String>,
    /// The code of one of the event's public categories (`GET /events/{event}/categories`;
    /// organisers may also use invite-only ones).
    #[schema(example = "business", pattern = "^[a-z0-9_-]{1,40}$")]
    pub category: String,
    /// Accepted consent texts of the event by key (`GET /events/{event}/registration-form`):
    /// every required one accepted, with `true` (the version in force is recorded) or with
    /// the number of the version shown, which must be the one in force.
    #[serde(default)]
    #[schema(nullable = false, example = json!({"personal_data": true, "photos": 2}))]
    pub consents: Option<std::collections::BTreeMap<String, forms::consents::Acceptance>>,
    /// The earlier form of `consents: {"personal_data": true}`, still accepted when
    /// `consents` is not sent; `false` is refused.
    #[serde(default)]
    #[schema(nullable = false)]
    pub consent: Option<bool>,
    /// Answers to the event's questions by key: see the form's JSON Schema.
    #[serde(default)]
    #[schema(value_type = Option<Object>, nullable = false, example = json!({"transfer": true, "direction": "volunteering"}))]
    pub answers: Option<serde_json::Map<String, serde_json::Value>>,
    /// Sessions to register for (none: the event only).
    #[serde(default)]
    #[schema(max_items = 50)]
    pub session_ids: Vec<Uuid>,
    /// The language of mail to the participant; absent: the first of `ru`, `en` the request's
    /// `Accept-Language` accepts, else the event's `default_language`.
    #[serde(default)]
    pub language: Option<Language>,
}

/// A participant added by an organiser: the fields of a participant's registration, and
/// `over_capacity`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ManualRegistrationBody {
    #[schema(example = "Анна Сергеевна Иванова", max_length = 200)]
    pub full_name: String,
    /// One active registration per address and event (addresses compared regardless of case,
    /// Unicode compatibility forms and IDNA spelling of the domain).
    #[schema(example = "anna@example.org", max_length = 254)]
    pub email: String,
    #[serde(default)]
    #[schema(example = "АНО «Городские события»", max_length = 300)]
    pub organisation: Option<String>,
    #[serde(default)]
    #[schema(example = "Координатор волонтёров", max_length = 300)]
    pub position: Option<String>,
    #[serde(default)]
    #[schema(example = "Мончегорск", max_length = 200)]
    pub city: Option<String>,
    #[serde(default)]
    #[schema(example = "+7 815 365-00-00", max_length = 50)]
    pub phone: Option<String>,
    /// The code of one of the event's public categories (`GET /events/{event}/categories`;
    /// organisers may also use invite-only ones).
    #[schema(example = "business", pattern = "^[a-z0-9_-]{1,40}$")]
    pub category: String,
    /// Accepted consent texts of the event by key (`GET /events/{event}/registration-form`):
    /// every required one accepted, with `true` (the version in force is recorded) or with
    /// the number of the version shown, which must be the one in force.
    #[serde(default)]
    #[schema(nullable = false, example = json!({"personal_data": true, "photos": 2}))]
    pub consents: Option<std::collections::BTreeMap<String, forms::consents::Acceptance>>,
    /// The earlier form of `consents: {"personal_data": true}`, still accepted when
    /// `consents` is not sent; `false` is refused.
    #[serde(default)]
    #[schema(nullable = false)]
    pub consent: Option<bool>,
    /// Answers to the event's questions by key: see the form's JSON Schema.
    #[serde(default)]
    #[schema(value_type = Option<Object>, nullable = false, example = json!({"transfer": true, "direction": "volunteering"}))]
    pub answers: Option<serde_json::Map<String, serde_json::Value>>,
    /// Sessions to register for (none: the event only).
    #[serde(default)]
    #[schema(max_items = 50)]
    pub session_ids: Vec<Uuid>,
    /// The language of mail to the participant; absent: the first of `ru`, `en` the request's
    /// `Accept-Language` accepts, else the event's `default_language`.
    #[serde(default)]
    pub language: Option<Language>,
    /// Confirm in full sessions beyond their capacity (and beyond the event's). Recorded in
    /// the registration's history.
    #[serde(default)]
    pub over_capacity: bool,
}

impl ManualRegistrationBody {
    /// The registration, and `over_capacity`. (Not `#[serde(flatten)]`: serde then loses the
    /// path of a member in error, and the strictness of `deny_unknown_fields`.)
    fn split(self) -> (NewRegistrationBody, bool) {
        (
            NewRegistrationBody {
                full_name: self.full_name,
                email: self.email,
                organisation: self.organisation,
                position: self.position,
                city: self.city,
                phone: self.phone,
                category: self.category,
                consent: self.consent,
                consents: self.consents,
                answers: self.answers,
                session_ids: self.session_ids,
                language: self.language,
            },
            self.over_capacity,
        )
    }
}

/// The new registration.
#[derive(Debug, Serialize, ToSchema)]
pub struct RegistrationCreated {
    pub id: Uuid,
    /// Shown once: send as `Authorization: Bearer rgm_…` to view, change or cancel the
    /// registration at `/api/v1/registrations/{id}`. Null when the event requires the
    /// address to be confirmed (the token is mailed to the address, in the link that
    /// confirms it), and in a replayed answer once a new link was mailed to the address
    /// (`…/registrations/resend`): that token went to the address alone.
    #[schema(example = "rgm_3q2l7kRj0cXx9nqAq1QvYh0s4m1b2x3y4z5a6b7c8d9")]
    pub manage_token: Option<String>,
    pub status: RegistrationStatus,
    /// The outcome for each session asked for, in the order asked.
    pub sessions: Vec<SessionOutcome>,
    /// Set when the category is full and has a waitlist: the registration waits for a
    /// place in it at this position (1 = next); null when it holds a place.
    pub category_waitlist_position: Option<i64>,
    /// The language of mail to the participant.
    pub language: Language,
    /// Set when the address must be confirmed: the registration holds its places until
    /// then, and is cancelled if the link mailed to the address is not followed in time.
    pub confirm_by: Option<DateTime<Utc>>,
}

/// The rules of the form's JSON Schema for a participant's details (`validation::rules`), for
/// bodies checked without a form (an import's rows).
pub fn validate_applicant(v: &mut Validator, body: &NewRegistrationBody) {
    v.line("full_name", &body.full_name, 200);
    v.email("email", &body.email);
    v.opt_line("organisation", body.organisation.as_deref(), 300);
    v.opt_line("position", body.position.as_deref(), 300);
    v.opt_line("city", body.city.as_deref(), 200);
    if let Some(phone) = &body.phone {
        v.check(
            rules::is_phone(phone),
            "phone",
            "must be a phone number: digits, spaces, + - ( ), at most 50 characters",
        );
    }
}

pub fn check_session_list(v: &mut Validator, field: &str, ids: &[Uuid]) {
    v.list_len(field, ids, MAX_SESSIONS);
    check_repeated_sessions(v, field, ids);
}

/// Each session listed once, whatever the case of its id's letters.
fn check_repeated_sessions(v: &mut Validator, field: &str, ids: &[Uuid]) {
    for (i, id) in ids.iter().enumerate() {
        if ids[..i].contains(id) {
            v.error(format!("{field}[{i}]"), "is listed twice");
        }
    }
}

/// What the form's JSON Schema cannot say of a body. The schema says the rest, and is
/// checked once the event's form is read (`Form::check`); reading the body into its type
/// before refuses nothing the schema accepts.
fn validate(body: &NewRegistrationBody) -> ApiResult<()> {
    let mut v = Validator::new();
    // Whether the address's domain is one: IDNA's mapping and Punycode, and the lengths of
    // its labels once converted, are beyond a regular expression.
    v.check(
        rules::domain_is_valid(&body.email),
        "email",
        "must be an email address",
    );
    // The same session twice in capital and small letters: `uniqueItems` compares the
    // strings, the server the sessions.
    check_repeated_sessions(&mut v, "session_ids", &body.session_ids);
    v.finish()
}

fn applicant(body: &NewRegistrationBody) -> Applicant {
    Applicant {
        full_name: body.full_name.clone(),
        email: body.email.trim().to_owned(),
        organisation: body.organisation.clone(),
        position: body.position.clone(),
        city: body.city.clone(),
        phone: body.phone.clone(),
        category: body.category.clone(),
    }
}

fn created(state: &AppState, outcome: Registered) -> HttpResponse {
    let token = outcome.token_nonce.map(|nonce| {
        tokens::derived(
            tokens::MANAGE_PREFIX,
            &state.keys.derive("manage-token"),
            &nonce,
        )
    });
    let mut response = HttpResponse::Created();
    response.insert_header(("Location", format!("/api/v1/registrations/{}", outcome.id)));
    if outcome.replayed {
        response.insert_header(("Idempotent-Replayed", "true"));
    }
    response.json(RegistrationCreated {
        id: outcome.id,
        manage_token: token,
        status: RegistrationStatus::Active,
        sessions: outcome.sessions,
        category_waitlist_position: outcome.category_waitlist_position,
        language: outcome.language,
        confirm_by: outcome.confirm_by,
    })
}

struct Request<'a> {
    event_ref: &'a str,
    body: &'a NewRegistrationBody,
    /// The body as sent (without `over_capacity`), to check against the event's form.
    raw: &'a Value,
    mode: Mode,
    idempotency: Option<IdempotencyRequest>,
    /// The language `Accept-Language` asks for, if it names one of ours.
    accepted_language: Option<Language>,
}

async fn run(state: &AppState, caller: &Caller, request: Request<'_>) -> ApiResult<HttpResponse> {
    let mut conn = state.conn().await?;
    let ids = &request.body.session_ids;
    // Anonymous participants are checked against what this instance read of the event a
    // moment ago (see `Catalog`); organisers against the database.
    let cached = request.mode == Mode::Public && matches!(caller, Caller::Anonymous);
    let (event, found) = if cached {
        let catalog = state.caches.get::<Catalog>();
        let event = match catalog.event(request.event_ref) {
            Some(event) => {
                let context = EventContext {
                    event,
                    member_role: None,
                    is_admin: false,
                };
                access::decide(caller, &context, EventAction::View)?;
                context.event
            }
            None => {
                let event = access::event(&mut conn, caller, request.event_ref, EventAction::View)
                    .await?
                    .event;
                catalog.keep_event(request.event_ref, &event);
                event
            }
        };
        let found = catalog.sessions(&mut conn, event.id, ids).await?;
        (event, found)
    } else {
        let action = match request.mode {
            Mode::Public => EventAction::View,
            Mode::Organiser { .. } => EventAction::Edit,
        };
        let event = access::event(&mut conn, caller, request.event_ref, action)
            .await?
            .event;
        let found = booking::sessions_of(&mut conn, event.id, ids).await?;
        (event, found)
    };
    let event = &event;
    // The body first, by the form's schema, then whether it can be had.
    let form = if cached {
        state
            .caches
            .get::<FormCache>()
            .form(&mut conn, event.id)
            .await?
    } else {
        Arc::new(forms::Form::load(&mut conn, event.id).await?)
    };
    form.check(
        request.raw,
        match request.mode {
            Mode::Public => forms::Audience::Public,
            Mode::Organiser { .. } => forms::Audience::Organiser,
        },
    )?;
    let now = Utc::now();
    booking::check_event(event, request.mode, now, !ids.is_empty())?;
    let sessions = booking::check_bookable(event, found, ids, request.mode, now, "session_ids")?;
    booking::check_overlaps(event, &sessions.iter().collect::<Vec<_>>())?;
    let answers = Value::Object(request.body.answers.clone().unwrap_or_default());
    let limited_options = form.limited_options(&answers);
    let accepted = form.accepted_consents(request.raw);
    let mut nonce = [0u8; 32];
    rand::fill(&mut nonce);
    let token = tokens::derived(
        tokens::MANAGE_PREFIX,
        &state.keys.derive("manage-token"),
        &nonce,
    );
    let outcome = booking::register(
        &mut conn,
        NewRegistration {
            event,
            applicant: &applicant(request.body),
            sessions: &sessions,
            mode: request.mode,
            actor: caller.user().map(|u| Actor::organiser(u.id)),
            token_hash: tokens::digest(&token),
            token_nonce: &nonce,
            language: request.body.language.or(request.accepted_language),
            idempotency: request.idempotency.as_ref(),
            answers: &answers,
            limited_options: &limited_options,
            consents: &accepted,
        },
    )
    .await?;
    Ok(created(state, outcome))
}

/// The language a request's `Accept-Language` asks for, if it names one of ours.
fn accepted_language(req: &HttpRequest) -> Option<Language> {
    req.headers()
        .get(actix_web::http::header::ACCEPT_LANGUAGE)
        .and_then(|value| value.to_str().ok())
        .and_then(Language::from_accept_language)
}

/// Register for an event and some of its sessions.
///
/// All or nothing: either every session gets an outcome (confirmed, or waitlisted with a
/// position) or nothing is created. Send an `Idempotency-Key` to make retries safe: the same
/// key and body within 24 hours get the original answer (with the same manage token, while it
/// is the one in force).
#[utoipa::path(
    tag = "registrations",
    params(
        ("event" = String, Path, description = "Event slug or id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes the request safe to retry: 1 to 255 visible ASCII characters"),
        ("Accept-Language" = Option<String>, Header, description = "Chooses the language of mail (`ru` or `en`) when the body names none"),
    ),
    request_body = NewRegistrationBody,
    responses(
        (status = 201, description = "Registered. `Idempotent-Replayed: true` marks the answer to a repeated request.",
         body = RegistrationCreated, headers(("Location" = String), ("Idempotent-Replayed" = String))),
        (status = 409, description = "`session_full`: a session without waitlist is full (`session_id`). \
            `event_full`: the event has no places left. \
            `category_full`: the category has no places left and no waitlist. \
            `option_full`: a chosen option has no places left (`field` names `answers.<key>`, `option` the option). \
            `already_registered`: this email has an active registration. \
            `schedule_conflict`: two sessions overlap (`sessions`). \
            `registration_closed`: outside the registration window (`session_id` when a session's). \
            `session_cancelled`: a session was cancelled (`session_id`). \
            `idempotency_key_in_use`: the first request with this key is still running (with \
            `Retry-After`).",
         body = Problem, content_type = "application/problem+json", headers(("Retry-After" = String))),
        (status = 422, description = "`validation_failed`: invalid fields (named in `errors`: \
            `answers.<key>`, `consents.<key>`, `category`…, as the form's JSON Schema says), a required consent \
            not accepted, or a session that is not a published session of the event. `idempotency_key_reused`: the key was used with another body.",
         body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`: too many registrations from this address; see `Retry-After`.",
         body = Problem, content_type = "application/problem+json"),
        EventErrors, BodyErrors,
    ),
    security((), ("bearer" = []))
)]
#[post("/events/{event}/registrations")]
async fn register(
    state: State,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
    body: Body<Value>,
) -> ApiResult<HttpResponse> {
    let raw = body.into_inner();
    let idempotency = match req.headers().get("idempotency-key") {
        Some(key) => Some(IdempotencyRequest::new(key.to_str().unwrap_or(""), &raw)?),
        None => None,
    };
    // Read as a value first: the idempotency digest is of the JSON, whatever its shape.
    let body: NewRegistrationBody = extract::from_value(raw.clone())?;
    validate(&body)?;
    state
        .rate_limits
        .check_registration(&state.db, &req)
        .await?;
    run(
        &state,
        &caller,
        Request {
            event_ref: &path,
            body: &body,
            raw: &raw,
            mode: Mode::Public,
            idempotency,
            accepted_language: accepted_language(&req),
        },
    )
    .await
}

/// Add a participant as an organiser: registration windows do not apply, and with
/// `over_capacity` full sessions confirm anyway (recorded in the history).
#[utoipa::path(
    tag = "registrations",
    params(
        ("event" = String, Path, description = "Event slug or id"),
        ("Accept-Language" = Option<String>, Header, description = "Chooses the language of mail (`ru` or `en`) when the body names none"),
    ),
    request_body = ManualRegistrationBody,
    responses(
        (status = 201, description = "Registered; pass the manage token on to the participant.",
         body = RegistrationCreated, headers(("Location" = String))),
        (status = 409, description = "`session_full`, `event_full`, `already_registered`, `schedule_conflict`, \
            `session_cancelled`, `registration_closed` (archived event), as for public registration.",
         body = Problem, content_type = "application/problem+json"),
        EventErrors, BodyErrors,
    ),
    security(("bearer" = []))
)]
#[post("/events/{event}/registrations/manual")]
async fn register_manually(
    state: State,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
    body: Body<Value>,
) -> ApiResult<HttpResponse> {
    let mut raw = body.into_inner();
    let manual: ManualRegistrationBody = extract::from_value(raw.clone())?;
    let (body, over_capacity) = manual.split();
    if let Some(object) = raw.as_object_mut() {
        object.remove("over_capacity");
    }
    validate(&body)?;
    run(
        &state,
        &caller,
        Request {
            event_ref: &path,
            body: &body,
            raw: &raw,
            mode: Mode::Organiser { over_capacity },
            idempotency: None,
            accepted_language: accepted_language(&req),
        },
    )
    .await
}
