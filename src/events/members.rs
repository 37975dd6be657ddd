//! Event members: who, besides admins, may see and change an event.

use actix_web::{HttpResponse, delete, get, put, web};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::MemberRole;
use crate::access::{self, EventAction};
use crate::auth::Caller;
use crate::db::schema::{event_members, events, users};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{Body, Query};
use crate::openapi::{BodyErrors, EventErrors};
use crate::pagination::{Page, PageParams};
use crate::state::State;

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(list_members)
        .service(put_member)
        .service(remove_member);
}

/// An organiser's membership in an event.
#[derive(Debug, Serialize, ToSchema, Queryable)]
pub struct MemberView {
    pub user_id: Uuid,
    pub email: String,
    pub display_name: String,
    pub role: MemberRole,
    pub added_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberRoleBody {
    pub role: MemberRole,
}

type MemberColumns = (
    event_members::user_id,
    users::email,
    users::display_name,
    event_members::role,
    event_members::created_at,
);

const MEMBER_COLUMNS: MemberColumns = (
    event_members::user_id,
    users::email,
    users::display_name,
    event_members::role,
    event_members::created_at,
);

/// The event's organisers.
#[utoipa::path(
    tag = "events",
    params(("event" = String, Path, description = "Event slug or id"), PageParams),
    responses(
        (status = 200, description = "One page of members.", body = Page<MemberView>),
        (status = 422, description = "`validation_failed`: bad `limit` or `cursor`.",
         body = Problem, content_type = "application/problem+json"),
        EventErrors,
    ),
    security(("bearer" = []))
)]
#[get("/events/{event}/members")]
async fn list_members(
    state: State,
    caller: Caller,
    path: web::Path<String>,
    page: Query<PageParams>,
) -> ApiResult<web::Json<Page<MemberView>>> {
    let limit = page.limit()?;
    let after: Option<Uuid> = page.after()?;
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &path, EventAction::ViewPrivate).await?;
    let mut query = event_members::table
        .inner_join(users::table)
        .filter(event_members::event_id.eq(ctx.event.id))
        .select(MEMBER_COLUMNS)
        .order(event_members::user_id)
        .limit(limit + 1)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(event_members::user_id.gt(after));
    }
    let rows: Vec<MemberView> = query.load(&mut conn).await?;
    Ok(web::Json(Page::from_rows(rows, limit, |m| m.user_id)))
}

fn last_owner() -> ApiError {
    ApiError::conflict(
        "last_owner",
        "an event keeps at least one owner; make someone else owner first",
    )
}

/// Add an organiser to the event, or change their role (owners and admins).
#[utoipa::path(
    tag = "events",
    params(
        ("event" = String, Path, description = "Event slug or id"),
        ("user_id" = Uuid, Path, description = "The organiser's account id"),
    ),
    request_body = MemberRoleBody,
    responses(
        (status = 200, description = "The role was changed.", body = MemberView),
        (status = 201, description = "The organiser was added.", body = MemberView),
        (status = 409, description = "`last_owner`: the event's only owner cannot be demoted.",
         body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: no active account has this id.",
         body = Problem, content_type = "application/problem+json"),
        EventErrors, BodyErrors,
    ),
    security(("bearer" = []))
)]
#[put("/events/{event}/members/{user_id}")]
async fn put_member(
    state: State,
    caller: Caller,
    path: web::Path<(String, Uuid)>,
    body: Body<MemberRoleBody>,
) -> ApiResult<HttpResponse> {
    let (event_ref, user_id) = path.into_inner();
    let role = body.into_inner().role;
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &event_ref, EventAction::Manage).await?;
    let event_id = ctx.event.id;
    let (created, member) = conn
        .transaction::<_, ApiError, _>(async |conn| {
            lock_event(conn, event_id).await?;
            let active: bool = diesel::select(diesel::dsl::exists(
                users::table.filter(users::id.eq(user_id).and(users::disabled.eq(false))),
            ))
            .get_results(conn)
            .await
            .and_then(crate::db::single)?;
            if !active {
                return Err(ApiError::invalid(
                    "user_id",
                    "no active account has this id",
                ));
            }
            let previous: Option<MemberRole> = event_members::table
                .find((event_id, user_id))
                .select(event_members::role)
                .first(conn)
                .await
                .optional()?;
            if previous == Some(MemberRole::Owner) && role != MemberRole::Owner {
                ensure_another_owner(conn, event_id, user_id).await?;
            }
            diesel::insert_into(event_members::table)
                .values((
                    event_members::event_id.eq(event_id),
                    event_members::user_id.eq(user_id),
                    event_members::role.eq(role),
                ))
                .on_conflict((event_members::event_id, event_members::user_id))
                .do_update()
                .set(event_members::role.eq(role))
                .execute(conn)
                .await?;
            let member: MemberView = event_members::table
                .inner_join(users::table)
                .filter(event_members::event_id.eq(event_id))
                .filter(event_members::user_id.eq(user_id))
                .select(MEMBER_COLUMNS)
                .first(conn)
                .await?;
            Ok((previous.is_none(), member))
        })
        .await?;
    Ok(if created {
        HttpResponse::Created().json(member)
    } else {
        HttpResponse::Ok().json(member)
    })
}

/// Remove an organiser from the event (owners and admins).
#[utoipa::path(
    tag = "events",
    params(
        ("event" = String, Path, description = "Event slug or id"),
        ("user_id" = Uuid, Path, description = "The organiser's account id"),
    ),
    responses(
        (status = 204, description = "The organiser is no longer a member."),
        (status = 409, description = "`last_owner`: the event's only owner cannot be removed.",
         body = Problem, content_type = "application/problem+json"),
        EventErrors,
    ),
    security(("bearer" = []))
)]
#[delete("/events/{event}/members/{user_id}")]
async fn remove_member(
    state: State,
    caller: Caller,
    path: web::Path<(String, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (event_ref, user_id) = path.into_inner();
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &event_ref, EventAction::Manage).await?;
    let event_id = ctx.event.id;
    conn.transaction::<_, ApiError, _>(async |conn| {
        lock_event(conn, event_id).await?;
        let role: MemberRole = event_members::table
            .find((event_id, user_id))
            .select(event_members::role)
            .first(conn)
            .await
            .optional()?
            .ok_or_else(|| ApiError::not_found("member"))?;
        if role == MemberRole::Owner {
            ensure_another_owner(conn, event_id, user_id).await?;
        }
        diesel::delete(event_members::table.find((event_id, user_id)))
            .execute(conn)
            .await?;
        Ok(())
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Serialises membership changes of one event, so two owners cannot demote each other at once.
async fn lock_event(conn: &mut diesel_async::AsyncPgConnection, event_id: Uuid) -> ApiResult<()> {
    events::table
        .find(event_id)
        .select(events::id)
        .for_no_key_update()
        .first::<Uuid>(conn)
        .await?;
    Ok(())
}

async fn ensure_another_owner(
    conn: &mut diesel_async::AsyncPgConnection,
    event_id: Uuid,
    user_id: Uuid,
) -> ApiResult<()> {
    let others: i64 = event_members::table
        .filter(event_members::event_id.eq(event_id))
        .filter(event_members::role.eq(MemberRole::Owner))
        .filter(event_members::user_id.ne(user_id))
        .count()
        .get_results(conn)
        .await
        .and_then(crate::db::single)?;
    if others == 0 {
        return Err(last_owner());
    }
    Ok(())
}
