//! The upload: the file is spooled to an anonymous temporary file (never whole in memory),
//! read row by row on a blocking thread, and its rows stored with their dry-run verdicts in
//! one transaction, batch by batch: a file that turns out unusable halfway leaves nothing
//! behind.

use std::collections::{BTreeMap, HashMap};
use std::io::{Seek, SeekFrom};

use actix_multipart::Multipart;
use actix_web::http::StatusCode;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::{HttpRequest, HttpResponse, post, web};
use chrono::{Duration, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, Text, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures_util::{StreamExt, TryStreamExt};
use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::answers::Questions;
use super::read::{self, Column, FileError, Format, MAX_BYTES};
use super::rows::{CategoryName, Layout, ReadRow, RowReader, SessionName};
use super::{DRY_RUN_HOURS, ImportRowsParams, ImportView, file_problem, view};
use crate::access::{self, EventAction};
use crate::auth::Caller;
use crate::db::schema::{import_rows, imports, sessions};
use crate::email;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::Query;
use crate::openapi::EventErrors;
use crate::state::State;

/// Rows stored per statement.
const BATCH: usize = 500;
/// The largest mapping accepted (as a multipart part).
const MAX_MAPPING_BYTES: usize = 64 * 1024;

pub const XLSX_MIME: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ImportParams {
    /// The column mapping as JSON, when the body is the file itself (with multipart, send
    /// it as the `mapping` part instead): `{"<column header>": "<field>" | null}`.
    pub mapping: Option<String>,
    /// The file's name, kept with the import, when the body is the file itself.
    pub file_name: Option<String>,
}

/// The multipart form of an upload.
#[derive(ToSchema)]
#[expect(
    dead_code,
    reason = "describes the multipart body in the OpenAPI document"
)]
pub struct ImportUpload {
    /// The spreadsheet: CSV (UTF-8, with or without BOM, `,` or `;`) or XLSX (the first
    /// worksheet); at most 20 MB (an XLSX unzipped at most 200 MB) and fewer than 50,000
    /// rows.
    #[schema(format = Binary, value_type = String)]
    file: Vec<u8>,
    /// Optional JSON object: which field each column holds, `{"<column header>": "<field>"
    /// | null}` (null: leave the column out). Fields: `full_name`, `email`, `organisation`,
    /// `position`, `city`, `phone`, `category` (a code or name of one of the event's
    /// categories), `sessions`, `language`, and `answers.<question key>` for the answers to
    /// one of the event's questions. Columns not named are read by their headers (field
    /// names, or the usual Russian ones: «ФИО», «Эл. почта», «Организация», «Должность»,
    /// «Город», «Телефон», «Категория», «Сессии»; then a question's key or its label in
    /// Russian or English, as the export heads answer columns).
    mapping: Option<String>,
}

/// What is sent from the reading thread, in this order: the format, the header's columns,
/// batches of rows, then `Done` (or `Failed` at any point).
enum Message {
    Format(Format),
    Header(Vec<Column>),
    Rows(Vec<ReadRow>),
    Done,
    Failed(FileError),
}

fn mime_of(req: &HttpRequest) -> Option<actix_web::mime::Mime> {
    req.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "file_too_large",
        format!("the file is larger than {} MB", MAX_BYTES / 1024 / 1024),
    )
    .with_errors(vec![crate::error::FieldError {
        field: "file".into(),
        message: format!("must be at most {} MB", MAX_BYTES / 1024 / 1024),
    }])
}

fn unreadable(_: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request("bad_request", "the request body could not be read")
}

/// Writes a stream of chunks to a temporary file, at most `MAX_BYTES`.
async fn spool<S, E>(mut chunks: S) -> ApiResult<std::fs::File>
where
    S: futures_util::Stream<Item = Result<web::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let file = tokio::task::spawn_blocking(tempfile::tempfile)
        .await?
        .map_err(ApiError::internal)?;
    let mut out = tokio::fs::File::from_std(file);
    let mut size: u64 = 0;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(unreadable)?;
        size += chunk.len() as u64;
        if size > MAX_BYTES {
            return Err(too_large());
        }
        out.write_all(&chunk).await.map_err(ApiError::internal)?;
    }
    out.flush().await.map_err(ApiError::internal)?;
    let mut file = out.into_std().await;
    file.seek(SeekFrom::Start(0)).map_err(ApiError::internal)?;
    Ok(file)
}

