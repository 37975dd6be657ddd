//! The attendee export as an XLSX workbook: the columns and privacy rule of the CSV export,
//! times as real Excel date-times in the event's time zone, answers to number questions as
//! numbers and to date questions as dates, a bold header row that stays in
//! view (frozen panes, with the name column), an autofilter, and columns as wide as their
//! contents.
//!
//! Memory stays bounded: `rust_xlsxwriter` writes the sheet in its constant-memory mode (each
//! row goes to a temporary file as soon as the next one starts) and the finished workbook is
//! written to a temporary file, which is then streamed to the client. The database connection
//! is held only while the rows are read and written to that file, never while a client reads
//! the answer, so a slow reader holds no pooled connection. The answer has a `Content-Length`:
//! a client that stops reading past the send timeout is cut off and can tell.
//!
//! Text cells are written as text (`t="inlineStr"`), which spreadsheets never evaluate, so
//! they need no formula neutralising, unlike CSV cells.

use std::io::{Read, Seek, SeekFrom};

use actix_web::{HttpResponse, get, web};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use rust_xlsxwriter::{Format, FormatAlign, Workbook};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::export::{self, Batches, Cell, Columns, ExportRow, Scope};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::Query;
use crate::forms::answers::Shown;
use crate::openapi::EventErrors;
use crate::state::State;

pub const CONTENT_TYPE: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

/// Excel's limit on the characters of one cell.
const MAX_CELL_CHARS: usize = 32_767;
/// Field widths, in characters, that a column's contents may set.
const MIN_WIDTH: usize = 8;
const MAX_WIDTH: usize = 60;
/// The width of a date-time cell (`2027-04-24 09:30`).
const TIME_WIDTH: usize = 17;
/// The width of a date cell (`2027-04-24`).
const DATE_WIDTH: usize = 10;
/// Bytes handed to the client at a time.
const CHUNK: usize = 64 * 1024;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct XlsxParams {
    /// Include cancelled registrations (with their status).
    pub include_cancelled: Option<bool>,
}

