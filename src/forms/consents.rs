//! Consent texts of an event (the processing of personal data, and optional ones such as
//! photos or mailings), kept in versions: a registration records which version of which text
//! it accepted, and when.
//!
//! Organisers manage them here. A text, once a version of it exists, is never changed in
//! place: a new text is a new version, and the old ones stay, so every registration can show
//! the very words it agreed to. Whether a consent is required and where it is listed change
//! without a new version (they are not part of what was agreed to). A consent that some
//! registration accepted is never deleted: the record of the acceptance is the organiser's
//! proof; it can be made optional instead. `personal_data` is the consent registering has
//! always asked for (the `consent` field of registration bodies stands for it): it stays, and
//! stays required.

use std::collections::HashMap;

use actix_web::{HttpResponse, delete, get, patch, post, web};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, Bool, Integer, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Localized, LocalizedInput, check_code};
use crate::access::{self, EventAction};
use crate::auth::Caller;
use crate::db::schema::{form_consent_versions, form_consents};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::Body;
use crate::openapi::{BodyErrors, EventErrors};
use crate::patch;
use crate::state::State;
use crate::validation::Validator;

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(list_consents)
        .service(create_consent)
        .service(get_consent)
        .service(update_consent)
        .service(delete_consent)
        .service(list_versions);
}

/// At most this many consents per event.
const MAX_CONSENTS: i64 = 50;
/// At most this many characters in each language of a text.
const MAX_TEXT: usize = 10_000;

/// The consent to the processing of personal data every event starts with; the `consent`
/// field of registration bodies accepts it.
pub const PERSONAL_DATA: &str = "personal_data";

/// A consent as it is now: its current version's text.
#[derive(Debug, Clone, Queryable)]
pub struct CurrentConsent {
    pub id: Uuid,
    pub key: String,
    pub required: bool,
    pub position: i32,
    pub version: i32,
    pub text_ru: String,
    pub text_en: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The event's consents with their current texts, in their order.
pub async fn current(
    conn: &mut AsyncPgConnection,
    event_id: Uuid,
) -> ApiResult<Vec<CurrentConsent>> {
    Ok(form_consents::table
        .inner_join(
            form_consent_versions::table.on(form_consent_versions::consent_id
                .eq(form_consents::id)
                .and(form_consent_versions::version.eq(form_consents::version))),
        )
        .filter(form_consents::event_id.eq(event_id))
        .order((form_consents::position, form_consents::key))
        .select((
            form_consents::id,
            form_consents::key,
            form_consents::required,
            form_consents::position,
            form_consents::version,
            form_consent_versions::text_ru,
            form_consent_versions::text_en,
            form_consents::created_at,
            form_consents::updated_at,
        ))
        .load(conn)
        .await?)
}

/// What a registration records of the consents it accepted: `[{"key", "version"}]`, the
/// versions in force.
pub fn accepted<'a>(consents: impl IntoIterator<Item = &'a CurrentConsent>) -> Value {
    Value::Array(
        consents
            .into_iter()
            .map(|c| json!({"key": c.key, "version": c.version}))
            .collect(),
    )
}

/// How a registration body accepts a consent: `true` or `false`, or the number of the version
/// of its text the participant was shown (checked against the one in force by the form's
/// schema).
#[derive(Debug, Clone, ToSchema)]
#[serde(untagged)]
pub enum Acceptance {
    Given(bool),
    Version(i32),
}

/// A version is a whole number however it is written (`1` or `1.0`), as JSON Schema, and so
/// the form's schema and frontends' validators, compare numbers.
impl<'de> Deserialize<'de> for Acceptance {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let refused =
            || serde::de::Error::custom("must be true, false or the number of the version shown");
        match Value::deserialize(deserializer)? {
            Value::Bool(given) => Ok(Acceptance::Given(given)),
            Value::Number(n) => n
                .as_i64()
                .or_else(|| {
                    n.as_f64()
                        .filter(|f| f.fract() == 0.0 && f.abs() <= f64::from(i32::MAX))
                        .map(|f| f as i64)
                })
                .and_then(|n| i32::try_from(n).ok())
                .map(Acceptance::Version)
                .ok_or_else(refused),
            _ => Err(refused()),
        }
    }
}

