//! Who is calling: resolved once per request from the `Authorization` header.
//!
//! A missing header is an anonymous caller; a header that is present but not valid (malformed,
//! expired, wrongly signed, revoked, disabled account) is always 401, even on public routes.

use actix_web::http::header::AUTHORIZATION;
use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use futures_util::future::LocalBoxFuture;
use uuid::Uuid;

use super::tokens;
use crate::db::schema::{auth_sessions, registrations, users};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::users::Role;

#[derive(Debug, Clone)]
pub enum Caller {
    Anonymous,
    User(UserCaller),
    /// A participant, by the manage token of their registration.
    Participant(ParticipantCaller),
    /// A badge printer or check-in desk, by an event's API key.
    Device(DeviceCaller),
}

#[derive(Debug, Clone)]
pub struct DeviceCaller {
    pub key_id: Uuid,
    pub event_id: Uuid,
    pub scopes: Vec<Scope>,
}

crate::text_enum! {
    /// What a device key may do, within its own event.
    pub enum Scope {
        /// Read the attendee feed, lists and export.
        AttendeesRead => "attendees:read",
        /// Claim and complete badge print jobs.
        BadgesPrint => "badges:print",
        /// Check attendees in.
        CheckinWrite => "checkin:write",
    }
}

#[derive(Debug, Clone)]
pub struct ParticipantCaller {
    pub registration_id: Uuid,
    pub event_id: Uuid,
}

/// An organiser or admin, authenticated by an access token.
#[derive(Debug, Clone)]
pub struct UserCaller {
    pub id: Uuid,
    pub role: Role,
    pub auth_session_id: Uuid,
}

impl UserCaller {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

impl Caller {
    pub fn user(&self) -> Option<&UserCaller> {
        match self {
            Caller::User(user) => Some(user),
            _ => None,
        }
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let header = req.headers().get(AUTHORIZATION).cloned();
        Box::pin(async move {
            let Some(header) = header else {
                return Ok(Caller::Anonymous);
            };
            let state = state.ok_or_else(|| ApiError::internal(anyhow::anyhow!("no app state")))?;
            let token = header
                .to_str()
                .ok()
                .and_then(|value| value.strip_prefix("Bearer "))
                .map(str::trim)
                .filter(|token| !token.is_empty())
                .ok_or_else(|| {
                    invalid_token("the Authorization header must be `Bearer <token>`")
                })?;
            resolve(&state, token).await
        })
    }
}

async fn resolve(state: &AppState, token: &str) -> ApiResult<Caller> {
    if token.starts_with(tokens::MANAGE_PREFIX) {
        return participant(state, token).await;
    }
    if token.starts_with(tokens::DEVICE_KEY_PREFIX) {
        return device(state, token).await;
    }
    let claims = state
        .keys
        .verify(token)
        .ok_or_else(|| invalid_token("the access token is invalid or has expired"))?;
    let mut conn = state.conn().await?;
    let found: Option<(Role, bool, Option<chrono::DateTime<chrono::Utc>>)> = users::table
        .inner_join(auth_sessions::table)
        .filter(users::id.eq(claims.sub))
        .filter(auth_sessions::id.eq(claims.sid))
        .select((users::role, users::disabled, auth_sessions::revoked_at))
        .first(&mut conn)
        .await
        .optional()?;
    match found {
        Some((role, false, None)) => Ok(Caller::User(UserCaller {
            id: claims.sub,
            role,
            auth_session_id: claims.sid,
        })),
        Some((_, true, _)) => Err(invalid_token("the account is disabled")),
        _ => Err(invalid_token("the session has ended; log in again")),
    }
}

async fn participant(state: &AppState, token: &str) -> ApiResult<Caller> {
    if !tokens::has_shape(token, tokens::MANAGE_PREFIX) {
        return Err(invalid_token("the manage token is not valid"));
    }
    let mut conn = state.conn().await?;
    let found: Option<(Uuid, Uuid)> = registrations::table
        .filter(registrations::manage_token_hash.eq(tokens::digest(token)))
        .select((registrations::id, registrations::event_id))
        .first(&mut conn)
        .await
        .optional()?;
    let (registration_id, event_id) =
        found.ok_or_else(|| invalid_token("the manage token is not valid"))?;
    Ok(Caller::Participant(ParticipantCaller {
        registration_id,
        event_id,
    }))
}

#[derive(diesel::QueryableByName)]
struct FoundKey {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    event_id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Array<diesel::sql_types::Text>)]
    scopes: Vec<String>,
}

/// Looks a device key up, noting when it was last used (at most once a minute, so that
/// busy devices do not write on every request).
async fn device(state: &AppState, token: &str) -> ApiResult<Caller> {
    if !tokens::has_shape(token, tokens::DEVICE_KEY_PREFIX) {
        return Err(invalid_token("the API key is not valid"));
    }
    let mut conn = state.conn().await?;
    let found: Option<FoundKey> = diesel::sql_query(
        "WITH key AS ( \
             SELECT id, event_id, scopes, last_used_at FROM api_keys \
             WHERE key_hash = $1 AND revoked_at IS NULL), \
         touched AS ( \
             UPDATE api_keys SET last_used_at = now() \
             WHERE id = (SELECT id FROM key) \
               AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')) \
         SELECT id, event_id, scopes FROM key",
    )
    .bind::<diesel::sql_types::Bytea, _>(tokens::digest(token))
    .get_results(&mut conn)
    .await
    .and_then(crate::db::single)
    .optional()?;
    let key = found.ok_or_else(|| invalid_token("the API key is not valid or was revoked"))?;
    Ok(Caller::Device(DeviceCaller {
        key_id: key.id,
        event_id: key.event_id,
        scopes: key.scopes.iter().filter_map(|s| s.parse().ok()).collect(),
    }))
}

pub fn invalid_token(detail: &str) -> ApiError {
    ApiError::unauthorized(detail).with_code("invalid_token")
}
