//! The change log: every change that matters (to a registration, a check-in, a session, the
//! programme) is a row of `changes`, written in the transaction that makes it. A change that
//! rolls back leaves no row; one that commits cannot be lost. The code that makes a change
//! writes it here and names no consumer: webhooks, email and the print queue read the log.
//! (The programme's changes are written by triggers, see the change-log migration.)
//!
//! Consumers read the log in the order of (xid, id): the transaction that wrote a row, then
//! the row. A batch only holds rows of transactions older than every transaction still
//! running, so a row whose transaction commits late comes in a later batch and is never
//! skipped. Each consumer has a cursor row (`change_consumers`); the instance that holds its
//! lock reads the next batch and moves the cursor in one transaction with whatever it makes
//! of the batch, so each change is handled once however many instances run.
//!
//! Waking consumers: an instance that committed a change wakes its own consumers at once, and
//! tells the other instances with `NOTIFY`, sent after the commit and at most once per
//! few milliseconds. A `NOTIFY` inside the registering transaction would serialise every
//! registration's commit on PostgreSQL's notification queue lock (measured: 4,300 inserts
//! per second fall to 350–550); consumers also poll, in case a notification is missed.
//!
//! The same channel tells the other instances that an event or its programme changed, so that
//! they drop what they keep of it (`Signals::event_changed`, `Signals::stale`) at once instead
//! of when their copies expire; after a lost connection, when notifications may have been
//! missed, they drop everything.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures_util::StreamExt;
use tokio::sync::{Notify, broadcast, watch};
use uuid::Uuid;

use crate::db::schema::{change_consumers, changes};
use crate::error::ApiResult;

crate::text_enum! {
    /// What changed. These are also the event types webhooks are subscribed to.
    pub enum ChangeKind {
        RegistrationCreated => "registration.created",
        /// A place in a session was confirmed (at registration or when added later).
        RegistrationConfirmed => "registration.confirmed",
        RegistrationWaitlisted => "registration.waitlisted",
        /// Moved from a session's waitlist into a seat.
        RegistrationPromoted => "registration.promoted",
        /// Details changed (`details.fields` names them; `details.answers` lists the answers
        /// changed, with old and new values for questions not marked personal).
        RegistrationChanged => "registration.changed",
        RegistrationCancelled => "registration.cancelled",
        /// A place in a session was given up.
        RegistrationSessionRemoved => "registration.session_removed",
        /// The participant's personal data was anonymised (`details.reason`): receivers
        /// erase their copies too.
        RegistrationErased => "registration.erased",
        CheckinCreated => "checkin.created",
        /// A published session's time, place or title changed (`details.fields`).
        SessionChanged => "session.changed",
        /// A published session was cancelled.
        SessionCancelled => "session.cancelled",
        /// The event was published.
        ProgrammePublished => "programme.published",
        /// Something the public programme shows changed.
        ProgrammeChanged => "programme.changed",
    }
}

crate::text_enum! {
    /// Who made a change: the participant (manage token), an organiser, a device (badge
    /// printer, check-in desk), the service itself (a promotion when a seat frees up), or an
    /// import of participants being committed (the id is the import's).
    pub enum ActorKind {
        Participant => "participant",
        Organiser => "organiser",
        Device => "device",
        System => "system",
        Import => "import",
    }
}

/// Who is acting, as recorded with a change.
#[derive(Debug, Clone, Copy)]
pub struct Actor {
    pub kind: ActorKind,
    /// The registration (participant), user account (organiser), API key (device) or import.
    pub id: Option<Uuid>,
}

impl Actor {
    pub fn participant(registration_id: Uuid) -> Self {
        Actor {
            kind: ActorKind::Participant,
            id: Some(registration_id),
        }
    }

    pub fn organiser(user_id: Uuid) -> Self {
        Actor {
            kind: ActorKind::Organiser,
            id: Some(user_id),
        }
    }

    pub fn device(key_id: Uuid) -> Self {
        Actor {
            kind: ActorKind::Device,
            id: Some(key_id),
        }
    }

