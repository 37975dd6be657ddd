//! Conditional requests (RFC 9110): `If-Match` guards updates against lost writes,
//! `If-None-Match` lets readers revalidate cached copies.

use actix_web::HttpRequest;
use actix_web::http::header::{self, HeaderValue};

use crate::error::{ApiError, ApiResult};

fn tags(req: &HttpRequest, name: header::HeaderName) -> Option<Vec<&str>> {
    let values: Vec<&str> = req
        .headers()
        .get_all(name)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|tag| !tag.is_empty())
        .collect();
    (!values.is_empty()).then_some(values)
}

fn strip_weak(tag: &str) -> &str {
    tag.strip_prefix("W/").unwrap_or(tag)
}

/// The ETags of an `If-Match` header, taken from the request so that the check can run
/// later (inside a transaction, after the current version is locked).
#[derive(Debug, Clone, Default)]
pub struct IfMatch(Option<Vec<String>>);

impl IfMatch {
    pub fn of(req: &HttpRequest) -> Self {
        IfMatch(
            tags(req, header::IF_MATCH).map(|tags| tags.into_iter().map(str::to_owned).collect()),
        )
    }

    /// 412 unless `If-Match` is absent, `*`, or names the current ETag.
    pub fn check(&self, current: &str) -> ApiResult<()> {
        match &self.0 {
            None => Ok(()),
            Some(tags) if tags.iter().any(|tag| tag == "*" || tag == current) => Ok(()),
            Some(_) => Err(precondition_failed(current)),
        }
    }
}

fn precondition_failed(current: &str) -> ApiError {
    ApiError::new(
        actix_web::http::StatusCode::PRECONDITION_FAILED,
        "precondition_failed",
        "the resource has changed since it was read; fetch it again and reapply the change",
    )
    .with("current_etag", current)
}

/// Whether `If-None-Match` names `current` (weak comparison), i.e. the client's copy is fresh.
pub fn is_fresh(req: &HttpRequest, current: &str) -> bool {
    tags(req, header::IF_NONE_MATCH).is_some_and(|tags| {
        tags.iter()
            .any(|tag| *tag == "*" || strip_weak(tag) == strip_weak(current))
    })
}

pub fn etag_header(etag: &str) -> (header::HeaderName, HeaderValue) {
    (
        header::ETAG,
        HeaderValue::from_str(etag).expect("ETags are built from safe characters"),
    )
}
