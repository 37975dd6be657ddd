//! What every answer carries, whichever layer produced it (a handler, the router, CORS): the
//! request id, security headers, `Cache-Control: no-store` unless the route chose its own
//! caching, and `Strict-Transport-Security` when the service is reached over HTTPS only. A
//! request CORS refuses is answered with a problem document like any other refusal.
//!
//! `no-store` is the default rather than something each route adds: tokens (login, refresh,
//! manage tokens, device keys) and personal data (registrations, attendee lists and exports,
//! accounts) must never sit in a browser's or a proxy's cache, and a new route cannot forget
//! it. Routes meant to be cached (the public programme) set their own `Cache-Control`.

use actix_cors::CorsError;
use actix_web::ResponseError;
use actix_web::body::EitherBody;
use actix_web::dev::ServiceResponse;
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use tracing_actix_web::RequestId;

use crate::config::Config;
use crate::error::ApiError;

/// The headers of this instance's answers, prepared once.
#[derive(Clone)]
pub struct CommonHeaders {
    hsts: Option<HeaderValue>,
}

impl CommonHeaders {
    pub fn new(config: &Config) -> Self {
        let hsts = (config.hsts_max_age > 0).then(|| {
            HeaderValue::from_str(&format!("max-age={}", config.hsts_max_age))
                .expect("a number is valid header text")
        });
        Self { hsts }
    }

    /// Finishes an answer: a CORS refusal becomes a problem, then every common header is set.
    pub fn finish<B>(
        &self,
        response: ServiceResponse<B>,
        request_id: Option<RequestId>,
    ) -> ServiceResponse<EitherBody<B>> {
        let docs = response.request().path().starts_with("/docs");
        let mut response = match cors_refusal(&response) {
            Some(problem) => {
                let (request, _) = response.into_parts();
                ServiceResponse::new(request, problem.error_response()).map_into_right_body()
            }
            None => response.map_into_left_body(),
        };
        self.set(response.headers_mut(), docs, request_id);
        response
    }

    fn set(&self, headers: &mut HeaderMap, docs: bool, request_id: Option<RequestId>) {
        if let Some(id) = request_id.and_then(|id| HeaderValue::from_str(&id.to_string()).ok()) {
            headers.insert(HeaderName::from_static("x-request-id"), id);
        }
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        let policy = if docs {
            // Swagger UI: its own scripts and styles only (served from this binary), nothing
            // from elsewhere.
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
             img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
             form-action 'none'"
        } else {
            "default-src 'none'; frame-ancestors 'none'"
        };
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(policy),
        );
        // The documentation UI is static and public; everything else is private by default.
        if !docs && !headers.contains_key(header::CACHE_CONTROL) {
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        if let Some(hsts) = &self.hsts {
            headers.insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
        }
    }
}

/// The problem to answer when CORS refused the request (a preflight for an origin, method or
/// header that is not allowed): actix-cors answers those with a bare text body.
fn cors_refusal<B>(response: &ServiceResponse<B>) -> Option<ApiError> {
    let refusal = response.response().error()?.as_error::<CorsError>()?;
    Some(ApiError::new(
        refusal.status_code(),
        "cors_refused",
        format!("{refusal}; see the API's allowed origins, methods and headers"),
    ))
}
