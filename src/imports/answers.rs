//! Answers to the event's questions read from a spreadsheet: which column answers which
//! question (its key, or its label in Russian or English, as the export heads its answer
//! columns), and each cell read the way its question's type takes it (да/нет, `1 234,5`,
//! DD.MM.YYYY, options by key or label). A row's answers are then checked against the
//! form's own JSON Schema, as a registration's are, so an import cannot store an answer a
//! registration would be refused.

use std::collections::{HashMap, HashSet};

use chrono::NaiveDate;
use serde_json::{Map, Number, Value, json};

use crate::error::ApiResult;
use crate::forms::questions::{OptionRow, Question, QuestionType};
use crate::forms::{Audience, Form};

/// The prefix that names a question in a mapping (`answers.transfer`) and in problems.
pub const PREFIX: &str = "answers.";

/// A header or an option's name compared regardless of case and spacing.
pub fn name_key(name: &str) -> String {
    name.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// The event's questions, as an import reads them.
pub struct Questions {
    form: Form,
    validator: jsonschema::Validator,
    /// Question indexes by key and by label (either language); a label two questions
    /// share names neither (`None`).
    by_name: HashMap<String, Option<usize>>,
}

impl Questions {
    pub fn new(form: Form) -> ApiResult<Questions> {
        let validator = form.compiled(Audience::Organiser)?;
        let mut by_name: HashMap<String, Option<usize>> = HashMap::new();
        for (i, q) in form.questions.iter().enumerate() {
            let labels: HashSet<String> = [&q.row.label_ru, &q.row.label_en]
                .into_iter()
                .map(|l| name_key(l))
                .collect();
            for label in labels {
                by_name
                    .entry(label)
                    .and_modify(|found| *found = None)
                    .or_insert(Some(i));
            }
        }
        // Keys win over labels.
        for (i, q) in form.questions.iter().enumerate() {
            by_name.insert(q.key().to_owned(), Some(i));
            by_name.insert(format!("{PREFIX}{}", q.key()), Some(i));
        }
        Ok(Questions {
            form,
            validator,
            by_name,
        })
    }

    /// The key of the question a header names, if it names one.
    pub fn recognise(&self, header: &str) -> Option<&str> {
        self.by_name
            .get(&name_key(header))
            .copied()
            .flatten()
            .map(|i| self.form.questions[i].key())
    }

    pub fn has(&self, key: &str) -> bool {
        self.form.question(key).is_some()
    }

    /// The questions' keys, in the form's order (to list in a message).
    pub fn keys(&self) -> Vec<&str> {
        self.form.questions.iter().map(Question::key).collect()
    }

    pub fn form(&self) -> &Form {
        &self.form
    }

    /// The answer a (non-empty, trimmed) cell gives to the question `key`, or what is
    /// wrong with it.
    pub fn read(&self, key: &str, cell: &str) -> Result<Value, String> {
        let Some(q) = self.form.question(key) else {
            return Err("is not a question of this event".to_owned());
        };
        match q.row.kind {
            QuestionType::Text
            | QuestionType::Multiline
            | QuestionType::Phone
            | QuestionType::Email => Ok(json!(cell)),
            QuestionType::Country => Ok(json!(cell.to_uppercase())),
            QuestionType::Number => number(cell).ok_or_else(|| {
                "must be a number (1234.5, or 1 234,5 as Russian spreadsheets write it)".to_owned()
            }),
            QuestionType::YesNo => yes_no(cell)
                .map(Value::Bool)
                .ok_or_else(|| "must be yes or no: да/нет, yes/no, true/false or 1/0".to_owned()),
            QuestionType::Date => date(cell).map(|d| json!(d.format("%Y-%m-%d").to_string())),
            QuestionType::SingleChoice => option(&q.options, cell).map(|o| json!(o.key)),
            QuestionType::MultipleChoice => choices(&q.options, cell).map(|keys| json!(keys)),
        }
    }

    /// What the form finds wrong with a row's `body`, as `(field, message)`, about the
    /// questions of `asked` only: a question the file has no column for was not asked of
    /// the people it lists, and its answer is not required of them.
    pub fn check(&self, body: &Value, asked: &HashSet<&str>) -> Vec<(String, String)> {
        self.form
            .problems(&self.validator, body)
            .into_iter()
            .filter_map(|e| {
                let key = question_of(&e.field)?;
                asked.contains(key).then_some((e.field, e.message))
            })
            .collect()
    }

    /// The part of a row's registration body its answers are checked with: the category
    /// (questions may apply to some categories only) and the answers.
    pub fn body(category: &str, answers: &Map<String, Value>) -> Value {
        json!({"category": category, "answers": answers})
    }
}

/// The key of the question a field names (`answers.topics[1]` → `topics`).
pub fn question_of(field: &str) -> Option<&str> {
    let rest = field.strip_prefix(PREFIX)?;
    Some(rest.split(['.', '[']).next().unwrap_or(rest))
}

/// `1234.5`, `1 234,5` (spaces, no-break spaces, a decimal comma), `1,234.5`, `-3`.
fn number(cell: &str) -> Option<Value> {
    let compact: String = cell
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '\u{202f}' && *c != '\'')
        .collect();
    let text = if compact.contains('.') {
        // A point is the decimal separator; commas group thousands.
        compact.replace(',', "")
    } else if compact.matches(',').count() == 1 {
        compact.replace(',', ".")
    } else {
        compact
    };
    let value: f64 = text.parse().ok().filter(|v: &f64| v.is_finite())?;
    if value.fract() == 0.0 && value.abs() < 1e15 {
        Some(Value::Number(Number::from(value as i64)))
    } else {
        Number::from_f64(value).map(Value::Number)
    }
}

