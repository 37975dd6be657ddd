//! Questions of an event's registration form, and the options of choice questions (which may
//! have limited places, claimed in the registering transaction like a category's).
//!
//! Old answers stay readable: once registrations have answered a question, changes that
//! would orphan their answers are refused (a new key or type, removing an option someone
//! chose, an option's places below those taken, deleting the question); labels, help, order,
//! limits and conditions may change, and apply to answers given from then on.

use actix_web::{HttpResponse, delete, get, patch, post, web};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Bool, Integer, Nullable, Text, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Localized, LocalizedInput, categories, check_code, check_localized_line};
use crate::access::{self, EventAction};
use crate::auth::Caller;
use crate::db::schema::{form_options, form_questions};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::Body;
use crate::openapi::{BodyErrors, EventErrors};
use crate::patch;
use crate::state::State;
use crate::validation::Validator;

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(list_questions)
        .service(create_question)
        .service(get_question)
        .service(update_question)
        .service(delete_question);
}

const MAX_QUESTIONS: usize = 100;
const MAX_OPTIONS: usize = 100;
const MAX_POSITION: i32 = 100_000;
/// Text answers are at most this long unless the question says less.
pub const TEXT_MAX: i32 = 500;
pub const MULTILINE_MAX: i32 = 5000;

crate::text_enum! {
    /// What kind of answer a question takes.
    pub enum QuestionType {
        Text => "text",
        Multiline => "multiline",
        Number => "number",
        YesNo => "yes_no",
        SingleChoice => "single_choice",
        MultipleChoice => "multiple_choice",
        Date => "date",
        Phone => "phone",
        Email => "email",
        Country => "country",
    }
}

impl QuestionType {
    pub fn is_choice(self) -> bool {
        matches!(
            self,
            QuestionType::SingleChoice | QuestionType::MultipleChoice
        )
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = form_questions)]
pub struct QuestionRow {
    pub id: Uuid,
    pub event_id: Uuid,
    pub key: String,
    #[diesel(column_name = type_)]
    pub kind: QuestionType,
    pub label_ru: String,
    pub label_en: String,
    pub help_ru: Option<String>,
    pub help_en: Option<String>,
    pub required: bool,
    pub position: i32,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub max_length: Option<i32>,
    pub max_choices: Option<i32>,
    pub categories: Option<Vec<Option<String>>>,
    pub shown_when: Option<Value>,
    pub personal: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = form_options)]
pub struct OptionRow {
    pub id: Uuid,
    pub question_id: Uuid,
    pub key: String,
    pub label_ru: String,
    pub label_en: String,
    pub capacity: Option<i32>,
    pub position: i32,
}

/// A question with its options, as the form uses it.
#[derive(Debug, Clone)]
pub struct Question {
    pub row: QuestionRow,
    pub options: Vec<OptionRow>,
}

impl Question {
    /// An optional question without options, labelled "Вопрос" / "Question": for unit tests
    /// to adjust.
    #[cfg(test)]
    pub(crate) fn sample(key: &str, kind: QuestionType) -> Question {
        let now = chrono::Utc::now();
        Question {
            row: QuestionRow {
                id: Uuid::now_v7(),
                event_id: Uuid::nil(),
                key: key.to_owned(),
                kind,
                label_ru: "Вопрос".to_owned(),
                label_en: "Question".to_owned(),
                help_ru: None,
                help_en: None,
                required: false,
                position: 0,
                min: None,
                max: None,
                max_length: None,
                max_choices: None,
                categories: None,
                shown_when: None,
                personal: false,
                created_at: now,
                updated_at: now,
            },
            options: Vec::new(),
        }
    }

    pub fn key(&self) -> &str {
        &self.row.key
    }

    /// Whether its answers are personal data: the question is marked so, or it asks for a
    /// contact (an email address or a phone number), whatever its mark. Such answers are
    /// erased with the person, kept out of the history and withheld from device keys.
    pub fn is_personal(&self) -> bool {
        self.row.personal || matches!(self.row.kind, QuestionType::Email | QuestionType::Phone)
    }

    pub fn categories(&self) -> Option<Vec<String>> {
        self.row
            .categories
            .as_ref()
            .map(|c| c.iter().flatten().cloned().collect())
    }

    pub fn condition(&self) -> Option<Condition> {
        self.row
            .shown_when
            .clone()
            .and_then(|v| serde_json::from_value(v).ok())
    }
}

