//! Request bodies and query strings, read by one strict rule for every route.
//!
//! A JSON body ([`Body`]) must be sent as `application/json` (or another `+json` type), or the
//! answer is 415 `unsupported_media_type`; it must be JSON (400 `malformed_json`), name no
//! member twice at any depth, have no member its type does not know, and hold values of the
//! right types and ranges (422 `invalid_body`). A 422 names the offending member by its JSON
//! path in `errors[]`, in the shape validation failures use, so that a frontend can put the
//! message next to the right input. [`OptionalBody`] is the same, except that an empty body
//! or `null` means "none" (actix-web's `Option<Json<T>>` turns any bad body into "none").
//! A query string ([`Query`]) that does not fit answers 400 `invalid_query`, naming the
//! parameter.
//!
//! Messages say what was expected and never repeat the value that was sent: a password
//! typed as a number or an address put in the wrong member must not come back in the answer,
//! nor reach the logs (which record the problem's code and field paths only).

use std::collections::HashSet;
use std::fmt;
use std::ops::Deref;

use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use actix_web::http::StatusCode;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::future::{LocalBoxFuture, Ready, ready};
use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::error::{ApiError, ApiResult, FieldError};
use crate::state::AppState;

/// A JSON request body, read strictly (see the module's documentation).
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<T> Body<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> Deref for Body<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for Body<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let content_type = check_content_type(req);
        let bytes = read(req, payload);
        Box::pin(async move {
            content_type?;
            Ok(Body(from_slice(&bytes.await?)?))
        })
    }
}

/// A JSON request body that may be left out: an empty body (or JSON `null`, as the OpenAPI
/// document's `oneOf [T, null]` allows) is `None`; any other body follows the rules of
/// [`Body`].
#[derive(Debug)]
pub struct OptionalBody<T>(pub Option<T>);

impl<T> OptionalBody<T> {
    pub fn into_inner(self) -> Option<T> {
        self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for OptionalBody<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let content_type = check_content_type(req);
        let bytes = read(req, payload);
        Box::pin(async move {
            let bytes = bytes.await?;
            if bytes.is_empty() {
                return Ok(OptionalBody(None));
            }
            content_type?;
            Ok(OptionalBody(from_slice(&bytes)?))
        })
    }
}

/// Query parameters, read with the parameter's name in any error.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T> Query<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> Deref for Query<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned> FromRequest for Query<T> {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(from_query(req.query_string()).map(Query))
    }
}

/// Parses a query string into `T`; 400 `invalid_query` naming the parameter otherwise.
pub fn from_query<T: DeserializeOwned>(query: &str) -> ApiResult<T> {
    let deserializer =
        serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let problem = describe(&error.path().to_string(), &error.inner().to_string());
        problem.into_error(StatusCode::BAD_REQUEST, "invalid_query", "the query")
    })
}

fn check_content_type(req: &HttpRequest) -> ApiResult<()> {
    let is_json = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<actix_web::mime::Mime>().ok())
        .is_some_and(|mime| {
            use actix_web::mime::{APPLICATION, JSON};
            mime.type_() == APPLICATION && (mime.subtype() == JSON || mime.suffix() == Some(JSON))
        });
    if is_json {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the request body must be JSON (Content-Type: application/json)",
        ))
    }
}

/// Reads the whole body, up to the configured size (`REGISTRAR_MAX_BODY_BYTES`).
fn read(
    req: &HttpRequest,
    payload: &mut Payload,
) -> impl std::future::Future<Output = ApiResult<web::Bytes>> + 'static {
    let limit = req
        .app_data::<web::Data<AppState>>()
        .map(|state| state.config.max_body_bytes);
    let bytes = web::Bytes::from_request(req, payload);
    async move {
        bytes
            .await
            .map_err(|error| match error.as_error::<PayloadError>() {
                Some(PayloadError::Overflow) => ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    match limit {
                        Some(limit) => format!("the request body is larger than {limit} bytes"),
                        None => "the request body is too large".to_owned(),
                    },
                ),
                _ => ApiError::bad_request("bad_request", "the request body could not be read"),
            })
    }
}

