//! Telling people and systems what changed: signed webhooks to organisers' systems and email
//! to participants. Both are consumers of the change log (`crate::changes`): each reads the
//! changes in order, turns them into deliveries in the same transaction that moves its cursor,
//! and delivers them from its own queue, retrying with `retry::Backoff`, so a change that
//! rolled back sends nothing and one that committed is delivered at least once, whatever the
//! receiver does meanwhile.

pub mod email;
pub mod retry;
pub mod webhooks;

use crate::runner::Runner;
use crate::state::AppState;

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.configure(email::routes).configure(webhooks::routes);
}

/// Starts the instance's delivery work on every channel.
pub fn start(runner: &mut Runner, state: &AppState) -> anyhow::Result<()> {
    email::start(runner, state)?;
    webhooks::start(runner, state)?;
    Ok(())
}
