//! The programme of an event: venues, tracks, sessions, speakers, and the public programme
//! that third-party frontends read (JSON and iCalendar).

mod cache;
pub mod ics;
mod public;
pub mod sessions;
pub mod speakers;
pub mod tracks;
pub mod venues;

use chrono::{DateTime, Days, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

pub use cache::ProgrammeCache;
pub use public::{ProgrammeSession, entries_for, entries_without_counts};
pub use sessions::{Session, SessionKind, SessionStatus};

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.configure(public::routes)
        .configure(venues::routes)
        .configure(tracks::routes)
        .configure(sessions::routes)
        .configure(speakers::routes);
}

/// The first instant of `date` in `tz` (the first valid local time, where midnight is skipped).
pub fn start_of_day(tz: Tz, date: NaiveDate) -> DateTime<Utc> {
    let midnight = date.and_hms_opt(0, 0, 0).expect("midnight exists");
    (0..=3)
        .find_map(|hour| {
            tz.from_local_datetime(&(midnight + chrono::Duration::hours(hour)))
                .earliest()
        })
        .map(|local| local.with_timezone(&Utc))
        .unwrap_or_else(|| midnight.and_utc())
}

/// The instants an event covers: from the start of its first day to the end of its last,
/// in its time zone.
pub fn event_bounds(
    tz: Tz,
    starts_on: NaiveDate,
    ends_on: NaiveDate,
) -> (DateTime<Utc>, DateTime<Utc>) {
    let after_last = ends_on.checked_add_days(Days::new(1)).unwrap_or(ends_on);
    (start_of_day(tz, starts_on), start_of_day(tz, after_last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_bounds_follow_the_time_zone() {
        let day = NaiveDate::from_ymd_opt(2026, 4, 20).unwrap();
        let (start, end) = event_bounds(chrono_tz::Europe::Moscow, day, day);
        assert_eq!(start.to_rfc3339(), "2026-04-19T21:00:00+00:00");
        assert_eq!(end.to_rfc3339(), "2026-04-20T21:00:00+00:00");
    }
}
