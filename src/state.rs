//! What every handler can reach: the pool, the configuration, keys and metrics.

use actix_web::web;

use crate::auth::jwt::Keys;
use crate::config::Config;
use crate::db::{DbConn, DbPool};
use crate::error::ApiResult;
use crate::metrics::Metrics;
use crate::programme::ProgrammeCache;
use crate::ratelimit::RateLimits;

pub struct AppState {
    pub db: DbPool,
    pub config: Config,
    pub keys: Keys,
    pub metrics: Metrics,
    pub programme_cache: ProgrammeCache,
    pub rate_limits: RateLimits,
}

pub type State = web::Data<AppState>;

impl AppState {
    /// A pooled connection, or 503 when the database cannot be reached in time.
    pub async fn conn(&self) -> ApiResult<DbConn> {
        Ok(self.db.get().await?)
    }
}
