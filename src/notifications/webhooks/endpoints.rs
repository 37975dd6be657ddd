//! `/events/{event}/webhooks`: the endpoints an event's organisers register, each with its
//! URL, the change kinds it wants, and a signing secret shown once (and rotated with an
//! overlap during which both secrets sign).

use actix_web::{HttpResponse, delete, get, patch, post, web};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::guard::{self, Policy};
use super::signing::{self, PREVIOUS_SECRET, SECRET};
use super::worker;
use crate::access::{self, EventAction};
use crate::auth::Caller;
use crate::changes::ChangeKind;
use crate::db::schema::webhook_endpoints;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{Body, OptionalBody, Query};
use crate::openapi::{BodyErrors, EventErrors};
use crate::pagination::{Page, PageParams};
use crate::patch;
use crate::state::State;
use crate::validation::Validator;

/// Endpoints one event may have.
const MAX_ENDPOINTS: i64 = 20;
/// How long the previous secret keeps signing after a rotation, unless told otherwise.
const DEFAULT_OVERLAP_SECONDS: i64 = 24 * 3600;
const MAX_OVERLAP_SECONDS: i64 = 7 * 24 * 3600;

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(list_webhooks)
        .service(create_webhook)
        .service(get_webhook)
        .service(update_webhook)
        .service(delete_webhook)
        .service(rotate_webhook_secret);
}

/// A new endpoint.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    /// Where messages are POSTed: an `https://` URL (`http://` in development) of a public
    /// address, at most 2,000 characters.
    #[schema(max_length = 2000, example = "https://crm.example.org/hooks/registrar")]
    pub url: String,
    #[serde(default)]
    #[schema(max_length = 500, example = "CRM of the organising committee")]
    pub description: Option<String>,
    /// The change kinds to send; empty or absent: all of them.
    #[serde(default)]
    #[schema(max_items = 12)]
    pub event_types: Vec<ChangeKind>,
    /// Whether messages are sent (default true).
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
}

fn enabled_by_default() -> bool {
    true
}

/// Changes to an endpoint (merge patch). Enabling a disabled endpoint clears its reason; the
/// messages that failed meanwhile can be sent again with `redeliver-failed`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookPatch {
    #[serde(default, deserialize_with = "patch::non_null")]
    #[schema(nullable = false, max_length = 2000)]
    pub url: Option<String>,
    #[serde(default, deserialize_with = "patch::nullable")]
    #[schema(value_type = Option<String>, max_length = 500)]
    pub description: Option<Option<String>>,
    /// The change kinds to send; empty: all of them.
    #[serde(default, deserialize_with = "patch::non_null")]
    #[schema(nullable = false, max_items = 12)]
    pub event_types: Option<Vec<ChangeKind>>,
    #[serde(default, deserialize_with = "patch::non_null")]
    #[schema(nullable = false)]
    pub enabled: Option<bool>,
}

