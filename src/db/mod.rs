//! Database access: the connection pool, embedded migrations, and database creation.
//!
//! Handlers use `diesel-async` connections from a deadpool pool, so no database work ever
//! blocks an actix worker. Migrations run through the sync diesel harness on a blocking
//! thread, under an advisory lock so several instances starting at once do not race.

pub mod schema;
pub mod sql;
pub mod text_enum;

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

// Relations print-schema cannot see: composite foreign keys, and one left out on purpose
// (see the registrations migration).
diesel::joinable!(schema::session_speakers -> schema::speakers (speaker_id));
diesel::joinable!(schema::registration_sessions -> schema::sessions (session_id));

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Arbitrary key of the session-level advisory lock held while migrating.
const MIGRATION_LOCK_KEY: i64 = 0x7265_6769_7374_7261; // "registra"

/// The one row a statement returned, read only once PostgreSQL has answered the whole
/// statement: use it after `get_results` wherever `get_result` would do.
///
/// `diesel_async`'s `get_result` answers with the first row as soon as it arrives. A statement
/// outside an explicit transaction commits after its rows are sent (at the protocol's Sync), so
/// the caller could act on a row whose transaction then failed to commit: a deferred
/// constraint, a full disk, or the server dying in between (a registration answered 201 and
/// never stored). `get_results` reads until the server is ready for the next statement, after
/// the commit or its error. `get_result` is refused by clippy (`clippy.toml`).
pub fn single<T>(rows: Vec<T>) -> diesel::QueryResult<T> {
    rows.into_iter().next().ok_or(DieselError::NotFound)
}

/// Lets the current transaction commit without waiting for its WAL to reach the disk
/// (`synchronous_commit = off` for it alone). Only for records whose loss at a database crash
/// is harmless because they would be made again, such as the outcome of a delivery that is
/// then simply sent again: the commit is still atomic and visible to others at once, and
/// it does not queue behind other transactions' flushes.
pub async fn commit_without_waiting_for_disk(
    conn: &mut AsyncPgConnection,
) -> diesel::QueryResult<()> {
    use diesel_async::RunQueryDsl;
    diesel::sql_query("SET LOCAL synchronous_commit = off")
        .execute(conn)
        .await
        .map(drop)
}

pub type DbPool = Pool<AsyncPgConnection>;
pub type DbConn = Object<AsyncPgConnection>;
pub type PoolError = diesel_async::pooled_connection::deadpool::PoolError;

/// Builds the pool. Connections are opened lazily, so this never touches the database.
pub fn pool(url: &str, max_size: usize, timeout: Duration) -> anyhow::Result<DbPool> {
    // Connections are not pinged on every checkout (a round trip per request): a broken one
    // is noticed by its closed socket or failed transaction and replaced.
    let mut manager_config = ManagerConfig::default();
    manager_config.recycling_method = RecyclingMethod::Fast;
    let manager =
        AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url, manager_config);
    Pool::builder(manager)
        .max_size(max_size)
        .wait_timeout(Some(timeout))
        .create_timeout(Some(timeout))
        .recycle_timeout(Some(timeout))
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .context("building the database pool")
}

/// Arbitrary key of the advisory lock, taken in the maintenance database, that serialises
/// creating the database.
const CREATE_DATABASE_LOCK_KEY: i64 = 0x7265_6763_7265_6174; // "regcreat"

/// Creates the database named in `url` when it does not exist yet. Instances starting at once
/// take turns: each checks again under a lock held in the maintenance database, so one
/// creates it and the others find it (two concurrent `CREATE DATABASE` of one name fail with
/// a unique violation on `pg_database`, not with "already exists").
pub async fn ensure_database(url: &str) -> anyhow::Result<()> {
    let config = tokio_postgres::Config::from_str(url).context("parsing DATABASE_URL")?;
    let name = config
        .get_dbname()
        .context("DATABASE_URL names no database")?
        .to_owned();
    if tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .is_ok()
    {
        return Ok(());
    }
    let mut maintenance = config.clone();
    maintenance.dbname("postgres");
    let (client, connection) = maintenance
        .connect(tokio_postgres::NoTls)
        .await
        .context("connecting to the PostgreSQL server")?;
    tokio::spawn(connection);
    // Released when this connection closes, whatever happens below.
    client
        .execute("SELECT pg_advisory_lock($1)", &[&CREATE_DATABASE_LOCK_KEY])
        .await
        .context("waiting for other instances creating the database")?;
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .context("looking for the database")?
        .is_some();
    if exists {
        return Ok(());
    }
    let statement = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
    match client.batch_execute(&statement).await {
        Ok(()) => {
            tracing::info!(database = %name, "created database");
            Ok(())
        }
        // Created meanwhile by something that does not take the lock.
        Err(error)
            if error.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE)
                || error.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) =>
        {
            Ok(())
        }
        Err(error) => Err(error).with_context(|| format!("creating database {name}")),
    }
}

/// What `migrate` should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationAction {
    /// Apply pending migrations.
    Run,
    /// Revert every applied migration, then apply them all again.
    Redo,
    /// Revert every applied migration.
    RevertAll,
}

