//! `Idempotency-Key` for public registrations: the same key with the same body within 24
//! hours gets the original answer; with another body, 422; while the first request is
//! still running, 409.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Bytea, Jsonb, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::SessionOutcome;
use crate::error::{ApiError, ApiResult};

pub const MAX_KEY_LEN: usize = 255;

#[derive(Debug, Clone)]
pub struct IdempotencyRequest {
    pub key: String,
    pub request_hash: Vec<u8>,
}

impl IdempotencyRequest {
    /// The key and a digest of the request body with its object keys sorted, so that the same
    /// JSON written differently is the same request.
    pub fn new(key: &str, body: &Value) -> ApiResult<Self> {
        if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ApiError::invalid(
                "Idempotency-Key",
                "must be 1 to 255 visible ASCII characters",
            ));
        }
        let mut canonical = Vec::new();
        write_canonical(body, &mut canonical);
        Ok(IdempotencyRequest {
            key: key.to_owned(),
            request_hash: Sha256::digest(&canonical).to_vec(),
        })
    }
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend(serde_json::to_vec(key).expect("strings serialise"));
                out.push(b':');
                write_canonical(value, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        other => out.extend(serde_json::to_vec(other).expect("JSON serialises")),
    }
}

/// The answer given the first time.
#[derive(Debug)]
pub struct Stored {
    pub registration_id: Uuid,
    pub sessions: Vec<SessionOutcome>,
    pub token_nonce: Vec<u8>,
}

pub enum Check {
    Proceed,
    Replay(Stored),
}

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    got_lock: bool,
}

#[derive(QueryableByName)]
struct Found {
    #[diesel(sql_type = Bytea)]
    request_hash: Vec<u8>,
    #[diesel(sql_type = SqlUuid)]
    registration_id: Uuid,
    #[diesel(sql_type = Jsonb)]
    response: Value,
    #[diesel(sql_type = Bytea)]
    token_nonce: Vec<u8>,
}

fn lock_key(event_id: Uuid, key: &str) -> i64 {
    let digest = Sha256::digest([event_id.as_bytes().as_slice(), key.as_bytes()].concat());
    i64::from_le_bytes(digest[..8].try_into().expect("eight bytes"))
}

/// Inside the registering transaction: claims the key for this transaction, and tells
/// whether the request was already answered.
pub async fn check(
    conn: &mut AsyncPgConnection,
    event_id: Uuid,
    request: &IdempotencyRequest,
) -> ApiResult<Check> {
    let locked: Locked = diesel::sql_query("SELECT pg_try_advisory_xact_lock($1) AS got_lock")
        .bind::<BigInt, _>(lock_key(event_id, &request.key))
        .get_result(conn)
        .await?;
    if !locked.got_lock {
        return Err(ApiError::conflict(
            "idempotency_key_in_use",
            "a request with this Idempotency-Key is still being processed; retry shortly",
        )
        .with_header(
            actix_web::http::header::RETRY_AFTER,
            actix_web::http::header::HeaderValue::from_static("1"),
        ));
    }
    // A statement of its own: its snapshot is taken after the lock was granted, so it sees
    // the answer of a request that held the key and has just committed.
    let found: Option<Found> = diesel::sql_query(
        "SELECT request_hash, registration_id, response, token_nonce FROM idempotency_keys \
         WHERE event_id = $1 AND key = $2 AND created_at > now() - interval '24 hours'",
    )
    .bind::<SqlUuid, _>(event_id)
    .bind::<Text, _>(&request.key)
    .get_result(conn)
    .await
    .optional()?;
    let Some(found) = found else {
        return Ok(Check::Proceed);
    };
    if found.request_hash != request.request_hash {
        return Err(ApiError::new(
            actix_web::http::StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this Idempotency-Key was used with a different request body",
        ));
    }
    let sessions: Vec<SessionOutcome> =
        serde_json::from_value(found.response).map_err(ApiError::internal)?;
    Ok(Check::Replay(Stored {
        registration_id: found.registration_id,
        sessions,
        token_nonce: found.token_nonce,
    }))
}

/// Records the answer, in the registering transaction.
pub async fn store(
    conn: &mut AsyncPgConnection,
    event_id: Uuid,
    request: &IdempotencyRequest,
    registration_id: Uuid,
    sessions: &[SessionOutcome],
    token_nonce: &[u8],
) -> ApiResult<()> {
    let response = serde_json::to_value(sessions).map_err(ApiError::internal)?;
    diesel::sql_query(
        "INSERT INTO idempotency_keys (event_id, key, request_hash, registration_id, response, token_nonce) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (event_id, key) DO UPDATE \
         SET request_hash = excluded.request_hash, registration_id = excluded.registration_id, \
             response = excluded.response, token_nonce = excluded.token_nonce, created_at = now()",
    )
    .bind::<SqlUuid, _>(event_id)
    .bind::<Text, _>(&request.key)
    .bind::<Bytea, _>(&request.request_hash)
    .bind::<SqlUuid, _>(registration_id)
    .bind::<Jsonb, _>(response)
    .bind::<Bytea, _>(token_nonce)
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_same_json_written_differently_is_the_same_request() {
        let a =
            IdempotencyRequest::new("k", &json!({"a": 1, "b": {"y": [1, 2], "x": "ё"}})).unwrap();
        let b =
            IdempotencyRequest::new("k", &json!({"b": {"x": "ё", "y": [1, 2]}, "a": 1})).unwrap();
        let c =
            IdempotencyRequest::new("k", &json!({"a": 2, "b": {"x": "ё", "y": [1, 2]}})).unwrap();
        assert_eq!(a.request_hash, b.request_hash);
        assert_ne!(a.request_hash, c.request_hash);
    }

    #[test]
    fn keys_are_bounded_visible_ascii() {
        assert!(IdempotencyRequest::new("", &json!({})).is_err());
        assert!(IdempotencyRequest::new("ключ", &json!({})).is_err());
        assert!(IdempotencyRequest::new(&"k".repeat(256), &json!({})).is_err());
        assert!(IdempotencyRequest::new("0b7e-4f", &json!({})).is_ok());
    }
}
