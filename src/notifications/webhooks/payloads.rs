//! What a webhook message says. The shape is Standard Webhooks':
//! `{"type": "<change kind>", "timestamp": "<when the change was made>", "data": {...}}`;
//! `data` depends on the kind (registrations and check-ins, sessions, the programme).
//!
//! The body is built once, when the change is turned into deliveries (moments after its
//! commit), and stored: every attempt sends the same bytes. So `data` shows the registration,
//! session or event as it was then; what changed is the message's `type`, `session_id` and
//! `details`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::{
    ContentBuilder, PathItem, PathsBuilder, Ref, Required, ResponseBuilder, Type,
};
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

use crate::changes::{ActorKind, Change, ChangeKind};
use crate::db::schema::{events, registrations, sessions};
use crate::error::ApiResult;
use crate::events::{Event, EventView};
use crate::programme::Session;
use crate::programme::sessions::SessionView;
use crate::registrations::{Registration, RegistrationView, views_of};

/// The event a message concerns.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MessageEvent {
    pub id: Uuid,
    pub slug: String,
    pub title: String,
}

/// `registration.*` and `checkin.created`: a participant's registration changed, or they
/// were checked in.
#[derive(Debug, Serialize, ToSchema)]
pub struct RegistrationMessage {
    /// The change: `registration.created`, `registration.confirmed`,
    /// `registration.waitlisted`, `registration.promoted`, `registration.changed`,
    /// `registration.cancelled`, `registration.session_removed`, `registration.erased` or
    /// `checkin.created`.
    #[serde(rename = "type")]
    pub kind: ChangeKind,
    /// When the change was made.
    pub timestamp: DateTime<Utc>,
    pub data: RegistrationData,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RegistrationData {
    /// The change's number in the change log; later changes have greater numbers.
    pub change_id: i64,
    pub event: MessageEvent,
    pub registration_id: Uuid,
    /// The session the change is about: the place confirmed, waitlisted, promoted or given
    /// up, or where the participant was checked in (null: the registration as a whole, or a
    /// check-in at the event's entrance).
    pub session_id: Option<Uuid>,
    /// Who made the change.
    pub actor: ActorKind,
    /// More about the change, never personal data: `fields` (the names of the details that
    /// changed) for `registration.changed`, and `answers` when answers changed (`[{"key",
    /// "old", "new"}]`; `{"key", "personal": true}` alone for a question marked personal); `over_capacity` and `out_of_turn` for organisers'
    /// decisions; `checkin_id` for a check-in.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    /// The registration with its session places (waitlist positions included) and the
    /// participant's details as organisers see them, when the message was made; null when
    /// it no longer exists, or once the participant's personal data was erased (stored
    /// messages lose their copy then, sent or not).
    pub registration: Option<RegistrationView>,
}

/// `session.changed` and `session.cancelled`: a published session's time, place or title
/// changed, or it was cancelled.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionMessage {
    /// `session.changed` or `session.cancelled`.
    #[serde(rename = "type")]
    pub kind: ChangeKind,
    /// When the change was made.
    pub timestamp: DateTime<Utc>,
    pub data: SessionData,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionData {
    /// The change's number in the change log; later changes have greater numbers.
    pub change_id: i64,
    pub event: MessageEvent,
    pub session_id: Uuid,
    /// `fields`: which of `starts_at`, `ends_at`, `venue_id`, `title` changed
    /// (`session.changed`).
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    /// The session when the message was made; null when it no longer exists.
    pub session: Option<SessionView>,
}

/// `programme.published` and `programme.changed`: the event was published, or something the
/// public programme shows changed (read it again from `/api/v1/events/{event}/programme`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ProgrammeMessage {
    /// `programme.published` or `programme.changed`.
    #[serde(rename = "type")]
    pub kind: ChangeKind,
    /// When the change was made.
    pub timestamp: DateTime<Utc>,
    pub data: ProgrammeData,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProgrammeData {
    /// The change's number in the change log; later changes have greater numbers.
    pub change_id: i64,
    /// The event when the message was made.
    pub event: EventView,
}

/// Which message a kind of change makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Registration,
    Session,
    Programme,
}

