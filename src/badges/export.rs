//! The attendee export, as CSV and as XLSX, of the whole event or of one session's
//! attendees: the same columns and the same privacy rule in every format (organisers also get
//! email and phone, and the answers to questions marked personal; device keys do not), read
//! from the database through a cursor a batch at a time so that memory stays flat however many
//! attendees there are.
//!
//! After the fixed columns, whose headers are the API's field names (which the import
//! recognises), comes one column per question of the event, in the form's order, headed by
//! the question's label and holding answers as people read them (option labels, yes and no)
//! in the event's language, the language its badges speak too.
//!
//! Routes sit side by side: `attendees.csv` and `attendees.xlsx` for the event,
//! `sessions/{session_id}/attendees.csv` and `.xlsx` for a session.

use std::borrow::Cow;

use actix_web::{HttpResponse, get, web};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::spreadsheet::{self, neutralise};
use super::xlsx;
use crate::access::{self, EventAction, EventContext};
use crate::auth::Caller;
use crate::db::schema::sessions;
use crate::error::{ApiError, ApiResult, Problem};
use crate::events::Language;
use crate::extract::Query;
use crate::forms::answers::{self, Shown};
use crate::forms::questions::{self, Question};
use crate::openapi::EventErrors;
use crate::state::State;
use crate::streams::{Stopped, StreamSender};

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(export_csv)
        .service(export_session_csv)
        .service(xlsx::export_xlsx)
        .service(xlsx::export_session_xlsx);
}

/// What an export holds: whose attendees, and which columns.
#[derive(Debug, Clone, Copy)]
pub struct Scope {
    pub event_id: Uuid,
    /// One session's confirmed attendees, with the time they came through its door.
    pub session: Option<Uuid>,
    pub include_cancelled: bool,
    /// Email and phone: organisers only.
    pub with_contacts: bool,
}

/// A column of the export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    RegistrationId,
    FullName,
    Email,
    Phone,
    Organisation,
    Position,
    City,
    Category,
    Status,
    Sessions,
    CheckedInAt,
    BadgePrintedAt,
    RegisteredAt,
    SessionCheckedInAt,
}

impl Field {
    /// The header cell, the same in every format.
    pub fn name(self) -> &'static str {
        match self {
            Field::RegistrationId => "registration_id",
            Field::FullName => "full_name",
            Field::Email => "email",
            Field::Phone => "phone",
            Field::Organisation => "organisation",
            Field::Position => "position",
            Field::City => "city",
            Field::Category => "category",
            Field::Status => "status",
            Field::Sessions => "sessions",
            Field::CheckedInAt => "checked_in_at",
            Field::BadgePrintedAt => "badge_printed_at",
            Field::RegisteredAt => "registered_at",
            Field::SessionCheckedInAt => "session_checked_in_at",
        }
    }

    /// The cell of this column for one row.
    pub fn cell(self, row: &ExportRow) -> Cell<'_> {
        fn text(t: &Option<String>) -> Cell<'_> {
            Cell::Text(t.as_deref().unwrap_or(""))
        }
        match self {
            Field::RegistrationId => Cell::Id(row.id),
            Field::FullName => Cell::Text(&row.full_name),
            Field::Email => Cell::Text(&row.email),
            Field::Phone => text(&row.phone),
            Field::Organisation => text(&row.organisation),
            Field::Position => text(&row.position),
            Field::City => text(&row.city),
            Field::Category => Cell::Code(&row.category),
            Field::Status => Cell::Code(&row.status),
            Field::Sessions => Cell::Text(&row.sessions),
            Field::CheckedInAt => Cell::Time(row.checked_in_at),
            Field::BadgePrintedAt => Cell::Time(row.badge_printed_at),
            Field::RegisteredAt => Cell::Time(Some(row.created_at)),
            Field::SessionCheckedInAt => Cell::Time(row.session_checked_in_at),
        }
    }
}