/// A consent of an event, with the text in force.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsentView {
    /// What registration bodies name it by (`consents.<key>: true`).
    #[schema(example = "photos")]
    pub key: String,
    /// Registering without accepting it is refused.
    pub required: bool,
    /// Consents are listed by this, then by key.
    pub position: i32,
    /// The version in force: new registrations accept this one.
    pub version: i32,
    /// The text of the version in force.
    pub text: Localized,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<CurrentConsent> for ConsentView {
    fn from(c: CurrentConsent) -> Self {
        ConsentView {
            key: c.key,
            required: c.required,
            position: c.position,
            version: c.version,
            text: Localized::new(c.text_ru, c.text_en),
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// One text a consent has had.
#[derive(Debug, Serialize, ToSchema, QueryableByName)]
pub struct ConsentVersionView {
    #[diesel(sql_type = Integer)]
    pub version: i32,
    #[diesel(embed)]
    pub text: VersionText,
    /// Since when it was in force.
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
    /// Registrations that accepted this version.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub accepted: i64,
}

/// A version's text.
#[derive(Debug, Serialize, ToSchema, QueryableByName)]
pub struct VersionText {
    #[diesel(sql_type = Text, column_name = text_ru)]
    #[schema(example = "Я согласен на фотосъёмку")]
    pub ru: String,
    #[diesel(sql_type = Text, column_name = text_en)]
    #[schema(example = "I agree to be photographed")]
    pub en: String,
}

/// A consent text to add.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewConsent {
    #[schema(example = "photos", pattern = "^[a-z0-9_-]{1,40}$")]
    pub key: String,
    /// Registering without accepting it is refused. False when absent.
    #[serde(default)]
    pub required: bool,
    pub text: LocalizedInput,
    #[serde(default)]
    pub position: Option<i32>,
}

/// Changes to a consent (merge patch). A different `text` makes a new version; `required`
/// and `position` change the consent as it is.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentPatch {
    #[serde(default, deserialize_with = "patch::non_null")]
    #[schema(nullable = false)]
    pub text: Option<LocalizedInput>,
    #[serde(default, deserialize_with = "patch::non_null")]
    #[schema(nullable = false)]
    pub required: Option<bool>,
    #[serde(default, deserialize_with = "patch::non_null")]
    #[schema(nullable = false)]
    pub position: Option<i32>,
}

/// A consent text: not blank, at most `MAX_TEXT` characters, paragraphs allowed.
fn check_text(v: &mut Validator, field: &str, text: &Localized) {
    for (language, value) in [("ru", &text.ru), ("en", &text.en)] {
        let field = format!("{field}.{language}");
        if value.trim().is_empty() {
            v.error(field, "must not be empty");
        } else {
            v.opt_text(&field, Some(value.as_str()), MAX_TEXT);
        }
    }
}

fn check_required(v: &mut Validator, key: &str, required: bool) {
    v.check(
        required || key != PERSONAL_DATA,
        "required",
        "the consent to the processing of personal data is always required",
    );
}

async fn find(
    conn: &mut AsyncPgConnection,
    event_id: Uuid,
    key: &str,
) -> ApiResult<CurrentConsent> {
    current(conn, event_id)
        .await?
        .into_iter()
        .find(|c| c.key == key)
        .ok_or_else(|| ApiError::not_found("consent"))
}

/// The consent's row, locked until the transaction ends: its changes follow each other.
async fn lock(conn: &mut AsyncPgConnection, event_id: Uuid, key: &str) -> ApiResult<Uuid> {
    form_consents::table
        .filter(form_consents::event_id.eq(event_id))
        .filter(form_consents::key.eq(key))
        .select(form_consents::id)
        .for_update()
        .load::<Uuid>(conn)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::not_found("consent"))
}

/// Whether a registration of the event accepted a version of the consent.
async fn accepted_by_anyone(
    conn: &mut AsyncPgConnection,
    event_id: Uuid,
    key: &str,
) -> ApiResult<bool> {
    #[derive(QueryableByName)]
    struct Found {
        #[diesel(sql_type = Bool)]
        found: bool,
    }
    let found: Found = diesel::sql_query(
        "SELECT EXISTS (SELECT 1 FROM registration_consents rc \
                        JOIN registrations r ON r.id = rc.registration_id \
                        WHERE r.event_id = $1 AND rc.consent_key = $2) AS found",
    )
    .bind::<SqlUuid, _>(event_id)
    .bind::<Text, _>(key)
    .get_results(conn)
    .await
    .and_then(crate::db::single)?;
    Ok(found.found)
}

