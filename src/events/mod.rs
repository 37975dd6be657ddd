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

pub use routes::{NewEvent, create, routes};

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
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}
