//! `/events/{event}/webhooks/{webhook_id}/deliveries`: what was sent to an endpoint, how it
//! went, and sending messages again.

use actix_web::{HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::Uuid as SqlUuid;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::access::{self, EventAction, EventContext};
use crate::auth::Caller;
use crate::changes::ChangeKind;
use crate::db::schema::{webhook_attempts, webhook_deliveries, webhook_endpoints};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::Query;
use crate::openapi::EventErrors;
use crate::pagination::{Page, check_limit, decode_cursor};
use crate::state::State;

/// Attempts shown with a delivery, newest first.
const ATTEMPTS_SHOWN: i64 = 100;

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(list_deliveries)
        .service(get_delivery)
        .service(redeliver)
        .service(redeliver_failed);
}

crate::text_enum! {
    /// `pending`: waiting to be sent, being sent, or to be tried again; `delivered`: the
    /// endpoint answered 2xx; `failed`: given up (three days of failures, a 410 answer, or
    /// the endpoint was disabled).
    pub enum DeliveryStatus {
        Pending => "pending",
        Delivered => "delivered",
        Failed => "failed",
    }
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = webhook_deliveries)]
struct Delivery {
    id: Uuid,
    seq: i64,
    kind: ChangeKind,
    change_id: i64,
    registration_id: Option<Uuid>,
    status: DeliveryStatus,
    attempts: i32,
    next_attempt_at: DateTime<Utc>,
    lease_token: Option<Uuid>,
    first_attempt_at: Option<DateTime<Utc>>,
    last_attempt_at: Option<DateTime<Utc>>,
    last_status_code: Option<i32>,
    last_error: Option<String>,
    last_duration_ms: Option<i32>,
    created_at: DateTime<Utc>,
    delivered_at: Option<DateTime<Utc>>,
    failed_at: Option<DateTime<Utc>>,
}

/// One message to one endpoint, and how sending it went.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    /// The message's id, sent as `webhook-id` on every attempt.
    pub id: Uuid,
    #[serde(rename = "type")]
    pub kind: ChangeKind,
    /// The change it tells of (`data.change_id` in the message).
    pub change_id: i64,
    pub registration_id: Option<Uuid>,
    pub status: DeliveryStatus,
    /// An attempt is under way.
    pub in_progress: bool,
    /// Attempts made (since the last manual redelivery).
    pub attempts: i32,
    /// When it is tried (again), while pending and not under way.
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub first_attempt_at: Option<DateTime<Utc>>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// The status of the last answer; null when none came.
    pub last_status_code: Option<i32>,
    /// Why the last attempt failed (`answered 500`, `no complete answer within 15 s`, ...).
    pub last_error: Option<String>,
    /// How long the last attempt took.
    pub last_duration_ms: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub failed_at: Option<DateTime<Utc>>,
}

impl From<Delivery> for DeliveryView {
    fn from(d: Delivery) -> Self {
        let in_progress = d.status == DeliveryStatus::Pending
            && d.lease_token.is_some()
            && d.next_attempt_at > Utc::now();
        DeliveryView {
            id: d.id,
            kind: d.kind,
            change_id: d.change_id,
            registration_id: d.registration_id,
            status: d.status,
            in_progress,
            attempts: d.attempts,
            next_attempt_at: (d.status == DeliveryStatus::Pending && !in_progress)
                .then_some(d.next_attempt_at),
            first_attempt_at: d.first_attempt_at,
            last_attempt_at: d.last_attempt_at,
            last_status_code: d.last_status_code,
            last_error: d.last_error,
            last_duration_ms: d.last_duration_ms,
            created_at: d.created_at,
            delivered_at: d.delivered_at,
            failed_at: d.failed_at,
        }
    }
}

/// One attempt to send a message.
#[derive(Debug, Serialize, ToSchema, Queryable, Selectable)]
#[diesel(table_name = webhook_attempts)]
pub struct AttemptView {
    pub attempted_at: DateTime<Utc>,
    pub duration_ms: i32,
    /// The answer's status; null when none came.
    pub status_code: Option<i32>,
    /// Why it failed.
    pub error: Option<String>,
    /// The start of the answer's body (at most 1 KiB).
    pub response_excerpt: Option<String>,
}