/// Asked only when another question's answer has this value.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Condition {
    /// The key of a yes/no or single-choice question.
    #[schema(example = "transfer")]
    pub question: String,
    /// `true`/`false` for a yes/no question, an option's key for a single choice.
    #[schema(example = true)]
    pub equals: Value,
}

/// As sent: a condition.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConditionInput {
    /// The key of a yes/no or single-choice question.
    #[schema(example = "transfer")]
    pub question: String,
    /// `true`/`false` for a yes/no question, an option's key for a single choice.
    #[schema(example = true)]
    pub equals: Value,
}

/// As sent: an option of a choice question.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OptionInput {
    #[schema(example = "plant", pattern = "^[a-z0-9_-]{1,40}$")]
    pub key: String,
    pub label: LocalizedInput,
    /// Places; absent or null: unlimited.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1000000)]
    pub capacity: Option<i32>,
}

/// An option of a choice question.
#[derive(Debug, Serialize, ToSchema)]
pub struct OptionView {
    #[schema(example = "plant")]
    pub key: String,
    pub label: Localized,
    /// Places; null: unlimited.
    pub capacity: Option<i32>,
    /// Null when unlimited.
    pub places_left: Option<i64>,
    /// No places left: choosing it is refused with 409 `option_full`.
    pub full: bool,
}

/// A question of the registration form.
#[derive(Debug, Serialize, ToSchema)]
pub struct QuestionView {
    /// The name of the answer in `answers`.
    #[schema(example = "transfer")]
    pub key: String,
    #[serde(rename = "type")]
    pub kind: QuestionType,
    pub label: Localized,
    pub help: Option<Localized>,
    pub required: bool,
    /// Questions are asked in this order.
    pub position: i32,
    /// Number questions: the smallest and largest answer.
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Text questions: the longest answer, in characters.
    pub max_length: Option<i32>,
    /// Multiple choice: the most options one may choose.
    pub max_choices: Option<i32>,
    /// The codes of the categories it is asked of; null: all.
    pub categories: Option<Vec<String>>,
    /// Asked only when another answer has a value; null: always.
    pub shown_when: Option<Condition>,
    /// Erased with the participant's personal data.
    pub personal: bool,
    pub options: Vec<OptionView>,
}

impl QuestionView {
    pub fn new(q: &Question, places_left: &dyn Fn(&OptionRow) -> Option<i64>) -> Self {
        let r = &q.row;
        QuestionView {
            key: r.key.clone(),
            kind: r.kind,
            label: Localized::new(&r.label_ru, &r.label_en),
            help: match (&r.help_ru, &r.help_en) {
                (Some(ru), Some(en)) => Some(Localized::new(ru, en)),
                _ => None,
            },
            required: r.required,
            position: r.position,
            min: r.min,
            max: r.max,
            max_length: r.max_length,
            max_choices: r.max_choices,
            categories: q.categories(),
            shown_when: q.condition(),
            personal: r.personal,
            options: q
                .options
                .iter()
                .map(|o| {
                    let left = o.capacity.map(|c| places_left(o).unwrap_or(c.into()));
                    OptionView {
                        key: o.key.clone(),
                        label: Localized::new(&o.label_ru, &o.label_en),
                        capacity: o.capacity,
                        places_left: left,
                        full: left == Some(0),
                    }
                })
                .collect(),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewQuestion {
    #[schema(example = "transfer", pattern = "^[a-z0-9_-]{1,40}$")]
    pub key: String,
    #[serde(rename = "type")]
    pub kind: QuestionType,
    pub label: LocalizedInput,
    #[serde(default)]
    pub help: Option<LocalizedInput>,
    #[serde(default)]
    pub required: bool,
    /// The form's order, then keys; absent: after the last question.
    #[serde(default)]
    #[schema(minimum = -100000, maximum = 100000)]
    pub position: Option<i32>,
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
    #[serde(default)]
    #[schema(minimum = 1, maximum = 10000)]
    pub max_length: Option<i32>,
    #[serde(default)]
    #[schema(minimum = 1)]
    pub max_choices: Option<i32>,
    /// Category codes; absent or null: all.
    #[serde(default)]
    pub categories: Option<Vec<String>>,
    #[serde(default)]
    pub shown_when: Option<ConditionInput>,
    #[serde(default)]
    pub personal: bool,
    /// Choice questions: 1 to 100 options.
    #[serde(default)]
    pub options: Vec<OptionInput>,
}

/// Changes to a question (merge patch). `options`, when sent, is the complete list: options
/// are matched by key (their places kept), new keys added, missing ones removed.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuestionPatch {
    #[serde(default, deserialize_with = "patch::non_null")]
    #[schema(nullable = false, pattern = "^[a-z0-9_-]{1,40}$")]
    pub key: Option<String>,
    #[serde(default, rename = "type", deserialize_with = "patch::non_null")]
    #[schema(nullable = false)]
    pub kind: Option<QuestionType>,
    #[serde(default, deserialize_with = "patch::non_null")]
    #[schema(nullable = false)]
    pub label: Option<LocalizedInput>,
    #[serde(default, deserialize_with = "patch::nullable")]
    #[schema(value_type = Option<LocalizedInput>)]
    pub help: Option<Option<LocalizedInput>>,
    #[serde(default, deserialize_with = "patch::non_null")]
    #[schema(nullable = false)]
    pub required: Option<bool>,
    #[serde(default, deserialize_with = "patch::non_null")]
    #[schema(nullable = false)]
    pub position: Option<i32>,
    #[serde(default, deserialize_with = "patch::nullable")]
    #[schema(value_type = Option<f64>)]
    pub min: Option<Option<f64>>,
    #[serde(default, deserialize_with = "patch::nullable")]
    #[schema(value_type = Option<f64>)]
    pub max: Option<Option<f64>>,
    #[serde(default, deserialize_with = "patch::nullable")]
    #[schema(value_type = Option<i32>)]
    pub max_length: Option<Option<i32>>,
    #[serde(default, deserialize_with = "patch::nullable")]
    #[schema(value_type = Option<i32>)]
    pub max_choices: Option<Option<i32>>,
    #[serde(default, deserialize_with = "patch::nullable")]
    #[schema(value_type = Option<Vec<String>>)]
    pub categories: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "patch::nullable")]
    #[schema(value_type = Option<ConditionInput>)]
    pub shown_when: Option<Option<ConditionInput>>,
    #[serde(default, deserialize_with = "patch::non_null")]
    #[schema(nullable = false)]
    pub personal: Option<bool>,
    #[serde(default, deserialize_with = "patch::non_null")]
    #[schema(nullable = false)]
    pub options: Option<Vec<OptionInput>>,
}

