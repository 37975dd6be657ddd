//! The badge print queue: printers claim jobs under a lease instead of guessing what to print.
//!
//! Every active attendee without a printed badge gets a job (created when printers ask for
//! work, so registering stays lean); organisers can ask for reprints, and changing a printed
//! attendee's name or organisation queues one. A claim hands each job to one printer at a
//! time (`FOR UPDATE SKIP LOCKED`); a lease that runs out puts the job back in the queue.

use actix_web::{HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Integer, Text, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::feed::{Attendee, AttendeeRow, attendees, withheld_answers};
use super::qr;
use crate::access::{self, EventAction};
use crate::auth::Caller;
use crate::dates::Timestamp;
use crate::db::schema::{print_jobs, registrations};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{Body, OptionalBody, Query};
use crate::openapi::{BodyErrors, EventErrors};
use crate::pagination::{Page, check_limit, decode_cursor};
use crate::state::State;
use crate::validation::Validator;

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(claim_jobs)
        .service(complete_job)
        .service(request_reprint)
        .service(list_jobs);
}

crate::text_enum! {
    pub enum JobStatus {
        Queued => "queued",
        Claimed => "claimed",
        Done => "done",
        Cancelled => "cancelled",
    }
}

crate::text_enum! {
    /// Why a badge is printed: a `new` attendee, a `reprint` an organiser asked for, or a
    /// badge `changed` by a new name or organisation.
    pub enum JobReason {
        New => "new",
        Reprint => "reprint",
        Changed => "changed",
    }
}

#[derive(Debug, Clone, Queryable, Selectable, QueryableByName)]
#[diesel(table_name = print_jobs)]
pub struct Job {
    pub id: Uuid,
    pub event_id: Uuid,
    pub registration_id: Uuid,
    pub reason: JobReason,
    pub status: JobStatus,
    pub claimed_by: Option<Uuid>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub claims: i32,
    pub created_at: DateTime<Utc>,
    pub done_at: Option<DateTime<Utc>>,
}

/// A print job.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    pub id: Uuid,
    pub registration_id: Uuid,
    pub reason: JobReason,
    pub status: JobStatus,
    /// Until when the claiming printer holds it.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// How many times it was handed out.
    pub claims: i32,
    pub created_at: DateTime<Utc>,
    pub done_at: Option<DateTime<Utc>>,
}

impl From<Job> for JobView {
    fn from(j: Job) -> Self {
        JobView {
            id: j.id,
            registration_id: j.registration_id,
            reason: j.reason,
            status: j.status,
            lease_expires_at: j.lease_expires_at,
            claims: j.claims,
            created_at: j.created_at,
            done_at: j.done_at,
        }
    }
}

/// A claimed job with what to print.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClaimedJob {
    #[serde(flatten)]
    pub job: JobView,
    pub attendee: Attendee,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    /// Jobs to take at most, 1 to 100; 10 when absent.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 100)]
    pub batch_size: Option<i32>,
    /// How long the printer holds them, 10 to 3600 seconds; 120 when absent.
    #[serde(default)]
    #[schema(minimum = 10, maximum = 3600)]
    pub lease_seconds: Option<i32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ClaimResponse {
    /// Empty when there is nothing to print.
    pub jobs: Vec<ClaimedJob>,
}

fn claimer(caller: &Caller) -> Option<Uuid> {
    match caller {
        Caller::Device(device) => Some(device.key_id),
        Caller::User(user) => Some(user.id),
        _ => None,
    }
}

