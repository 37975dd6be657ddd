//! Registrations: participants signing up for an event and its sessions, within capacity,
//! with waitlists, self-service through a private manage token, and the organisers' side.

mod booking;
pub mod capacity;
mod catalog;
pub mod counts;
pub mod history;
mod idempotency;
mod organiser;
mod participant;
mod public;

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Nullable, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::db::schema::registrations;
use crate::error::ApiResult;
use crate::events::Language;
use crate::forms::consents::AcceptedConsent;

pub use booking::{
    Applicant, Mode, NewRegistration, Registered, cancel, cancel_unconfirmed, check_bookable,
    check_event, check_overlaps, register,
};
pub use capacity::delete_event_without_registrations;
pub use catalog::Catalog;
pub use public::{MAX_SESSIONS, NewRegistrationBody, validate_applicant};

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.configure(public::routes)
        .configure(participant::routes)
        .configure(organiser::routes);
}

crate::text_enum! {
    pub enum RegistrationStatus {
        Active => "active",
        Cancelled => "cancelled",
    }
}

crate::text_enum! {
    /// A registration's place in one session.
    pub enum SessionRegistrationStatus {
        Confirmed => "confirmed",
        Waitlisted => "waitlisted",
        Cancelled => "cancelled",
    }
}

crate::text_enum! {
    pub enum Source {
        Public => "public",
        Organiser => "organiser",
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = registrations)]
pub struct Registration {
    pub id: Uuid,
    pub event_id: Uuid,
    pub full_name: String,
    pub email: String,
    pub organisation: Option<String>,
    pub position: Option<String>,
    pub city: Option<String>,
    pub phone: Option<String>,
    /// The code of one of the event's categories.
    pub category: String,
    pub status: RegistrationStatus,
    pub source: Source,
    pub consent_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub language: Language,
    /// The nonce the manage token is derived from (unknown for registrations made before
    /// it was kept, without an Idempotency-Key).
    pub token_nonce: Option<Vec<u8>>,
    pub confirm_by: Option<DateTime<Utc>>,
    pub answers: serde_json::Value,
    /// The ticket in the category's waitlist while waiting for a place in it.
    pub category_waitlist_order: Option<i64>,
    /// When its personal data was anonymised (see `crate::privacy`).
    pub erased_at: Option<DateTime<Utc>>,
}

/// The outcome for one session.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct SessionOutcome {
    pub session_id: Uuid,
    pub status: SessionRegistrationStatus,
    /// Place in the waitlist (1 = next to get a seat); null unless waitlisted.
    pub waitlist_position: Option<i64>,
}

/// A registration's place in one session, as it is now.
#[derive(Debug, Clone, Serialize, ToSchema, QueryableByName)]
pub struct SessionPlace {
    #[diesel(sql_type = SqlUuid)]
    pub session_id: Uuid,
    #[diesel(sql_type = Text)]
    #[schema(value_type = SessionRegistrationStatus)]
    pub status: String,
    /// Place in the waitlist (1 = next); null unless waitlisted.
    #[diesel(sql_type = Nullable<BigInt>)]
    pub waitlist_position: Option<i64>,
    /// Confirmed by an organiser beyond the session's capacity.
    #[diesel(sql_type = Bool)]
    pub over_capacity: bool,
    #[serde(skip)]
    #[diesel(sql_type = SqlUuid)]
    pub registration_id: Uuid,
}

/// The statement behind `places_of` (`$1`: the registrations' ids). A waiting place's
/// position is its row number in its session's queue, numbered in one pass over the queue
/// from its head to the last of the given registrations' tickets: a page of registrations,
/// or a round of mails, waiting in one queue of 4,000 reads that queue once, not once each
/// (a count of the places ahead of each, 2 ms a mail in such a queue).
pub const PLACES: &str = "WITH mine AS MATERIALIZED ( \
         SELECT rs.registration_id, rs.session_id, rs.status, rs.over_capacity, rs.waitlist_order \
         FROM registration_sessions rs WHERE rs.registration_id = ANY($1)), \
     queues AS ( \
         SELECT session_id, max(waitlist_order) AS last_ticket FROM mine \
         WHERE status = 'waitlisted' GROUP BY session_id), \
     numbered AS ( \
         SELECT w.session_id, w.waitlist_order, \
                row_number() OVER (PARTITION BY w.session_id ORDER BY w.waitlist_order) AS position \
         FROM queues q \
         JOIN registration_sessions w ON w.session_id = q.session_id AND w.status = 'waitlisted' \
                                     AND w.waitlist_order <= q.last_ticket) \
     SELECT m.registration_id, m.session_id, m.status, m.over_capacity, \
            n.position AS waitlist_position \
     FROM mine m \
     JOIN sessions s ON s.id = m.session_id \
     LEFT JOIN numbered n ON m.status = 'waitlisted' AND n.session_id = m.session_id \
                         AND n.waitlist_order = m.waitlist_order \
     ORDER BY m.registration_id, s.starts_at, s.id";