/// A new secret for an endpoint.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretRotation {
    /// How long the current secret keeps signing beside the new one, in seconds (0 to
    /// 604800, a week; a day when absent): during that time each message carries both
    /// signatures, so receivers can switch secrets without missing one.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 604800)]
    pub overlap_seconds: Option<i64>,
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = webhook_endpoints)]
struct Endpoint {
    id: Uuid,
    event_id: Uuid,
    url: String,
    description: Option<String>,
    event_types: Vec<Option<String>>,
    enabled: bool,
    disabled_reason: Option<String>,
    disabled_at: Option<DateTime<Utc>>,
    failing_since: Option<DateTime<Utc>>,
    previous_secret_expires_at: Option<DateTime<Utc>>,
    created_by: Option<Uuid>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// A webhook endpoint (its secret is shown only when it is made).
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    pub id: Uuid,
    pub event_id: Uuid,
    pub url: String,
    pub description: Option<String>,
    /// The change kinds sent to it; empty: all of them.
    pub event_types: Vec<ChangeKind>,
    pub enabled: bool,
    /// Why it is disabled: by an organiser, because it answered 410 Gone, or because every
    /// delivery failed for three days.
    pub disabled_reason: Option<String>,
    pub disabled_at: Option<DateTime<Utc>>,
    /// The first failure since the last successful delivery; null while deliveries succeed.
    pub failing_since: Option<DateTime<Utc>>,
    /// Until when the secret before the last rotation still signs, beside the current one.
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    /// The organiser who made it.
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Endpoint> for WebhookView {
    fn from(e: Endpoint) -> Self {
        WebhookView {
            id: e.id,
            event_id: e.event_id,
            url: e.url,
            description: e.description,
            event_types: e
                .event_types
                .iter()
                .flatten()
                .filter_map(|t| t.parse().ok())
                .collect(),
            enabled: e.enabled,
            disabled_reason: e.disabled_reason,
            disabled_at: e.disabled_at,
            failing_since: e.failing_since,
            previous_secret_expires_at: e.previous_secret_expires_at.filter(|at| *at > Utc::now()),
            created_by: e.created_by,
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

/// An endpoint with its new signing secret: shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookWithSecret {
    #[serde(flatten)]
    pub webhook: WebhookView,
    /// `whsec_` and the secret in base64: verify signatures with it (see the `webhooks` of
    /// this document). It cannot be shown again.
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    pub secret: String,
}

fn event_types_text(types: &[ChangeKind]) -> Vec<String> {
    let mut names: Vec<String> = types.iter().map(|t| t.as_str().to_owned()).collect();
    names.sort();
    names.dedup();
    names
}

fn validate_text(v: &mut Validator, description: Option<&str>, types: Option<&[ChangeKind]>) {
    v.opt_line("description", description, 500);
    if let Some(types) = types {
        v.list_len("event_types", types, ChangeKind::ALL.len());
    }
}

/// The URL as it is stored, or a 422 naming `url`.
async fn checked_url(url: &str, policy: Policy) -> ApiResult<String> {
    guard::check_url(url, policy)
        .await
        .map(|url| url.to_string())
        .map_err(|message| ApiError::invalid("url", message))
}

async fn find(conn: &mut AsyncPgConnection, event_id: Uuid, id: Uuid) -> ApiResult<Endpoint> {
    webhook_endpoints::table
        .filter(webhook_endpoints::event_id.eq(event_id))
        .find(id)
        .select(Endpoint::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or_else(|| ApiError::not_found("webhook"))
}

/// The event's webhook endpoints (organisers).
#[utoipa::path(
    tag = "webhooks",
    params(("event" = String, Path, description = "Event slug or id"), PageParams),
    responses((status = 200, description = "One page of endpoints.", body = Page<WebhookView>), EventErrors),
    security(("bearer" = []))
)]
#[get("/events/{event}/webhooks")]
async fn list_webhooks(
    state: State,
    caller: Caller,
    path: web::Path<String>,
    page: Query<PageParams>,
) -> ApiResult<web::Json<Page<WebhookView>>> {
    let limit = page.limit()?;
    let after: Option<Uuid> = page.after()?;
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &path, EventAction::ViewWebhooks).await?;
    let mut query = webhook_endpoints::table
        .filter(webhook_endpoints::event_id.eq(ctx.event.id))
        .select(Endpoint::as_select())
        .order(webhook_endpoints::id)
        .limit(limit + 1)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(webhook_endpoints::id.gt(after));
    }
    let rows = query.load(&mut conn).await?;
    Ok(web::Json(
        Page::from_rows(rows, limit, |e| e.id).map(WebhookView::from),
    ))
}

