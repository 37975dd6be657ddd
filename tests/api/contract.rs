//! Every answer the tests receive is checked against the OpenAPI document the service
//! publishes: the status is one the operation documents, the content type is documented for
//! that status, the body validates against its schema (JSON Schema 2020-12, with the
//! document's `#/components/schemas` resolved, formats checked, and no member the schema does
//! not name), no body comes where none is documented, and every header the document marks
//! required is there. So the document and
//! the server cannot drift apart on any path a test takes: a mismatch fails the test that
//! made the request, naming the operation, the status and the JSON path at fault.
//!
//! Requests no operation describes are checked too: an unknown path or method must be a
//! 4xx answered with a problem document (`#/components/schemas/Problem`). CORS preflights
//! (`OPTIONS`) are answered by the CORS layer, not by an operation: an accepted one must be
//! an empty 200, a refused one a problem. Only the Swagger UI under `/docs` (HTML and
//! scripts served beside the API, which the document does not describe) is not checked, and
//! the tests that speak HTTP over a raw TCP stream, whose answers never reach this module.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use jsonschema::Validator;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The document, read once per test process.
static CONTRACT: LazyLock<Contract> = LazyLock::new(Contract::new);

/// Checks one answer (see the module); `path` may carry a query string.
pub fn check(
    method: &Method,
    path: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &str,
) -> Result<(), String> {
    CONTRACT.check(method, path, status, headers, body)
}

/// Whether `instance` is valid against `schema` (which may `$ref` the document's components).
pub fn accepts(schema: &Value, instance: &Value) -> bool {
    CONTRACT.validate(schema, instance).is_ok()
}

/// The document as JSON.
pub fn document() -> &'static Value {
    &CONTRACT.document
}

struct Operation {
    method: Method,
    template: String,
    /// The template's segments; `None` for a `{parameter}`.
    segments: Vec<Option<String>>,
    /// The operation's `responses` object.
    responses: serde_json::Map<String, Value>,
}

struct Contract {
    document: Value,
    /// The document's components, with every object closed (see [`close`]).
    components: Value,
    operations: Vec<Operation>,
    /// Compiled validators by the schema they check (many answers share one).
    validators: Mutex<HashMap<String, Arc<Validator>>>,
}

impl Contract {
    fn new() -> Self {
        let document: Value =
            serde_json::from_str(&registrar::openapi::to_json(&registrar::openapi::document()))
                .expect("the document is JSON");
        let mut operations = Vec::new();
        for (template, item) in document["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("a path item") {
                let Ok(method) = method.to_uppercase().parse::<Method>() else {
                    continue;
                };
                let Some(responses) = operation["responses"].as_object() else {
                    continue;
                };
                operations.push(Operation {
                    method,
                    template: template.clone(),
                    segments: template
                        .split('/')
                        .map(|segment| {
                            (!(segment.starts_with('{') && segment.ends_with('}')))
                                .then(|| segment.to_owned())
                        })
                        .collect(),
                    responses: responses.clone(),
                });
            }
        }
        let mut components = document["components"].clone();
        let schemas = components["schemas"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let mut closed = serde_json::Map::new();
        for (name, schema) in schemas {
            closed.insert(format!("{name}{OPEN}"), close(&schema, false));
            closed.insert(name, close(&schema, true));
        }
        components["schemas"] = Value::Object(closed);
        Contract {
            document,
            components,
            operations,
            validators: Mutex::new(HashMap::new()),
        }
    }

    /// The operation for this method and path: of the templates that match, the one with
    /// the most fixed segments (`/registrations/manual` before `/registrations/{id}`).
    fn operation(&self, method: &Method, path: &str) -> Option<&Operation> {
        let segments: Vec<&str> = path.split('/').collect();
        self.operations
            .iter()
            .filter(|op| op.method == *method && matches(&op.segments, &segments))
            .max_by_key(|op| op.segments.iter().filter(|s| s.is_some()).count())
    }

