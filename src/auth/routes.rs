use actix_web::{HttpResponse, get, post, web};
use chrono::{Duration, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Caller, password, tokens};
use crate::access;
use crate::db::schema::{auth_sessions, refresh_tokens, users};
use crate::email;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{Body, OptionalBody};
use crate::openapi::{BodyErrors, SignedIn};
use crate::state::{AppState, State};
use crate::users::{User, UserView};

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(login)
        .service(refresh)
        .service(logout)
        .service(me);
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[schema(example = "organiser@example.org", max_length = 254)]
    pub email: String,
    #[schema(value_type = String, format = Password, max_length = 1024)]
    pub password: SecretString,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The refresh token of the last token response; it can be used once.
    #[schema(max_length = 100)]
    pub refresh_token: String,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogoutRequest {
    /// Ends the login this refresh token belongs to. Without it, the login of the access
    /// token in the `Authorization` header ends.
    #[serde(default)]
    #[schema(max_length = 100)]
    pub refresh_token: Option<String>,
}

/// Tokens for an organiser session.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    /// Send as `Authorization: Bearer <access_token>`.
    pub access_token: String,
    /// Always `Bearer`.
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Opaque, single-use: exchange it at `/auth/refresh` for new tokens.
    pub refresh_token: String,
}

const MAX_TOKEN_LEN: usize = 100;

fn invalid_credentials() -> ApiError {
    ApiError::unauthorized("the email or password is wrong").with_code("invalid_credentials")
}

fn invalid_refresh_token() -> ApiError {
    ApiError::unauthorized("the refresh token is invalid, expired or revoked")
        .with_code("invalid_refresh_token")
}

/// Opens a login session and issues its first tokens, provided the account still has the
/// password hash that was just verified and is not disabled. The account row is share-locked
/// while the session is added, so a concurrent password change or disabling either waits
/// for this login and then ends it, or happens first and this login fails.
async fn start_session(
    state: &AppState,
    user_id: Uuid,
    verified_hash: &str,
) -> ApiResult<Option<TokenResponse>> {
    let session_id = Uuid::now_v7();
    let mut conn = state.conn().await?;
    let refresh_token = conn
        .transaction::<_, ApiError, _>(async |conn| {
            let opened = diesel::sql_query(
                "INSERT INTO auth_sessions (id, user_id) \
                 SELECT $1, id FROM users \
                 WHERE id = $2 AND password_hash = $3 AND NOT disabled FOR SHARE",
            )
            .bind::<diesel::sql_types::Uuid, _>(session_id)
            .bind::<diesel::sql_types::Uuid, _>(user_id)
            .bind::<diesel::sql_types::Text, _>(verified_hash)
            .execute(conn)
            .await?;
            if opened == 0 {
                return Ok(None);
            }
            new_refresh_token(state, conn, session_id).await.map(Some)
        })
        .await?;
    refresh_token
        .map(|token| token_response(state, user_id, session_id, token))
        .transpose()
}

async fn new_refresh_token(
    state: &AppState,
    conn: &mut AsyncPgConnection,
    session_id: Uuid,
) -> ApiResult<String> {
    let token = tokens::generate(tokens::REFRESH_PREFIX);
    let ttl = Duration::from_std(state.config.refresh_token_ttl()).map_err(ApiError::internal)?;
    diesel::insert_into(refresh_tokens::table)
        .values((
            refresh_tokens::token_hash.eq(tokens::digest(&token)),
            refresh_tokens::auth_session_id.eq(session_id),
            refresh_tokens::expires_at.eq(Utc::now() + ttl),
        ))
        .execute(conn)
        .await?;
    Ok(token)
}

fn token_response(
    state: &AppState,
    user_id: Uuid,
    session_id: Uuid,
    refresh_token: String,
) -> ApiResult<TokenResponse> {
    Ok(TokenResponse {
        access_token: state
            .keys
            .issue(user_id, session_id)
            .map_err(ApiError::internal)?,
        token_type: "Bearer",
        expires_in: state.keys.access_ttl().as_secs(),
        refresh_token,
    })
}

