use actix_web::{HttpResponse, get, patch, post, web};
use chrono::Utc;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use secrecy::SecretString;
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Role, User, UserView};
use crate::access;
use crate::auth::{Caller, password};
use crate::db;
use crate::db::schema::{auth_sessions, users};
use crate::email;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, Query};
use crate::openapi::{AdminOnly, BodyErrors, SignedIn};
use crate::pagination::{Page, PageParams};
use crate::patch;
use crate::state::State;
use crate::validation::Validator;

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(create_user)
        .service(list_users)
        .service(get_user)
        .service(update_user)
        .service(change_own_password);
}

const MIN_PASSWORD: usize = 10;
const MAX_PASSWORD: usize = 1024;

/// A new organiser account.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Login email; unique, compared as `email::normalise` does (case, Unicode forms and
    /// IDNA domains do not make another address).
    #[schema(example = "organiser@example.org", max_length = 254)]
    pub email: String,
    #[schema(example = "Анна Иванова", max_length = 200)]
    pub display_name: String,
    /// At least 10 characters.
    #[schema(value_type = String, format = Password, min_length = 10, max_length = 1024)]
    pub password: SecretString,
    /// `organiser` when absent.
    #[serde(default)]
    pub role: Option<Role>,
}

/// Changes to an account (merge patch: absent fields stay as they are).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    #[serde(default, deserialize_with = "patch::non_null")]
    #[schema(nullable = false)]
    #[schema(max_length = 200)]
    pub display_name: Option<String>,
    #[serde(default, deserialize_with = "patch::non_null")]
    #[schema(nullable = false)]
    pub role: Option<Role>,
    /// Disabling an account ends all its sessions at once.
    #[serde(default, deserialize_with = "patch::non_null")]
    #[schema(nullable = false)]
    pub disabled: Option<bool>,
    /// A new password, at least 10 characters. Every login of the account ends (except the
    /// caller's own, when admins set their own password).
    #[serde(default, deserialize_with = "patch::non_null")]
    #[schema(nullable = false)]
    #[schema(value_type = Option<String>, format = Password, min_length = 10, max_length = 1024)]
    pub password: Option<SecretString>,
}

/// A signed-in user's new password.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    /// The password the account has now.
    #[schema(value_type = String, format = Password, max_length = 1024)]
    pub current_password: SecretString,
    /// At least 10 characters.
    #[schema(value_type = String, format = Password, min_length = 10, max_length = 1024)]
    pub new_password: SecretString,
}

fn check_password(v: &mut Validator, field: &str, password: &SecretString) {
    use secrecy::ExposeSecret;
    let length = password.expose_secret().chars().count();
    v.check(
        (MIN_PASSWORD..=MAX_PASSWORD).contains(&length),
        field,
        "must be between 10 and 1024 characters",
    );
}

fn email_taken() -> ApiError {
    ApiError::conflict("email_taken", "an account with this email already exists")
        .with("field", "email")
}

/// Inserts an account; shared by the API and `registrar create-admin`.
async fn insert_user(
    conn: &mut AsyncPgConnection,
    email: &str,
    display_name: &str,
    role: Role,
    password_hash: String,
) -> ApiResult<User> {
    diesel::insert_into(users::table)
        .values((
            users::id.eq(Uuid::now_v7()),
            users::email.eq(email.trim()),
            users::email_normalized.eq(email::normalise(email)),
            users::display_name.eq(display_name),
            users::role.eq(role),
            users::password_hash.eq(password_hash),
        ))
        .returning(User::as_returning())
        .get_results(conn)
        .await
        .and_then(crate::db::single)
        .map_err(|error| match db::violated_constraint(&error) {
            Some("users_email_key") => email_taken(),
            _ => error.into(),
        })
}

/// Create an organiser or admin account.
#[utoipa::path(
    tag = "users",
    request_body = NewUser,
    responses(
        (status = 201, description = "The account was created.", body = UserView,
         headers(("Location" = String, description = "URL of the new account"))),
        (status = 409, description = "`email_taken`: an account with this email exists.",
         body = crate::error::Problem, content_type = "application/problem+json"),
        AdminOnly, BodyErrors,
    ),
    security(("bearer" = []))
)]
#[post("/users")]
async fn create_user(state: State, caller: Caller, body: Body<NewUser>) -> ApiResult<HttpResponse> {
    access::require_admin(&caller)?;
    let body = body.into_inner();
    let mut v = Validator::new();
    v.email("email", &body.email);
    v.line("display_name", &body.display_name, 200);
    check_password(&mut v, "password", &body.password);
    v.finish()?;

    let hash = password::hash(body.password).await?;
    let mut conn = state.conn().await?;
    let user = insert_user(
        &mut conn,
        &body.email,
        &body.display_name,
        body.role.unwrap_or(Role::Organiser),
        hash,
    )
    .await?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/v1/users/{}", user.id)))
        .json(UserView::from(user)))
}

