//! The registering transactions: register, change, cancel. Every rule a registration must
//! obey is checked here, and every capacity decision is made by the database inside the
//! transaction (see `capacity`).

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Bytea, Nullable, Text, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::capacity::{self, event_lock_key, session_lock_key};
use super::idempotency::IdempotencyRequest;
use super::{Registration, RegistrationStatus, SessionOutcome, SessionRegistrationStatus, Source};
use crate::changes::{self as change_log, Actor, ActorKind, ChangeKind, NewChange};
use crate::db::{self, schema::registration_sessions, schema::registrations, schema::sessions};
use crate::email;
use crate::error::{ApiError, ApiResult};
use crate::events::{Event, EventStatus, Language};
use crate::forms::{Audience, Form, LimitedOption};
use crate::programme::{Session, SessionStatus};

/// Transactions that lost a race (deadlock, serialisation) are run again this many times.
const ATTEMPTS: usize = 3;

/// Who is registering, with which powers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A participant: registration windows apply; full sessions waitlist or refuse.
    Public,
    /// An organiser: windows do not apply; with `over_capacity`, full sessions confirm anyway.
    Organiser { over_capacity: bool },
}

/// A participant's details, validated.
#[derive(Debug, Clone)]
pub struct Applicant {
    pub full_name: String,
    pub email: String,
    pub organisation: Option<String>,
    pub position: Option<String>,
    pub city: Option<String>,
    pub phone: Option<String>,
    /// A category code of the event (checked when registering).
    pub category: String,
}

fn registration_closed(session: Option<&Session>) -> ApiError {
    let error = ApiError::conflict(
        "registration_closed",
        match session {
            Some(s) => format!("registration for «{}» is not open", s.title),
            None => "registration for this event is not open".to_owned(),
        },
    );
    match session {
        Some(s) => error.with("session_id", s.id),
        None => error,
    }
}

fn within(now: DateTime<Utc>, opens: Option<DateTime<Utc>>, closes: Option<DateTime<Utc>>) -> bool {
    opens.is_none_or(|opens| now >= opens) && closes.is_none_or(|closes| now < closes)
}

/// The event must take registrations from this caller. Its registration window applies to
/// participants registering for the event alone (`with_sessions` false); a session's own
/// window overrides it, so sessions are checked one by one in `bookable_sessions`.
pub fn check_event(
    event: &Event,
    mode: Mode,
    now: DateTime<Utc>,
    with_sessions: bool,
) -> ApiResult<()> {
    match (event.status, mode) {
        (EventStatus::Published, _) => {}
        (EventStatus::Archived, _) => {
            return Err(ApiError::conflict(
                "registration_closed",
                "the event is archived and takes no registrations",
            ));
        }
        (EventStatus::Draft, Mode::Public) => return Err(ApiError::not_found("event")),
        (EventStatus::Draft, Mode::Organiser { .. }) => {}
    }
    // Without a closing time of its own, registration closes when the event is over (the end
    // of its last day in its time zone), as a session's closes when it ends.
    let closes = event.registration_closes_at.unwrap_or_else(|| {
        crate::programme::event_bounds(event.tz(), event.starts_on, event.ends_on).1
    });
    if mode == Mode::Public
        && !with_sessions
        && !within(now, event.registration_opens_at, Some(closes))
    {
        return Err(registration_closed(None));
    }
    Ok(())
}

/// Loads the sessions a registration asks for and checks that each may be booked now.
/// `field` names the request field in errors.
pub async fn bookable_sessions(
    conn: &mut AsyncPgConnection,
    event: &Event,
    ids: &[Uuid],
    mode: Mode,
    now: DateTime<Utc>,
    field: &str,
) -> ApiResult<Vec<Session>> {
    let found = sessions_of(conn, event.id, ids).await?;
    check_bookable(event, found, ids, mode, now, field)
}

/// The event's sessions with these ids (those that exist).
pub async fn sessions_of(
    conn: &mut AsyncPgConnection,
    event_id: Uuid,
    ids: &[Uuid],
) -> ApiResult<Vec<Session>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(sessions::table
        .filter(sessions::event_id.eq(event_id))
        .filter(sessions::id.eq_any(ids))
        .select(Session::as_select())
        .load(conn)
        .await?)
}

