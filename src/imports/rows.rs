//! From a spreadsheet's cells to a participant's details: which column holds which field
//! (the organiser's mapping, else the headers), and each row's values checked by the rules
//! of a manual registration, sessions found by id or title, the category by its code.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use super::answers::{self, Questions, name_key};
use super::read::{Column, Field, FileError, column_letter};
use crate::events::Language;
use crate::registrations::{MAX_SESSIONS, NewRegistrationBody, validate_applicant};
use crate::validation::Validator;

/// Which column holds which field, and which columns answer which questions.
#[derive(Debug, Clone)]
pub struct Layout {
    pub columns: Vec<Column>,
    /// The column index of each field read.
    index: HashMap<Field, usize>,
    /// The questions answered, by key, and their columns' indexes, in file order.
    answers: Vec<(String, usize)>,
}

/// What a column is read into.
enum Target {
    Field(Field),
    Answer(String),
}

impl Layout {
    /// The layout of a header row, with the organiser's `mapping` (column header → field
    /// name, `answers.<question key>`, or null to leave a column out) taking precedence
    /// over recognised headers: field names (see [`Field::recognise`]), then the event's
    /// questions by key or label.
    pub fn new(
        header: Vec<String>,
        mapping: Option<&BTreeMap<String, Option<String>>>,
        questions: &Questions,
    ) -> Result<Layout, FileError> {
        let header: Vec<String> = header
            .into_iter()
            .map(|h| h.trim().trim_start_matches('\u{feff}').trim().to_owned())
            .collect();
        if let Some(mapping) = mapping {
            for (column, field) in mapping {
                if !header.iter().any(|h| h == column) {
                    return Err(FileError::mapping(
                        column,
                        format!(
                            "is not a column of the file (its columns: {})",
                            header
                                .iter()
                                .filter(|h| !h.is_empty())
                                .map(|h| format!("«{h}»"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
                match field.as_deref() {
                    Some(target) if target.starts_with(answers::PREFIX) => {
                        let key = &target[answers::PREFIX.len()..];
                        if !questions.has(key) {
                            let keys = questions.keys();
                            return Err(FileError::mapping(
                                column,
                                if keys.is_empty() {
                                    "names a question, and this event asks none".to_owned()
                                } else {
                                    format!(
                                        "names no question of this event; its questions: {}",
                                        keys.iter()
                                            .map(|k| format!("{}{k}", answers::PREFIX))
                                            .collect::<Vec<_>>()
                                            .join(", ")
                                    )
                                },
                            ));
                        }
                    }
                    Some(target) if Field::from_str(target).is_err() => {
                        return Err(FileError::mapping(
                            column,
                            format!(
                                "names no field; one of {}, or answers.<question key>",
                                Field::ALL
                                    .iter()
                                    .map(|f| f.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        ));
                    }
                    _ => {}
                }
            }
        }
        let mut columns: Vec<Column> = Vec::with_capacity(header.len());
        let mut index: HashMap<Field, usize> = HashMap::new();
        let mut answers: Vec<(String, usize)> = Vec::new();
        let label = |columns: &[Column], i: usize| {
            format!(
                "{} («{}»)",
                column_letter(i),
                columns
                    .get(i)
                    .map(|c| c.column.as_str())
                    .unwrap_or_default()
            )
        };
        for (i, name) in header.into_iter().enumerate() {
            let target = match mapping.and_then(|m| m.get(&name)) {
                Some(Some(target)) => match target.strip_prefix(answers::PREFIX) {
                    Some(key) => Some(Target::Answer(key.to_owned())),
                    None => Field::from_str(target).ok().map(Target::Field),
                },
                Some(None) => None,
                // A header naming a field read already may still be a question's label
                // (the export heads answer columns with labels).
                None => match (Field::recognise(&name), questions.recognise(&name)) {
                    (Some(field), Some(key)) if index.contains_key(&field) => {
                        Some(Target::Answer(key.to_owned()))
                    }
                    (Some(field), _) => Some(Target::Field(field)),
                    (None, Some(key)) => Some(Target::Answer(key.to_owned())),
                    (None, None) => None,
                },
            };
            let duplicate = |what: String, first: usize, columns: &[Column]| FileError {
                row: Some(1),
                column: Some(name.clone()),
                message: format!(
                    "holds {what} as column {} does; name the one to read in the mapping \
                     (and map the other to null)",
                    label(columns, first)
                ),
                member: "file".into(),
            };
            let (field, question) = match target {
                Some(Target::Field(field)) => {
                    if let Some(&first) = index.get(&field) {
                        return Err(duplicate(format!("`{field}`"), first, &columns));
                    }
                    index.insert(field, i);
                    (Some(field), None)
                }
                Some(Target::Answer(key)) => {
                    if let Some((_, first)) = answers.iter().find(|(k, _)| *k == key) {
                        return Err(duplicate(
                            format!("the answers to `{key}`"),
                            *first,
                            &columns,
                        ));
                    }
                    answers.push((key.clone(), i));
                    (None, Some(key))
                }
                None => (None, None),
            };
            columns.push(Column {
                column: if name.is_empty() {
                    column_letter(i)
                } else {
                    name
                },
                field,
                question,
            });
        }
        let missing: Vec<&str> = [
            (Field::FullName, "full_name (e.g. «ФИО»)"),
            (Field::Email, "email (e.g. «Эл. почта»)"),
        ]
        .into_iter()
        .filter(|(f, _)| !index.contains_key(f))
        .map(|(_, name)| name)
        .collect();
        if !missing.is_empty() {
            return Err(FileError {
                row: Some(1),
                column: None,
                message: format!(
                    "has no usable header: no column holds {}; name the columns in the first \
                     row or send a mapping",
                    missing.join(" or ")
                ),
                member: "file".into(),
            });
        }
        Ok(Layout {
            columns,
            index,
            answers,
        })
    }

    fn cell<'a>(&self, cells: &'a [String], field: Field) -> Option<&'a str> {
        self.index
            .get(&field)
            .and_then(|&i| cells.get(i))
            .map(|c| c.trim())
            .filter(|c| !c.is_empty())
    }

    fn column(&self, field: Field) -> String {
        self.index
            .get(&field)
            .map(|&i| self.columns[i].column.clone())
            .unwrap_or_default()
    }
}

/// A participant's details read from a row, as stored with the import.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Fields {
    pub full_name: String,
    pub email: String,
    pub organisation: Option<String>,
    pub position: Option<String>,
    pub city: Option<String>,
    pub phone: Option<String>,
    /// A category code of the event: `other` when the row names none (or, if the event has
    /// no such category, its first).
    pub category: String,
    /// The sessions named, by id.
    pub session_ids: Vec<Uuid>,
    /// Null: the event's default language.
    pub language: Option<Language>,
    /// Answers to the event's questions, by question key, as a registration holds them.
    #[serde(default)]
    pub answers: Map<String, Value>,
}

/// What is wrong with one value of a row.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RowProblem {
    /// The column's header in the file.
    pub column: String,
    /// The field it was read into (`email`), or the question it answers
    /// (`answers.transfer`).
    pub field: String,
    pub message: String,
}

/// One row read.
#[derive(Debug, Clone)]
pub struct ReadRow {
    pub row: u32,
    pub fields: Fields,
    pub problems: Vec<RowProblem>,
}

/// A session a row may name.
#[derive(Debug, Clone)]
pub struct SessionName {
    pub id: Uuid,
    pub title: String,
}

/// A category a row may name: by its code, or its Russian or English name.
#[derive(Debug, Clone)]
pub struct CategoryName {
    pub code: String,
    pub name_ru: String,
    pub name_en: String,
}

/// Reads rows against the event's sessions, categories and questions.
pub struct RowReader {
    questions: Questions,
    /// Codes by code and by name (lower case); the codes in the event's order.
    categories: HashMap<String, String>,
    codes: Vec<String>,
    ids: HashMap<Uuid, ()>,
    /// Titles compared regardless of case and spacing; two sessions of one title: `None`.
    titles: HashMap<String, Option<Uuid>>,
}

/// The category of a row that names none, if the event has it.
pub const DEFAULT_CATEGORY: &str = "other";

impl RowReader {
    /// `categories` in the event's order.
    pub fn new(
        sessions: Vec<SessionName>,
        categories: Vec<CategoryName>,
        questions: Questions,
    ) -> Self {
        let mut by_name = HashMap::new();
        for c in &categories {
            for name in [&c.name_ru, &c.name_en] {
                by_name
                    .entry(name_key(name))
                    .or_insert_with(|| c.code.clone());
            }
        }
        // Codes win over names.
        for c in &categories {
            by_name.insert(c.code.to_lowercase(), c.code.clone());
        }
        let mut titles: HashMap<String, Option<Uuid>> = HashMap::new();
        for s in &sessions {
            titles
                .entry(name_key(&s.title))
                .and_modify(|found| *found = None)
                .or_insert(Some(s.id));
        }
        RowReader {
            questions,
            categories: by_name,
            codes: categories.into_iter().map(|c| c.code).collect(),
            ids: sessions.iter().map(|s| (s.id, ())).collect(),
            titles,
        }
    }

    pub fn questions(&self) -> &Questions {
        &self.questions
    }

    pub fn read(&self, layout: &Layout, row: u32, cells: &[String]) -> ReadRow {
        let text = |f: Field| layout.cell(cells, f).map(str::to_owned);
        let mut problems = Vec::new();
        let mut problem = |field: Field, message: String| {
            problems.push(RowProblem {
                column: layout.column(field),
                field: field.as_str().to_owned(),
                message,
            });
        };
        let fallback = self
            .codes
            .iter()
            .find(|c| *c == DEFAULT_CATEGORY)
            .or(self.codes.first())
            .cloned();
        let category = match layout.cell(cells, Field::Category) {
            None => fallback.unwrap_or_else(|| {
                problem(Field::Category, "the event has no categories".to_owned());
                String::new()
            }),
            Some(name) => match self.categories.get(&name_key(name)) {
                Some(code) => code.clone(),
                None => {
                    problem(
                        Field::Category,
                        format!(
                            "«{name}» is not a category of this event; one of {}",
                            self.codes.join(", ")
                        ),
                    );
                    name.to_owned()
                }
            },
        };
        let language = layout.cell(cells, Field::Language).and_then(|code| {
            Language::from_str(&code.to_lowercase())
                .map_err(|_| problem(Field::Language, format!("«{code}» is not `ru` or `en`")))
                .ok()
        });
        let mut session_ids = Vec::new();
        if let Some(list) = layout.cell(cells, Field::Sessions) {
            for name in list
                .split([';', '\n'])
                .map(str::trim)
                .filter(|n| !n.is_empty())
            {
                let found = match Uuid::parse_str(name) {
                    Ok(id) => self
                        .ids
                        .contains_key(&id)
                        .then_some(id)
                        .ok_or_else(|| format!("{name} is not a session of this event")),
                    Err(_) => match self.titles.get(&name_key(name)) {
                        Some(Some(id)) => Ok(*id),
                        Some(None) => Err(format!(
                            "«{name}» is the title of several sessions; give the session's id"
                        )),
                        None => Err(format!("no session of this event is titled «{name}»")),
                    },
                };
                match found {
                    Ok(id) if !session_ids.contains(&id) => session_ids.push(id),
                    Ok(_) => {}
                    Err(message) => problem(Field::Sessions, message),
                }
            }
            if session_ids.len() > MAX_SESSIONS {
                problem(
                    Field::Sessions,
                    format!("names more than {MAX_SESSIONS} sessions"),
                );
            }
        }
        let body = NewRegistrationBody {
            full_name: text(Field::FullName).unwrap_or_default(),
            email: text(Field::Email).unwrap_or_default(),
            organisation: text(Field::Organisation),
            position: text(Field::Position),
            city: text(Field::City),
            phone: text(Field::Phone),
            category: category.clone(),
            consent: Some(true),
            consents: None,
            answers: None,
            session_ids: Vec::new(),
            language,
        };
        let mut v = Validator::new();
        validate_applicant(&mut v, &body);
        for error in v.into_errors() {
            if let Ok(field) = Field::from_str(&error.field) {
                problem(field, error.message);
            }
        }
        let answers = self.answers(layout, cells, &category, &mut problems);
        ReadRow {
            row,
            fields: Fields {
                full_name: body.full_name,
                email: body.email,
                organisation: body.organisation,
                position: body.position,
                city: body.city,
                phone: body.phone,
                category,
                session_ids,
                language,
                answers,
            },
            problems,
        }
    }

    /// The row's answers, each read as its question's type takes it, then checked against
    /// the form as a registration's would be; what is wrong goes to `problems`.
    fn answers(
        &self,
        layout: &Layout,
        cells: &[String],
        category: &str,
        problems: &mut Vec<RowProblem>,
    ) -> Map<String, Value> {
        let mut answers = Map::new();
        if layout.answers.is_empty() {
            return answers;
        }
        let column = |key: &str| {
            layout
                .answers
                .iter()
                .find(|(k, _)| k == key)
                .map(|&(_, i)| layout.columns[i].column.clone())
                .unwrap_or_default()
        };
        let mut unreadable: HashSet<&str> = HashSet::new();
        for (key, i) in &layout.answers {
            let Some(cell) = cells.get(*i).map(|c| c.trim()).filter(|c| !c.is_empty()) else {
                continue;
            };
            match self.questions.read(key, cell) {
                Ok(value) => {
                    answers.insert(key.clone(), value);
                }
                Err(message) => {
                    unreadable.insert(key.as_str());
                    problems.push(RowProblem {
                        column: column(key),
                        field: format!("{}{key}", answers::PREFIX),
                        message,
                    });
                }
            }
        }
        let asked: HashSet<&str> = layout
            .answers
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| !unreadable.contains(k))
            .collect();
        let body = Questions::body(category, &answers);
        for (field, message) in self.questions.check(&body, &asked) {
            let key = answers::question_of(&field).unwrap_or_default();
            problems.push(RowProblem {
                column: column(key),
                field,
                message,
            });
        }
        answers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An event without questions.
    fn no_questions() -> Questions {
        Questions::new(crate::forms::Form::new(Vec::new(), Vec::new(), Vec::new())).unwrap()
    }

    fn header(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    /// An event asking a yes/no question and a phone number labelled as the phone field is.
    fn two_questions() -> Questions {
        let question = |key: &str, kind, ru: &str, en: &str| {
            let mut question = crate::forms::questions::Question::sample(key, kind);
            question.row.label_ru = ru.to_owned();
            question.row.label_en = en.to_owned();
            question.row.required = true;
            question
        };
        use crate::forms::questions::QuestionType;
        Questions::new(crate::forms::Form::new(
            Vec::new(),
            vec![
                question(
                    "transfer",
                    QuestionType::YesNo,
                    "Нужен трансфер?",
                    "Transfer?",
                ),
                question("mobile", QuestionType::Phone, "Телефон", "Phone"),
            ],
            Vec::new(),
        ))
        .unwrap()
    }

    #[test]
    fn answer_columns_are_found_by_key_or_label_after_the_fields() {
        let questions = two_questions();
        // The first «Телефон» is the participant's phone, the second the question's (as the
        // export writes them: fields first, then answers under their labels).
        let layout = Layout::new(
            header(&["ФИО", "email", "Телефон", "TRANSFER", "Телефон", "Заметки"]),
            None,
            &questions,
        )
        .unwrap();
        let read: Vec<(Option<Field>, Option<&str>)> = layout
            .columns
            .iter()
            .map(|c| (c.field, c.question.as_deref()))
            .collect();
        assert_eq!(
            read,
            vec![
                (Some(Field::FullName), None),
                (Some(Field::Email), None),
                (Some(Field::Phone), None),
                (None, Some("transfer")),
                (None, Some("mobile")),
                (None, None),
            ]
        );
        // Two columns answering one question.
        let error = Layout::new(
            header(&["ФИО", "email", "transfer", "Transfer?"]),
            None,
            &questions,
        )
        .unwrap_err();
        assert_eq!(error.column.as_deref(), Some("Transfer?"));
        // The mapping names questions as answers.<key>.
        let mapping = BTreeMap::from([("Т".to_owned(), Some("answers.shuttle".to_owned()))]);
        let error =
            Layout::new(header(&["ФИО", "email", "Т"]), Some(&mapping), &questions).unwrap_err();
        assert_eq!(error.member, "mapping.Т");
        assert!(
            error.message.contains("answers.transfer"),
            "{}",
            error.message
        );
        let mapping = BTreeMap::from([("Т".to_owned(), Some("answers.transfer".to_owned()))]);
        let layout =
            Layout::new(header(&["ФИО", "email", "Т"]), Some(&mapping), &questions).unwrap();
        assert_eq!(layout.columns[2].question.as_deref(), Some("transfer"));
    }

    #[test]
    fn a_header_without_name_or_email_is_not_usable() {
        let error = Layout::new(header(&["ФИО", "Город"]), None, &no_questions()).unwrap_err();
        assert_eq!(error.row, Some(1));
        assert!(error.message.contains("email"), "{}", error.message);
    }

    #[test]
    fn the_mapping_names_columns_of_the_file() {
        let mapping = BTreeMap::from([("Почта".to_owned(), Some("email".to_owned()))]);
        let error =
            Layout::new(header(&["ФИО", "Адрес"]), Some(&mapping), &no_questions()).unwrap_err();
        assert_eq!(error.member, "mapping.Почта");
        let mapping = BTreeMap::from([("Адрес".to_owned(), Some("mail".to_owned()))]);
        let error =
            Layout::new(header(&["ФИО", "Адрес"]), Some(&mapping), &no_questions()).unwrap_err();
        assert_eq!(error.member, "mapping.Адрес");
        let mapping = BTreeMap::from([("Адрес".to_owned(), Some("email".to_owned()))]);
        let layout =
            Layout::new(header(&["ФИО", "Адрес"]), Some(&mapping), &no_questions()).unwrap();
        assert_eq!(layout.columns[1].field, Some(Field::Email));
    }

    #[test]
    fn sessions_are_found_by_title_or_id() {
        let a = Uuid::now_v7();
        let b = Uuid::now_v7();
        let reader = RowReader::new(
            vec![
                SessionName {
                    id: a,
                    title: "Пленарное заседание".into(),
                },
                SessionName {
                    id: b,
                    title: "Круглый стол".into(),
                },
            ],
            vec![CategoryName {
                code: "press".into(),
                name_ru: "Пресса".into(),
                name_en: "Press".into(),
            }],
            no_questions(),
        );
        let layout = Layout::new(
            header(&["full_name", "email", "sessions"]),
            None,
            &no_questions(),
        )
        .unwrap();
        let row = reader.read(
            &layout,
            2,
            &header(&[
                "Анна Иванова",
                "anna@example.org",
                &format!("пленарное  заседание; {b}"),
            ]),
        );
        assert!(row.problems.is_empty(), "{:?}", row.problems);
        assert_eq!(row.fields.session_ids, vec![a, b]);
        // No `other` category: the event's first.
        assert_eq!(row.fields.category, "press");
        let row = reader.read(&layout, 3, &header(&["", "not-an-email", "Нет такой"]));
        let fields: Vec<&str> = row.problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, vec!["sessions", "full_name", "email"]);
    }

    #[test]
    fn categories_are_found_by_code_or_name() {
        let reader = RowReader::new(
            Vec::new(),
            vec![
                CategoryName {
                    code: "government".into(),
                    name_ru: "Власть".into(),
                    name_en: "Government".into(),
                },
                CategoryName {
                    code: "other".into(),
                    name_ru: "Другое".into(),
                    name_en: "Other".into(),
                },
            ],
            no_questions(),
        );
        let layout = Layout::new(
            header(&["full_name", "email", "category"]),
            None,
            &no_questions(),
        )
        .unwrap();
        for (cell, code) in [
            ("власть", "government"),
            ("GOVERNMENT", "government"),
            ("", "other"),
        ] {
            let row = reader.read(&layout, 2, &header(&["Анна", "anna@example.org", cell]));
            assert!(row.problems.is_empty(), "{:?}", row.problems);
            assert_eq!(row.fields.category, code);
        }
        let row = reader.read(
            &layout,
            2,
            &header(&["Анна", "anna@example.org", "royalty"]),
        );
        assert_eq!(row.problems[0].field, "category");
    }
}
