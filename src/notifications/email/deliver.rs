//! Sending queued mail over SMTP (lettre, pooled connections): a round leases due mails
//! (`queue::lease`), composes each from the registration as it is now, sends them outside any
//! transaction, and settles each: sent, retried later, failed for good, or dropped.
//!
//! Dropped rather than sent: mail to a registration cancelled since (except the mail that
//! says so), anything but the confirmation link (and new links) while the address waits to be
//! confirmed (confirming it sends the registration's mail as it is then), the cancellation of
//! a registration whose address was never confirmed, a confirmation link once the address
//! is confirmed, and a reminder whose session has begun (mail queued while SMTP was off is
//! sent when it is configured, reminders included while they are still ahead).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures_util::StreamExt;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart};
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;
use uuid::Uuid;

use super::queue::{self, Leased, MailKind, Settled};
use super::render::{self, EventInfo, MailContext, Participant, SessionInfo, Templates};
use crate::auth::tokens;
use crate::badges::qr;
use crate::config::Config;
use crate::db;
use crate::db::schema::{changes, events, registrations, sessions};
use crate::events::Event;
use crate::programme::{ProgrammeSession, Session, SessionStatus, entries_without_counts};
use crate::registrations::{Registration, RegistrationStatus, SessionPlace, places_of};
use crate::state::AppState;
use ed25519_dalek::SigningKey;

/// An SMTP exchange that takes longer than this fails (and is tried again later).
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);
/// Mails sent at once by one instance.
const PARALLEL: usize = 4;
/// The inline image's content id.
const QR_CID: &str = "badge-qr";

pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    /// The mailer `REGISTRAR_SMTP_URL` and `REGISTRAR_EMAIL_FROM` describe; `None` when no
    /// SMTP server is configured.
    pub fn from_config(config: &Config) -> anyhow::Result<Option<Self>> {
        let Some(url) = &config.smtp_url else {
            return Ok(None);
        };
        // The URL carries a password: errors never repeat it.
        let builder =
            AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret()).map_err(|_| {
                anyhow::anyhow!(
                    "REGISTRAR_SMTP_URL is not an SMTP URL such as \
                     smtps://user:password@smtp.example.org:465 or \
                     smtp://user:password@smtp.example.org:587?tls=required"
                )
            })?;
        let from = config.email_from.as_deref().ok_or_else(|| {
            anyhow::anyhow!(
                "REGISTRAR_EMAIL_FROM is not set: with REGISTRAR_SMTP_URL, set the sender too, \
                 e.g. 'Деловая неделя <noreply@example.org>'"
            )
        })?;
        let from: Mailbox = from.parse().with_context(|| {
            format!("REGISTRAR_EMAIL_FROM is not an address such as 'Name <noreply@example.org>': {from}")
        })?;
        let transport = builder
            .timeout(Some(SMTP_TIMEOUT))
            .pool_config(PoolConfig::new().max_size(PARALLEL as u32))
            .build();
        Ok(Some(Mailer { transport, from }))
    }

    pub fn from(&self) -> &Mailbox {
        &self.from
    }
}

/// Sends what is due; true when there may be more.
pub async fn round(
    state: &AppState,
    mailer: &Arc<Mailer>,
    templates: &Templates,
) -> anyhow::Result<bool> {
    let mut conn = state.db.get().await?;
    let leased = queue::lease(&mut conn, queue::LEASED).await?;
    if leased.is_empty() {
        return Ok(false);
    }
    let more = leased.len() as i64 == queue::LEASED;
    let facts = Facts::load(&mut conn, state, &leased).await;
    // Sending takes no database connection.
    drop(conn);
    let composed: Vec<(Leased, Composed)> = leased
        .into_iter()
        .map(|mail| {
            let outcome = facts
                .as_ref()
                .map_err(|error| anyhow::anyhow!("{error:#}"))
                .and_then(|facts| compose(state, mailer, templates, facts, &mail))
                .unwrap_or_else(|error| {
                    tracing::warn!(
                        mail = mail.id,
                        error = format!("{error:#}"),
                        "composing a mail failed"
                    );
                    Composed::Settle(Settled::Retry(format!("composing failed: {error:#}")))
                });
            (mail, outcome)
        })
        .collect();
    let settled: Vec<(Leased, Settled)> = futures_util::stream::iter(composed)
        .map(|(mail, outcome)| {
            let mailer = Arc::clone(mailer);
            async move {
                let settled = match outcome {
                    Composed::Send(message) => send(&mailer, *message).await,
                    Composed::Settle(settled) => settled,
                };
                (mail, settled)
            }
        })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    // The round's outcomes in one transaction that does not wait for the disk: lost at a
    // database crash, a mail is sent again when its lease runs out (at least once, as always).
    let mut conn = state.db.get().await?;
    conn.transaction::<_, anyhow::Error, _>(async |conn| {
        db::commit_without_waiting_for_disk(conn).await?;
        for (mail, settled) in settled {
            if let Settled::Retry(reason) | Settled::Failed(reason) = &settled {
                tracing::warn!(mail = mail.id, kind = %mail.kind, attempts = mail.attempts, reason, "a mail was not sent");
            }
            queue::settle(state, conn, &mail, settled).await?;
        }
        Ok(())
    })
    .await?;
    Ok(more)
}

