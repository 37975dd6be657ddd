//! Check-in at the entrance or a session's door, online or uploaded later by desks that
//! scanned offline. A person is checked in once per place: repeats answer with the original
//! time.

use actix_web::{HttpResponse, post, web};
use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::feed::{Attendee, AttendeeRow, attendees, withheld_answers};
use super::qr;
use crate::access::{self, EventAction, EventContext};
use crate::auth::Caller;
use crate::dates::Timestamp;
use crate::db::schema::{registration_sessions, registrations, sessions};
use crate::error::{ApiError, ApiResult, Problem};
use crate::events::Event;
use crate::extract::Body;
use crate::openapi::{BodyErrors, EventErrors};
use crate::registrations::{RegistrationStatus, SessionRegistrationStatus};
use crate::state::State;
use crate::validation::Validator;

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(check_in).service(upload_scans);
}

pub const MAX_BATCH: usize = 500;

/// One scan of a badge.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Scan {
    /// The badge's QR code payload (`RG1.…`).
    #[schema(max_length = 200)]
    pub qr_code: String,
    /// At a session's door: the session; absent at the event's entrance.
    #[serde(default)]
    pub session_id: Option<Uuid>,
    /// When the badge was scanned (offline desks); now when absent.
    #[serde(default)]
    pub scanned_at: Option<Timestamp>,
    /// The desk's id for this scan: uploading it again changes nothing.
    #[serde(default)]
    #[schema(max_length = 100)]
    pub client_nonce: Option<String>,
}

/// A recorded check-in.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckinView {
    pub id: Uuid,
    pub registration_id: Uuid,
    pub session_id: Option<Uuid>,
    /// When the person was (first) checked in here.
    pub checked_in_at: DateTime<Utc>,
    /// False when this repeats an earlier check-in.
    pub first: bool,
    pub attendee: Attendee,
}

#[derive(QueryableByName)]
struct Recorded {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Timestamptz)]
    scanned_at: DateTime<Utc>,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    first: bool,
}

fn check_scan(v: &mut Validator, prefix: &str, scan: &Scan) {
    v.check(
        !scan.qr_code.is_empty() && scan.qr_code.len() <= 200,
        &format!("{prefix}qr_code"),
        "must be a badge code",
    );
    if let Some(nonce) = &scan.client_nonce {
        v.check(
            !nonce.is_empty() && nonce.len() <= 100 && !nonce.chars().any(char::is_control),
            &format!("{prefix}client_nonce"),
            "must be 1 to 100 characters",
        );
    }
    if let Some(at) = scan.scanned_at.map(Timestamp::utc) {
        v.check(
            at <= Utc::now() + Duration::minutes(5),
            &format!("{prefix}scanned_at"),
            "must not be in the future",
        );
    }
}

struct Desk {
    device_key_id: Option<Uuid>,
    user_id: Option<Uuid>,
    /// Answers the desk may not read (see `Attendee::answers`).
    withheld: Vec<String>,
}