/// A delivery with the message sent and its attempts.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryDetail {
    #[serde(flatten)]
    pub delivery: DeliveryView,
    /// The message's body, as sent on every attempt (see the `webhooks` of this document).
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// The latest 100 attempts, newest first.
    pub attempts_made: Vec<AttemptView>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeliveryListParams {
    pub status: Option<DeliveryStatus>,
    /// Items per page, 1 to 200; 50 when absent.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// How many messages were queued again.
#[derive(Debug, Serialize, ToSchema)]
pub struct Redelivered {
    pub redelivered: usize,
}

/// Whether the event's endpoint `id` is enabled; 404 when the event has no such endpoint.
async fn endpoint(conn: &mut AsyncPgConnection, ctx: &EventContext, id: Uuid) -> ApiResult<bool> {
    webhook_endpoints::table
        .filter(webhook_endpoints::event_id.eq(ctx.event.id))
        .find(id)
        .select(webhook_endpoints::enabled)
        .first(conn)
        .await
        .optional()?
        .ok_or_else(|| ApiError::not_found("webhook"))
}

fn require_enabled(enabled: bool) -> ApiResult<()> {
    if enabled {
        Ok(())
    } else {
        Err(ApiError::conflict(
            "webhook_disabled",
            "the endpoint is disabled; enable it first",
        ))
    }
}

/// The messages sent (or being sent) to an endpoint, newest first (organisers).
#[utoipa::path(
    tag = "webhooks",
    params(("event" = String, Path, description = "Event slug or id"), ("webhook_id" = Uuid, Path), DeliveryListParams),
    responses((status = 200, description = "One page of deliveries.", body = Page<DeliveryView>), EventErrors),
    security(("bearer" = []))
)]
#[get("/events/{event}/webhooks/{webhook_id}/deliveries")]
async fn list_deliveries(
    state: State,
    caller: Caller,
    path: web::Path<(String, Uuid)>,
    params: Query<DeliveryListParams>,
) -> ApiResult<web::Json<Page<DeliveryView>>> {
    let (event_ref, id) = path.into_inner();
    let limit = check_limit(params.limit)?;
    let after: Option<i64> = params.cursor.as_deref().map(decode_cursor).transpose()?;
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &event_ref, EventAction::ViewWebhooks).await?;
    endpoint(&mut conn, &ctx, id).await?;
    let mut query = webhook_deliveries::table
        .filter(webhook_deliveries::endpoint_id.eq(id))
        .select(Delivery::as_select())
        .order(webhook_deliveries::seq.desc())
        .limit(limit + 1)
        .into_boxed();
    if let Some(status) = params.status {
        query = query.filter(webhook_deliveries::status.eq(status));
    }
    if let Some(after) = after {
        query = query.filter(webhook_deliveries::seq.lt(after));
    }
    let rows = query.load(&mut conn).await?;
    Ok(web::Json(
        Page::from_rows(rows, limit, |d| d.seq).map(DeliveryView::from),
    ))
}

/// One delivery, with the message sent and its attempts (organisers).
#[utoipa::path(
    tag = "webhooks",
    params(("event" = String, Path, description = "Event slug or id"), ("webhook_id" = Uuid, Path), ("delivery_id" = Uuid, Path)),
    responses((status = 200, description = "The delivery.", body = DeliveryDetail), EventErrors),
    security(("bearer" = []))
)]
#[get("/events/{event}/webhooks/{webhook_id}/deliveries/{delivery_id}")]
async fn get_delivery(
    state: State,
    caller: Caller,
    path: web::Path<(String, Uuid, Uuid)>,
) -> ApiResult<web::Json<DeliveryDetail>> {
    let (event_ref, id, delivery_id) = path.into_inner();
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &event_ref, EventAction::ViewWebhooks).await?;
    endpoint(&mut conn, &ctx, id).await?;
    let (delivery, payload): (Delivery, String) = webhook_deliveries::table
        .filter(webhook_deliveries::endpoint_id.eq(id))
        .find(delivery_id)
        .select((Delivery::as_select(), webhook_deliveries::payload))
        .first(&mut conn)
        .await
        .optional()?
        .ok_or_else(|| ApiError::not_found("delivery"))?;
    let attempts = webhook_attempts::table
        .filter(webhook_attempts::delivery_id.eq(delivery_id))
        .order(webhook_attempts::id.desc())
        .limit(ATTEMPTS_SHOWN)
        .select(AttemptView::as_select())
        .load(&mut conn)
        .await?;
    Ok(web::Json(DeliveryDetail {
        delivery: delivery.into(),
        payload: serde_json::from_str(&payload).map_err(ApiError::internal)?,
        attempts_made: attempts,
    }))
}

