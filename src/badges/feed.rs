//! The attendee feed for badge printers and desks, per-session attendee lists, and the CSV
//! export.
//!
//! The feed is ordered by the transaction that last changed each registration (`change_xid`)
//! and only returns changes of transactions older than every one still running
//! (`pg_snapshot_xmin`). A change that commits late, after a poll already returned later
//! ones, therefore has a position after that poll's cursor and comes in the next poll: no
//! change is ever skipped, whatever order transactions commit in.

use std::borrow::Cow;
use std::collections::HashMap;

use actix_web::{HttpResponse, get, web};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::qr;
use super::spreadsheet::{self, neutralise};
use crate::access::{self, EventAction};
use crate::auth::Caller;
use crate::db::schema::{checkins, registration_sessions, registrations, sessions};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::Query;
use crate::openapi::EventErrors;
use crate::pagination::{Page, PageParams, decode_cursor, encode_cursor};
use crate::registrations::{RegistrationStatus, SessionRegistrationStatus};
use crate::state::State;
use crate::streams::{Stopped, StreamSender};

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(attendee_feed)
        .service(session_attendees)
        .service(export_csv);
}

pub const FEED_DEFAULT_LIMIT: i64 = 100;
pub const FEED_MAX_LIMIT: i64 = 1000;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = registrations)]
pub struct AttendeeRow {
    pub id: Uuid,
    pub event_id: Uuid,
    pub full_name: String,
    pub organisation: Option<String>,
    pub position: Option<String>,
    pub city: Option<String>,
    pub category: String,
    pub status: RegistrationStatus,
    pub checked_in_at: Option<DateTime<Utc>>,
    pub badge_printed_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    pub change_xid: i64,
}

/// What a badge printer or desk needs of one attendee.
#[derive(Debug, Serialize, ToSchema)]
pub struct Attendee {
    pub registration_id: Uuid,
    pub full_name: String,
    pub organisation: Option<String>,
    pub position: Option<String>,
    pub city: Option<String>,
    /// The code of one of the event's categories.
    #[schema(example = "business")]
    pub category: String,
    /// `cancelled` attendees come through the feed too, so devices can drop them.
    pub status: RegistrationStatus,
    /// Sessions the attendee is confirmed for.
    pub sessions: Vec<Uuid>,
    /// Checked in at the event's entrance.
    pub checked_in_at: Option<DateTime<Utc>>,
    pub badge_printed_at: Option<DateTime<Utc>>,
    /// The signed payload of the badge's QR code (see `/checkin-key`).
    pub qr_code: String,
    pub updated_at: DateTime<Utc>,
}

