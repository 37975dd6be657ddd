//! JSON merge patch (RFC 7386) fields: absent = unchanged, `null` = clear.
//!
//! Nullable fields are `Option<Option<T>>` deserialised with [`nullable`]; fields that
//! cannot be cleared are `Option<T>` deserialised with [`non_null`], so `null` is refused
//! instead of being mistaken for "absent".

use serde::{Deserialize, Deserializer};

/// `Some(None)` for `null`, `Some(Some(v))` for a value; use with `#[serde(default)]`.
pub fn nullable<'de, T, D>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Refuses `null`; use with `#[serde(default)]` so that absence still means "unchanged".
pub fn non_null<'de, T, D>(deserializer: D) -> Result<Option<T>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    match Option::<T>::deserialize(deserializer)? {
        Some(value) => Ok(Some(value)),
        None => Err(serde::de::Error::custom("null is not allowed here")),
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct P {
        #[serde(default, deserialize_with = "super::nullable")]
        city: Option<Option<String>>,
        #[serde(default, deserialize_with = "super::non_null")]
        title: Option<String>,
    }

    #[test]
    fn absent_null_and_value_differ() {
        let p: P = serde_json::from_str("{}").unwrap();
        assert_eq!((p.city, p.title), (None, None));
        let p: P = serde_json::from_str(r#"{"city": null, "title": "Т"}"#).unwrap();
        assert_eq!((p.city, p.title.as_deref()), (Some(None), Some("Т")));
        assert!(serde_json::from_str::<P>(r#"{"title": null}"#).is_err());
    }
}
