//! The personal-data lifecycle: export, erasure by the participant and by organisers, the
//! event's erasure with its dry run, and the retention job.

use std::time::{Duration, Instant};

use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde_json::{Value, json};

use crate::helpers::{TestApp, Tokens, registration_body, spawn_app, spawn_app_with};
use registrar::privacy::retention;

/// The person whose data is erased: details nobody else in the tests has.
const NAME: &str = "Зинаида Прокофьевна Эрасова";
const EMAIL: &str = "zinaida.erasova@example.org";
const PHONE: &str = "+7 921 555-01-23";
const ORGANISATION: &str = "ООО «Кольская верфь Эрасовых»";

/// A published event `slug` with a session of 10 seats (and a webhook endpoint, so that
/// messages with the participants' details are made); returns the admin and the session.
async fn event(app: &TestApp, slug: &str) -> (Tokens, String) {
    let admin = app.admin().await;
    app.event(&admin.access, slug, json!({})).await;
    // TEST-NET-3: never routed; the messages are stored and their delivery fails.
    app.post(
        &format!("/api/v1/events/{slug}/webhooks"),
        Some(&admin.access),
        &json!({"url": "https://203.0.113.10/hooks/crm"}),
    )
    .await
    .assert_status(201);
    let session = app
        .session(&admin.access, slug, json!({"capacity": 10}))
        .await;
    (admin, session["id"].as_str().unwrap().to_owned())
}

/// Registers the person (`NAME`, `EMAIL`, `PHONE`) for `session`: (id, manage token).
async fn register_person(app: &TestApp, slug: &str, session: &str) -> (String, String) {
    let mut body = registration_body(EMAIL, &[session]);
    crate::helpers::merge(
        &mut body,
        json!({"full_name": NAME, "phone": PHONE, "organisation": ORGANISATION,
               "city": "Полярные Зори"}),
    );
    // With an Idempotency-Key: its record holds the registration too.
    let answer = app
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/events/{slug}/registrations"),
        )
        .header("Idempotency-Key", "zinaida-1")
        .json(&body)
        .send()
        .await;
    answer.assert_status(201);
    let body = answer.json();
    (
        body["id"].as_str().unwrap().to_owned(),
        body["manage_token"].as_str().unwrap().to_owned(),
    )
}

/// Someone else, whose data stays.
async fn register_other(app: &TestApp, slug: &str, session: &str, email: &str) -> String {
    let answer = app.register(slug, email, &[session]).await;
    answer.assert_status(201);
    answer.json()["id"].as_str().unwrap().to_owned()
}

