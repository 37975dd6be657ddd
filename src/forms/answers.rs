//! Answers as organisers read them: the value a filter on the list of registrations stands
//! for, an answer shown to people in an export (option labels, yes and no in the export's
//! language, numbers and dates as such), and the counts of answers per question.
//!
//! A filter's value is read by the question's type and checked against the same JSON Schema
//! of the answer that registering checks (`Form::answer_schema`): a value no registration can
//! hold is refused rather than answered with an empty list.

use std::collections::HashMap;

use chrono::NaiveDate;
use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use super::Localized;
use super::form::Form;
use super::questions::{self, Question, QuestionType};
use crate::error::ApiResult;
use crate::events::Language;

/// The query parameters that filter by an answer: `answer.<question key>`.
pub const FILTER_PREFIX: &str = "answer.";

/// What a registration's `answers` must contain (`@>`) to pass the filter `value` on
/// question `q`: for a multiple choice, the option among those chosen; for yes/no `true` or
/// `false`; for a number the number; otherwise the text as given. `Err` says why no answer
/// can be that value.
pub fn filter(q: &Question, value: &str) -> Result<Value, &'static str> {
    let answer = match q.row.kind {
        QuestionType::YesNo => match value {
            "true" => json!(true),
            "false" => json!(false),
            _ => return Err("must be true or false"),
        },
        QuestionType::Number => {
            let number = value.trim();
            match number.parse::<i64>() {
                Ok(n) => json!(n),
                Err(_) => match number.parse::<f64>() {
                    Ok(n) if n.is_finite() => json!(n),
                    _ => return Err("must be a number"),
                },
            }
        }
        QuestionType::MultipleChoice => json!([value]),
        _ => json!(value),
    };
    let schema = Form::answer_schema(q);
    let fits = jsonschema::draft202012::new(&schema).is_ok_and(|v| v.is_valid(&answer));
    if !fits {
        return Err(match q.row.kind {
            QuestionType::SingleChoice | QuestionType::MultipleChoice => {
                "is not an option of the question"
            }
            QuestionType::Number => "is outside the question's range",
            _ => "is not an answer the question can have",
        });
    }
    Ok(json!({ q.key(): answer }))
}

/// An answer as people read it in an export.
#[derive(Debug, Clone, PartialEq)]
pub enum Shown {
    /// Not answered.
    Empty,
    /// Text a person entered, or labels of what they chose.
    Text(String),
    Number(serde_json::Number),
    Date(NaiveDate),
}

impl Shown {
    /// As one CSV cell: numbers as given, dates `YYYY-MM-DD`.
    pub fn text(&self) -> String {
        match self {
            Shown::Empty => String::new(),
            Shown::Text(text) => text.clone(),
            Shown::Number(n) => n.to_string(),
            Shown::Date(date) => date.format("%Y-%m-%d").to_string(),
        }
    }
}

/// A question's header in an export: its label in `language`.
pub fn header(q: &Question, language: Language) -> &str {
    match language {
        Language::Ru => &q.row.label_ru,
        Language::En => &q.row.label_en,
    }
}

/// The answer to `q` (from a registration's `answers`) as people read it: options by their
/// labels in `language` (several joined with `; `), yes and no as words of that language.
pub fn shown(q: &Question, answers: &Value, language: Language) -> Shown {
    let Some(answer) = answers.get(q.key()).filter(|a| !a.is_null()) else {
        return Shown::Empty;
    };
    let label = |key: &str| -> String {
        q.options
            .iter()
            .find(|o| o.key == key)
            .map(|o| match language {
                Language::Ru => o.label_ru.clone(),
                Language::En => o.label_en.clone(),
            })
            .unwrap_or_else(|| key.to_owned())
    };
    match (q.row.kind, answer) {
        (QuestionType::YesNo, Value::Bool(yes)) => Shown::Text(
            match (language, yes) {
                (Language::Ru, true) => "Да",
                (Language::Ru, false) => "Нет",
                (Language::En, true) => "Yes",
                (Language::En, false) => "No",
            }
            .to_owned(),
        ),
        (QuestionType::Number, Value::Number(n)) => Shown::Number(n.clone()),
        (QuestionType::Date, Value::String(date)) => NaiveDate::parse_from_str(date, "%Y-%m-%d")
            .map_or_else(|_| Shown::Text(date.clone()), Shown::Date),
        (QuestionType::SingleChoice, Value::String(key)) => Shown::Text(label(key)),
        (QuestionType::MultipleChoice, Value::Array(keys)) => Shown::Text(
            keys.iter()
                .filter_map(Value::as_str)
                .map(label)
                .collect::<Vec<_>>()
                .join("; "),
        ),
        (_, Value::String(text)) => Shown::Text(text.clone()),
        (_, other) => Shown::Text(other.to_string()),
    }
}

