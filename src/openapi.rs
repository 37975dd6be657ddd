//! The OpenAPI 3.1 document: collected from the routes themselves (`utoipa-actix-web`), with
//! what every route shares added in one place: the problem answers any route may give, the
//! response headers clients rely on, and the rules that make fields exact ([`fields`]).

use actix_web::{HttpResponse, get};
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::ParameterIn;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, RefOr, ResponseBuilder};
use utoipa::{IntoResponses, OpenApi};
use utoipa_actix_web::AppExt;

use crate::dates::{Day, Timestamp};
use crate::error::{FieldError, PROBLEM_JSON, Problem};

mod fields;

pub use fields::shared_object_schemas;

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
        (name = "forms", description = "Registration forms: participant categories, questions, consent texts, and the form as JSON Schema"),
        (name = "imports", description = "Importing participants from CSV and XLSX: a dry run, then a commit"),
        (name = "badges", description = "Device keys, attendee feed and export, print queue, QR codes, check-in, numbers"),
        (name = "webhooks", description = "Organisers' webhook endpoints, what was delivered to them, and (under `webhooks`) the signed messages they receive"),
        (name = "personal data", description = "A participant's export and erasure of their personal data, and the organisers' erasure of an event's"),
        (name = "operations", description = "Health, readiness and metrics"),
        (name = "widget", description = "The embeddable registration widget: a script any page can load"),
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
    crate::startup::describe_outgoing(&mut doc);
    fields::require_what_answers_always_send(&mut doc);
    describe_headers(&mut doc);
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
    for operation in fields::operations(doc) {
        let query: Vec<String> = operation
            .parameters
            .iter()
            .flatten()
            .filter_map(|p| match p {
                RefOr::T(p) if matches!(p.parameter_in, ParameterIn::Query) => Some(p.name.clone()),
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
                problem(
                    "`request_timeout`: the request body did not arrive within the time allowed.",
                )
            });
        }
        responses
            .entry("500".into())
            .or_insert_with(|| problem("`internal_error`: an unexpected failure; it was logged."));
        responses.entry("503".into()).or_insert_with(|| {
            problem("`database_unavailable`: the database cannot be reached; retry shortly.")
        });
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

/// Response headers a client may rely on, described here once. An operation names those it
/// sends (`headers(("ETag" = String))` on the response); [`describe_headers`] gives each its
/// schema and description and says whether it is always there. `X-Request-Id` is on every
/// answer and `Retry-After` on every 429 and 503, so those two are added to every such
/// response.
struct KnownHeader {
    name: &'static str,
    description: &'static str,
    /// An integer (`Retry-After`), rather than text.
    integer: bool,
}

const HEADERS: [KnownHeader; 6] = [
    KnownHeader {
        name: "X-Request-Id",
        description: "Identifies this request in the service's logs; quote it when reporting \
            a problem.",
        integer: false,
    },
    KnownHeader {
        name: "ETag",
        description: "The entity tag of what was answered: send it as `If-None-Match` to get \
            304 while it is current, or as `If-Match` to change it only if nobody else has.",
        integer: false,
    },
    KnownHeader {
        name: "Location",
        description: "The path of the resource created.",
        integer: false,
    },
    KnownHeader {
        name: "Retry-After",
        description: "Seconds to wait before trying again.",
        integer: true,
    },
    KnownHeader {
        name: "Idempotent-Replayed",
        description: "`true` when this answers a repeated request with the same \
            `Idempotency-Key`: nothing new was created. Absent otherwise.",
        integer: false,
    },
    KnownHeader {
        name: "Cache-Control",
        description: "How long the answer may be reused: `public, max-age=5, \
            stale-while-revalidate=30` for what anyone may see, `private, no-cache` for what \
            the caller's token shows, a day (and a week revalidated in the background) for the \
            widget's script; `no-store` on every other answer.",
        integer: false,
    },
];

/// Whether a header is on every answer of this status that names it.
fn always_sent(name: &str, status: &str) -> bool {
    match name {
        "Idempotent-Replayed" => false,
        // Also sent with a 409 of public registration (a concurrent duplicate), which says so.
        "Retry-After" => matches!(status, "429" | "503"),
        _ => true,
    }
}

