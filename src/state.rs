//! What every handler can reach: the pool, the configuration, keys and metrics.

use actix_web::web;

use crate::auth::jwt::Keys;
use crate::config::Config;
use crate::db::{DbConn, DbPool};
use crate::error::ApiResult;
use crate::metrics::Metrics;
use crate::programme::ProgrammeCache;
use crate::ratelimit::RateLimits;
use crate::registrations::Catalog;

pub struct AppState {
    pub db: DbPool,
    pub config: Config,
    pub keys: Keys,
    pub metrics: Metrics,
    pub programme_cache: ProgrammeCache,
    pub catalog: Catalog,
    pub rate_limits: RateLimits,
}

pub type State = web::Data<AppState>;

impl AppState {
    pub fn new(config: Config, db: DbPool, secret: secrecy::SecretString) -> Self {
        let public_cache = std::time::Duration::from_millis(config.public_cache_ms);
        AppState {
            keys: Keys::new(secret, config.access_token_ttl()),
            db,
            metrics: Metrics::new(),
            programme_cache: ProgrammeCache::new(public_cache),
            catalog: Catalog::new(public_cache),
            rate_limits: RateLimits::new(
                config.login_rate_limit,
                config.registration_rate_limit,
                config.trust_forwarded_for,
            ),
            config,
        }
    }

    /// An event or its programme changed through this instance: what the instance keeps of
    /// it is stale.
    pub fn event_changed(&self, event_id: uuid::Uuid) {
        self.programme_cache.invalidate(event_id);
        self.catalog.invalidate(event_id);
    }

    /// A pooled connection, or 503 when the database cannot be reached in time.
    pub async fn conn(&self) -> ApiResult<DbConn> {
        Ok(self.db.get().await?)
    }
}