/// Registrations that chose an option, and its places.
#[derive(Debug, Serialize, ToSchema)]
pub struct OptionCount {
    #[schema(example = "plant")]
    pub option: String,
    pub label: Localized,
    /// Active registrations that chose it.
    pub chosen: i64,
    /// Places; null: unlimited.
    pub capacity: Option<i32>,
    /// Null when unlimited.
    pub places_left: Option<i64>,
}

/// How one question was answered by the event's active registrations.
#[derive(Debug, Serialize, ToSchema)]
pub struct QuestionCount {
    #[schema(example = "transfer")]
    pub question: String,
    #[serde(rename = "type")]
    pub kind: QuestionType,
    pub label: Localized,
    /// Active registrations that answered it.
    pub answered: i64,
    /// Yes/no questions: how many answered yes.
    pub yes: Option<i64>,
    /// Yes/no questions: how many answered no.
    pub no: Option<i64>,
    /// Choice questions: each option, in order (empty for other types).
    pub options: Vec<OptionCount>,
}

#[derive(QueryableByName)]
struct Tally {
    #[diesel(sql_type = Text)]
    question: String,
    /// An option's key, `true`/`false`, or empty for "answered at all".
    #[diesel(sql_type = Text)]
    value: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Counts of the answers of the event's active registrations, question by question in the
/// form's order: per option for choice questions (with places left of limited ones), yes and
/// no for yes/no questions, and for every question how many answered it.
pub async fn counts(conn: &mut AsyncPgConnection, event_id: Uuid) -> ApiResult<Vec<QuestionCount>> {
    let questions = questions::of_event(conn, event_id).await?;
    if questions.is_empty() {
        return Ok(Vec::new());
    }
    // Values are tallied for choice and yes/no questions only (texts are counted as answered).
    let tallied: Vec<&str> = questions
        .iter()
        .filter(|q| q.row.kind.is_choice() || q.row.kind == QuestionType::YesNo)
        .map(Question::key)
        .collect();
    let tallies: Vec<Tally> = diesel::sql_query(
        "SELECT a.key AS question, '' AS value, count(*) AS n \
         FROM registrations r, jsonb_each(r.answers) a \
         WHERE r.event_id = $1 AND r.status = 'active' AND a.value <> 'null' \
         GROUP BY a.key \
         UNION ALL \
         SELECT a.key, CASE jsonb_typeof(a.value) WHEN 'array' THEN o.value #>> '{}' \
                                                  ELSE a.value #>> '{}' END, count(*) \
         FROM registrations r CROSS JOIN jsonb_each(r.answers) a \
         LEFT JOIN LATERAL jsonb_array_elements( \
             CASE jsonb_typeof(a.value) WHEN 'array' THEN a.value ELSE '[]' END) o ON true \
         WHERE r.event_id = $1 AND r.status = 'active' \
           AND a.key = ANY($2) AND jsonb_typeof(a.value) IN ('string', 'boolean', 'array') \
           AND (jsonb_typeof(a.value) <> 'array' OR o.value IS NOT NULL) \
         GROUP BY 1, 2",
    )
    .bind::<SqlUuid, _>(event_id)
    .bind::<Array<Text>, _>(&tallied)
    .load(conn)
    .await?;
    let mut by: HashMap<(String, String), i64> = HashMap::new();
    for t in tallies {
        by.insert((t.question, t.value), t.n);
    }
    let left = questions::places_left(conn, event_id).await?;
    let count = |q: &Question, value: &str| {
        by.get(&(q.key().to_owned(), value.to_owned()))
            .copied()
            .unwrap_or(0)
    };
    Ok(questions
        .iter()
        .map(|q| {
            let r = &q.row;
            let yes_no = r.kind == QuestionType::YesNo;
            QuestionCount {
                question: r.key.clone(),
                kind: r.kind,
                label: Localized::new(&r.label_ru, &r.label_en),
                answered: count(q, ""),
                yes: yes_no.then(|| count(q, "true")),
                no: yes_no.then(|| count(q, "false")),
                options: q
                    .options
                    .iter()
                    .map(|o| OptionCount {
                        option: o.key.clone(),
                        label: Localized::new(&o.label_ru, &o.label_en),
                        chosen: count(q, &o.key),
                        capacity: o.capacity,
                        places_left: o
                            .capacity
                            .map(|c| left.get(&o.id).copied().unwrap_or(c.into())),
                    })
                    .collect(),
            }
        })
        .collect())
}

/// The keys of the event's questions whose answers are personal data
/// (`Question::is_personal`): they are withheld from those who do not see contact details
/// either (device keys), as the email and phone are.
pub async fn personal_keys(conn: &mut AsyncPgConnection, event_id: Uuid) -> ApiResult<Vec<String>> {
    Ok(super::questions::of_event(conn, event_id)
        .await?
        .iter()
        .filter(|q| q.is_personal())
        .map(|q| q.key().to_owned())
        .collect())
}

/// `answers` without the answers to the questions `withheld`.
pub fn withhold(mut answers: Value, withheld: &[String]) -> Value {
    if let Some(map) = answers.as_object_mut() {
        for key in withheld {
            map.remove(key);
        }
    }
    answers
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forms::questions::OptionRow;

    fn question(kind: QuestionType, options: &[(&str, &str, &str)]) -> Question {
        let mut question = Question::sample("q", kind);
        if kind == QuestionType::Number {
            question.row.min = Some(0.0);
            question.row.max = Some(5.0);
        }
        let id = question.row.id;
        question.options = options
            .iter()
            .enumerate()
            .map(|(i, (key, ru, en))| OptionRow {
                id: Uuid::now_v7(),
                question_id: id,
                key: (*key).to_owned(),
                label_ru: (*ru).to_owned(),
                label_en: (*en).to_owned(),
                capacity: None,
                position: i as i32,
            })
            .collect();
        question
    }

    const TOPICS: &[(&str, &str, &str)] = &[("a", "Экология", "Ecology"), ("b", "Город", "Town")];

    #[test]
    fn a_filter_is_read_by_the_question_s_type() {
        let yes_no = question(QuestionType::YesNo, &[]);
        assert_eq!(filter(&yes_no, "true"), Ok(json!({"q": true})));
        assert_eq!(filter(&yes_no, "false"), Ok(json!({"q": false})));
        assert!(filter(&yes_no, "yes").is_err());
        let number = question(QuestionType::Number, &[]);
        assert_eq!(filter(&number, "2"), Ok(json!({"q": 2})));
        assert_eq!(filter(&number, "2.5"), Ok(json!({"q": 2.5})));
        for bad in ["6", "-1", "many", "inf", "NaN", ""] {
            assert!(filter(&number, bad).is_err(), "{bad:?}");
        }
        let many = question(QuestionType::MultipleChoice, TOPICS);
        assert_eq!(filter(&many, "b"), Ok(json!({"q": ["b"]})));
        assert!(filter(&many, "z").is_err());
        let one = question(QuestionType::SingleChoice, TOPICS);
        assert_eq!(filter(&one, "a"), Ok(json!({"q": "a"})));
        assert!(filter(&one, "A").is_err());
        let text = question(QuestionType::Text, &[]);
        assert_eq!(filter(&text, "Мончегорск"), Ok(json!({"q": "Мончегорск"})));
        assert!(filter(&text, "").is_err());
        let date = question(QuestionType::Date, &[]);
        assert!(filter(&date, "2027-04-23").is_ok());
        assert!(filter(&date, "23.04.2027").is_err());
    }

    #[test]
    fn answers_are_shown_as_people_read_them() {
        let many = question(QuestionType::MultipleChoice, TOPICS);
        let answers = json!({"q": ["b", "a"]});
        assert_eq!(
            shown(&many, &answers, Language::Ru),
            Shown::Text("Город; Экология".to_owned())
        );
        assert_eq!(
            shown(&many, &answers, Language::En),
            Shown::Text("Town; Ecology".to_owned())
        );
        let yes_no = question(QuestionType::YesNo, &[]);
        assert_eq!(
            shown(&yes_no, &json!({"q": true}), Language::Ru).text(),
            "Да"
        );
        assert_eq!(
            shown(&yes_no, &json!({"q": false}), Language::Ru).text(),
            "Нет"
        );
        assert_eq!(
            shown(&yes_no, &json!({"q": true}), Language::En).text(),
            "Yes"
        );
        assert_eq!(
            shown(&yes_no, &json!({"q": false}), Language::En).text(),
            "No"
        );
        assert_eq!(shown(&yes_no, &json!({}), Language::Ru), Shown::Empty);
        let number = question(QuestionType::Number, &[]);
        assert_eq!(shown(&number, &json!({"q": 2}), Language::Ru).text(), "2");
        assert_eq!(
            shown(&number, &json!({"q": 2.5}), Language::Ru).text(),
            "2.5"
        );
        let date = question(QuestionType::Date, &[]);
        assert_eq!(
            shown(&date, &json!({"q": "2027-04-23"}), Language::Ru),
            Shown::Date(NaiveDate::from_ymd_opt(2027, 4, 23).unwrap())
        );
    }

    #[test]
    fn withheld_answers_are_removed() {
        let answers = json!({"passport": "4710", "town": "Кировск"});
        assert_eq!(
            withhold(answers, &["passport".to_owned()]),
            json!({"town": "Кировск"})
        );
    }
}