/// Waits for `done`. Generously: consumers and the feed read only transactions older than
/// every running one in the whole server, which other tests' work holds back at times.
async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Checks the registration in at the event's entrance, with its badge's QR code from the
/// attendee feed.
async fn check_in(app: &TestApp, token: &str, slug: &str, id: &str) {
    let mut qr = None;
    wait_for("the attendee feed", async || {
        let feed = app
            .get(
                &format!("/api/v1/events/{slug}/attendees?limit=1000"),
                Some(token),
            )
            .await
            .json();
        qr = feed["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["registration_id"] == id)
            .map(|a| a["qr_code"].as_str().unwrap().to_owned());
        qr.is_some()
    })
    .await;
    let answer = app
        .post(
            &format!("/api/v1/events/{slug}/checkins"),
            Some(token),
            &json!({"qr_code": qr.unwrap()}),
        )
        .await;
    assert!(answer.status.is_success(), "{}", answer.text);
}

/// Waits until the change log's consumers (webhooks, email) have handled every change, so
/// that whatever they make of the person's data is stored before the check.
async fn consumers_caught_up(app: &TestApp) {
    let client = app.db.client().await;
    wait_for("the change log's consumers", async || {
        let row = client
            .query_one(
                "SELECT count(*) FROM changes c, change_consumers k \
                 WHERE (c.xid, c.id) > (k.last_xid, k.last_id)",
                &[],
            )
            .await
            .unwrap();
        row.get::<_, i64>(0) == 0
    })
    .await;
}

/// Every place in the database where one of `needles` occurs: each text-like column of each
/// table (as listed by information_schema), searched case-insensitively.
async fn found_anywhere(app: &TestApp, needles: &[&str]) -> Vec<String> {
    let client = app.db.client().await;
    let columns = client
        .query(
            "SELECT c.table_name::text, c.column_name::text FROM information_schema.columns c \
             JOIN information_schema.tables t \
               ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
             WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE' \
               AND (c.data_type IN ('text', 'character varying', 'character', 'json', 'jsonb') \
                    OR c.data_type = 'ARRAY' OR c.data_type = 'USER-DEFINED') \
             ORDER BY 1, 2",
            &[],
        )
        .await
        .unwrap();
    assert!(
        columns.len() > 40,
        "too few columns searched: {}",
        columns.len()
    );
    let mut found = Vec::new();
    for column in columns {
        let (table, name): (String, String) = (column.get(0), column.get(1));
        for needle in needles {
            let count: i64 = client
                .query_one(
                    &format!(
                        "SELECT count(*) FROM \"{table}\" WHERE strpos(lower(\"{name}\"::text), lower($1)) > 0"
                    ),
                    &[needle],
                )
                .await
                .unwrap()
                .get(0);
            if count > 0 {
                found.push(format!("{table}.{name}: {needle} ({count} rows)"));
            }
        }
    }
    found
}

fn person() -> [&'static str; 4] {
    [NAME, EMAIL, PHONE, ORGANISATION]
}

/// Moves the event into the past: its last day ended `days_ago` days ago.
async fn end_event(app: &TestApp, slug: &str, days_ago: i32) {
    app.db
        .client()
        .await
        .execute(
            "UPDATE events SET starts_on = current_date - $2::int - 1, \
                               ends_on = current_date - $2::int WHERE slug = $1",
            &[&slug, &days_ago],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn the_export_holds_everything_stored_about_the_participant() {
    let app = spawn_app().await;
    let (admin, session) = event(&app, "mmdn").await;
    let (id, token) = register_person(&app, "mmdn", &session).await;
    let other = register_other(&app, "mmdn", &session, "other@example.org").await;
    check_in(&app, &admin.access, "mmdn", &id).await;
    consumers_caught_up(&app).await;

    let answer = app
        .get(&format!("/api/v1/registrations/{id}/export"), Some(&token))
        .await;
    answer.assert_status(200);
    let export = answer.json();
    let r = &export["registration"];
    assert_eq!(r["id"], id.as_str());
    assert_eq!(r["full_name"], NAME);
    assert_eq!(r["email"], EMAIL);
    assert_eq!(r["phone"], PHONE);
    assert_eq!(r["organisation"], ORGANISATION);
    assert_eq!(r["city"], "Полярные Зори");
    assert_eq!(r["erased_at"], Value::Null);
    assert_eq!(r["sessions"][0]["session_id"], session.as_str());
    assert_eq!(r["sessions"][0]["status"], "confirmed");
    assert_eq!(export["event"]["slug"], "mmdn");
    assert_eq!(export["event"]["personal_data_retention_days"], 90);
    // 90 days after the day after the last day (2027-04-24), at midnight in Moscow.
    assert_eq!(export["event"]["erase_after"], "2027-07-23T21:00:00Z");
    let actions: Vec<&str> = export["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["created", "confirmed", "checked_in"]);
    assert_eq!(export["checkins"].as_array().unwrap().len(), 1);
    assert_eq!(export["checkins"][0]["session_id"], Value::Null);
    let mails: Vec<&str> = export["emails"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["kind"].as_str().unwrap())
        .collect();
    assert_eq!(mails, ["registered"]);
    let messages: Vec<&str> = export["webhook_messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        messages,
        [
            "registration.created",
            "registration.confirmed",
            "checkin.created"
        ]
    );
    // Nothing of anyone else.
    assert!(!answer.text.contains(&other), "{}", answer.text);

    // Organisers export it too; another participant's token opens nothing.
    let by_organiser = app
        .get(
            &format!("/api/v1/registrations/{id}/export"),
            Some(&admin.access),
        )
        .await;
    by_organiser.assert_status(200);
    assert_eq!(by_organiser.json()["registration"]["email"], EMAIL);
    let mut body = registration_body("third@example.org", &[]);
    crate::helpers::merge(&mut body, json!({"full_name": "Третий"}));
    let third = app
        .post("/api/v1/events/mmdn/registrations", None, &body)
        .await
        .json();
    app.get(
        &format!("/api/v1/registrations/{id}/export"),
        third["manage_token"].as_str(),
    )
    .await
    .assert_problem(404, "not_found");
}

#[tokio::test]
async fn a_participant_erases_their_data_and_nothing_of_it_remains_anywhere() {
    let app = spawn_app().await;
    let (admin, session) = event(&app, "mmdn").await;
    let (id, token) = register_person(&app, "mmdn", &session).await;
    let other = register_other(&app, "mmdn", &session, "other@example.org").await;
    consumers_caught_up(&app).await;
    assert!(
        !found_anywhere(&app, &person()).await.is_empty(),
        "the search finds the person before the erasure"
    );

    let answer = app
        .post(
            &format!("/api/v1/registrations/{id}/erase"),
            Some(&token),
            &json!({}),
        )
        .await;
    answer.assert_status(200);
    let report = answer.json();
    assert_eq!(report["dry_run"], false);
    assert_eq!(report["registration_ids"], json!([id]));
    assert_eq!(report["tables"]["registrations"], 1);
    assert_eq!(report["tables"]["changes"], 1);
    assert!(
        report["tables"]["webhook_deliveries"].as_i64().unwrap() >= 2,
        "{report}"
    );

    // The manage token opens nothing any more.
    app.get(&format!("/api/v1/registrations/{id}"), Some(&token))
        .await
        .assert_problem(401, "invalid_token");
    app.post(
        &format!("/api/v1/registrations/{id}/erase"),
        Some(&token),
        &json!({}),
    )
    .await
    .assert_problem(401, "invalid_token");

    // Before the event, the registration is cancelled: its seat is free again.
    let view = app
        .get(&format!("/api/v1/registrations/{id}"), Some(&admin.access))
        .await
        .json();
    assert_eq!(view["status"], "cancelled");
    assert_eq!(view["full_name"], "—");
    assert_eq!(view["email"], format!("erased-{id}@erased.invalid"));
    assert_eq!(view["phone"], Value::Null);
    assert_eq!(view["organisation"], Value::Null);
    assert!(view["erased_at"].is_string());
    app.patch(
        &format!("/api/v1/registrations/{id}"),
        Some(&admin.access),
        &json!({"full_name": NAME}),
    )
    .await
    .assert_problem(409, "registration_erased");

    let history = app
        .get(
            &format!("/api/v1/registrations/{id}/history"),
            Some(&admin.access),
        )
        .await
        .json();
    let last = history.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["action"], "erased");
    assert_eq!(last["actor"], "participant");
    assert_eq!(last["details"], json!({"reason": "participant_request"}));

    // What the consumers make of the erasure comes in too, without the person, and no mail
    // is queued for them (the cancellation is not mailed to the erased address).
    consumers_caught_up(&app).await;
    let queued: i64 = app
        .db
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM email_messages \
             WHERE registration_id = $1::text::uuid AND status = 'queued'",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(queued, 0);
    let found = found_anywhere(&app, &person()).await;
    assert!(found.is_empty(), "personal data left: {found:#?}");
    // The other participant is untouched.
    let kept = app
        .get(
            &format!("/api/v1/registrations/{other}"),
            Some(&admin.access),
        )
        .await
        .json();
    assert_eq!(kept["full_name"], "Анна Сергеевна Иванова");
    assert_eq!(kept["status"], "active");
    // And nothing comes back through the feed, the CSV or the list.
    for path in [
        "/api/v1/events/mmdn/attendees?limit=1000",
        "/api/v1/events/mmdn/attendees.csv",
        "/api/v1/events/mmdn/registrations",
    ] {
        let answer = app.get(path, Some(&admin.access)).await;
        answer.assert_status(200);
        for needle in person() {
            assert!(!answer.text.contains(needle), "{path}: {}", answer.text);
        }
    }
}

#[tokio::test]
async fn an_organiser_erases_after_the_event_and_every_figure_stays() {
    let app = spawn_app_with(|config| {
        config.resend_rate_limit = 10;
        config.resend_email_limit = 10;
    })
    .await;
    let (admin, session) = event(&app, "mmdn").await;
    let (id, _) = register_person(&app, "mmdn", &session).await;
    let other = register_other(&app, "mmdn", &session, "other@example.org").await;
    // The link is asked for again: the limit on that is kept per digest of the address.
    app.post(
        "/api/v1/events/mmdn/registrations/resend",
        None,
        &json!({"email": EMAIL}),
    )
    .await
    .assert_status(202);
    let address_limits = async || -> i64 {
        app.db
            .client()
            .await
            .query_one(
                "SELECT count(*) FROM rate_limits WHERE bucket = 'resend-address'",
                &[],
            )
            .await
            .unwrap()
            .get(0)
    };
    assert_eq!(address_limits().await, 1);
    check_in(&app, &admin.access, "mmdn", &id).await;
    check_in(&app, &admin.access, "mmdn", &other).await;
    end_event(&app, "mmdn", 3).await;
    consumers_caught_up(&app).await;
    let figures = async || {
        let stats = app
            .get("/api/v1/events/mmdn/stats", Some(&admin.access))
            .await
            .json();
        let counts = app
            .get(
                &format!("/api/v1/events/mmdn/sessions/{session}/counts"),
                None,
            )
            .await
            .json();
        (stats, counts)
    };
    let before = figures().await;
    assert_eq!(before.0["checked_in"], 2, "{:?}", before.0);
    assert_eq!(before.0["registered"], 2, "{:?}", before.0);
    // A badge printer that has read the whole feed: what it reads next.
    let feed = async |since: Option<&str>| {
        let path = match since {
            Some(since) => format!("/api/v1/events/mmdn/attendees?since={since}&limit=1000"),
            None => "/api/v1/events/mmdn/attendees?limit=1000".to_owned(),
        };
        app.get(&path, Some(&admin.access)).await
    };
    let read = feed(None).await.json();
    assert!(
        read["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["registration_id"] == id)
    );
    let cursor = read["next_cursor"].as_str().unwrap().to_owned();

    let answer = app
        .post(
            &format!("/api/v1/registrations/{id}/erase"),
            Some(&admin.access),
            &json!({}),
        )
        .await;
    answer.assert_status(200);
    assert_eq!(answer.json()["tables"]["rate_limits"], 1);
    assert_eq!(address_limits().await, 0);
    consumers_caught_up(&app).await;

    assert_eq!(figures().await, before);
    let view = app
        .get(&format!("/api/v1/registrations/{id}"), Some(&admin.access))
        .await
        .json();
    // After the event nothing is cancelled: the registration counts as it did.
    assert_eq!(view["status"], "active");
    assert_eq!(view["sessions"][0]["status"], "confirmed");
    let history = app
        .get(
            &format!("/api/v1/registrations/{id}/history"),
            Some(&admin.access),
        )
        .await
        .json();
    let last = history.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["action"], "erased");
    assert_eq!(last["actor"], "organiser");
    let found = found_anywhere(&app, &person()).await;
    assert!(found.is_empty(), "personal data left: {found:#?}");
    // The printer is told of the change, and reads only the erased placeholder; the
    // organisers' spreadsheet lists the registration (still active) without the person.
    let mut next = Value::Null;
    wait_for("the erasure in the feed", async || {
        let answer = feed(Some(&cursor)).await;
        for needle in person() {
            assert!(!answer.text.contains(needle), "{}", answer.text);
        }
        next = answer.json();
        next["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["registration_id"] == id)
    })
    .await;
    let entry = next["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["registration_id"] == id)
        .unwrap()
        .clone();
    assert_eq!(entry["full_name"], "—", "{entry}");
    let csv = app
        .get("/api/v1/events/mmdn/attendees.csv", Some(&admin.access))
        .await;
    csv.assert_status(200);
    assert!(
        csv.text.contains(&format!("erased-{id}@erased.invalid")),
        "{}",
        csv.text
    );
    for needle in person() {
        assert!(!csv.text.contains(needle), "{}", csv.text);
    }

    // Erasing again changes nothing.
    let again = app
        .post(
            &format!("/api/v1/registrations/{id}/erase"),
            Some(&admin.access),
            &json!({}),
        )
        .await
        .json();
    assert_eq!(again["registration_ids"], json!([]));
    assert_eq!(again["tables"]["changes"], 0);
}

/// A fingerprint of every table's content.
async fn fingerprint(app: &TestApp) -> Vec<(String, String)> {
    let client = app.db.client().await;
    let tables = client
        .query(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let mut prints = Vec::new();
    for table in tables {
        let name: String = table.get(0);
        // The webhook worker keeps trying its deliveries meanwhile (their receiver never
        // answers): of those tables, what an erasure would change.
        let rows = match name.as_str() {
            "webhook_deliveries" => "SELECT id, payload FROM webhook_deliveries",
            "webhook_attempts" => {
                "SELECT id, response_excerpt FROM webhook_attempts \
                                   WHERE response_excerpt IS NOT NULL"
            }
            _ => "",
        };
        let rows = if rows.is_empty() {
            format!("SELECT * FROM \"{name}\"")
        } else {
            rows.to_owned()
        };
        let print: Option<String> = client
            .query_one(
                &format!("SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM ({rows}) t"),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        prints.push((name, print.unwrap_or_default()));
    }
    prints
}

#[tokio::test]
async fn the_events_erasure_has_a_dry_run_that_stores_nothing() {
    let app = spawn_app().await;
    let (admin, session) = event(&app, "mmdn").await;
    let (id, _) = register_person(&app, "mmdn", &session).await;
    let other = register_other(&app, "mmdn", &session, "other@example.org").await;
    consumers_caught_up(&app).await;

    // Not before the event is over.
    app.post(
        "/api/v1/events/mmdn/personal-data/erase",
        Some(&admin.access),
        &json!({"dry_run": true}),
    )
    .await
    .assert_problem(409, "event_not_over");
    let missing = app
        .post(
            "/api/v1/events/mmdn/personal-data/erase",
            Some(&admin.access),
            &json!({}),
        )
        .await
        .assert_problem(422, "invalid_body");
    assert_eq!(missing["errors"][0]["field"], "dry_run");

    end_event(&app, "mmdn", 1).await;
    consumers_caught_up(&app).await;
    let before = fingerprint(&app).await;
    let dry = app
        .post(
            "/api/v1/events/mmdn/personal-data/erase",
            Some(&admin.access),
            &json!({"dry_run": true}),
        )
        .await;
    dry.assert_status(200);
    let dry = dry.json();
    assert_eq!(dry["dry_run"], true);
    let mut ids: Vec<String> = vec![id.clone(), other.clone()];
    ids.sort();
    assert_eq!(dry["registration_ids"], json!(ids));
    assert_eq!(dry["tables"]["registrations"], 2);
    assert_eq!(
        fingerprint(&app).await,
        before,
        "the dry run changed something"
    );
    assert!(!found_anywhere(&app, &person()).await.is_empty());

    let real = app
        .post(
            "/api/v1/events/mmdn/personal-data/erase",
            Some(&admin.access),
            &json!({"dry_run": false}),
        )
        .await;
    real.assert_status(200);
    let real = real.json();
    assert_eq!(real["dry_run"], false);
    assert_eq!(real["registration_ids"], dry["registration_ids"]);
    assert_eq!(real["tables"], dry["tables"]);
    consumers_caught_up(&app).await;
    let found = found_anywhere(&app, &person()).await;
    assert!(found.is_empty(), "personal data left: {found:#?}");
}

async fn connect(app: &TestApp) -> AsyncPgConnection {
    AsyncPgConnection::establish(&app.db.url).await.unwrap()
}

async fn erased_ids(app: &TestApp) -> Vec<String> {
    app.db
        .client()
        .await
        .query(
            "SELECT id::text FROM registrations WHERE erased_at IS NOT NULL ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// Runs retention rounds until exactly `due` (sorted) are erased, and never any other. A row
/// locked when a round came by (the service mailing the participant, say) is left to a later
/// round.
async fn erased_in_the_end(app: &TestApp, conn: &mut AsyncPgConnection, due: &[String]) {
    let started = Instant::now();
    loop {
        let erased = erased_ids(app).await;
        assert!(erased.iter().all(|id| due.contains(id)), "{erased:?}");
        if erased == due {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{erased:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        retention::round(conn).await.unwrap();
    }
}

#[tokio::test]
async fn the_retention_job_erases_only_events_past_their_retention() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    // Ended 5 days ago, kept 3 days: due. Ended 5 days ago, kept 30: not yet. Ended
    // yesterday, kept 0 days: due (the day after the last one is over). Still to come: not.
    let mut due = Vec::new();
    let mut kept = Vec::new();
    for (slug, retention, ended, is_due) in [
        ("past", 3, Some(5), true),
        ("kept", 30, Some(5), false),
        ("zero", 0, Some(1), true),
        ("coming", 0, None, false),
    ] {
        app.event(
            &admin.access,
            slug,
            json!({"personal_data_retention_days": retention}),
        )
        .await;
        let answer = app
            .register(slug, &format!("{slug}@example.org"), &[])
            .await;
        answer.assert_status(201);
        let id = answer.json()["id"].as_str().unwrap().to_owned();
        if let Some(days) = ended {
            end_event(&app, slug, days).await;
        }
        if is_due { due.push(id) } else { kept.push(id) }
    }
    due.sort();

    let mut conn = connect(&app).await;
    let round = retention::round(&mut conn).await.unwrap();
    assert!(round.ran);
    // The service's own job may have run meanwhile: what matters is what is erased.
    erased_in_the_end(&app, &mut conn, &due).await;
    let again = retention::round(&mut conn).await.unwrap();
    assert_eq!(again.erased, 0);

    let history = app
        .get(
            &format!("/api/v1/registrations/{}/history", due[0]),
            Some(&admin.access),
        )
        .await
        .json();
    let last = history.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["action"], "erased");
    assert_eq!(last["actor"], "system");
    assert_eq!(last["details"], json!({"reason": "retention"}));

    // The setting is validated.
    let answer = app
        .patch(
            "/api/v1/events/kept",
            Some(&admin.access),
            &json!({"personal_data_retention_days": 4000}),
        )
        .await
        .assert_problem(422, "validation_failed");
    assert_eq!(answer["errors"][0]["field"], "personal_data_retention_days");
}

#[tokio::test]
async fn a_second_instance_does_not_run_the_retention_job_at_the_same_time() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    app.event(
        &admin.access,
        "past",
        json!({"personal_data_retention_days": 0}),
    )
    .await;
    let mut ids = Vec::new();
    for n in 0..20 {
        let answer = app
            .register("past", &format!("p{n}@example.org"), &[])
            .await;
        answer.assert_status(201);
        ids.push(answer.json()["id"].as_str().unwrap().to_owned());
    }
    ids.sort();
    end_event(&app, "past", 2).await;

    // While one instance holds the job's lock, another's round does nothing.
    let holder = app.db.client().await;
    holder
        .execute("SELECT pg_advisory_lock($1)", &[&retention::LOCK])
        .await
        .unwrap();
    let mut conn = connect(&app).await;
    let skipped = retention::round(&mut conn).await.unwrap();
    assert!(!skipped.ran);
    assert_eq!(skipped.erased, 0);
    assert!(erased_ids(&app).await.is_empty());
    holder
        .execute("SELECT pg_advisory_unlock($1)", &[&retention::LOCK])
        .await
        .unwrap();

    // Two instances at once: each registration is erased once.
    let mut other = connect(&app).await;
    let (a, b) = tokio::join!(retention::round(&mut conn), retention::round(&mut other));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a.erased + b.erased <= ids.len(), "{a:?} {b:?}");
    erased_in_the_end(&app, &mut conn, &ids).await;
    let erasures: Vec<(String, i64)> = app
        .db
        .client()
        .await
        .query(
            "SELECT registration_id::text, count(*) FROM changes \
             WHERE kind = 'registration.erased' GROUP BY 1 ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(
        erasures,
        ids.iter().map(|id| (id.clone(), 1)).collect::<Vec<_>>()
    );
}

/// An answer to a question marked personal, only the erased person gave.
const ADDRESS: &str = "Улица Тестовая 7";
/// An answer to an email question, not marked personal: a contact all the same.
const WORK_EMAIL: &str = "z.erasova.work@example.net";

/// The form of `slug`: a personal question, an email question, and two that are not personal.
async fn questions(app: &TestApp, token: &str, slug: &str) {
    for question in [
        json!({"key": "address", "type": "text", "personal": true,
               "label": {"ru": "Адрес для пропуска", "en": "Address for the pass"}}),
        json!({"key": "work_email", "type": "email",
               "label": {"ru": "Рабочая почта", "en": "Work email"}}),
        json!({"key": "town", "type": "text", "label": {"ru": "Город", "en": "Town"}}),
        json!({"key": "transfer", "type": "yes_no",
               "label": {"ru": "Нужен трансфер", "en": "Transfer needed"}}),
    ] {
        app.post(
            &format!("/api/v1/events/{slug}/questions"),
            Some(token),
            &question,
        )
        .await
        .assert_status(201);
    }
}

/// How many registrations of the event gave each answer to the non-personal questions.
async fn answer_figures(app: &TestApp) -> Vec<(String, String, i64)> {
    app.db
        .client()
        .await
        .query(
            "SELECT a.key, a.value::text, count(*) FROM registrations r, jsonb_each(r.answers) a \
             WHERE a.key IN ('town', 'transfer') GROUP BY 1, 2 ORDER BY 1, 2",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect()
}

#[tokio::test]
async fn personal_answers_are_erased_and_the_others_stay_for_the_figures() {
    let app = spawn_app().await;
    let (admin, session) = event(&app, "mmdn").await;
    questions(&app, &admin.access, "mmdn").await;
    let mut body = registration_body(EMAIL, &[&session]);
    crate::helpers::merge(
        &mut body,
        json!({"full_name": NAME, "phone": PHONE, "organisation": ORGANISATION,
               "answers": {"address": ADDRESS, "work_email": WORK_EMAIL,
                           "town": "Апатиты", "transfer": true}}),
    );
    let answer = app
        .post("/api/v1/events/mmdn/registrations", None, &body)
        .await;
    answer.assert_status(201);
    let id = answer.json()["id"].as_str().unwrap().to_owned();
    let token = answer.json()["manage_token"].as_str().unwrap().to_owned();
    let mut body = registration_body("other@example.org", &[&session]);
    crate::helpers::merge(
        &mut body,
        json!({"answers": {"address": "Проспект Ленина 1", "town": "Апатиты",
                           "transfer": false}}),
    );
    let other = app
        .post("/api/v1/events/mmdn/registrations", None, &body)
        .await;
    other.assert_status(201);
    let other = other.json()["id"].as_str().unwrap().to_owned();

    // The export has the answers with their questions, and the consent with its text.
    let export = app
        .get(&format!("/api/v1/registrations/{id}/export"), Some(&token))
        .await;
    export.assert_status(200);
    let export = export.json();
    let answers: Vec<(&str, &str, bool, Value)> = export["answers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["key"].as_str().unwrap(),
                a["question"]["ru"].as_str().unwrap(),
                a["personal"].as_bool().unwrap(),
                a["value"].clone(),
            )
        })
        .collect();
    assert_eq!(
        answers,
        [
            ("address", "Адрес для пропуска", true, json!(ADDRESS)),
            ("work_email", "Рабочая почта", true, json!(WORK_EMAIL)),
            ("town", "Город", false, json!("Апатиты")),
            ("transfer", "Нужен трансфер", false, json!(true)),
        ]
    );
    let consent = &export["registration"]["consents"][0];
    assert_eq!(consent["key"], "personal_data");
    assert_eq!(consent["version"], 1);
    assert!(
        consent["text"]["ru"]
            .as_str()
            .unwrap()
            .contains("персональных данных"),
        "{consent}"
    );
    assert!(consent["accepted_at"].is_string());

    // A history entry that copied answers, values and all (as an edit of answers might).
    app.db
        .client()
        .await
        .execute(
            "INSERT INTO changes (event_id, registration_id, kind, actor, actor_id, details) \
             SELECT event_id, id, 'registration.changed', 'participant', id, \
                    jsonb_build_object('fields', '[\"answers\"]'::jsonb, 'answers', \
                        jsonb_build_object('address', jsonb_build_object('old', 'Улица Тестовая 5', \
                                                                         'new', $2::text), \
                                           'town', jsonb_build_object('old', 'Кировск', \
                                                                      'new', 'Апатиты'))) \
             FROM registrations WHERE id = $1::text::uuid",
            &[&id, &ADDRESS],
        )
        .await
        .unwrap();
    consumers_caught_up(&app).await;
    let needles = [NAME, EMAIL, PHONE, ORGANISATION, "Тестовая", WORK_EMAIL];
    assert!(
        found_anywhere(&app, &["Тестовая"]).await.len() >= 2,
        "the search finds the address in the registration and its history"
    );
    let figures = answer_figures(&app).await;
    assert_eq!(
        figures,
        [
            ("town".to_owned(), "\"Апатиты\"".to_owned(), 2),
            ("transfer".to_owned(), "false".to_owned(), 1),
            ("transfer".to_owned(), "true".to_owned(), 1),
        ]
    );

    // The event's dry run counts the answers it would remove: two of the person's, the
    // other's address.
    end_event(&app, "mmdn", 1).await;
    let dry = app
        .post(
            "/api/v1/events/mmdn/personal-data/erase",
            Some(&admin.access),
            &json!({"dry_run": true}),
        )
        .await;
    dry.assert_status(200);
    let dry = dry.json();
    assert_eq!(dry["tables"]["answers"], 3, "{dry}");
    // The entry, and the webhook message that copied it.
    assert_eq!(dry["tables"]["history_answers"], 2, "{dry}");
    assert!(!found_anywhere(&app, &[ADDRESS]).await.is_empty());

    let answer = app
        .post(
            &format!("/api/v1/registrations/{id}/erase"),
            Some(&admin.access),
            &json!({}),
        )
        .await;
    answer.assert_status(200);
    let report = answer.json();
    assert_eq!(report["tables"]["answers"], 2, "{report}");
    assert_eq!(report["tables"]["history_answers"], 2, "{report}");

    consumers_caught_up(&app).await;
    let found = found_anywhere(&app, &needles).await;
    assert!(found.is_empty(), "personal data left: {found:#?}");
    // The answers that are not personal stay, and so do every figure of them and the
    // record of the consent.
    let view = app
        .get(&format!("/api/v1/registrations/{id}"), Some(&admin.access))
        .await
        .json();
    assert_eq!(
        view["answers"],
        json!({"town": "Апатиты", "transfer": true})
    );
    assert_eq!(view["consents"][0]["key"], "personal_data");
    assert_eq!(view["consents"][0]["version"], 1);
    assert_eq!(answer_figures(&app).await, figures);
    let history = app
        .get(
            &format!("/api/v1/registrations/{id}/history"),
            Some(&admin.access),
        )
        .await
        .json();
    let copied = history
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["details"]["answers"].is_object())
        .unwrap()
        .clone();
    assert_eq!(
        copied["details"]["answers"],
        json!({"address": null, "town": {"old": "Кировск", "new": "Апатиты"}})
    );
    // The other participant's answers are theirs, untouched.
    let kept = app
        .get(
            &format!("/api/v1/registrations/{other}"),
            Some(&admin.access),
        )
        .await
        .json();
    assert_eq!(kept["answers"]["address"], "Проспект Ленина 1");
}

/// The retention round starts from the events past retention: with none, it reads no
/// registration (it used to walk them all in the order of their ids, looking for one).
#[tokio::test]
async fn a_retention_round_with_no_event_past_retention_reads_no_registration() {
    let app = spawn_app().await;
    let token = app.admin().await.access;
    let event = crate::registrations::id_of(&app.event(&token, "mmdn", json!({})).await);
    let client = app.db.client().await;
    crate::helpers::bulk_registrations(&client, &event, "r", 20000).await;
    client
        .batch_execute("ANALYZE registrations, events")
        .await
        .unwrap();

    let plan = crate::helpers::explained(&client, &retention::DUE.replace("$1", "500")).await;
    let read = crate::helpers::rows_scanned(&plan, "registrations");
    assert_eq!(read, 0, "{plan}");
}

/// Someone an organiser's spreadsheet names on a row that registers nobody.
const INVALID_NAME: &str = "Игнатий Невалидов";
const INVALID_PHONE: &str = "+7 911 555-77-66";

/// Imports into `slug` a list naming the person twice (the second time as a duplicate of
/// the first row) and someone else on a row that cannot be registered (no usable address),
/// and commits it: the import's id and the person's registration.
async fn import_the_person(app: &TestApp, token: &str, slug: &str) -> (String, String) {
    let csv = format!(
        "ФИО;Эл. почта;Телефон;Организация\r\n\
         {NAME};{EMAIL};{PHONE};{ORGANISATION}\r\n\
         {NAME} (повтор);{upper};{PHONE};\r\n\
         {INVALID_NAME};{INVALID_PHONE};{INVALID_PHONE};\r\n",
        upper = EMAIL.to_uppercase(),
    );
    let answer = app
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/events/{slug}/imports"),
        )
        .bearer(token)
        .body("text/csv", csv)
        .send()
        .await;
    answer.assert_status(201);
    let import = answer.json()["id"].as_str().unwrap().to_owned();
    app.post(
        &format!("/api/v1/imports/{import}/commit"),
        Some(token),
        &json!({}),
    )
    .await
    .assert_status(202);
    let mut view = Value::Null;
    wait_for("the import's commit", async || {
        view = app
            .get(&format!("/api/v1/imports/{import}"), Some(token))
            .await
            .json();
        view["status"] == "committed"
    })
    .await;
    let rows = view["rows"]["items"].as_array().unwrap();
    let statuses: Vec<&str> = rows.iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["created", "duplicate", "invalid"], "{view}");
    (
        import,
        rows[0]["registration_id"].as_str().unwrap().to_owned(),
    )
}

/// The import's rows as its organisers read them: (row, status, problems' fields).
async fn import_rows(app: &TestApp, token: &str, import: &str) -> Vec<(i64, String, Vec<String>)> {
    let view = app
        .get(&format!("/api/v1/imports/{import}"), Some(token))
        .await
        .json();
    view["rows"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let fields = r["problems"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["field"].as_str().unwrap().to_owned())
                .collect();
            (
                r["row"].as_i64().unwrap(),
                r["status"].as_str().unwrap().to_owned(),
                fields,
            )
        })
        .collect()
}

#[tokio::test]
async fn an_imported_person_is_exported_and_erased_with_every_row_about_them() {
    let app = spawn_app().await;
    let (admin, _) = event(&app, "mmdn").await;
    let (import, id) = import_the_person(&app, &admin.access, "mmdn").await;
    let rows_before = import_rows(&app, &admin.access, &import).await;
    consumers_caught_up(&app).await;
    for needle in person() {
        assert!(
            !found_anywhere(&app, &[needle]).await.is_empty(),
            "the search finds {needle} before the erasure"
        );
    }

    // The export lists the rows that read the person: the one that registered them and
    // the one found to be them again.
    let export = app
        .get(
            &format!("/api/v1/registrations/{id}/export"),
            Some(&admin.access),
        )
        .await;
    export.assert_status(200);
    let export = export.json();
    let rows: Vec<(i64, &str)> = export["import_rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["row"].as_i64().unwrap(),
                r["fields"]["full_name"].as_str().unwrap(),
            )
        })
        .collect();
    let again = format!("{NAME} (повтор)");
    assert_eq!(rows, [(2, NAME), (3, again.as_str())], "{export}");
    assert_eq!(export["import_rows"][0]["import_id"], import);

    let answer = app
        .post(
            &format!("/api/v1/registrations/{id}/erase"),
            Some(&admin.access),
            &json!({}),
        )
        .await;
    answer.assert_status(200);
    assert_eq!(answer.json()["tables"]["import_rows"], 2, "{}", answer.text);
    consumers_caught_up(&app).await;
    let found = found_anywhere(&app, &person()).await;
    assert!(found.is_empty(), "personal data left: {found:#?}");
    // The row that registered nobody is no one's registration: it stays until the event's
    // data is erased.
    assert!(!found_anywhere(&app, &[INVALID_NAME]).await.is_empty());

    end_event(&app, "mmdn", 1).await;
    let dry = app
        .post(
            "/api/v1/events/mmdn/personal-data/erase",
            Some(&admin.access),
            &json!({"dry_run": true}),
        )
        .await
        .json();
    assert_eq!(dry["tables"]["import_rows"], 1, "{dry}");
    assert!(!found_anywhere(&app, &[INVALID_NAME]).await.is_empty());
    let real = app
        .post(
            "/api/v1/events/mmdn/personal-data/erase",
            Some(&admin.access),
            &json!({"dry_run": false}),
        )
        .await
        .json();
    assert_eq!(real["tables"], dry["tables"]);
    let found = found_anywhere(&app, &[INVALID_NAME, INVALID_PHONE]).await;
    assert!(found.is_empty(), "personal data left: {found:#?}");
    // The import still reads: each row's number, outcome and the fields of its problems.
    assert_eq!(import_rows(&app, &admin.access, &import).await, rows_before);
}

