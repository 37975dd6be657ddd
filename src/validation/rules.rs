//! The rules of the texts every registration has (a name, an address, a phone number, the ids
//! of sessions) and of the answers of the date, phone and email types, written once as JSON
//! Schema: the form's schema is built from them, frontends check them with their libraries,
//! and the server with the `jsonschema` crate, here too where it checks the same values
//! outside a form (`is_email`, `is_phone`).
//!
//! The patterns read alike in ECMA-262 (Ajv, browsers), Python's `re` and the crate's engine:
//! character classes are spelt out with `\uXXXX` (what `\s` covers differs between them),
//! and no rule rests on `$` refusing a final new line, as Python's `$` also matches before
//! one: control characters are refused by a rule of their own (`not` a string with one), and
//! an address may end in white space anyway (the server trims it).

use std::sync::LazyLock;

use serde_json::{Value, json};

/// Control characters (Unicode's Cc: C0, DEL and C1), inside a character class.
macro_rules! controls {
    () => {
        r"\u0000-\u001F\u007F-\u009F"
    };
}

/// White space that is not a control character (Unicode's White_Space less Cc), inside a
/// character class.
macro_rules! spaces {
    () => {
        r"\u0020\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000"
    };
}

/// Characters that show nothing and are not white space (soft hyphen, zero-width and
/// direction marks, word joiner, byte order mark), inside a character class.
macro_rules! invisible {
    () => {
        r"\u00AD\u180E\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u2069\uFEFF"
    };
}

/// White space as Rust's `str::trim` sees it (Unicode's White_Space).
macro_rules! white_space {
    () => {
        concat!(r"[\u0009-\u000D\u0085", spaces!(), "]")
    };
}

/// A character of a domain's label other than a hyphen: an ASCII letter or digit, or any
/// other character that is neither ASCII, white space nor a control character (IDNA judges
/// those).
macro_rules! label_end {
    () => {
        concat!(
            "[^",
            controls!(),
            spaces!(),
            r"\u0021-\u002F\u003A-\u0040\u005B-\u0060\u007B-\u007E]"
        )
    };
}

/// A character of a domain's label: as `label_end`, or a hyphen.
macro_rules! label_inner {
    () => {
        concat!(
            "[^",
            controls!(),
            spaces!(),
            r"\u0021-\u002C\u002E\u002F\u003A-\u0040\u005B-\u0060\u007B-\u007E]"
        )
    };
}

macro_rules! label {
    () => {
        concat!(label_end!(), "(?:", label_inner!(), "*", label_end!(), ")?")
    };
}

/// An address: a local part of 1 to 64 characters without `@`, white space or control
/// characters, `@`, and a domain of at least two labels of letters, digits and hyphens (not
/// first or last) or other non-ASCII characters.
macro_rules! address {
    () => {
        concat!(
            "[^@",
            controls!(),
            spaces!(),
            "]{1,64}@",
            label!(),
            r"(?:\.",
            label!(),
            ")+"
        )
    };
}

/// Any control character (`not` this: a single line).
pub const CONTROL_CHARACTER: &str = concat!("[", controls!(), "]");
/// A control character other than a tab, a line feed or a carriage return (`not` this: text
/// of several lines).
pub const CONTROL_WITHIN_TEXT: &str = r"[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]";
/// A character that is neither white space, a control character nor one that shows
/// nothing (this: not blank).
pub const VISIBLE_CHARACTER: &str = concat!("[^", controls!(), spaces!(), invisible!(), "]");

/// Whether `c` is what [`VISIBLE_CHARACTER`] matches.
pub fn is_visible(c: char) -> bool {
    !(c.is_control()
        || c.is_whitespace()
        || matches!(
            c,
            '\u{AD}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{2069}'
                | '\u{FEFF}'
        ))
}
/// An email address. Whether its domain is one IDNA accepts (mapping, Punycode, the length of
/// its labels once converted) is beyond a regular expression: see [`domain_is_valid`].
pub const EMAIL_PATTERN: &str = concat!("^", address!(), "$");
/// The registration's address, as sent: white space around it is trimmed.
pub const EMAIL_FIELD_PATTERN: &str =
    concat!("^", white_space!(), "*", address!(), white_space!(), "*$");
/// A phone number: digits, spaces, + - ( ) ., at least three digits.
pub const PHONE_PATTERN: &str = r"^[ +().-]*[0-9][ +().-]*[0-9][ +().-]*[0-9][0-9 +().-]*$";
/// A date, YYYY-MM-DD, of a year from 0001 (`format: date` refuses days a month does not
/// have; the pattern leaves out the year 0000, which some checks of that format accept).
pub const DATE_PATTERN: &str = concat!(
    "^(?:[0-9]{3}[1-9]|[0-9]{2}[1-9]0|[0-9][1-9]00|[1-9]000)",
    "-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])$"
);
/// A UUID, in its hyphenated form.
pub const UUID_PATTERN: &str =
    "^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$";