/// Register an endpoint (owners and editors). The answer holds its signing secret, shown
/// this once.
#[utoipa::path(
    tag = "webhooks",
    params(("event" = String, Path, description = "Event slug or id")),
    request_body = NewWebhook,
    responses(
        (status = 201, description = "The endpoint, with its secret: store it now.", body = WebhookWithSecret),
        (status = 409, description = "`too_many_webhooks`: the event has 20 endpoints already.",
         body = Problem, content_type = "application/problem+json"),
        EventErrors, BodyErrors,
    ),
    security(("bearer" = []))
)]
#[post("/events/{event}/webhooks")]
async fn create_webhook(
    state: State,
    caller: Caller,
    path: web::Path<String>,
    body: Body<NewWebhook>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    let mut conn = state.conn().await?;
    // Before looking the URL up: only organisers make the service resolve names.
    let ctx = access::event(&mut conn, &caller, &path, EventAction::ManageWebhooks).await?;
    let mut v = Validator::new();
    validate_text(&mut v, body.description.as_deref(), Some(&body.event_types));
    v.finish()?;
    let url = checked_url(&body.url, Policy::from_config(&state.config)).await?;
    let existing: i64 = webhook_endpoints::table
        .filter(webhook_endpoints::event_id.eq(ctx.event.id))
        .count()
        .get_results(&mut conn)
        .await
        .and_then(crate::db::single)?;
    if existing >= MAX_ENDPOINTS {
        return Err(ApiError::conflict(
            "too_many_webhooks",
            format!("an event may have at most {MAX_ENDPOINTS} webhook endpoints"),
        ));
    }
    let id = Uuid::now_v7();
    let (key, secret) = signing::generate();
    let now = Utc::now();
    let endpoint = diesel::insert_into(webhook_endpoints::table)
        .values((
            webhook_endpoints::id.eq(id),
            webhook_endpoints::event_id.eq(ctx.event.id),
            webhook_endpoints::url.eq(url),
            webhook_endpoints::description.eq(&body.description),
            webhook_endpoints::event_types.eq(event_types_text(&body.event_types)),
            webhook_endpoints::enabled.eq(body.enabled),
            webhook_endpoints::disabled_reason
                .eq((!body.enabled).then_some("disabled by an organiser")),
            webhook_endpoints::disabled_at.eq((!body.enabled).then_some(now)),
            webhook_endpoints::secret_sealed.eq(state.sealing.seal(&SECRET.place(id), &key)),
            webhook_endpoints::created_by.eq(caller.user().map(|u| u.id)),
        ))
        .returning(Endpoint::as_returning())
        .get_results(&mut conn)
        .await
        .and_then(crate::db::single)?;
    Ok(HttpResponse::Created().json(WebhookWithSecret {
        webhook: endpoint.into(),
        secret,
    }))
}

/// One endpoint (organisers).
#[utoipa::path(
    tag = "webhooks",
    params(("event" = String, Path, description = "Event slug or id"), ("webhook_id" = Uuid, Path)),
    responses((status = 200, description = "The endpoint.", body = WebhookView), EventErrors),
    security(("bearer" = []))
)]
#[get("/events/{event}/webhooks/{webhook_id}")]
async fn get_webhook(
    state: State,
    caller: Caller,
    path: web::Path<(String, Uuid)>,
) -> ApiResult<web::Json<WebhookView>> {
    let (event_ref, id) = path.into_inner();
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &event_ref, EventAction::ViewWebhooks).await?;
    Ok(web::Json(find(&mut conn, ctx.event.id, id).await?.into()))
}

/// Change an endpoint (merge patch; owners and editors).
#[utoipa::path(
    tag = "webhooks",
    params(("event" = String, Path, description = "Event slug or id"), ("webhook_id" = Uuid, Path)),
    request_body(content = WebhookPatch, content_type = "application/json"),
    responses((status = 200, description = "The changed endpoint.", body = WebhookView), EventErrors, BodyErrors),
    security(("bearer" = []))
)]
#[patch("/events/{event}/webhooks/{webhook_id}")]
async fn update_webhook(
    state: State,
    caller: Caller,
    path: web::Path<(String, Uuid)>,
    body: Body<WebhookPatch>,
) -> ApiResult<web::Json<WebhookView>> {
    let (event_ref, id) = path.into_inner();
    let body = body.into_inner();
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &event_ref, EventAction::ManageWebhooks).await?;
    let current = find(&mut conn, ctx.event.id, id).await?;
    let mut v = Validator::new();
    let description = body.description.unwrap_or(current.description);
    validate_text(&mut v, description.as_deref(), body.event_types.as_deref());
    v.finish()?;
    let url = match &body.url {
        Some(url) => checked_url(url, Policy::from_config(&state.config)).await?,
        None => current.url,
    };
    let event_types = match &body.event_types {
        Some(types) => event_types_text(types),
        None => current.event_types.into_iter().flatten().collect(),
    };
    let now = Utc::now();
    let endpoint = conn
        .transaction::<_, ApiError, _>(async |conn| {
            match body.enabled {
                Some(false) if current.enabled => {
                    worker::disable(conn, id, "disabled by an organiser", now).await?;
                }
                Some(true) if !current.enabled => {
                    diesel::update(webhook_endpoints::table.find(id))
                        .set((
                            webhook_endpoints::enabled.eq(true),
                            webhook_endpoints::disabled_reason.eq(None::<String>),
                            webhook_endpoints::disabled_at.eq(None::<DateTime<Utc>>),
                            webhook_endpoints::failing_since.eq(None::<DateTime<Utc>>),
                        ))
                        .execute(conn)
                        .await?;
                }
                _ => {}
            }
            Ok(diesel::update(webhook_endpoints::table.find(id))
                .set((
                    webhook_endpoints::url.eq(url),
                    webhook_endpoints::description.eq(description),
                    webhook_endpoints::event_types.eq(event_types),
                    webhook_endpoints::updated_at.eq(now),
                ))
                .returning(Endpoint::as_returning())
                .get_results(conn)
                .await
                .and_then(crate::db::single)?)
        })
        .await?;
    Ok(web::Json(endpoint.into()))
}

