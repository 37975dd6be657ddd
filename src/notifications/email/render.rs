//! Mail as the participant reads it: templates (minijinja) with a plain-text and an HTML
//! part, in the registration's language, and what they are filled with.
//!
//! Templates live in `templates/email/<language>/`: `<kind>.txt` (its `subject` block is the
//! subject) and `<kind>.html`, each extending that language's `layout.txt` / `layout.html`.
//! They are built into the binary; a file of the same name under `REGISTRAR_EMAIL_TEMPLATES`
//! replaces one. Values are escaped for HTML in `.html` templates. Every template is rendered
//! once with sample values at start, so a broken one stops the start rather than the mail.

use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, Datelike, NaiveDate, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use minijinja::syntax::SyntaxConfig;
use minijinja::{Environment, UndefinedBehavior, Value};
use serde::Serialize;

use super::queue::MailKind;
use crate::events::Language;

pub struct Templates {
    env: Environment<'static>,
}

/// A mail's text, rendered.
#[derive(Debug)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl Templates {
    /// The built-in templates, with those of `overrides` (a directory laid out the same way)
    /// in place of the built-in ones of the same name.
    pub fn load(overrides: Option<&Path>) -> anyhow::Result<Self> {
        let mut env = Environment::new();
        env.set_syntax(
            SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()?,
        );
        // A misspelt name is an error, not an empty string in a participant's mail.
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        minijinja_embed::load_templates!(&mut env);
        if let Some(dir) = overrides {
            let mut files = Vec::new();
            collect(dir, dir, &mut files)
                .with_context(|| format!("reading the mail templates in {}", dir.display()))?;
            for (name, source) in files {
                env.add_template_owned(name.clone(), source)
                    .with_context(|| format!("the mail template {name} in {}", dir.display()))?;
            }
        }
        let templates = Templates { env };
        for language in Language::ALL {
            for kind in MailKind::ALL {
                templates
                    .render(*language, *kind, &MailContext::sample(*kind))
                    .with_context(|| format!("the mail template {language}/{kind}"))?;
            }
        }
        Ok(templates)
    }

    pub fn render(
        &self,
        language: Language,
        kind: MailKind,
        context: &MailContext,
    ) -> anyhow::Result<Rendered> {
        let context = Value::from(minijinja::value::Serde(context));
        let text = self.env.get_template(&format!("{language}/{kind}.txt"))?;
        let mut captured = text.render_captured(context.clone())?;
        let subject = captured.with_state_mut(|state| state.render_block("subject"))?;
        let text = captured.into_output();
        let html = self
            .env
            .get_template(&format!("{language}/{kind}.html"))?
            .render(context)?;
        let subject = subject.split_whitespace().collect::<Vec<_>>().join(" ");
        anyhow::ensure!(!subject.is_empty(), "the subject is empty");
        Ok(Rendered {
            subject,
            text,
            html,
        })
    }
}

/// Every file under `dir`, named by its path from `root` with `/`.
fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, String)>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'))
        {
            continue;
        }
        if path.is_dir() {
            collect(root, &path, files)?;
        } else {
            let name = path
                .strip_prefix(root)?
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            files.push((name, std::fs::read_to_string(&path)?));
        }
    }
    Ok(())
}