/// A question as it will be stored.
struct Fields {
    key: String,
    kind: QuestionType,
    label: Localized,
    help: Option<Localized>,
    required: bool,
    position: i32,
    min: Option<f64>,
    max: Option<f64>,
    max_length: Option<i32>,
    max_choices: Option<i32>,
    categories: Option<Vec<String>>,
    shown_when: Option<Condition>,
    personal: bool,
    options: Vec<(String, Localized, Option<i32>)>,
}

/// Checks a question against itself and the rest of the form (`others`: the event's other
/// questions; `codes`: its categories).
fn validate(f: &Fields, others: &[Question], codes: &[String]) -> ApiResult<()> {
    let mut v = Validator::new();
    check_code(&mut v, "key", &f.key);
    check_localized_line(&mut v, "label", &f.label, 500);
    if let Some(help) = &f.help {
        v.opt_text("help.ru", Some(&help.ru), 2000);
        v.opt_text("help.en", Some(&help.en), 2000);
    }
    v.range("position", f.position, -MAX_POSITION, MAX_POSITION);
    let number = f.kind == QuestionType::Number;
    v.check(
        number || (f.min.is_none() && f.max.is_none()),
        "min",
        "applies to number questions only",
    );
    for (field, value) in [("min", f.min), ("max", f.max)] {
        if let Some(value) = value {
            v.check(value.is_finite(), field, "must be a finite number");
        }
    }
    if let (Some(min), Some(max)) = (f.min, f.max) {
        v.check(min <= max, "max", "must not be less than min");
    }
    let text = matches!(f.kind, QuestionType::Text | QuestionType::Multiline);
    if let Some(length) = f.max_length {
        v.check(text, "max_length", "applies to text questions only");
        v.range("max_length", length, 1, 10_000);
    }
    if let Some(choices) = f.max_choices {
        v.check(
            f.kind == QuestionType::MultipleChoice,
            "max_choices",
            "applies to multiple-choice questions only",
        );
        v.range("max_choices", choices, 1, MAX_OPTIONS as i32);
    }
    if f.kind.is_choice() {
        v.check(
            (1..=MAX_OPTIONS).contains(&f.options.len()),
            "options",
            "a choice question has 1 to 100 options",
        );
    } else {
        v.check(
            f.options.is_empty(),
            "options",
            "only choice questions have options",
        );
    }
    for (i, (key, label, capacity)) in f.options.iter().enumerate() {
        check_code(&mut v, &format!("options[{i}].key"), key);
        check_localized_line(&mut v, &format!("options[{i}].label"), label, 300);
        if let Some(capacity) = capacity {
            v.range(&format!("options[{i}].capacity"), *capacity, 0, 1_000_000);
        }
        if f.options[..i].iter().any(|(k, _, _)| k == key) {
            v.error(format!("options[{i}].key"), "is listed twice");
        }
    }
    if let Some(categories) = &f.categories {
        v.list_len("categories", categories, 100);
        for (i, code) in categories.iter().enumerate() {
            v.check(
                codes.contains(code),
                &format!("categories[{i}]"),
                "is not a category of this event",
            );
        }
    }
    if others.iter().any(|q| q.key() == f.key) {
        v.error("key", "another question of the event has this key");
    }
    if let Some(condition) = &f.shown_when {
        match others.iter().find(|q| q.key() == condition.question) {
            None => v.error(
                "shown_when.question",
                "is not another question of this event",
            ),
            Some(q) => {
                let fits = match q.row.kind {
                    QuestionType::YesNo => condition.equals.is_boolean(),
                    QuestionType::SingleChoice => condition
                        .equals
                        .as_str()
                        .is_some_and(|key| q.options.iter().any(|o| o.key == key)),
                    _ => false,
                };
                v.check(
                    fits,
                    "shown_when.equals",
                    "must be true or false for a yes/no question, or an option's key of a \
                     single-choice question",
                );
                v.check(
                    !shown_through(others, &condition.question, &f.key),
                    "shown_when.question",
                    "is shown depending on this question: neither could ever be asked",
                );
            }
        }
    }
    v.finish()
}