/// Checks that each session asked for (`ids`, in `found`) may be booked now, and returns
/// them in the order asked.
pub fn check_bookable(
    event: &Event,
    found: Vec<Session>,
    ids: &[Uuid],
    mode: Mode,
    now: DateTime<Utc>,
    field: &str,
) -> ApiResult<Vec<Session>> {
    let mut result = Vec::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        let session = found
            .iter()
            .find(|s| s.id == *id)
            .filter(|s| mode != Mode::Public || s.status != SessionStatus::Draft)
            .ok_or_else(|| {
                ApiError::invalid(format!("{field}[{i}]"), "is not a session of this event")
            })?;
        if session.status == SessionStatus::Cancelled {
            return Err(ApiError::conflict(
                "session_cancelled",
                format!("«{}» has been cancelled", session.title),
            )
            .with("session_id", session.id));
        }
        if mode == Mode::Public {
            let opens = session
                .registration_opens_at
                .or(event.registration_opens_at);
            let closes = session
                .registration_closes_at
                .or(event.registration_closes_at);
            if !within(now, opens, closes) || now >= session.ends_at {
                return Err(registration_closed(Some(session)));
            }
        }
        result.push(session.clone());
    }
    Ok(result)
}

/// Two sessions of one participant may not overlap unless the event allows it.
pub fn check_overlaps(event: &Event, sessions: &[&Session]) -> ApiResult<()> {
    if event.allow_overlapping_sessions {
        return Ok(());
    }
    for (i, a) in sessions.iter().enumerate() {
        for b in &sessions[i + 1..] {
            if a.starts_at < b.ends_at && b.starts_at < a.ends_at {
                return Err(ApiError::conflict(
                    "schedule_conflict",
                    format!("«{}» and «{}» overlap in time", a.title, b.title),
                )
                .with("sessions", [a.id, b.id]));
            }
        }
    }
    Ok(())
}

/// Whether an organiser confirms beyond capacity on purpose.
fn exceeds(mode: Mode) -> bool {
    matches!(
        mode,
        Mode::Organiser {
            over_capacity: true
        }
    )
}

fn session_full(session: &Session) -> ApiError {
    ApiError::conflict(
        "session_full",
        format!("«{}» is full and has no waitlist", session.title),
    )
    .with("session_id", session.id)
}

/// Claims places in `sessions` for a registration, in the order of their ids: a claim may
/// wait for a seat held by another registration in flight, and taking seats in one order
/// everywhere keeps two registrations from waiting for each other. Returns the outcomes in
/// the given order.
async fn claim_all(
    conn: &mut AsyncPgConnection,
    event_id: Uuid,
    registration_id: Uuid,
    sessions: &[Session],
    mode: Mode,
    actor: Actor,
) -> ApiResult<Vec<SessionOutcome>> {
    let mut order: Vec<Uuid> = sessions.iter().map(|s| s.id).collect();
    order.sort_unstable();
    let claims = capacity::claim_sessions(conn, registration_id, &order, exceeds(mode))
        .await
        .map_err(|error| registering_failed(error, sessions, &[]))?;
    let mut outcomes = Vec::with_capacity(claims.len());
    let mut entries = Vec::with_capacity(claims.len());
    for claim in claims {
        let status: SessionRegistrationStatus = claim
            .status
            .parse()
            .map_err(|e: String| ApiError::internal(anyhow::anyhow!(e)))?;
        let kind = match status {
            SessionRegistrationStatus::Waitlisted => ChangeKind::RegistrationWaitlisted,
            _ => ChangeKind::RegistrationConfirmed,
        };
        let entry = NewChange::registration(
            event_id,
            registration_id,
            Some(claim.session_id),
            kind,
            actor,
        );
        entries.push(if claim.over_capacity {
            entry.with_details(json!({"over_capacity": true}))
        } else {
            entry
        });
        outcomes.push(SessionOutcome {
            session_id: claim.session_id,
            status,
            waitlist_position: claim.waitlist_position,
        });
    }
    change_log::record(conn, entries).await?;
    outcomes.sort_by_key(|o| sessions.iter().position(|s| s.id == o.session_id));
    Ok(outcomes)
}

fn already_registered() -> ApiError {
    ApiError::conflict(
        "already_registered",
        "this email address already has an active registration for the event",
    )
    .with("field", "email")
}