/// Attendee records for the given rows, with their confirmed sessions and QR codes.
pub async fn attendees(
    conn: &mut AsyncPgConnection,
    key: &SigningKey,
    rows: Vec<AttendeeRow>,
) -> ApiResult<Vec<Attendee>> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let mut sessions: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
    let confirmed: Vec<(Uuid, Uuid)> = registration_sessions::table
        .filter(registration_sessions::registration_id.eq_any(&ids))
        .filter(registration_sessions::status.eq(SessionRegistrationStatus::Confirmed))
        .select((
            registration_sessions::registration_id,
            registration_sessions::session_id,
        ))
        .order((
            registration_sessions::registration_id,
            registration_sessions::session_id,
        ))
        .load(conn)
        .await?;
    for (registration_id, session_id) in confirmed {
        sessions
            .entry(registration_id)
            .or_default()
            .push(session_id);
    }
    Ok(rows
        .into_iter()
        .map(|r| Attendee {
            qr_code: qr::encode(key, r.event_id, r.id),
            sessions: sessions.remove(&r.id).unwrap_or_default(),
            registration_id: r.id,
            full_name: r.full_name,
            organisation: r.organisation,
            position: r.position,
            city: r.city,
            category: r.category,
            status: r.status,
            checked_in_at: r.checked_in_at,
            badge_printed_at: r.badge_printed_at,
            updated_at: r.updated_at,
        })
        .collect())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FeedParams {
    /// The `next_cursor` of the previous poll; absent: from the beginning.
    pub since: Option<String>,
    /// Records per poll, 1 to 1000; 100 when absent.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

/// One poll of the feed.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttendeeFeed {
    /// Attendees created, changed or cancelled since the cursor, oldest change first.
    pub items: Vec<Attendee>,
    /// Poll again with this as `since` (it stays the same while nothing changes).
    pub next_cursor: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct FeedCursor(i64, Uuid);

/// The attendee feed: every attendee created, changed or cancelled since the cursor.
///
/// Poll with the last `next_cursor`. No change is ever missed, even one whose transaction
/// commits after a poll has already returned later changes; cancellations come as records
/// with status `cancelled`.
#[utoipa::path(
    tag = "badges",
    params(("event" = String, Path, description = "Event slug or id"), FeedParams),
    responses(
        (status = 200, description = "Changes since the cursor.", body = AttendeeFeed),
        (status = 422, description = "`validation_failed`: bad `limit` or `since`.",
         body = crate::error::Problem, content_type = "application/problem+json"),
        EventErrors,
    ),
    security(("bearer" = []))
)]
#[get("/events/{event}/attendees")]
async fn attendee_feed(
    state: State,
    caller: Caller,
    path: web::Path<String>,
    params: Query<FeedParams>,
) -> ApiResult<web::Json<AttendeeFeed>> {
    let limit = params.limit.unwrap_or(FEED_DEFAULT_LIMIT);
    if !(1..=FEED_MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("must be between 1 and {FEED_MAX_LIMIT}"),
        ));
    }
    let since: FeedCursor = match params.since.as_deref() {
        Some(cursor) => decode_cursor(cursor)
            .map_err(|_| ApiError::invalid("since", "is not a cursor this feed returned"))?,
        None => FeedCursor::default(),
    };
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &path, EventAction::ReadAttendees).await?;
    let rows: Vec<AttendeeRow> = registrations::table
        .filter(registrations::event_id.eq(ctx.event.id))
        // A row comparison, so that the index (event_id, change_xid, id) bounds the scan.
        .filter(
            diesel::dsl::sql::<diesel::sql_types::Bool>(
                "(registrations.change_xid, registrations.id) > (",
            )
            .bind::<diesel::sql_types::BigInt, _>(since.0)
            .sql(", ")
            .bind::<diesel::sql_types::Uuid, _>(since.1)
            .sql(")"),
        )
        .filter(
            registrations::change_xid.lt(diesel::dsl::sql::<diesel::sql_types::BigInt>(
                "pg_snapshot_xmin(pg_current_snapshot())::text::bigint",
            )),
        )
        .order((registrations::change_xid, registrations::id))
        .limit(limit)
        .select(AttendeeRow::as_select())
        .load(&mut conn)
        .await?;
    let next = rows
        .last()
        .map(|r| FeedCursor(r.change_xid, r.id))
        .unwrap_or(since);
    let key = qr::signing_key(&mut conn, &state.sealing, ctx.event.id).await?;
    let items = attendees(&mut conn, &key, rows).await?;
    Ok(web::Json(AttendeeFeed {
        items,
        next_cursor: encode_cursor(&next),
    }))
}

/// An attendee of one session.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionAttendee {
    #[serde(flatten)]
    pub attendee: Attendee,
    /// Checked in at this session's door.
    pub session_checked_in_at: Option<DateTime<Utc>>,
}

