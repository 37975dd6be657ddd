//! Importing participants from a spreadsheet (CSV or XLSX). An upload is always a dry run
//! first: the file is read a row at a time and every row is stored with what would happen
//! to it (created, a duplicate, invalid), nothing registered. Committing the import hands it
//! to a background worker (`commit`) that registers the rows in order through the same
//! registering transaction as an organiser's manual registration, each row's outcome written
//! in the transaction that registers it, so that an interrupted commit resumes without
//! registering a row twice.

mod answers;
mod commit;
mod package;
mod read;
mod rows;
mod upload;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Bool, Integer, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::access::{self, EventAction};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{OptionalBody, Query};
use crate::openapi::BodyErrors;
use crate::pagination::{Page, check_limit, decode_cursor};
use crate::registrations::SessionOutcome;
use crate::state::State;

pub use commit::start;
pub use read::{Column, Field, Format};
pub use rows::{Fields, RowProblem};

/// How long a dry run may be committed.
pub const DRY_RUN_HOURS: i64 = 24;

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(upload::create_import)
        .service(get_import)
        .service(commit_import);
}

crate::text_enum! {
    /// Where an import is: `dry_run` (stored, nothing registered; may be committed until
    /// `expires_at`), `expired` (a dry run not committed in time), `committing` (rows being
    /// registered in the background), `committed` (every row has its outcome).
    pub enum ImportStatus {
        DryRun => "dry_run",
        Expired => "expired",
        Committing => "committing",
        Committed => "committed",
    }
}

crate::text_enum! {
    /// A row's status. Dry run: `create` (would be registered), `duplicate` (an active
    /// registration or an earlier row has the same address), `invalid` (see `problems`).
    /// Commit: `pending` (not yet registered), `created`, `duplicate`, `invalid`, `failed`
    /// (refused when registered, see `error`: e.g. a full session without waitlist).
    pub enum RowStatus {
        Create => "create",
        Duplicate => "duplicate",
        Invalid => "invalid",
        Pending => "pending",
        Created => "created",
        Failed => "failed",
    }
}

/// Rows by status.
#[derive(Debug, Default, Serialize, ToSchema, QueryableByName)]
pub struct ImportSummary {
    /// Rows read below the header (empty rows not counted).
    #[diesel(sql_type = Integer)]
    pub rows: i32,
    #[diesel(sql_type = Integer)]
    pub create: i32,
    #[diesel(sql_type = Integer)]
    pub duplicate: i32,
    #[diesel(sql_type = Integer)]
    pub invalid: i32,
    #[diesel(sql_type = Integer)]
    pub pending: i32,
    #[diesel(sql_type = Integer)]
    pub created: i32,
    #[diesel(sql_type = Integer)]
    pub failed: i32,
}

/// What a row duplicates.
#[derive(Debug, Serialize, ToSchema)]
pub struct DuplicateOf {
    /// The active registration with the same address, if that is what it duplicates.
    pub registration_id: Option<Uuid>,
    /// The earlier row of the file with the same address, if that is what it duplicates.
    pub row: Option<i32>,
}

/// Why a row was refused when it was registered.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RowError {
    /// The problem code a manual registration would have got (`session_full`,
    /// `event_full`, `category_full`, `option_full` (a chosen option with limited places
    /// is full), `schedule_conflict`, `session_cancelled`, `registration_closed`,
    /// `validation_failed` (the event's form changed since the dry run and the answers no
    /// longer fit it)), or `internal_error` when the server failed to register it (the error
    /// is in the service's log).
    pub code: String,
    pub detail: String,
}

/// One row of an import and what happens (happened) to it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportRowView {
    /// The row in the spreadsheet (the header is row 1).
    pub row: i32,
    pub status: RowStatus,
    /// The participant's details as read.
    pub fields: Fields,
    /// What is wrong with the row's values (`invalid` rows).
    pub problems: Vec<RowProblem>,
    /// For `duplicate` rows.
    pub duplicate_of: Option<DuplicateOf>,
    /// For `created` rows: the registration.
    pub registration_id: Option<Uuid>,
    /// For `created` rows: the outcome in each session (confirmed or waitlisted).
    pub sessions: Vec<SessionOutcome>,
    /// For `failed` rows.
    pub error: Option<RowError>,
}

