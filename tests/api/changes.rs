//! The change log: what is written, in which transaction, and how consumers read it.

use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection};
use registrar::changes::{self, Signals};
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestDb, assert_reads_few, column, explained, spawn_app};
use crate::registrations::id_of;

/// The kinds of the event's changes, oldest first (with their session when they have one).
async fn kinds(app: &TestApp) -> Vec<(String, Option<String>)> {
    app.db
        .client()
        .await
        .query(
            "SELECT kind, session_id::text FROM changes ORDER BY xid, id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

fn kind(name: &str) -> (String, Option<String>) {
    (name.to_owned(), None)
}

fn of_session(name: &str, session: &str) -> (String, Option<String>) {
    (name.to_owned(), Some(session.to_owned()))
}

#[tokio::test]
async fn a_registration_writes_its_changes_and_a_failed_one_writes_none() {
    let app = spawn_app().await;
    let token = app.admin().await.access;
    app.event(&token, "mmdn", json!({})).await;
    let open = id_of(&app.session(&token, "mmdn", json!({"capacity": 1})).await);
    let full = id_of(
        &app.session(
            &token,
            "mmdn",
            json!({"capacity": 1, "waitlist_enabled": false,
                   "starts_at": "2027-04-23T11:00:00+03:00", "ends_at": "2027-04-23T13:00:00+03:00"}),
        )
        .await,
    );
    app.register("mmdn", "first@example.org", &[&full])
        .await
        .assert_status(201);
    let before = kinds(&app).await;

    app.register("mmdn", "anna@example.org", &[&open, &full])
        .await
        .assert_problem(409, "session_full");
    assert_eq!(
        kinds(&app).await,
        before,
        "a rolled-back registration logs nothing"
    );
    app.register("mmdn", "anna@example.org", &[&open])
        .await
        .assert_status(201);

    let after = kinds(&app).await;
    assert_eq!(
        after[before.len()..],
        [
            kind("registration.created"),
            of_session("registration.confirmed", &open)
        ]
    );
}

#[tokio::test]
async fn the_programme_logs_publication_and_changes_of_published_sessions_only() {
    let app = spawn_app().await;
    let token = app.admin().await.access;
    app.event(&token, "mmdn", json!({"status": "draft"})).await;
    let session = id_of(&app.session(&token, "mmdn", json!({})).await);
    let draft = id_of(
        &app.session(&token, "mmdn", json!({"status": "draft"}))
            .await,
    );
    assert_eq!(kinds(&app).await, [], "a draft event has no audience");

    app.patch(
        "/api/v1/events/mmdn",
        Some(&token),
        &json!({"status": "published"}),
    )
    .await
    .assert_status(200);
    let path = format!("/api/v1/events/mmdn/sessions/{session}");
    app.patch(
        &path,
        Some(&token),
        &json!({"starts_at": "2027-04-24T10:00:00+03:00"}),
    )
    .await
    .assert_status(200);
    app.patch(
        &format!("/api/v1/events/mmdn/sessions/{draft}"),
        Some(&token),
        &json!({"title": "Черновик"}),
    )
    .await
    .assert_status(200);
    app.patch(&path, Some(&token), &json!({"status": "cancelled"}))
        .await
        .assert_status(200);

    assert_eq!(
        kinds(&app).await,
        [
            kind("programme.published"),
            of_session("session.changed", &session),
            kind("programme.changed"),
            of_session("session.cancelled", &session),
            kind("programme.changed"),
        ]
    );
    let details: String = app
        .db
        .client()
        .await
        .query_one(
            "SELECT details::text FROM changes WHERE kind = 'session.changed'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        serde_json::from_str::<Value>(&details).unwrap(),
        json!({"fields": ["starts_at"]})
    );
}

async fn connect(db: &TestDb) -> AsyncPgConnection {
    AsyncPgConnection::establish(&db.url).await.unwrap()
}

/// Inserts a change of the event `event_id` in the given open transaction.
async fn insert_change(client: &tokio_postgres::Client, event_id: &str) -> i64 {
    client
        .query_one(
            &format!(
                "INSERT INTO changes (event_id, kind, actor) \
                 VALUES ('{event_id}', 'programme.changed', 'organiser') RETURNING id"
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// The ids a consumer reads next (and moves its cursor past them). Changes of transactions
/// older than every one still running anywhere in the cluster are read; other tests' running
/// transactions can hold them back for a moment, so a test that expects some waits for them.
async fn consume(conn: &mut AsyncPgConnection, consumer: &str) -> Option<Vec<i64>> {
    conn.transaction::<_, registrar::error::ApiError, _>(async |conn| {
        let Some(batch) = changes::next_batch(conn, consumer, 100).await? else {
            return Ok(None);
        };
        changes::advance(conn, consumer, batch.end).await?;
        Ok(Some(batch.changes.iter().map(|c| c.id).collect()))
    })
    .await
    .unwrap()
}

/// The next non-empty batch, waiting up to ten seconds for it.
async fn consume_some(conn: &mut AsyncPgConnection, consumer: &str) -> Vec<i64> {
    for _ in 0..200 {
        match consume(conn, consumer).await {
            Some(ids) if !ids.is_empty() => return ids,
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    panic!("no changes came");
}

#[tokio::test]
async fn a_consumer_reads_a_change_that_commits_late_after_those_that_committed_first() {
    let app = spawn_app().await;
    let token = app.admin().await.access;
    let event = id_of(&app.event(&token, "mmdn", json!({})).await);
    let mut conn = connect(&app.db).await;
    changes::register_consumer(&mut conn, "test").await.unwrap();

    let late = app.db.client().await;
    late.batch_execute("BEGIN").await.unwrap();
    let late_id = insert_change(&late, &event).await;
    let early_id = insert_change(&app.db.client().await, &event).await;

    // The earlier transaction is still running: nothing may be handed out past it.
    assert_eq!(consume(&mut conn, "test").await, Some(vec![]));
    late.batch_execute("COMMIT").await.unwrap();
    assert_eq!(
        consume_some(&mut conn, "test").await,
        vec![late_id, early_id]
    );
    assert_eq!(consume(&mut conn, "test").await, Some(vec![]));
}

/// Writes `count` programme changes of the event, then takes the log's statistics.
async fn programme_changes(client: &tokio_postgres::Client, event: &str, count: u32) {
    client
        .batch_execute(&format!(
            "INSERT INTO changes (event_id, kind, actor) \
             SELECT '{event}', 'programme.changed', 'organiser' FROM generate_series(1, {count}); \
             ANALYZE changes"
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_consumer_with_nothing_new_reads_the_log_from_its_index_however_long_the_log() {
    let app = spawn_app().await;
    let token = app.admin().await.access;
    let event = id_of(&app.event(&token, "mmdn", json!({})).await);
    let client = app.db.client().await;
    programme_changes(&client, &event, 20_000).await;
    let mut conn = connect(&app.db).await;
    changes::register_consumer(&mut conn, "caught-up")
        .await
        .unwrap();

    // Every commit makes every consumer look: a look must not read the whole log.
    let plan = explained(&client, &changes::PEEK.replace("$1", "'caught-up'")).await;
    assert!(!plan.contains("Seq Scan"), "{plan}");
    assert_reads_few(&plan);
    assert_eq!(consume(&mut conn, "caught-up").await, Some(vec![]));
}

#[tokio::test]
async fn mails_for_a_batch_of_changes_are_found_by_the_batch_s_ids_whatever_the_statistics() {
    let app = spawn_app().await;
    let token = app.admin().await.access;
    let event = id_of(&app.event(&token, "mmdn", json!({})).await);
    let client = app.db.client().await;
    // Statistics taken while the log held only programme changes, as before the first burst of
    // registrations (and until the next ANALYZE).
    client
        .batch_execute("ALTER TABLE changes SET (autovacuum_enabled = false)")
        .await
        .unwrap();
    programme_changes(&client, &event, 800).await;
    let registration = id_of(
        &app.register("mmdn", "anna@example.org", &[])
            .await
            .assert_status(201)
            .json(),
    );
    client
        .batch_execute(&format!(
            "INSERT INTO changes (event_id, registration_id, kind, actor) \
             SELECT '{event}', '{registration}', 'registration.changed', 'participant' \
             FROM generate_series(1, 20000)"
        ))
        .await
        .unwrap();
    let batch: Vec<i64> = client
        .query("SELECT id FROM changes ORDER BY id DESC LIMIT 13", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let ids = format!(
        "'{{{}}}'::bigint[]",
        batch
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    );

    let plan = explained(
        &client,
        &registrar::notifications::email::QUEUE_MAILS.replace("$1", &ids),
    )
    .await;
    assert_reads_few(&plan);
}

#[tokio::test]
async fn while_one_instance_reads_a_consumer_s_changes_another_gets_none() {
    let app = spawn_app().await;
    let token = app.admin().await.access;
    let event = id_of(&app.event(&token, "mmdn", json!({})).await);
    let mut first = connect(&app.db).await;
    let mut second = connect(&app.db).await;
    changes::register_consumer(&mut first, "test")
        .await
        .unwrap();
    insert_change(&app.db.client().await, &event).await;

    first
        .transaction::<_, registrar::error::ApiError, _>(async |first| {
            let mut batch = changes::next_batch(first, "test", 100).await?.unwrap();
            for _ in 0..200 {
                if !batch.changes.is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                batch = changes::next_batch(first, "test", 100).await?.unwrap();
            }
            assert_eq!(batch.changes.len(), 1);
            // Meanwhile, another instance finds the cursor taken.
            assert_eq!(consume(&mut second, "test").await, None);
            changes::advance(first, "test", batch.end).await
        })
        .await
        .unwrap();

    assert_eq!(consume(&mut second, "test").await, Some(vec![]));
}

#[tokio::test]
async fn a_check_in_is_in_the_log_and_the_registration_s_history() {
    let app = spawn_app().await;
    let token = app.admin().await.access;
    app.event(&token, "mmdn", json!({})).await;
    let registered = app.register("mmdn", "anna@example.org", &[]).await;
    registered.assert_status(201);
    let id = id_of(&registered.json());
    // The feed carries every attendee's badge code (once no older transaction is running).
    let mut qr = Value::Null;
    for _ in 0..200 {
        qr = app
            .get("/api/v1/events/mmdn/attendees", Some(&token))
            .await
            .json()["items"][0]["qr_code"]
            .clone();
        if !qr.is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    app.post(
        "/api/v1/events/mmdn/checkins",
        Some(&token),
        &json!({"qr_code": qr}),
    )
    .await
    .assert_status(201);

    assert_eq!(kinds(&app).await.last().unwrap(), &kind("checkin.created"));
    let history = app
        .get(&format!("/api/v1/registrations/{id}/history"), Some(&token))
        .await;
    history.assert_status(200);
    let actions: Vec<Value> = history
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].clone())
        .collect();
    assert_eq!(actions, [json!("created"), json!("checked_in")]);
}

#[tokio::test]
async fn a_commit_in_one_instance_wakes_the_consumers_of_another() {
    let db = TestDb::new().await;
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let one = Signals::new();
    let other = Signals::new();
    tokio::spawn(one.clone().run(db.url.clone(), stopping.clone()));
    tokio::spawn(other.clone().run(db.url.clone(), stopping));
    let mut woken = other.subscribe();
    let mut own = one.subscribe();
    // Both are listening once a notification from each reaches the other.
    let listening = async {
        loop {
            one.committed();
            if tokio::time::timeout(Duration::from_millis(200), woken.changed())
                .await
                .is_ok()
            {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), listening)
        .await
        .expect("the other instance heard of the commit");
    own.mark_unchanged();

    other.committed();
    tokio::time::timeout(Duration::from_secs(5), own.changed())
        .await
        .expect("and this one of the other's")
        .unwrap();
    stop.send_replace(true);
}

/// Many participants registered, some waiting, with statistics from before them: a batch of
/// their `registration.created` changes reads each one's own changes, not every waitlisted
/// and confirmed change of the log.
#[tokio::test]
async fn mails_for_a_batch_of_new_registrations_read_their_own_changes_whatever_the_statistics() {
    let app = spawn_app().await;
    let token = app.admin().await.access;
    let event = id_of(&app.event(&token, "mmdn", json!({})).await);
    let client = app.db.client().await;
    client
        .batch_execute("ALTER TABLE changes SET (autovacuum_enabled = false)")
        .await
        .unwrap();
    programme_changes(&client, &event, 800).await;
    // 5,000 earlier registrations and 300 new ones (the registrations' statistics are
    // current), each created and waitlisted in one transaction as the registering function
    // writes them.
    crate::helpers::bulk_registrations(&client, &event, "m", 5300).await;
    client
        .batch_execute(&format!(
            "ANALYZE registrations; \
             INSERT INTO changes (event_id, registration_id, kind, actor) \
             SELECT '{event}', r.id, k.kind, 'participant' \
             FROM registrations r \
             CROSS JOIN (VALUES ('registration.created'), ('registration.waitlisted')) AS k(kind) \
             WHERE r.event_id = '{event}'"
        ))
        .await
        .unwrap();
    let batch: Vec<i64> = column(
        &client,
        "SELECT id FROM changes WHERE kind = 'registration.created' ORDER BY id DESC LIMIT 300",
        &[],
    )
    .await;
    let ids = format!(
        "'{{{}}}'::bigint[]",
        batch
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    );

    let plan = explained(
        &client,
        &registrar::notifications::email::QUEUE_MAILS.replace("$1", &ids),
    )
    .await;
    assert_reads_few(&plan);
}