pub const PHONE_MAX: u32 = 50;
pub const EMAIL_MAX: u32 = 254;

/// A string of one line: `not` one with a control character.
fn single_line(mut schema: Value) -> Value {
    schema["not"] = json!({"type": "string", "pattern": CONTROL_CHARACTER});
    schema
}

/// A required single line, not blank, of at most `max` characters (`full_name`, answers to
/// text questions).
pub fn line(max: u32) -> Value {
    single_line(json!({
        "type": "string",
        "minLength": 1,
        "maxLength": max,
        "pattern": VISIBLE_CHARACTER,
    }))
}

/// Text of several lines, not blank, of at most `max` characters: tabs, line feeds and
/// carriage returns are its only control characters (PostgreSQL's `jsonb` cannot hold a NUL
/// at all).
pub fn lines(max: u32) -> Value {
    json!({
        "type": "string",
        "minLength": 1,
        "maxLength": max,
        "pattern": VISIBLE_CHARACTER,
        "not": {"type": "string", "pattern": CONTROL_WITHIN_TEXT},
    })
}

/// An optional single line of at most `max` characters, or null (`organisation`, `city`).
pub fn optional_line(max: u32) -> Value {
    single_line(json!({"type": ["string", "null"], "maxLength": max}))
}

/// The registration's address.
pub fn email_field() -> Value {
    json!({"type": "string", "maxLength": EMAIL_MAX, "pattern": EMAIL_FIELD_PATTERN})
}

/// The registration's phone number, or null.
pub fn phone_field() -> Value {
    single_line(json!({
        "type": ["string", "null"],
        "maxLength": PHONE_MAX,
        "pattern": PHONE_PATTERN,
    }))
}

/// The answer to an email question.
pub fn email() -> Value {
    single_line(json!({"type": "string", "maxLength": EMAIL_MAX, "pattern": EMAIL_PATTERN}))
}

/// The answer to a phone question.
pub fn phone() -> Value {
    single_line(json!({"type": "string", "maxLength": PHONE_MAX, "pattern": PHONE_PATTERN}))
}

/// The answer to a date question.
pub fn date() -> Value {
    json!({"type": "string", "pattern": DATE_PATTERN, "format": "date"})
}

/// A session's id.
pub fn uuid() -> Value {
    json!({"type": "string", "pattern": UUID_PATTERN, "format": "uuid"})
}

/// A schema compiled as the form's are: 2020-12, formats asserted.
pub fn compile(
    schema: &Value,
) -> Result<jsonschema::Validator, jsonschema::ValidationError<'static>> {
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(schema)
}

fn compiled(schema: Value) -> jsonschema::Validator {
    compile(&schema).expect("the rules' schemas compile")
}

/// An email address, as an email question takes it and as the registration's address is
/// once trimmed: the schema's pattern, and a domain IDNA accepts.
pub fn is_email(value: &str) -> bool {
    static EMAIL: LazyLock<jsonschema::Validator> = LazyLock::new(|| compiled(email()));
    EMAIL.is_valid(&json!(value)) && domain_is_valid(value)
}

/// Whether the domain of an address (trimmed) is one IDNA accepts, as UTS 46 maps and
/// converts it for DNS: what a pattern cannot check of an address. True for a value without
/// `@`, which the pattern refuses.
pub fn domain_is_valid(address: &str) -> bool {
    address
        .trim()
        .split_once('@')
        .is_none_or(|(_, domain)| crate::email::domain_to_ascii(domain).is_some())
}

