//! The history of a registration: every state change, with when and who.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::db::schema::registration_history;
use crate::error::ApiResult;

crate::text_enum! {
    pub enum HistoryAction {
        Created => "created",
        Confirmed => "confirmed",
        Waitlisted => "waitlisted",
        Promoted => "promoted",
        Cancelled => "cancelled",
        Changed => "changed",
        SessionRemoved => "session_removed",
    }
}

crate::text_enum! {
    /// Who made a change: the participant (manage token), an organiser, or the service
    /// itself (a promotion from the waitlist when a seat frees up).
    pub enum ActorKind {
        Participant => "participant",
        Organiser => "organiser",
        System => "system",
    }
}

/// Who is acting, as recorded in the history.
#[derive(Debug, Clone, Copy)]
pub struct Actor {
    pub kind: ActorKind,
    pub id: Option<Uuid>,
}

impl Actor {
    pub fn participant(registration_id: Uuid) -> Self {
        Actor {
            kind: ActorKind::Participant,
            id: Some(registration_id),
        }
    }

    pub fn organiser(user_id: Uuid) -> Self {
        Actor {
            kind: ActorKind::Organiser,
            id: Some(user_id),
        }
    }

    pub const SYSTEM: Actor = Actor {
        kind: ActorKind::System,
        id: None,
    };
}

#[derive(Debug, Insertable)]
#[diesel(table_name = registration_history)]
pub struct Entry {
    pub registration_id: Uuid,
    pub session_id: Option<Uuid>,
    pub action: HistoryAction,
    pub actor: ActorKind,
    pub actor_id: Option<Uuid>,
    pub details: serde_json::Value,
}

impl Entry {
    pub fn new(
        registration_id: Uuid,
        session_id: Option<Uuid>,
        action: HistoryAction,
        actor: Actor,
    ) -> Self {
        Entry {
            registration_id,
            session_id,
            action,
            actor: actor.kind,
            actor_id: actor.id,
            details: serde_json::Value::Object(Default::default()),
        }
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}

pub async fn record(conn: &mut AsyncPgConnection, entries: Vec<Entry>) -> ApiResult<()> {
    if !entries.is_empty() {
        diesel::insert_into(registration_history::table)
            .values(entries)
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// One change of a registration.
#[derive(Debug, Serialize, ToSchema, Queryable)]
pub struct HistoryEntryView {
    pub id: i64,
    pub action: HistoryAction,
    /// The session the change is about, if any.
    pub session_id: Option<Uuid>,
    pub actor: ActorKind,
    /// The organiser's account id, or the registration id for the participant.
    pub actor_id: Option<Uuid>,
    pub details: serde_json::Value,
    pub at: DateTime<Utc>,
}

pub async fn of_registration(
    conn: &mut AsyncPgConnection,
    registration_id: Uuid,
) -> ApiResult<Vec<HistoryEntryView>> {
    Ok(registration_history::table
        .filter(registration_history::registration_id.eq(registration_id))
        .order(registration_history::id)
        .select((
            registration_history::id,
            registration_history::action,
            registration_history::session_id,
            registration_history::actor,
            registration_history::actor_id,
            registration_history::details,
            registration_history::created_at,
        ))
        .load(conn)
        .await?)
}
