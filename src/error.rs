//! The API's one error type and its `application/problem+json` (RFC 9457) rendering.
//!
//! Every failure a client can see goes through [`ApiError`]: a status, a stable
//! machine-readable `code`, a human `detail`, and for validation a list of field errors.
//! Unexpected failures are logged with their whole cause chain and answered as an opaque 500.

use std::fmt;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// One invalid field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// The field, as a JSON path into the request (`email`, `sessions[2].capacity`).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem: `urn:registrar:problem:<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong in this occurrence.
    pub detail: String,
    /// Stable machine-readable code (`session_full`, `validation_failed`, ...).
    pub code: String,
    /// For validation failures: each invalid field.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(nullable = false)]
    pub errors: Vec<FieldError>,
    /// Members that some problems add (e.g. `session_id`, `retry_after`).
    #[serde(flatten)]
    #[schema(additional_properties)]
    pub extra: Map<String, Value>,
}

pub type ApiResult<T> = Result<T, ApiError>;

/// Boxed, so `Result<T, ApiError>` stays small on the happy path.
pub struct ApiError(Box<Inner>);

struct Inner {
    status: StatusCode,
    code: &'static str,
    detail: String,
    errors: Vec<FieldError>,
    extra: Map<String, Value>,
    headers: Vec<(HeaderName, HeaderValue)>,
    source: Option<anyhow::Error>,
    /// The failure was a lost race between transactions; running it again may succeed.
    retryable: bool,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self(Box::new(Inner {
            status,
            code,
            detail: detail.into(),
            errors: Vec::new(),
            extra: Map::new(),
            headers: Vec::new(),
            source: None,
            retryable: false,
        }))
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "authentication_required", detail).with_header(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"registrar\""),
        )
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, detail)
    }

    /// A single invalid field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::validation(vec![FieldError {
            field: field.into(),
            message: message.into(),
        }])
    }

    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = match errors.as_slice() {
            [one] => format!("{}: {}", one.field, one.message),
            _ => format!("{} fields are invalid", errors.len()),
        };
        let mut error = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            detail,
        );
        error.0.errors = errors;
        error
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            detail,
        )
        .with_header(header::RETRY_AFTER, HeaderValue::from_static("1"))
    }

    /// An unexpected failure: logged with its cause chain, answered as an opaque 500.
    pub fn internal(source: impl Into<anyhow::Error>) -> Self {
        let mut error = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "An unexpected error occurred; it has been logged.",
        );
        error.0.source = Some(source.into());
        error
    }

    /// The fields the failure is about (as for validation failures).
    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.0.errors = errors;
        self
    }

    /// Adds a member to the problem document (`session_id`, `sessions`, ...).
    pub fn with(mut self, key: &str, value: impl Serialize) -> Self {
        let value = serde_json::to_value(value).unwrap_or(Value::Null);
        self.0.extra.insert(key.to_owned(), value);
        self
    }

    /// Replaces the code, keeping the status (a more specific kind of the same failure).
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.0.code = code;
        self
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.0.headers.push((name, value));
        self
    }

    pub fn status(&self) -> StatusCode {
        self.0.status
    }

    pub fn code(&self) -> &'static str {
        self.0.code
    }

    pub fn is_retryable(&self) -> bool {
        self.0.retryable
    }

    pub fn problem(&self) -> Problem {
        Problem {
            kind: format!("urn:registrar:problem:{}", self.0.code),
            title: title_of(self.0.code),
            status: self.0.status.as_u16(),
            detail: self.0.detail.clone(),
            code: self.0.code.to_owned(),
            errors: self.0.errors.clone(),
            extra: self.0.extra.clone(),
        }
    }
}

/// `session_full` → `Session full`.
fn title_of(code: &str) -> String {
    let text = code.replace('_', " ");
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => text,
    }
}