/// Attendees confirmed for a session (active registrations), for the session's door.
#[utoipa::path(
    tag = "badges",
    params(("event" = String, Path, description = "Event slug or id"), ("session_id" = Uuid, Path), PageParams),
    responses((status = 200, description = "One page of attendees.", body = Page<SessionAttendee>), EventErrors),
    security(("bearer" = []))
)]
#[get("/events/{event}/sessions/{session_id}/attendees")]
async fn session_attendees(
    state: State,
    caller: Caller,
    path: web::Path<(String, Uuid)>,
    page: Query<PageParams>,
) -> ApiResult<web::Json<Page<SessionAttendee>>> {
    let (event_ref, session_id) = path.into_inner();
    let limit = page.limit()?;
    let after: Option<Uuid> = page.after()?;
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &event_ref, EventAction::ReadAttendees).await?;
    // Whoever may read attendees (organisers, the event's devices) sees all its sessions.
    let exists: bool = diesel::select(diesel::dsl::exists(
        sessions::table.filter(
            sessions::id
                .eq(session_id)
                .and(sessions::event_id.eq(ctx.event.id)),
        ),
    ))
    .get_result(&mut conn)
    .await?;
    if !exists {
        return Err(ApiError::not_found("session"));
    }
    let confirmed = registration_sessions::table
        .filter(registration_sessions::session_id.eq(session_id))
        .filter(registration_sessions::status.eq(SessionRegistrationStatus::Confirmed))
        .select(registration_sessions::registration_id);
    let mut query = registrations::table
        .filter(registrations::event_id.eq(ctx.event.id))
        .filter(registrations::status.eq(RegistrationStatus::Active))
        .filter(registrations::id.eq_any(confirmed))
        .order(registrations::id)
        .limit(limit + 1)
        .select(AttendeeRow::as_select())
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(registrations::id.gt(after));
    }
    let rows = query.load(&mut conn).await?;
    let page = Page::from_rows(rows, limit, |r| r.id);
    let ids: Vec<Uuid> = page.items.iter().map(|r| r.id).collect();
    let door: HashMap<Uuid, DateTime<Utc>> = checkins::table
        .filter(checkins::session_id.eq(session_id))
        .filter(checkins::registration_id.eq_any(&ids))
        .select((checkins::registration_id, checkins::scanned_at))
        .load::<(Uuid, DateTime<Utc>)>(&mut conn)
        .await?
        .into_iter()
        .collect();
    let key = qr::signing_key(&mut conn, &state.sealing, ctx.event.id).await?;
    let items = attendees(&mut conn, &key, page.items)
        .await?
        .into_iter()
        .map(|attendee| SessionAttendee {
            session_checked_in_at: door.get(&attendee.registration_id).copied(),
            attendee,
        })
        .collect();
    Ok(web::Json(Page {
        items,
        next_cursor: page.next_cursor,
    }))
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

#[derive(QueryableByName)]
struct CsvRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    full_name: String,
    #[diesel(sql_type = Text)]
    email: String,
    #[diesel(sql_type = Nullable<Text>)]
    organisation: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    position: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    city: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    phone: Option<String>,
    #[diesel(sql_type = Text)]
    category: String,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Text)]
    sessions: String,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    checked_in_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    badge_printed_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
}

const CSV_BATCH: usize = 2000;

fn csv_writer(delimiter: Delimiter) -> csv::Writer<Vec<u8>> {
    spreadsheet::writer(match delimiter {
        Delimiter::Comma => b',',
        Delimiter::Semicolon => b';',
    })
}

fn csv_batch(
    rows: &[CsvRow],
    delimiter: Delimiter,
    with_contacts: bool,
) -> anyhow::Result<Vec<u8>> {
    let time = |t: &Option<DateTime<Utc>>| t.map(|t| t.to_rfc3339()).unwrap_or_default();
    let mut writer = csv_writer(delimiter);
    for r in rows {
        let id = r.id.to_string();
        let created = r.created_at.to_rfc3339();
        let (checked_in, printed) = (time(&r.checked_in_at), time(&r.badge_printed_at));
        let mut record: Vec<Cow<'_, str>> =
            vec![Cow::Borrowed(id.as_str()), neutralise(&r.full_name)];
        if with_contacts {
            record.push(neutralise(&r.email));
            record.push(neutralise(r.phone.as_deref().unwrap_or("")));
        }
        record.extend([
            neutralise(r.organisation.as_deref().unwrap_or("")),
            neutralise(r.position.as_deref().unwrap_or("")),
            neutralise(r.city.as_deref().unwrap_or("")),
            neutralise(&r.category),
            Cow::Borrowed(r.status.as_str()),
            neutralise(&r.sessions),
            Cow::Borrowed(checked_in.as_str()),
            Cow::Borrowed(printed.as_str()),
            Cow::Borrowed(created.as_str()),
        ]);
        writer.write_record(record.iter().map(|c| c.as_bytes()))?;
    }
    writer.into_inner().map_err(|e| anyhow::anyhow!("{e}"))
}