/// The upload, spooled, with its mapping and name.
struct Upload {
    file: std::fs::File,
    mapping: Option<String>,
    file_name: Option<String>,
}

async fn receive(
    req: &HttpRequest,
    payload: web::Payload,
    params: ImportParams,
) -> ApiResult<Upload> {
    let mime = mime_of(req);
    let is_multipart = mime
        .as_ref()
        .is_some_and(|m| m.type_() == "multipart" && m.subtype() == "form-data");
    if !is_multipart {
        let accepted = mime.as_ref().is_some_and(|m| {
            let essence = m.essence_str();
            essence == "text/csv" || essence == XLSX_MIME || essence == "application/octet-stream"
        });
        if !accepted {
            return Err(unsupported());
        }
        let file = spool(payload).await?;
        return Ok(Upload {
            file,
            mapping: params.mapping,
            file_name: params.file_name,
        });
    }
    let mut form = Multipart::new(req.headers(), payload);
    let mut file = None;
    let mut file_name = params.file_name;
    let mut mapping = params.mapping;
    while let Some(mut part) = form.try_next().await.map_err(unreadable)? {
        match part.name() {
            Some("file") if file.is_none() => {
                if let Some(name) = part
                    .content_disposition()
                    .and_then(|d| d.get_filename())
                    .filter(|n| !n.is_empty())
                {
                    file_name = Some(name.to_owned());
                }
                file = Some(spool(&mut part).await?);
            }
            Some("mapping") if mapping.is_none() => {
                let mut text = Vec::new();
                while let Some(chunk) = part.try_next().await.map_err(unreadable)? {
                    text.extend_from_slice(&chunk);
                    if text.len() > MAX_MAPPING_BYTES {
                        return Err(ApiError::invalid("mapping", "is too long"));
                    }
                }
                mapping = Some(
                    String::from_utf8(text)
                        .map_err(|_| ApiError::invalid("mapping", "is not UTF-8 text"))?,
                );
            }
            Some(name @ ("file" | "mapping")) => {
                return Err(ApiError::invalid(name, "is given twice"));
            }
            name => {
                return Err(ApiError::invalid(
                    name.unwrap_or("(unnamed part)"),
                    "is not a part of an upload; send `file` and optionally `mapping`",
                ));
            }
        }
    }
    let file = file.ok_or_else(|| ApiError::invalid("file", "is required"))?;
    Ok(Upload {
        file,
        mapping,
        file_name,
    })
}

fn unsupported() -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        format!(
            "send the file as multipart/form-data (part `file`), or as the body with \
             Content-Type text/csv or {XLSX_MIME}"
        ),
    )
}

fn parse_mapping(text: Option<&str>) -> ApiResult<Option<BTreeMap<String, Option<String>>>> {
    text.map(|text| {
        serde_json::from_str(text).map_err(|_| {
            ApiError::invalid(
                "mapping",
                "must be a JSON object of column headers to field names (or null)",
            )
        })
    })
    .transpose()
}

/// Reads the file on this (blocking) thread, sending what it finds to the storing side.
fn read_file(
    file: std::fs::File,
    mapping: Option<BTreeMap<String, Option<String>>>,
    reader: RowReader,
    out: mpsc::Sender<Message>,
) {
    let gone = || FileError::file("reading stopped");
    let send = |message: Message| out.blocking_send(message).map_err(|_| gone());
    let result = (|| {
        let sheet = read::open(file)?;
        send(Message::Format(sheet.format()))?;
        let mut layout: Option<Layout> = None;
        let mut batch = Vec::with_capacity(BATCH);
        sheet.each_row(&mut |row, cells| {
            match &layout {
                None => {
                    let found = Layout::new(cells, mapping.as_ref(), reader.questions())?;
                    send(Message::Header(found.columns.clone()))?;
                    layout = Some(found);
                }
                Some(layout) => {
                    batch.push(reader.read(layout, row, &cells));
                    if batch.len() == BATCH {
                        send(Message::Rows(std::mem::take(&mut batch)))?;
                    }
                }
            }
            Ok(())
        })?;
        if layout.is_none() {
            return Err(FileError::file("has no header row"));
        }
        if !batch.is_empty() {
            send(Message::Rows(batch))?;
        }
        send(Message::Done)
    })();
    if let Err(error) = result {
        let _ = out.blocking_send(Message::Failed(error));
    }
}