/// Whether the question `from` is shown depending, through the conditions of `others`, on
/// the question `key` (not among them).
fn shown_through(others: &[Question], from: &str, key: &str) -> bool {
    let mut next = others
        .iter()
        .find(|q| q.key() == from)
        .and_then(Question::condition);
    // Each question once at most: the others' conditions were refused cycles too.
    for _ in others {
        match next {
            None => return false,
            Some(c) if c.question == key => return true,
            Some(c) => {
                next = others
                    .iter()
                    .find(|q| q.key() == c.question)
                    .and_then(Question::condition)
            }
        }
    }
    false
}

/// The event's questions with their options, in order.
pub async fn of_event(conn: &mut AsyncPgConnection, event_id: Uuid) -> ApiResult<Vec<Question>> {
    let rows: Vec<QuestionRow> = form_questions::table
        .filter(form_questions::event_id.eq(event_id))
        .select(QuestionRow::as_select())
        .order((form_questions::position, form_questions::key))
        .load(conn)
        .await?;
    let ids: Vec<Uuid> = rows.iter().map(|q| q.id).collect();
    let mut options: Vec<OptionRow> = form_options::table
        .filter(form_options::question_id.eq_any(&ids))
        .select(OptionRow::as_select())
        .order((form_options::question_id, form_options::position))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let (mine, rest): (Vec<OptionRow>, Vec<OptionRow>) =
                options.drain(..).partition(|o| o.question_id == row.id);
            options = rest;
            Question { row, options: mine }
        })
        .collect())
}

#[derive(QueryableByName)]
struct FreeSeats {
    #[diesel(sql_type = SqlUuid)]
    pool: Uuid,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    free: i64,
}

/// Free places of each limited option of an event.
pub async fn places_left(
    conn: &mut AsyncPgConnection,
    event_id: Uuid,
) -> ApiResult<std::collections::HashMap<Uuid, i64>> {
    let rows: Vec<FreeSeats> = diesel::sql_query(
        "SELECT o.id AS pool, count(s.seat_no) FILTER (WHERE s.registration_id IS NULL) AS free \
         FROM form_options o JOIN form_questions q ON q.id = o.question_id \
         LEFT JOIN form_seats s ON s.pool = o.id \
         WHERE q.event_id = $1 AND o.capacity IS NOT NULL GROUP BY o.id",
    )
    .bind::<SqlUuid, _>(event_id)
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.pool, r.free)).collect())
}

async fn views(
    conn: &mut AsyncPgConnection,
    event_id: Uuid,
    questions: &[Question],
) -> ApiResult<Vec<QuestionView>> {
    let left = places_left(conn, event_id).await?;
    Ok(questions
        .iter()
        .map(|q| QuestionView::new(q, &|o| left.get(&o.id).copied()))
        .collect())
}