fn csv_header(delimiter: Delimiter, with_contacts: bool, bom: bool) -> anyhow::Result<Vec<u8>> {
    let mut columns = vec!["registration_id", "full_name"];
    if with_contacts {
        columns.extend(["email", "phone"]);
    }
    columns.extend([
        "organisation",
        "position",
        "city",
        "category",
        "status",
        "sessions",
        "checked_in_at",
        "badge_printed_at",
        "registered_at",
    ]);
    let mut writer = csv_writer(delimiter);
    writer.write_record(&columns)?;
    let mut bytes = if bom {
        "\u{feff}".as_bytes().to_vec()
    } else {
        Vec::new()
    };
    bytes.extend(writer.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?);
    Ok(bytes)
}

/// Streams the query's rows through a cursor, a batch at a time, into `chunks`; stops
/// (rolling back) as soon as the client is gone or has stopped reading.
async fn stream_rows(
    conn: &mut AsyncPgConnection,
    event_id: Uuid,
    include_cancelled: bool,
    delimiter: Delimiter,
    with_contacts: bool,
    chunks: &StreamSender,
) -> ApiResult<()> {
    conn.build_transaction()
        .read_only()
        .run::<_, ApiError, _>(async |conn| {
            // The id is a formatted UUID: safe to inline (DECLARE takes no parameters).
            let declare = format!(
                "DECLARE attendees_export NO SCROLL CURSOR FOR \
                 SELECT r.id, r.full_name, r.email, r.organisation, r.position, r.city, r.phone, \
                        r.category, r.status, \
                        coalesce((SELECT string_agg(s.title, '; ' ORDER BY s.starts_at) \
                                  FROM registration_sessions rs JOIN sessions s ON s.id = rs.session_id \
                                  WHERE rs.registration_id = r.id AND rs.status = 'confirmed'), '') AS sessions, \
                        r.checked_in_at, r.badge_printed_at, r.created_at \
                 FROM registrations r WHERE r.event_id = '{event_id}' {} ORDER BY r.id",
                if include_cancelled { "" } else { "AND r.status = 'active'" }
            );
            diesel::sql_query(declare).execute(conn).await?;
            loop {
                let rows: Vec<CsvRow> = diesel::sql_query(format!("FETCH {CSV_BATCH} FROM attendees_export"))
                    .load(conn)
                    .await?;
                let done = rows.len() < CSV_BATCH;
                let bytes = csv_batch(&rows, delimiter, with_contacts).map_err(ApiError::internal)?;
                if let Err(stopped) = chunks.send(bytes.into()).await {
                    return Err(stopped_early(stopped));
                }
                if done {
                    return Ok(());
                }
            }
        })
        .await
}

/// Why an export stopped before its end, as the error that ends its transaction.
fn stopped_early(stopped: Stopped) -> ApiError {
    let detail = match stopped {
        Stopped::Gone => "the client went away",
        Stopped::Stalled => "the client stopped reading",
    };
    ApiError::bad_request("client_gone", detail)
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
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &path, EventAction::ReadAttendees).await?;
    let with_contacts = ctx.sees_private();
    let delimiter = params.delimiter.unwrap_or_default();
    let header = csv_header(delimiter, with_contacts, params.bom.unwrap_or(false))
        .map_err(ApiError::internal)?;
    let include_cancelled = params.include_cancelled.unwrap_or(false);
    let event_id = ctx.event.id;
    // Whom the export counts against (only accounts and device keys get this far).
    let exporter = match &caller {
        Caller::User(user) => user.id,
        Caller::Device(device) => device.key_id,
        _ => Uuid::nil(),
    };
    let (sender, body) = state.streams.reserve(exporter)?.channel();
    if sender.send(header.into()).await.is_err() {
        return Err(ApiError::internal(anyhow::anyhow!("export channel closed")));
    }
    tokio::spawn(async move {
        let result = stream_rows(
            &mut conn,
            event_id,
            include_cancelled,
            delimiter,
            with_contacts,
            &sender,
        )
        .await;
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
            format!("attachment; filename=\"{}-attendees.csv\"", ctx.event.slug),
        ))
        .streaming(body))
}