/// Stores what the reading thread sends, as one transaction; the import's id.
async fn store(
    conn: &mut AsyncPgConnection,
    event_id: Uuid,
    created_by: Option<Uuid>,
    file_name: Option<String>,
    mut messages: mpsc::Receiver<Message>,
) -> ApiResult<Uuid> {
    let id = Uuid::now_v7();
    conn.transaction::<_, ApiError, _>(async |conn| {
        let lost = || ApiError::internal(anyhow::anyhow!("the file's reader stopped early"));
        let format = match messages.recv().await {
            Some(Message::Format(format)) => format,
            Some(Message::Failed(error)) => return Err(file_problem(error)),
            _ => return Err(lost()),
        };
        let columns = match messages.recv().await {
            Some(Message::Header(columns)) => columns,
            Some(Message::Failed(error)) => return Err(file_problem(error)),
            _ => return Err(lost()),
        };
        diesel::insert_into(imports::table)
            .values((
                imports::id.eq(id),
                imports::event_id.eq(event_id),
                imports::created_by.eq(created_by),
                imports::file_name.eq(file_name),
                imports::format.eq(format.as_str()),
                imports::column_map.eq(serde_json::to_value(&columns).map_err(ApiError::internal)?),
                imports::total_rows.eq(0),
                imports::expires_at.eq(Utc::now() + Duration::hours(DRY_RUN_HOURS)),
            ))
            .execute(conn)
            .await?;
        // The first row with each address; 50,000 short strings at most.
        let mut first_rows: HashMap<String, i32> = HashMap::new();
        let mut total = 0;
        loop {
            match messages.recv().await {
                Some(Message::Rows(rows)) => {
                    total += rows.len() as i32;
                    store_rows(conn, id, event_id, rows, &mut first_rows).await?;
                }
                Some(Message::Done) => break,
                Some(Message::Failed(error)) => return Err(file_problem(error)),
                _ => return Err(lost()),
            }
        }
        if total == 0 {
            return Err(file_problem(FileError::file(
                "has no participants below its header",
            )));
        }
        diesel::update(imports::table.find(id))
            .set(imports::total_rows.eq(total))
            .execute(conn)
            .await?;
        Ok(id)
    })
    .await
}

#[derive(QueryableByName)]
struct Existing {
    #[diesel(sql_type = Text)]
    email_normalized: String,
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
}

/// Gives each row its verdict and stores the batch.
async fn store_rows(
    conn: &mut AsyncPgConnection,
    import_id: Uuid,
    event_id: Uuid,
    rows: Vec<ReadRow>,
    first_rows: &mut HashMap<String, i32>,
) -> ApiResult<()> {
    let addresses: Vec<Option<String>> = rows
        .iter()
        .map(|r| {
            r.problems
                .is_empty()
                .then(|| email::normalise(&r.fields.email))
        })
        .collect();
    let wanted: Vec<&str> = addresses.iter().flatten().map(String::as_str).collect();
    let existing: HashMap<String, Uuid> = diesel::sql_query(
        "SELECT email_normalized, id FROM registrations \
         WHERE event_id = $1 AND status = 'active' AND email_normalized = ANY($2)",
    )
    .bind::<SqlUuid, _>(event_id)
    .bind::<Array<Text>, _>(&wanted)
    .load::<Existing>(conn)
    .await?
    .into_iter()
    .map(|e| (e.email_normalized, e.id))
    .collect();
    let mut values = Vec::with_capacity(rows.len());
    for (row, address) in rows.into_iter().zip(addresses) {
        let number = row.row as i32;
        let (verdict, of_registration, of_row) = match &address {
            None => ("invalid", None, None),
            Some(address) => match (existing.get(address), first_rows.get(address)) {
                (_, Some(&earlier)) => ("duplicate", None, Some(earlier)),
                (Some(&registration), None) => {
                    first_rows.insert(address.clone(), number);
                    ("duplicate", Some(registration), None)
                }
                (None, None) => {
                    first_rows.insert(address.clone(), number);
                    ("create", None, None)
                }
            },
        };
        values.push((
            import_rows::import_id.eq(import_id),
            import_rows::row_number.eq(number),
            import_rows::fields.eq(serde_json::to_value(&row.fields).map_err(ApiError::internal)?),
            import_rows::email_normalized.eq(address),
            import_rows::verdict.eq(verdict),
            import_rows::problems
                .eq(serde_json::to_value(&row.problems).map_err(ApiError::internal)?),
            import_rows::duplicate_of_registration.eq(of_registration),
            import_rows::duplicate_of_row.eq(of_row),
        ));
    }
    diesel::insert_into(import_rows::table)
        .values(values)
        .execute(conn)
        .await?;
    Ok(())
}