fn map_email_conflict(error: diesel::result::Error) -> ApiError {
    match db::violated_constraint(&error) {
        Some("registrations_active_email_key") => already_registered(),
        _ => error.into(),
    }
}

/// Runs a registering transaction, again when it lost a race with another one.
macro_rules! retrying {
    ($body:expr) => {{
        let mut attempt = 1;
        loop {
            match $body.await {
                Err(error) if error.is_retryable() && attempt < ATTEMPTS => attempt += 1,
                result => break result,
            }
        }
    }};
}

pub struct NewRegistration<'a> {
    pub event: &'a Event,
    pub applicant: &'a Applicant,
    pub sessions: &'a [Session],
    pub mode: Mode,
    /// Who registers: `None` for the participant themselves.
    pub actor: Option<Actor>,
    /// The manage token's digest, and the nonce it is derived from (kept with the
    /// registration, so that mail can carry the token without it being stored).
    pub token_hash: Vec<u8>,
    pub token_nonce: &'a [u8],
    /// The participant's language; `None`: the event's default.
    pub language: Option<Language>,
    pub idempotency: Option<&'a IdempotencyRequest>,
    /// The answers, checked against the event's form.
    pub answers: &'a serde_json::Value,
    /// The choice options with limited places the answers choose.
    pub limited_options: &'a [LimitedOption],
    /// The consents accepted: `[{"key", "version"}]`.
    pub consents: &'a serde_json::Value,
}

/// A registration made, or the answer to the same request made before with its
/// Idempotency-Key (`replayed`).
pub struct Registered {
    pub replayed: bool,
    pub id: Uuid,
    pub sessions: Vec<SessionOutcome>,
    /// The position in the category's waitlist, when it waits for a place in it.
    pub category_waitlist_position: Option<i64>,
    pub language: Language,
    /// Until when the address must be confirmed, when the event asks for it.
    pub confirm_by: Option<DateTime<Utc>>,
    /// The nonce of the manage token to answer with; `None` when the answer carries no
    /// token (the address must be confirmed first, or a new link was mailed since).
    pub token_nonce: Option<Vec<u8>>,
}