/// List accounts, oldest first.
#[utoipa::path(
    tag = "users",
    params(PageParams),
    responses(
        (status = 200, description = "One page of accounts.", body = Page<UserView>),
        AdminOnly,
    ),
    security(("bearer" = []))
)]
#[get("/users")]
async fn list_users(
    state: State,
    caller: Caller,
    page: Query<PageParams>,
) -> ApiResult<web::Json<Page<UserView>>> {
    access::require_admin(&caller)?;
    let limit = page.limit()?;
    let after: Option<Uuid> = page.after()?;
    let mut conn = state.conn().await?;
    let mut query = users::table
        .select(User::as_select())
        .order(users::id)
        .limit(limit + 1)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(users::id.gt(after));
    }
    let rows = query.load(&mut conn).await?;
    Ok(web::Json(
        Page::from_rows(rows, limit, |u| u.id).map(UserView::from),
    ))
}

/// One account.
#[utoipa::path(
    tag = "users",
    params(("id" = Uuid, Path, description = "Account id")),
    responses(
        (status = 200, description = "The account.", body = UserView),
        (status = 404, description = "`not_found`: no such account.",
         body = crate::error::Problem, content_type = "application/problem+json"),
        AdminOnly,
    ),
    security(("bearer" = []))
)]
#[get("/users/{id}")]
async fn get_user(
    state: State,
    caller: Caller,
    id: web::Path<Uuid>,
) -> ApiResult<web::Json<UserView>> {
    access::require_admin(&caller)?;
    let mut conn = state.conn().await?;
    let user = users::table
        .find(id.into_inner())
        .select(User::as_select())
        .first(&mut conn)
        .await
        .optional()?
        .ok_or_else(|| ApiError::not_found("account"))?;
    Ok(web::Json(user.into()))
}

/// Change an account's name, role, password, or disable it.
#[utoipa::path(
    tag = "users",
    params(("id" = Uuid, Path, description = "Account id")),
    request_body(content = UserPatch, content_type = "application/json"),
    responses(
        (status = 200, description = "The changed account.", body = UserView),
        (status = 404, description = "`not_found`: no such account.",
         body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`cannot_change_own_access`: admins cannot disable or demote themselves.",
         body = crate::error::Problem, content_type = "application/problem+json"),
        AdminOnly, BodyErrors,
    ),
    security(("bearer" = []))
)]
#[patch("/users/{id}")]
async fn update_user(
    state: State,
    caller: Caller,
    id: web::Path<Uuid>,
    body: Body<UserPatch>,
) -> ApiResult<web::Json<UserView>> {
    let admin = access::require_admin(&caller)?;
    let id = id.into_inner();
    let body = body.into_inner();
    let mut v = Validator::new();
    if let Some(name) = &body.display_name {
        v.line("display_name", name, 200);
    }
    if let Some(password) = &body.password {
        check_password(&mut v, "password", password);
    }
    v.finish()?;
    if id == admin.id && (body.disabled == Some(true) || body.role == Some(Role::Organiser)) {
        return Err(ApiError::conflict(
            "cannot_change_own_access",
            "admins cannot disable or demote their own account",
        ));
    }
    let new_hash = match body.password {
        Some(password) => Some(password::hash(password).await?),
        None => None,
    };
    let password_changed = new_hash.is_some();

    let mut conn = state.conn().await?;
    let user = conn
        .transaction::<_, ApiError, _>(async |conn| {
            let user = diesel::update(users::table.find(id))
                .set((
                    body.display_name.map(|name| users::display_name.eq(name)),
                    body.role.map(|role| users::role.eq(role)),
                    body.disabled.map(|disabled| users::disabled.eq(disabled)),
                    new_hash.map(|hash| users::password_hash.eq(hash)),
                    users::updated_at.eq(Utc::now()),
                ))
                .returning(User::as_returning())
                .get_results(conn)
                .await
                .and_then(crate::db::single)
                .optional()?
                .ok_or_else(|| ApiError::not_found("account"))?;
            if user.disabled {
                end_sessions(conn, user.id, None).await?;
            } else if password_changed {
                // Whoever knew the old password is signed out; an admin setting their own
                // password stays signed in here, as with `/me/password`.
                let keep = (user.id == admin.id).then_some(admin.auth_session_id);
                end_sessions(conn, user.id, keep).await?;
            }
            Ok(user)
        })
        .await?;
    Ok(web::Json(user.into()))
}

