//! Consent texts of an event (the processing of personal data, and optional ones such as
//! photos or mailings), kept in versions: a registration records which version of which text
//! it accepted, and when.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::db::schema::{form_consent_versions, form_consents};
use crate::error::ApiResult;

/// The consent to the processing of personal data every event starts with; the `consent`
/// field of registration bodies accepts it.
pub const PERSONAL_DATA: &str = "personal_data";

/// A consent as it is now: its current version's text.
#[derive(Debug, Clone, Queryable)]
pub struct CurrentConsent {
    pub id: Uuid,
    pub key: String,
    pub required: bool,
    pub position: i32,
    pub version: i32,
    pub text_ru: String,
    pub text_en: String,
    pub updated_at: DateTime<Utc>,
}

/// The event's consents with their current texts, in their order.
pub async fn current(
    conn: &mut AsyncPgConnection,
    event_id: Uuid,
) -> ApiResult<Vec<CurrentConsent>> {
    Ok(form_consents::table
        .inner_join(
            form_consent_versions::table.on(form_consent_versions::consent_id
                .eq(form_consents::id)
                .and(form_consent_versions::version.eq(form_consents::version))),
        )
        .filter(form_consents::event_id.eq(event_id))
        .order((form_consents::position, form_consents::key))
        .select((
            form_consents::id,
            form_consents::key,
            form_consents::required,
            form_consents::position,
            form_consents::version,
            form_consent_versions::text_ru,
            form_consent_versions::text_en,
            form_consents::updated_at,
        ))
        .load(conn)
        .await?)
}

/// What a registration records of the consents it accepted: `[{"key", "version"}]`, the
/// versions in force.
pub fn accepted<'a>(consents: impl IntoIterator<Item = &'a CurrentConsent>) -> Value {
    Value::Array(
        consents
            .into_iter()
            .map(|c| json!({"key": c.key, "version": c.version}))
            .collect(),
    )
}