/// Registers a participant: one transaction, all or nothing.
pub async fn register(
    conn: &mut AsyncPgConnection,
    new: NewRegistration<'_>,
) -> ApiResult<Registered> {
    let event = new.event;
    let id = Uuid::now_v7();
    let over_capacity = matches!(
        new.mode,
        Mode::Organiser {
            over_capacity: true
        }
    );
    // Sessions are claimed in the order of their ids: a claim may wait for a seat held by
    // another registration in flight, and one order everywhere keeps two from waiting for
    // each other. Locks: the event's, then the sessions' by key.
    let mut order: Vec<&Session> = new.sessions.iter().collect();
    order.sort_by_key(|s| s.id);
    let mut session_locks: Vec<i64> = order.iter().map(|s| session_lock_key(s.id)).collect();
    session_locks.sort_unstable();
    let locks: Vec<i64> = std::iter::once(event_lock_key(event.id))
        .chain(session_locks)
        .collect();
    let (actor, actor_id) = match new.actor {
        Some(Actor {
            kind,
            id: Some(actor_id),
        }) => (kind, actor_id),
        Some(Actor { kind, id: None }) => (kind, id),
        None => (ActorKind::Participant, id),
    };
    let a = new.applicant;
    let key = new.idempotency;
    // Options are claimed in the order of their ids, as sessions are.
    let mut options: Vec<Uuid> = new.limited_options.iter().map(|o| o.id).collect();
    options.sort_unstable();
    let call = || {
        diesel::sql_query(
            "SELECT register_participant($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, \
                    $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25) AS answer",
        )
        .bind::<SqlUuid, _>(id)
        .bind::<SqlUuid, _>(event.id)
        .bind::<Text, _>(&a.full_name)
        .bind::<Text, _>(a.email.trim())
        .bind::<Text, _>(email::normalise(&a.email))
        .bind::<Nullable<Text>, _>(&a.organisation)
        .bind::<Nullable<Text>, _>(&a.position)
        .bind::<Nullable<Text>, _>(&a.city)
        .bind::<Nullable<Text>, _>(&a.phone)
        .bind::<Text, _>(&a.category)
        .bind::<Text, _>(match new.mode {
            Mode::Public => Source::Public.as_str(),
            Mode::Organiser { .. } => Source::Organiser.as_str(),
        })
        .bind::<Bytea, _>(&new.token_hash)
        .bind::<Text, _>(actor.as_str())
        .bind::<SqlUuid, _>(actor_id)
        .bind::<Array<BigInt>, _>(&locks)
        .bind::<Bool, _>(over_capacity)
        .bind::<Array<SqlUuid>, _>(order.iter().map(|s| s.id).collect::<Vec<_>>())
        .bind::<Nullable<Text>, _>(key.map(|k| k.key.as_str()))
        .bind::<Nullable<Bytea>, _>(key.map(|k| k.request_hash.as_slice()))
        .bind::<Nullable<BigInt>, _>(key.map(|k| k.lock_key(event.id)))
        .bind::<Bytea, _>(new.token_nonce)
        .bind::<Nullable<Text>, _>(new.language.map(Language::as_str))
        .bind::<diesel::sql_types::Jsonb, _>(new.answers)
        .bind::<Array<SqlUuid>, _>(&options)
        .bind::<diesel::sql_types::Jsonb, _>(new.consents)
    };
    let mut attempt = 1;
    let answer: Answer = loop {
        match call().get_results(conn).await.and_then(crate::db::single) {
            Err(error) if db::is_retryable(&error) && attempt < ATTEMPTS => attempt += 1,
            result => {
                break result.map_err(|error| {
                    registering_failed(error, new.sessions, new.limited_options)
                })?;
            }
        }
    };
    let outcome: Outcome = serde_json::from_value(answer.answer).map_err(ApiError::internal)?;
    let mut sessions = outcome.sessions;
    sessions.sort_by_key(|o| new.sessions.iter().position(|s| s.id == o.session_id));
    let token_nonce = if outcome.replayed {
        outcome
            .token_nonce
            .map(|nonce| hex::decode(nonce).map_err(ApiError::internal))
            .transpose()?
    } else {
        // The token goes to the address alone while it is to be confirmed.
        outcome
            .confirm_by
            .is_none()
            .then(|| new.token_nonce.to_vec())
    };
    Ok(Registered {
        replayed: outcome.replayed,
        id: outcome.id,
        sessions,
        category_waitlist_position: outcome.category_waitlist_position,
        language: outcome.language,
        confirm_by: outcome.confirm_by,
        token_nonce,
    })
}

#[derive(QueryableByName)]
struct Answer {
    #[diesel(sql_type = diesel::sql_types::Jsonb)]
    answer: serde_json::Value,
}

/// What `register_participant` answers.
#[derive(Deserialize)]
struct Outcome {
    replayed: bool,
    id: Uuid,
    sessions: Vec<SessionOutcome>,
    #[serde(default)]
    category_waitlist_position: Option<i64>,
    language: Language,
    confirm_by: Option<DateTime<Utc>>,
    #[serde(default)]
    token_nonce: Option<String>,
}

/// The problem a failed `register_participant` call reports (SQLSTATE RG409/RG422, the code
/// as message, a session id as detail).
fn registering_failed(
    error: diesel::result::Error,
    sessions: &[Session],
    options: &[LimitedOption],
) -> ApiError {
    use diesel::result::{DatabaseErrorKind, Error};
    let Error::DatabaseError(DatabaseErrorKind::Unknown, info) = &error else {
        return map_email_conflict(error);
    };
    if let Some(problem) = category_failed(info.message()) {
        return problem;
    }
    match info.message() {
        "option_full" => {
            let option = info
                .details()
                .and_then(|id| id.parse::<Uuid>().ok())
                .and_then(|id| options.iter().find(|o| o.id == id));
            match option {
                Some(o) => ApiError::conflict(
                    "option_full",
                    format!("answers.{}: «{}» has no places left", o.question, o.option),
                )
                .with("field", format!("answers.{}", o.question))
                .with("option", &o.option),
                None => ApiError::conflict("option_full", "a chosen option has no places left"),
            }
        }
        "session_full" => {
            let session = info
                .details()
                .and_then(|id| id.parse::<Uuid>().ok())
                .and_then(|id| sessions.iter().find(|s| s.id == id));
            match session {
                Some(session) => session_full(session),
                None => ApiError::conflict("session_full", "a session is full and has no waitlist"),
            }
        }
        "event_full" => ApiError::conflict("event_full", "the event has no places left"),
        // Deleted since the request was checked.
        "session_gone" => ApiError::invalid("session_ids", "names a session that no longer exists"),
        "idempotency_key_in_use" => ApiError::conflict(
            "idempotency_key_in_use",
            "a request with this Idempotency-Key is still being processed; retry shortly",
        )
        .with_header(
            actix_web::http::header::RETRY_AFTER,
            actix_web::http::header::HeaderValue::from_static("1"),
        ),
        "idempotency_key_reused" => ApiError::new(
            actix_web::http::StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this Idempotency-Key was used with a different request body",
        ),
        _ => error.into(),
    }
}

