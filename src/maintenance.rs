//! Housekeeping every instance runs in the background: expired rate-limit entries,
//! idempotency records and refresh tokens are removed. Several instances doing it at once
//! is harmless.

use std::sync::Arc;
use std::time::Duration;

use diesel_async::RunQueryDsl;

use crate::state::AppState;

const EVERY: Duration = Duration::from_secs(300);

pub fn spawn(state: Arc<AppState>) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(EVERY);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            if let Err(error) = run_once(&state).await {
                tracing::warn!(%error, "housekeeping failed; will try again");
            }
        }
    });
}

pub async fn run_once(state: &AppState) -> anyhow::Result<()> {
    let mut conn = state.db.get().await?;
    for statement in [
        "DELETE FROM rate_limits WHERE tat < now()",
        "DELETE FROM idempotency_keys WHERE created_at < now() - interval '24 hours'",
        "DELETE FROM refresh_tokens WHERE expires_at < now() - interval '1 day'",
    ] {
        diesel::sql_query(statement).execute(&mut conn).await?;
    }
    Ok(())
}