fn key_taken(error: diesel::result::Error) -> ApiError {
    match crate::db::violated_constraint(&error) {
        Some("form_consents_event_id_key_key") => {
            ApiError::conflict("consent_exists", "the event has a consent with this key")
                .with("field", "key")
        }
        _ => error.into(),
    }
}

/// The event's consent texts, each in its version in force, in their order.
#[utoipa::path(
    tag = "forms",
    params(("event" = String, Path, description = "Event slug or id")),
    responses((status = 200, description = "The consents.", body = Vec<ConsentView>), EventErrors),
    security((), ("bearer" = []))
)]
#[get("/events/{event}/consents")]
async fn list_consents(
    state: State,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<web::Json<Vec<ConsentView>>> {
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &path, EventAction::View).await?;
    let consents = current(&mut conn, ctx.event.id).await?;
    Ok(web::Json(consents.into_iter().map(Into::into).collect()))
}

/// Add a consent text (version 1) to the registration form.
#[utoipa::path(
    tag = "forms",
    params(("event" = String, Path, description = "Event slug or id")),
    request_body = NewConsent,
    responses(
        (status = 201, description = "The consent was added.", body = ConsentView),
        (status = 409, description = "`consent_exists`: the event has a consent with this key. \
            `too_many_consents`: the event has 50.",
         body = Problem, content_type = "application/problem+json"),
        EventErrors, BodyErrors,
    ),
    security(("bearer" = []))
)]
#[post("/events/{event}/consents")]
async fn create_consent(
    state: State,
    caller: Caller,
    path: web::Path<String>,
    body: Body<NewConsent>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    let text: Localized = body.text.into();
    let position = body.position.unwrap_or(0);
    let mut v = Validator::new();
    check_code(&mut v, "key", &body.key);
    check_required(&mut v, &body.key, body.required);
    check_text(&mut v, "text", &text);
    v.range("position", position, -100_000, 100_000);
    v.finish()?;
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &path, EventAction::Edit).await?;
    let event_id = ctx.event.id;
    conn.transaction::<_, ApiError, _>(async |conn| {
        // Counting and adding under the event's row lock: two at once do not pass the limit.
        diesel::sql_query("SELECT 1 FROM events WHERE id = $1 FOR UPDATE")
            .bind::<SqlUuid, _>(event_id)
            .execute(conn)
            .await?;
        let existing: i64 = form_consents::table
            .filter(form_consents::event_id.eq(event_id))
            .count()
            .get_results(conn)
            .await
            .and_then(crate::db::single)?;
        if existing >= MAX_CONSENTS {
            return Err(ApiError::conflict(
                "too_many_consents",
                format!("an event has at most {MAX_CONSENTS} consents"),
            ));
        }
        let id = Uuid::now_v7();
        diesel::insert_into(form_consents::table)
            .values((
                form_consents::id.eq(id),
                form_consents::event_id.eq(event_id),
                form_consents::key.eq(&body.key),
                form_consents::required.eq(body.required),
                form_consents::position.eq(position),
                form_consents::version.eq(1),
            ))
            .execute(conn)
            .await
            .map_err(key_taken)?;
        diesel::insert_into(form_consent_versions::table)
            .values((
                form_consent_versions::consent_id.eq(id),
                form_consent_versions::version.eq(1),
                form_consent_versions::text_ru.eq(&text.ru),
                form_consent_versions::text_en.eq(&text.en),
            ))
            .execute(conn)
            .await?;
        Ok(())
    })
    .await?;
    state.event_changed(event_id);
    let view: ConsentView = find(&mut conn, event_id, &body.key).await?.into();
    Ok(HttpResponse::Created().json(view))
}

/// One consent, with the text in force.
#[utoipa::path(
    tag = "forms",
    params(("event" = String, Path, description = "Event slug or id"),
           ("consent_key" = String, Path, description = "The consent's key")),
    responses((status = 200, description = "The consent.", body = ConsentView), EventErrors),
    security((), ("bearer" = []))
)]
#[get("/events/{event}/consents/{consent_key}")]
async fn get_consent(
    state: State,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> ApiResult<web::Json<ConsentView>> {
    let (event_ref, key) = path.into_inner();
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &event_ref, EventAction::View).await?;
    Ok(web::Json(find(&mut conn, ctx.event.id, &key).await?.into()))
}