/// What templates are filled with (described for template authors in the README).
#[derive(Debug, Clone, Serialize)]
pub struct MailContext {
    pub kind: MailKind,
    pub event: EventInfo,
    pub participant: Participant,
    /// The sessions the registration holds a place in (confirmed or waitlisted), by time.
    pub sessions: Vec<SessionInfo>,
    /// The session the mail is about (promoted, session changed or cancelled).
    pub session: Option<SessionInfo>,
    /// What changed of `session`: `time`, `venue`.
    pub changed: Vec<&'static str>,
    /// The link to manage the registration (and, while it waits, to confirm the address).
    pub manage_url: Option<String>,
    /// Until when the address must be confirmed, when it must.
    pub confirm_by: Option<String>,
    /// When the participant's first session (or the event) begins: reminders.
    pub starts: Option<String>,
    /// The badge's QR code is attached as an inline image, `cid:badge-qr`.
    pub qr: bool,
    /// The sessions are attached as a calendar (`sessions.ics`).
    pub calendar: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct EventInfo {
    pub title: String,
    pub city: Option<String>,
    /// The event's days, written out.
    pub dates: String,
    /// The time zone times are given in, with its offset: `Europe/Moscow (UTC+03:00)`.
    pub time_zone: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Participant {
    pub full_name: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct SessionInfo {
    pub title: String,
    /// Its day and time, written out in the event's time zone.
    pub when: String,
    /// Its venue: name, address, city.
    pub venue: Option<String>,
    /// The participant's place: `confirmed`, `waitlisted` or `cancelled`.
    pub status: &'static str,
    pub waitlist_position: Option<i64>,
    /// The session itself was cancelled.
    pub cancelled: bool,
}

impl MailContext {
    /// Values for checking templates at start: everything a template may use, set.
    pub fn sample(kind: MailKind) -> Self {
        let session = SessionInfo {
            title: "Социальное партнёрство".into(),
            when: "24 апреля 2027 г., 11:00–13:00".into(),
            venue: Some("ДК «Металлург», Мончегорск".into()),
            status: "waitlisted",
            waitlist_position: Some(2),
            cancelled: false,
        };
        MailContext {
            kind,
            event: EventInfo {
                title: "Деловая неделя".into(),
                city: Some("Мурманск".into()),
                dates: "20–24 апреля 2027 г.".into(),
                time_zone: "Europe/Moscow (UTC+03:00)".into(),
            },
            participant: Participant {
                full_name: "Анна Иванова".into(),
            },
            sessions: vec![session.clone()],
            session: Some(session),
            changed: vec!["time", "venue"],
            manage_url: Some("https://portal.example.org/r/1?t=rgm_x".into()),
            confirm_by: Some("22 апреля 2027 г., 12:00".into()),
            starts: Some("24 апреля 2027 г., 11:00".into()),
            qr: true,
            calendar: true,
        }
    }
}

const MONTHS_RU: [&str; 12] = [
    "января",
    "февраля",
    "марта",
    "апреля",
    "мая",
    "июня",
    "июля",
    "августа",
    "сентября",
    "октября",
    "ноября",
    "декабря",
];

const MONTHS_EN: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// `24 апреля 2027 г.` / `24 April 2027`.
pub fn date(language: Language, day: NaiveDate) -> String {
    let month = day.month0() as usize;
    match language {
        Language::Ru => format!("{} {} {} г.", day.day(), MONTHS_RU[month], day.year()),
        Language::En => format!("{} {} {}", day.day(), MONTHS_EN[month], day.year()),
    }
}

/// An event's days: `20–24 апреля 2027 г.`, `30 April – 2 May 2027`, one day alone.
pub fn dates(language: Language, from: NaiveDate, to: NaiveDate) -> String {
    if from == to {
        return date(language, from);
    }
    let months = match language {
        Language::Ru => &MONTHS_RU,
        Language::En => &MONTHS_EN,
    };
    let year = match language {
        Language::Ru => format!("{} г.", to.year()),
        Language::En => to.year().to_string(),
    };
    if from.year() != to.year() {
        let first = date(language, from);
        return format!("{first} – {}", date(language, to));
    }
    if from.month() == to.month() {
        format!(
            "{}–{} {} {year}",
            from.day(),
            to.day(),
            months[to.month0() as usize]
        )
    } else {
        format!(
            "{} {} – {} {} {year}",
            from.day(),
            months[from.month0() as usize],
            to.day(),
            months[to.month0() as usize]
        )
    }
}

/// A moment in the event's time zone: `24 апреля 2027 г., 11:00`.
pub fn moment(language: Language, tz: Tz, at: DateTime<Utc>) -> String {
    let local = at.with_timezone(&tz);
    format!(
        "{}, {}",
        date(language, local.date_naive()),
        local.format("%H:%M")
    )
}

/// A span of time: `24 апреля 2027 г., 11:00–13:00`, or with both days when it ends on
/// another.
pub fn span(language: Language, tz: Tz, from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    let (start, end) = (from.with_timezone(&tz), to.with_timezone(&tz));
    if start.date_naive() == end.date_naive() {
        format!(
            "{}, {}–{}",
            date(language, start.date_naive()),
            start.format("%H:%M"),
            end.format("%H:%M")
        )
    } else {
        format!(
            "{} – {}",
            moment(language, tz, from),
            moment(language, tz, to)
        )
    }
}

/// The zone with its offset at `at`: `Europe/Moscow (UTC+03:00)`.
pub fn zone(tz: Tz, at: DateTime<Utc>) -> String {
    let seconds = tz
        .offset_from_utc_datetime(&at.naive_utc())
        .fix()
        .local_minus_utc();
    let sign = if seconds < 0 { '-' } else { '+' };
    let seconds = seconds.abs();
    format!(
        "{} (UTC{sign}{:02}:{:02})",
        tz.name(),
        seconds / 3600,
        seconds % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn dates_read_as_people_write_them() {
        let (from, to) = (day(2027, 4, 20), day(2027, 4, 24));
        assert_eq!(dates(Language::Ru, from, to), "20–24 апреля 2027 г.");
        assert_eq!(dates(Language::En, from, to), "20–24 April 2027");
        let (from, to) = (day(2027, 4, 30), day(2027, 5, 2));
        assert_eq!(dates(Language::Ru, from, to), "30 апреля – 2 мая 2027 г.");
        assert_eq!(dates(Language::En, from, from), "30 April 2027");
        assert_eq!(
            dates(Language::En, day(2026, 12, 31), day(2027, 1, 1)),
            "31 December 2026 – 1 January 2027"
        );
    }

    #[test]
    fn times_are_given_in_the_event_s_zone() {
        let tz = chrono_tz::Europe::Moscow;
        let from = Utc.with_ymd_and_hms(2027, 4, 24, 8, 0, 0).unwrap();
        let to = Utc.with_ymd_and_hms(2027, 4, 24, 10, 30, 0).unwrap();
        assert_eq!(
            span(Language::Ru, tz, from, to),
            "24 апреля 2027 г., 11:00–13:30"
        );
        assert_eq!(zone(tz, from), "Europe/Moscow (UTC+03:00)");
        let late = Utc.with_ymd_and_hms(2027, 4, 24, 22, 0, 0).unwrap();
        assert_eq!(
            span(Language::En, tz, from, late),
            "24 April 2027, 11:00 – 25 April 2027, 01:00"
        );
    }

    #[test]
    fn every_built_in_template_renders_in_both_languages() {
        let templates = Templates::load(None).unwrap();
        for language in Language::ALL {
            for kind in MailKind::ALL {
                let mail = templates
                    .render(*language, *kind, &MailContext::sample(*kind))
                    .unwrap();
                assert!(!mail.subject.contains('\n'));
                assert!(mail.html.contains("<html"), "{language}/{kind}");
                assert!(mail.text.contains("Анна Иванова"), "{language}/{kind}");
            }
        }
    }

    #[test]
    fn html_parts_escape_what_participants_wrote() {
        let templates = Templates::load(None).unwrap();
        let mut context = MailContext::sample(MailKind::Registered);
        context.participant.full_name = "<b>Анна</b> & Co".into();
        let mail = templates
            .render(Language::Ru, MailKind::Registered, &context)
            .unwrap();
        assert!(
            mail.html.contains("&lt;b&gt;Анна&lt;&#x2f;b&gt; &amp; Co"),
            "{}",
            mail.html
        );
        assert!(mail.text.contains("<b>Анна</b> & Co"));
    }

    #[test]
    fn a_template_from_the_override_directory_replaces_the_built_in_one() {
        let dir = std::env::temp_dir().join(format!("mail-templates-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(dir.join("en")).unwrap();
        std::fs::write(
            dir.join("en/cancelled.txt"),
            "{% extends \"en/layout.txt\" %}\n{% block subject %}Gone{% endblock %}\n\
             {% block body %}Bye, {{ participant.full_name }}.{% endblock %}\n",
        )
        .unwrap();
        let templates = Templates::load(Some(&dir)).unwrap();
        let mail = templates
            .render(
                Language::En,
                MailKind::Cancelled,
                &MailContext::sample(MailKind::Cancelled),
            )
            .unwrap();
        assert_eq!(mail.subject, "Gone");
        assert!(mail.text.contains("Bye, Анна Иванова."));

        std::fs::write(dir.join("en/cancelled.txt"), "{{ participant.nmae }}").unwrap();
        let error = Templates::load(Some(&dir)).err().unwrap();
        assert!(format!("{error:#}").contains("en/cancelled"), "{error:#}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