/// Runs migrations while holding an advisory lock; returns how many were applied.
pub async fn migrate(url: &str, action: MigrationAction) -> anyhow::Result<usize> {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || -> anyhow::Result<usize> {
        use diesel::{Connection, RunQueryDsl};
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::establish(&url)
            .context("connecting to the database to migrate it")?;
        diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))
            .execute(&mut conn)?;
        let result = apply(&mut conn, action);
        diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"))
            .execute(&mut conn)?;
        result
    })
    .await?
}

/// Runs `work` holding the migration lock: start-up work on stored data that must follow the
/// migrations and must not run twice at once (several instances may start together).
pub async fn with_migration_lock<T>(
    url: &str,
    work: impl AsyncFnOnce(&mut AsyncPgConnection) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    use diesel_async::{AsyncConnection, RunQueryDsl};
    let mut conn = AsyncPgConnection::establish(url)
        .await
        .context("connecting to the database")?;
    diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))
        .execute(&mut conn)
        .await?;
    let result = work(&mut conn).await;
    diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"))
        .execute(&mut conn)
        .await?;
    result
}

fn apply(
    conn: &mut AsyncConnectionWrapper<AsyncPgConnection>,
    action: MigrationAction,
) -> anyhow::Result<usize> {
    let to_anyhow = |error: Box<dyn std::error::Error + Send + Sync>| anyhow::anyhow!(error);
    if matches!(action, MigrationAction::Redo | MigrationAction::RevertAll) {
        let reverted = conn.revert_all_migrations(MIGRATIONS).map_err(to_anyhow)?;
        for version in &reverted {
            tracing::info!(%version, "reverted migration");
        }
        if action == MigrationAction::RevertAll {
            return Ok(reverted.len());
        }
    }
    let applied = conn.run_pending_migrations(MIGRATIONS).map_err(to_anyhow)?;
    for version in &applied {
        tracing::info!(%version, "applied migration");
    }
    Ok(applied.len())
}

/// Whether an error means the database cannot be reached right now (as opposed to a bug).
///
/// Besides a lost connection, that is PostgreSQL shutting down or starting (57P01, 57P03), a
/// node that is a standby, or still in recovery while it is being promoted (25006, and
/// 0A000 for the unlogged rate-limit table: a failover or switchover is under way, and the
/// balancer sends connections to a node that is not yet, or no longer, the primary), and
/// PgBouncer's own errors, which it sends as 08P01 with a message when its server connection
/// died or it cannot get one.
pub fn is_unavailable(error: &DieselError) -> bool {
    match error {
        DieselError::DatabaseError(
            DatabaseErrorKind::UnableToSendCommand
            | DatabaseErrorKind::ClosedConnection
            | DatabaseErrorKind::ReadOnlyTransaction,
            _,
        )
        | DieselError::BrokenTransactionManager => true,
        DieselError::DatabaseError(DatabaseErrorKind::Unknown, info) => {
            // diesel does not expose SQLSTATE here.
            const MESSAGES: &[&str] = &[
                // PostgreSQL (57P01, 57P02, 57P03, and a standby's conflicts).
                "terminating connection",
                "the database system is",
                "server closed the connection",
                "canceling statement due to conflict with recovery",
                "during recovery",
                "recovery is in progress",
                // PgBouncer.
                "server conn crashed",
                "server login has been failing",
                "query_wait_timeout",
                "no more connections allowed",
                "pgbouncer cannot connect to server",
                "database shutdown",
            ];
            let message = info.message();
            MESSAGES.iter().any(|known| message.contains(known))
        }
        _ => false,
    }
}

/// Whether a transaction failed only because of a concurrent one and can simply be run again.
pub fn is_retryable(error: &DieselError) -> bool {
    match error {
        DieselError::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => true,
        DieselError::DatabaseError(DatabaseErrorKind::Unknown, info) => {
            info.message().contains("deadlock detected")
        }
        _ => false,
    }
}

/// The constraint a unique or foreign-key violation names, if that is what `error` is.
pub fn violated_constraint(error: &DieselError) -> Option<&str> {
    match error {
        DieselError::DatabaseError(
            DatabaseErrorKind::UniqueViolation | DatabaseErrorKind::ForeignKeyViolation,
            info,
        ) => info.constraint_name(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database_error(kind: DatabaseErrorKind, message: &str) -> DieselError {
        DieselError::DatabaseError(kind, Box::new(message.to_owned()))
    }

    #[test]
    fn a_failover_seen_through_pgbouncer_is_unavailability() {
        for message in [
            "server conn crashed?",
            "server login has been failing, try again later (server_login_retry)",
            "query_wait_timeout",
            "no more connections allowed (max_client_conn)",
            "terminating connection due to administrator command",
            "the database system is in recovery mode",
            "cannot access temporary or unlogged relations during recovery",
        ] {
            assert!(
                is_unavailable(&database_error(DatabaseErrorKind::Unknown, message)),
                "{message}"
            );
        }
        assert!(is_unavailable(&database_error(
            DatabaseErrorKind::ReadOnlyTransaction,
            "cannot execute INSERT in a read-only transaction"
        )));
    }

    #[test]
    fn other_errors_are_not_unavailability() {
        assert!(!is_unavailable(&database_error(
            DatabaseErrorKind::Unknown,
            "division by zero"
        )));
        assert!(!is_unavailable(&database_error(
            DatabaseErrorKind::UniqueViolation,
            "duplicate key value violates unique constraint"
        )));
    }
}