    pub fn import(import_id: Uuid) -> Self {
        Actor {
            kind: ActorKind::Import,
            id: Some(import_id),
        }
    }

    pub const SYSTEM: Actor = Actor {
        kind: ActorKind::System,
        id: None,
    };
}

/// A change to record.
#[derive(Debug, Insertable)]
#[diesel(table_name = changes)]
pub struct NewChange {
    pub event_id: Uuid,
    pub registration_id: Option<Uuid>,
    pub session_id: Option<Uuid>,
    pub kind: ChangeKind,
    pub actor: ActorKind,
    pub actor_id: Option<Uuid>,
    /// What else a consumer needs to know, never personal data (field names, not values).
    pub details: serde_json::Value,
}

impl NewChange {
    /// A change of a registration, in a session if `session_id` names one.
    pub fn registration(
        event_id: Uuid,
        registration_id: Uuid,
        session_id: Option<Uuid>,
        kind: ChangeKind,
        actor: Actor,
    ) -> Self {
        NewChange {
            event_id,
            registration_id: Some(registration_id),
            session_id,
            kind,
            actor: actor.kind,
            actor_id: actor.id,
            details: serde_json::Value::Object(Default::default()),
        }
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}

/// Records changes in the caller's transaction.
pub async fn record(conn: &mut AsyncPgConnection, entries: Vec<NewChange>) -> ApiResult<()> {
    if !entries.is_empty() {
        diesel::insert_into(changes::table)
            .values(entries)
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// One recorded change.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = changes)]
pub struct Change {
    pub id: i64,
    pub xid: i64,
    pub event_id: Uuid,
    pub registration_id: Option<Uuid>,
    pub session_id: Option<Uuid>,
    pub kind: ChangeKind,
    pub actor: ActorKind,
    pub actor_id: Option<Uuid>,
    pub details: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

/// A place in the log: the last change a consumer has handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub xid: i64,
    pub id: i64,
}

/// The next changes for a consumer, and where its cursor goes once they are handled.
#[derive(Debug)]
pub struct Batch {
    pub changes: Vec<Change>,
    pub end: Position,
}

/// Starts a consumer at the end of the log unless it exists already: a new consumer handles
/// the changes made from now on.
pub async fn register_consumer(conn: &mut AsyncPgConnection, name: &str) -> ApiResult<()> {
    diesel::sql_query(
        "INSERT INTO change_consumers (name, last_xid, last_id) \
         SELECT $1, coalesce(max(xid), 0), coalesce(max(id), 0) FROM changes \
         ON CONFLICT (name) DO NOTHING",
    )
    .bind::<Text, _>(name)
    .execute(conn)
    .await?;
    Ok(())
}

/// A consumer's look for news (`$1`: its name): its cursor, and whether the first change
/// after the cursor was written by a transaction older than every one still running. The
/// first change comes from the log's index however long the log is; an `EXISTS` over the
/// changes after the cursor read the whole log whenever there was nothing new (the planner
/// cannot see that few rows follow the cursor), and that look runs at every commit.
pub const PEEK: &str = "SELECT c.last_xid AS xid, c.last_id AS id, coalesce(( \
         SELECT l.xid FROM changes l WHERE (l.xid, l.id) > (c.last_xid, c.last_id) \
         ORDER BY l.xid, l.id LIMIT 1) < pg_snapshot_xmin(pg_current_snapshot())::text::bigint, \
         false) AS news \
     FROM change_consumers c WHERE c.name = $1";

/// Within a transaction: takes the consumer's cursor and reads up to `limit` changes after
/// it. `None` when another instance holds the cursor (it is handling the same changes).
///
/// When nothing new can be read, the batch is empty and the cursor is not taken: the
/// consumers look every time a registration commits, and a transaction that locks no row
/// commits without writing to the disk.
pub async fn next_batch(
    conn: &mut AsyncPgConnection,
    consumer: &str,
    limit: i64,
) -> ApiResult<Option<Batch>> {
    #[derive(QueryableByName)]
    struct Peek {
        #[diesel(sql_type = BigInt)]
        xid: i64,
        #[diesel(sql_type = BigInt)]
        id: i64,
        #[diesel(sql_type = diesel::sql_types::Bool)]
        news: bool,
    }
    let peek: Option<Peek> = diesel::sql_query(PEEK)
        .bind::<Text, _>(consumer)
        .get_results(conn)
        .await?
        .into_iter()
        .next();
    match peek {
        None => return Ok(None),
        Some(peek) if !peek.news => {
            return Ok(Some(Batch {
                changes: Vec::new(),
                end: Position {
                    xid: peek.xid,
                    id: peek.id,
                },
            }));
        }
        Some(_) => {}
    }
    let cursor: Option<(i64, i64)> = change_consumers::table
        .find(consumer)
        .select((change_consumers::last_xid, change_consumers::last_id))
        .for_update()
        .skip_locked()
        .first(conn)
        .await
        .optional()?;
    let Some((xid, id)) = cursor else {
        return Ok(None);
    };
    let rows: Vec<Change> = changes::table
        .filter(
            diesel::dsl::sql::<diesel::sql_types::Bool>("(xid, id) > (")
                .bind::<BigInt, _>(xid)
                .sql(", ")
                .bind::<BigInt, _>(id)
                .sql(") AND xid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint"),
        )
        .order((changes::xid, changes::id))
        .limit(limit)
        .select(Change::as_select())
        .load(conn)
        .await?;
    let end = rows.last().map_or(Position { xid, id }, |last| Position {
        xid: last.xid,
        id: last.id,
    });
    Ok(Some(Batch { changes: rows, end }))
}

/// Moves the consumer's cursor (taken by `next_batch` in the same transaction).
pub async fn advance(conn: &mut AsyncPgConnection, consumer: &str, to: Position) -> ApiResult<()> {
    diesel::update(change_consumers::table.find(consumer))
        .set((
            change_consumers::last_xid.eq(to.xid),
            change_consumers::last_id.eq(to.id),
            change_consumers::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

#[derive(QueryableByName)]
struct Backlog {
    #[diesel(sql_type = BigInt)]
    waiting: i64,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Double>)]
    oldest_seconds: Option<f64>,
}

/// How many changes a consumer has not handled yet, and the age of the oldest, in seconds.
pub async fn backlog(conn: &mut AsyncPgConnection, consumer: &str) -> ApiResult<(i64, f64)> {
    let backlog: Backlog = diesel::sql_query(
        "SELECT count(*) AS waiting, \
                extract(epoch FROM now() - min(c.created_at))::float8 AS oldest_seconds \
         FROM changes c, change_consumers k \
         WHERE k.name = $1 AND (c.xid, c.id) > (k.last_xid, k.last_id)",
    )
    .bind::<Text, _>(consumer)
    .get_results(conn)
    .await
    .and_then(crate::db::single)?;
    Ok((backlog.waiting, backlog.oldest_seconds.unwrap_or(0.0)))
}

/// The channel instances tell each other on that changes were committed.
const CHANNEL: &str = "registrar_changes";

/// What another instance's copies of public data have become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stale {
    /// Everything it keeps of this event.
    Event(Uuid),
    /// Everything: notifications may have been missed.
    Everything,
}

/// Wakes the consumers when changes may have been committed: this instance's at once, the
/// other instances' through `NOTIFY` (see the module's comment). Also tells the other
/// instances which events changed.
pub struct Signals {
    local: watch::Sender<u64>,
    notify_others: Notify,
    pending: AtomicBool,
    /// Events changed through this instance, not yet announced.
    changed_events: Mutex<HashSet<Uuid>>,
    stale: broadcast::Sender<Stale>,
    /// Sent in the notification's payload, so an instance ignores its own.
    instance: String,
}

impl Signals {
    pub fn new() -> Arc<Self> {
        Arc::new(Signals {
            local: watch::Sender::new(0),
            notify_others: Notify::new(),
            pending: AtomicBool::new(false),
            changed_events: Mutex::new(HashSet::new()),
            stale: broadcast::Sender::new(64),
            instance: Uuid::new_v4().simple().to_string(),
        })
    }

    /// An event or its programme changed through this instance (and the change committed):
    /// tells the other instances, whose copies of it are stale now.
    pub fn event_changed(&self, event_id: Uuid) {
        self.changed_events
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(event_id);
        self.notify_others.notify_one();
    }

    /// What the other instances say is stale here.
    pub fn stale(&self) -> broadcast::Receiver<Stale> {
        self.stale.subscribe()
    }

    /// Changes may have been committed by this instance.
    pub fn committed(&self) {
        self.wake_local();
        if !self.pending.swap(true, Ordering::AcqRel) {
            self.notify_others.notify_one();
        }
    }

    fn wake_local(&self) {
        self.local.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that sees a new value whenever changes may have been committed.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.local.subscribe()
    }

    /// A notification: `<instance>` (changes were committed) or `<instance> event <id>` (an
    /// event changed). An instance's own are ignored.
    fn heard(&self, payload: &str) {
        let (instance, rest) = payload.split_once(' ').unwrap_or((payload, ""));
        if instance == self.instance {
            return;
        }
        match rest.strip_prefix("event ").map(str::parse::<Uuid>) {
            Some(Ok(event)) => {
                let _ = self.stale.send(Stale::Event(event));
            }
            Some(Err(_)) => {}
            None => self.wake_local(),
        }
    }

    /// Listens for the other instances' notifications and sends this one's, until `stop`
    /// is set; reconnects when the connection breaks.
    pub async fn run(self: Arc<Self>, url: String, mut stop: watch::Receiver<bool>) {
        while !*stop.borrow() {
            match self.listen(&url, &mut stop).await {
                Ok(()) => return,
                Err(error) => {
                    tracing::warn!(%error, "change notifications: connection lost; reconnecting");
                    // Anything may have been committed meanwhile.
                    self.wake_local();
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.changed() => {}
                    }
                }
            }
        }
    }

    async fn listen(&self, url: &str, stop: &mut watch::Receiver<bool>) -> anyhow::Result<()> {
        let (client, mut connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
        let (sender, mut notifications) = tokio::sync::mpsc::unbounded_channel();
        let driver = tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                        let _ = sender.send(Ok(n.payload().to_owned()));
                    }
                    Ok(_) => {}
                    Err(error) => {
                        let _ = sender.send(Err(error));
                        return;
                    }
                }
            }
        });
        let result = async {
            client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
            // Whatever was announced before now, while not listening, went unheard.
            let _ = self.stale.send(Stale::Everything);
            loop {
                tokio::select! {
                    _ = stop.changed() => return Ok(()),
                    _ = self.notify_others.notified() => {
                        let changes = self.pending.swap(false, Ordering::AcqRel);
                        let events: Vec<Uuid> = std::mem::take(
                            &mut *self
                                .changed_events
                                .lock()
                                .unwrap_or_else(|poisoned| poisoned.into_inner()),
                        )
                        .into_iter()
                        .collect();
                        let mut payloads = Vec::new();
                        if changes {
                            payloads.push(self.instance.clone());
                        }
                        payloads.extend(events.iter().map(|event| format!("{} event {event}", self.instance)));
                        for payload in &payloads {
                            tokio_postgres::Client::execute(
                                &client,
                                "SELECT pg_notify($1, $2)",
                                &[&CHANNEL, payload],
                            )
                            .await?;
                        }
                        // At most one round of notifications per few milliseconds: the others
                        // wait.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    message = notifications.recv() => match message {
                        Some(Ok(payload)) => self.heard(&payload),
                        Some(Err(error)) => return Err(error.into()),
                        None => anyhow::bail!("the connection closed"),
                    },
                }
            }
        }
        .await;
        driver.abort();
        result
    }
}
