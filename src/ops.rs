//! Operational routes: liveness, readiness and metrics (behind an optional token).

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, get};
use diesel_async::RunQueryDsl;
use secrecy::ExposeSecret;
use serde::Serialize;
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, Problem};
use crate::state::State;

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(healthz).service(readyz).service(metrics);
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// Liveness: the process is up and answering.
#[utoipa::path(tag = "operations", responses((status = 200, description = "The process is up.", body = Health)))]
#[get("/healthz")]
async fn healthz() -> actix_web::web::Json<Health> {
    actix_web::web::Json(Health { status: "ok" })
}

/// Readiness: the database can be reached.
#[utoipa::path(
    tag = "operations",
    responses(
        (status = 200, description = "The database answers.", body = Health),
        (status = 503, description = "`database_unavailable`: the database cannot be reached.",
         body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/readyz")]
async fn readyz(state: State) -> ApiResult<actix_web::web::Json<Health>> {
    let mut conn = state.conn().await?;
    let check = diesel::sql_query("SELECT 1").execute(&mut conn);
    match tokio::time::timeout(state.config.db_timeout(), check).await {
        Ok(result) => {
            result?;
            Ok(actix_web::web::Json(Health { status: "ok" }))
        }
        Err(_) => Err(ApiError::unavailable("the database did not answer in time")
            .with_code("database_unavailable")),
    }
}

/// Metrics in the Prometheus text format. When `REGISTRAR_METRICS_TOKEN` is set, only with
/// `Authorization: Bearer <that token>`.
#[utoipa::path(
    tag = "operations",
    responses(
        (status = 200, description = "Prometheus text exposition.", body = String, content_type = "text/plain"),
        (status = 401, description = "`authentication_required`: a metrics token is configured and none was sent. \
            `invalid_token`: the token sent is not the configured one.",
         body = Problem, content_type = "application/problem+json"),
    ),
    security((), ("metrics_token" = []))
)]
#[get("/metrics")]
async fn metrics(state: State, req: HttpRequest) -> ApiResult<HttpResponse> {
    if let Some(expected) = &state.config.metrics_token {
        let sent = req
            .headers()
            .get(header::AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("metrics need the metrics token"))?;
        let sent = sent.as_bytes().strip_prefix(b"Bearer ").unwrap_or_default();
        let expected = expected.expose_secret().as_bytes();
        if !bool::from(sent.ct_eq(expected)) {
            return Err(
                ApiError::unauthorized("the metrics token is not valid").with_code("invalid_token")
            );
        }
    }
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render(&state.pools())))
}
