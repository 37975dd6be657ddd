//! Request validation that collects every problem before answering 422, and the rules of
//! the texts every registration has, written once as JSON Schema (`rules`).

pub mod rules;

pub use rules::is_email;

use crate::error::{ApiError, ApiResult, FieldError};

#[derive(Debug, Default)]
pub struct Validator {
    errors: Vec<FieldError>,
}

impl Validator {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn error(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    pub fn check(&mut self, ok: bool, field: &str, message: &str) {
        if !ok {
            self.error(field, message);
        }
    }

    /// A required single-line text of 1..=max characters with something to see (not only
    /// white space or characters that show nothing).
    pub fn line(&mut self, field: &str, value: &str, max: usize) {
        if !value.chars().any(rules::is_visible) {
            self.error(field, "must not be empty");
        } else {
            self.bounded_line(field, value, max);
        }
    }

    /// An optional single-line text of at most `max` characters.
    pub fn opt_line(&mut self, field: &str, value: Option<&str>, max: usize) {
        if let Some(value) = value {
            self.bounded_line(field, value, max);
        }
    }

    /// An optional multi-line text (new lines and tabs allowed) of at most `max` characters.
    pub fn opt_text(&mut self, field: &str, value: Option<&str>, max: usize) {
        if let Some(value) = value {
            if value.chars().count() > max {
                self.error(field, format!("must be at most {max} characters"));
            } else if value
                .chars()
                .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
            {
                self.error(field, "must not contain control characters");
            }
        }
    }

    fn bounded_line(&mut self, field: &str, value: &str, max: usize) {
        if value.chars().count() > max {
            self.error(field, format!("must be at most {max} characters"));
        } else if value.chars().any(char::is_control) {
            self.error(field, "must be a single line without control characters");
        }
    }

    pub fn email(&mut self, field: &str, value: &str) {
        if !is_email(value.trim()) {
            self.error(field, "must be an email address");
        }
    }

    pub fn range<T: PartialOrd + std::fmt::Display>(
        &mut self,
        field: &str,
        value: T,
        min: T,
        max: T,
    ) {
        if value < min || value > max {
            self.error(field, format!("must be between {min} and {max}"));
        }
    }

    /// A list of at most `max` entries.
    pub fn list_len<T>(&mut self, field: &str, items: &[T], max: usize) {
        if items.len() > max {
            self.error(field, format!("must have at most {max} entries"));
        }
    }

    /// The problems found, for callers that report them otherwise than as a 422.
    pub fn into_errors(self) -> Vec<FieldError> {
        self.errors
    }

    pub fn finish(self) -> ApiResult<()> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::validation(self.errors))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_count_characters_not_bytes() {
        let mut v = Validator::new();
        v.line("title", &"ё".repeat(10), 10);
        assert!(v.finish().is_ok());
        let mut v = Validator::new();
        v.line("title", &"ё".repeat(11), 10);
        v.line("city", "  ", 10);
        v.line("name", "two\nlines", 10);
        let error = v.finish().unwrap_err();
        assert_eq!(error.problem().errors.len(), 3);
    }
}