/// Adds `X-Request-Id` to every response and `Retry-After` to every 429 and 503, and describes
/// the headers of [`HEADERS`] wherever a response names them.
fn describe_headers(doc: &mut Document) {
    let describe = |known: &KnownHeader, status: &str| {
        let schema = if known.integer {
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0))
        } else {
            ObjectBuilder::new().schema_type(Type::String)
        };
        let mut header = HeaderBuilder::new()
            .schema(Some(schema))
            .description(Some(known.description))
            .build();
        if always_sent(known.name, status) {
            // OpenAPI's `required` of a header, which utoipa's `Header` does not model: its
            // extensions are written as members of the header object.
            header
                .extensions
                .get_or_insert_with(Default::default)
                .insert("required".to_owned(), true.into());
        }
        header
    };
    let request_id = &HEADERS[0];
    doc.components
        .get_or_insert_with(Default::default)
        .headers
        .insert(
            request_id.name.to_owned(),
            RefOr::T(describe(request_id, "")),
        );
    for operation in fields::operations(doc) {
        for (status, response) in operation.responses.responses.iter_mut() {
            let RefOr::T(response) = response else {
                continue;
            };
            if matches!(status.as_str(), "429" | "503") {
                response
                    .headers
                    .entry("Retry-After".to_owned())
                    .or_insert_with(|| RefOr::T(Default::default()));
            }
            for (name, header) in response.headers.iter_mut() {
                if let Some(known) = HEADERS.iter().find(|known| known.name == name) {
                    *header = RefOr::T(describe(known, status));
                }
            }
            response.headers.insert(
                request_id.name.to_owned(),
                RefOr::Ref(Ref::new(format!(
                    "#/components/headers/{}",
                    request_id.name
                ))),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn schemas() -> Value {
        let doc: Value = serde_json::from_str(&to_json(&document())).unwrap();
        doc["components"]["schemas"].clone()
    }

    fn nullable(schema: &Value) -> bool {
        schema.to_string().contains("\"null\"")
    }

    #[test]
    fn fields_answers_always_send_are_required_and_nullable_where_they_may_be_null() {
        let schemas = schemas();
        let session = &schemas["ProgrammeSession"];
        let required = session["required"].as_array().unwrap();
        for field in [
            "seats_left",
            "capacity",
            "description",
            "language",
            "track",
            "venue",
        ] {
            assert!(required.contains(&field.into()), "{field}: {session}");
            assert!(nullable(&session["properties"][field]), "{field}");
        }
        assert!(!nullable(&session["properties"]["title"]));
    }

    #[test]
    fn a_field_left_out_of_answers_stays_optional_and_is_never_null() {
        let speaker = &schemas()["SpeakerView"];
        assert!(
            !speaker["required"]
                .as_array()
                .unwrap()
                .contains(&"contact".into())
        );
        assert!(!nullable(&speaker["properties"]["contact"]));
    }

    #[test]
    fn patch_fields_are_nullable_only_where_null_clears_them() {
        let patch = &schemas()["RegistrationPatch"];
        assert!(patch.get("required").is_none(), "{patch}");
        for field in ["full_name", "email", "category", "session_ids"] {
            assert!(!nullable(&patch["properties"][field]), "{field}");
        }
        for field in ["organisation", "position", "city", "phone"] {
            assert!(nullable(&patch["properties"][field]), "{field}");
        }
    }

    #[test]
    fn no_object_schema_serves_both_requests_and_answers() {
        // The rules of `fields` differ by direction; a shared schema could not follow both.
        assert_eq!(shared_object_schemas(&document()), Vec::<String>::new());
    }

    /// Request schemas reach dates and date-times only through [`Day`] and [`Timestamp`], which
    /// refuse years outside 0001–9999 (in UTC too) as they are read; chrono's own types take
    /// years up to 262142, which answers then echo in a form no client reads as a date-time.
    #[test]
    fn every_date_a_request_carries_is_read_by_the_checked_types() {
        fn walk(value: &Value, at: &str, refs: &mut Vec<String>, raw: &mut Vec<String>) {
            match value {
                Value::Object(members) => {
                    if let Some(Value::String(target)) = members.get("$ref") {
                        refs.push(target.trim_start_matches("#/components/schemas/").into());
                    }
                    if matches!(members.get("format"), Some(f) if f == "date" || f == "date-time") {
                        raw.push(at.to_owned());
                    }
                    for (name, member) in members {
                        walk(member, &format!("{at}/{name}"), refs, raw);
                    }
                }
                Value::Array(items) => items.iter().for_each(|item| walk(item, at, refs, raw)),
                _ => {}
            }
        }
        let doc: Value = serde_json::from_str(&to_json(&document())).unwrap();
        let (mut refs, mut raw) = (Vec::new(), Vec::new());
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let at = format!("{method} {path}");
                walk(&operation["requestBody"], &at, &mut refs, &mut raw);
                walk(&operation["parameters"], &at, &mut refs, &mut raw);
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        while let Some(name) = refs.pop() {
            if seen.insert(name.clone()) && name != "Day" && name != "Timestamp" {
                let schema = &doc["components"]["schemas"][&name];
                walk(schema, &name, &mut refs, &mut raw);
            }
        }
        assert!(
            seen.contains("Timestamp") && seen.contains("Day"),
            "{seen:?}"
        );
        assert_eq!(raw, Vec::<String>::new());
    }

    #[test]
    fn every_answer_documents_its_request_id_and_every_429_and_503_its_retry_after() {
        let doc: Value = serde_json::from_str(&to_json(&document())).unwrap();
        let id = &doc["components"]["headers"]["X-Request-Id"];
        assert_eq!(id["required"], true);
        let mut answers = 0;
        for item in doc["paths"].as_object().unwrap().values() {
            for operation in item.as_object().unwrap().values() {
                for (status, response) in operation["responses"].as_object().unwrap() {
                    answers += 1;
                    assert_eq!(
                        response["headers"]["X-Request-Id"]["$ref"],
                        "#/components/headers/X-Request-Id"
                    );
                    if status == "429" || status == "503" {
                        let retry = &response["headers"]["Retry-After"];
                        assert_eq!(retry["required"], true, "{status}: {response}");
                        assert_eq!(retry["schema"]["type"], "integer");
                    }
                }
            }
        }
        assert!(answers > 100);
    }
}