/// Delete an endpoint and its deliveries (owners and editors).
#[utoipa::path(
    tag = "webhooks",
    params(("event" = String, Path, description = "Event slug or id"), ("webhook_id" = Uuid, Path)),
    responses((status = 204, description = "The endpoint was deleted."), EventErrors),
    security(("bearer" = []))
)]
#[delete("/events/{event}/webhooks/{webhook_id}")]
async fn delete_webhook(
    state: State,
    caller: Caller,
    path: web::Path<(String, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (event_ref, id) = path.into_inner();
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &event_ref, EventAction::ManageWebhooks).await?;
    let deleted = diesel::delete(
        webhook_endpoints::table
            .filter(webhook_endpoints::event_id.eq(ctx.event.id))
            .find(id),
    )
    .execute(&mut conn)
    .await?;
    if deleted == 0 {
        return Err(ApiError::not_found("webhook"));
    }
    Ok(HttpResponse::NoContent().finish())
}

/// Give an endpoint a new signing secret (owners and editors). The current one keeps signing
/// beside it for the overlap (both signatures in `webhook-signature`); a secret older than
/// that stops at once.
#[utoipa::path(
    tag = "webhooks",
    params(("event" = String, Path, description = "Event slug or id"), ("webhook_id" = Uuid, Path)),
    request_body(content = Option<SecretRotation>, content_type = "application/json",
        description = "Optional: the overlap."),
    responses(
        (status = 200, description = "The endpoint with its new secret: store it now.", body = WebhookWithSecret),
        EventErrors, BodyErrors,
    ),
    security(("bearer" = []))
)]
#[post("/events/{event}/webhooks/{webhook_id}/rotate-secret")]
async fn rotate_webhook_secret(
    state: State,
    caller: Caller,
    path: web::Path<(String, Uuid)>,
    body: OptionalBody<SecretRotation>,
) -> ApiResult<web::Json<WebhookWithSecret>> {
    let (event_ref, id) = path.into_inner();
    let overlap = body
        .into_inner()
        .unwrap_or_default()
        .overlap_seconds
        .unwrap_or(DEFAULT_OVERLAP_SECONDS);
    let mut v = Validator::new();
    v.range("overlap_seconds", overlap, 0, MAX_OVERLAP_SECONDS);
    v.finish()?;
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &event_ref, EventAction::ManageWebhooks).await?;
    let (key, secret) = signing::generate();
    let sealing = state.sealing.clone();
    let endpoint = conn
        .transaction::<_, ApiError, _>(async |conn| {
            let current: Vec<u8> = webhook_endpoints::table
                .filter(webhook_endpoints::event_id.eq(ctx.event.id))
                .find(id)
                .select(webhook_endpoints::secret_sealed)
                .for_update()
                .first(conn)
                .await
                .optional()?
                .ok_or_else(|| ApiError::not_found("webhook"))?;
            let now = Utc::now();
            let previous = if overlap > 0 {
                let open = sealing.open(&SECRET.place(id), &current).map_err(|error| {
                    ApiError::internal(
                        anyhow::Error::new(error).context(format!("the secret of webhook {id}")),
                    )
                })?;
                Some((
                    sealing.seal(&PREVIOUS_SECRET.place(id), &open),
                    now + chrono::Duration::seconds(overlap),
                ))
            } else {
                None
            };
            let (previous_sealed, previous_expires) = previous.unzip();
            Ok(diesel::update(webhook_endpoints::table.find(id))
                .set((
                    webhook_endpoints::secret_sealed.eq(sealing.seal(&SECRET.place(id), &key)),
                    webhook_endpoints::previous_secret_sealed.eq(previous_sealed),
                    webhook_endpoints::previous_secret_expires_at.eq(previous_expires),
                    webhook_endpoints::updated_at.eq(now),
                ))
                .returning(Endpoint::as_returning())
                .get_results(conn)
                .await
                .and_then(crate::db::single)?)
        })
        .await?;
    Ok(web::Json(WebhookWithSecret {
        webhook: endpoint.into(),
        secret,
    }))
}