/// Places of the given registrations in their sessions, waitlist positions counted now.
pub async fn places_of(
    conn: &mut AsyncPgConnection,
    registration_ids: &[Uuid],
) -> ApiResult<HashMap<Uuid, Vec<SessionPlace>>> {
    let rows: Vec<SessionPlace> = diesel::sql_query(PLACES)
        .bind::<Array<SqlUuid>, _>(registration_ids)
        .load(conn)
        .await?;
    let mut places: HashMap<Uuid, Vec<SessionPlace>> = HashMap::new();
    for row in rows {
        places.entry(row.registration_id).or_default().push(row);
    }
    Ok(places)
}

/// A registration, as its participant and the event's organisers see it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RegistrationView {
    pub id: Uuid,
    pub event_id: Uuid,
    pub status: RegistrationStatus,
    pub full_name: String,
    pub email: String,
    pub organisation: Option<String>,
    pub position: Option<String>,
    pub city: Option<String>,
    pub phone: Option<String>,
    /// The code of one of the event's categories (`GET /events/{event}/categories`).
    #[schema(example = "business")]
    pub category: String,
    /// Place in the category's waitlist (1 = next to get a place) while the category is
    /// full and the registration waits for a place in it; null when it holds one.
    pub category_waitlist_position: Option<i64>,
    /// `public` (self-registered) or `organiser` (added by an organiser).
    pub source: Source,
    /// Every session the registration has had, cancelled places included.
    pub sessions: Vec<SessionPlace>,
    /// Answers to the event's questions by key (`GET /events/{event}/registration-form`).
    #[schema(value_type = Object, example = json!({"transfer": true, "town": "Мончегорск"}))]
    pub answers: serde_json::Value,
    /// The consent texts accepted: which version of each, and when.
    pub consents: Vec<AcceptedConsent>,
    /// The language of mail to the participant.
    pub language: Language,
    /// Set while the address waits to be confirmed (through the link mailed to it): the
    /// registration is cancelled, and its places given to the waitlists, after this.
    pub confirm_by: Option<DateTime<Utc>>,
    pub consent_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub cancelled_at: Option<DateTime<Utc>>,
    /// When the participant's personal data was anonymised: the name, address and other
    /// details shown are placeholders from then on.
    pub erased_at: Option<DateTime<Utc>>,
}

impl RegistrationView {
    pub fn new(
        r: Registration,
        sessions: Vec<SessionPlace>,
        category_waitlist_position: Option<i64>,
    ) -> Self {
        RegistrationView {
            id: r.id,
            event_id: r.event_id,
            status: r.status,
            full_name: r.full_name,
            email: r.email,
            organisation: r.organisation,
            position: r.position,
            city: r.city,
            phone: r.phone,
            category: r.category,
            category_waitlist_position,
            source: r.source,
            sessions,
            answers: r.answers,
            consents: Vec::new(),
            language: r.language,
            confirm_by: r.confirm_by,
            consent_at: r.consent_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
            cancelled_at: r.cancelled_at,
            erased_at: r.erased_at,
        }
    }
}

/// Loads registrations with their places, in the given order.
pub async fn views_of(
    conn: &mut AsyncPgConnection,
    rows: Vec<Registration>,
) -> ApiResult<Vec<RegistrationView>> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let mut places = places_of(conn, &ids).await?;
    let waiting: Vec<Uuid> = rows
        .iter()
        .filter(|r| r.category_waitlist_order.is_some())
        .map(|r| r.id)
        .collect();
    let positions = category_waitlist_positions(conn, &waiting).await?;
    let mut consents = crate::forms::consents::accepted_by(conn, &ids).await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let sessions = places.remove(&r.id).unwrap_or_default();
            let position = positions.get(&r.id).copied();
            let accepted = consents.remove(&r.id).unwrap_or_default();
            RegistrationView {
                consents: accepted,
                ..RegistrationView::new(r, sessions, position)
            }
        })
        .collect())
}

#[derive(QueryableByName)]
struct WaitlistPosition {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = BigInt)]
    position: i64,
}

/// Positions in their categories' waitlists of the given registrations that wait in one.
pub async fn category_waitlist_positions(
    conn: &mut AsyncPgConnection,
    registration_ids: &[Uuid],
) -> ApiResult<HashMap<Uuid, i64>> {
    if registration_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<WaitlistPosition> = diesel::sql_query(
        "SELECT r.id, (SELECT count(*) FROM registrations w \
                       WHERE w.event_id = r.event_id AND w.category = r.category \
                         AND w.status = 'active' \
                         AND w.category_waitlist_order <= r.category_waitlist_order) AS position \
         FROM registrations r \
         WHERE r.id = ANY($1) AND r.category_waitlist_order IS NOT NULL",
    )
    .bind::<Array<SqlUuid>, _>(registration_ids)
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.id, r.position)).collect())
}

pub async fn view_of(
    conn: &mut AsyncPgConnection,
    registration_id: Uuid,
) -> ApiResult<RegistrationView> {
    let row = registrations::table
        .find(registration_id)
        .select(Registration::as_select())
        .first(conn)
        .await?;
    Ok(views_of(conn, vec![row]).await?.remove(0))
}