    fn check(
        &self,
        method: &Method,
        path: &str,
        status: StatusCode,
        headers: &HeaderMap,
        body: &str,
    ) -> Result<(), String> {
        let path = path.split(['?', '#']).next().unwrap_or_default();
        if path == "/docs" || path.starts_with("/docs/") {
            return Ok(());
        }
        // HEAD is GET without the body.
        let (looked_up, with_body) = if method == Method::HEAD {
            (Method::GET, false)
        } else {
            (method.clone(), true)
        };
        let Some(operation) = self.operation(&looked_up, path) else {
            return self.check_undocumented(method, path, status, headers, body);
        };
        let name = format!("{} {}", operation.method, operation.template);
        let code = status.as_u16().to_string();
        let class = format!("{}XX", code.chars().next().unwrap_or('0'));
        let Some(response) = operation
            .responses
            .get(&code)
            .or_else(|| operation.responses.get(&class))
            .or_else(|| operation.responses.get("default"))
        else {
            let documented: Vec<&String> = operation.responses.keys().collect();
            return Err(format!(
                "{name} answered {code}, which the document does not list for it \
                 (documented: {documented:?}); body: {}",
                excerpt(body)
            ));
        };
        let response = self.resolve(response);
        let fail = |what: String| Err(format!("{name} answered {code}: {what}"));
        if let Some(missing) = self.missing_headers(response, headers) {
            return fail(missing);
        }
        let content = response["content"].as_object();
        let content_type = headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let Some(content) = content.filter(|c| !c.is_empty()) else {
            if with_body && !body.is_empty() {
                return fail(format!(
                    "a body ({}) where the document has none: {}",
                    content_type.unwrap_or("no content type"),
                    excerpt(body)
                ));
            }
            return Ok(());
        };
        let Some(content_type) = content_type else {
            return fail("no Content-Type".to_owned());
        };
        let sent = essence(content_type);
        let Some((_, media)) = content.iter().find(|(key, _)| essence(key) == sent) else {
            let documented: Vec<&String> = content.keys().collect();
            return fail(format!(
                "Content-Type {content_type}, documented: {documented:?}"
            ));
        };
        if !with_body || !is_json(&sent) {
            return Ok(());
        }
        let Some(schema) = media.get("schema") else {
            return Ok(());
        };
        let instance: Value = match serde_json::from_str(body) {
            Ok(value) => value,
            Err(error) => {
                return fail(format!("the body is not JSON ({error}): {}", excerpt(body)));
            }
        };
        self.validate(schema, &instance).map_err(|errors| {
            format!(
                "{name} answered {code} with a body that does not match the document:\n{errors}\nbody: {}",
                excerpt(body)
            )
        })
    }

    /// An answer to a request that no operation describes.
    fn check_undocumented(
        &self,
        method: &Method,
        path: &str,
        status: StatusCode,
        headers: &HeaderMap,
        body: &str,
    ) -> Result<(), String> {
        let name = format!("{method} {path} (no operation in the document)");
        if *method == Method::OPTIONS && status == StatusCode::OK && body.is_empty() {
            return Ok(());
        }
        if !status.is_client_error() {
            return Err(format!(
                "{name} answered {status}; only a 4xx problem is expected: {}",
                excerpt(body)
            ));
        }
        if headers.get("x-request-id").is_none() {
            return Err(format!("{name} answered {status} without X-Request-Id"));
        }
        let content_type = headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if essence(content_type) != "application/problem+json" {
            return Err(format!(
                "{name} answered {status} with Content-Type {content_type:?}, not a problem: {}",
                excerpt(body)
            ));
        }
        let instance: Value = serde_json::from_str(body)
            .map_err(|error| format!("{name} answered {status}: not JSON ({error})"))?;
        self.validate(&json!({"$ref": "#/components/schemas/Problem"}), &instance)
            .map_err(|errors| format!("{name} answered {status} with a bad problem:\n{errors}"))
    }

    /// The headers the response documents as required that the answer lacks, those whose
    /// value does not fit their schema, and those a client acts on ([`CLIENT_HEADERS`]) that
    /// the answer carries but the response does not document.
    fn missing_headers(&self, response: &Value, headers: &HeaderMap) -> Option<String> {
        let mut wrong = Vec::new();
        let documented = response["headers"].as_object();
        for name in CLIENT_HEADERS {
            let listed = documented
                .is_some_and(|listed| listed.keys().any(|key| key.eq_ignore_ascii_case(name)));
            if headers.contains_key(name) && !listed {
                wrong.push(format!("the header {name} is sent but not documented"));
            }
        }
        for (name, header) in response["headers"].as_object().into_iter().flatten() {
            let header = self.resolve(header);
            match headers.get(name).map(|v| v.to_str()) {
                None if header["required"] == true => {
                    wrong.push(format!("the header {name} is missing"));
                }
                None => {}
                Some(Err(_)) => wrong.push(format!("the header {name} is not text")),
                Some(Ok(value)) => {
                    // Header values are text; a documented integer must read as one.
                    let value = match header["schema"]["type"].as_str() {
                        Some("integer") => match value.parse::<i64>() {
                            Ok(n) => json!(n),
                            Err(_) => {
                                wrong.push(format!("the header {name} is not an integer: {value}"));
                                continue;
                            }
                        },
                        _ => json!(value),
                    };
                    if let Err(errors) = self.validate(&header["schema"], &value) {
                        wrong.push(format!("the header {name}: {errors}"));
                    }
                }
            }
        }
        (!wrong.is_empty()).then(|| wrong.join("; "))
    }

