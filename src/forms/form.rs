//! The form of an event as one value: its categories, questions and consents, the JSON Schema
//! (2020-12) of the registration body built from them, and the check of a body against that
//! same schema with the `jsonschema` crate, so that what a frontend validates with an
//! off-the-shelf library and what the server accepts cannot differ. Problems name the field
//! (`answers.transfer`, `consents.photos`, `category`) and never repeat the value sent.

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};

use diesel_async::AsyncPgConnection;
use jsonschema::error::ValidationErrorKind;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::categories::{self, Category};
use super::consents::{self, CurrentConsent};
use super::questions::{self, MULTILINE_MAX, Question, QuestionType, TEXT_MAX};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::validation::rules;

/// Who registers: the public sees public categories only; organisers may use any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    Public,
    Organiser,
}

/// A choice option with limited places, as chosen in an answer (to name it when it is full).
#[derive(Debug, Clone)]
pub struct LimitedOption {
    pub id: Uuid,
    pub question: String,
    pub option: String,
}

/// An event's form, loaded.
#[derive(Debug, Clone)]
pub struct Form {
    pub categories: Vec<Category>,
    pub questions: Vec<Question>,
    pub consents: Vec<CurrentConsent>,
    /// The schema of each audience, compiled when first needed.
    compiled: Arc<Compiled>,
}

#[derive(Debug, Default)]
struct Compiled {
    public: OnceLock<jsonschema::Validator>,
    organiser: OnceLock<jsonschema::Validator>,
}

/// ISO 3166-1 alpha-2 codes (from Debian's iso-codes), the answers a country question takes.
pub const COUNTRIES: &[&str] = &[
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ",
    "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS",
    "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN",
    "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM", "DO", "DZ", "EC", "EE",
    "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA", "GB", "GD", "GE", "GF",
    "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK", "HM",
    "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM",
    "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC",
    "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK",
    "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA",
    "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG",
    "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW",
    "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS",
    "ST", "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO",
    "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI",
    "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW",
];

/// What a phone number's pattern asks, in messages.
const PHONE_MESSAGE: &str =
    "must be a phone number: digits, spaces, + - ( ), at most 50 characters";
const SINGLE_LINE_MESSAGE: &str = "must be a single line without control characters";

impl Form {
    pub fn new(
        categories: Vec<Category>,
        questions: Vec<Question>,
        consents: Vec<CurrentConsent>,
    ) -> Form {
        Form {
            categories,
            questions,
            consents,
            compiled: Arc::default(),
        }
    }

    pub async fn load(conn: &mut AsyncPgConnection, event_id: Uuid) -> ApiResult<Form> {
        Ok(Form::new(
            categories::of_event(conn, event_id).await?,
            questions::of_event(conn, event_id).await?,
            consents::current(conn, event_id).await?,
        ))
    }

    pub fn question(&self, key: &str) -> Option<&Question> {
        self.questions.iter().find(|q| q.key() == key)
    }

    /// The JSON Schema of the answer to one question.
    pub fn answer_schema(q: &Question) -> Value {
        let r = &q.row;
        let mut schema = match r.kind {
            // A text answer is a line, as a name is; either kind says something.
            QuestionType::Text => rules::line(r.max_length.unwrap_or(TEXT_MAX).unsigned_abs()),
            QuestionType::Multiline => {
                rules::lines(r.max_length.unwrap_or(MULTILINE_MAX).unsigned_abs())
            }
            QuestionType::Number => {
                let mut s = json!({"type": "number"});
                if let Some(min) = r.min {
                    s["minimum"] = limit(min);
                }
                if let Some(max) = r.max {
                    s["maximum"] = limit(max);
                }
                s
            }
            QuestionType::YesNo => json!({"type": "boolean"}),
            QuestionType::SingleChoice => {
                json!({"type": "string", "enum": q.options.iter().map(|o| &o.key).collect::<Vec<_>>()})
            }
            QuestionType::MultipleChoice => json!({
                "type": "array",
                "items": {"enum": q.options.iter().map(|o| &o.key).collect::<Vec<_>>()},
                "uniqueItems": true,
                "minItems": 1,
                "maxItems": r.max_choices.map_or(q.options.len() as i64, i64::from),
            }),
            QuestionType::Date => rules::date(),
            QuestionType::Phone => rules::phone(),
            QuestionType::Email => rules::email(),
            QuestionType::Country => json!({"type": "string", "enum": COUNTRIES}),
        };
        schema["title"] = json!(r.label_ru);
        if let Some(help) = &r.help_ru {
            schema["description"] = json!(help);
        }
        schema
    }

