//! What public registrations read of events and sessions, kept for a moment per instance.
//!
//! A popular session draws hundreds of registrations a second, each needing the same event
//! and session settings to check its rules (published, windows, overlaps). Those are read
//! once per `REGISTRAR_PUBLIC_CACHE_MS` by each instance instead of twice per registration;
//! changes made through an instance drop its copies at once, and the other instances' as soon
//! as they hear of it (`changes::Signals`). Nothing that decides capacity
//! comes from here: the registering function reads capacities and waitlist settings itself,
//! under the locks.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::db::schema::sessions;
use crate::error::ApiResult;
use crate::events::Event;
use crate::programme::Session;

const MAX_ENTRIES: usize = 10_000;

struct Copy<T> {
    read: Instant,
    value: T,
}

pub struct Catalog {
    ttl: Duration,
    events: Mutex<HashMap<String, Copy<Event>>>,
    sessions: Mutex<HashMap<Uuid, Copy<Session>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn store<K: std::hash::Hash + Eq, T>(map: &mut HashMap<K, Copy<T>>, key: K, value: T) {
    if map.len() >= MAX_ENTRIES {
        map.clear();
    }
    map.insert(
        key,
        Copy {
            read: Instant::now(),
            value,
        },
    );
}

impl Catalog {
    pub fn new(ttl: Duration) -> Self {
        Catalog {
            ttl,
            events: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// The event `reference` (slug or id) names, if read recently.
    pub fn event(&self, reference: &str) -> Option<Event> {
        let events = lock(&self.events);
        let copy = events.get(reference)?;
        (copy.read.elapsed() < self.ttl).then(|| copy.value.clone())
    }

    pub fn keep_event(&self, reference: &str, event: &Event) {
        if !self.ttl.is_zero() {
            store(&mut lock(&self.events), reference.to_owned(), event.clone());
        }
    }

    /// The event's sessions with these ids (those that exist), from recent copies where
    /// there are some and from the database for the rest.
    pub async fn sessions(
        &self,
        conn: &mut AsyncPgConnection,
        event_id: Uuid,
        ids: &[Uuid],
    ) -> ApiResult<Vec<Session>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut found = Vec::with_capacity(ids.len());
        let mut missing = Vec::new();
        {
            let copies = lock(&self.sessions);
            for id in ids {
                match copies.get(id) {
                    Some(copy)
                        if copy.read.elapsed() < self.ttl && copy.value.event_id == event_id =>
                    {
                        found.push(copy.value.clone());
                    }
                    _ => missing.push(*id),
                }
            }
        }
        if !missing.is_empty() {
            let read: Vec<Session> = sessions::table
                .filter(sessions::event_id.eq(event_id))
                .filter(sessions::id.eq_any(&missing))
                .select(Session::as_select())
                .load(conn)
                .await?;
            if !self.ttl.is_zero() {
                let mut copies = lock(&self.sessions);
                for session in &read {
                    store(&mut copies, session.id, session.clone());
                }
            }
            found.extend(read);
        }
        Ok(found)
    }

    /// Drops every copy.
    pub fn clear(&self) {
        lock(&self.events).clear();
        lock(&self.sessions).clear();
    }

    /// Drops every copy of the event and its sessions (after any change to them).
    pub fn invalidate(&self, event_id: Uuid) {
        lock(&self.events).retain(|_, copy| copy.value.id != event_id);
        lock(&self.sessions).retain(|_, copy| copy.value.event_id != event_id);
    }
}

impl crate::caches::EventCache for Catalog {
    fn new(ttl: Duration) -> Self {
        Catalog::new(ttl)
    }

    fn forget_event(&self, event_id: Uuid) {
        self.invalidate(event_id);
    }

    fn clear(&self) {
        Catalog::clear(self);
    }
}