async fn answered(conn: &mut AsyncPgConnection, event_id: Uuid, key: &str) -> ApiResult<bool> {
    #[derive(QueryableByName)]
    struct Found {
        #[diesel(sql_type = Bool)]
        found: bool,
    }
    let found: Found = diesel::sql_query(
        "SELECT EXISTS (SELECT 1 FROM registrations WHERE event_id = $1 AND answers ? $2) AS found",
    )
    .bind::<SqlUuid, _>(event_id)
    .bind::<Text, _>(key)
    .get_results(conn)
    .await
    .and_then(crate::db::single)?;
    Ok(found.found)
}

async fn option_chosen(
    conn: &mut AsyncPgConnection,
    event_id: Uuid,
    question: &str,
    option: &str,
) -> ApiResult<bool> {
    #[derive(QueryableByName)]
    struct Found {
        #[diesel(sql_type = Bool)]
        found: bool,
    }
    let found: Found = diesel::sql_query(
        "SELECT EXISTS (SELECT 1 FROM registrations WHERE event_id = $1 \
             AND (answers -> $2 = to_jsonb($3::text) OR answers -> $2 @> jsonb_build_array($3::text))) \
         AS found",
    )
    .bind::<SqlUuid, _>(event_id)
    .bind::<Text, _>(question)
    .bind::<Text, _>(option)
    .get_results(conn)
    .await.and_then(crate::db::single)?;
    Ok(found.found)
}

fn in_use(what: &str) -> ApiError {
    ApiError::conflict(
        "question_in_use",
        format!("registrations have answered this question: {what} would orphan their answers"),
    )
}