/// Gives a job to every active attendee without a printed badge and without an open job.
async fn enqueue_new(conn: &mut AsyncPgConnection, event_id: Uuid) -> ApiResult<()> {
    diesel::sql_query(
        "INSERT INTO print_jobs (id, event_id, registration_id, reason) \
         SELECT gen_random_uuid(), r.event_id, r.id, 'new' FROM registrations r \
         WHERE r.event_id = $1 AND r.status = 'active' AND r.badge_printed_at IS NULL \
           AND NOT EXISTS (SELECT 1 FROM print_jobs j WHERE j.registration_id = r.id \
                           AND j.status IN ('queued', 'claimed')) \
         ORDER BY r.id \
         ON CONFLICT DO NOTHING",
    )
    .bind::<SqlUuid, _>(event_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Claim badge print jobs: each job goes to one printer at a time, until its lease ends.
#[utoipa::path(
    tag = "badges",
    params(("event" = String, Path, description = "Event slug or id")),
    request_body(content = Option<ClaimRequest>, description = "Optional."),
    responses(
        (status = 200, description = "The jobs claimed, oldest first, with what to print.", body = ClaimResponse),
        EventErrors, BodyErrors,
    ),
    security(("bearer" = []))
)]
#[post("/events/{event}/print-jobs/claim")]
async fn claim_jobs(
    state: State,
    caller: Caller,
    path: web::Path<String>,
    body: OptionalBody<ClaimRequest>,
) -> ApiResult<web::Json<ClaimResponse>> {
    let body = body.into_inner().unwrap_or_default();
    let batch = body.batch_size.unwrap_or(10);
    let lease = body.lease_seconds.unwrap_or(120);
    let mut v = Validator::new();
    v.range("batch_size", batch, 1, 100);
    v.range("lease_seconds", lease, 10, 3600);
    v.finish()?;
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &path, EventAction::PrintBadges).await?;
    let event_id = ctx.event.id;
    let holder = claimer(&caller);
    enqueue_new(&mut conn, event_id).await?;
    let jobs: Vec<Job> = diesel::sql_query(
        "WITH picked AS ( \
             SELECT j.id FROM print_jobs j JOIN registrations r ON r.id = j.registration_id \
             WHERE j.event_id = $1 AND r.status = 'active' \
               AND (j.status = 'queued' OR (j.status = 'claimed' AND j.lease_expires_at < now())) \
             ORDER BY j.created_at, j.id LIMIT $2 \
             FOR UPDATE OF j SKIP LOCKED) \
         UPDATE print_jobs j SET status = 'claimed', claimed_by = $3, \
                lease_expires_at = now() + $4 * interval '1 second', claims = claims + 1 \
         FROM picked WHERE j.id = picked.id \
         RETURNING j.*",
    )
    .bind::<SqlUuid, _>(event_id)
    .bind::<Integer, _>(batch)
    .bind::<diesel::sql_types::Nullable<SqlUuid>, _>(holder)
    .bind::<Integer, _>(lease)
    .load(&mut conn)
    .await?;
    let mut jobs = jobs;
    jobs.sort_by_key(|j| (j.created_at, j.id));
    let ids: Vec<Uuid> = jobs.iter().map(|j| j.registration_id).collect();
    let rows: Vec<AttendeeRow> = registrations::table
        .filter(registrations::id.eq_any(&ids))
        .select(AttendeeRow::as_select())
        .load(&mut conn)
        .await?;
    let key = qr::signing_key(&mut conn, &state.sealing, event_id).await?;
    let withheld = withheld_answers(&mut conn, &ctx).await?;
    let mut records = attendees(&mut conn, &key, rows, &withheld).await?;
    let jobs = jobs
        .into_iter()
        .filter_map(|job| {
            let at = records
                .iter()
                .position(|a| a.registration_id == job.registration_id)?;
            Some(ClaimedJob {
                attendee: records.swap_remove(at),
                job: job.into(),
            })
        })
        .collect();
    Ok(web::Json(ClaimResponse { jobs }))
}

/// Acknowledge a printed badge. Only the printer holding the lease can (again: it is safe to
/// repeat); a job whose lease ran out and went to another printer answers 409.
#[utoipa::path(
    tag = "badges",
    params(("event" = String, Path, description = "Event slug or id"), ("job_id" = Uuid, Path)),
    responses(
        (status = 200, description = "The job is done; the attendee's badge counts as printed.", body = JobView),
        (status = 409, description = "`lease_lost`: the lease ran out and the job is someone else's now. \
            `job_cancelled`: the registration was cancelled.",
         body = Problem, content_type = "application/problem+json"),
        EventErrors,
    ),
    security(("bearer" = []))
)]
#[post("/events/{event}/print-jobs/{job_id}/done")]
async fn complete_job(
    state: State,
    caller: Caller,
    path: web::Path<(String, Uuid)>,
) -> ApiResult<web::Json<JobView>> {
    let (event_ref, job_id) = path.into_inner();
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &event_ref, EventAction::PrintBadges).await?;
    let holder = claimer(&caller);
    let event_id = ctx.event.id;
    let job = conn
        .transaction::<_, ApiError, _>(async |conn| {
            let job: Job = print_jobs::table
                .filter(print_jobs::event_id.eq(event_id))
                .find(job_id)
                .select(Job::as_select())
                .for_update()
                .first(conn)
                .await
                .optional()?
                .ok_or_else(|| ApiError::not_found("print job"))?;
            match job.status {
                JobStatus::Done if job.claimed_by == holder => return Ok(job),
                JobStatus::Cancelled => {
                    return Err(ApiError::conflict(
                        "job_cancelled",
                        "the registration was cancelled",
                    ));
                }
                JobStatus::Claimed if job.claimed_by == holder => {}
                _ => {
                    return Err(ApiError::conflict(
                        "lease_lost",
                        "this job is not held by this printer (its lease ran out); claim again",
                    ));
                }
            }
            let done: Job = diesel::update(print_jobs::table.find(job_id))
                .set((
                    print_jobs::status.eq(JobStatus::Done),
                    print_jobs::lease_expires_at.eq(None::<DateTime<Utc>>),
                    print_jobs::done_at.eq(Utc::now()),
                ))
                .returning(Job::as_returning())
                .get_results(conn)
                .await
                .and_then(crate::db::single)?;
            diesel::update(registrations::table.find(job.registration_id))
                .set(registrations::badge_printed_at.eq(Utc::now()))
                .execute(conn)
                .await?;
            Ok(done)
        })
        .await?;
    Ok(web::Json(job.into()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReprintRequest {
    pub registration_id: Uuid,
}

/// Ask for a badge to be printed again (organisers). If a job for it is already waiting,
/// that one is returned.
#[utoipa::path(
    tag = "badges",
    params(("event" = String, Path, description = "Event slug or id")),
    request_body = ReprintRequest,
    responses(
        (status = 201, description = "The reprint job.", body = JobView),
        (status = 200, description = "A job for this badge was already waiting.", body = JobView),
        (status = 409, description = "`registration_cancelled`: the registration is cancelled.",
         body = Problem, content_type = "application/problem+json"),
        EventErrors, BodyErrors,
    ),
    security(("bearer" = []))
)]
#[post("/events/{event}/print-jobs")]
async fn request_reprint(
    state: State,
    caller: Caller,
    path: web::Path<String>,
    body: Body<ReprintRequest>,
) -> ApiResult<HttpResponse> {
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &path, EventAction::Edit).await?;
    let status: RegistrationLookup = registrations::table
        .filter(registrations::event_id.eq(ctx.event.id))
        .find(body.registration_id)
        .select(registrations::status)
        .first(&mut conn)
        .await
        .optional()?;
    match status {
        None => {
            return Err(ApiError::invalid(
                "registration_id",
                "is not a registration of this event",
            ));
        }
        Some(crate::registrations::RegistrationStatus::Cancelled) => {
            return Err(ApiError::conflict(
                "registration_cancelled",
                "the registration is cancelled",
            ));
        }
        Some(_) => {}
    }
    let (created, job) = queue(
        &mut conn,
        ctx.event.id,
        body.registration_id,
        JobReason::Reprint,
    )
    .await?;
    let view = JobView::from(job);
    Ok(if created {
        HttpResponse::Created().json(view)
    } else {
        HttpResponse::Ok().json(view)
    })
}

