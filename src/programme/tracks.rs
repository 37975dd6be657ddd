//! Tracks: the thematic directions («направления») that group sessions.

use actix_web::{HttpResponse, delete, get, patch, post, web};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::access::{self, EventAction};
use crate::auth::Caller;
use crate::db::{self, schema::tracks};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{Body, Query};
use crate::openapi::{BodyErrors, EventErrors};
use crate::pagination::{Page, check_limit, decode_cursor};
use crate::patch;
use crate::state::State;
use crate::validation::Validator;

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(list_tracks)
        .service(create_track)
        .service(get_track)
        .service(update_track)
        .service(delete_track);
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = tracks)]
pub struct Track {
    pub id: Uuid,
    pub event_id: Uuid,
    pub title: String,
    pub description: Option<String>,
    pub colour: Option<String>,
    pub position: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A thematic direction of the programme.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrackView {
    pub id: Uuid,
    pub event_id: Uuid,
    #[schema(example = "Роль волонтёрского движения в жизни города")]
    pub title: String,
    pub description: Option<String>,
    /// `#rrggbb`.
    #[schema(example = "#1f6feb")]
    pub colour: Option<String>,
    /// Tracks are listed by this, then by creation.
    pub order: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Track> for TrackView {
    fn from(t: Track) -> Self {
        TrackView {
            id: t.id,
            event_id: t.event_id,
            title: t.title,
            description: t.description,
            colour: t.colour,
            order: t.position,
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTrack {
    #[schema(max_length = 300)]
    pub title: String,
    #[serde(default)]
    #[schema(max_length = 5000)]
    pub description: Option<String>,
    #[serde(default)]
    #[schema(pattern = "^#[0-9a-fA-F]{6}$")]
    pub colour: Option<String>,
    #[serde(default)]
    pub order: Option<i32>,
}

/// Changes to a track (merge patch).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrackPatch {
    #[serde(default, deserialize_with = "patch::non_null")]
    #[schema(nullable = false)]
    #[schema(max_length = 300)]
    pub title: Option<String>,
    #[serde(default, deserialize_with = "patch::nullable")]
    #[schema(value_type = Option<String>, max_length = 5000)]
    pub description: Option<Option<String>>,
    #[serde(default, deserialize_with = "patch::nullable")]
    #[schema(value_type = Option<String>, pattern = "^#[0-9a-fA-F]{6}$")]
    pub colour: Option<Option<String>>,
    #[serde(default, deserialize_with = "patch::non_null")]
    #[schema(nullable = false)]
    pub order: Option<i32>,
}

pub fn is_hex_colour(value: &str) -> bool {
    value.len() == 7 && value.starts_with('#') && value[1..].bytes().all(|b| b.is_ascii_hexdigit())
}

fn validate(
    title: &str,
    description: Option<&str>,
    colour: Option<&str>,
    order: i32,
) -> ApiResult<()> {
    let mut v = Validator::new();
    v.line("title", title, 300);
    v.opt_text("description", description, 5000);
    if let Some(colour) = colour {
        v.check(
            is_hex_colour(colour),
            "colour",
            "must be a hex colour such as #1f6feb",
        );
    }
    v.range("order", order, -100_000, 100_000);
    v.finish()
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TrackListParams {
    /// Items per page, 1 to 200; 50 when absent.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// The event's tracks, in their order.
#[utoipa::path(
    tag = "programme",
    params(("event" = String, Path, description = "Event slug or id"), TrackListParams),
    responses(
        (status = 200, description = "One page of tracks.", body = Page<TrackView>),
        (status = 422, description = "`validation_failed`: bad `limit` or `cursor`.",
         body = Problem, content_type = "application/problem+json"),
        EventErrors,
    ),
    security((), ("bearer" = []))
)]
#[get("/events/{event}/tracks")]
async fn list_tracks(
    state: State,
    caller: Caller,
    path: web::Path<String>,
    params: Query<TrackListParams>,
) -> ApiResult<web::Json<Page<TrackView>>> {
    let limit = check_limit(params.limit)?;
    let after: Option<(i32, Uuid)> = params.cursor.as_deref().map(decode_cursor).transpose()?;
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &path, EventAction::View).await?;
    let mut query = tracks::table
        .filter(tracks::event_id.eq(ctx.event.id))
        .select(Track::as_select())
        .order((tracks::position, tracks::id))
        .limit(limit + 1)
        .into_boxed();
    if let Some((position, id)) = after {
        query = query.filter(
            tracks::position
                .gt(position)
                .or(tracks::position.eq(position).and(tracks::id.gt(id))),
        );
    }
    let rows = query.load(&mut conn).await?;
    Ok(web::Json(
        Page::from_rows(rows, limit, |t| (t.position, t.id)).map(TrackView::from),
    ))
}

/// Validates and adds a track to an event.
pub async fn create(
    conn: &mut diesel_async::AsyncPgConnection,
    event_id: Uuid,
    body: NewTrack,
) -> ApiResult<Track> {
    let order = body.order.unwrap_or(0);
    validate(
        &body.title,
        body.description.as_deref(),
        body.colour.as_deref(),
        order,
    )?;
    Ok(diesel::insert_into(tracks::table)
        .values((
            tracks::id.eq(Uuid::now_v7()),
            tracks::event_id.eq(event_id),
            tracks::title.eq(body.title),
            tracks::description.eq(body.description),
            tracks::colour.eq(body.colour),
            tracks::position.eq(order),
        ))
        .returning(Track::as_returning())
        .get_results(conn)
        .await
        .and_then(crate::db::single)?)
}

/// Add a track.
#[utoipa::path(
    tag = "programme",
    params(("event" = String, Path, description = "Event slug or id")),
    request_body = NewTrack,
    responses((status = 201, description = "The track was added.", body = TrackView), EventErrors, BodyErrors),
    security(("bearer" = []))
)]
#[post("/events/{event}/tracks")]
async fn create_track(
    state: State,
    caller: Caller,
    path: web::Path<String>,
    body: Body<NewTrack>,
) -> ApiResult<HttpResponse> {
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &path, EventAction::Edit).await?;
    let track = create(&mut conn, ctx.event.id, body.into_inner()).await?;
    state.event_changed(ctx.event.id);
    Ok(HttpResponse::Created().json(TrackView::from(track)))
}

