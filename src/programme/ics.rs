//! iCalendar (RFC 5545) output: the programme or one session, with the event's time zone
//! described in a VTIMEZONE so that calendar clients show local times correctly.

use std::fmt::Write;

use actix_web::HttpResponse;
use chrono::{DateTime, Duration, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::{OffsetComponents, OffsetName, Tz};

use super::SessionStatus;
use super::public::ProgrammeSession;
use crate::events::Event;

/// Escapes a TEXT value.
fn text(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Appends a content line folded at 75 octets, never inside a UTF-8 character and never
/// right after white space: many parsers trim the end of each physical line before
/// unfolding, which would lose a space that ends one.
fn line(out: &mut String, content: &str) {
    let mut width = 0;
    for c in content.chars() {
        let len = c.len_utf8();
        if width + len > 75 {
            let mut carried = String::new();
            while width > 1 + carried.len() && carried.len() < 40 && out.ends_with([' ', '\t']) {
                carried.insert(0, out.pop().expect("ends with white space"));
            }
            out.push_str("\r\n ");
            out.push_str(&carried);
            width = 1 + carried.len();
        }
        out.push(c);
        width += len;
    }
    out.push_str("\r\n");
}

fn local(time: NaiveDateTime) -> String {
    time.format("%Y%m%dT%H%M%S").to_string()
}

fn utc(time: DateTime<Utc>) -> String {
    time.format("%Y%m%dT%H%M%SZ").to_string()
}

fn offset(seconds: i32) -> String {
    let sign = if seconds < 0 { '-' } else { '+' };
    let seconds = seconds.abs();
    format!("{sign}{:02}{:02}", seconds / 3600, (seconds % 3600) / 60)
}

/// The zone's observances around `[from, to]`: the offset in force at `from` and every
/// transition until `to`.
fn vtimezone(out: &mut String, tz: Tz, from: DateTime<Utc>, to: DateTime<Utc>) {
    let at = |t: DateTime<Utc>| tz.offset_from_utc_datetime(&t.naive_utc());
    line(out, "BEGIN:VTIMEZONE");
    line(out, &format!("TZID:{}", tz.name()));
    let observance =
        |out: &mut String, start: NaiveDateTime, from: i32, o: &chrono_tz::TzOffset| {
            let kind = if o.dst_offset().is_zero() {
                "STANDARD"
            } else {
                "DAYLIGHT"
            };
            line(out, &format!("BEGIN:{kind}"));
            line(out, &format!("DTSTART:{}", local(start)));
            line(out, &format!("TZOFFSETFROM:{}", offset(from)));
            line(
                out,
                &format!("TZOFFSETTO:{}", offset(o.fix().local_minus_utc())),
            );
            if let Some(name) = o.abbreviation() {
                line(out, &format!("TZNAME:{}", text(name)));
            }
            line(out, &format!("END:{kind}"));
        };
    let first = at(from);
    let first_seconds = first.fix().local_minus_utc();
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .expect("a valid date");
    observance(out, epoch, first_seconds, &first);
    let mut previous = first_seconds;
    let mut t = from;
    while t < to {
        let next = t + Duration::hours(1);
        let current = at(next).fix().local_minus_utc();
        if current != previous {
            // Find the transition to the minute, then give it in the old offset's local time.
            let mut instant = t;
            while at(instant).fix().local_minus_utc() == previous {
                instant += Duration::minutes(1);
            }
            let start = instant.naive_utc() + Duration::seconds(previous as i64);
            observance(out, start, previous, &at(instant));
            previous = current;
        }
        t = next;
    }
    line(out, "END:VTIMEZONE");
}

/// A calendar of the given sessions of `event`.
pub fn calendar(event: &Event, sessions: &[ProgrammeSession]) -> String {
    let tz = event.tz();
    let mut out = String::new();
    line(&mut out, "BEGIN:VCALENDAR");
    line(&mut out, "VERSION:2.0");
    line(&mut out, "PRODID:-//registrar//programme//RU");
    line(&mut out, "CALSCALE:GREGORIAN");
    line(&mut out, "METHOD:PUBLISH");
    line(&mut out, &format!("X-WR-CALNAME:{}", text(&event.title)));
    line(&mut out, &format!("X-WR-TIMEZONE:{}", tz.name()));
    let (from, to) = super::event_bounds(tz, event.starts_on, event.ends_on);
    vtimezone(
        &mut out,
        tz,
        from - Duration::days(1),
        to + Duration::days(1),
    );
    for s in sessions {
        line(&mut out, "BEGIN:VEVENT");
        line(&mut out, &format!("UID:{}@registrar", s.id));
        line(&mut out, &format!("DTSTAMP:{}", utc(s.updated_at)));
        line(&mut out, &format!("LAST-MODIFIED:{}", utc(s.updated_at)));
        line(
            &mut out,
            &format!(
                "DTSTART;TZID={}:{}",
                tz.name(),
                local(s.starts_at.naive_local())
            ),
        );
        line(
            &mut out,
            &format!(
                "DTEND;TZID={}:{}",
                tz.name(),
                local(s.ends_at.naive_local())
            ),
        );
        line(&mut out, &format!("SUMMARY:{}", text(&s.title)));
        let mut description = s.description.clone().unwrap_or_default();
        for speaker in &s.speakers {
            let _ = write!(description, "\n{}", speaker.full_name);
            if let Some(position) = &speaker.position {
                let _ = write!(description, ", {position}");
            }
        }
        let description = description.trim();
        if !description.is_empty() {
            line(&mut out, &format!("DESCRIPTION:{}", text(description)));
        }
        if let Some(venue) = &s.venue {
            let place = [
                Some(venue.name.as_str()),
                venue.address.as_deref(),
                venue.city.as_deref(),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", ");
            line(&mut out, &format!("LOCATION:{}", text(&place)));
        }
        if let Some(track) = &s.track {
            line(&mut out, &format!("CATEGORIES:{}", text(&track.title)));
        }
        let status = match s.status {
            SessionStatus::Cancelled => "CANCELLED",
            SessionStatus::Draft => "TENTATIVE",
            SessionStatus::Published => "CONFIRMED",
        };
        line(&mut out, &format!("STATUS:{status}"));
        line(&mut out, "END:VEVENT");
    }
    line(&mut out, "END:VCALENDAR");
    out
}

pub fn response(calendar: String, name: &str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/calendar; charset=utf-8")
        .insert_header((
            actix_web::http::header::CONTENT_DISPOSITION,
            format!("inline; filename=\"{name}.ics\""),
        ))
        .body(calendar)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_fold_between_characters() {
        let mut out = String::new();
        line(&mut out, &format!("SUMMARY:{}", "ё".repeat(60)));
        for physical in out.split("\r\n").filter(|l| !l.is_empty()) {
            assert!(physical.len() <= 75, "{physical}");
        }
        assert_eq!(
            out.replace("\r\n ", ""),
            format!("SUMMARY:{}\r\n", "ё".repeat(60))
        );
    }

    #[test]
    fn white_space_never_ends_a_folded_line() {
        let mut out = String::new();
        // "SUMMARY:" and 66 letters fill 74 octets; the space would be the 75th.
        line(
            &mut out,
            &format!("SUMMARY:{} {}", "a".repeat(66), "b".repeat(20)),
        );
        assert_eq!(
            out,
            format!("SUMMARY:{}\r\n  {}\r\n", "a".repeat(66), "b".repeat(20))
        );
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(text("a,b;c\\d\ne"), "a\\,b\\;c\\\\d\\ne");
    }

    #[test]
    fn daylight_saving_transitions_are_described() {
        let mut out = String::new();
        let from = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
        let to = Utc.with_ymd_and_hms(2026, 4, 1, 0, 0, 0).unwrap();
        vtimezone(&mut out, chrono_tz::Europe::Berlin, from, to);
        assert!(out.contains("BEGIN:DAYLIGHT\r\nDTSTART:20260329T020000\r\nTZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200"), "{out}");
        let mut moscow = String::new();
        vtimezone(&mut moscow, chrono_tz::Europe::Moscow, from, to);
        assert!(
            moscow.contains("TZOFFSETTO:+0300") && !moscow.contains("DAYLIGHT"),
            "{moscow}"
        );
    }
}
