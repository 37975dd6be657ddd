//! Live numbers for organisers: registered, checked in, badges printed, per category, per
//! session, and how the form's questions were answered.

use actix_web::{get, web};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Integer, Nullable, Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::access::{self, EventAction};
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::forms::answers::{self, QuestionCount};
use crate::openapi::EventErrors;
use crate::state::State;

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(event_stats);
}

#[derive(Debug, Serialize, ToSchema, QueryableByName)]
pub struct Totals {
    /// Active registrations.
    #[diesel(sql_type = BigInt)]
    pub registered: i64,
    #[diesel(sql_type = BigInt)]
    pub cancelled: i64,
    /// Active registrations checked in at the entrance.
    #[diesel(sql_type = BigInt)]
    pub checked_in: i64,
    #[diesel(sql_type = BigInt)]
    pub badges_printed: i64,
}

#[derive(Debug, Serialize, ToSchema, QueryableByName)]
pub struct CategoryStats {
    #[diesel(sql_type = Text)]
    pub category: String,
    #[diesel(sql_type = BigInt)]
    pub registered: i64,
    #[diesel(sql_type = BigInt)]
    pub checked_in: i64,
}

#[derive(Debug, Serialize, ToSchema, QueryableByName)]
pub struct SessionStats {
    #[diesel(sql_type = SqlUuid)]
    pub session_id: Uuid,
    #[diesel(sql_type = Text)]
    pub title: String,
    #[diesel(sql_type = Nullable<Integer>)]
    pub capacity: Option<i32>,
    #[diesel(sql_type = BigInt)]
    pub confirmed: i64,
    #[diesel(sql_type = BigInt)]
    pub waitlisted: i64,
    /// Checked in at the session's door.
    #[diesel(sql_type = BigInt)]
    pub checked_in: i64,
}

/// An event's numbers, counted now.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventStats {
    #[serde(flatten)]
    pub totals: Totals,
    pub by_category: Vec<CategoryStats>,
    /// By start time.
    pub sessions: Vec<SessionStats>,
    /// The answers of active registrations (cancelled ones are not counted), question by
    /// question in the form's order: per option for choice questions (with places left of
    /// limited options), yes and no for yes/no questions, and for every question how many
    /// answered it.
    pub questions: Vec<QuestionCount>,
}

/// Live numbers: registered, checked in, badges printed, per category, per session, and per
/// question of the form (active registrations only).
#[utoipa::path(
    tag = "badges",
    params(("event" = String, Path, description = "Event slug or id")),
    responses((status = 200, description = "The numbers.", body = EventStats), EventErrors),
    security(("bearer" = []))
)]
#[get("/events/{event}/stats")]
async fn event_stats(
    state: State,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<web::Json<EventStats>> {
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &path, EventAction::ViewPrivate).await?;
    let event_id = ctx.event.id;
    let totals: Totals = diesel::sql_query(
        "SELECT count(*) FILTER (WHERE status = 'active') AS registered, \
                count(*) FILTER (WHERE status = 'cancelled') AS cancelled, \
                count(*) FILTER (WHERE status = 'active' AND checked_in_at IS NOT NULL) AS checked_in, \
                count(*) FILTER (WHERE status = 'active' AND badge_printed_at IS NOT NULL) AS badges_printed \
         FROM registrations WHERE event_id = $1",
    )
    .bind::<SqlUuid, _>(event_id)
    .get_results(&mut conn)
    .await.and_then(crate::db::single)?;
    let by_category: Vec<CategoryStats> = diesel::sql_query(
        "SELECT category, count(*) AS registered, \
                count(*) FILTER (WHERE checked_in_at IS NOT NULL) AS checked_in \
         FROM registrations WHERE event_id = $1 AND status = 'active' \
         GROUP BY category ORDER BY category",
    )
    .bind::<SqlUuid, _>(event_id)
    .load(&mut conn)
    .await?;
    let sessions: Vec<SessionStats> = diesel::sql_query(
        "SELECT s.id AS session_id, s.title, s.capacity, \
                (SELECT count(*) FROM registration_sessions rs \
                 WHERE rs.session_id = s.id AND rs.status = 'confirmed') AS confirmed, \
                (SELECT count(*) FROM registration_sessions rs \
                 WHERE rs.session_id = s.id AND rs.status = 'waitlisted') AS waitlisted, \
                (SELECT count(*) FROM checkins c WHERE c.session_id = s.id) AS checked_in \
         FROM sessions s WHERE s.event_id = $1 ORDER BY s.starts_at, s.id",
    )
    .bind::<SqlUuid, _>(event_id)
    .load(&mut conn)
    .await?;
    let questions = answers::counts(&mut conn, event_id).await?;
    Ok(web::Json(EventStats {
        totals,
        by_category,
        sessions,
        questions,
    }))
}
