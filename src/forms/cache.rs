//! Each instance keeps an event's form, with its schema compiled, for a moment
//! (`REGISTRAR_PUBLIC_CACHE_MS`): a popular event draws hundreds of public registrations a
//! second, each checked against the same form, which would otherwise be read (three queries)
//! and its schema compiled for every one. Changes to the form drop the copy at once on the
//! instance that made them and on the others as soon as they hear of it (`caches`). Nothing
//! that decides capacity comes from here: the registering function reads categories' and
//! options' places itself, under their locks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel_async::AsyncPgConnection;
use uuid::Uuid;

use super::Form;
use crate::caches::EventCache;
use crate::error::ApiResult;

const MAX_ENTRIES: usize = 1024;

pub struct FormCache {
    ttl: Duration,
    forms: Mutex<HashMap<Uuid, (Instant, Arc<Form>)>>,
}

impl FormCache {
    fn forms(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, (Instant, Arc<Form>)>> {
        self.forms
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The event's form, as read less than the time-to-live ago or read now.
    pub async fn form(&self, conn: &mut AsyncPgConnection, event_id: Uuid) -> ApiResult<Arc<Form>> {
        if let Some((read, form)) = self.forms().get(&event_id)
            && read.elapsed() < self.ttl
        {
            return Ok(Arc::clone(form));
        }
        let form = Arc::new(Form::load(conn, event_id).await?);
        if !self.ttl.is_zero() {
            let mut forms = self.forms();
            if forms.len() >= MAX_ENTRIES {
                forms.clear();
            }
            forms.insert(event_id, (Instant::now(), Arc::clone(&form)));
        }
        Ok(form)
    }
}

impl EventCache for FormCache {
    fn new(ttl: Duration) -> Self {
        FormCache {
            ttl,
            forms: Mutex::new(HashMap::new()),
        }
    }

    fn forget_event(&self, event_id: Uuid) {
        self.forms().remove(&event_id);
    }

    fn clear(&self) {
        self.forms().clear();
    }
}