/// Change a consent (merge patch). A different `text` becomes a new version, in force from
/// now on: registrations made before keep the version they accepted, and every version stays
/// readable (`…/versions`). `required` and `position` change without a new version.
#[utoipa::path(
    tag = "forms",
    params(("event" = String, Path, description = "Event slug or id"),
           ("consent_key" = String, Path, description = "The consent's key")),
    request_body(content = ConsentPatch, content_type = "application/json"),
    responses(
        (status = 200, description = "The changed consent.", body = ConsentView),
        EventErrors, BodyErrors,
    ),
    security(("bearer" = []))
)]
#[patch("/events/{event}/consents/{consent_key}")]
async fn update_consent(
    state: State,
    caller: Caller,
    path: web::Path<(String, String)>,
    body: Body<ConsentPatch>,
) -> ApiResult<web::Json<ConsentView>> {
    let (event_ref, key) = path.into_inner();
    let body = body.into_inner();
    let text: Option<Localized> = body.text.map(Into::into);
    let mut v = Validator::new();
    if let Some(text) = &text {
        check_text(&mut v, "text", text);
    }
    if let Some(required) = body.required {
        check_required(&mut v, &key, required);
    }
    if let Some(position) = body.position {
        v.range("position", position, -100_000, 100_000);
    }
    v.finish()?;
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &event_ref, EventAction::Edit).await?;
    let event_id = ctx.event.id;
    let consent = conn
        .transaction::<_, ApiError, _>(async |conn| {
            let id = lock(conn, event_id, &key).await?;
            let now = find(conn, event_id, &key).await?;
            let mut version = now.version;
            if let Some(text) = text
                .as_ref()
                .filter(|t| t.ru != now.text_ru || t.en != now.text_en)
            {
                version += 1;
                diesel::insert_into(form_consent_versions::table)
                    .values((
                        form_consent_versions::consent_id.eq(id),
                        form_consent_versions::version.eq(version),
                        form_consent_versions::text_ru.eq(&text.ru),
                        form_consent_versions::text_en.eq(&text.en),
                    ))
                    .execute(conn)
                    .await?;
            }
            diesel::update(form_consents::table.find(id))
                .set((
                    form_consents::version.eq(version),
                    form_consents::required.eq(body.required.unwrap_or(now.required)),
                    form_consents::position.eq(body.position.unwrap_or(now.position)),
                    form_consents::updated_at.eq(Utc::now()),
                ))
                .execute(conn)
                .await?;
            find(conn, event_id, &key).await
        })
        .await?;
    state.event_changed(event_id);
    Ok(web::Json(consent.into()))
}

/// Delete a consent no registration has accepted. One that was accepted stays, as the
/// record of what was agreed to; make it optional (`required: false`) instead.
#[utoipa::path(
    tag = "forms",
    params(("event" = String, Path, description = "Event slug or id"),
           ("consent_key" = String, Path, description = "The consent's key")),
    responses(
        (status = 204, description = "The consent and its versions were deleted."),
        (status = 409, description = "`consent_in_use`: registrations (cancelled or erased ones too) \
            accepted it. `consent_fixed`: `personal_data`, which registering always asks for.",
         body = Problem, content_type = "application/problem+json"),
        EventErrors,
    ),
    security(("bearer" = []))
)]
#[delete("/events/{event}/consents/{consent_key}")]
async fn delete_consent(
    state: State,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (event_ref, key) = path.into_inner();
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &event_ref, EventAction::Edit).await?;
    let event_id = ctx.event.id;
    conn.transaction::<_, ApiError, _>(async |conn| {
        let id = lock(conn, event_id, &key).await?;
        if key == PERSONAL_DATA {
            return Err(ApiError::conflict(
                "consent_fixed",
                "the consent to the processing of personal data is part of every event's form",
            )
            .with("field", "key")
            .with("key", &key));
        }
        if accepted_by_anyone(conn, event_id, &key).await? {
            return Err(ApiError::conflict(
                "consent_in_use",
                format!(
                    "registrations accepted the consent `{key}`: it stays as their record; \
                     make it optional instead"
                ),
            )
            .with("field", "key")
            .with("key", &key));
        }
        diesel::delete(form_consents::table.find(id))
            .execute(conn)
            .await?;
        Ok(())
    })
    .await?;
    state.event_changed(event_id);
    Ok(HttpResponse::NoContent().finish())
}