/// Send a message again now, with the same `webhook-id` and body (owners and editors). Its
/// three days of retries start again.
#[utoipa::path(
    tag = "webhooks",
    params(("event" = String, Path, description = "Event slug or id"), ("webhook_id" = Uuid, Path), ("delivery_id" = Uuid, Path)),
    responses(
        (status = 202, description = "It is queued; it goes out within moments.", body = DeliveryView),
        (status = 409, description = "`webhook_disabled`: enable the endpoint first. \
            `delivery_in_progress`: an attempt is under way.",
         body = Problem, content_type = "application/problem+json"),
        EventErrors,
    ),
    security(("bearer" = []))
)]
#[post("/events/{event}/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver")]
async fn redeliver(
    state: State,
    caller: Caller,
    path: web::Path<(String, Uuid, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (event_ref, id, delivery_id) = path.into_inner();
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &event_ref, EventAction::ManageWebhooks).await?;
    require_enabled(endpoint(&mut conn, &ctx, id).await?)?;
    let queued = diesel::sql_query(format!(
        "UPDATE webhook_deliveries SET {REQUEUE} \
         WHERE endpoint_id = $1 AND id = $2 \
           AND NOT (status = 'pending' AND lease_token IS NOT NULL AND next_attempt_at > now())"
    ))
    .bind::<SqlUuid, _>(id)
    .bind::<SqlUuid, _>(delivery_id)
    .execute(&mut conn)
    .await?;
    match queued {
        1 => {
            let delivery = webhook_deliveries::table
                .find(delivery_id)
                .select(Delivery::as_select())
                .first(&mut conn)
                .await?;
            Ok(HttpResponse::Accepted().json(DeliveryView::from(delivery)))
        }
        _ => {
            let exists: bool = diesel::select(diesel::dsl::exists(
                webhook_deliveries::table
                    .filter(webhook_deliveries::endpoint_id.eq(id))
                    .find(delivery_id),
            ))
            .get_results(&mut conn)
            .await
            .and_then(crate::db::single)?;
            Err(if exists {
                ApiError::conflict(
                    "delivery_in_progress",
                    "an attempt to send this message is under way",
                )
            } else {
                ApiError::not_found("delivery")
            })
        }
    }
}

/// Send again every message to this endpoint that failed (owners and editors), with the same
/// `webhook-id`s and bodies, in their original order.
#[utoipa::path(
    tag = "webhooks",
    params(("event" = String, Path, description = "Event slug or id"), ("webhook_id" = Uuid, Path)),
    responses(
        (status = 202, description = "They are queued.", body = Redelivered),
        (status = 409, description = "`webhook_disabled`: enable the endpoint first.",
         body = Problem, content_type = "application/problem+json"),
        EventErrors,
    ),
    security(("bearer" = []))
)]
#[post("/events/{event}/webhooks/{webhook_id}/deliveries/redeliver-failed")]
async fn redeliver_failed(
    state: State,
    caller: Caller,
    path: web::Path<(String, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (event_ref, id) = path.into_inner();
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &event_ref, EventAction::ManageWebhooks).await?;
    require_enabled(endpoint(&mut conn, &ctx, id).await?)?;
    let redelivered = diesel::sql_query(format!(
        "UPDATE webhook_deliveries SET {REQUEUE} WHERE endpoint_id = $1 AND status = 'failed'"
    ))
    .bind::<SqlUuid, _>(id)
    .execute(&mut conn)
    .await?;
    Ok(HttpResponse::Accepted().json(Redelivered { redelivered }))
}

/// Back to the queue, due now, with a fresh retry period.
const REQUEUE: &str = "status = 'pending', next_attempt_at = now(), attempts = 0, \
                       first_attempt_at = NULL, lease_token = NULL, delivered_at = NULL, \
                       failed_at = NULL";