fn shape(kind: ChangeKind) -> Shape {
    match kind {
        ChangeKind::SessionChanged | ChangeKind::SessionCancelled => Shape::Session,
        ChangeKind::ProgrammePublished | ChangeKind::ProgrammeChanged => Shape::Programme,
        _ => Shape::Registration,
    }
}

/// The bodies of the messages the given changes make, by change id.
pub async fn build(
    conn: &mut AsyncPgConnection,
    changes: &[&Change],
) -> ApiResult<HashMap<i64, String>> {
    let mut event_ids: Vec<Uuid> = changes.iter().map(|c| c.event_id).collect();
    event_ids.sort();
    event_ids.dedup();
    let events: HashMap<Uuid, Event> = events::table
        .filter(events::id.eq_any(&event_ids))
        .select(Event::as_select())
        .load(conn)
        .await?
        .into_iter()
        .map(|e| (e.id, e))
        .collect();
    let registration_ids: Vec<Uuid> = changes
        .iter()
        .filter(|c| shape(c.kind) == Shape::Registration)
        .filter_map(|c| c.registration_id)
        .collect();
    let rows: Vec<Registration> = registrations::table
        .filter(registrations::id.eq_any(&registration_ids))
        .select(Registration::as_select())
        .load(conn)
        .await?;
    let registrations: HashMap<Uuid, RegistrationView> = views_of(conn, rows)
        .await?
        .into_iter()
        .map(|r| (r.id, r))
        .collect();
    let session_ids: Vec<Uuid> = changes
        .iter()
        .filter(|c| shape(c.kind) == Shape::Session)
        .filter_map(|c| c.session_id)
        .collect();
    let sessions: HashMap<Uuid, Session> = sessions::table
        .filter(sessions::id.eq_any(&session_ids))
        .select(Session::as_select())
        .load(conn)
        .await?
        .into_iter()
        .map(|s| (s.id, s))
        .collect();

    let mut bodies = HashMap::with_capacity(changes.len());
    for change in changes {
        let Some(event) = events.get(&change.event_id) else {
            continue;
        };
        let summary = MessageEvent {
            id: event.id,
            slug: event.slug.clone(),
            title: event.title.clone(),
        };
        let body = match shape(change.kind) {
            Shape::Registration => {
                let registration_id = change.registration_id.unwrap_or_default();
                let registration = registrations.get(&registration_id).cloned();
                serde_json::to_string(&RegistrationMessage {
                    kind: change.kind,
                    timestamp: change.created_at,
                    data: RegistrationData {
                        change_id: change.id,
                        event: summary,
                        registration_id,
                        session_id: change.session_id,
                        actor: change.actor,
                        details: change.details.clone(),
                        registration,
                    },
                })
            }
            Shape::Session => {
                let session_id = change.session_id.unwrap_or_default();
                serde_json::to_string(&SessionMessage {
                    kind: change.kind,
                    timestamp: change.created_at,
                    data: SessionData {
                        change_id: change.id,
                        event: summary,
                        session_id,
                        details: change.details.clone(),
                        session: sessions
                            .get(&session_id)
                            .cloned()
                            .map(|s| SessionView::new(s, event)),
                    },
                })
            }
            Shape::Programme => serde_json::to_string(&ProgrammeMessage {
                kind: change.kind,
                timestamp: change.created_at,
                data: ProgrammeData {
                    change_id: change.id,
                    event: EventView::from(event.clone()),
                },
            }),
        };
        bodies.insert(change.id, body.expect("messages serialise"));
    }
    Ok(bodies)
}

/// The message schemas, for the OpenAPI document.
#[derive(OpenApi)]
#[openapi(components(schemas(RegistrationMessage, SessionMessage, ProgrammeMessage)))]
struct MessageSchemas;