/// Ends every login of the account but `keep`.
async fn end_sessions(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    keep: Option<Uuid>,
) -> ApiResult<()> {
    let mut ended = diesel::update(auth_sessions::table)
        .filter(auth_sessions::user_id.eq(user_id))
        .filter(auth_sessions::revoked_at.is_null())
        .into_boxed();
    if let Some(keep) = keep {
        ended = ended.filter(auth_sessions::id.ne(keep));
    }
    ended
        .set(auth_sessions::revoked_at.eq(Utc::now()))
        .execute(conn)
        .await?;
    Ok(())
}

/// Change the signed-in account's password.
///
/// Every other login of the account ends, its refresh and access tokens included; the login
/// that made the change continues. A wrong current password is a 422 naming
/// `current_password`, and counts like a failed login against the account's limit.
#[utoipa::path(
    tag = "auth",
    request_body = PasswordChange,
    responses(
        (status = 204, description = "The password is changed; other logins have ended."),
        (status = 409, description = "`password_changed`: the password was changed by another request meanwhile.",
         body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`: too many failed logins or password checks for this account; see `Retry-After`.",
         body = crate::error::Problem, content_type = "application/problem+json"),
        SignedIn, BodyErrors,
    ),
    security(("bearer" = []))
)]
#[post("/me/password")]
async fn change_own_password(
    state: State,
    caller: Caller,
    body: Body<PasswordChange>,
) -> ApiResult<HttpResponse> {
    let me = access::require_user(&caller)?.clone();
    let body = body.into_inner();
    let mut v = Validator::new();
    check_password(&mut v, "new_password", &body.new_password);
    v.finish()?;
    let (email, current_hash): (String, String) = {
        let mut conn = state.conn().await?;
        users::table
            .find(me.id)
            .select((users::email, users::password_hash))
            .first(&mut conn)
            .await?
    };
    let attempt = state
        .rate_limits
        .login_attempt(&state.db, &crate::email::normalise(&email))
        .await?;
    if !password::verify(body.current_password, Some(current_hash.clone())).await? {
        return Err(ApiError::invalid(
            "current_password",
            "is not the account's password",
        ));
    }
    attempt.succeeded(&state.db).await?;
    let new_hash = password::hash(body.new_password).await?;
    let mut conn = state.conn().await?;
    conn.transaction::<_, ApiError, _>(async |conn| {
        // Only over the password that was checked: a change made meanwhile wins.
        let changed = diesel::update(users::table.find(me.id))
            .filter(users::password_hash.eq(&current_hash))
            .set((
                users::password_hash.eq(&new_hash),
                users::updated_at.eq(Utc::now()),
            ))
            .execute(conn)
            .await?;
        if changed == 0 {
            return Err(ApiError::conflict(
                "password_changed",
                "the password was changed meanwhile; sign in again",
            ));
        }
        end_sessions(conn, me.id, Some(me.auth_session_id)).await
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Creates the first admin (for `registrar create-admin`).
pub async fn create_admin(
    conn: &mut AsyncPgConnection,
    email: &str,
    display_name: &str,
    password: SecretString,
) -> anyhow::Result<User> {
    let mut v = Validator::new();
    v.email("email", email);
    v.line("display_name", display_name, 200);
    check_password(&mut v, "password", &password);
    v.finish().map_err(|error| anyhow::anyhow!("{error}"))?;
    let taken: bool = diesel::select(diesel::dsl::exists(
        users::table.filter(users::email_normalized.eq(email::normalise(email))),
    ))
    .get_results(conn)
    .await
    .and_then(crate::db::single)?;
    anyhow::ensure!(!taken, "an account with email {email} already exists");
    let hash = password::hash(password)
        .await
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    insert_user(conn, email, display_name, Role::Admin, hash)
        .await
        .map_err(|error| anyhow::anyhow!("{error}"))
}