/// Records one scan; `Ok((first, view))`, or the problem the desk should show.
async fn record(
    conn: &mut AsyncPgConnection,
    event: &Event,
    public: &VerifyingKey,
    signing: &ed25519_dalek::SigningKey,
    desk: &Desk,
    scan: &Scan,
) -> ApiResult<CheckinView> {
    let registration_id = qr::decode(public, event.id, &scan.qr_code).map_err(|reason| {
        ApiError::new(
            actix_web::http::StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_qr_code",
            reason,
        )
    })?;
    let row: AttendeeRow = registrations::table
        .filter(registrations::event_id.eq(event.id))
        .find(registration_id)
        .select(AttendeeRow::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or_else(|| {
            ApiError::new(
                actix_web::http::StatusCode::NOT_FOUND,
                "unknown_code",
                "no registration has this badge code",
            )
        })?;
    if row.status == RegistrationStatus::Cancelled {
        return Err(ApiError::conflict(
            "registration_cancelled",
            "this registration was cancelled",
        )
        .with("registration_id", registration_id));
    }
    if let Some(session_id) = scan.session_id {
        let in_event: bool = diesel::select(diesel::dsl::exists(
            sessions::table.filter(
                sessions::id
                    .eq(session_id)
                    .and(sessions::event_id.eq(event.id)),
            ),
        ))
        .get_results(conn)
        .await
        .and_then(crate::db::single)?;
        if !in_event {
            return Err(ApiError::invalid(
                "session_id",
                "is not a session of this event",
            ));
        }
        let confirmed: bool = diesel::select(diesel::dsl::exists(
            registration_sessions::table
                .find((registration_id, session_id))
                .filter(registration_sessions::status.eq(SessionRegistrationStatus::Confirmed)),
        ))
        .get_results(conn)
        .await
        .and_then(crate::db::single)?;
        if !confirmed {
            return Err(ApiError::conflict(
                "not_registered_for_session",
                "this person holds no confirmed place in the session",
            )
            .with("registration_id", registration_id)
            .with("session_id", session_id));
        }
    }
    let scanned_at = scan.scanned_at.map_or_else(Utc::now, Timestamp::utc);
    // One statement: insert (with its entry in the change log), or find the check-in this
    // repeats (same place, or same scan).
    let recorded: Option<Recorded> = diesel::sql_query(
        "WITH inserted AS ( \
             INSERT INTO checkins (id, event_id, registration_id, session_id, scanned_at, \
                                   device_key_id, user_id, client_nonce) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT DO NOTHING \
             RETURNING id, scanned_at), \
         logged AS ( \
             INSERT INTO changes (event_id, registration_id, session_id, kind, actor, actor_id, details) \
             SELECT $2, $3, $4, 'checkin.created', \
                    CASE WHEN $6::uuid IS NOT NULL THEN 'device' ELSE 'organiser' END, \
                    coalesce($6, $7), jsonb_build_object('checkin_id', id) \
             FROM inserted) \
         SELECT id, scanned_at, true AS first FROM inserted \
         UNION ALL \
         SELECT id, scanned_at, false FROM checkins \
         WHERE NOT EXISTS (SELECT 1 FROM inserted) \
           AND registration_id = $3 AND session_id IS NOT DISTINCT FROM $4 \
         LIMIT 1",
    )
    .bind::<SqlUuid, _>(Uuid::now_v7())
    .bind::<SqlUuid, _>(event.id)
    .bind::<SqlUuid, _>(registration_id)
    .bind::<Nullable<SqlUuid>, _>(scan.session_id)
    .bind::<Timestamptz, _>(scanned_at)
    .bind::<Nullable<SqlUuid>, _>(desk.device_key_id)
    .bind::<Nullable<SqlUuid>, _>(desk.user_id)
    .bind::<Nullable<Text>, _>(scan.client_nonce.as_deref())
    .get_results(conn)
    .await.and_then(crate::db::single)
    .optional()?;
    let recorded = match recorded {
        Some(recorded) => recorded,
        // A concurrent scan of the same badge committed after this statement began.
        None => diesel::sql_query(
            "SELECT id, scanned_at, false AS first FROM checkins \
             WHERE registration_id = $1 AND session_id IS NOT DISTINCT FROM $2",
        )
        .bind::<SqlUuid, _>(registration_id)
        .bind::<Nullable<SqlUuid>, _>(scan.session_id)
        .get_results(conn)
        .await
        .and_then(crate::db::single)
        .optional()?
        .ok_or_else(|| {
            ApiError::conflict(
                "nonce_reused",
                "this client_nonce was already used for another scan",
            )
        })?,
    };
    let mut row = row;
    if recorded.first && scan.session_id.is_none() {
        diesel::update(registrations::table.find(registration_id))
            .filter(registrations::checked_in_at.is_null())
            .set(registrations::checked_in_at.eq(recorded.scanned_at))
            .execute(conn)
            .await?;
        row.checked_in_at = Some(recorded.scanned_at);
    }
    let attendee = attendees(conn, signing, vec![row], &desk.withheld)
        .await?
        .remove(0);
    Ok(CheckinView {
        id: recorded.id,
        registration_id,
        session_id: scan.session_id,
        checked_in_at: recorded.scanned_at,
        first: recorded.first,
        attendee,
    })
}

async fn desk_of(
    conn: &mut AsyncPgConnection,
    caller: &Caller,
    ctx: &EventContext,
) -> ApiResult<Desk> {
    let withheld = withheld_answers(conn, ctx).await?;
    Ok(match caller {
        Caller::Device(device) => Desk {
            device_key_id: Some(device.key_id),
            user_id: None,
            withheld,
        },
        Caller::User(user) => Desk {
            device_key_id: None,
            user_id: Some(user.id),
            withheld,
        },
        _ => Desk {
            device_key_id: None,
            user_id: None,
            withheld,
        },
    })
}

/// Check a badge in at the entrance (or a session's door with `session_id`).
#[utoipa::path(
    tag = "badges",
    params(("event" = String, Path, description = "Event slug or id")),
    request_body = Scan,
    responses(
        (status = 201, description = "Checked in now.", body = CheckinView),
        (status = 200, description = "Already checked in here: the original time.", body = CheckinView),
        (status = 404, description = "`unknown_code`: a valid code of no registration (or `not_found`: no such event).",
         body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`registration_cancelled`: the registration was cancelled. \
            `not_registered_for_session`: no confirmed place in that session. \
            `nonce_reused`: the client_nonce belongs to another scan.",
         body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_qr_code`: not a badge code of this event, or altered. \
            `validation_failed`: bad fields.",
         body = Problem, content_type = "application/problem+json"),
        EventErrors, BodyErrors,
    ),
    security(("bearer" = []))
)]
#[post("/events/{event}/checkins")]
async fn check_in(
    state: State,
    caller: Caller,
    path: web::Path<String>,
    body: Body<Scan>,
) -> ApiResult<HttpResponse> {
    let scan = body.into_inner();
    let mut v = Validator::new();
    check_scan(&mut v, "", &scan);
    v.finish()?;
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &path, EventAction::CheckIn).await?;
    let signing = qr::signing_key(&mut conn, &state.sealing, ctx.event.id).await?;
    let desk = desk_of(&mut conn, &caller, &ctx).await?;
    let view = record(
        &mut conn,
        &ctx.event,
        &signing.verifying_key(),
        &signing,
        &desk,
        &scan,
    )
    .await?;
    Ok(if view.first {
        HttpResponse::Created().json(view)
    } else {
        HttpResponse::Ok().json(view)
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScanBatch {
    /// Scans queued while offline, each with `scanned_at` and `client_nonce`.
    #[schema(max_items = 500)]
    pub scans: Vec<Scan>,
}

/// What became of one uploaded scan.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScanResult {
    pub client_nonce: Option<String>,
    /// `checked_in` (first time), `already_checked_in` (a repeat), or `rejected`.
    #[schema(example = "checked_in")]
    pub outcome: &'static str,
    /// For rejected scans: the problem code (`invalid_qr_code`, `unknown_code`, ...).
    pub code: Option<&'static str>,
    pub detail: Option<String>,
    pub checkin: Option<CheckinView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ScanBatchResult {
    /// One result per scan, in the order uploaded.
    pub results: Vec<ScanResult>,
}

/// Upload scans a desk made offline. Each gets its own result; uploading the same scans
/// again (same `client_nonce`) checks nobody in twice.
#[utoipa::path(
    tag = "badges",
    params(("event" = String, Path, description = "Event slug or id")),
    request_body = ScanBatch,
    responses(
        (status = 200, description = "Each scan's outcome.", body = ScanBatchResult),
        EventErrors, BodyErrors,
    ),
    security(("bearer" = []))
)]
#[post("/events/{event}/checkins/batch")]
async fn upload_scans(
    state: State,
    caller: Caller,
    path: web::Path<String>,
    body: Body<ScanBatch>,
) -> ApiResult<web::Json<ScanBatchResult>> {
    let batch = body.into_inner();
    let mut v = Validator::new();
    v.list_len("scans", &batch.scans, MAX_BATCH);
    for (i, scan) in batch.scans.iter().enumerate() {
        check_scan(&mut v, &format!("scans[{i}]."), scan);
        v.check(
            scan.client_nonce.is_some() && scan.scanned_at.is_some(),
            &format!("scans[{i}]"),
            "offline scans carry scanned_at and client_nonce",
        );
    }
    v.finish()?;
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &path, EventAction::CheckIn).await?;
    let signing = qr::signing_key(&mut conn, &state.sealing, ctx.event.id).await?;
    let public = signing.verifying_key();
    let desk = desk_of(&mut conn, &caller, &ctx).await?;
    let mut results = Vec::with_capacity(batch.scans.len());
    for scan in &batch.scans {
        let result = match record(&mut conn, &ctx.event, &public, &signing, &desk, scan).await {
            Ok(view) => ScanResult {
                client_nonce: scan.client_nonce.clone(),
                outcome: if view.first {
                    "checked_in"
                } else {
                    "already_checked_in"
                },
                code: None,
                detail: None,
                checkin: Some(view),
            },
            // The database being away is not the scan's fault: let the desk retry the batch.
            Err(error) if error.status().is_server_error() => return Err(error),
            Err(error) => ScanResult {
                client_nonce: scan.client_nonce.clone(),
                outcome: "rejected",
                code: Some(error.code()),
                detail: Some(error.problem().detail),
                checkin: None,
            },
        };
        results.push(result);
    }
    Ok(web::Json(ScanBatchResult { results }))
}