/// The problem for a category the registering functions refused (`category_*` raised in
/// `register_participant` and `change_category`).
fn category_failed(message: &str) -> Option<ApiError> {
    Some(match message {
        "category_unknown" => ApiError::invalid("category", "is not a category of this event"),
        "category_invite_only" => ApiError::invalid(
            "category",
            "is invite-only: the event's organisers register participants in it",
        ),
        "category_closed" => ApiError::conflict(
            "registration_closed",
            "registration in this category is not open",
        )
        .with("field", "category"),
        "category_full" => ApiError::conflict(
            "category_full",
            "this category has no places left and no waitlist",
        )
        .with("field", "category"),
        _ => return None,
    })
}

fn category_change_failed(error: diesel::result::Error) -> ApiError {
    use diesel::result::{DatabaseErrorKind, Error};
    match &error {
        Error::DatabaseError(DatabaseErrorKind::Unknown, info) => {
            category_failed(info.message()).unwrap_or_else(|| error.into())
        }
        _ => error.into(),
    }
}

/// What a change asks for; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct Changes {
    pub full_name: Option<String>,
    pub email: Option<String>,
    pub organisation: Option<Option<String>>,
    pub position: Option<Option<String>>,
    pub city: Option<Option<String>>,
    pub phone: Option<Option<String>>,
    pub category: Option<String>,
    pub language: Option<Language>,
    /// The complete set of sessions wanted.
    pub session_ids: Option<Vec<Uuid>>,
    /// The whole new set of answers (an object), replacing the old.
    pub answers: Option<serde_json::Value>,
}

impl Changes {
    /// The fields whose values this change alters.
    fn changed_fields(&self, current: &Registration) -> Vec<&'static str> {
        fn differs<T: PartialEq>(new: Option<&T>, old: &T) -> bool {
            new.is_some_and(|new| new != old)
        }
        [
            (
                "full_name",
                differs(self.full_name.as_ref(), &current.full_name),
            ),
            (
                "email",
                self.email
                    .as_ref()
                    .is_some_and(|e| e.trim() != current.email),
            ),
            (
                "organisation",
                differs(self.organisation.as_ref(), &current.organisation),
            ),
            (
                "position",
                differs(self.position.as_ref(), &current.position),
            ),
            ("city", differs(self.city.as_ref(), &current.city)),
            ("phone", differs(self.phone.as_ref(), &current.phone)),
            (
                "category",
                differs(self.category.as_ref(), &current.category),
            ),
            (
                "language",
                differs(self.language.as_ref(), &current.language),
            ),
            ("answers", differs(self.answers.as_ref(), &current.answers)),
        ]
        .into_iter()
        .filter_map(|(name, changed)| changed.then_some(name))
        .collect()
    }

    /// The body of the registration after this change, as the form's schema sees a
    /// registering body (without consents, which are not asked again).
    fn body_after(&self, current: &Registration) -> serde_json::Value {
        let line = |new: &Option<Option<String>>, old: &Option<String>| {
            new.as_ref().unwrap_or(old).clone()
        };
        json!({
            "full_name": self.full_name.as_ref().unwrap_or(&current.full_name),
            "email": self.email.as_deref().map_or(current.email.as_str(), str::trim),
            "organisation": line(&self.organisation, &current.organisation),
            "position": line(&self.position, &current.position),
            "city": line(&self.city, &current.city),
            "phone": line(&self.phone, &current.phone),
            "category": self.category.as_ref().unwrap_or(&current.category),
            "answers": self.answers.as_ref().unwrap_or(&current.answers),
        })
    }
}