/// An import: its file, its status, the rows by status, and a page of rows.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportView {
    pub id: Uuid,
    pub event_id: Uuid,
    pub status: ImportStatus,
    pub file_name: Option<String>,
    pub format: Format,
    /// The file's columns, in order, and the field each was read into (null: not read).
    pub columns: Vec<Column>,
    /// Confirm in full sessions (and the event) beyond capacity, as set when committing.
    pub over_capacity: bool,
    pub created_at: DateTime<Utc>,
    /// Until when the dry run may be committed.
    pub expires_at: DateTime<Utc>,
    pub commit_requested_at: Option<DateTime<Utc>>,
    /// When the last row got its outcome.
    pub committed_at: Option<DateTime<Utc>>,
    pub summary: ImportSummary,
    /// Rows in file order (`GET /imports/{id}` pages through them).
    pub rows: Page<ImportRowView>,
}

#[derive(Debug, QueryableByName)]
struct ImportRecord {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    event_id: Uuid,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Nullable<Text>)]
    file_name: Option<String>,
    #[diesel(sql_type = Text)]
    format: String,
    #[diesel(sql_type = Jsonb)]
    columns: serde_json::Value,
    #[diesel(sql_type = Bool)]
    over_capacity: bool,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    expires_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    commit_requested_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    committed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, QueryableByName)]
struct RowRecord {
    #[diesel(sql_type = Integer)]
    row_number: i32,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Jsonb)]
    fields: serde_json::Value,
    #[diesel(sql_type = Jsonb)]
    problems: serde_json::Value,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    duplicate_of_registration: Option<Uuid>,
    #[diesel(sql_type = Nullable<Integer>)]
    duplicate_of_row: Option<i32>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    registration_id: Option<Uuid>,
    #[diesel(sql_type = Nullable<Jsonb>)]
    result: Option<serde_json::Value>,
}

/// A row's status now, in SQL (`i` the import, `r` the row).
const ROW_STATUS: &str = "coalesce(r.outcome, CASE WHEN i.status = 'dry_run' THEN r.verdict \
                          ELSE 'pending' END)";

fn internal(error: impl std::fmt::Display) -> ApiError {
    ApiError::internal(anyhow::anyhow!(
        "an import's stored data does not read: {error}"
    ))
}