/// A mail ready to send, or how its attempt ends without sending.
enum Composed {
    Send(Box<Message>),
    Settle(Settled),
}

async fn send(mailer: &Mailer, message: Message) -> Settled {
    match mailer.transport.send(message).await {
        Ok(_) => Settled::Sent,
        Err(error) => {
            let reason = describe(&error);
            if error.is_permanent() {
                Settled::Failed(reason)
            } else {
                Settled::Retry(reason)
            }
        }
    }
}

/// What went wrong, without what the server said: its text may name the recipient.
fn describe(error: &lettre::transport::smtp::Error) -> String {
    use std::error::Error;
    if let Some(code) = error.status() {
        let kind = if error.is_permanent() {
            "refused"
        } else {
            "deferred"
        };
        return format!("the SMTP server {kind} the mail ({code})");
    }
    if error.is_timeout() {
        return "the SMTP server did not answer in time".into();
    }
    if error.is_tls() {
        return "TLS with the SMTP server failed".into();
    }
    match error.source() {
        Some(source) => format!("SMTP connection failed: {source}"),
        None => "SMTP connection failed".into(),
    }
}

/// Why a mail is not worth sending now, if it is not.
fn drop_reason(kind: MailKind, registration: &Registration) -> Option<&'static str> {
    let cancelled = registration.status == RegistrationStatus::Cancelled;
    let waiting = registration.confirm_by.is_some();
    if registration.erased_at.is_some() {
        return Some("the personal data was erased");
    }
    match kind {
        MailKind::Cancelled if waiting => Some("the address was never confirmed"),
        MailKind::Cancelled => None,
        _ if cancelled => Some("the registration was cancelled"),
        MailKind::ConfirmAddress if !waiting => Some("the address is confirmed already"),
        MailKind::ConfirmAddress | MailKind::ManageLink => None,
        _ if waiting => Some("the address is not confirmed yet"),
        _ => None,
    }
}

/// What a round's mails are made of, read together: one query of each kind for all of
/// them (a round's mails are mostly about one event, often about one session's queue), not
/// one of each per mail.
struct Facts {
    /// With each its stored manage token digest.
    registrations: HashMap<Uuid, (Registration, Vec<u8>)>,
    events: HashMap<Uuid, Event>,
    /// Each registration's places, waitlist positions counted now.
    places: HashMap<Uuid, Vec<SessionPlace>>,
    /// The sessions of those places and of the mails, as the programme shows them.
    entries: HashMap<Uuid, ProgrammeSession>,
    /// The check-in keys of the events whose mails carry a badge.
    keys: HashMap<Uuid, SigningKey>,
    /// The details of the changes the mails are about.
    details: HashMap<i64, serde_json::Value>,
}

impl Facts {
    async fn load(
        conn: &mut AsyncPgConnection,
        state: &AppState,
        mails: &[Leased],
    ) -> anyhow::Result<Facts> {
        let ids: Vec<Uuid> = mails.iter().map(|m| m.registration_id).collect();
        let registrations: HashMap<Uuid, (Registration, Vec<u8>)> = registrations::table
            .filter(registrations::id.eq_any(&ids))
            .select((Registration::as_select(), registrations::manage_token_hash))
            .load::<(Registration, Vec<u8>)>(conn)
            .await?
            .into_iter()
            .map(|(r, digest)| (r.id, (r, digest)))
            .collect();
        let event_ids: Vec<Uuid> = registrations.values().map(|(r, _)| r.event_id).collect();
        let events: HashMap<Uuid, Event> = events::table
            .filter(events::id.eq_any(&event_ids))
            .select(Event::as_select())
            .load::<Event>(conn)
            .await?
            .into_iter()
            .map(|e| (e.id, e))
            .collect();
        let places = places_of(conn, &ids).await.map_err(super::background)?;
        let mut wanted: Vec<Uuid> = places.values().flatten().map(|p| p.session_id).collect();
        wanted.extend(mails.iter().filter_map(|m| m.session_id));
        let mut by_event: HashMap<Uuid, Vec<Session>> = HashMap::new();
        for session in sessions::table
            .filter(sessions::id.eq_any(&wanted))
            .select(Session::as_select())
            .load::<Session>(conn)
            .await?
        {
            by_event.entry(session.event_id).or_default().push(session);
        }
        let mut entries = HashMap::new();
        for (event_id, rows) in by_event {
            let Some(event) = events.get(&event_id) else {
                continue;
            };
            let list = entries_without_counts(conn, event, rows)
                .await
                .map_err(super::background)?;
            entries.extend(list.into_iter().map(|s| (s.id, s)));
        }
        let mut keys = HashMap::new();
        for mail in mails.iter().filter(|m| m.kind.carries_badge()) {
            let Some((registration, _)) = registrations.get(&mail.registration_id) else {
                continue;
            };
            if let Entry::Vacant(vacant) = keys.entry(registration.event_id) {
                let key = qr::signing_key(conn, &state.sealing, registration.event_id)
                    .await
                    .map_err(super::background)?;
                vacant.insert(key);
            }
        }
        let change_ids: Vec<i64> = mails
            .iter()
            .filter(|m| m.kind == MailKind::SessionChanged)
            .filter_map(|m| m.change_id)
            .collect();
        let details: HashMap<i64, serde_json::Value> = changes::table
            .filter(changes::id.eq_any(&change_ids))
            .select((changes::id, changes::details))
            .load(conn)
            .await?
            .into_iter()
            .collect();
        Ok(Facts {
            registrations,
            events,
            places,
            entries,
            keys,
            details,
        })
    }
}

