//! Confirming a participant's address: an event may require it of participants who register
//! themselves. Their registration is made with a deadline (`confirm_by`) and holds its places
//! meanwhile; the mail to the address carries the manage link, and the frontend it leads to
//! confirms with the token (`POST /registrations/{id}/confirm-email`). A round cancels the
//! registrations whose deadline passed, through the ordinary cancellation (their places go
//! to the waitlists; the change is the service's).

use actix_web::{post, web};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::json;
use uuid::Uuid;

use crate::access::{self, RegistrationAction, RegistrationContext};
use crate::auth::Caller;
use crate::changes::{self, ChangeKind, NewChange};
use crate::db::schema::{events, registrations};
use crate::error::{ApiError, ApiResult, Problem};
use crate::events::Event;
use crate::openapi::RegistrationErrors;
use crate::registrations::{Registration, RegistrationStatus, RegistrationView, view_of};
use crate::state::{AppState, State};

/// Registrations cancelled per transaction... per round.
const EXPIRED_PER_ROUND: i64 = 50;

/// Confirm the registration's email address: what the link mailed to the address leads to,
/// with the registration's manage token (organisers who may change the registration may
/// confirm too). Confirming a confirmed address changes nothing.
#[utoipa::path(
    tag = "registrations",
    params(("id" = Uuid, Path, description = "Registration id")),
    responses(
        (status = 200, description = "The registration, its address confirmed (`confirm_by` null).", body = RegistrationView),
        (status = 409, description = "`confirmation_expired`: the deadline passed; the registration is being cancelled. \
            `registration_cancelled`: it was cancelled.",
         body = Problem, content_type = "application/problem+json"),
        RegistrationErrors,
    ),
    security(("bearer" = []))
)]
#[post("/registrations/{id}/confirm-email")]
pub async fn confirm_email(
    state: State,
    caller: Caller,
    id: web::Path<Uuid>,
) -> ApiResult<web::Json<RegistrationView>> {
    let mut conn = state.conn().await?;
    let ctx = access::registration(&mut conn, &caller, *id, RegistrationAction::Change).await?;
    confirm(&mut conn, &ctx).await?;
    Ok(web::Json(view_of(&mut conn, ctx.registration.id).await?))
}

/// Clears the deadline while it is ahead and the registration active, and records the change
/// (which mails the registration as it is now).
async fn confirm(conn: &mut AsyncPgConnection, ctx: &RegistrationContext) -> ApiResult<()> {
    let registration = &ctx.registration;
    conn.transaction::<_, ApiError, _>(async |conn| {
        let confirmed = diesel::update(
            registrations::table
                .find(registration.id)
                .filter(registrations::status.eq(RegistrationStatus::Active))
                .filter(registrations::confirm_by.gt(diesel::dsl::now)),
        )
        .set((
            registrations::confirm_by.eq(None::<chrono::DateTime<chrono::Utc>>),
            registrations::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
        if confirmed == 1 {
            return changes::record(
                conn,
                vec![
                    NewChange::registration(
                        registration.event_id,
                        registration.id,
                        None,
                        ChangeKind::RegistrationChanged,
                        ctx.actor,
                    )
                    .with_details(json!({"fields": ["email_confirmed"]})),
                ],
            )
            .await;
        }
        let now: Registration = registrations::table
            .find(registration.id)
            .select(Registration::as_select())
            .first(conn)
            .await?;
        match (now.status, now.confirm_by) {
            (RegistrationStatus::Cancelled, _) => Err(ApiError::conflict(
                "registration_cancelled",
                "the registration has been cancelled",
            )),
            (RegistrationStatus::Active, None) => Ok(()),
            (RegistrationStatus::Active, Some(_)) => Err(ApiError::conflict(
                "confirmation_expired",
                "the address was not confirmed in time; the registration is being cancelled",
            )),
        }
    })
    .await
}

/// Cancels registrations whose address was not confirmed by their deadline; true when there
/// may be more.
pub async fn cancel_expired(state: &AppState) -> anyhow::Result<bool> {
    let mut conn = state.db.get().await?;
    let expired: Vec<(Registration, Event)> = registrations::table
        .inner_join(events::table)
        .filter(registrations::status.eq(RegistrationStatus::Active))
        .filter(registrations::confirm_by.le(diesel::dsl::now))
        .order(registrations::confirm_by)
        .limit(EXPIRED_PER_ROUND)
        .select((Registration::as_select(), Event::as_select()))
        .load(&mut conn)
        .await?;
    let mut cancelled = 0;
    for (registration, event) in &expired {
        match crate::registrations::cancel_unconfirmed(&mut conn, event, registration).await {
            Ok(true) => cancelled += 1,
            Ok(false) => {}
            // Changed meanwhile (a seat moved): the next round sees it as it is then.
            Err(error) if error.code() == "concurrent_change" => {}
            Err(error) => return Err(super::background(error)),
        }
    }
    if cancelled > 0 {
        tracing::info!(
            cancelled,
            "registrations whose address was not confirmed in time were cancelled"
        );
        // Their changes are committed: wake the change log's consumers.
        state.signals.committed();
    }
    Ok(expired.len() as i64 == EXPIRED_PER_ROUND)
}