type RegistrationLookup = Option<crate::registrations::RegistrationStatus>;

/// Queues a job for a badge unless one is open already; returns whether it was created.
pub async fn queue(
    conn: &mut AsyncPgConnection,
    event_id: Uuid,
    registration_id: Uuid,
    reason: JobReason,
) -> ApiResult<(bool, Job)> {
    let created: Option<Job> = diesel::sql_query(
        "INSERT INTO print_jobs (id, event_id, registration_id, reason) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (registration_id) WHERE status IN ('queued', 'claimed') DO NOTHING \
         RETURNING *",
    )
    .bind::<SqlUuid, _>(Uuid::now_v7())
    .bind::<SqlUuid, _>(event_id)
    .bind::<SqlUuid, _>(registration_id)
    .bind::<Text, _>(reason.as_str())
    .get_results(conn)
    .await
    .and_then(crate::db::single)
    .optional()?;
    if let Some(job) = created {
        return Ok((true, job));
    }
    let open: Job = print_jobs::table
        .filter(print_jobs::registration_id.eq(registration_id))
        .filter(print_jobs::status.eq_any([JobStatus::Queued, JobStatus::Claimed]))
        .select(Job::as_select())
        .first(conn)
        .await?;
    Ok((false, open))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct JobListParams {
    pub status: Option<JobStatus>,
    /// Items per page, 1 to 200; 50 when absent.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// The event's print jobs, oldest first.
#[utoipa::path(
    tag = "badges",
    params(("event" = String, Path, description = "Event slug or id"), JobListParams),
    responses((status = 200, description = "One page of jobs.", body = Page<JobView>), EventErrors),
    security(("bearer" = []))
)]
#[get("/events/{event}/print-jobs")]
async fn list_jobs(
    state: State,
    caller: Caller,
    path: web::Path<String>,
    params: Query<JobListParams>,
) -> ApiResult<web::Json<Page<JobView>>> {
    let limit = check_limit(params.limit)?;
    let after: Option<(Timestamp, Uuid)> =
        params.cursor.as_deref().map(decode_cursor).transpose()?;
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &path, EventAction::PrintBadges).await?;
    let mut query = print_jobs::table
        .filter(print_jobs::event_id.eq(ctx.event.id))
        .select(Job::as_select())
        .order((print_jobs::created_at, print_jobs::id))
        .limit(limit + 1)
        .into_boxed();
    if let Some(status) = params.status {
        query = query.filter(print_jobs::status.eq(status));
    }
    if let Some((created_at, id)) = after {
        let created_at = created_at.utc();
        query = query.filter(
            print_jobs::created_at
                .gt(created_at)
                .or(print_jobs::created_at
                    .eq(created_at)
                    .and(print_jobs::id.gt(id))),
        );
    }
    let rows = query.load(&mut conn).await?;
    Ok(web::Json(
        Page::from_rows(rows, limit, |j| (Timestamp::from(j.created_at), j.id)).map(JobView::from),
    ))
}
