//! Signed webhooks, as Standard Webhooks 1.0 describes them: organisers register endpoints
//! per event (`endpoints`), every committed change of the event becomes one message per
//! endpoint subscribed to its kind (`consumer`, `payloads`), and the messages are delivered
//! at least once, in order per registration, signed (`signing`), retried with backoff, to
//! public addresses only (`guard`, `sender`, `worker`). Organisers see each delivery and its
//! attempts, and send failed ones again (`deliveries`).
//!
//! The queue is this module's own tables rather than a job-queue crate: see "Webhooks" in
//! the README for why.

pub mod consumer;
pub mod deliveries;
pub mod endpoints;
pub mod guard;
pub mod payloads;
pub mod sender;
pub mod signing;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use crate::runner::Runner;
use crate::state::AppState;

/// How often the fan-out looks at the change log when nothing woke it.
const FAN_OUT_POLL: Duration = Duration::from_secs(2);
/// How often the queue's gauges are updated and old deliveries removed.
const HOUSEKEEPING: Duration = Duration::from_secs(15);

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.configure(endpoints::routes)
        .configure(deliveries::routes);
}

/// Starts the instance's webhook work: turning changes into deliveries, delivering them,
/// and keeping the queue's gauges.
pub fn start(runner: &mut Runner, state: &AppState) -> anyhow::Result<()> {
    let worker = Arc::new(worker::Worker::new(state.clone())?);
    runner.spawn(worker.run(runner.stopping(), runner.pace()));
    let fan_out = state.clone();
    runner.repeat(
        "webhooks: fan-out",
        FAN_OUT_POLL,
        Some(state.signals.subscribe()),
        move || {
            let state = fan_out.clone();
            async move { consumer::fan_out(&state).await }
        },
    );
    let housekeeping = state.clone();
    runner.repeat("webhooks: housekeeping", HOUSEKEEPING, None, move || {
        let state = housekeeping.clone();
        async move {
            worker::housekeeping(&state).await?;
            Ok(false)
        }
    });
    Ok(())
}
