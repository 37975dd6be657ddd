//! What every handler can reach: a database pool, the configuration, keys, caches, metrics.
//!
//! Each HTTP worker has a pool of its own. A connection's I/O runs on the runtime that opened
//! it, so connections shared between workers would break when one worker stops first during
//! a graceful shutdown while another still answers requests with them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::web;
use secrecy::{ExposeSecret, SecretString};

use crate::auth::jwt::Keys;
use crate::caches::Caches;
use crate::changes::{Signals, Stale};
use crate::config::Config;
use crate::db::{self, DbConn, DbPool};
use crate::error::ApiResult;
use crate::metrics::Metrics;
use crate::ratelimit::RateLimits;
use crate::secrets::KeyRing;
use crate::streams::StreamSlots;

#[derive(Clone)]
pub struct AppState {
    /// This worker's pool (for background work: the instance's own).
    pub db: DbPool,
    pub config: Arc<Config>,
    pub keys: Arc<Keys>,
    /// Seals and opens secrets stored in the database.
    pub sealing: Arc<KeyRing>,
    pub metrics: Arc<Metrics>,
    /// What the instance keeps of events for a moment (each domain's own cache).
    pub caches: Arc<Caches>,
    pub rate_limits: RateLimits,
    /// Wakes the change log's consumers.
    pub signals: Arc<Signals>,
    /// Slots for streamed answers fed from this worker's pool.
    pub streams: StreamSlots,
    /// Every pool of the instance, for the metrics.
    pools: Arc<Mutex<Vec<DbPool>>>,
    /// The HTTP workers' pools.
    foreground: Arc<Mutex<Vec<DbPool>>>,
}

pub type State = web::Data<AppState>;

impl AppState {
    pub fn new(config: Config, db: DbPool, secret: SecretString, sealing: KeyRing) -> Self {
        let public_cache = Duration::from_millis(config.public_cache_ms);
        AppState {
            keys: Arc::new(Keys::new(secret, config.access_token_ttl())),
            sealing: Arc::new(sealing),
            pools: Arc::new(Mutex::new(vec![db.clone()])),
            foreground: Arc::default(),
            db,
            metrics: Arc::new(Metrics::new()),
            caches: Arc::new(Caches::new(public_cache)),
            rate_limits: RateLimits::new(
                config.login_rate_limit,
                config.registration_rate_limit,
                config.login_account_limit,
                (config.resend_rate_limit, config.resend_email_limit),
                config.trusted_proxies.clone(),
            ),
            signals: Signals::new(),
            streams: StreamSlots::new(1, Duration::from_millis(config.send_timeout_ms)),
            config: Arc::new(config),
        }
    }

    /// The same state with a pool of its own of `size` connections (for one worker).
    pub fn with_own_pool(&self, size: usize) -> anyhow::Result<Self> {
        let pool = db::pool(
            self.config.database_url.expose_secret(),
            size,
            self.config.db_timeout(),
        )?;
        for pools in [&self.pools, &self.foreground] {
            pools
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(pool.clone());
        }
        Ok(AppState {
            db: pool,
            streams: self.streams.for_pool(size),
            ..self.clone()
        })
    }

    pub fn pools(&self) -> Vec<DbPool> {
        self.pools
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Whether requests are waiting for a database connection in some HTTP worker: the
    /// instance answers as fast as the database lets it, and background work gives way
    /// (`runner::Pace`).
    pub fn foreground_saturated(&self) -> bool {
        self.foreground
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .any(|pool| pool.status().waiting > 0)
    }

    /// An event or its programme changed through this instance: what every instance keeps of
    /// it is stale (the others hear of it through the change notifications).
    pub fn event_changed(&self, event_id: uuid::Uuid) {
        self.forget(Stale::Event(event_id));
        self.signals.event_changed(event_id);
    }

    /// Drops what this instance keeps of public data that is stale.
    pub fn forget(&self, stale: Stale) {
        match stale {
            Stale::Event(event_id) => self.caches.forget_event(event_id),
            Stale::Everything => self.caches.clear(),
        }
    }

    /// Applies what the other instances say is stale, until `stop` is set.
    pub async fn forget_what_others_changed(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        use tokio::sync::broadcast::error::RecvError;
        let mut stale = self.signals.stale();
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                heard = stale.recv() => match heard {
                    Ok(stale) => self.forget(stale),
                    // Fell behind: some were missed.
                    Err(RecvError::Lagged(_)) => self.forget(Stale::Everything),
                    Err(RecvError::Closed) => return,
                },
            }
        }
    }

    /// A pooled connection, or 503 when the database cannot be reached in time.
    pub async fn conn(&self) -> ApiResult<DbConn> {
        Ok(self.db.get().await?)
    }
}
