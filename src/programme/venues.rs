//! Venues: rooms and halls, each in a city, with an address and a physical capacity.

use actix_web::{HttpResponse, delete, get, patch, post, web};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::access::{self, EventAction};
use crate::auth::Caller;
use crate::db::{self, schema::venues};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{Body, Query};
use crate::openapi::{BodyErrors, EventErrors};
use crate::pagination::{Page, PageParams};
use crate::patch;
use crate::state::State;
use crate::validation::Validator;

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(list_venues)
        .service(create_venue)
        .service(get_venue)
        .service(update_venue)
        .service(delete_venue);
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize, ToSchema)]
#[diesel(table_name = venues)]
pub struct Venue {
    pub id: Uuid,
    pub event_id: Uuid,
    #[schema(example = "Дворец культуры «Металлург»")]
    pub name: String,
    #[schema(example = "Мончегорск")]
    pub city: Option<String>,
    pub address: Option<String>,
    /// Physical capacity of the room (informative; sessions carry their own).
    pub capacity: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewVenue {
    #[schema(max_length = 200)]
    pub name: String,
    #[serde(default)]
    #[schema(max_length = 200)]
    pub city: Option<String>,
    #[serde(default)]
    #[schema(max_length = 500)]
    pub address: Option<String>,
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1000000)]
    pub capacity: Option<i32>,
}

/// Changes to a venue (merge patch).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VenuePatch {
    #[serde(default, deserialize_with = "patch::non_null")]
    #[schema(nullable = false)]
    #[schema(max_length = 200)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "patch::nullable")]
    #[schema(value_type = Option<String>, max_length = 200)]
    pub city: Option<Option<String>>,
    #[serde(default, deserialize_with = "patch::nullable")]
    #[schema(value_type = Option<String>, max_length = 500)]
    pub address: Option<Option<String>>,
    #[serde(default, deserialize_with = "patch::nullable")]
    #[schema(value_type = Option<i32>, minimum = 0, maximum = 1000000)]
    pub capacity: Option<Option<i32>>,
}

fn validate(
    name: &str,
    city: Option<&str>,
    address: Option<&str>,
    capacity: Option<i32>,
) -> ApiResult<()> {
    let mut v = Validator::new();
    v.line("name", name, 200);
    v.opt_line("city", city, 200);
    v.opt_line("address", address, 500);
    if let Some(capacity) = capacity {
        v.range("capacity", capacity, 0, 1_000_000);
    }
    v.finish()
}

/// The event's venues.
#[utoipa::path(
    tag = "programme",
    params(("event" = String, Path, description = "Event slug or id"), PageParams),
    responses(
        (status = 200, description = "One page of venues.", body = Page<Venue>),
        (status = 422, description = "`validation_failed`: bad `limit` or `cursor`.",
         body = Problem, content_type = "application/problem+json"),
        EventErrors,
    ),
    security((), ("bearer" = []))
)]
#[get("/events/{event}/venues")]
async fn list_venues(
    state: State,
    caller: Caller,
    path: web::Path<String>,
    page: Query<PageParams>,
) -> ApiResult<web::Json<Page<Venue>>> {
    let limit = page.limit()?;
    let after: Option<Uuid> = page.after()?;
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &path, EventAction::View).await?;
    let mut query = venues::table
        .filter(venues::event_id.eq(ctx.event.id))
        .select(Venue::as_select())
        .order(venues::id)
        .limit(limit + 1)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(venues::id.gt(after));
    }
    let rows = query.load(&mut conn).await?;
    Ok(web::Json(Page::from_rows(rows, limit, |v| v.id)))
}

/// Validates and adds a venue to an event.
pub async fn create(
    conn: &mut diesel_async::AsyncPgConnection,
    event_id: Uuid,
    body: NewVenue,
) -> ApiResult<Venue> {
    validate(
        &body.name,
        body.city.as_deref(),
        body.address.as_deref(),
        body.capacity,
    )?;
    Ok(diesel::insert_into(venues::table)
        .values((
            venues::id.eq(Uuid::now_v7()),
            venues::event_id.eq(event_id),
            venues::name.eq(body.name),
            venues::city.eq(body.city),
            venues::address.eq(body.address),
            venues::capacity.eq(body.capacity),
        ))
        .returning(Venue::as_returning())
        .get_results(conn)
        .await
        .and_then(crate::db::single)?)
}