/// Gives back the places of limited options the answers no longer choose and takes those of
/// newly chosen ones (`change_answers`), storing the answers; an option chosen before and
/// after keeps its place.
async fn change_answers(
    conn: &mut AsyncPgConnection,
    registration_id: Uuid,
    form: &Form,
    old: &serde_json::Value,
    new: &serde_json::Value,
    mode: Mode,
) -> ApiResult<()> {
    let before: HashSet<Uuid> = form.limited_options(old).iter().map(|o| o.id).collect();
    let chosen = form.limited_options(new);
    let after: HashSet<Uuid> = chosen.iter().map(|o| o.id).collect();
    let release: Vec<Uuid> = before.difference(&after).copied().collect();
    // Taken in the order of their ids, as when registering.
    let mut take: Vec<Uuid> = after.difference(&before).copied().collect();
    take.sort_unstable();
    diesel::sql_query("SELECT change_answers($1, $2, $3, $4, $5)")
        .bind::<SqlUuid, _>(registration_id)
        .bind::<diesel::sql_types::Jsonb, _>(new)
        .bind::<Array<SqlUuid>, _>(&release)
        .bind::<Array<SqlUuid>, _>(&take)
        .bind::<Bool, _>(exceeds(mode))
        .execute(conn)
        .await
        .map_err(|error| registering_failed(error, &[], &chosen))?;
    Ok(())
}

/// The sessions a registration currently holds a place in (confirmed or waitlisted).
async fn active_sessions(
    conn: &mut AsyncPgConnection,
    registration_id: Uuid,
) -> ApiResult<Vec<Session>> {
    Ok(registration_sessions::table
        .inner_join(sessions::table)
        .filter(registration_sessions::registration_id.eq(registration_id))
        .filter(registration_sessions::status.ne(SessionRegistrationStatus::Cancelled))
        .select(Session::as_select())
        .load(conn)
        .await?)
}

fn cancelled_already() -> ApiError {
    ApiError::conflict(
        "registration_cancelled",
        "the registration has been cancelled",
    )
}

fn concurrent_change() -> ApiError {
    ApiError::conflict(
        "concurrent_change",
        "the registration was changed at the same time; fetch it and try again",
    )
}

/// Locks the registration row and checks it is still as the change was planned against.
async fn lock_registration(
    conn: &mut AsyncPgConnection,
    registration_id: Uuid,
    expected_sessions: &HashSet<Uuid>,
) -> ApiResult<Registration> {
    let current: Registration = registrations::table
        .find(registration_id)
        .select(Registration::as_select())
        .for_no_key_update()
        .first(conn)
        .await?;
    if current.status == RegistrationStatus::Cancelled {
        return Err(cancelled_already());
    }
    let now: HashSet<Uuid> = active_sessions(conn, registration_id)
        .await?
        .into_iter()
        .map(|s| s.id)
        .collect();
    if &now != expected_sessions {
        return Err(concurrent_change());
    }
    Ok(current)
}

