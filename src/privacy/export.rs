//! Everything stored about a participant, as one JSON document: the registration with its
//! session places, its history, check-ins, the mails sent to them, badge prints, and the
//! webhook messages that carried their details to the organisers' systems.

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::db::schema::{checkins, email_messages, print_jobs, webhook_deliveries};
use crate::error::ApiResult;
use crate::events::Event;
use crate::registrations::history::{self, HistoryEntryView};
use crate::registrations::{RegistrationView, view_of};

/// Everything stored about one participant.
#[derive(Debug, Serialize, ToSchema)]
pub struct PersonalDataExport {
    pub exported_at: DateTime<Utc>,
    pub event: ExportEvent,
    /// The registration with the participant's details and session places.
    pub registration: RegistrationView,
    /// Every change of the registration: when, what, and who made it.
    pub history: Vec<HistoryEntryView>,
    pub checkins: Vec<ExportCheckin>,
    /// Mails to the participant: queued, sent, failed or dropped (kept 90 days).
    pub emails: Vec<ExportEmail>,
    pub badge_prints: Vec<ExportPrintJob>,
    /// Messages about the registration sent to the organisers' webhook endpoints (their
    /// copies of the participant's details).
    pub webhook_messages: Vec<ExportWebhookMessage>,
}

/// The event, and how long it keeps personal data.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExportEvent {
    pub id: Uuid,
    pub slug: String,
    pub title: String,
    pub starts_on: NaiveDate,
    pub ends_on: NaiveDate,
    pub personal_data_retention_days: i32,
    /// When the personal data is due to be anonymised, unless erased before.
    pub erase_after: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema, Queryable, Selectable)]
#[diesel(table_name = checkins)]
pub struct ExportCheckin {
    pub id: Uuid,
    /// The session; null: the event's entrance.
    pub session_id: Option<Uuid>,
    pub scanned_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema, Queryable, Selectable)]
#[diesel(table_name = email_messages)]
pub struct ExportEmail {
    pub id: i64,
    /// What the mail tells: `registered`, `waitlisted`, `promoted`, `cancelled`,
    /// `session_changed`, `session_cancelled`, `reminder`, `confirm_address`, `manage_link`.
    pub kind: String,
    /// `queued`, `sent`, `failed` or `dropped`.
    pub status: String,
    pub session_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema, Queryable, Selectable)]
#[diesel(table_name = print_jobs)]
pub struct ExportPrintJob {
    pub id: Uuid,
    pub reason: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub done_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema, Queryable, Selectable)]
#[diesel(table_name = webhook_deliveries)]
pub struct ExportWebhookMessage {
    pub id: Uuid,
    pub endpoint_id: Uuid,
    /// The change the message told of.
    pub kind: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// Collects everything stored about the registration `id` of `event`.
pub async fn collect(
    conn: &mut AsyncPgConnection,
    event: &Event,
    id: Uuid,
) -> ApiResult<PersonalDataExport> {
    let registration = view_of(conn, id).await?;
    let history = history::of_registration(conn, id).await?;
    let checkins = checkins::table
        .filter(checkins::registration_id.eq(id))
        .order((checkins::scanned_at, checkins::id))
        .select(ExportCheckin::as_select())
        .load(conn)
        .await?;
    let emails = email_messages::table
        .filter(email_messages::registration_id.eq(id))
        .order(email_messages::id)
        .select(ExportEmail::as_select())
        .load(conn)
        .await?;
    let badge_prints = print_jobs::table
        .filter(print_jobs::registration_id.eq(id))
        .order((print_jobs::created_at, print_jobs::id))
        .select(ExportPrintJob::as_select())
        .load(conn)
        .await?;
    let webhook_messages = webhook_deliveries::table
        .filter(webhook_deliveries::registration_id.eq(id))
        .order(webhook_deliveries::seq)
        .select(ExportWebhookMessage::as_select())
        .load(conn)
        .await?;
    Ok(PersonalDataExport {
        exported_at: Utc::now(),
        event: ExportEvent {
            id: event.id,
            slug: event.slug.clone(),
            title: event.title.clone(),
            starts_on: event.starts_on,
            ends_on: event.ends_on,
            personal_data_retention_days: event.personal_data_retention_days,
            erase_after: super::erase_after(event),
        },
        registration,
        history,
        checkins,
        emails,
        badge_prints,
        webhook_messages,
    })
}