/// A phone number, as the registration's and a phone question take it.
pub fn is_phone(value: &str) -> bool {
    static PHONE: LazyLock<jsonschema::Validator> = LazyLock::new(|| compiled(phone()));
    PHONE.is_valid(&json!(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::Validator;

    fn valid(schema: Value, value: &str) -> bool {
        compiled(schema).is_valid(&json!(value))
    }

    #[test]
    fn every_pattern_compiles() {
        for pattern in [
            CONTROL_CHARACTER,
            CONTROL_WITHIN_TEXT,
            VISIBLE_CHARACTER,
            EMAIL_PATTERN,
            EMAIL_FIELD_PATTERN,
            PHONE_PATTERN,
            DATE_PATTERN,
            UUID_PATTERN,
        ] {
            compile(&json!({"pattern": pattern})).unwrap();
        }
    }

    /// The characters that show something are written twice, as a character class for the
    /// schema and as Rust for the server's own line rule: they agree on every character of
    /// the Basic Multilingual Plane and a few beyond it.
    #[test]
    fn the_pattern_and_the_code_see_the_same_characters() {
        let pattern = compiled(json!({"pattern": VISIBLE_CHARACTER}));
        let chars = (0..=0xFFFF_u32)
            .chain([0x1F600, 0xE0001, 0x10FFFD])
            .filter_map(char::from_u32);
        for c in chars {
            assert_eq!(
                pattern.is_valid(&json!(c.to_string())),
                is_visible(c),
                "U+{:04X}",
                u32::from(c)
            );
        }
    }

    #[test]
    fn a_name_is_what_the_server_takes_as_a_line() {
        for name in [
            "Анна",
            " Анна ",
            "Анна\u{a0}Иванова",
            "😀",
            "",
            " ",
            "\u{a0}\u{3000}",
            "\u{200b}",
            "\u{feff}\u{200b} \u{2060}",
            "\u{ad}",
            "\u{200b}Анна",
            "Анна\u{200d}",
            "Анна\n",
            "Анна\tИванова",
            "\u{85}",
            "\u{7}x",
            "x\u{9f}",
            &"ё".repeat(200),
            &"ё".repeat(201),
        ] {
            let mut v = Validator::new();
            v.line("full_name", name, 200);
            assert_eq!(
                valid(line(200), name),
                v.into_errors().is_empty(),
                "{name:?}"
            );
        }
    }

    #[test]
    fn addresses() {
        for good in [
            "anna@example.org",
            "анна@пример.рф",
            "a@b.c",
            "anna+events@mail.example-domain.org",
            "Anna.Ivanova@Example.ORG",
            "a@xn--e1afmkfd.xn--p1ai",
            &format!("{}@example.org", "a".repeat(64)),
        ] {
            assert!(is_email(good), "{good}");
        }
        for bad in [
            "",
            "anna",
            "anna@",
            "@example.org",
            "an na@example.org",
            "a@b",
            "a@@b.c",
            "anna@exa_mple.org",
            "anna@-example-.org",
            "anna@example-.org",
            "anna@example..org",
            "anna@.example.org",
            "anna@example.org.",
            "anna@example.org\n",
            "anna\u{7}@example.org",
            "anna@exa\u{a0}mple.org",
            "a@xn--zz.org",
            &format!("{}@example.org", "a".repeat(65)),
        ] {
            assert!(!is_email(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_registration_s_address_may_have_white_space_around_it() {
        for (value, ok) in [
            (" anna@example.org ", true),
            ("\tanna@example.org\n", true),
            ("\u{3000}anna@example.org", true),
            ("anna@example.org x", false),
            ("anna @example.org", false),
        ] {
            assert_eq!(valid(email_field(), value), ok, "{value:?}");
        }
    }

    #[test]
    fn phones() {
        for good in [
            "+7 (815) 365-00-00",
            "8 815 365.00.00",
            "(+7) 815 365-00-00",
            "123",
        ] {
            assert!(is_phone(good), "{good}");
        }
        for bad in [
            "call me",
            "12",
            "",
            "+7 815 365-00-00\n",
            "+7 815 365-00-00 ext. 5",
            "١٢٣",
            &"1".repeat(51),
        ] {
            assert!(!is_phone(bad), "{bad:?}");
        }
    }

    #[test]
    fn dates_are_days_of_the_calendar() {
        for (day, ok) in [
            ("2027-04-23", true),
            ("2028-02-29", true),
            ("2000-02-29", true),
            ("0001-01-01", true),
            ("2027-02-29", false),
            ("1900-02-29", false),
            ("2027-02-31", false),
            ("2027-04-31", false),
            ("0000-01-01", false),
            ("2027-13-01", false),
            ("23.04.2027", false),
            ("2027-04-23\n", false),
        ] {
            assert_eq!(valid(date(), day), ok, "{day:?}");
        }
    }

    #[test]
    fn session_ids() {
        for (id, ok) in [
            ("0196a1b2-0000-7000-8000-000000000000", true),
            ("0196A1B2-0000-7000-8000-00000000000F", true),
            ("0196a1b200007000800000000000000", false),
            ("{0196a1b2-0000-7000-8000-000000000000}", false),
            ("urn:uuid:0196a1b2-0000-7000-8000-000000000000", false),
        ] {
            assert_eq!(valid(uuid(), id), ok, "{id:?}");
        }
    }
}