// What logs see of an error (the request log records both forms): the status, the code
// and the paths of the fields at fault, never `detail`, which may quote what was sent.
impl fmt::Debug for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fields: Vec<&str> = self.0.errors.iter().map(|e| e.field.as_str()).collect();
        f.debug_struct("ApiError")
            .field("status", &self.0.status)
            .field("code", &self.0.code)
            .field("fields", &fields)
            .field("source", &self.0.source)
            .finish()
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.0.status.as_u16(), self.0.code)?;
        if !self.0.errors.is_empty() {
            let fields: Vec<&str> = self.0.errors.iter().map(|e| e.field.as_str()).collect();
            write!(f, " ({})", fields.join(", "))?;
        }
        if let Some(source) = &self.0.source {
            write!(f, ": {source:#}")?;
        }
        Ok(())
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.0.status
    }

    fn error_response(&self) -> HttpResponse {
        if let Some(source) = &self.0.source {
            tracing::error!(error = format!("{source:#}"), "request failed");
        } else if self.0.status.is_server_error() {
            tracing::warn!(code = self.0.code, detail = %self.0.detail, "request failed");
        }
        let mut response = HttpResponse::build(self.0.status);
        response.content_type(PROBLEM_JSON);
        for (name, value) in &self.0.headers {
            response.insert_header((name.clone(), value.clone()));
        }
        response.json(self.problem())
    }
}

impl From<DieselError> for ApiError {
    fn from(error: DieselError) -> Self {
        match &error {
            DieselError::NotFound => ApiError::not_found("resource"),
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
                let constraint = info.constraint_name().unwrap_or_default();
                ApiError::conflict("conflict", "a conflicting resource already exists")
                    .with("constraint", constraint)
            }
            DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, info) => {
                let constraint = info.constraint_name().unwrap_or_default();
                ApiError::conflict(
                    "in_use",
                    "the resource is referenced by or refers to another one",
                )
                .with("constraint", constraint)
            }
            // PostgreSQL text cannot hold NUL characters; nothing stored can match one.
            DieselError::DatabaseError(_, info)
                if info.message().contains("invalid byte sequence") =>
            {
                ApiError::bad_request("invalid_text", "text must not contain NUL characters")
            }
            _ if crate::db::is_unavailable(&error) => {
                tracing::warn!(error = %error, "database unavailable");
                ApiError::unavailable("The database is unavailable; retry shortly.")
                    .with_code("database_unavailable")
            }
            _ if crate::db::is_retryable(&error) => {
                let mut api_error =
                    ApiError::unavailable("the request collided with a concurrent one; retry it")
                        .with_code("concurrent_request");
                api_error.0.retryable = true;
                api_error
            }
            _ => ApiError::internal(error),
        }
    }
}

impl From<crate::db::PoolError> for ApiError {
    fn from(error: crate::db::PoolError) -> Self {
        tracing::warn!(error = %error, "no database connection");
        ApiError::unavailable("The database is unavailable; retry shortly.")
            .with_code("database_unavailable")
    }
}

impl From<actix_web::error::BlockingError> for ApiError {
    fn from(error: actix_web::error::BlockingError) -> Self {
        ApiError::internal(anyhow::anyhow!("blocking task failed: {error}"))
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(error: tokio::task::JoinError) -> Self {
        ApiError::internal(error)
    }
}

/// Problem answers for what actix-web rejects before a handler runs (bodies and queries are
/// read by `crate::extract`).
pub mod extractors {
    use actix_web::error::PathError;
    use actix_web::http::StatusCode;
    use actix_web::{Error, HttpRequest};

    use super::ApiError;

    pub fn path(error: PathError, _req: &HttpRequest) -> Error {
        let PathError::Deserialize(inner) = &error else {
            return ApiError::not_found("resource").into();
        };
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no such resource: {inner}"),
        )
        .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_come_from_codes() {
        assert_eq!(title_of("session_full"), "Session full");
        assert_eq!(title_of("not_found"), "Not found");
    }

    #[test]
    fn internal_errors_do_not_leak_their_cause() {
        let error = ApiError::internal(anyhow::anyhow!("relation \"users\" does not exist"));
        let problem = serde_json::to_string(&error.problem()).unwrap();
        assert!(!problem.contains("relation"), "{problem}");
        assert_eq!(error.problem().status, 500);
    }

    #[test]
    fn validation_problems_list_every_field() {
        let error = ApiError::validation(vec![
            FieldError {
                field: "email".into(),
                message: "must be an email address".into(),
            },
            FieldError {
                field: "full_name".into(),
                message: "must not be empty".into(),
            },
        ]);
        let problem = serde_json::to_value(error.problem()).unwrap();
        assert_eq!(problem["code"], "validation_failed");
        assert_eq!(problem["status"], 422);
        assert_eq!(problem["errors"][1]["field"], "full_name");
    }
}