/// One cell, typed, so that each format writes it the way its readers expect.
pub enum Cell<'a> {
    Id(Uuid),
    /// Text a person entered (a spreadsheet must never run it as a formula).
    Text(&'a str),
    /// A value of the API's own vocabulary (`active`, `speaker`...).
    Code(&'a str),
    Time(Option<DateTime<Utc>>),
}

/// All the columns of an export: the fixed fields, then one per question.
pub struct Columns {
    pub fields: Vec<Field>,
    /// The event's questions in the form's order (those marked personal only for whoever
    /// gets contact details).
    pub questions: Vec<Question>,
    /// The language of the questions' headers and answers.
    pub language: Language,
}

impl Columns {
    /// The export's columns for `scope`, the questions' in the event's `language`.
    pub async fn of(
        conn: &mut AsyncPgConnection,
        scope: &Scope,
        language: Language,
    ) -> ApiResult<Columns> {
        let mut questions = questions::of_event(conn, scope.event_id).await?;
        if !scope.with_contacts {
            questions.retain(|q| !q.is_personal());
        }
        Ok(Columns {
            fields: scope.columns(),
            questions,
            language,
        })
    }

    /// The header row.
    pub fn headers(&self) -> Vec<&str> {
        self.fields
            .iter()
            .map(|f| f.name())
            .chain(
                self.questions
                    .iter()
                    .map(|q| answers::header(q, self.language)),
            )
            .collect()
    }

    /// The answers of one row, a cell per question.
    pub fn answers(&self, row: &ExportRow) -> Vec<Shown> {
        self.questions
            .iter()
            .map(|q| answers::shown(q, &row.answers, self.language))
            .collect()
    }
}

impl Scope {
    /// The fixed columns.
    pub fn columns(&self) -> Vec<Field> {
        use self::Field::*;
        let mut columns = vec![RegistrationId, FullName];
        if self.with_contacts {
            columns.extend([Email, Phone]);
        }
        columns.extend([
            Organisation,
            Position,
            City,
            Category,
            Status,
            Sessions,
            CheckedInAt,
            BadgePrintedAt,
            RegisteredAt,
        ]);
        if self.session.is_some() {
            columns.push(SessionCheckedInAt);
        }
        columns
    }

    /// The cursor over the export's rows. The ids are formatted UUIDs: safe to inline
    /// (DECLARE takes no parameters).
    fn declare(&self) -> String {
        let event_id = self.event_id;
        let (session_filter, session_checkin) = match self.session {
            Some(session) => (
                format!(
                    "AND EXISTS (SELECT 1 FROM registration_sessions rs \
                                 WHERE rs.registration_id = r.id AND rs.session_id = '{session}' \
                                   AND rs.status = 'confirmed')"
                ),
                format!(
                    "(SELECT min(c.scanned_at) FROM checkins c \
                      WHERE c.registration_id = r.id AND c.session_id = '{session}')"
                ),
            ),
            None => (String::new(), "NULL::timestamptz".to_owned()),
        };
        let status_filter = if self.include_cancelled && self.session.is_none() {
            ""
        } else {
            "AND r.status = 'active'"
        };
        format!(
            "DECLARE attendees_export NO SCROLL CURSOR FOR \
             SELECT r.id, r.full_name, r.email, r.organisation, r.position, r.city, r.phone, \
                    r.category, r.status, \
                    coalesce((SELECT string_agg(s.title, '; ' ORDER BY s.starts_at) \
                              FROM registration_sessions rs JOIN sessions s ON s.id = rs.session_id \
                              WHERE rs.registration_id = r.id AND rs.status = 'confirmed'), '') AS sessions, \
                    r.checked_in_at, r.badge_printed_at, r.created_at, \
                    {session_checkin} AS session_checked_in_at, r.answers \
             FROM registrations r WHERE r.event_id = '{event_id}' {status_filter} {session_filter} \
             ORDER BY r.id"
        )
    }
}

#[derive(QueryableByName)]
pub struct ExportRow {
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    #[diesel(sql_type = Text)]
    pub full_name: String,
    #[diesel(sql_type = Text)]
    pub email: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub organisation: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub position: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub city: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub phone: Option<String>,
    #[diesel(sql_type = Text)]
    pub category: String,
    #[diesel(sql_type = Text)]
    pub status: String,
    #[diesel(sql_type = Text)]
    pub sessions: String,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub checked_in_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub badge_printed_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub session_checked_in_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Jsonb)]
    pub answers: serde_json::Value,
}

pub const BATCH: usize = 2000;

/// Where an export's batches of rows go.
pub trait Batches: Send {
    /// Takes one batch; an error stops the export.
    fn take(&mut self, rows: Vec<ExportRow>) -> impl Future<Output = ApiResult<()>> + Send;
}

/// Reads the export's rows through a cursor in a read-only transaction, handing each batch
/// to `each`; an error from `each` ends (rolls back) the transaction.
pub async fn read_batches(
    conn: &mut AsyncPgConnection,
    scope: Scope,
    each: &mut impl Batches,
) -> ApiResult<()> {
    conn.build_transaction()
        .read_only()
        .run::<_, ApiError, _>(async |conn| {
            diesel::sql_query(scope.declare()).execute(conn).await?;
            loop {
                let rows: Vec<ExportRow> =
                    diesel::sql_query(format!("FETCH {BATCH} FROM attendees_export"))
                        .load(conn)
                        .await?;
                let done = rows.len() < BATCH;
                each.take(rows).await?;
                if done {
                    return Ok(());
                }
            }
        })
        .await
}