/// Changes a registration's details and/or sessions, under the same rules as registering.
pub async fn change(
    conn: &mut AsyncPgConnection,
    event: &Event,
    registration: &Registration,
    changes: Changes,
    mode: Mode,
    actor: Actor,
) -> ApiResult<()> {
    if registration.status == RegistrationStatus::Cancelled {
        return Err(cancelled_already());
    }
    // New answers, or answers in a new category, are checked as when registering.
    let new_category = changes
        .category
        .as_ref()
        .is_some_and(|c| *c != registration.category);
    let form = if changes.answers.is_some() || new_category {
        let form = Form::load(conn, event.id).await?;
        // The audiences differ only in the categories one may choose: a category already
        // held (an invite-only one an organiser chose) is not chosen again.
        let audience = match mode {
            Mode::Public if new_category => Audience::Public,
            _ => Audience::Organiser,
        };
        form.check_change(&changes.body_after(registration), audience)?;
        Some(form)
    } else {
        None
    };
    let now = Utc::now();
    let current = active_sessions(conn, registration.id).await?;
    let current_ids: HashSet<Uuid> = current.iter().map(|s| s.id).collect();
    let (to_add, to_remove) = match &changes.session_ids {
        None => (Vec::new(), Vec::new()),
        Some(wanted) => {
            let wanted_set: HashSet<Uuid> = wanted.iter().copied().collect();
            let add_ids: Vec<Uuid> = wanted
                .iter()
                .copied()
                .filter(|id| !current_ids.contains(id))
                .collect();
            if !add_ids.is_empty() {
                check_event(event, mode, now, true)?;
            }
            let to_add = bookable_sessions(conn, event, &add_ids, mode, now, "session_ids").await?;
            let to_remove: Vec<Session> = current
                .iter()
                .filter(|s| !wanted_set.contains(&s.id))
                .cloned()
                .collect();
            let kept: Vec<&Session> = current
                .iter()
                .filter(|s| wanted_set.contains(&s.id))
                .chain(to_add.iter())
                .collect();
            check_overlaps(event, &kept)?;
            (to_add, to_remove)
        }
    };
    let shared: Vec<i64> = std::iter::once(event_lock_key(event.id))
        .chain(to_add.iter().map(|s| session_lock_key(s.id)))
        .collect();
    let exclusive: Vec<i64> = to_remove.iter().map(|s| session_lock_key(s.id)).collect();
    retrying!(conn.transaction::<_, ApiError, _>(async |conn| {
        capacity::lock(conn, &shared, &exclusive).await?;
        if new_category {
            capacity::lock_categories(
                conn,
                event.id,
                &registration.category,
                changes.category.as_deref(),
            )
            .await?;
        }
        let current = lock_registration(conn, registration.id, &current_ids).await?;
        // The answers were checked in the category and with the answers read before.
        if form.is_some()
            && (current.category != registration.category
                || current.answers != registration.answers)
        {
            return Err(concurrent_change());
        }
        let fields = changes.changed_fields(&current);
        if !fields.is_empty() {
            let mut details = json!({ "fields": fields });
            if fields.iter().any(|f| !matches!(*f, "category" | "answers")) {
                diesel::update(registrations::table.find(registration.id))
                    .set((
                        changes
                            .full_name
                            .as_ref()
                            .map(|v| registrations::full_name.eq(v)),
                        changes
                            .email
                            .as_ref()
                            .map(|v| registrations::email.eq(v.trim())),
                        changes
                            .email
                            .as_ref()
                            .map(|v| registrations::email_normalized.eq(email::normalise(v))),
                        changes
                            .email
                            .as_ref()
                            .map(|_| registrations::email_rule.eq(email::RULE)),
                        // A new address competes like any other.
                        changes
                            .email
                            .as_ref()
                            .map(|_| registrations::email_shared.eq(false)),
                        changes
                            .organisation
                            .as_ref()
                            .map(|v| registrations::organisation.eq(v)),
                        changes
                            .position
                            .as_ref()
                            .map(|v| registrations::position.eq(v)),
                        changes.city.as_ref().map(|v| registrations::city.eq(v)),
                        changes.phone.as_ref().map(|v| registrations::phone.eq(v)),
                        changes.language.map(|v| registrations::language.eq(v)),
                    ))
                    .execute(conn)
                    .await
                    .map_err(map_email_conflict)?;
            }
            if let Some(category) = changes
                .category
                .as_ref()
                .filter(|c| **c != current.category)
            {
                diesel::sql_query("SELECT change_category($1, $2, $3, $4)")
                    .bind::<SqlUuid, _>(registration.id)
                    .bind::<Text, _>(category)
                    .bind::<Text, _>(match mode {
                        Mode::Public => Source::Public.as_str(),
                        Mode::Organiser { .. } => Source::Organiser.as_str(),
                    })
                    .bind::<Bool, _>(exceeds(mode))
                    .execute(conn)
                    .await
                    .map_err(category_change_failed)?;
            }
            if let (Some(form), Some(answers)) = (&form, &changes.answers)
                && fields.contains(&"answers")
            {
                change_answers(conn, registration.id, form, &current.answers, answers, mode)
                    .await?;
                details["answers"] = form.answer_changes(&current.answers, answers).into();
            }
            change_log::record(
                conn,
                vec![
                    NewChange::registration(
                        event.id,
                        registration.id,
                        None,
                        ChangeKind::RegistrationChanged,
                        actor,
                    )
                    .with_details(details),
                ],
            )
            .await?;
        }
        for session in &to_remove {
            capacity::release_session(conn, registration.id, session, Actor::SYSTEM).await?;
        }
        change_log::record(
            conn,
            to_remove
                .iter()
                .map(|s| {
                    NewChange::registration(
                        event.id,
                        registration.id,
                        Some(s.id),
                        ChangeKind::RegistrationSessionRemoved,
                        actor,
                    )
                })
                .collect(),
        )
        .await?;
        claim_all(conn, event.id, registration.id, &to_add, mode, actor).await?;
        diesel::update(registrations::table.find(registration.id))
            .set(registrations::updated_at.eq(Utc::now()))
            .execute(conn)
            .await?;
        Ok(())
    }))
}