/// Parses a JSON document into `T` by the rules of [`Body`].
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    // First the syntax, and no member twice: serde would keep the last of two (or refuse it
    // without saying where, for some types).
    let malformed = |error: &serde_json::Error| {
        ApiError::bad_request(
            "malformed_json",
            format!("the request body is not valid JSON: {error}"),
        )
    };
    let mut json = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize::<_, UniqueMembers>(&mut json).map_err(|error| {
        if error.inner().is_data() {
            invalid_body(&error.path().to_string(), &error.inner().to_string())
        } else if error.inner().to_string().starts_with("number out of range") {
            // Valid JSON (its numbers have no bounds) that a double cannot hold: a value out
            // of range, as for any other member. serde_json tells it only by its message.
            invalid_body(&error.path().to_string(), "is a number out of range")
        } else {
            malformed(error.inner())
        }
    })?;
    json.end().map_err(|error| malformed(&error))?;
    // The syntax is known to be right, so any error now is about the values.
    let mut json = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(ObjectsOnly(&mut json))
        .map_err(|error| invalid_body(&error.path().to_string(), &error.inner().to_string()))
}

/// Reads `T` from a JSON value that came through [`Body`] (so its members are unique).
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> ApiResult<T> {
    serde_path_to_error::deserialize(ObjectsOnly(value))
        .map_err(|error| invalid_body(&error.path().to_string(), &error.inner().to_string()))
}

fn invalid_body(path: &str, message: &str) -> ApiError {
    describe(path, message).into_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", "the body")
}

/// What was wrong, and where: the member's path (empty for the whole document) and a
/// message that does not repeat the value.
#[derive(Debug, PartialEq, Eq)]
struct Described {
    field: String,
    message: String,
}

impl Described {
    fn into_error(self, status: StatusCode, code: &'static str, whole: &str) -> ApiError {
        if self.field.is_empty() {
            return ApiError::new(status, code, format!("{whole} {}", self.message));
        }
        let detail = format!("{}: {}", self.field, self.message);
        ApiError::new(status, code, detail).with_errors(vec![FieldError {
            field: self.field,
            message: self.message,
        }])
    }
}

/// The longest field path repeated back (paths hold member names the client chose).
const MAX_FIELD: usize = 200;

/// Turns serde's message (which quotes the offending value) into one that does not.
fn describe(path: &str, message: &str) -> Described {
    let path = if path == "." { "" } else { path };
    let message = strip_position(message);
    let named = |name: &str, message: &str| Described {
        field: truncate(&join(path, name)),
        message: message.to_owned(),
    };
    if let Some(name) = quoted_after(message, "missing field ") {
        return named(name, "is required");
    }
    if let Some(name) = quoted_after(message, "duplicate field ") {
        return named(name, "is given more than once");
    }
    let at_path = |message: String| Described {
        field: truncate(path),
        message,
    };
    if message == DUPLICATE {
        return at_path("is given more than once".to_owned());
    }
    if message.starts_with("unknown field ") {
        // The path already ends with the unknown member.
        return at_path("is not a known field".to_owned());
    }
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        return at_path(match rest.rfind(", expected ") {
            Some(at) => format!("must be {}", &rest[at + ", expected ".len()..]),
            None => "is not one of the allowed values".to_owned(),
        });
    }
    for prefix in ["invalid type: ", "invalid value: ", "invalid length "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            // The expectation comes last and names a type, never the value.
            return at_path(match rest.rfind(", expected ") {
                Some(at) => format!("must be {}", expected(&rest[at + ", expected ".len()..])),
                None => "has the wrong type".to_owned(),
            });
        }
    }
    if message.starts_with("UUID parsing failed") {
        return at_path("must be a UUID".to_owned());
    }
    // Our own messages, and those of the few types we take from other crates: none repeat
    // the value.
    at_path(message.to_owned())
}