/// The attendee list as an XLSX workbook: the columns of the CSV export (organisers also get
/// email and phone; device keys do not), times as date-times in the event's time zone, a
/// frozen header row, an autofilter and fitted column widths. Built with bounded memory.
#[utoipa::path(
    tag = "badges",
    params(("event" = String, Path, description = "Event slug or id"), XlsxParams),
    responses(
        (status = 200, description = "The attendees.", body = Vec<u8>, content_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
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
#[get("/events/{event}/attendees.xlsx")]
pub async fn export_xlsx(
    state: State,
    caller: Caller,
    path: web::Path<String>,
    params: Query<XlsxParams>,
) -> ApiResult<HttpResponse> {
    let include_cancelled = params.include_cancelled.unwrap_or(false);
    answer(state, caller, &path, None, include_cancelled).await
}

/// A session's confirmed attendees (active registrations) as an XLSX workbook: the columns
/// of the event's export and `session_checked_in_at`.
#[utoipa::path(
    tag = "badges",
    params(("event" = String, Path, description = "Event slug or id"), ("session_id" = Uuid, Path)),
    responses(
        (status = 200, description = "The session's attendees.", body = Vec<u8>, content_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
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
#[get("/events/{event}/sessions/{session_id}/attendees.xlsx")]
pub async fn export_session_xlsx(
    state: State,
    caller: Caller,
    path: web::Path<(String, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (event_ref, session_id) = path.into_inner();
    answer(state, caller, &event_ref, Some(session_id), false).await
}

async fn answer(
    state: State,
    caller: Caller,
    event_ref: &str,
    session: Option<Uuid>,
    include_cancelled: bool,
) -> ApiResult<HttpResponse> {
    let mut conn = state.conn().await?;
    let (ctx, scope) =
        export::scope(&mut conn, &caller, event_ref, session, include_cancelled).await?;
    let reservation = state.streams.reserve(export::exporter(&caller))?;
    let tz = ctx.event.tz();
    let columns = Columns::of(&mut conn, &scope, ctx.event.default_language).await?;
    // In a task of its own, so that a client going away mid-build cannot drop the transaction
    // half-way; the connection goes back to the pool as soon as the rows are read.
    // The export's slot is held from here until the client has read the answer.
    let (built, reservation) = tokio::spawn(async move {
        let file = build(&mut conn, scope, columns, tz).await;
        drop(conn);
        (file, reservation)
    })
    .await
    .map_err(ApiError::internal)?;
    let (mut file, length) = built?;
    let (sender, body) = reservation.channel();
    tokio::spawn(async move {
        loop {
            let chunk = match tokio::task::spawn_blocking(move || {
                let mut chunk = vec![0; CHUNK];
                let read = file.read(&mut chunk).map(|n| {
                    chunk.truncate(n);
                    chunk
                });
                (file, read)
            })
            .await
            {
                Ok((back, Ok(chunk))) => {
                    file = back;
                    chunk
                }
                Ok((_, Err(error))) => {
                    tracing::error!(%error, "reading the built workbook failed");
                    return;
                }
                Err(error) => {
                    tracing::error!(%error, "reading the built workbook failed");
                    return;
                }
            };
            if chunk.is_empty() {
                sender.finish();
                return;
            }
            if let Err(stopped) = sender.send(chunk.into()).await {
                tracing::info!(error = %export::stopped_early(stopped), "attendee export stopped early");
                return;
            }
        }
    });
    Ok(HttpResponse::Ok()
        .content_type(CONTENT_TYPE)
        .insert_header((
            actix_web::http::header::CONTENT_DISPOSITION,
            format!(
                "attachment; filename=\"{}\"",
                export::file_name(&ctx, &scope, "xlsx")
            ),
        ))
        .no_chunking(length)
        .streaming(body))
}

/// Reads the export's rows and writes them into a workbook in a temporary file (unlinked
/// already: it goes away with its handle); returns the file, rewound, and its length.
async fn build(
    conn: &mut diesel_async::AsyncPgConnection,
    scope: Scope,
    columns: Columns,
    tz: Tz,
) -> ApiResult<(std::fs::File, u64)> {
    let (rows, batches) = tokio::sync::mpsc::channel::<Vec<ExportRow>>(2);
    let writer = tokio::task::spawn_blocking(move || write_workbook(batches, columns, tz));
    let mut sink = ToWriter(rows);
    let read = export::read_batches(conn, scope, &mut sink).await;
    drop(sink);
    let written = writer.await.map_err(ApiError::internal)?;
    // A writer's failure explains a reader's "writer stopped": report the writer's first.
    let file = written.map_err(ApiError::internal)?;
    read?;
    Ok(file)
}

/// Batches handed to the thread writing the workbook.
struct ToWriter(tokio::sync::mpsc::Sender<Vec<ExportRow>>);

impl Batches for ToWriter {
    async fn take(&mut self, rows: Vec<ExportRow>) -> ApiResult<()> {
        self.0
            .send(rows)
            .await
            .map_err(|_| ApiError::internal(anyhow::anyhow!("the workbook writer stopped")))
    }
}

/// A cell's width in characters, as a spreadsheet counts them.
fn chars(text: &str) -> usize {
    text.chars().count()
}

fn write_workbook(
    mut batches: tokio::sync::mpsc::Receiver<Vec<ExportRow>>,
    columns: Columns,
    tz: Tz,
) -> anyhow::Result<(std::fs::File, u64)> {
    let headers = columns.headers();
    let fixed = columns.fields.len();
    let mut workbook = Workbook::new();
    let header = Format::new()
        .set_bold()
        .set_background_color("#DDE4EE")
        .set_align(FormatAlign::Center);
    let time = Format::new().set_num_format("yyyy-mm-dd hh:mm");
    let date = Format::new().set_num_format("yyyy-mm-dd");
    let sheet = workbook.add_worksheet_with_constant_memory()?;
    sheet.set_name("Attendees")?;
    let mut widths: Vec<usize> = headers
        .iter()
        .map(|name| chars(name).max(MIN_WIDTH))
        .collect();
    for (col, name) in headers.iter().enumerate() {
        sheet.write_string_with_format(0, col as u16, clip(name), &header)?;
    }
    let mut row_number: u32 = 0;
    while let Some(rows) = batches.blocking_recv() {
        for row in &rows {
            row_number += 1;
            for (col, column) in columns.fields.iter().enumerate() {
                let c = col as u16;
                let width = match column.cell(row) {
                    Cell::Id(id) => {
                        let id = id.to_string();
                        sheet.write_string(row_number, c, &id)?;
                        chars(&id)
                    }
                    Cell::Text(text) | Cell::Code(text) => {
                        let text = clip(text);
                        sheet.write_string(row_number, c, text)?;
                        chars(text)
                    }
                    Cell::Time(Some(at)) => {
                        sheet.write_datetime_with_format(row_number, c, local(at, tz), &time)?;
                        TIME_WIDTH
                    }
                    Cell::Time(None) => 0,
                };
                widths[col] = widths[col].max(width);
            }
            for (i, answer) in columns.answers(row).into_iter().enumerate() {
                let col = fixed + i;
                let c = col as u16;
                let width = match answer {
                    Shown::Empty => 0,
                    Shown::Text(text) => {
                        let text = clip(&text);
                        sheet.write_string(row_number, c, text)?;
                        chars(text)
                    }
                    Shown::Number(n) => {
                        let shown = n.to_string();
                        match n.as_f64() {
                            Some(value) => sheet.write_number(row_number, c, value)?,
                            None => sheet.write_string(row_number, c, &shown)?,
                        };
                        chars(&shown)
                    }
                    Shown::Date(day) => {
                        sheet.write_date_with_format(row_number, c, day, &date)?;
                        DATE_WIDTH
                    }
                };
                widths[col] = widths[col].max(width);
            }
        }
    }
    for (col, width) in widths.iter().enumerate() {
        sheet.set_column_width(col as u16, (*width).min(MAX_WIDTH) as f64 + 2.0)?;
    }
    sheet.set_freeze_panes(1, 2)?;
    sheet.autofilter(0, 0, row_number, headers.len() as u16 - 1)?;
    let mut file = tempfile::tempfile()?;
    workbook.save_to_writer(&mut file)?;
    let length = file.stream_position()?;
    file.seek(SeekFrom::Start(0))?;
    Ok((file, length))
}

/// The wall-clock time in the event's time zone, which is what Excel's zone-less date-times
/// mean to the organisers who read them.
fn local(at: DateTime<Utc>, tz: Tz) -> chrono::NaiveDateTime {
    at.with_timezone(&tz).naive_local()
}

/// The text, cut to what one cell can hold.
fn clip(text: &str) -> &str {
    match text.char_indices().nth(MAX_CELL_CHARS) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_as_the_event_s_wall_clock() {
        let at: DateTime<Utc> = "2027-04-24T06:30:00Z".parse().unwrap();
        let moscow: Tz = "Europe/Moscow".parse().unwrap();
        assert_eq!(local(at, moscow).to_string(), "2027-04-24 09:30:00");
    }

    #[test]
    fn long_text_is_cut_to_what_a_cell_holds() {
        let long = "Щ".repeat(MAX_CELL_CHARS + 10);
        assert_eq!(chars(clip(&long)), MAX_CELL_CHARS);
        assert_eq!(clip("Иванова"), "Иванова");
    }
}