#[tokio::test]
async fn the_retention_job_leaves_nothing_of_anyone_and_every_figure_stays() {
    let app = spawn_app().await;
    let (admin, session) = event(&app, "mmdn").await;
    app.patch(
        "/api/v1/events/mmdn",
        Some(&admin.access),
        &json!({"personal_data_retention_days": 3}),
    )
    .await
    .assert_status(200);
    // The person registers themselves; the organisers' list names someone else on a row
    // that registers nobody.
    let (id, _) = register_person(&app, "mmdn", &session).await;
    let csv =
        format!("ФИО;Эл. почта;Телефон\r\n{INVALID_NAME};{INVALID_PHONE};{INVALID_PHONE}\r\n");
    let import = app
        .call(reqwest::Method::POST, "/api/v1/events/mmdn/imports")
        .bearer(&admin.access)
        .body("text/csv", csv)
        .send()
        .await;
    import.assert_status(201);
    let other = register_other(&app, "mmdn", &session, "other@example.org").await;
    check_in(&app, &admin.access, "mmdn", &id).await;
    check_in(&app, &admin.access, "mmdn", &other).await;
    end_event(&app, "mmdn", 5).await;
    consumers_caught_up(&app).await;
    let figures = async || {
        let stats = app
            .get("/api/v1/events/mmdn/stats", Some(&admin.access))
            .await
            .json();
        let counts = app
            .get(
                &format!("/api/v1/events/mmdn/sessions/{session}/counts"),
                None,
            )
            .await
            .json();
        (stats, counts)
    };
    let before = figures().await;
    assert_eq!(before.0["checked_in"], 2, "{:?}", before.0);
    let everyone = [
        NAME,
        EMAIL,
        PHONE,
        ORGANISATION,
        INVALID_NAME,
        INVALID_PHONE,
    ];
    for needle in everyone {
        assert!(
            !found_anywhere(&app, &[needle]).await.is_empty(),
            "{needle}"
        );
    }

    let mut conn = connect(&app).await;
    let round = retention::round(&mut conn).await.unwrap();
    assert!(round.ran);
    consumers_caught_up(&app).await;
    // The service's own job may have run meanwhile: what matters is what is left.
    let mut due = vec![id, other];
    due.sort();
    erased_in_the_end(&app, &mut conn, &due).await;
    let found = found_anywhere(&app, &everyone).await;
    assert!(found.is_empty(), "personal data left: {found:#?}");
    assert!(
        found_anywhere(&app, &["other@example.org"])
            .await
            .is_empty(),
        "the other participant's address is left"
    );
    assert_eq!(figures().await, before);
    let again = retention::round(&mut conn).await.unwrap();
    assert_eq!((again.erased, again.import_rows), (0, 0));
}
