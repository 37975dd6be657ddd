//! Dates and date-times as the API accepts them: from 0001-01-01 to 9999-12-31.
//!
//! chrono reads years from −262143 to +262142 and PostgreSQL stores dates from 4713 BC, so
//! a year chrono reads might not be storable (a 500), or might overflow date arithmetic. The
//! range of four-digit years (RFC 3339's) holds any real event and is checked as a value is
//! read, so every request body, query parameter and cursor gets it, and the error names the
//! member (422 `invalid_body`, 400 `invalid_query`).

use std::fmt;

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, Utc};
use serde::de::{self, Deserializer, Unexpected, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::{RefOr, Schema};

const YEARS: std::ops::RangeInclusive<i32> = 1..=9999;

/// A calendar day, `YYYY-MM-DD`, from 0001-01-01 to 9999-12-31.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(NaiveDate);

impl Day {
    pub fn get(self) -> NaiveDate {
        self.0
    }
}

/// A stored day; only days read from requests are checked.
impl From<NaiveDate> for Day {
    fn from(day: NaiveDate) -> Self {
        Day(day)
    }
}

impl Serialize for Day {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Day {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Days;
        impl Visitor<'_> for Days {
            type Value = Day;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a date (YYYY-MM-DD) from 0001-01-01 to 9999-12-31")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<Day, E> {
                value
                    .parse::<NaiveDate>()
                    .ok()
                    .filter(|day| YEARS.contains(&day.year()))
                    .map(Day)
                    .ok_or_else(|| E::invalid_value(Unexpected::Str(value), &self))
            }
        }
        deserializer.deserialize_str(Days)
    }
}

impl utoipa::PartialSchema for Day {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Date)))
            .description(Some("A calendar day, from 0001-01-01 to 9999-12-31."))
            .examples(["2027-04-24"])
            .into()
    }
}

impl utoipa::ToSchema for Day {}

/// An instant with a UTC offset (RFC 3339), whose date, as written and in UTC, lies from
/// 0001-01-01 to 9999-12-31.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<FixedOffset>);

impl Timestamp {
    pub fn utc(self) -> DateTime<Utc> {
        self.0.to_utc()
    }

    /// As written, with its offset.
    pub fn fixed(self) -> DateTime<FixedOffset> {
        self.0
    }
}

/// A stored instant; only instants read from requests are checked.
impl From<DateTime<Utc>> for Timestamp {
    fn from(at: DateTime<Utc>) -> Self {
        Timestamp(at.fixed_offset())
    }
}

impl From<DateTime<FixedOffset>> for Timestamp {
    fn from(at: DateTime<FixedOffset>) -> Self {
        Timestamp(at)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Instants;
        impl Visitor<'_> for Instants {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a date-time with a UTC offset (RFC 3339, 2027-04-24T11:00:00+03:00) \
                     from 0001-01-01 to 9999-12-31",
                )
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<Timestamp, E> {
                value
                    .parse::<DateTime<FixedOffset>>()
                    .ok()
                    .filter(|at| {
                        YEARS.contains(&at.year()) && YEARS.contains(&at.naive_utc().year())
                    })
                    .map(Timestamp)
                    .ok_or_else(|| E::invalid_value(Unexpected::Str(value), &self))
            }
        }
        deserializer.deserialize_str(Instants)
    }
}

impl utoipa::PartialSchema for Timestamp {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .description(Some(
                "A date-time with a UTC offset (RFC 3339), from 0001-01-01 to 9999-12-31.",
            ))
            .examples(["2027-04-24T11:00:00+03:00"])
            .into()
    }
}

impl utoipa::ToSchema for Timestamp {}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> Result<Day, serde_json::Error> {
        serde_json::from_value(serde_json::json!(text))
    }

    fn instant(text: &str) -> Result<Timestamp, serde_json::Error> {
        serde_json::from_value(serde_json::json!(text))
    }

    #[test]
    fn days_of_four_digit_years_only() {
        assert!(day("0001-01-01").is_ok());
        assert!(day("9999-12-31").is_ok());
        for far in [
            "0000-12-31",
            "10000-01-01",
            "-262143-01-01",
            "+262142-12-31",
            "2027-02-30",
        ] {
            assert!(day(far).is_err(), "{far}");
        }
    }

    #[test]
    fn instants_in_range_as_written_and_in_utc() {
        assert_eq!(
            instant("2027-04-24T11:00:00+03:00")
                .unwrap()
                .utc()
                .to_rfc3339(),
            "2027-04-24T08:00:00+00:00"
        );
        assert!(instant("0001-01-01T00:00:00Z").is_ok());
        assert!(instant("9999-12-31T23:59:59.999Z").is_ok());
        for far in [
            "0001-01-01T01:00:00+03:00",  // 0000-12-31 in UTC
            "9999-12-31T23:00:00-05:00",  // 10000-01-01 in UTC
            "10000-01-01T01:00:00+14:00", // 9999-12-31 in UTC, but not as written
            "-262143-04-24T11:00:00+03:00",
            "+262142-04-24T11:00:00Z",
            "2027-04-24",
        ] {
            assert!(instant(far).is_err(), "{far}");
        }
    }

    #[test]
    fn the_error_says_what_is_expected_and_not_what_was_sent() {
        let message = day("-262143-01-01").unwrap_err().to_string();
        assert!(
            message.contains("from 0001-01-01 to 9999-12-31"),
            "{message}"
        );
    }
}
