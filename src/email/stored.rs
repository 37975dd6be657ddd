//! Bringing stored comparison keys to the current rule, at start-up.
//!
//! SQL cannot compute the rule, so a migration that changes it only marks the keys as made by
//! an older rule (`email_rule`); the service recomputes them when it starts, under the
//! migration lock, a thousand rows at a time, before it serves. When two rows turn out to hold
//! the same address (two active registrations of one event, or two accounts), the one that
//! holds the key first keeps it and the other is marked `email_shared`: both stay as they are,
//! the second is left out of the one-row-per-address rule, and a warning names both ids.
//! Accounts marked so still log in with their own password (see the login route).

use anyhow::Context;
use diesel::prelude::*;
use diesel::sql_types::{Array, SmallInt, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::{RULE, normalise};
use crate::db;

const BATCH: i64 = 1000;

#[derive(QueryableByName)]
struct Stored {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    email: String,
}

#[derive(QueryableByName)]
struct Outcome {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    email_shared: bool,
    #[diesel(sql_type = diesel::sql_types::Nullable<SqlUuid>)]
    holder: Option<Uuid>,
}

/// One table whose addresses have comparison keys.
struct Table {
    name: &'static str,
    /// Among which rows an address must be unique (SQL over `r`, the row being updated, and
    /// `o`, another row).
    peers: &'static str,
}

const REGISTRATIONS: Table = Table {
    name: "registrations",
    peers: "o.event_id = r.event_id AND o.status = 'active' AND r.status = 'active'",
};

const USERS: Table = Table {
    name: "users",
    peers: "true",
};

/// Recomputes every comparison key made by an older rule; returns how many were.
pub async fn bring_to_rule(url: &str) -> anyhow::Result<u64> {
    db::with_migration_lock(url, async |conn| {
        let mut changed = 0;
        for table in [REGISTRATIONS, USERS] {
            changed += bring_table(conn, &table)
                .await
                .with_context(|| format!("bringing {} addresses to the rule", table.name))?;
        }
        if changed > 0 {
            tracing::info!(rows = changed, rule = RULE, "email comparison keys updated");
        }
        Ok(changed)
    })
    .await
}

async fn bring_table(conn: &mut AsyncPgConnection, table: &Table) -> anyhow::Result<u64> {
    let mut changed = 0;
    loop {
        // The rule is a constant, written into the query so that the partial index on
        // `email_rule < RULE` serves it.
        let batch: Vec<Stored> = diesel::sql_query(format!(
            "SELECT id, email FROM {} WHERE email_rule < {RULE} ORDER BY id LIMIT {BATCH}",
            table.name
        ))
        .load(conn)
        .await?;
        if batch.is_empty() {
            return Ok(changed);
        }
        let ids: Vec<Uuid> = batch.iter().map(|row| row.id).collect();
        let keys: Vec<String> = batch.iter().map(|row| normalise(&row.email)).collect();
        // Usually no two addresses meet: the whole batch in one statement.
        let together = diesel::sql_query(format!(
            "UPDATE {} r SET email_normalized = k.key, email_rule = $3, email_shared = false \
             FROM unnest($1::uuid[], $2::text[]) AS k(id, key) WHERE r.id = k.id",
            table.name
        ))
        .bind::<Array<SqlUuid>, _>(&ids)
        .bind::<Array<Text>, _>(&keys)
        .bind::<SmallInt, _>(RULE)
        .execute(conn)
        .await;
        match together {
            Ok(_) => {}
            Err(error) if db::violated_constraint(&error).is_some() => {
                for (id, key) in ids.iter().zip(&keys) {
                    one_by_one(conn, table, *id, key).await?;
                }
            }
            Err(error) => return Err(error.into()),
        }
        changed += batch.len() as u64;
    }
}

/// Brings one row to the rule, marking it shared when a peer holds its key already. Tried
/// again when a row that came in meanwhile (another instance still serving) takes the key.
async fn one_by_one(
    conn: &mut AsyncPgConnection,
    table: &Table,
    id: Uuid,
    key: &str,
) -> anyhow::Result<()> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let outcome = diesel::sql_query(format!(
            "WITH holder AS ( \
                 SELECT o.id FROM {name} o JOIN {name} r ON r.id = $1 \
                 WHERE o.id <> r.id AND o.email_normalized = $2 AND NOT o.email_shared \
                   AND {peers} \
                 LIMIT 1) \
             UPDATE {name} SET email_normalized = $2, email_rule = $3, \
                    email_shared = EXISTS (SELECT 1 FROM holder) \
             WHERE id = $1 \
             RETURNING email_shared, (SELECT id FROM holder) AS holder",
            name = table.name,
            peers = table.peers,
        ))
        .bind::<SqlUuid, _>(id)
        .bind::<Text, _>(key)
        .bind::<SmallInt, _>(RULE)
        .get_results::<Outcome>(conn)
        .await
        .and_then(crate::db::single);
        match outcome {
            Ok(outcome) => {
                if outcome.email_shared {
                    tracing::warn!(
                        table = table.name,
                        id = %id,
                        same_address_as = ?outcome.holder,
                        "two rows now hold the same email address; both are kept, this one is \
                         exempt from the one-row-per-address rule"
                    );
                }
                return Ok(());
            }
            Err(error) if db::violated_constraint(&error).is_some() && attempt < 5 => {}
            Err(error) => return Err(error.into()),
        }
    }
}
