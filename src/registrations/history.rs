//! The history of a registration: its rows of the change log (see `crate::changes`), every
//! state change with when and who.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::changes::ChangeKind;
use crate::db::schema::changes;
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
        CheckedIn => "checked_in",
        /// The personal data was anonymised (`details.reason` says why).
        Erased => "erased",
    }
}

pub use crate::changes::{Actor, ActorKind};

impl HistoryAction {
    fn of(kind: ChangeKind) -> Option<Self> {
        Some(match kind {
            ChangeKind::RegistrationCreated => HistoryAction::Created,
            ChangeKind::RegistrationConfirmed => HistoryAction::Confirmed,
            ChangeKind::RegistrationWaitlisted => HistoryAction::Waitlisted,
            ChangeKind::RegistrationPromoted => HistoryAction::Promoted,
            ChangeKind::RegistrationCancelled => HistoryAction::Cancelled,
            ChangeKind::RegistrationChanged => HistoryAction::Changed,
            ChangeKind::RegistrationSessionRemoved => HistoryAction::SessionRemoved,
            ChangeKind::CheckinCreated => HistoryAction::CheckedIn,
            ChangeKind::RegistrationErased => HistoryAction::Erased,
            _ => return None,
        })
    }
}

/// One change of a registration.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryEntryView {
    pub id: i64,
    pub action: HistoryAction,
    /// The session the change is about, if any.
    pub session_id: Option<Uuid>,
    pub actor: ActorKind,
    /// The organiser's account id, the registration id for the participant, the API key's id
    /// for a device, the import's id for an import.
    pub actor_id: Option<Uuid>,
    /// More about the change: for `changed`, `fields` (the details changed) and, when answers
    /// changed, `answers`: `[{"key", "old", "new"}]`, or `{"key", "personal": true}` alone
    /// for a question marked personal (the history holds no personal data).
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    pub at: DateTime<Utc>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = changes)]
struct HistoryRow {
    id: i64,
    kind: ChangeKind,
    session_id: Option<Uuid>,
    actor: ActorKind,
    actor_id: Option<Uuid>,
    details: serde_json::Value,
    created_at: DateTime<Utc>,
}

pub async fn of_registration(
    conn: &mut AsyncPgConnection,
    registration_id: Uuid,
) -> ApiResult<Vec<HistoryEntryView>> {
    let rows: Vec<HistoryRow> = changes::table
        .filter(changes::registration_id.eq(registration_id))
        .order(changes::id)
        .select(HistoryRow::as_select())
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            Some(HistoryEntryView {
                id: row.id,
                action: HistoryAction::of(row.kind)?,
                session_id: row.session_id,
                actor: row.actor,
                actor_id: row.actor_id,
                details: row.details,
                at: row.created_at,
            })
        })
        .collect())
}