    /// The JSON Schema (2020-12) of the body of `POST /events/{event}/registrations` (for
    /// the public) or `…/registrations/manual` (for organisers; without `over_capacity`).
    pub fn schema(&self, audience: Audience) -> Value {
        self.schema_of(audience, true)
    }

    /// The schema, with or without its requirement of the consents (`registering`: they are
    /// asked when registering, and not again when a registration changes).
    fn schema_of(&self, audience: Audience, registering: bool) -> Value {
        let codes: Vec<&str> = self
            .categories
            .iter()
            .filter(|c| audience == Audience::Organiser || c.public)
            .map(|c| c.code.as_str())
            .collect();
        let mut answers = Map::new();
        let mut required_answers = Vec::new();
        let mut rules = Vec::new();
        for q in &self.questions {
            answers.insert(q.key().to_owned(), Self::answer_schema(q));
            let mut conditions = Vec::new();
            if let Some(categories) = q.categories() {
                conditions.push(json!({
                    "properties": {"category": {"enum": categories}},
                    "required": ["category"],
                }));
            }
            if let Some(condition) = q.condition() {
                conditions.push(json!({
                    "properties": {"answers": {
                        "properties": {condition.question.clone(): {"const": condition.equals}},
                        "required": [condition.question],
                    }},
                    "required": ["answers"],
                }));
            }
            if conditions.is_empty() {
                if q.row.required {
                    required_answers.push(q.key().to_owned());
                }
                continue;
            }
            let then = if q.row.required {
                json!({"properties": {"answers": {"required": [q.key()]}}, "required": ["answers"]})
            } else {
                json!(true)
            };
            rules.push(json!({
                "if": {"allOf": conditions},
                "then": then,
                "else": {"properties": {"answers": {"properties": {q.key(): false}}}},
            }));
        }
        let mut consent_properties = Map::new();
        let mut required_consents = Vec::new();
        for c in &self.consents {
            // Accepted: `true`, or the number of the version the participant was shown,
            // which must be the one in force (a text changed meanwhile is shown again).
            let schema = if c.required {
                required_consents.push(c.key.clone());
                json!({"enum": [true, c.version], "title": c.text_ru})
            } else {
                json!({"enum": [true, false, c.version], "title": c.text_ru})
            };
            consent_properties.insert(c.key.clone(), schema);
        }
        let mut required = vec!["full_name", "email", "category"];
        if !required_answers.is_empty() {
            required.push("answers");
        }
        if registering && !required_consents.is_empty() {
            // The earlier `"consent": true` stands for `consents: {"personal_data": true}`:
            // enough when that is the only consent required.
            if required_consents == [consents::PERSONAL_DATA] {
                rules.push(json!({
                    "if": {"not": {"required": ["consent"]}},
                    "then": {"required": ["consents"]},
                }));
            } else {
                required.push("consents");
            }
        }
        let mut schema = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {
                "full_name": rules::line(200),
                "email": rules::email_field(),
                "organisation": rules::optional_line(300),
                "position": rules::optional_line(300),
                "city": rules::optional_line(200),
                "phone": rules::phone_field(),
                "category": {"type": "string", "enum": codes},
                "consents": {
                    "type": "object",
                    "properties": consent_properties,
                    "required": required_consents,
                    "additionalProperties": false,
                },
                "consent": {
                    "type": "boolean",
                    "const": true,
                    "description": "The earlier form of consents: {\"personal_data\": true}, \
                        when consents is not sent",
                },
                "session_ids": {
                    "type": "array",
                    "items": rules::uuid(),
                    "maxItems": 50,
                    "uniqueItems": true,
                },
                "language": {"enum": ["ru", "en", null]},
                "answers": {
                    "type": "object",
                    "properties": answers,
                    "required": required_answers,
                    "additionalProperties": false,
                },
            },
            "required": required,
            "additionalProperties": false,
        });
        if !rules.is_empty() {
            schema["allOf"] = Value::Array(rules);
        }
        schema
    }

    /// Checks a registration body, as sent, against the form's schema.
    pub fn check(&self, body: &Value, audience: Audience) -> ApiResult<()> {
        fail_on(self.problems(self.validator(audience)?, body))
    }

    /// Checks the body a registration would have after a change (its details, category and
    /// answers) by the same schema, less its requirement of `consents`: they were recorded
    /// when registering and are not asked again.
    pub fn check_change(&self, body: &Value, audience: Audience) -> ApiResult<()> {
        fail_on(self.problems(&compile(&self.schema_of(audience, false))?, body))
    }

    /// What [`Form::check`] finds wrong with a body, field by field, with a `validator` of
    /// this form.
    pub fn problems(&self, validator: &jsonschema::Validator, body: &Value) -> Vec<FieldError> {
        let mut errors: Vec<FieldError> = Vec::new();
        for error in validator.iter_errors(body) {
            for (field, message) in self.describe(&error) {
                if !errors.iter().any(|e| e.field == field) {
                    errors.push(FieldError { field, message });
                }
            }
        }
        // Beyond the schema, as for the registration's own address: a domain IDNA accepts.
        for q in self
            .questions
            .iter()
            .filter(|q| q.row.kind == QuestionType::Email)
        {
            let field = format!("answers.{}", q.key());
            if let Some(address) = body["answers"][q.key()].as_str()
                && !rules::domain_is_valid(address)
                && !errors.iter().any(|e| e.field == field)
            {
                errors.push(FieldError {
                    field,
                    message: "must be an email address".to_owned(),
                });
            }
        }
        errors
    }

    /// The audience's schema, compiled, to check many bodies with [`Form::problems`] (an
    /// import's rows).
    pub fn compiled(&self, audience: Audience) -> ApiResult<jsonschema::Validator> {
        compile(&self.schema(audience))
    }

    /// The audience's schema, compiled once per form.
    fn validator(&self, audience: Audience) -> ApiResult<&jsonschema::Validator> {
        let slot = match audience {
            Audience::Public => &self.compiled.public,
            Audience::Organiser => &self.compiled.organiser,
        };
        if let Some(validator) = slot.get() {
            return Ok(validator);
        }
        let validator = compile(&self.schema(audience))?;
        Ok(slot.get_or_init(|| validator))
    }

    /// The field a schema error is about, and what is wrong, without the value sent.
    fn describe(&self, error: &jsonschema::ValidationError<'_>) -> Vec<(String, String)> {
        let pointer = error.instance_path().as_str().to_owned();
        let segments: Vec<String> = pointer
            .split('/')
            .skip(1)
            .map(|s| s.replace("~1", "/").replace("~0", "~"))
            .collect();
        let field = field_of(&segments);
        let question = match segments.as_slice() {
            [answers, key, ..] if answers == "answers" => self.question(key),
            _ => None,
        };
        let single = |message: String| vec![(field.clone(), message)];
        match error.kind() {
            ValidationErrorKind::Required { property } => {
                let name = property.as_str().unwrap_or_default();
                let inner = if field.is_empty() {
                    name.to_owned()
                } else {
                    format!("{field}.{name}")
                };
                let message = match segments.first().map(String::as_str) {
                    Some("consents") => "must be accepted to register",
                    _ => "is required",
                };
                vec![(inner, message.to_owned())]
            }
            ValidationErrorKind::AdditionalProperties { unexpected } => unexpected
                .iter()
                .map(|name| {
                    let message = match field.as_str() {
                        "answers" => "is not a question of this event",
                        "consents" => "is not a consent of this event",
                        _ => "is not a field of this request",
                    };
                    let inner = if field.is_empty() {
                        name.clone()
                    } else {
                        format!("{field}.{name}")
                    };
                    (inner, message.to_owned())
                })
                .collect(),
            ValidationErrorKind::FalseSchema => single(
                "is not asked: the question does not apply to this category, or its condition \
                 is not met"
                    .to_owned(),
            ),
            ValidationErrorKind::Enum { .. } | ValidationErrorKind::Constant { .. }
                if segments.first().is_some_and(|s| s == "consents") =>
            {
                let consent = segments
                    .get(1)
                    .and_then(|key| self.consents.iter().find(|c| &c.key == key));
                single(match consent {
                    Some(c) if error.instance().is_number() => format!(
                        "is not the version in force ({}) of this text: show the participant \
                         the text in force, and send its version (or true)",
                        c.version
                    ),
                    Some(c) if c.required => format!(
                        "must be accepted to register: true, or the version shown ({})",
                        c.version
                    ),
                    _ => "must be true, false or the version shown".to_owned(),
                })
            }
            ValidationErrorKind::Constant { .. } if field == "consent" => {
                single("must be true to register".to_owned())
            }
            ValidationErrorKind::Enum { .. } | ValidationErrorKind::Constant { .. } => {
                single(match (field.as_str(), question.map(|q| q.row.kind)) {
                    ("category", _) => "is not a category open to registration".to_owned(),
                    (_, Some(QuestionType::Country)) => {
                        "must be an ISO 3166-1 alpha-2 country code such as RU".to_owned()
                    }
                    (_, Some(_)) => "is not an option of this question".to_owned(),
                    _ => "is not one of the values allowed".to_owned(),
                })
            }
            ValidationErrorKind::Type { kind } => single(format!(
                "must be {}",
                match kind {
                    jsonschema::error::TypeKind::Single(t) => article(&t.to_string()),
                    jsonschema::error::TypeKind::Multiple(_) => "of another type".to_owned(),
                }
            )),
            ValidationErrorKind::MaxLength { limit } => {
                single(format!("must be at most {limit} characters"))
            }
            ValidationErrorKind::MinLength { .. } => single("must not be empty".to_owned()),
            ValidationErrorKind::Minimum { limit }
            | ValidationErrorKind::ExclusiveMinimum { limit } => {
                single(format!("must be at least {limit}"))
            }
            ValidationErrorKind::Maximum { limit }
            | ValidationErrorKind::ExclusiveMaximum { limit } => {
                single(format!("must be at most {limit}"))
            }
            ValidationErrorKind::MaxItems { limit } => {
                single(format!("must have at most {limit} entries"))
            }
            ValidationErrorKind::MinItems { .. } => {
                single("must choose at least one option".to_owned())
            }
            ValidationErrorKind::UniqueItems => single("must not list an entry twice".to_owned()),
            ValidationErrorKind::Pattern { .. }
            | ValidationErrorKind::Format { .. }
            | ValidationErrorKind::Not { .. } => {
                let not = matches!(error.kind(), ValidationErrorKind::Not { .. });
                single(
                    match (field.as_str(), question.map(|q| q.row.kind)) {
                        (_, Some(QuestionType::Date)) => "must be a date: YYYY-MM-DD",
                        ("phone", _) | (_, Some(QuestionType::Phone)) => PHONE_MESSAGE,
                        ("email", _) | (_, Some(QuestionType::Email)) => "must be an email address",
                        ("full_name", _) if !not => "must not be empty",
                        (_, None) if field.starts_with("session_ids[") => "must be a UUID",
                        _ if not => SINGLE_LINE_MESSAGE,
                        _ => "is not in the form expected",
                    }
                    .to_owned(),
                )
            }
            _ => single("is not valid here".to_owned()),
        }
    }

    /// The options with limited places the answers choose.
    pub fn limited_options(&self, answers: &Value) -> Vec<LimitedOption> {
        let mut chosen = Vec::new();
        for q in &self.questions {
            let picked: Vec<&str> = match answers.get(q.key()) {
                Some(Value::String(key)) => vec![key.as_str()],
                Some(Value::Array(keys)) => keys.iter().filter_map(Value::as_str).collect(),
                _ => continue,
            };
            for o in &q.options {
                if o.capacity.is_some() && picked.contains(&o.key.as_str()) {
                    chosen.push(LimitedOption {
                        id: o.id,
                        question: q.key().to_owned(),
                        option: o.key.clone(),
                    });
                }
            }
        }
        chosen
    }

    /// What the history records of a change of answers: one entry per question whose answer
    /// changed, in the form's order, `{"key", "old", "new"}` (null: not answered). A personal
    /// question's entry (`Question::is_personal`) is `{"key", "personal": true}` alone, as is one for a key the form no
    /// longer has: the change log holds no personal data.
    pub fn answer_changes(&self, old: &Value, new: &Value) -> Vec<Value> {
        let empty = Map::new();
        let old = old.as_object().unwrap_or(&empty);
        let new = new.as_object().unwrap_or(&empty);
        let mut keys: Vec<&str> = self.questions.iter().map(Question::key).collect();
        let mut others: BTreeSet<&str> = old.keys().chain(new.keys()).map(String::as_str).collect();
        others.retain(|key| !keys.contains(key));
        keys.extend(others);
        keys.into_iter()
            .filter(|key| old.get(*key) != new.get(*key))
            .map(|key| match self.question(key) {
                Some(q) if !q.is_personal() => json!({
                    "key": key,
                    "old": old.get(key).cloned().unwrap_or(Value::Null),
                    "new": new.get(key).cloned().unwrap_or(Value::Null),
                }),
                _ => json!({"key": key, "personal": true}),
            })
            .collect()
    }

    /// What a registration records of the consents a body accepts: `[{"key", "version"}]`,
    /// in the versions in force.
    pub fn accepted_consents(&self, body: &Value) -> Value {
        let body = with_consents(body);
        let accepted: BTreeSet<&str> = body
            .get("consents")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter(|(_, v)| **v == Value::Bool(true) || v.is_number())
                    .map(|(k, _)| k.as_str())
                    .collect()
            })
            .unwrap_or_default();
        consents::accepted(
            self.consents
                .iter()
                .filter(|c| accepted.contains(c.key.as_str())),
        )
    }
}