/// Locks the event's form (questions and options) against concurrent changes.
async fn lock_form(conn: &mut AsyncPgConnection, event_id: Uuid) -> ApiResult<()> {
    diesel::sql_query("SELECT pg_advisory_xact_lock(form_pool_lock_key($1) # 1)")
        .bind::<SqlUuid, _>(event_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Writes the question's options: matched by key (keeping their places), new ones added,
/// missing ones removed (refused when chosen), places resized.
async fn write_options(
    conn: &mut AsyncPgConnection,
    event_id: Uuid,
    question: &QuestionRow,
    current: &[OptionRow],
    wanted: &[(String, Localized, Option<i32>)],
) -> ApiResult<()> {
    for old in current {
        if !wanted.iter().any(|(k, _, _)| *k == old.key) {
            if option_chosen(conn, event_id, &question.key, &old.key).await? {
                return Err(ApiError::conflict(
                    "option_in_use",
                    format!(
                        "registrations chose «{}»: it cannot be removed",
                        old.label_ru
                    ),
                )
                .with("field", "options")
                .with("option", &old.key));
            }
            diesel::sql_query("DELETE FROM form_seats WHERE pool = $1")
                .bind::<SqlUuid, _>(old.id)
                .execute(conn)
                .await?;
            diesel::delete(form_options::table.find(old.id))
                .execute(conn)
                .await?;
        }
    }
    for (position, (key, label, capacity)) in wanted.iter().enumerate() {
        let existing = current.iter().find(|o| o.key == *key);
        let id = existing.map_or_else(Uuid::now_v7, |o| o.id);
        diesel::insert_into(form_options::table)
            .values((
                form_options::id.eq(id),
                form_options::question_id.eq(question.id),
                form_options::key.eq(key),
                form_options::label_ru.eq(&label.ru),
                form_options::label_en.eq(&label.en),
                form_options::capacity.eq(capacity),
                form_options::position.eq(position as i32),
            ))
            .on_conflict(form_options::id)
            .do_update()
            .set((
                form_options::label_ru.eq(&label.ru),
                form_options::label_en.eq(&label.en),
                form_options::capacity.eq(capacity),
                form_options::position.eq(position as i32),
            ))
            .execute(conn)
            .await?;
        if existing.is_none_or(|o| o.capacity != *capacity) {
            diesel::sql_query("SELECT pg_advisory_xact_lock(form_pool_lock_key($1))")
                .bind::<SqlUuid, _>(id)
                .execute(conn)
                .await?;
            diesel::sql_query("SELECT set_form_pool($1, $2)")
                .bind::<SqlUuid, _>(id)
                .bind::<Nullable<Integer>, _>(*capacity)
                .execute(conn)
                .await
                .map_err(|e| option_capacity_failed(e, key))?;
        }
    }
    Ok(())
}

fn option_capacity_failed(error: diesel::result::Error, key: &str) -> ApiError {
    use diesel::result::{DatabaseErrorKind, Error};
    match &error {
        Error::DatabaseError(DatabaseErrorKind::Unknown, info)
            if info.message() == "capacity_below_taken" =>
        {
            ApiError::conflict(
                "capacity_below_registered",
                format!(
                    "{} registrations chose this option; its capacity cannot be lower",
                    info.details().unwrap_or("some")
                ),
            )
            .with("field", "options")
            .with("option", key)
        }
        _ => error.into(),
    }
}

fn category_codes(categories: &[categories::Category]) -> Vec<String> {
    categories.iter().map(|c| c.code.clone()).collect()
}

fn options_of(input: Vec<OptionInput>) -> Vec<(String, Localized, Option<i32>)> {
    input
        .into_iter()
        .map(|o| (o.key, o.label.into(), o.capacity))
        .collect()
}

fn condition_of(input: Option<ConditionInput>) -> Option<Condition> {
    input.map(|c| Condition {
        question: c.question,
        equals: c.equals,
    })
}

async fn store(
    conn: &mut AsyncPgConnection,
    event_id: Uuid,
    id: Uuid,
    f: &Fields,
) -> ApiResult<QuestionRow> {
    let categories: Option<Vec<Option<String>>> = f
        .categories
        .as_ref()
        .map(|c| c.iter().cloned().map(Some).collect());
    let shown_when = f
        .shown_when
        .as_ref()
        .map(|c| serde_json::to_value(c).unwrap_or(Value::Null));
    let (help_ru, help_en) = match &f.help {
        Some(h) => (Some(h.ru.clone()), Some(h.en.clone())),
        None => (None, None),
    };
    Ok(diesel::insert_into(form_questions::table)
        .values((
            form_questions::id.eq(id),
            form_questions::event_id.eq(event_id),
            form_questions::key.eq(&f.key),
            form_questions::type_.eq(f.kind),
            form_questions::label_ru.eq(&f.label.ru),
            form_questions::label_en.eq(&f.label.en),
            form_questions::help_ru.eq(&help_ru),
            form_questions::help_en.eq(&help_en),
            form_questions::required.eq(f.required),
            form_questions::position.eq(f.position),
            form_questions::min.eq(f.min),
            form_questions::max.eq(f.max),
            form_questions::max_length.eq(f.max_length),
            form_questions::max_choices.eq(f.max_choices),
            form_questions::categories.eq(&categories),
            form_questions::shown_when.eq(&shown_when),
            form_questions::personal.eq(f.personal),
        ))
        .on_conflict(form_questions::id)
        .do_update()
        .set((
            form_questions::key.eq(&f.key),
            form_questions::type_.eq(f.kind),
            form_questions::label_ru.eq(&f.label.ru),
            form_questions::label_en.eq(&f.label.en),
            form_questions::help_ru.eq(&help_ru),
            form_questions::help_en.eq(&help_en),
            form_questions::required.eq(f.required),
            form_questions::position.eq(f.position),
            form_questions::min.eq(f.min),
            form_questions::max.eq(f.max),
            form_questions::max_length.eq(f.max_length),
            form_questions::max_choices.eq(f.max_choices),
            form_questions::categories.eq(&categories),
            form_questions::shown_when.eq(&shown_when),
            form_questions::personal.eq(f.personal),
            form_questions::updated_at.eq(Utc::now()),
        ))
        .returning(QuestionRow::as_returning())
        .get_results(conn)
        .await
        .and_then(crate::db::single)?)
}

/// The event's questions, in order.
#[utoipa::path(
    tag = "forms",
    params(("event" = String, Path, description = "Event slug or id")),
    responses((status = 200, description = "The questions.", body = Vec<QuestionView>), EventErrors),
    security((), ("bearer" = []))
)]
#[get("/events/{event}/questions")]
async fn list_questions(
    state: State,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<web::Json<Vec<QuestionView>>> {
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &path, EventAction::View).await?;
    let questions = of_event(&mut conn, ctx.event.id).await?;
    Ok(web::Json(views(&mut conn, ctx.event.id, &questions).await?))
}