impl RowRecord {
    fn view(self) -> ApiResult<ImportRowView> {
        let status: RowStatus = self.status.parse().map_err(internal)?;
        let (sessions, error) = match (status, self.result) {
            (RowStatus::Created, Some(result)) => {
                (serde_json::from_value(result).map_err(internal)?, None)
            }
            (RowStatus::Failed, Some(result)) => (
                Vec::new(),
                Some(serde_json::from_value(result).map_err(internal)?),
            ),
            _ => (Vec::new(), None),
        };
        let duplicate_of = (status == RowStatus::Duplicate).then_some(DuplicateOf {
            registration_id: self.duplicate_of_registration,
            row: self.duplicate_of_row,
        });
        Ok(ImportRowView {
            row: self.row_number,
            status,
            fields: serde_json::from_value(self.fields).map_err(internal)?,
            problems: serde_json::from_value(self.problems).map_err(internal)?,
            duplicate_of,
            registration_id: self
                .registration_id
                .filter(|_| status == RowStatus::Created),
            sessions,
            error,
        })
    }
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ImportRowsParams {
    /// Only rows with this status.
    pub status: Option<RowStatus>,
    /// Rows per page, 1 to 200; 50 when absent.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// The `rows.next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// The import with its summary and one page of rows.
async fn view(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    params: &ImportRowsParams,
) -> ApiResult<ImportView> {
    let limit = check_limit(params.limit)?;
    let after: i32 = params
        .cursor
        .as_deref()
        .map(decode_cursor)
        .transpose()?
        .unwrap_or(0);
    let record: ImportRecord = diesel::sql_query(
        "SELECT id, event_id, status, file_name, format, column_map AS columns, over_capacity, created_at, \
                expires_at, commit_requested_at, committed_at \
         FROM imports WHERE id = $1",
    )
    .bind::<SqlUuid, _>(id)
    .get_results(conn)
    .await.and_then(crate::db::single)
    .optional()?
    .ok_or_else(|| ApiError::not_found("import"))?;
    let summary: ImportSummary = diesel::sql_query(format!(
        "SELECT count(*)::int AS rows, \
                count(*) FILTER (WHERE s = 'create')::int AS create, \
                count(*) FILTER (WHERE s = 'duplicate')::int AS duplicate, \
                count(*) FILTER (WHERE s = 'invalid')::int AS invalid, \
                count(*) FILTER (WHERE s = 'pending')::int AS pending, \
                count(*) FILTER (WHERE s = 'created')::int AS created, \
                count(*) FILTER (WHERE s = 'failed')::int AS failed \
         FROM (SELECT {ROW_STATUS} AS s FROM import_rows r JOIN imports i ON i.id = r.import_id \
               WHERE r.import_id = $1) rows"
    ))
    .bind::<SqlUuid, _>(id)
    .get_results(conn)
    .await
    .and_then(crate::db::single)?;
    let rows: Vec<RowRecord> = diesel::sql_query(format!(
        "SELECT r.row_number, {ROW_STATUS} AS status, r.fields, r.problems, \
                r.duplicate_of_registration, r.duplicate_of_row, r.registration_id, r.result \
         FROM import_rows r JOIN imports i ON i.id = r.import_id \
         WHERE r.import_id = $1 AND r.row_number > $2 \
           AND ($3::text IS NULL OR {ROW_STATUS} = $3) \
         ORDER BY r.row_number LIMIT $4"
    ))
    .bind::<SqlUuid, _>(id)
    .bind::<Integer, _>(after)
    .bind::<Nullable<Text>, _>(params.status.map(RowStatus::as_str))
    .bind::<diesel::sql_types::BigInt, _>(limit + 1)
    .load(conn)
    .await?;
    let page = Page::from_rows(rows, limit, |r| r.row_number);
    let items = page
        .items
        .into_iter()
        .map(RowRecord::view)
        .collect::<ApiResult<Vec<_>>>()?;
    let mut status: ImportStatus = record.status.parse().map_err(internal)?;
    if status == ImportStatus::DryRun && record.expires_at <= Utc::now() {
        status = ImportStatus::Expired;
    }
    Ok(ImportView {
        id: record.id,
        event_id: record.event_id,
        status,
        file_name: record.file_name,
        format: record.format.parse().map_err(internal)?,
        columns: serde_json::from_value(record.columns).map_err(internal)?,
        over_capacity: record.over_capacity,
        created_at: record.created_at,
        expires_at: record.expires_at,
        commit_requested_at: record.commit_requested_at,
        committed_at: record.committed_at,
        summary,
        rows: Page {
            items,
            next_cursor: page.next_cursor,
        },
    })
}

/// An import: its status, the rows by status, and a page of its rows with what happens
/// (happened) to each. While it is being committed, poll this until `status` is
/// `committed`.
#[utoipa::path(
    tag = "imports",
    params(("id" = Uuid, Path, description = "Import id"), ImportRowsParams),
    responses(
        (status = 200, description = "The import.", body = ImportView),
        (status = 404, description = "`not_found`: no such import visible to the caller.",
         body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`authentication_required`, `invalid_token`.",
         body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: not an organiser of the import's event.",
         body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: `limit`, `cursor` or `status` is \
            invalid. `invalid_query`: an unknown or malformed query parameter.",
         body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/imports/{id}")]
async fn get_import(
    state: State,
    caller: Caller,
    id: web::Path<Uuid>,
    params: Query<ImportRowsParams>,
) -> ApiResult<web::Json<ImportView>> {
    let mut conn = state.conn().await?;
    access::import(&mut conn, &caller, *id, EventAction::ViewPrivate).await?;
    Ok(web::Json(view(&mut conn, *id, &params).await?))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommitBody {
    /// Confirm in full sessions (and a full event) beyond their capacity, as an organiser's
    /// manual registration with `over_capacity` does. Otherwise full sessions put rows on
    /// their waitlist, or refuse them when they have none.
    #[serde(default)]
    pub over_capacity: bool,
}

/// Commit a dry run: its rows are registered in file order, in the background, each through
/// the registering transaction of a manual registration (capacity, waitlists, history with
/// the import as actor). Rows that were invalid stay unregistered; a row whose address has
/// an active registration by then is a `duplicate`. Poll `GET /imports/{id}` for progress.
#[utoipa::path(
    tag = "imports",
    params(("id" = Uuid, Path, description = "Import id")),
    request_body(content = Option<CommitBody>, description = "Optional."),
    responses(
        (status = 202, description = "Being committed: the import, `status` `committing` (or \
            `committed` already when it had little to do).", body = ImportView),
        (status = 409, description = "`import_committed`: the import was committed already. \
            `import_expired`: the dry run expired; upload the file again.",
         body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no such import visible to the caller.",
         body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`authentication_required`, `invalid_token`.",
         body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: only the event's owners and editors may \
            commit.", body = Problem, content_type = "application/problem+json"),
        BodyErrors,
    ),
    security(("bearer" = []))
)]
#[post("/imports/{id}/commit")]
async fn commit_import(
    state: State,
    caller: Caller,
    id: web::Path<Uuid>,
    body: OptionalBody<CommitBody>,
) -> ApiResult<HttpResponse> {
    let over_capacity = body.into_inner().is_some_and(|b| b.over_capacity);
    let mut conn = state.conn().await?;
    access::import(&mut conn, &caller, *id, EventAction::Edit).await?;
    let user = caller.user().map(|u| u.id);
    let started = diesel::sql_query(
        "UPDATE imports SET status = 'committing', committed_by = $2, over_capacity = $3, \
                commit_requested_at = now() \
         WHERE id = $1 AND status = 'dry_run' AND expires_at > now()",
    )
    .bind::<SqlUuid, _>(*id)
    .bind::<Nullable<SqlUuid>, _>(user)
    .bind::<Bool, _>(over_capacity)
    .execute(&mut conn)
    .await?;
    if started == 0 {
        let status: String = crate::db::schema::imports::table
            .find(*id)
            .select(crate::db::schema::imports::status)
            .first(&mut conn)
            .await?;
        return Err(if status == "dry_run" {
            ApiError::conflict(
                "import_expired",
                format!(
                    "the dry run expired ({DRY_RUN_HOURS} hours after the upload); upload the \
                     file again"
                ),
            )
        } else {
            ApiError::conflict("import_committed", "the import was committed already")
        });
    }
    let view = view(&mut conn, *id, &ImportRowsParams::default()).await?;
    Ok(HttpResponse::build(StatusCode::ACCEPTED).json(view))
}

/// The answer with a problem that names the file's row and column.
fn file_problem(error: read::FileError) -> ApiError {
    let place = match (error.row, &error.column) {
        (Some(row), Some(column)) => format!("row {row}, column {column}: "),
        (Some(row), None) => format!("row {row}: "),
        (None, Some(column)) => format!("column {column}: "),
        (None, None) => String::new(),
    };
    let subject = if error.member == "file" {
        "the file"
    } else {
        "the mapping"
    };
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_file",
        format!("{place}{subject} {}", error.message),
    )
    .with_errors(vec![crate::error::FieldError {
        field: error.member,
        message: error.message,
    }])
    .with("row", error.row)
    .with("column", error.column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_problem_names_row_and_column() {
        let problem = file_problem(read::FileError {
            row: Some(7),
            column: Some("C".into()),
            message: "holds a formula; enter values only".into(),
            member: "file".into(),
        })
        .problem();
        assert_eq!(problem.code, "invalid_file");
        assert_eq!(
            problem.detail,
            "row 7, column C: the file holds a formula; enter values only"
        );
        assert_eq!(problem.extra["row"], 7);
        assert_eq!(problem.extra["column"], "C");
    }
}