/// Log in with email and password.
///
/// A wrong password, an unknown email and a disabled account get the same answer, in the
/// same time. Failed logins are limited per client address and per account.
#[utoipa::path(
    tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in.", body = TokenResponse),
        (status = 401, description = "`invalid_credentials`: wrong email or password, or a disabled account.",
         body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`: too many attempts from this address, or too many \
            failed logins for this account; see `Retry-After`.",
         body = Problem, content_type = "application/problem+json"),
        BodyErrors,
    )
)]
#[post("/auth/login")]
async fn login(
    state: State,
    req: actix_web::HttpRequest,
    body: Body<LoginRequest>,
) -> ApiResult<web::Json<TokenResponse>> {
    let body = body.into_inner();
    state.rate_limits.check_login(&state.db, &req).await?;
    if body.email.contains('\0') {
        // No account can have it; answer as for any unknown address, in the same time.
        password::verify(body.password, None).await?;
        return Err(invalid_credentials());
    }
    let email = email::normalise(&body.email);
    let attempt = state.rate_limits.login_attempt(&state.db, &email).await?;
    // One account per address, except for accounts whose addresses became the same when the
    // comparison rule changed (`email_shared`): each of those keeps its own password.
    let candidates: Vec<(Uuid, String, bool)> = {
        let mut conn = state.conn().await?;
        users::table
            .filter(users::email_normalized.eq(&email))
            .order((users::email_shared, users::created_at))
            .select((users::id, users::password_hash, users::disabled))
            .limit(10)
            .load(&mut conn)
            .await?
    };
    let mut found = None;
    if candidates.is_empty() {
        password::verify(body.password.clone(), None).await?;
    }
    for (id, hash, disabled) in candidates {
        if password::verify(body.password.clone(), Some(hash.clone())).await? {
            found = Some((id, hash, disabled));
            break;
        }
    }
    // A disabled account is answered like a wrong password: the answer tells nothing about
    // the account to someone who does not already control it.
    let Some((user_id, hash, false)) = found else {
        return Err(invalid_credentials());
    };
    // None: the password changed or the account was disabled while this login was checked.
    let tokens = start_session(&state, user_id, &hash)
        .await?
        .ok_or_else(invalid_credentials)?;
    attempt.succeeded(&state.db).await?;
    Ok(web::Json(tokens))
}

/// Login session, user, when the token was rotated, whether it expired, whether the login ended.
type TokenState = (Uuid, Uuid, Option<chrono::DateTime<Utc>>, bool, bool);

enum Rotation {
    Rotated(Uuid, Uuid, String),
    Reused,
    Invalid,
}

/// Exchange a refresh token for new tokens.
///
/// Each refresh token works once. Presenting one that was already exchanged ends the whole
/// login (every token issued from it), since it means the token was copied.
#[utoipa::path(
    tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "New tokens; the old refresh token no longer works.", body = TokenResponse),
        (status = 401, description = "`invalid_refresh_token`: unknown, expired or revoked. \
            `refresh_token_reused`: the token was already exchanged; the login has ended.",
         body = Problem, content_type = "application/problem+json"),
        BodyErrors,
    )
)]
#[post("/auth/refresh")]
async fn refresh(state: State, body: Body<RefreshRequest>) -> ApiResult<web::Json<TokenResponse>> {
    let token = body.into_inner().refresh_token;
    if token.len() > MAX_TOKEN_LEN || !tokens::has_shape(&token, tokens::REFRESH_PREFIX) {
        return Err(invalid_refresh_token());
    }
    let digest = tokens::digest(&token);
    let mut conn = state.conn().await?;
    let outcome = conn
        .transaction::<_, ApiError, _>(async |conn| {
            let found: Option<TokenState> = refresh_tokens::table
                .inner_join(auth_sessions::table.inner_join(users::table))
                .filter(refresh_tokens::token_hash.eq(&digest))
                .select((
                    auth_sessions::id,
                    users::id,
                    refresh_tokens::rotated_at,
                    refresh_tokens::expires_at.lt(Utc::now()),
                    auth_sessions::revoked_at.is_not_null().or(users::disabled),
                ))
                .for_update()
                .first(conn)
                .await
                .optional()?;
            let Some((session_id, user_id, rotated_at, expired, ended)) = found else {
                return Ok(Rotation::Invalid);
            };
            if ended || expired {
                return Ok(Rotation::Invalid);
            }
            if rotated_at.is_some() {
                diesel::update(auth_sessions::table.find(session_id))
                    .set(auth_sessions::revoked_at.eq(Utc::now()))
                    .execute(conn)
                    .await?;
                return Ok(Rotation::Reused);
            }
            diesel::update(refresh_tokens::table.find(&digest))
                .set(refresh_tokens::rotated_at.eq(Utc::now()))
                .execute(conn)
                .await?;
            let next = new_refresh_token(&state, conn, session_id).await?;
            Ok(Rotation::Rotated(user_id, session_id, next))
        })
        .await?;
    match outcome {
        Rotation::Rotated(user_id, session_id, next) => Ok(web::Json(token_response(
            &state, user_id, session_id, next,
        )?)),
        Rotation::Reused => {
            tracing::warn!("a rotated refresh token was presented again; its login was ended");
            Err(ApiError::unauthorized(
                "this refresh token was already used; the login has been ended",
            )
            .with_code("refresh_token_reused"))
        }
        Rotation::Invalid => Err(invalid_refresh_token()),
    }
}

/// Log out: end a login, so its refresh and access tokens stop working.
#[utoipa::path(
    tag = "auth",
    request_body(content = Option<LogoutRequest>, description = "Optional when an access token is sent."),
    responses(
        (status = 204, description = "The login has ended."),
        (status = 401, description = "`authentication_required`: neither an access token nor a refresh token was given. \
            `invalid_token`: the access token is not valid.",
         body = Problem, content_type = "application/problem+json"),
        BodyErrors,
    ),
    security((), ("bearer" = []))
)]
#[post("/auth/logout")]
async fn logout(
    state: State,
    caller: Caller,
    body: OptionalBody<LogoutRequest>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner().unwrap_or_default();
    let from_header = caller.user().map(|user| user.auth_session_id);
    if from_header.is_none() && body.refresh_token.is_none() {
        return Err(ApiError::unauthorized(
            "send the access token or the refresh token of the login to end",
        ));
    }
    let digest = body
        .refresh_token
        .as_deref()
        .filter(|token| token.len() <= MAX_TOKEN_LEN)
        .map(tokens::digest);
    let mut conn = state.conn().await?;
    let by_token = refresh_tokens::table
        .filter(refresh_tokens::token_hash.nullable().eq(digest))
        .select(refresh_tokens::auth_session_id);
    diesel::update(auth_sessions::table)
        .filter(
            auth_sessions::id
                .nullable()
                .eq(from_header)
                .or(auth_sessions::id.eq_any(by_token)),
        )
        .filter(auth_sessions::revoked_at.is_null())
        .set(auth_sessions::revoked_at.eq(Utc::now()))
        .execute(&mut conn)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The signed-in account.
#[utoipa::path(
    tag = "auth",
    responses(
        (status = 200, description = "The account of the access token.", body = UserView),
        SignedIn,
    ),
    security(("bearer" = []))
)]
#[get("/me")]
async fn me(state: State, caller: Caller) -> ApiResult<web::Json<UserView>> {
    let user = access::require_user(&caller)?;
    let mut conn = state.conn().await?;
    let user = users::table
        .find(user.id)
        .select(User::as_select())
        .first(&mut conn)
        .await?;
    Ok(web::Json(user.into()))
}