/// Add a question to the registration form.
#[utoipa::path(
    tag = "forms",
    params(("event" = String, Path, description = "Event slug or id")),
    request_body = NewQuestion,
    responses(
        (status = 201, description = "The question was added.", body = QuestionView),
        (status = 409, description = "`too_many_questions`: the event has 100.",
         body = Problem, content_type = "application/problem+json"),
        EventErrors, BodyErrors,
    ),
    security(("bearer" = []))
)]
#[post("/events/{event}/questions")]
async fn create_question(
    state: State,
    caller: Caller,
    path: web::Path<String>,
    body: Body<NewQuestion>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &path, EventAction::Edit).await?;
    let event_id = ctx.event.id;
    let mut fields = Fields {
        key: body.key,
        kind: body.kind,
        label: body.label.into(),
        help: body.help.map(Into::into),
        required: body.required,
        position: body.position.unwrap_or(0),
        min: body.min,
        max: body.max,
        max_length: body.max_length,
        max_choices: body.max_choices,
        categories: body.categories,
        shown_when: condition_of(body.shown_when),
        personal: body.personal,
        options: options_of(body.options),
    };
    let questions = conn
        .transaction::<_, ApiError, _>(async |conn| {
            lock_form(conn, event_id).await?;
            let others = of_event(conn, event_id).await?;
            if others.len() >= MAX_QUESTIONS {
                return Err(ApiError::conflict(
                    "too_many_questions",
                    format!("an event has at most {MAX_QUESTIONS} questions"),
                ));
            }
            if body.position.is_none() {
                fields.position = after_last(&others);
            }
            let codes = category_codes(&categories::of_event(conn, event_id).await?);
            validate(&fields, &others, &codes)?;
            let row = store(conn, event_id, Uuid::now_v7(), &fields).await?;
            write_options(conn, event_id, &row, &[], &fields.options).await?;
            of_event(conn, event_id).await
        })
        .await?;
    state.event_changed(event_id);
    let views = views(&mut conn, event_id, &questions).await?;
    let view = views
        .into_iter()
        .find(|q| q.key == fields.key)
        .ok_or_else(|| ApiError::not_found("question"))?;
    Ok(HttpResponse::Created().json(view))
}

/// The position of a question added without one: after the last (at most the highest
/// position there is).
fn after_last(questions: &[Question]) -> i32 {
    questions
        .iter()
        .map(|q| q.row.position)
        .max()
        .map_or(0, |last| last.saturating_add(1).min(MAX_POSITION))
}

async fn find(
    conn: &mut AsyncPgConnection,
    event_id: Uuid,
    key: &str,
) -> ApiResult<(Question, Vec<Question>)> {
    let (mine, others): (Vec<Question>, Vec<Question>) = of_event(conn, event_id)
        .await?
        .into_iter()
        .partition(|q| q.key() == key);
    let question = mine
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::not_found("question"))?;
    Ok((question, others))
}

/// One question.
#[utoipa::path(
    tag = "forms",
    params(("event" = String, Path, description = "Event slug or id"), ("key" = String, Path, description = "The question's key")),
    responses((status = 200, description = "The question.", body = QuestionView), EventErrors),
    security((), ("bearer" = []))
)]
#[get("/events/{event}/questions/{key}")]
async fn get_question(
    state: State,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> ApiResult<web::Json<QuestionView>> {
    let (event_ref, key) = path.into_inner();
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &event_ref, EventAction::View).await?;
    let (question, _) = find(&mut conn, ctx.event.id, &key).await?;
    Ok(web::Json(
        views(&mut conn, ctx.event.id, &[question]).await?.remove(0),
    ))
}

