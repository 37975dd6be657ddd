//! Registration forms the organiser designs: participant categories with their own places,
//! registration windows and waitlists; questions of ten types with conditions and choice
//! options that may have places; consent texts kept in versions; and the form as a JSON
//! Schema that frontends render and validate with, and the server checks bodies against.
//!
//! Limited places of a category are claimed by PostgreSQL in the registering transaction
//! (`register_participant`, `change_category`, `release_form_places` in the forms
//! migration), like a session's seats; this module changes the pools (capacity) under the
//! category's advisory lock.

pub mod answers;
mod cache;
pub mod categories;
pub mod consents;
pub mod form;
mod public;
pub mod questions;

pub use cache::FormCache;
pub use form::{Audience, Form, LimitedOption};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::validation::Validator;

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.configure(categories::routes)
        .configure(questions::routes)
        .configure(consents::routes)
        .configure(public::routes);
}

/// A text in Russian and in English (as sent).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LocalizedInput {
    #[schema(example = "Бизнес")]
    pub ru: String,
    #[schema(example = "Business")]
    pub en: String,
}

/// A text in Russian and in English.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct Localized {
    #[schema(example = "Бизнес")]
    pub ru: String,
    #[schema(example = "Business")]
    pub en: String,
}

impl Localized {
    pub fn new(ru: impl Into<String>, en: impl Into<String>) -> Self {
        Localized {
            ru: ru.into(),
            en: en.into(),
        }
    }
}

impl From<LocalizedInput> for Localized {
    fn from(input: LocalizedInput) -> Self {
        Localized::new(input.ru, input.en)
    }
}

/// Checks both languages of a single-line text.
pub fn check_localized_line(v: &mut Validator, field: &str, text: &Localized, max: usize) {
    v.line(&format!("{field}.ru"), &text.ru, max);
    v.line(&format!("{field}.en"), &text.en, max);
}

/// Codes and keys: what names a category, question, option or consent in bodies and URLs.
pub fn is_code(value: &str) -> bool {
    (1..=40).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

pub const CODE_PATTERN: &str = "^[a-z0-9_-]{1,40}$";

pub fn check_code(v: &mut Validator, field: &str, value: &str) {
    v.check(
        is_code(value),
        field,
        "must be 1 to 40 of a-z, 0-9, _ and -",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert!(is_code("business"));
        assert!(is_code("press-2026_a"));
        assert!(!is_code(""));
        assert!(!is_code("Бизнес"));
        assert!(!is_code("Business"));
        assert!(!is_code(&"a".repeat(41)));
    }
}