/// Add a venue.
#[utoipa::path(
    tag = "programme",
    params(("event" = String, Path, description = "Event slug or id")),
    request_body = NewVenue,
    responses((status = 201, description = "The venue was added.", body = Venue), EventErrors, BodyErrors),
    security(("bearer" = []))
)]
#[post("/events/{event}/venues")]
async fn create_venue(
    state: State,
    caller: Caller,
    path: web::Path<String>,
    body: Body<NewVenue>,
) -> ApiResult<HttpResponse> {
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &path, EventAction::Edit).await?;
    let venue = create(&mut conn, ctx.event.id, body.into_inner()).await?;
    state.event_changed(ctx.event.id);
    Ok(HttpResponse::Created().json(venue))
}

async fn find(
    conn: &mut diesel_async::AsyncPgConnection,
    event_id: Uuid,
    id: Uuid,
) -> ApiResult<Venue> {
    venues::table
        .filter(venues::event_id.eq(event_id))
        .find(id)
        .select(Venue::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or_else(|| ApiError::not_found("venue"))
}

/// One venue.
#[utoipa::path(
    tag = "programme",
    params(("event" = String, Path, description = "Event slug or id"), ("venue_id" = Uuid, Path)),
    responses((status = 200, description = "The venue.", body = Venue), EventErrors),
    security((), ("bearer" = []))
)]
#[get("/events/{event}/venues/{venue_id}")]
async fn get_venue(
    state: State,
    caller: Caller,
    path: web::Path<(String, Uuid)>,
) -> ApiResult<web::Json<Venue>> {
    let (event_ref, id) = path.into_inner();
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &event_ref, EventAction::View).await?;
    Ok(web::Json(find(&mut conn, ctx.event.id, id).await?))
}

/// Change a venue (merge patch).
#[utoipa::path(
    tag = "programme",
    params(("event" = String, Path, description = "Event slug or id"), ("venue_id" = Uuid, Path)),
    request_body(content = VenuePatch, content_type = "application/json"),
    responses((status = 200, description = "The changed venue.", body = Venue), EventErrors, BodyErrors),
    security(("bearer" = []))
)]
#[patch("/events/{event}/venues/{venue_id}")]
async fn update_venue(
    state: State,
    caller: Caller,
    path: web::Path<(String, Uuid)>,
    body: Body<VenuePatch>,
) -> ApiResult<web::Json<Venue>> {
    let (event_ref, id) = path.into_inner();
    let body = body.into_inner();
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &event_ref, EventAction::Edit).await?;
    let current = find(&mut conn, ctx.event.id, id).await?;
    let name = body.name.unwrap_or(current.name);
    let city = body.city.unwrap_or(current.city);
    let address = body.address.unwrap_or(current.address);
    let capacity = body.capacity.unwrap_or(current.capacity);
    validate(&name, city.as_deref(), address.as_deref(), capacity)?;
    let venue = diesel::update(venues::table.find(id))
        .set((
            venues::name.eq(name),
            venues::city.eq(city),
            venues::address.eq(address),
            venues::capacity.eq(capacity),
            venues::updated_at.eq(Utc::now()),
        ))
        .returning(Venue::as_returning())
        .get_results(&mut conn)
        .await
        .and_then(crate::db::single)?;
    state.event_changed(ctx.event.id);
    Ok(web::Json(venue))
}

/// Delete a venue no session uses.
#[utoipa::path(
    tag = "programme",
    params(("event" = String, Path, description = "Event slug or id"), ("venue_id" = Uuid, Path)),
    responses(
        (status = 204, description = "The venue was deleted."),
        (status = 409, description = "`venue_in_use`: sessions take place in this venue.",
         body = Problem, content_type = "application/problem+json"),
        EventErrors,
    ),
    security(("bearer" = []))
)]
#[delete("/events/{event}/venues/{venue_id}")]
async fn delete_venue(
    state: State,
    caller: Caller,
    path: web::Path<(String, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (event_ref, id) = path.into_inner();
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &event_ref, EventAction::Edit).await?;
    let deleted = diesel::delete(
        venues::table
            .filter(venues::event_id.eq(ctx.event.id))
            .find(id),
    )
    .execute(&mut conn)
    .await
    .map_err(|error| match db::violated_constraint(&error) {
        Some(_) => ApiError::conflict(
            "venue_in_use",
            "sessions take place in this venue; move them first",
        ),
        None => error.into(),
    })?;
    if deleted == 0 {
        return Err(ApiError::not_found("venue"));
    }
    state.event_changed(ctx.event.id);
    Ok(HttpResponse::NoContent().finish())
}
