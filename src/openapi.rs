//! The OpenAPI 3.1 document: collected from the routes themselves (`utoipa-actix-web`), with
//! the problem answers every route shares added in one place.

use actix_web::{HttpResponse, get};
use utoipa::openapi::path::ParameterIn;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, RefOr, ResponseBuilder};
use utoipa::{IntoResponses, OpenApi};
use utoipa_actix_web::AppExt;

use crate::dates::{Day, Timestamp};
use crate::error::{FieldError, PROBLEM_JSON, Problem};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "registrar",
        description = "Registration API for events and business sessions: organisers describe \
            events, venues, tracks, sessions and speakers; participants register from \
            third-party frontends; badge printers and check-in desks pull attendee lists and \
            check people in. Errors are `application/problem+json` (RFC 9457) with a stable `code`.",
        license(name = "MIT", identifier = "MIT")
    ),
    components(schemas(Problem, FieldError, Day, Timestamp)),
    tags(
        (name = "auth", description = "Organiser login and tokens"),
        (name = "users", description = "Organiser accounts (admins only)"),
        (name = "events", description = "Events and their organisers"),
        (name = "programme", description = "Venues, tracks, sessions, speakers and the public programme"),
        (name = "registrations", description = "Registering, waitlists, self-service and the organisers' side"),
        (name = "badges", description = "Device keys, attendee feed and export, print queue, QR codes, check-in, numbers"),
        (name = "operations", description = "Health, readiness and metrics"),
    )
)]
struct ApiDoc;

/// 401/403 for routes that need a signed-in organiser.
#[derive(IntoResponses)]
pub enum SignedIn {
    /// `authentication_required`: no credentials. `invalid_token`: the token is malformed,
    /// expired, wrongly signed or revoked, or its account is disabled.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(Problem),
    /// `forbidden`: a participant's manage token or a device key was sent; only organisers'
    /// and admins' tokens may do this.
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(Problem),
}

/// 401/403 for admin-only routes.
#[derive(IntoResponses)]
pub enum AdminOnly {
    /// `authentication_required`: no credentials. `invalid_token`: the token is malformed,
    /// expired, wrongly signed or revoked, or its account is disabled.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(Problem),
    /// `forbidden`: only admins may do this.
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(Problem),
}

/// What any route of an event can answer besides its own outcomes.
#[derive(IntoResponses)]
pub enum EventErrors {
    /// `authentication_required`: the action needs an organiser's token.
    /// `invalid_token`: the token sent is malformed, expired, revoked or of a disabled account.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(Problem),
    /// `forbidden`: the caller may see the event but not do this.
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(Problem),
    /// `not_found`: no such event (or not visible to the caller), or no such item in it.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(Problem),
}

/// What `/registrations/{id}` routes can answer besides their own outcomes.
#[derive(IntoResponses)]
pub enum RegistrationErrors {
    /// `authentication_required`: send the manage token or an organiser's token.
    /// `invalid_token`: the token sent is not valid.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(Problem),
    /// `forbidden`: the caller may see the registration but not do this.
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(Problem),
    /// `not_found`: no such registration visible to the caller (a manage token opens only
    /// its own).
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(Problem),
}

/// The answers to a request body that cannot be accepted.
#[derive(IntoResponses)]
pub enum BodyErrors {
    /// `malformed_json`: the body is not JSON (or is empty where a body is required).
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(Problem),
    /// `payload_too_large`: the body is larger than the limit.
    #[response(status = 413, content_type = "application/problem+json")]
    TooLarge(Problem),
    /// `unsupported_media_type`: the body is not `application/json`.
    #[response(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(Problem),
    /// `validation_failed`: fields are invalid (see `errors`). `invalid_body`: the JSON does
    /// not have the expected shape: a member of the wrong type or out of its type's range, a
    /// member missing, unknown or given twice; `errors` names it by its JSON path
    /// (`scans[1].scanned_at`).
    #[response(status = 422, content_type = "application/problem+json")]
    Invalid(Problem),
}

/// The whole document, as the routes describe themselves.
pub fn document() -> Document {
    let (_, mut doc) = actix_web::App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .configure(crate::startup::routes)
        .split_for_parts();
    add_shared_parts(&mut doc);
    doc
}

pub fn to_json(doc: &Document) -> String {
    let mut json = doc
        .to_pretty_json()
        .expect("the OpenAPI document serialises");
    json.push('\n');
    json
}

/// Security schemes, and the 408/500/503 answers any route may give.
fn add_shared_parts(doc: &mut Document) {
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format(
                    "JWT access token, participant manage token (rgm_…) or device key (rgk_…)",
                )
                .build(),
        ),
    );
    components.add_security_scheme(
        "metrics_token",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "The value of REGISTRAR_METRICS_TOKEN, when the service is given one",
                ))
                .build(),
        ),
    );
    let problem = |description: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content(
                    PROBLEM_JSON,
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Problem")))
                        .build(),
                )
                .build(),
        )
    };
    for item in doc.paths.paths.values_mut() {
        for operation in [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
        {
            let query: Vec<String> = operation
                .parameters
                .iter()
                .flatten()
                .filter_map(|p| match p {
                    RefOr::T(p) if matches!(p.parameter_in, ParameterIn::Query) => {
                        Some(p.name.clone())
                    }
                    _ => None,
                })
                .collect();
            let responses = &mut operation.responses.responses;
            if !query.is_empty() {
                responses.entry("400".into()).or_insert_with(|| {
                    problem("`invalid_query`: a query parameter is not of its type, or unknown; `errors` names it.")
                });
            }
            if query.iter().any(|name| name == "limit") {
                responses.entry("422".into()).or_insert_with(|| {
                    problem("`validation_failed`: `limit` out of range or a `cursor` this list did not return.")
                });
            }
            if operation.request_body.is_some() {
                responses.entry("408".into()).or_insert_with(|| {
                    problem("`request_timeout`: the request body did not arrive within the time allowed.")
                });
            }
            responses.entry("500".into()).or_insert_with(|| {
                problem("`internal_error`: an unexpected failure; it was logged.")
            });
            responses.entry("503".into()).or_insert_with(|| {
                problem("`database_unavailable`: the database cannot be reached; retry shortly.")
            });
        }
    }
}

/// The OpenAPI document of this API.
#[utoipa::path(
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document.", content_type = "application/json"))
)]
#[get("/api/openapi.json")]
async fn openapi_json(doc: actix_web::web::Data<OpenApiJson>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(doc.0.clone())
}

/// The document, serialised once at start-up.
pub struct OpenApiJson(pub String);
