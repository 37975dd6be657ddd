//! Turning changes into deliveries: the change log's consumer `webhooks` reads the next
//! changes and, in the same transaction that moves its cursor, makes one delivery per enabled
//! endpoint of the change's event subscribed to its kind (and made before the change). A
//! change that rolled back was never in the log; one that committed gets its deliveries
//! exactly once, whichever instance reads it.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::payloads;
use crate::changes::{self, Change};
use crate::db::schema::{webhook_deliveries, webhook_endpoints};
use crate::error::ApiError;
use crate::state::AppState;

/// The consumer's name in `change_consumers` (its row is made by the webhooks migration).
pub const CONSUMER: &str = "webhooks";

/// Changes read per round.
const BATCH: i64 = 500;

#[derive(Insertable)]
#[diesel(table_name = webhook_deliveries)]
struct NewDelivery {
    id: Uuid,
    endpoint_id: Uuid,
    change_id: i64,
    changed_at: DateTime<Utc>,
    kind: String,
    registration_id: Option<Uuid>,
    order_key: Uuid,
    payload: String,
}

/// An enabled endpoint, with what decides which changes it hears of.
#[derive(Queryable, Selectable)]
#[diesel(table_name = webhook_endpoints)]
struct Subscriber {
    id: Uuid,
    event_id: Uuid,
    event_types: Vec<Option<String>>,
    created_at: DateTime<Utc>,
}

impl Subscriber {
    fn wants(&self, change: &Change) -> bool {
        // An endpoint hears of the changes made since it exists.
        self.event_id == change.event_id
            && change.created_at >= self.created_at
            && (self.event_types.is_empty()
                || self
                    .event_types
                    .iter()
                    .any(|t| t.as_deref() == Some(change.kind.as_str())))
    }
}

/// One round: returns whether more changes may be waiting.
pub async fn fan_out(state: &AppState) -> anyhow::Result<bool> {
    let mut conn = state.db.get().await?;
    let (made, full) = conn
        .transaction::<_, ApiError, _>(async |conn| {
            let Some(batch) = changes::next_batch(conn, CONSUMER, BATCH).await? else {
                // Another instance is reading the same changes.
                return Ok((0, false));
            };
            if batch.changes.is_empty() {
                return Ok((0, false));
            }
            let made = make_deliveries(conn, &batch.changes).await?;
            changes::advance(conn, CONSUMER, batch.end).await?;
            Ok((made, batch.changes.len() as i64 == BATCH))
        })
        .await
        .map_err(|error| anyhow::anyhow!("making webhook deliveries: {error}"))?;
    if made > 0 {
        // Wakes the delivery workers, here and (through NOTIFY) on the other instances.
        state.signals.committed();
    }
    Ok(full)
}

async fn make_deliveries(
    conn: &mut AsyncPgConnection,
    changes: &[Change],
) -> Result<usize, ApiError> {
    let mut event_ids: Vec<Uuid> = changes.iter().map(|c| c.event_id).collect();
    event_ids.sort();
    event_ids.dedup();
    let endpoints: Vec<Subscriber> = webhook_endpoints::table
        .filter(webhook_endpoints::event_id.eq_any(&event_ids))
        .filter(webhook_endpoints::enabled)
        .select(Subscriber::as_select())
        .order(webhook_endpoints::id)
        .load(conn)
        .await?;
    if endpoints.is_empty() {
        return Ok(0);
    }
    let subscribers = |change: &Change| -> Vec<Uuid> {
        endpoints
            .iter()
            .filter(|e| e.wants(change))
            .map(|e| e.id)
            .collect()
    };
    let wanted: Vec<&Change> = changes
        .iter()
        .filter(|c| !subscribers(c).is_empty())
        .collect();
    if wanted.is_empty() {
        return Ok(0);
    }
    let bodies = payloads::build(conn, &wanted).await?;
    let mut rows = Vec::new();
    for change in wanted {
        let Some(body) = bodies.get(&change.id) else {
            continue;
        };
        let order_key = change
            .registration_id
            .or(change.session_id)
            .unwrap_or(change.event_id);
        for endpoint_id in subscribers(change) {
            rows.push(NewDelivery {
                id: Uuid::now_v7(),
                endpoint_id,
                change_id: change.id,
                changed_at: change.created_at,
                kind: change.kind.as_str().to_owned(),
                registration_id: change.registration_id,
                order_key,
                payload: body.clone(),
            });
        }
    }
    let mut made = 0;
    // Rows come in the order of the log, and `seq` follows the order of insertion.
    for chunk in rows.chunks(1000) {
        made += diesel::insert_into(webhook_deliveries::table)
            .values(chunk)
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
    }
    Ok(made)
}