/// Cancels a registration: every place is given up (and goes to the next in line) and so
/// is its place in the event. Cancelling a cancelled registration changes nothing.
pub async fn cancel(
    conn: &mut AsyncPgConnection,
    event: &Event,
    registration: &Registration,
    actor: Actor,
) -> ApiResult<()> {
    cancel_when(conn, event, registration, actor, |_| true)
        .await
        .map(|_| ())
}

/// Cancels a registration whose address was not confirmed by its deadline, as the service
/// (`Actor::SYSTEM`). Decided on the locked row, so an address confirmed meanwhile keeps its
/// registration: true when it was cancelled.
pub async fn cancel_unconfirmed(
    conn: &mut AsyncPgConnection,
    event: &Event,
    registration: &Registration,
) -> ApiResult<bool> {
    cancel_when(conn, event, registration, Actor::SYSTEM, |current| {
        current
            .confirm_by
            .is_some_and(|deadline| deadline <= Utc::now())
    })
    .await
}

/// Cancels a registration if `still` holds for its locked row; true when it was cancelled.
async fn cancel_when(
    conn: &mut AsyncPgConnection,
    event: &Event,
    registration: &Registration,
    actor: Actor,
    still: impl Fn(&Registration) -> bool + Sync,
) -> ApiResult<bool> {
    if registration.status == RegistrationStatus::Cancelled {
        return Ok(false);
    }
    let current = active_sessions(conn, registration.id).await?;
    let current_ids: HashSet<Uuid> = current.iter().map(|s| s.id).collect();
    let exclusive: Vec<i64> = event
        .capacity
        .map(|_| event_lock_key(event.id))
        .into_iter()
        .chain(current.iter().map(|s| session_lock_key(s.id)))
        .collect();
    retrying!(conn.transaction::<_, ApiError, _>(async |conn| {
        capacity::lock(conn, &[], &exclusive).await?;
        // Before the row: a place freed in the category goes to the next in its queue.
        capacity::lock_categories(conn, event.id, &registration.category, None).await?;
        match lock_registration(conn, registration.id, &current_ids).await {
            // Moved to another category meanwhile: that one's lock is not held.
            Ok(locked) if locked.category != registration.category => {
                return Err(concurrent_change());
            }
            Ok(locked) if !still(&locked) => return Ok(false),
            Ok(_) => {}
            // Cancelled meanwhile by someone else: the outcome is the one asked for.
            Err(error) if error.code() == "registration_cancelled" => return Ok(false),
            Err(error) => return Err(error),
        }
        for session in &current {
            capacity::release_session(conn, registration.id, session, Actor::SYSTEM).await?;
        }
        capacity::release_event_seat(conn, event.id, registration.id).await?;
        let now = Utc::now();
        diesel::update(registrations::table.find(registration.id))
            .set((
                registrations::status.eq(RegistrationStatus::Cancelled),
                registrations::cancelled_at.eq(now),
                registrations::updated_at.eq(now),
            ))
            .execute(conn)
            .await?;
        // After the status: a freed place in the category goes to whoever is next.
        diesel::sql_query("SELECT release_form_places($1)")
            .bind::<SqlUuid, _>(registration.id)
            .execute(conn)
            .await?;
        change_log::record(
            conn,
            vec![NewChange::registration(
                event.id,
                registration.id,
                None,
                ChangeKind::RegistrationCancelled,
                actor,
            )],
        )
        .await?;
        Ok(true)
    }))
}
