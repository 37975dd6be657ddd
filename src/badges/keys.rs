//! Device API keys: event-scoped keys for badge printers and check-in desks.

use actix_web::{HttpResponse, delete, get, post, web};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::access::{self, EventAction};
use crate::auth::{Caller, Scope, tokens};
use crate::db::schema::api_keys;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, Query};
use crate::openapi::{BodyErrors, EventErrors};
use crate::pagination::{Page, PageParams};
use crate::state::State;
use crate::validation::Validator;

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(create_api_key)
        .service(list_api_keys)
        .service(revoke_api_key);
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    /// What the device is, e.g. «Принтер бейджей, вход 1».
    #[schema(max_length = 200)]
    pub name: String,
    /// What the key may do, within its event.
    #[schema(min_items = 1, max_items = 3)]
    pub scopes: Vec<Scope>,
}

/// A device key (without the key itself).
#[derive(Debug, Serialize, ToSchema, Queryable, Selectable)]
#[diesel(table_name = api_keys)]
pub struct ApiKeyView {
    pub id: Uuid,
    pub event_id: Uuid,
    pub name: String,
    #[schema(value_type = Vec<Scope>)]
    pub scopes: Vec<Option<String>>,
    /// The key's first characters, to recognise it.
    pub key_prefix: String,
    pub created_at: DateTime<Utc>,
    /// Updated at most once a minute.
    pub last_used_at: Option<DateTime<Utc>>,
    /// A revoked key no longer works.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A new device key: the key is shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyCreated {
    #[serde(flatten)]
    pub view: ApiKeyView,
    /// Send as `Authorization: Bearer rgk_…`. It cannot be shown again.
    pub key: String,
}

/// Create a device key for the event (owners and editors).
#[utoipa::path(
    tag = "badges",
    params(("event" = String, Path, description = "Event slug or id")),
    request_body = NewApiKey,
    responses((status = 201, description = "The key; store it now.", body = ApiKeyCreated), EventErrors, BodyErrors),
    security(("bearer" = []))
)]
#[post("/events/{event}/api-keys")]
async fn create_api_key(
    state: State,
    caller: Caller,
    path: web::Path<String>,
    body: Body<NewApiKey>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    let mut v = Validator::new();
    v.line("name", &body.name, 200);
    v.check(
        !body.scopes.is_empty(),
        "scopes",
        "must name at least one scope",
    );
    v.finish()?;
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &path, EventAction::Edit).await?;
    let mut scopes: Vec<String> = body.scopes.iter().map(|s| s.as_str().to_owned()).collect();
    scopes.sort();
    scopes.dedup();
    let key = tokens::generate(tokens::DEVICE_KEY_PREFIX);
    let view = diesel::insert_into(api_keys::table)
        .values((
            api_keys::id.eq(Uuid::now_v7()),
            api_keys::event_id.eq(ctx.event.id),
            api_keys::name.eq(&body.name),
            api_keys::scopes.eq(&scopes),
            api_keys::key_hash.eq(tokens::digest(&key)),
            api_keys::key_prefix.eq(&key[..12]),
            api_keys::created_by.eq(caller.user().map(|u| u.id)),
        ))
        .returning(ApiKeyView::as_returning())
        .get_results(&mut conn)
        .await
        .and_then(crate::db::single)?;
    Ok(HttpResponse::Created().json(ApiKeyCreated { view, key }))
}

/// The event's device keys, with when each was last used.
#[utoipa::path(
    tag = "badges",
    params(("event" = String, Path, description = "Event slug or id"), PageParams),
    responses((status = 200, description = "One page of keys.", body = Page<ApiKeyView>), EventErrors),
    security(("bearer" = []))
)]
#[get("/events/{event}/api-keys")]
async fn list_api_keys(
    state: State,
    caller: Caller,
    path: web::Path<String>,
    page: Query<PageParams>,
) -> ApiResult<web::Json<Page<ApiKeyView>>> {
    let limit = page.limit()?;
    let after: Option<Uuid> = page.after()?;
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &path, EventAction::ViewPrivate).await?;
    let mut query = api_keys::table
        .filter(api_keys::event_id.eq(ctx.event.id))
        .select(ApiKeyView::as_select())
        .order(api_keys::id)
        .limit(limit + 1)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(api_keys::id.gt(after));
    }
    let rows = query.load(&mut conn).await?;
    Ok(web::Json(Page::from_rows(rows, limit, |k| k.id)))
}

/// Revoke a device key: it stops working at once.
#[utoipa::path(
    tag = "badges",
    params(("event" = String, Path, description = "Event slug or id"), ("key_id" = Uuid, Path)),
    responses((status = 204, description = "The key is revoked."), EventErrors),
    security(("bearer" = []))
)]
#[delete("/events/{event}/api-keys/{key_id}")]
async fn revoke_api_key(
    state: State,
    caller: Caller,
    path: web::Path<(String, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (event_ref, key_id) = path.into_inner();
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &event_ref, EventAction::Edit).await?;
    let found = diesel::update(
        api_keys::table
            .filter(api_keys::event_id.eq(ctx.event.id))
            .find(key_id),
    )
    // Revoking again keeps the first revocation time.
    .set(api_keys::revoked_at.eq(diesel::dsl::sql::<
        diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
    >("coalesce(revoked_at, now())")))
    .returning(api_keys::id)
    .get_results::<Uuid>(&mut conn)
    .await
    .and_then(crate::db::single)
    .optional()?;
    found.ok_or_else(|| ApiError::not_found("API key"))?;
    Ok(HttpResponse::NoContent().finish())
}