/// serde's names of expected types, in JSON's words.
fn expected(what: &str) -> String {
    let integer = |min: i128, max: i128| format!("an integer from {min} to {max}");
    match what {
        "a sequence" => "an array".to_owned(),
        "a map" | "map" => "an object".to_owned(),
        "i8" => integer(i8::MIN.into(), i8::MAX.into()),
        "i16" => integer(i16::MIN.into(), i16::MAX.into()),
        "i32" => integer(i32::MIN.into(), i32::MAX.into()),
        "i64" => integer(i64::MIN.into(), i64::MAX.into()),
        "u8" => integer(0, u8::MAX.into()),
        "u16" => integer(0, u16::MAX.into()),
        "u32" => integer(0, u32::MAX.into()),
        "u64" => integer(0, u64::MAX.into()),
        "f32" | "f64" => "a number".to_owned(),
        "a UUID string" => "a UUID".to_owned(),
        other if other.starts_with("struct ") => "an object".to_owned(),
        other => other.to_owned(),
    }
}

/// serde_json appends where in the text the error is; the path says it better.
fn strip_position(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(at)
            if message[at + " at line ".len()..]
                .split(" column ")
                .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) =>
        {
            &message[..at]
        }
        _ => message,
    }
}

/// `name` in "`prefix``name`…".
fn quoted_after<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = message.strip_prefix(prefix)?.strip_prefix('`')?;
    rest.find('`').map(|end| &rest[..end])
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

fn truncate(field: &str) -> String {
    match field.char_indices().nth(MAX_FIELD) {
        Some((at, _)) => format!("{}…", &field[..at]),
        None => field.to_owned(),
    }
}

/// Walks a JSON document and refuses an object that names a member twice.
struct UniqueMembers;

impl<'de> de::Deserialize<'de> for UniqueMembers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UniqueMembers)
    }
}

/// Fails as the value of a member given twice, so that the error's path ends with it.
struct Repeated;

impl<'de> de::DeserializeSeed<'de> for Repeated {
    type Value = UniqueMembers;

    fn deserialize<D: Deserializer<'de>>(self, _: D) -> Result<UniqueMembers, D::Error> {
        Err(de::Error::custom(DUPLICATE))
    }
}

const DUPLICATE: &str = "duplicate member";

impl<'de> Visitor<'de> for UniqueMembers {
    type Value = UniqueMembers;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_unit<E>(self) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<UniqueMembers>()?.is_some() {}
        Ok(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if seen.insert(key) {
                map.next_value::<UniqueMembers>()?;
            } else {
                map.next_value_seed(Repeated)?;
            }
        }
        Ok(self)
    }
}

/// A deserializer that gives structs objects only. serde reads a struct from an array too
/// (its members by position), which would let `["a@b.c", "secret"]` pass for a login.
struct ObjectsOnly<D>(D);

