//! Email to participants.
//!
//! The `email` consumer of the change log turns changes into mails in `email_messages`, in
//! the transaction that moves its cursor (`queue`): registered (or waitlisted, when every
//! session asked for was), promoted, cancelled, a session's time or venue changed, a session
//! cancelled, the link to confirm an address, a new manage link. A periodic round adds each
//! registration's reminder. A queued mail holds no personal data and no token: it is rendered
//! when it is sent (`render`), from the registration as it is then, in its language, from
//! templates a reader can edit (`templates/email/`, built into the binary, each replaceable
//! from `REGISTRAR_EMAIL_TEMPLATES`). Delivery rounds (`deliver`) lease due mails with
//! `FOR UPDATE SKIP LOCKED`, one registration's in order, send them over SMTP outside any
//! transaction and retry failures with `retry::Backoff::DELIVERIES`.
//!
//! The manage token is never stored: the registration keeps the nonce it is derived from
//! with a server key, and the mail derives it again. Mailing a new link (`resend`) gives the
//! registration a new nonce, so the old link stops working; this is how the owner of an
//! address takes over a registration someone else made with it. Events may ask
//! participants to confirm their address (`confirm`): the registration holds its places
//! until the link is followed, and is cancelled (its places go to the waitlists) if it is
//! not in time.
//!
//! Without SMTP settings the service runs, queues mail and says at start that email is off;
//! the queue is sent once SMTP is configured (see `deliver` for what is dropped then).

mod confirm;
mod deliver;
mod queue;
mod render;
mod resend;

use std::time::Duration;

use tokio::sync::watch;

use crate::runner::Runner;
use crate::state::AppState;

pub use queue::QUEUE_MAILS;
pub use render::Templates;

/// An API error as background work reports it (with its cause).
fn background(error: crate::error::ApiError) -> anyhow::Error {
    anyhow::anyhow!("{error}")
}

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(resend::resend_link)
        .service(confirm::confirm_email);
}

/// Starts email's background work: the change-log consumer, delivery (when SMTP is
/// configured), reminders, address confirmation deadlines and the queue's figures.
pub fn start(runner: &mut Runner, state: &AppState) -> anyhow::Result<()> {
    let templates = std::sync::Arc::new(Templates::load(state.config.email_templates.as_deref())?);
    let mailer = deliver::Mailer::from_config(&state.config)?;
    let poll = Duration::from_millis(state.config.email_poll_ms.max(10));
    // Wakes delivery when mails were queued.
    let (queued, wake_delivery) = watch::channel(0u64);

    // The change log's consumer, and now and then the scheduled work, in one task: each
    // task of an instance may hold a connection of the few kept for background work.
    let round_state = state.clone();
    let queued_by_rounds = queued.clone();
    let mut scheduled_at: Option<std::time::Instant> = None;
    runner.repeat(
        "email: changes and schedule",
        poll,
        Some(state.signals.subscribe()),
        move || {
            let state = round_state.clone();
            let queued = queued_by_rounds.clone();
            let schedule = scheduled_at.is_none_or(|at| at.elapsed() >= poll);
            if schedule {
                scheduled_at = Some(std::time::Instant::now());
            }
            async move {
                let round = queue::consume(&state).await?;
                let mut more = round.more;
                let mut queued_now = round.queued;
                if schedule {
                    more |= confirm::cancel_expired(&state).await?;
                    queued_now += queue::remind(&state).await?;
                    queue::observe(&state).await?;
                }
                if queued_now > 0 {
                    queued.send_modify(|n| *n = n.wrapping_add(1));
                }
                Ok(more)
            }
        },
    );

    match mailer {
        Some(mailer) => {
            let mailer = std::sync::Arc::new(mailer);
            tracing::info!(from = %mailer.from(), "email is on");
            let delivery_state = state.clone();
            runner.repeat("email: delivery", poll, Some(wake_delivery), move || {
                let (state, mailer, templates) =
                    (delivery_state.clone(), mailer.clone(), templates.clone());
                async move { deliver::round(&state, &mailer, &templates).await }
            });
        }
        None => tracing::warn!(
            "email is off: REGISTRAR_SMTP_URL is not set. Mails are queued and will be sent \
             once it is (reminders for sessions that have begun by then are dropped)"
        ),
    }

    Ok(())
}