/// Change a question (merge patch). Once registrations have answered it, its key and type
/// stay, options someone chose stay, and an option's places cannot go below those taken.
#[utoipa::path(
    tag = "forms",
    params(("event" = String, Path, description = "Event slug or id"), ("key" = String, Path, description = "The question's key")),
    request_body(content = QuestionPatch, content_type = "application/json"),
    responses(
        (status = 200, description = "The changed question.", body = QuestionView),
        (status = 409, description = "`question_in_use`: a new key or type would orphan answers. \
            `option_in_use`: an option registrations chose cannot be removed (`option`). \
            `capacity_below_registered`: more chose the option than its new capacity (`option`).",
         body = Problem, content_type = "application/problem+json"),
        EventErrors, BodyErrors,
    ),
    security(("bearer" = []))
)]
#[patch("/events/{event}/questions/{key}")]
async fn update_question(
    state: State,
    caller: Caller,
    path: web::Path<(String, String)>,
    body: Body<QuestionPatch>,
) -> ApiResult<web::Json<QuestionView>> {
    let (event_ref, key) = path.into_inner();
    let body = body.into_inner();
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &event_ref, EventAction::Edit).await?;
    let event_id = ctx.event.id;
    let new_key = conn
        .transaction::<_, ApiError, _>(async |conn| {
            lock_form(conn, event_id).await?;
            let (current, others) = find(conn, event_id, &key).await?;
            let r = &current.row;
            let fields = Fields {
                key: body.key.clone().unwrap_or_else(|| r.key.clone()),
                kind: body.kind.unwrap_or(r.kind),
                label: body
                    .label
                    .clone()
                    .map_or_else(|| Localized::new(&r.label_ru, &r.label_en), Into::into),
                help: match &body.help {
                    Some(help) => help.clone().map(Into::into),
                    None => match (&r.help_ru, &r.help_en) {
                        (Some(ru), Some(en)) => Some(Localized::new(ru, en)),
                        _ => None,
                    },
                },
                required: body.required.unwrap_or(r.required),
                position: body.position.unwrap_or(r.position),
                min: body.min.unwrap_or(r.min),
                max: body.max.unwrap_or(r.max),
                max_length: body.max_length.unwrap_or(r.max_length),
                max_choices: body.max_choices.unwrap_or(r.max_choices),
                categories: body
                    .categories
                    .clone()
                    .unwrap_or_else(|| current.categories()),
                shown_when: match &body.shown_when {
                    Some(c) => condition_of(c.clone()),
                    None => current.condition(),
                },
                personal: body.personal.unwrap_or(r.personal),
                options: match &body.options {
                    Some(options) => options_of(options.clone()),
                    None => current
                        .options
                        .iter()
                        .map(|o| {
                            (
                                o.key.clone(),
                                Localized::new(&o.label_ru, &o.label_en),
                                o.capacity,
                            )
                        })
                        .collect(),
                },
            };
            let codes = category_codes(&categories::of_event(conn, event_id).await?);
            validate(&fields, &others, &codes)?;
            if (fields.key != r.key || fields.kind != r.kind)
                && answered(conn, event_id, &r.key).await?
            {
                return Err(in_use(if fields.key != r.key {
                    "a new key"
                } else {
                    "a new type"
                })
                .with("field", if fields.key != r.key { "key" } else { "type" }));
            }
            if fields.key != r.key
                && others
                    .iter()
                    .any(|q| q.condition().is_some_and(|c| c.question == r.key))
            {
                return Err(ApiError::conflict(
                    "question_in_use",
                    "other questions are shown depending on this one: its key cannot change",
                )
                .with("field", "key"));
            }
            let row = store(conn, event_id, r.id, &fields).await?;
            write_options(conn, event_id, &row, &current.options, &fields.options).await?;
            Ok(fields.key)
        })
        .await?;
    state.event_changed(event_id);
    let (question, _) = find(&mut conn, event_id, &new_key).await?;
    Ok(web::Json(
        views(&mut conn, event_id, &[question]).await?.remove(0),
    ))
}

/// Delete a question nobody has answered and no other question depends on.
#[utoipa::path(
    tag = "forms",
    params(("event" = String, Path, description = "Event slug or id"), ("key" = String, Path, description = "The question's key")),
    responses(
        (status = 204, description = "The question was deleted."),
        (status = 409, description = "`question_in_use`: registrations answered it, or another question is shown depending on it.",
         body = Problem, content_type = "application/problem+json"),
        EventErrors,
    ),
    security(("bearer" = []))
)]
#[delete("/events/{event}/questions/{key}")]
async fn delete_question(
    state: State,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (event_ref, key) = path.into_inner();
    let mut conn = state.conn().await?;
    let ctx = access::event(&mut conn, &caller, &event_ref, EventAction::Edit).await?;
    let event_id = ctx.event.id;
    conn.transaction::<_, ApiError, _>(async |conn| {
        lock_form(conn, event_id).await?;
        let (question, others) = find(conn, event_id, &key).await?;
        if answered(conn, event_id, &key).await? {
            return Err(in_use("deleting it"));
        }
        if others
            .iter()
            .any(|q| q.condition().is_some_and(|c| c.question == key))
        {
            return Err(ApiError::conflict(
                "question_in_use",
                "other questions are shown depending on this one",
            ));
        }
        for option in &question.options {
            diesel::sql_query("DELETE FROM form_seats WHERE pool = $1")
                .bind::<SqlUuid, _>(option.id)
                .execute(conn)
                .await?;
        }
        diesel::delete(form_questions::table.find(question.row.id))
            .execute(conn)
            .await?;
        Ok(())
    })
    .await?;
    state.event_changed(event_id);
    Ok(HttpResponse::NoContent().finish())
}