/// What a kind of change means, for the OpenAPI document.
fn summary(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::RegistrationCreated => {
            "A participant registered (or was added by an organiser)."
        }
        ChangeKind::RegistrationConfirmed => "A place in a session was confirmed (`session_id`).",
        ChangeKind::RegistrationWaitlisted => {
            "A registration joined a session's waitlist (`session_id`)."
        }
        ChangeKind::RegistrationPromoted => {
            "A registration moved from a session's waitlist into a seat (`session_id`)."
        }
        ChangeKind::RegistrationChanged => {
            "A participant's details changed (`details.fields` names them, `details.answers` \
             the answers changed)."
        }
        ChangeKind::RegistrationCancelled => "A registration was cancelled.",
        ChangeKind::RegistrationSessionRemoved => {
            "A place in a session was given up (`session_id`)."
        }
        ChangeKind::RegistrationErased => {
            "A participant's personal data was erased (`details.reason`): erase your copies of \
             it too; `registration` carries placeholders only."
        }
        ChangeKind::CheckinCreated => {
            "A participant was checked in (at `session_id`, or the event's entrance)."
        }
        ChangeKind::SessionChanged => {
            "A published session's time, venue or title changed (`details.fields`)."
        }
        ChangeKind::SessionCancelled => "A published session was cancelled.",
        ChangeKind::ProgrammePublished => "The event was published.",
        ChangeKind::ProgrammeChanged => "Something the public programme shows changed.",
    }
}

/// Adds the messages webhooks send to the document: one entry per change kind under
/// `webhooks`, with its headers and body schema.
pub fn describe(doc: &mut utoipa::openapi::OpenApi) {
    doc.merge(MessageSchemas::openapi());
    let header = |name: &str, description: &str| {
        ParameterBuilder::new()
            .name(name)
            .parameter_in(ParameterIn::Header)
            .required(Required::True)
            .description(Some(description))
            .schema(Some(
                utoipa::openapi::ObjectBuilder::new().schema_type(Type::String),
            ))
            .build()
    };
    let mut paths = PathsBuilder::new();
    for &kind in ChangeKind::ALL {
        let schema = match shape(kind) {
            Shape::Registration => "RegistrationMessage",
            Shape::Session => "SessionMessage",
            Shape::Programme => "ProgrammeMessage",
        };
        let operation = OperationBuilder::new()
            .tag("webhooks")
            .summary(Some(summary(kind)))
            .description(Some(format!(
                "POSTed to each enabled endpoint of the event subscribed to `{kind}` (or to all \
                 types), signed as Standard Webhooks 1.0 says. The same message (same \
                 `webhook-id`, same body) is sent again until the endpoint answers 2xx."
            )))
            .operation_id(Some(format!("webhook_{}", kind.as_str().replace('.', "_"))))
            .parameter(header(
                "webhook-id",
                "The message's id: the same on every attempt; use it to ignore repeats.",
            ))
            .parameter(header(
                "webhook-timestamp",
                "When this attempt was signed, in seconds since 1970 (refuse old ones).",
            ))
            .parameter(header(
                "webhook-signature",
                "`v1,<base64 HMAC-SHA256 of \"<webhook-id>.<webhook-timestamp>.<body>\">` with \
                 the endpoint's secret (the bytes after `whsec_`, base64-decoded); two, \
                 space-separated, while a rotated secret still signs.",
            ))
            .request_body(Some(
                RequestBodyBuilder::new()
                    .required(Some(Required::True))
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name(schema)))
                            .build(),
                    )
                    .build(),
            ))
            .response(
                "2XX",
                ResponseBuilder::new().description("Received: the message is delivered."),
            )
            .response(
                "410",
                ResponseBuilder::new()
                    .description("Gone: the endpoint is disabled at once; nothing more is sent."),
            )
            .response(
                "default",
                ResponseBuilder::new().description(
                    "Anything else (or no answer within the timeout, or a redirect): tried \
                     again later, with exponential backoff, for up to three days.",
                ),
            );
        paths = paths.path(kind.as_str(), PathItem::new(HttpMethod::Post, operation));
    }
    doc.webhooks = Some(paths.build());
}