async fn find(
    conn: &mut diesel_async::AsyncPgConnection,
    event_id: Uuid,
    id: Uuid,
) -> ApiResult<Track> {
    tracks::table
        .filter(tracks::event_id.eq(event_id))
        .find(id)
        .select(Track::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or_else(|| ApiError::not_found("track"))
}

/// One track.
#[utoipa::path(
    tag = "programme",
    params(("event" = String, Path, description = "Event slug or id"), ("track_id" = Uuid, Path)),
    responses((status = 200, description = "The track.", body = TrackView), EventErrors),
    security((), ("bearer" = []))
)]
#[get("/events/{event}/tracks/{track_id}")]
async fn get_track(
    state: State,
    caller: Caller,
    path: web::Path<(String, Uuid)>,
) -> ApiResult<web::Json<TrackView>> {
    let (event_ref, id) = path.into_inner();
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &event_ref, EventAction::View).await?;
    Ok(web::Json(find(&mut conn, ctx.event.id, id).await?.into()))
}

/// Change a track (merge patch).
#[utoipa::path(
    tag = "programme",
    params(("event" = String, Path, description = "Event slug or id"), ("track_id" = Uuid, Path)),
    request_body(content = TrackPatch, content_type = "application/json"),
    responses((status = 200, description = "The changed track.", body = TrackView), EventErrors, BodyErrors),
    security(("bearer" = []))
)]
#[patch("/events/{event}/tracks/{track_id}")]
async fn update_track(
    state: State,
    caller: Caller,
    path: web::Path<(String, Uuid)>,
    body: Body<TrackPatch>,
) -> ApiResult<web::Json<TrackView>> {
    let (event_ref, id) = path.into_inner();
    let body = body.into_inner();
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &event_ref, EventAction::Edit).await?;
    let current = find(&mut conn, ctx.event.id, id).await?;
    let title = body.title.unwrap_or(current.title);
    let description = body.description.unwrap_or(current.description);
    let colour = body.colour.unwrap_or(current.colour);
    let order = body.order.unwrap_or(current.position);
    validate(&title, description.as_deref(), colour.as_deref(), order)?;
    let track = diesel::update(tracks::table.find(id))
        .set((
            tracks::title.eq(title),
            tracks::description.eq(description),
            tracks::colour.eq(colour),
            tracks::position.eq(order),
            tracks::updated_at.eq(Utc::now()),
        ))
        .returning(Track::as_returning())
        .get_results(&mut conn)
        .await
        .and_then(crate::db::single)?;
    state.event_changed(ctx.event.id);
    Ok(web::Json(track.into()))
}

/// Delete a track no session belongs to.
#[utoipa::path(
    tag = "programme",
    params(("event" = String, Path, description = "Event slug or id"), ("track_id" = Uuid, Path)),
    responses(
        (status = 204, description = "The track was deleted."),
        (status = 409, description = "`track_in_use`: sessions belong to this track.",
         body = Problem, content_type = "application/problem+json"),
        EventErrors,
    ),
    security(("bearer" = []))
)]
#[delete("/events/{event}/tracks/{track_id}")]
async fn delete_track(
    state: State,
    caller: Caller,
    path: web::Path<(String, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (event_ref, id) = path.into_inner();
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &event_ref, EventAction::Edit).await?;
    let deleted = diesel::delete(
        tracks::table
            .filter(tracks::event_id.eq(ctx.event.id))
            .find(id),
    )
    .execute(&mut conn)
    .await
    .map_err(|error| match db::violated_constraint(&error) {
        Some(_) => ApiError::conflict(
            "track_in_use",
            "sessions belong to this track; move them first",
        ),
        None => error.into(),
    })?;
    if deleted == 0 {
        return Err(ApiError::not_found("track"));
    }
    state.event_changed(ctx.event.id);
    Ok(HttpResponse::NoContent().finish())
}