fn fail_on(errors: Vec<FieldError>) -> ApiResult<()> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::validation(errors))
    }
}

fn compile(schema: &Value) -> ApiResult<jsonschema::Validator> {
    rules::compile(schema)
        .map_err(|e| ApiError::internal(anyhow::anyhow!("the form's schema does not compile: {e}")))
}

/// The body with the old `consent` read as `consents.personal_data` (when `consents` is not
/// sent), and without `consent`.
fn with_consents(body: &Value) -> Value {
    let mut body = body.clone();
    if let Some(object) = body.as_object_mut() {
        let consent = object.remove("consent");
        if !object.contains_key("consents")
            && let Some(consent) = consent
        {
            object.insert(
                "consents".to_owned(),
                json!({ consents::PERSONAL_DATA: consent }),
            );
        }
    }
    body
}

/// A number's limit as JSON: a whole one as an integer, so that messages say «at most 5»,
/// not «at most 5.0».
fn limit(value: f64) -> Value {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        json!(value as i64)
    } else {
        json!(value)
    }
}

fn article(kind: &str) -> String {
    match kind {
        "integer" | "object" | "array" => format!("an {kind}"),
        "null" => "null".to_owned(),
        other => format!("a {other}"),
    }
}

/// `answers.transfer`, `session_ids[2]`, `consents.photos` from a JSON pointer's segments.
fn field_of(segments: &[String]) -> String {
    let mut field = String::new();
    for segment in segments {
        if segment.parse::<usize>().is_ok() && !field.is_empty() {
            field.push_str(&format!("[{segment}]"));
        } else {
            if !field.is_empty() {
                field.push('.');
            }
            field.push_str(segment);
        }
    }
    field
}