/// Forwards `deserialize_*` to the wrapped deserializer, with the visitor wrapped.
macro_rules! forward {
    ($($method:ident($($arg:ident: $ty:ty),*)),* $(,)?) => {
        $(
            fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
                self.0.$method($($arg,)* Wrap(visitor))
            }
        )*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for ObjectsOnly<D> {
    type Error = D::Error;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_map(Wrap(visitor))
    }

    forward!(
        deserialize_any(),
        deserialize_bool(),
        deserialize_i8(),
        deserialize_i16(),
        deserialize_i32(),
        deserialize_i64(),
        deserialize_i128(),
        deserialize_u8(),
        deserialize_u16(),
        deserialize_u32(),
        deserialize_u64(),
        deserialize_u128(),
        deserialize_f32(),
        deserialize_f64(),
        deserialize_char(),
        deserialize_str(),
        deserialize_string(),
        deserialize_bytes(),
        deserialize_byte_buf(),
        deserialize_option(),
        deserialize_unit(),
        deserialize_unit_struct(name: &'static str),
        deserialize_newtype_struct(name: &'static str),
        deserialize_seq(),
        deserialize_tuple(len: usize),
        deserialize_tuple_struct(name: &'static str, len: usize),
        deserialize_map(),
        deserialize_enum(name: &'static str, variants: &'static [&'static str]),
        deserialize_identifier(),
        deserialize_ignored_any(),
    );

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

/// A visitor whose nested values are read through [`ObjectsOnly`] too.
struct Wrap<V>(V);

macro_rules! visit {
    ($($method:ident($ty:ty)),* $(,)?) => {
        $(
            fn $method<E: de::Error>(self, value: $ty) -> Result<V::Value, E> {
                self.0.$method(value)
            }
        )*
    };
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)
    }

    visit!(
        visit_bool(bool),
        visit_i8(i8),
        visit_i16(i16),
        visit_i32(i32),
        visit_i64(i64),
        visit_i128(i128),
        visit_u8(u8),
        visit_u16(u16),
        visit_u32(u32),
        visit_u64(u64),
        visit_u128(u128),
        visit_f32(f32),
        visit_f64(f64),
        visit_char(char),
        visit_str(&str),
        visit_borrowed_str(&'de str),
        visit_string(String),
        visit_bytes(&[u8]),
        visit_borrowed_bytes(&'de [u8]),
        visit_byte_buf(Vec<u8>),
    );

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.0.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.0.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<V::Value, D::Error> {
        self.0.visit_some(ObjectsOnly(deserializer))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<V::Value, D::Error> {
        self.0.visit_newtype_struct(ObjectsOnly(deserializer))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.0.visit_seq(WrapSeq(seq))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.0.visit_map(WrapMap(map))
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.0.visit_enum(data)
    }
}

struct WrapSeed<S>(S);

impl<'de, S: de::DeserializeSeed<'de>> de::DeserializeSeed<'de> for WrapSeed<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(ObjectsOnly(deserializer))
    }
}

struct WrapSeq<A>(A);

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for WrapSeq<A> {
    type Error = A::Error;

    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.0.next_element_seed(WrapSeed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

struct WrapMap<A>(A);

impl<'de, A: MapAccess<'de>> MapAccess<'de> for WrapMap<A> {
    type Error = A::Error;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.0.next_key_seed(seed)
    }

    fn next_value_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<T::Value, A::Error> {
        self.0.next_value_seed(WrapSeed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[expect(dead_code, reason = "only parsed")]
    struct Login {
        email: String,
        password: secrecy::SecretString,
        #[serde(default)]
        tries: Option<i32>,
        #[serde(default)]
        tags: Vec<Tag>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[expect(dead_code, reason = "only parsed")]
    struct Tag {
        name: String,
    }

    fn problem(body: &str) -> serde_json::Value {
        let error = from_slice::<Login>(body.as_bytes()).unwrap_err();
        serde_json::to_value(error.problem()).unwrap()
    }

    #[test]
    fn type_errors_name_the_member_and_not_the_value() {
        let body = problem(r#"{"email": "a@b.c", "password": 735190066}"#);
        assert_eq!(body["code"], "invalid_body");
        assert_eq!(
            body["errors"],
            serde_json::json!([{"field": "password", "message": "must be a string"}])
        );
        assert_eq!(body["detail"], "password: must be a string");
    }

    #[test]
    fn members_are_named_by_their_path() {
        let body =
            problem(r#"{"email": "a", "password": "p", "tags": [{"name": "x"}, {"name": 1}]}"#);
        assert_eq!(body["errors"][0]["field"], "tags[1].name");
        let body =
            problem(r#"{"email": "a", "password": "p", "tags": [{"name": "x", "name": "y"}]}"#);
        assert_eq!(body["errors"][0]["field"], "tags[0].name");
        assert_eq!(body["errors"][0]["message"], "is given more than once");
        let body = problem(r#"{"email": "a"}"#);
        assert_eq!(body["errors"][0]["field"], "password");
        assert_eq!(body["errors"][0]["message"], "is required");
        let body = problem(r#"{"email": "a", "password": "p", "tries": 1e40}"#);
        assert_eq!(
            body["errors"][0]["message"],
            "must be an integer from -2147483648 to 2147483647"
        );
    }

    #[test]
    fn the_wrong_kind_of_document_is_not_about_a_member() {
        let body = problem("[1, 2]");
        assert_eq!(body["detail"], "the body must be an object");
        assert!(body.get("errors").is_none(), "{body}");
    }

    #[test]
    fn objects_are_not_read_from_arrays() {
        let body = problem(r#"["a@b.c", "secret"]"#);
        assert_eq!(body["detail"], "the body must be an object");
        let body = problem(r#"{"email": "a", "password": "p", "tags": [["x"]]}"#);
        assert_eq!(body["errors"][0]["field"], "tags[0]");
        assert_eq!(body["errors"][0]["message"], "must be an object");
    }

    #[test]
    fn a_number_too_large_for_a_double_is_out_of_range_not_a_syntax_error() {
        let body = problem(r#"{"email": "a@b.c", "password": "p", "tries": [1, 1e400]}"#);
        assert_eq!(body["code"], "invalid_body", "{body}");
        assert_eq!(body["errors"][0]["field"], "tries[1]");
        assert_eq!(body["errors"][0]["message"], "is a number out of range");
        let body = problem(r#"{"email": "a@b.c", "password": "p", "tries": -1e400}"#);
        assert_eq!(body["errors"][0]["field"], "tries");
    }

    #[test]
    fn syntax_errors_are_400() {
        for text in ["{", "{\"email\": }", "{} {}", ""] {
            let error = from_slice::<Login>(text.as_bytes()).unwrap_err();
            assert_eq!(error.code(), "malformed_json", "{text}");
        }
    }

    #[test]
    fn neither_the_answer_nor_the_log_line_repeats_a_password() {
        let secret = "correct-horse-735190066";
        for body in [
            format!(r#"{{"email": "a@b.c", "password": ["{secret}"]}}"#),
            format!(r#"{{"email": "a@b.c", "password": {{"{secret}": 1}}}}"#),
            r#"{"email": "a@b.c", "password": 735190066}"#.to_owned(),
            format!(r#"{{"email": "a@b.c", "password": "x", "tries": "{secret}"}}"#),
        ] {
            let error = from_slice::<Login>(body.as_bytes()).unwrap_err();
            let answer = serde_json::to_string(&error.problem()).unwrap();
            // What the request log records of an error: its Display and Debug forms.
            let logged = format!("{error} {error:?}");
            for text in [&answer, &logged] {
                assert!(!text.contains("735190066"), "{text}");
            }
            assert!(logged.contains("invalid_body"), "{logged}");
        }
    }

    /// What the request log records of a refused body, through the service's own span.
    #[actix_web::test]
    async fn the_request_log_names_the_member_and_not_the_value() {
        use std::sync::{Arc, Mutex};

        use actix_web::{App, HttpResponse, test, web};
        use tracing_subscriber::fmt::format::FmtSpan;

        #[derive(Clone, Default)]
        struct Captured(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Captured {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_span_events(FmtSpan::CLOSE)
            .with_max_level(tracing::Level::TRACE)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let app = test::init_service(
            App::new()
                .wrap(tracing_actix_web::TracingLogger::<
                    crate::telemetry::RequestSpan,
                >::new())
                .route(
                    "/login",
                    web::post().to(|_: Body<Login>| async { HttpResponse::NoContent().finish() }),
                ),
        )
        .await;

        let answer = test::call_service(
            &app,
            test::TestRequest::post()
                .uri("/login")
                .insert_header(("content-type", "application/json"))
                .set_payload(r#"{"email": "a@b.c", "password": 735190066}"#)
                .to_request(),
        )
        .await;

        assert_eq!(answer.status(), 422);
        let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(
            log.contains("invalid_body") && log.contains("password"),
            "{log}"
        );
        assert!(!log.contains("735190066"), "{log}");
    }

    #[test]
    fn query_errors_name_the_parameter() {
        #[derive(Debug, Deserialize)]
        #[expect(dead_code, reason = "only parsed")]
        struct Params {
            limit: Option<i64>,
        }
        let error = from_query::<Params>("limit=many").unwrap_err();
        let body = serde_json::to_value(error.problem()).unwrap();
        assert_eq!(body["code"], "invalid_query");
        assert_eq!(body["status"], 400);
        assert_eq!(body["errors"][0]["field"], "limit");
        assert!(body["detail"].as_str().unwrap().starts_with("limit: "));
    }

    #[test]
    fn positions_are_left_out_of_messages() {
        assert_eq!(
            strip_position("expected value at line 1 column 10"),
            "expected value"
        );
        assert_eq!(strip_position("at line one"), "at line one");
    }
}