    /// Follows a local `$ref` (`#/components/headers/X-Request-Id`).
    fn resolve<'a>(&'a self, value: &'a Value) -> &'a Value {
        match value["$ref"].as_str() {
            Some(reference) => self
                .document
                .pointer(reference.trim_start_matches('#'))
                .unwrap_or_else(|| panic!("the document has no {reference}")),
            None => value,
        }
    }

    /// Validates against `schema`, with the document's components in reach of its `$ref`s;
    /// each distinct schema is compiled once per process.
    fn validate(&self, schema: &Value, instance: &Value) -> Result<(), String> {
        let key = schema.to_string();
        let cached = self.validators.lock().unwrap().get(&key).cloned();
        let validator = match cached {
            Some(validator) => validator,
            None => {
                let root = json!({
                    "$schema": "https://json-schema.org/draft/2020-12/schema",
                    "components": self.components,
                    "allOf": [close(schema, true)],
                });
                let validator = Arc::new(
                    jsonschema::draft202012::options()
                        .should_validate_formats(true)
                        .build(&root)
                        .unwrap_or_else(|error| {
                            panic!("the schema {key} does not compile: {error}")
                        }),
                );
                self.validators
                    .lock()
                    .unwrap()
                    .insert(key, validator.clone());
                validator
            }
        };
        let errors: Vec<String> = validator
            .iter_errors(instance)
            .map(|error| {
                let at = error.instance_path().to_string();
                let at = if at.is_empty() {
                    "(the body)".to_owned()
                } else {
                    at
                };
                format!("  at {at}: {error}")
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("\n"))
        }
    }
}

/// Response headers a client acts on: an answer that sends one must document it.
const CLIENT_HEADERS: [&str; 5] = [
    "etag",
    "location",
    "retry-after",
    "idempotent-replayed",
    "x-request-id",
];

/// The suffix of a component's copy that is left open, for use in `allOf`.
const OPEN: &str = "__open";

/// The schema with no room for members it does not name: the document leaves objects open
/// (clients should ignore members added later), but the service must send no member the
/// document does not describe. Every object schema that lists its members and has no
/// `additionalProperties` gets
/// `unevaluatedProperties: false`, except the members of an `allOf`, which the `allOf`
/// itself closes (a member closed on its own would refuse its siblings' members); a
/// referenced member is its component's open copy.
fn close(schema: &Value, closed: bool) -> Value {
    let Some(object) = schema.as_object() else {
        return schema.clone();
    };
    let mut object = object.clone();
    for key in ["properties", "patternProperties"] {
        if let Some(Value::Object(properties)) = object.get_mut(key) {
            for property in properties.values_mut() {
                *property = close(property, true);
            }
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(inner @ Value::Object(_)) = object.get_mut(key) {
            *inner = close(inner, true);
        }
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(Value::Array(members)) = object.get_mut(key) {
            for member in members {
                *member = close(member, closed);
            }
        }
    }
    let mut composed = false;
    if let Some(Value::Array(members)) = object.get_mut("allOf") {
        composed = true;
        for member in members {
            *member = match member["$ref"].as_str() {
                Some(reference) => json!({"$ref": format!("{reference}{OPEN}")}),
                None => close(member, false),
            };
        }
    }
    // An object whose members the document does not list is free-form (any JSON object).
    let is_object = object.contains_key("properties");
    if closed
        && (is_object || composed)
        && !object.contains_key("additionalProperties")
        && !object.contains_key("unevaluatedProperties")
    {
        object.insert("unevaluatedProperties".to_owned(), json!(false));
    }
    Value::Object(object)
}

fn matches(template: &[Option<String>], path: &[&str]) -> bool {
    template.len() == path.len()
        && template.iter().zip(path).all(|(t, p)| match t {
            Some(fixed) => fixed == p,
            None => !p.is_empty(),
        })
}

/// `text/csv; charset=utf-8` → `text/csv`.
fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

fn is_json(essence: &str) -> bool {
    essence == "application/json" || essence.ends_with("+json")
}

fn excerpt(body: &str) -> String {
    match body.char_indices().nth(2000) {
        Some((at, _)) => format!("{}…", &body[..at]),
        None => body.to_owned(),
    }
}

// ---- the checker itself ---------------------------------------------------------------

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.insert(*name, value.parse().unwrap());
    }
    map
}