/// Finds the export's event (and session), checking that the caller may read attendees.
pub async fn scope(
    conn: &mut AsyncPgConnection,
    caller: &Caller,
    event_ref: &str,
    session: Option<Uuid>,
    include_cancelled: bool,
) -> ApiResult<(EventContext, Scope)> {
    let ctx = access::event(conn, caller, event_ref, EventAction::ReadAttendees).await?;
    if let Some(session_id) = session {
        // Whoever may read attendees (organisers, the event's devices) sees all its sessions.
        let exists: bool = diesel::select(diesel::dsl::exists(
            sessions::table.filter(
                sessions::id
                    .eq(session_id)
                    .and(sessions::event_id.eq(ctx.event.id)),
            ),
        ))
        .get_results(conn)
        .await
        .and_then(crate::db::single)?;
        if !exists {
            return Err(ApiError::not_found("session"));
        }
    }
    let scope = Scope {
        event_id: ctx.event.id,
        session,
        include_cancelled,
        with_contacts: ctx.sees_private(),
    };
    Ok((ctx, scope))
}

/// Whom an export counts against (only accounts and device keys get this far).
pub fn exporter(caller: &Caller) -> Uuid {
    match caller {
        Caller::User(user) => user.id,
        Caller::Device(device) => device.key_id,
        _ => Uuid::nil(),
    }
}

/// The file name of an export: the event's slug, and the session's id for a session.
pub fn file_name(ctx: &EventContext, scope: &Scope, extension: &str) -> String {
    match scope.session {
        Some(session) => format!("{}-session-{session}-attendees.{extension}", ctx.event.slug),
        None => format!("{}-attendees.{extension}", ctx.event.slug),
    }
}

/// Why an export stopped before its end, as the error that ends its transaction.
pub fn stopped_early(stopped: Stopped) -> ApiError {
    let detail = match stopped {
        Stopped::Gone => "the client went away",
        Stopped::Stalled => "the client stopped reading",
    };
    ApiError::bad_request("client_gone", detail)
}

#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Delimiter {
    /// `,`
    #[default]
    Comma,
    /// `;`, what spreadsheets in Russian locales expect.
    Semicolon,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CsvParams {
    /// Start with a UTF-8 byte order mark (for spreadsheets that need it to read UTF-8).
    pub bom: Option<bool>,
    #[param(inline)]
    pub delimiter: Option<Delimiter>,
    /// Include cancelled registrations (with their status).
    pub include_cancelled: Option<bool>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SessionCsvParams {
    /// Start with a UTF-8 byte order mark (for spreadsheets that need it to read UTF-8).
    pub bom: Option<bool>,
    #[param(inline)]
    pub delimiter: Option<Delimiter>,
}

fn csv_writer(delimiter: Delimiter) -> csv::Writer<Vec<u8>> {
    spreadsheet::writer(match delimiter {
        Delimiter::Comma => b',',
        Delimiter::Semicolon => b';',
    })
}

fn csv_batch(
    rows: &[ExportRow],
    columns: &Columns,
    delimiter: Delimiter,
) -> anyhow::Result<Vec<u8>> {
    let mut writer = csv_writer(delimiter);
    for row in rows {
        let mut record: Vec<Cow<'_, str>> = columns
            .fields
            .iter()
            .map(|column| match column.cell(row) {
                Cell::Id(id) => Cow::Owned(id.to_string()),
                Cell::Text(text) => neutralise(text),
                Cell::Code(code) => Cow::Borrowed(code),
                Cell::Time(time) => Cow::Owned(time.map(|t| t.to_rfc3339()).unwrap_or_default()),
            })
            .collect();
        record.extend(columns.answers(row).into_iter().map(|answer| match answer {
            // Text people entered, and the labels the organisers did.
            Shown::Text(text) => Cow::Owned(neutralise(&text).into_owned()),
            // Numbers and dates the form checked: data, whatever their sign.
            other => Cow::Owned(other.text()),
        }));
        writer.write_record(record.iter().map(|c| c.as_bytes()))?;
    }
    writer.into_inner().map_err(|e| anyhow::anyhow!("{e}"))
}

fn csv_header(columns: &Columns, delimiter: Delimiter, bom: bool) -> anyhow::Result<Vec<u8>> {
    let mut writer = csv_writer(delimiter);
    writer.write_record(
        columns
            .headers()
            .into_iter()
            .map(|h| neutralise(h).into_owned()),
    )?;
    let mut bytes = if bom {
        "\u{feff}".as_bytes().to_vec()
    } else {
        Vec::new()
    };
    bytes.extend(writer.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?);
    Ok(bytes)
}

/// Batches written as CSV into the answer's chunks: stops (rolling back) as soon as the
/// client is gone or has stopped reading.
struct CsvChunks<'a> {
    columns: Columns,
    delimiter: Delimiter,
    chunks: &'a StreamSender,
}

