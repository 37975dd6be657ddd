//! The personal-data lifecycle: what is stored about a participant can be downloaded by
//! them (`export`), and is anonymised (`erase`) when they or the event's organisers ask for
//! it (`routes`), or once the event's retention period has ended (`retention`).
//!
//! Anonymising keeps the registration's row and everything counted about it (status,
//! category, session places, seats, check-ins, the change log), so the event's figures do
//! not change; what names or reaches the person is overwritten or removed. See "Personal
//! data" in the README for the whole list and for what backups hold.

pub mod erase;
pub mod export;
pub mod retention;
mod routes;

use chrono::{DateTime, Days, NaiveTime, TimeZone, Utc};

use crate::events::Event;
use crate::runner::Runner;
use crate::state::AppState;

pub use erase::{ErasureReport, Reason, TableCounts, erase};

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.configure(routes::routes);
}

/// Starts the retention job (one instance at a time does the work, see `retention`).
pub fn start(runner: &mut Runner, state: AppState) {
    retention::start(runner, state);
}

/// Whether the event is over: its last day has ended in its time zone.
pub fn event_over(event: &Event, now: DateTime<Utc>) -> bool {
    now.with_timezone(&event.tz()).date_naive() > event.ends_on
}

/// When the event's participants' personal data is due to be anonymised: the start of the
/// day `personal_data_retention_days` after the day following its last, in its time zone
/// (the same moment the retention job computes in SQL).
pub fn erase_after(event: &Event) -> DateTime<Utc> {
    let days = u64::try_from(event.personal_data_retention_days).unwrap_or(0) + 1;
    let day = event
        .ends_on
        .checked_add_days(Days::new(days))
        .unwrap_or(event.ends_on);
    let tz = event.tz();
    tz.from_local_datetime(&day.and_time(NaiveTime::MIN))
        .earliest()
        .map_or_else(
            || day.and_time(NaiveTime::MIN).and_utc(),
            |local| local.with_timezone(&Utc),
        )
}
