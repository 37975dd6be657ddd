//! Events: the business week itself, who may edit it, and how `{event}` in a path is found.

mod members;
mod routes;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use diesel::prelude::*;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::db::schema::events;

pub use routes::{NewEvent, create, manage_url, routes};

crate::text_enum! {
    /// `draft` events are visible to their organisers only; `published` ones to everyone;
    /// `archived` ones to their organisers, read-only for registration.
    pub enum EventStatus {
        Draft => "draft",
        Published => "published",
        Archived => "archived",
    }
}

crate::text_enum! {
    /// The language of mail to a participant: an event's default, a registration's own.
    pub enum Language {
        Ru => "ru",
        En => "en",
    }
}

impl Language {
    /// The first of our languages a client accepts (`Accept-Language`, RFC 9110: by quality,
    /// then in the order given; `q=0` refuses), by the primary subtag (`en-GB` is `en`).
    pub fn from_accept_language(header: &str) -> Option<Language> {
        accept_language::parse_with_quality(header)
            .into_iter()
            .filter(|(_, quality)| *quality > 0.0)
            .find_map(|(tag, _)| {
                let primary = tag.split('-').next()?.to_ascii_lowercase();
                primary.parse().ok()
            })
    }
}

crate::text_enum! {
    /// An organiser's role in one event: owners manage members; editors change the
    /// programme and registrations; viewers read everything, change nothing.
    pub enum MemberRole {
        Owner => "owner",
        Editor => "editor",
        Viewer => "viewer",
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = events)]
pub struct Event {
    pub id: Uuid,
    pub slug: String,
    pub title: String,
    pub description: Option<String>,
    pub time_zone: String,
    pub starts_on: NaiveDate,
    pub ends_on: NaiveDate,
    pub city: Option<String>,
    pub status: EventStatus,
    pub registration_opens_at: Option<DateTime<Utc>>,
    pub registration_closes_at: Option<DateTime<Utc>>,
    pub capacity: Option<i32>,
    pub allow_overlapping_sessions: bool,
    pub version: i64,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub default_language: Language,
    pub manage_url_template: Option<String>,
    pub require_email_confirmation: bool,
    pub email_confirmation_hours: i32,
    pub reminder_hours: Option<i32>,
    pub personal_data_retention_days: i32,
}

impl Event {
    /// The event's time zone (validated when stored).
    pub fn tz(&self) -> Tz {
        self.time_zone.parse().unwrap_or(Tz::UTC)
    }

    pub fn etag(&self) -> String {
        format!("\"e{}-{}\"", self.version, self.id.simple())
    }
}

/// A path's `{event}`: the event's slug or its id.
#[derive(Debug, Clone)]
pub enum EventRef {
    Id(Uuid),
    Slug(String),
}

impl EventRef {
    /// `None` when the value can be neither (so no event has it).
    pub fn parse(value: &str) -> Option<Self> {
        match value.parse() {
            Ok(id) => Some(EventRef::Id(id)),
            Err(_) if routes::is_slug(value) => Some(EventRef::Slug(value.to_owned())),
            Err(_) => None,
        }
    }
}

/// An event.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    pub id: Uuid,
    /// URL-safe name, usable instead of the id in every path.
    #[schema(example = "vii-mmdn")]
    pub slug: String,
    #[schema(example = "VII Мурманская международная деловая неделя")]
    pub title: String,
    pub description: Option<String>,
    /// IANA time zone of the event; session times are shown in it.
    #[schema(example = "Europe/Moscow")]
    pub time_zone: String,
    pub starts_on: NaiveDate,
    pub ends_on: NaiveDate,
    #[schema(example = "Мурманск")]
    pub city: Option<String>,
    pub status: EventStatus,
    /// Registration opens at this time (always open before it when null).
    pub registration_opens_at: Option<DateTime<Utc>>,
    /// Registration closes at this time (never, when null).
    pub registration_closes_at: Option<DateTime<Utc>>,
    /// Most active registrations the event takes; null: no event-wide limit.
    pub capacity: Option<i32>,
    /// Whether one participant may register for sessions that overlap in time.
    pub allow_overlapping_sessions: bool,
    /// The language of mail to participants who chose none (neither in their registration
    /// nor through `Accept-Language`).
    pub default_language: Language,
    /// Where participants manage their registration, on the organiser's frontend:
    /// `{id}` and `{token}` are replaced with the registration's id and manage token. Mail
    /// carries no link without it.
    #[schema(example = "https://portal.example.org/r/{id}?t={token}")]
    pub manage_url_template: Option<String>,
    /// Participants registering themselves must confirm their address by following the link
    /// mailed to them; until then the registration holds its places for
    /// `email_confirmation_hours`, and is cancelled if it is not confirmed in time.
    pub require_email_confirmation: bool,
    pub email_confirmation_hours: i32,
    /// Hours before a participant's first session that the reminder is mailed; null: the
    /// service's default; 0: no reminders.
    pub reminder_hours: Option<i32>,
    /// Days after the event's last day (in its time zone) that participants' personal data
    /// is kept; then it is anonymised (see "Personal data" in the README).
    pub personal_data_retention_days: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Event> for EventView {
    fn from(e: Event) -> Self {
        EventView {
            id: e.id,
            slug: e.slug,
            title: e.title,
            description: e.description,
            time_zone: e.time_zone,
            starts_on: e.starts_on,
            ends_on: e.ends_on,
            city: e.city,
            status: e.status,
            registration_opens_at: e.registration_opens_at,
            registration_closes_at: e.registration_closes_at,
            capacity: e.capacity,
            allow_overlapping_sessions: e.allow_overlapping_sessions,
            default_language: e.default_language,
            manage_url_template: e.manage_url_template,
            require_email_confirmation: e.require_email_confirmation,
            email_confirmation_hours: e.email_confirmation_hours,
            reminder_hours: e.reminder_hours,
            personal_data_retention_days: e.personal_data_retention_days,
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}