impl Batches for CsvChunks<'_> {
    async fn take(&mut self, rows: Vec<ExportRow>) -> ApiResult<()> {
        let bytes = csv_batch(&rows, &self.columns, self.delimiter).map_err(ApiError::internal)?;
        self.chunks.send(bytes.into()).await.map_err(stopped_early)
    }
}

async fn stream_csv(
    conn: &mut AsyncPgConnection,
    scope: Scope,
    columns: Columns,
    delimiter: Delimiter,
    chunks: &StreamSender,
) -> ApiResult<()> {
    let mut sink = CsvChunks {
        columns,
        delimiter,
        chunks,
    };
    read_batches(conn, scope, &mut sink).await
}

/// The CSV answer: the header goes out at once, the rows follow as the client reads them.
async fn csv_answer(
    state: State,
    caller: Caller,
    event_ref: &str,
    session: Option<Uuid>,
    include_cancelled: bool,
    delimiter: Delimiter,
    bom: bool,
) -> ApiResult<HttpResponse> {
    let mut conn = state.conn().await?;
    let (ctx, scope) =
        self::scope(&mut conn, &caller, event_ref, session, include_cancelled).await?;
    let columns = Columns::of(&mut conn, &scope, ctx.event.default_language).await?;
    let header = csv_header(&columns, delimiter, bom).map_err(ApiError::internal)?;
    let (sender, body) = state.streams.reserve(exporter(&caller))?.channel();
    if sender.send(header.into()).await.is_err() {
        return Err(ApiError::internal(anyhow::anyhow!("export channel closed")));
    }
    tokio::spawn(async move {
        let result = stream_csv(&mut conn, scope, columns, delimiter, &sender).await;
        // The connection goes back to the pool before the export's slot is freed.
        drop(conn);
        match result {
            Ok(()) => sender.finish(),
            Err(error) if error.code() == "client_gone" => {
                tracing::info!(%error, "attendee export stopped early");
            }
            // A failure midway can only cut the body short: the status line has gone out.
            Err(error) => tracing::error!(%error, "attendee export failed midway"),
        }
    });
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            actix_web::http::header::CONTENT_DISPOSITION,
            format!(
                "attachment; filename=\"{}\"",
                file_name(&ctx, &scope, "csv")
            ),
        ))
        .streaming(body))
}

/// The attendee list as CSV (UTF-8), streamed: memory stays flat however many attendees.
/// Cells a spreadsheet would run as formulas are prefixed with `'`. Organisers also get
/// email and phone columns; device keys do not. A client that stops reading for longer than
/// the server's send timeout gets an answer cut short (no final chunk).
#[utoipa::path(
    tag = "badges",
    params(("event" = String, Path, description = "Event slug or id"), CsvParams),
    responses(
        (status = 200, description = "The attendees.", body = String, content_type = "text/csv"),
        EventErrors,
        (status = 429, description = "`too_many_exports`: the caller's earlier exports are still \
            running (two at a time per account or device key); see `Retry-After`.",
         body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`exports_busy`: as many exports as the server allows are \
            running; see `Retry-After`. `database_unavailable`: the database cannot be reached.",
         body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/events/{event}/attendees.csv")]
async fn export_csv(
    state: State,
    caller: Caller,
    path: web::Path<String>,
    params: Query<CsvParams>,
) -> ApiResult<HttpResponse> {
    csv_answer(
        state,
        caller,
        &path,
        None,
        params.include_cancelled.unwrap_or(false),
        params.delimiter.unwrap_or_default(),
        params.bom.unwrap_or(false),
    )
    .await
}

/// A session's confirmed attendees (active registrations) as CSV, streamed: the columns of
/// the event's export and `session_checked_in_at`, when the attendee came through this
/// session's door.
#[utoipa::path(
    tag = "badges",
    params(("event" = String, Path, description = "Event slug or id"), ("session_id" = Uuid, Path), SessionCsvParams),
    responses(
        (status = 200, description = "The session's attendees.", body = String, content_type = "text/csv"),
        EventErrors,
        (status = 429, description = "`too_many_exports`: the caller's earlier exports are still \
            running (two at a time per account or device key); see `Retry-After`.",
         body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`exports_busy`: as many exports as the server allows are \
            running; see `Retry-After`. `database_unavailable`: the database cannot be reached.",
         body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/events/{event}/sessions/{session_id}/attendees.csv")]
async fn export_session_csv(
    state: State,
    caller: Caller,
    path: web::Path<(String, Uuid)>,
    params: Query<SessionCsvParams>,
) -> ApiResult<HttpResponse> {
    let (event_ref, session_id) = path.into_inner();
    csv_answer(
        state,
        caller,
        &event_ref,
        Some(session_id),
        false,
        params.delimiter.unwrap_or_default(),
        params.bom.unwrap_or(false),
    )
    .await
}