/// One mail, made of the round's facts.
fn compose(
    state: &AppState,
    mailer: &Mailer,
    templates: &Templates,
    facts: &Facts,
    mail: &Leased,
) -> anyhow::Result<Composed> {
    let Some((registration, token_digest)) = facts.registrations.get(&mail.registration_id) else {
        return Ok(Composed::Settle(Settled::Dropped(
            "the registration no longer exists",
        )));
    };
    if let Some(reason) = drop_reason(mail.kind, registration) {
        return Ok(Composed::Settle(Settled::Dropped(reason)));
    }
    let event = facts
        .events
        .get(&registration.event_id)
        .context("the registration's event")?;
    let language = registration.language;
    let tz = event.tz();

    // The places held, with their sessions.
    let places: &[SessionPlace] = facts
        .places
        .get(&registration.id)
        .map_or(&[], Vec::as_slice);
    let entries = &facts.entries;
    let info =
        |entry: &ProgrammeSession, status: &'static str, position: Option<i64>| SessionInfo {
            title: entry.title.clone(),
            when: render::span(
                language,
                tz,
                entry.starts_at.with_timezone(&chrono::Utc),
                entry.ends_at.with_timezone(&chrono::Utc),
            ),
            venue: entry.venue.as_ref().map(|v| {
                [
                    Some(v.name.as_str()),
                    v.address.as_deref(),
                    v.city.as_deref(),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(", ")
            }),
            status,
            waitlist_position: position,
            cancelled: entry.status == SessionStatus::Cancelled,
        };
    let status_of = |status: &str| match status {
        "confirmed" => "confirmed",
        "waitlisted" => "waitlisted",
        _ => "cancelled",
    };
    let mut held: Vec<(
        Uuid,
        chrono::DateTime<chrono::FixedOffset>,
        bool,
        SessionInfo,
    )> = places
        .iter()
        .filter(|p| p.status != "cancelled")
        .filter_map(|p| {
            let entry = entries.get(&p.session_id)?;
            let on = entry.status != SessionStatus::Cancelled;
            Some((
                entry.id,
                entry.starts_at,
                on,
                info(entry, status_of(&p.status), p.waitlist_position),
            ))
        })
        .collect();
    held.sort_by_key(|(_, starts_at, _, _)| *starts_at);
    let session = mail.session_id.and_then(|id| {
        let entry = entries.get(&id)?;
        let place = places.iter().find(|p| p.session_id == id);
        Some(info(
            entry,
            place.map_or("cancelled", |p| status_of(&p.status)),
            place.and_then(|p| p.waitlist_position),
        ))
    });
    // The confirmed places of sessions still on: on the badge and in the calendar.
    let confirmed: Vec<(Uuid, chrono::DateTime<chrono::Utc>)> = held
        .iter()
        .filter(|(_, _, on, info)| *on && info.status == "confirmed")
        .map(|(id, starts_at, _, _)| (*id, starts_at.with_timezone(&chrono::Utc)))
        .collect();

    let starts = match mail.kind {
        MailKind::Reminder => {
            let first = match <[_]>::first(&confirmed) {
                Some((_, starts_at)) => *starts_at,
                None if held.is_empty() => crate::programme::start_of_day(tz, event.starts_on),
                None => {
                    return Ok(Composed::Settle(Settled::Dropped(
                        "no confirmed place to remind of",
                    )));
                }
            };
            if first <= chrono::Utc::now() {
                return Ok(Composed::Settle(Settled::Dropped("it has begun")));
            }
            Some(render::moment(language, tz, first))
        }
        _ => None,
    };

    let changed = match (mail.kind, mail.change_id) {
        (MailKind::SessionChanged, Some(change)) => {
            let details = facts.details.get(&change).context("the session's change")?;
            let fields: Vec<&str> = details["fields"]
                .as_array()
                .map(|f| f.iter().filter_map(|v| v.as_str()).collect())
                .unwrap_or_default();
            let mut changed = Vec::new();
            if fields.iter().any(|f| *f == "starts_at" || *f == "ends_at") {
                changed.push("time");
            }
            if fields.contains(&"venue_id") {
                changed.push("venue");
            }
            changed
        }
        _ => Vec::new(),
    };

    let manage_url = manage_url(state, event, registration, token_digest);
    let qr_png = if mail.kind.carries_badge() {
        let key = facts
            .keys
            .get(&event.id)
            .context("the event's check-in key")?;
        let payload = qr::encode(key, event.id, registration.id);
        let code = qrcode::QrCode::new(payload.as_bytes())?;
        Some(qr::png_of(&code)?)
    } else {
        None
    };
    let calendar = (matches!(
        mail.kind,
        MailKind::Registered | MailKind::Promoted | MailKind::Reminder | MailKind::SessionChanged
    ) && !confirmed.is_empty())
    .then(|| {
        let list: Vec<ProgrammeSession> = confirmed
            .iter()
            .filter_map(|(id, _)| entries.get(id).cloned())
            .collect();
        crate::programme::ics::calendar(event, &list)
    });

    let context = MailContext {
        kind: mail.kind,
        event: EventInfo {
            title: event.title.clone(),
            city: event.city.clone(),
            dates: render::dates(language, event.starts_on, event.ends_on),
            time_zone: render::zone(tz, crate::programme::start_of_day(tz, event.starts_on)),
        },
        participant: Participant {
            full_name: registration.full_name.clone(),
        },
        sessions: held.into_iter().map(|(_, _, _, info)| info).collect(),
        session,
        changed,
        manage_url,
        confirm_by: registration
            .confirm_by
            .map(|deadline| render::moment(language, tz, deadline)),
        starts,
        qr: qr_png.is_some(),
        calendar: calendar.is_some(),
    };
    let rendered = templates.render(language, mail.kind, &context)?;

    let to = match registration.email.parse::<lettre::Address>() {
        Ok(address) => Mailbox::new(Some(registration.full_name.clone()), address),
        Err(_) => {
            return Ok(Composed::Settle(Settled::Failed(
                "the registration's address cannot be mailed".into(),
            )));
        }
    };
    let alternative = MultiPart::alternative_plain_html(rendered.text, rendered.html);
    let body = match qr_png {
        Some(png) => MultiPart::related().multipart(alternative).singlepart(
            Attachment::new_inline(QR_CID.to_owned()).body(png, ContentType::parse("image/png")?),
        ),
        None => alternative,
    };
    let body = match calendar {
        Some(ics) => MultiPart::mixed().multipart(body).singlepart(
            Attachment::new("sessions.ics".to_owned()).body(
                ics,
                ContentType::parse("text/calendar; charset=utf-8; method=PUBLISH")?,
            ),
        ),
        None => body,
    };
    let message = Message::builder()
        .from(mailer.from.clone())
        .to(to)
        .subject(rendered.subject)
        // The same mail sent again (after a crash mid-delivery) carries the same id.
        .message_id(Some(format!(
            "<mail-{}.{}@registrar>",
            mail.id,
            event.id.simple()
        )))
        .multipart(body)?;
    Ok(Composed::Send(Box::new(message)))
}

/// The link to the registration on the organiser's frontend: the token derived again from
/// the registration's nonce, when the event has a link template and the nonce is known and
/// still derives the token in force (`stored`: it does not when the server key changed
/// since, as a development server's random one does on restart).
fn manage_url(
    state: &AppState,
    event: &Event,
    registration: &Registration,
    stored: &[u8],
) -> Option<String> {
    let (Some(template), Some(nonce)) = (
        event.manage_url_template.as_deref(),
        registration.token_nonce.as_deref(),
    ) else {
        return None;
    };
    let token = tokens::derived(
        tokens::MANAGE_PREFIX,
        &state.keys.derive("manage-token"),
        nonce,
    );
    if stored != tokens::digest(&token).as_slice() {
        tracing::warn!(
            registration = %registration.id,
            "the manage token cannot be derived again (the server key changed?): the mail goes without the link"
        );
        return None;
    }
    Some(crate::events::manage_url(template, registration.id, &token))
}
