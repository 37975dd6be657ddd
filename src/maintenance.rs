//! Housekeeping every instance does in the background: expired rate-limit entries,
//! idempotency records and refresh tokens are removed. Several instances doing it at once
//! is harmless.

use std::time::Duration;

use diesel_async::RunQueryDsl;

use crate::runner::Runner;
use crate::state::AppState;

const EVERY: Duration = Duration::from_secs(300);

pub fn start(runner: &mut Runner, state: AppState) {
    runner.repeat("housekeeping", EVERY, None, move || {
        let state = state.clone();
        async move {
            run_once(&state).await?;
            Ok(false)
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