/// Upload participants: a dry run.
///
/// Send the file as `multipart/form-data` (part `file`, optional part `mapping`), or as the
/// body itself with `Content-Type: text/csv` or the XLSX type (then `mapping` and
/// `file_name` in the query). Every row is read and stored with what would happen to it —
/// nothing is registered until `POST /imports/{id}/commit`, which must come within 24 hours.
/// A file that cannot be read as a whole (not CSV or XLSX, no header naming name and email,
/// broken UTF-8, a formula in a cell, 50,000 rows or more, a mapping naming a column the
/// file lacks, an XLSX that would unzip to more than 200 MB or declares more shared strings
/// than it can hold) is refused with 422 naming the row and column, and nothing is stored.
#[utoipa::path(
    tag = "imports",
    params(("event" = String, Path, description = "Event slug or id"), ImportParams),
    request_body(content(
        (ImportUpload = "multipart/form-data"),
        (String = "text/csv"),
        (Vec<u8> = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    )),
    responses(
        (status = 201, description = "The dry run: the import with each row's verdict (the \
            first page of rows; `GET /imports/{id}` for the rest).",
         body = ImportView, headers(("Location" = String))),
        (status = 400, description = "`bad_request`: the body could not be read. \
            `invalid_query`: an unknown or malformed query parameter.",
         body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`: neither multipart/form-data, \
            text/csv nor XLSX.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_file`: the file cannot be imported; `row` and \
            `column` (its header, or letter) say where, `errors` names `file` or \
            `mapping.<column>`. `file_too_large`: over 20 MB. `validation_failed`: `file` \
            missing, `mapping` not a JSON object, an unknown part.",
         body = Problem, content_type = "application/problem+json"),
        EventErrors,
    ),
    security(("bearer" = []))
)]
#[post("/events/{event}/imports")]
pub async fn create_import(
    state: State,
    caller: Caller,
    path: web::Path<String>,
    params: Query<ImportParams>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    let event = {
        let mut conn = state.conn().await?;
        access::event(&mut conn, &caller, &path, EventAction::Edit)
            .await?
            .event
    };
    let upload = receive(&req, payload, params.into_inner()).await?;
    let mapping = parse_mapping(upload.mapping.as_deref())?;
    let mut conn = state.conn().await?;
    let names: Vec<SessionName> = sessions::table
        .filter(sessions::event_id.eq(event.id))
        .select((sessions::id, sessions::title))
        .load::<(Uuid, String)>(&mut conn)
        .await?
        .into_iter()
        .map(|(id, title)| SessionName { id, title })
        .collect();
    let categories: Vec<CategoryName> = crate::forms::categories::of_event(&mut conn, event.id)
        .await?
        .into_iter()
        .map(|c| CategoryName {
            code: c.code,
            name_ru: c.name_ru,
            name_en: c.name_en,
        })
        .collect();
    let questions = Questions::new(crate::forms::Form::load(&mut conn, event.id).await?)?;
    let (sender, receiver) = mpsc::channel(4);
    let file = upload.file;
    let reading = tokio::task::spawn_blocking(move || {
        read_file(
            file,
            mapping,
            RowReader::new(names, categories, questions),
            sender,
        );
    });
    let stored = store(
        &mut conn,
        event.id,
        caller.user().map(|u| u.id),
        upload.file_name,
        receiver,
    )
    .await;
    reading.await?;
    let id = stored?;
    let view: ImportView = view(&mut conn, id, &ImportRowsParams::default()).await?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/v1/imports/{id}")))
        .json(view))
}
