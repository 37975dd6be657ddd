//! `Idempotency-Key` for public registrations: the same key with the same body within 24
//! hours gets the original answer; with another body, 422; while the first request is
//! still running, 409. The check and the record are made inside the registering transaction
//! (`register_participant` in the migrations); this module computes what they compare.

use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

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

impl IdempotencyRequest {
    /// The advisory lock that marks a request with this key as in flight.
    pub fn lock_key(&self, event_id: Uuid) -> i64 {
        let digest = Sha256::digest([event_id.as_bytes().as_slice(), self.key.as_bytes()].concat());
        i64::from_le_bytes(digest[..8].try_into().expect("eight bytes"))
    }
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