/// Yes or no in the words spreadsheets use, Russian Excel's ИСТИНА/ЛОЖЬ included.
fn yes_no(cell: &str) -> Option<bool> {
    match cell.to_lowercase().as_str() {
        "да" | "д" | "yes" | "y" | "true" | "1" | "истина" => Some(true),
        "нет" | "н" | "no" | "n" | "false" | "0" | "ложь" => Some(false),
        _ => None,
    }
}

/// YYYY-MM-DD (an XLSX date cell reads so, with its time when it has one) or DD.MM.YYYY.
fn date(cell: &str) -> Result<NaiveDate, String> {
    let day = cell.split([' ', 'T']).next().unwrap_or(cell);
    NaiveDate::parse_from_str(day, "%Y-%m-%d")
        .or_else(|_| NaiveDate::parse_from_str(day, "%d.%m.%Y"))
        .map_err(|_| "must be a date: YYYY-MM-DD or DD.MM.YYYY".to_owned())
}

fn find<'a>(options: &'a [OptionRow], name: &str) -> Option<&'a OptionRow> {
    let name = name_key(name);
    options.iter().find(|o| o.key == name).or_else(|| {
        options
            .iter()
            .find(|o| name_key(&o.label_ru) == name || name_key(&o.label_en) == name)
    })
}

fn not_an_option(options: &[OptionRow], name: &str) -> String {
    format!(
        "«{name}» is not an option of this question; one of {}",
        options
            .iter()
            .map(|o| format!("{} («{}»)", o.key, o.label_ru))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn option<'a>(options: &'a [OptionRow], cell: &str) -> Result<&'a OptionRow, String> {
    find(options, cell).ok_or_else(|| not_an_option(options, cell))
}

/// Several options separated by `;` or new lines, or by `,` when that reads unambiguously
/// (no option's label is itself the whole cell).
fn choices(options: &[OptionRow], cell: &str) -> Result<Vec<String>, String> {
    let names: Vec<&str> = if cell.contains([';', '\n']) {
        cell.split([';', '\n']).collect()
    } else {
        let parts: Vec<&str> = cell.split(',').collect();
        let whole = find(options, cell);
        let each = parts.len() > 1 && parts.iter().all(|p| find(options, p.trim()).is_some());
        match (whole, each) {
            (Some(_), true) => {
                return Err(format!(
                    "«{cell}» is one option or several separated by commas; separate \
                     options with «;»"
                ));
            }
            (Some(_), false) => vec![cell],
            (None, _) => parts,
        }
    };
    let mut keys: Vec<String> = Vec::new();
    for name in names.into_iter().map(str::trim).filter(|n| !n.is_empty()) {
        let found = option(options, name)?;
        if !keys.contains(&found.key) {
            keys.push(found.key.clone());
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn options(list: &[(&str, &str, &str)]) -> Vec<OptionRow> {
        list.iter()
            .enumerate()
            .map(|(i, (key, ru, en))| OptionRow {
                id: Uuid::now_v7(),
                question_id: Uuid::nil(),
                key: (*key).to_owned(),
                label_ru: (*ru).to_owned(),
                label_en: (*en).to_owned(),
                capacity: None,
                position: i as i32,
            })
            .collect()
    }

    #[test]
    fn numbers_are_read_as_russian_and_english_spreadsheets_write_them() {
        assert_eq!(number("1 234,5"), Some(json!(1234.5)));
        assert_eq!(number("1\u{a0}234"), Some(json!(1234)));
        assert_eq!(number("1,234.5"), Some(json!(1234.5)));
        assert_eq!(number("-3"), Some(json!(-3)));
        assert_eq!(number("2"), Some(json!(2)));
        assert_eq!(number("два"), None);
        assert_eq!(number("1,2,3"), None);
    }

    #[test]
    fn yes_and_no_in_either_language() {
        for cell in ["да", "Да", "YES", "true", "1", "ИСТИНА"] {
            assert_eq!(yes_no(cell), Some(true), "{cell}");
        }
        for cell in ["нет", "No", "FALSE", "0", "ложь"] {
            assert_eq!(yes_no(cell), Some(false), "{cell}");
        }
        assert_eq!(yes_no("может быть"), None);
    }

    #[test]
    fn dates_as_iso_or_russian() {
        let day = NaiveDate::from_ymd_opt(2027, 4, 19).unwrap();
        assert_eq!(date("2027-04-19"), Ok(day));
        assert_eq!(date("19.04.2027"), Ok(day));
        assert_eq!(date("2027-04-19 00:00:00"), Ok(day));
        assert!(date("31.02.2027").is_err());
        assert!(date("19/04/2027").is_err());
    }

    #[test]
    fn choices_by_key_or_label_separated_by_semicolons_or_unambiguous_commas() {
        let list = options(&[
            ("a", "Волонтёрство", "Volunteering"),
            ("b", "Проекты", "Projects"),
            ("c", "Города, сёла", "Towns, villages"),
        ]);
        assert_eq!(
            choices(&list, "волонтёрство; Projects").unwrap(),
            vec!["a", "b"]
        );
        assert_eq!(choices(&list, "a, b").unwrap(), vec!["a", "b"]);
        assert_eq!(choices(&list, "Города, сёла").unwrap(), vec!["c"]);
        assert_eq!(choices(&list, "Города, сёла; b").unwrap(), vec!["c", "b"]);
        let error = choices(&list, "a; Спорт").unwrap_err();
        assert!(error.contains("«Спорт»"), "{error}");
        assert_eq!(option(&list, "PROJECTS").unwrap().key, "b");
    }

    #[test]
    fn fields_name_their_question() {
        assert_eq!(question_of("answers.topics[1]"), Some("topics"));
        assert_eq!(question_of("answers.transfer"), Some("transfer"));
        assert_eq!(question_of("category"), None);
    }
}