const JSON: (&str, &str) = ("content-type", "application/json");
const REQUEST_ID: (&str, &str) = ("x-request-id", "0b7e4c52-test");

#[test]
fn a_field_of_the_wrong_type_is_named_by_its_path() {
    let body = json!({"status": 1}).to_string();
    let error = check(
        &Method::GET,
        "/healthz",
        StatusCode::OK,
        &headers(&[JSON, REQUEST_ID]),
        &body,
    )
    .unwrap_err();
    assert!(error.contains("GET /healthz answered 200"), "{error}");
    assert!(error.contains("at /status"), "{error}");
}

#[test]
fn a_member_the_document_does_not_name_fails() {
    let key = json!({
        "id": "0b7e4c52-1111-4a3a-9a53-5f3b2c1d0e9f", "event_id": "0b7e4c52-1111-4a3a-9a53-5f3b2c1d0e9f",
        "name": "Принтер", "scopes": ["badges:print"], "key_prefix": "rgk_x",
        "created_at": "2026-11-20T08:00:00Z", "last_used_at": null, "revoked_at": null,
        "key": "rgk_x",
    });
    let ok = check(
        &Method::POST,
        "/api/v1/events/a/api-keys",
        StatusCode::CREATED,
        &headers(&[JSON, REQUEST_ID]),
        &key.to_string(),
    );
    let mut extra = key.clone();
    extra["secret"] = json!("rgk_y");
    let error = check(
        &Method::POST,
        "/api/v1/events/a/api-keys",
        StatusCode::CREATED,
        &headers(&[JSON, REQUEST_ID]),
        &extra.to_string(),
    )
    .unwrap_err();

    assert_eq!(ok, Ok(()));
    assert!(error.contains("secret"), "{error}");
}

#[test]
fn a_missing_required_field_fails() {
    let page = json!({"items": [{"id": "0b7e4c52-1111-4a3a-9a53-5f3b2c1d0e9f"}]}).to_string();
    let error = check(
        &Method::GET,
        "/api/v1/events/a/venues?limit=5",
        StatusCode::OK,
        &headers(&[JSON, REQUEST_ID]),
        &page,
    )
    .unwrap_err();
    assert!(
        error.contains("GET /api/v1/events/{event}/venues answered 200"),
        "{error}"
    );
    assert!(error.contains("at /items/0"), "{error}");
    assert!(error.contains("\"name\" is a required property"), "{error}");
}

#[test]
fn an_undocumented_status_fails() {
    let error = check(
        &Method::GET,
        "/healthz",
        StatusCode::IM_A_TEAPOT,
        &headers(&[JSON, REQUEST_ID]),
        "{}",
    )
    .unwrap_err();
    assert!(
        error.contains("answered 418, which the document does not list"),
        "{error}"
    );
}

#[test]
fn a_required_header_must_be_sent() {
    let error = check(
        &Method::GET,
        "/healthz",
        StatusCode::OK,
        &headers(&[JSON]),
        r#"{"status": "ok"}"#,
    )
    .unwrap_err();
    assert!(error.contains("X-Request-Id is missing"), "{error}");
}

#[test]
fn a_header_clients_act_on_must_be_documented_where_it_is_sent() {
    let error = check(
        &Method::GET,
        "/healthz",
        StatusCode::OK,
        &headers(&[JSON, REQUEST_ID, ("etag", "\"x\"")]),
        r#"{"status": "ok"}"#,
    )
    .unwrap_err();
    assert!(error.contains("etag is sent but not documented"), "{error}");
}

#[test]
fn an_undocumented_content_type_fails() {
    let error = check(
        &Method::GET,
        "/healthz",
        StatusCode::OK,
        &headers(&[("content-type", "text/html"), REQUEST_ID]),
        "<p>ok</p>",
    )
    .unwrap_err();
    assert!(error.contains("Content-Type text/html"), "{error}");
}

#[test]
fn fixed_segments_win_over_parameters() {
    let contract = &*CONTRACT;
    let operation = contract
        .operation(&Method::POST, "/api/v1/events/a/registrations/manual")
        .unwrap();
    assert_eq!(
        operation.template,
        "/api/v1/events/{event}/registrations/manual"
    );
}

#[test]
fn unknown_routes_must_answer_a_problem() {
    let error = check(
        &Method::GET,
        "/api/v1/nothing-here",
        StatusCode::NOT_FOUND,
        &headers(&[("content-type", "text/plain"), REQUEST_ID]),
        "not found",
    )
    .unwrap_err();
    assert!(error.contains("not a problem"), "{error}");
}
