//! Everything stored about a participant, as one JSON document: the registration with its
//! session places, answers and the consents accepted (each with the text of the version
//! accepted), the answers again with the questions they answer, its history, check-ins, the
//! mails sent to them, badge prints, the webhook messages that carried their details to
//! the organisers' systems, and the rows of spreadsheet imports that read them.

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::db::schema::{checkins, email_messages, form_questions, print_jobs, webhook_deliveries};
use crate::error::ApiResult;
use crate::events::Event;
use crate::forms::Localized;
use crate::registrations::history::{self, HistoryEntryView};
use crate::registrations::{RegistrationView, view_of};

/// Everything stored about one participant.
#[derive(Debug, Serialize, ToSchema)]
pub struct PersonalDataExport {
    pub exported_at: DateTime<Utc>,
    pub event: ExportEvent,
    /// The registration with the participant's details, session places, answers and the
    /// consents accepted (which version of which text, when, and the text itself).
    pub registration: RegistrationView,
    /// The answers, each with the question it answers, in the form's order.
    pub answers: Vec<ExportAnswer>,
    /// Every change of the registration: when, what, and who made it.
    pub history: Vec<HistoryEntryView>,
    pub checkins: Vec<ExportCheckin>,
    /// Mails to the participant: queued, sent, failed or dropped (kept 90 days).
    pub emails: Vec<ExportEmail>,
    pub badge_prints: Vec<ExportPrintJob>,
    /// Messages about the registration sent to the organisers' webhook endpoints (their
    /// copies of the participant's details).
    pub webhook_messages: Vec<ExportWebhookMessage>,
    /// Rows of the organisers' spreadsheet imports about the participant: the row that
    /// registered them, and rows found to be them again (same address).
    pub import_rows: Vec<ExportImportRow>,
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

/// An answer, with the question it answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExportAnswer {
    #[schema(example = "town")]
    pub key: String,
    /// The question's label; null when the form no longer has the question.
    pub question: Option<Localized>,
    /// Erased with the rest of the personal data (questions marked personal, emails, phones).
    pub personal: bool,
    /// The answer as given (a string, number, boolean or list of option keys).
    pub value: serde_json::Value,
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

/// A row of a spreadsheet import, with what was read from it.
#[derive(Debug, Serialize, ToSchema, QueryableByName)]
pub struct ExportImportRow {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    pub import_id: Uuid,
    /// The name of the file imported, as uploaded.
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    pub file_name: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    pub imported_at: DateTime<Utc>,
    /// The row's line in the file (the header is row 1).
    #[diesel(sql_type = diesel::sql_types::Integer)]
    #[serde(rename = "row")]
    pub row_number: i32,
    /// The participant's details and answers as read from the row.
    #[diesel(sql_type = diesel::sql_types::Jsonb)]
    pub fields: serde_json::Value,
}

/// Collects everything stored about the registration `id` of `event`.
pub async fn collect(
    conn: &mut AsyncPgConnection,
    event: &Event,
    id: Uuid,
) -> ApiResult<PersonalDataExport> {
    let registration = view_of(conn, id).await?;
    let answers = answers_of(conn, event.id, &registration.answers).await?;
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
    // The same rows an erasure reaches (see `erase`).
    let import_rows = diesel::sql_query(
        "SELECT ir.import_id, i.file_name, i.created_at AS imported_at, \
                ir.row_number, ir.fields \
         FROM registrations r \
         JOIN imports i ON i.event_id = r.event_id \
         JOIN import_rows ir ON ir.import_id = i.id \
              AND (ir.registration_id = r.id OR ir.duplicate_of_registration = r.id \
                   OR ir.email_normalized = r.email_normalized) \
         WHERE r.id = $1 ORDER BY i.created_at, i.id, ir.row_number",
    )
    .bind::<diesel::sql_types::Uuid, _>(id)
    .load::<ExportImportRow>(conn)
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
        answers,
        history,
        checkins,
        emails,
        badge_prints,
        webhook_messages,
        import_rows,
    })
}

/// The answers with their questions: in the form's order, then any whose question is gone.
async fn answers_of(
    conn: &mut AsyncPgConnection,
    event_id: Uuid,
    answers: &serde_json::Value,
) -> ApiResult<Vec<ExportAnswer>> {
    let Some(answers) = answers.as_object() else {
        return Ok(Vec::new());
    };
    let questions: Vec<(String, String, String, String, bool)> = form_questions::table
        .filter(form_questions::event_id.eq(event_id))
        .order((form_questions::position, form_questions::key))
        .select((
            form_questions::key,
            form_questions::label_ru,
            form_questions::label_en,
            form_questions::type_,
            form_questions::personal,
        ))
        .load(conn)
        .await?;
    let mut listed: Vec<ExportAnswer> = questions
        .into_iter()
        .filter_map(|(key, ru, en, kind, personal)| {
            let value = answers.get(&key)?.clone();
            Some(ExportAnswer {
                personal: personal || kind == "email" || kind == "phone",
                question: Some(Localized::new(ru, en)),
                key,
                value,
            })
        })
        .collect();
    let mut orphans: Vec<ExportAnswer> = answers
        .iter()
        .filter(|(key, _)| !listed.iter().any(|a| &a.key == *key))
        .map(|(key, value)| ExportAnswer {
            key: key.clone(),
            question: None,
            personal: true,
            value: value.clone(),
        })
        .collect();
    listed.append(&mut orphans);
    Ok(listed)
}