/// Every text the consent has had, oldest first, with how many registrations accepted each.
#[utoipa::path(
    tag = "forms",
    params(("event" = String, Path, description = "Event slug or id"),
           ("consent_key" = String, Path, description = "The consent's key")),
    responses((status = 200, description = "The versions.", body = Vec<ConsentVersionView>), EventErrors),
    security((), ("bearer" = []))
)]
#[get("/events/{event}/consents/{consent_key}/versions")]
async fn list_versions(
    state: State,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> ApiResult<web::Json<Vec<ConsentVersionView>>> {
    let (event_ref, key) = path.into_inner();
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &event_ref, EventAction::View).await?;
    let consent = find(&mut conn, ctx.event.id, &key).await?;
    let versions = diesel::sql_query(
        "SELECT v.version, v.text_ru, v.text_en, v.created_at, \
                (SELECT count(*) FROM registration_consents rc \
                 JOIN registrations r ON r.id = rc.registration_id \
                 WHERE r.event_id = $2 AND rc.consent_key = $3 \
                   AND rc.version = v.version) AS accepted \
         FROM form_consent_versions v WHERE v.consent_id = $1 ORDER BY v.version",
    )
    .bind::<SqlUuid, _>(consent.id)
    .bind::<SqlUuid, _>(ctx.event.id)
    .bind::<Text, _>(&key)
    .load(&mut conn)
    .await?;
    Ok(web::Json(versions))
}

/// A consent a registration accepted: which version, and when.
#[derive(Debug, Clone, Serialize, ToSchema, QueryableByName)]
pub struct AcceptedConsent {
    #[serde(skip)]
    #[diesel(sql_type = SqlUuid)]
    pub registration_id: Uuid,
    #[diesel(sql_type = Text)]
    #[schema(example = "personal_data")]
    pub key: String,
    /// The version of the text accepted (`GET /events/{event}/consents/{key}/versions`).
    #[diesel(sql_type = Integer)]
    pub version: i32,
    #[diesel(sql_type = Timestamptz)]
    pub accepted_at: DateTime<Utc>,
    /// The text of that version.
    #[diesel(embed)]
    pub text: AcceptedText,
}

/// The text of the version accepted (null only if it is no longer stored).
#[derive(Debug, Clone, Serialize, ToSchema, QueryableByName)]
pub struct AcceptedText {
    #[diesel(sql_type = Nullable<Text>, column_name = text_ru)]
    pub ru: Option<String>,
    #[diesel(sql_type = Nullable<Text>, column_name = text_en)]
    pub en: Option<String>,
}

/// The statement behind `accepted_by` (`$1`: the registrations' ids). The registrations are
/// found by their ids too, not only their consents: with statistics taken while few consents
/// were stored, the planner otherwise expected most of them to match and joined them to every
/// registration (a scan of 170,000 registrations, 0.5 s, for each batch of webhooks).
pub const ACCEPTED_BY: &str = "SELECT rc.registration_id, rc.consent_key AS key, rc.version, rc.accepted_at, \
                v.text_ru, v.text_en \
         FROM registration_consents rc \
         JOIN registrations r ON r.id = rc.registration_id \
         LEFT JOIN form_consents c ON c.event_id = r.event_id AND c.key = rc.consent_key \
         LEFT JOIN form_consent_versions v ON v.consent_id = c.id AND v.version = rc.version \
         WHERE rc.registration_id = ANY($1) AND r.id = ANY($1) \
         ORDER BY rc.registration_id, c.position, rc.consent_key";

/// The consents the given registrations accepted, each with its text, in the form's order.
pub async fn accepted_by(
    conn: &mut AsyncPgConnection,
    registration_ids: &[Uuid],
) -> ApiResult<HashMap<Uuid, Vec<AcceptedConsent>>> {
    if registration_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<AcceptedConsent> = diesel::sql_query(ACCEPTED_BY)
        .bind::<Array<SqlUuid>, _>(registration_ids)
        .load(conn)
        .await?;
    let mut accepted: HashMap<Uuid, Vec<AcceptedConsent>> = HashMap::new();
    for row in rows {
        accepted.entry(row.registration_id).or_default().push(row);
    }
    Ok(accepted)
}
