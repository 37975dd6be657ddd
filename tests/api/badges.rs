//! Badge printers and check-in desks: device keys, the feed, the export, the print queue,
//! QR codes and check-in.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{
    TestApp, Tokens, column, lock_wait, registration_body, spawn_app, spawn_app_with,
};

/// An admin, a published event `slug` with one 100-seat session.
async fn event_with_session(app: &TestApp, slug: &str) -> (Tokens, String) {
    let admin = app.admin().await;
    app.event(&admin.access, slug, json!({})).await;
    let session = app
        .session(&admin.access, slug, json!({"capacity": 100}))
        .await;
    (admin, session["id"].as_str().unwrap().to_owned())
}

async fn device_key(app: &TestApp, token: &str, event: &str, scopes: &[&str]) -> String {
    let answer = app
        .post(
            &format!("/api/v1/events/{event}/api-keys"),
            Some(token),
            &json!({"name": "Принтер бейджей, вход 1", "scopes": scopes}),
        )
        .await;
    answer.assert_status(201);
    let key = answer.json()["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("rgk_"), "{key}");
    key
}

/// Registers `email` for `session` and returns (registration id, manage token).
async fn registered(app: &TestApp, event: &str, email: &str, session: &str) -> (String, String) {
    let answer = app.register(event, email, &[session]).await;
    answer.assert_status(201);
    let body = answer.json();
    (
        body["id"].as_str().unwrap().to_owned(),
        body["manage_token"].as_str().unwrap().to_owned(),
    )
}

async fn feed(app: &TestApp, event: &str, key: &str, since: Option<&str>) -> Value {
    let path = match since {
        Some(since) => format!("/api/v1/events/{event}/attendees?since={since}&limit=1000"),
        None => format!("/api/v1/events/{event}/attendees?limit=1000"),
    };
    let answer = app.get(&path, Some(key)).await;
    answer.assert_status(200);
    answer.json()
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["registration_id"].as_str().unwrap().to_owned())
        .collect()
}

/// The first `n` records of the feed.
pub(crate) async fn everyone(app: &TestApp, event: &str, key: &str, n: usize) -> Vec<Value> {
    poll_until(app, event, key, None, |seen| seen.len() >= n)
        .await
        .0
}

/// Polls the feed from `since` until `done` holds for what came (the feed only returns
/// changes of transactions older than every running one, anywhere in the server).
async fn poll_until(
    app: &TestApp,
    event: &str,
    key: &str,
    since: Option<&str>,
    done: impl Fn(&[Value]) -> bool,
) -> (Vec<Value>, String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut cursor = since.map(str::to_owned);
    let mut seen = Vec::new();
    loop {
        let page = feed(app, event, key, cursor.as_deref()).await;
        seen.extend(page["items"].as_array().unwrap().iter().cloned());
        cursor = Some(page["next_cursor"].as_str().unwrap().to_owned());
        if done(&seen) {
            return (seen, cursor.unwrap());
        }
        assert!(
            Instant::now() < deadline,
            "the feed never delivered; got {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_device_key_reads_the_feed_of_its_own_event_only() {
    let app = spawn_app().await;
    let (admin, session) = event_with_session(&app, "a").await;
    app.event(&admin.access, "b", json!({})).await;
    let other = app.session(&admin.access, "b", json!({})).await;
    registered(&app, "a", "anna@example.org", &session).await;
    registered(
        &app,
        "b",
        "boris@example.org",
        other["id"].as_str().unwrap(),
    )
    .await;
    let key = device_key(&app, &admin.access, "a", &["attendees:read"]).await;

    let own = everyone(&app, "a", &key, 1).await;
    let foreign = app.get("/api/v1/events/b/attendees", Some(&key)).await;

    assert_eq!(own[0]["full_name"], "Анна Сергеевна Иванова");
    foreign.assert_problem(403, "forbidden");
    app.get("/api/v1/events/b/attendees.csv", Some(&key))
        .await
        .assert_problem(403, "forbidden");
    // A key is no organiser: it cannot list registrations, nor change the programme.
    app.get("/api/v1/events/a/registrations", Some(&key))
        .await
        .assert_problem(403, "forbidden");
    app.post(
        "/api/v1/events/a/venues",
        Some(&key),
        &json!({"name": "Зал"}),
    )
    .await
    .assert_problem(403, "forbidden");
}

#[tokio::test]
async fn a_device_key_of_another_event_does_not_see_a_draft_event() {
    let app = spawn_app().await;
    let (admin, _) = event_with_session(&app, "a").await;
    app.event(&admin.access, "draft", json!({"status": "draft"}))
        .await;
    let key = device_key(&app, &admin.access, "a", &["attendees:read"]).await;

    app.get("/api/v1/events/draft/attendees", Some(&key))
        .await
        .assert_problem(404, "not_found");
}

#[tokio::test]
async fn a_key_without_the_scope_is_refused() {
    let app = spawn_app().await;
    let (admin, session) = event_with_session(&app, "a").await;
    registered(&app, "a", "anna@example.org", &session).await;
    let reader = device_key(&app, &admin.access, "a", &["attendees:read"]).await;
    let qr = everyone(&app, "a", &reader, 1).await[0]["qr_code"].clone();

    app.post(
        "/api/v1/events/a/checkins",
        Some(&reader),
        &json!({"qr_code": qr}),
    )
    .await
    .assert_problem(403, "forbidden");
    app.post(
        "/api/v1/events/a/print-jobs/claim",
        Some(&reader),
        &json!({}),
    )
    .await
    .assert_problem(403, "forbidden");
    let desk = device_key(&app, &admin.access, "a", &["checkin:write"]).await;
    app.get("/api/v1/events/a/attendees", Some(&desk))
        .await
        .assert_problem(403, "forbidden");
    app.post(
        "/api/v1/events/a/checkins",
        Some(&desk),
        &json!({"qr_code": qr}),
    )
    .await
    .assert_status(201);
}

#[tokio::test]
async fn a_revoked_key_fails_at_once_and_keys_are_listed_without_the_secret() {
    let app = spawn_app().await;
    let (admin, _) = event_with_session(&app, "a").await;
    let key = device_key(&app, &admin.access, "a", &["attendees:read"]).await;
    app.get("/api/v1/events/a/attendees", Some(&key))
        .await
        .assert_status(200);
    let listed = app
        .get("/api/v1/events/a/api-keys", Some(&admin.access))
        .await
        .json();
    let entry = &listed["items"][0];
    assert!(
        entry.get("key").is_none() && entry.get("key_hash").is_none(),
        "{entry}"
    );
    assert_eq!(entry["key_prefix"], key[..12]);
    assert!(entry["last_used_at"].is_string(), "{entry}");
    let id = entry["id"].as_str().unwrap();

    app.delete(
        &format!("/api/v1/events/a/api-keys/{id}"),
        Some(&admin.access),
    )
    .await
    .assert_status(204);

    app.get("/api/v1/events/a/attendees", Some(&key))
        .await
        .assert_problem(401, "invalid_token");
    let listed = app
        .get("/api/v1/events/a/api-keys", Some(&admin.access))
        .await
        .json();
    assert!(listed["items"][0]["revoked_at"].is_string());
}

#[tokio::test]
async fn only_owners_and_editors_manage_keys() {
    let app = spawn_app().await;
    let (admin, _) = event_with_session(&app, "a").await;
    let (viewer_id, viewer) = app.organiser(&admin, "viewer@example.org").await;
    app.call(
        Method::PUT,
        &format!("/api/v1/events/a/members/{viewer_id}"),
    )
    .bearer(&admin.access)
    .json(&json!({"role": "viewer"}))
    .send()
    .await
    .assert_status(201);

    app.post(
        "/api/v1/events/a/api-keys",
        Some(&viewer.access),
        &json!({"name": "x", "scopes": ["attendees:read"]}),
    )
    .await
    .assert_problem(403, "forbidden");
    app.post(
        "/api/v1/events/a/api-keys",
        Some(&admin.access),
        &json!({"name": "x", "scopes": ["everything"]}),
    )
    .await
    .assert_problem(422, "invalid_body");
}

#[tokio::test]
async fn the_feed_never_misses_a_change_that_commits_out_of_order() {
    let app = spawn_app().await;
    let (admin, session) = event_with_session(&app, "a").await;
    let key = device_key(&app, &admin.access, "a", &["attendees:read"]).await;
    let (anna, _) = registered(&app, "a", "anna@example.org", &session).await;
    let (_, cursor) = poll_until(&app, "a", &key, None, |seen| seen.len() == 1).await;

    // A change to Anna starts first and stays open...
    let slow = app.db.client().await;
    slow.batch_execute("BEGIN").await.unwrap();
    slow.execute(
        "UPDATE registrations SET city = 'Кандалакша' WHERE id = $1::text::uuid",
        &[&anna],
    )
    .await
    .unwrap();
    // ...while Boris registers and commits, and a poll runs.
    let (boris, _) = registered(&app, "a", "boris@example.org", &session).await;
    let during = feed(&app, "a", &key, Some(&cursor)).await;
    assert!(
        !ids(&during).contains(&boris),
        "a later change must wait until every earlier transaction has finished"
    );
    assert_eq!(during["next_cursor"], cursor.as_str());
    slow.batch_execute("COMMIT").await.unwrap();

    let (seen, _) = poll_until(&app, "a", &key, Some(&cursor), |seen| seen.len() >= 2).await;
    let anna_record = seen
        .iter()
        .find(|a| a["registration_id"] == anna.as_str())
        .unwrap();
    assert_eq!(anna_record["city"], "Кандалакша");
    assert!(seen.iter().any(|a| a["registration_id"] == boris.as_str()));
}

#[tokio::test]
async fn cancelled_attendees_come_through_the_feed() {
    let app = spawn_app().await;
    let (admin, session) = event_with_session(&app, "a").await;
    let key = device_key(&app, &admin.access, "a", &["attendees:read"]).await;
    let (anna, token) = registered(&app, "a", "anna@example.org", &session).await;
    let (first, cursor) = poll_until(&app, "a", &key, None, |seen| seen.len() == 1).await;
    assert_eq!(first[0]["status"], "active");
    assert_eq!(first[0]["sessions"], json!([session]));

    app.delete(&format!("/api/v1/registrations/{anna}"), Some(&token))
        .await
        .assert_status(200);

    let (seen, _) = poll_until(&app, "a", &key, Some(&cursor), |seen| !seen.is_empty()).await;
    assert_eq!(seen[0]["registration_id"], anna.as_str());
    assert_eq!(seen[0]["status"], "cancelled");
    assert_eq!(seen[0]["sessions"], json!([]));
}

#[tokio::test]
async fn the_feed_pages_through_everyone_once() {
    let app = spawn_app().await;
    let (admin, session) = event_with_session(&app, "a").await;
    let key = device_key(&app, &admin.access, "a", &["attendees:read"]).await;
    for n in 0..7 {
        registered(&app, "a", &format!("p{n}@example.org"), &session).await;
    }

    let mut cursor: Option<String> = None;
    let mut all = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "got only {all:?}");
        let path = match &cursor {
            Some(c) => format!("/api/v1/events/a/attendees?limit=3&since={c}"),
            None => "/api/v1/events/a/attendees?limit=3".to_owned(),
        };
        let page = app.get(&path, Some(&key)).await.json();
        let got = ids(&page);
        cursor = Some(page["next_cursor"].as_str().unwrap().to_owned());
        if got.is_empty() && all.len() >= 7 {
            break;
        }
        all.extend(got);
    }
    let mut unique = all.clone();
    unique.sort();
    unique.dedup();
    assert_eq!((all.len(), unique.len()), (7, 7));
    app.get("/api/v1/events/a/attendees?limit=1001", Some(&key))
        .await
        .assert_problem(422, "validation_failed");
    app.get("/api/v1/events/a/attendees?since=bogus", Some(&key))
        .await
        .assert_problem(422, "validation_failed");
}

#[tokio::test]
async fn the_csv_export_neutralises_formulas_and_keeps_cyrillic() {
    let app = spawn_app().await;
    let (admin, session) = event_with_session(&app, "a").await;
    let mut body = registration_body("evil@example.org", &[&session]);
    body["full_name"] = json!("=HYPERLINK(\"http://x\",\"Ёлкин\")");
    body["organisation"] = json!("@Администрация города Мончегорска");
    body["phone"] = json!("+7 815 365-00-00");
    body["city"] = json!("\u{200b}\u{ff1d}HYPERLINK(\"http://x\")");
    app.post("/api/v1/events/a/registrations", None, &body)
        .await
        .assert_status(201);
    registered(&app, "a", "anna@example.org", &session).await;

    let answer = app
        .get(
            "/api/v1/events/a/attendees.csv?delimiter=semicolon&bom=true",
            Some(&admin.access),
        )
        .await;

    answer.assert_status(200);
    assert_eq!(
        answer.header("content-type"),
        Some("text/csv; charset=utf-8")
    );
    let text = &answer.text;
    assert!(text.starts_with('\u{feff}'), "no BOM");
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(b';')
        .from_reader(text.trim_start_matches('\u{feff}').as_bytes());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        &header[..4],
        ["registration_id", "full_name", "email", "phone"]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2);
    let evil = rows.iter().find(|r| &r[2] == "evil@example.org").unwrap();
    assert_eq!(&evil[1], "'=HYPERLINK(\"http://x\",\"Ёлкин\")");
    assert_eq!(&evil[3], "'+7 815 365-00-00");
    assert_eq!(&evil[4], "'@Администрация города Мончегорска");
    assert_eq!(&evil[6], "'\u{200b}\u{ff1d}HYPERLINK(\"http://x\")");
    let anna = rows.iter().find(|r| &r[2] == "anna@example.org").unwrap();
    assert_eq!(&anna[1], "Анна Сергеевна Иванова");
    assert_eq!(&anna[6], "Мончегорск");
    assert_eq!(
        &anna[9],
        "Социальное партнёрство. Социальное проектирование"
    );
}

#[tokio::test]
async fn devices_get_the_csv_without_contact_details() {
    let app = spawn_app().await;
    let (admin, session) = event_with_session(&app, "a").await;
    registered(&app, "a", "anna@example.org", &session).await;
    let key = device_key(&app, &admin.access, "a", &["attendees:read"]).await;

    let answer = app.get("/api/v1/events/a/attendees.csv", Some(&key)).await;

    answer.assert_status(200);
    let first_line = answer.text.lines().next().unwrap();
    assert!(
        first_line.starts_with("\"registration_id\",\"full_name\",\"organisation\""),
        "{first_line}"
    );
    assert!(!answer.text.contains("anna@example.org"));
}

async fn claim(app: &TestApp, key: &str, body: Value) -> Vec<Value> {
    let answer = app
        .post("/api/v1/events/a/print-jobs/claim", Some(key), &body)
        .await;
    answer.assert_status(200);
    answer.json()["jobs"].as_array().unwrap().clone()
}

fn job_registrations(jobs: &[Value]) -> Vec<String> {
    let mut ids: Vec<String> = jobs
        .iter()
        .map(|j| {
            j["attendee"]["registration_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn two_printers_claiming_at_once_get_disjoint_jobs() {
    let app = spawn_app().await;
    let (admin, session) = event_with_session(&app, "a").await;
    for n in 0..10 {
        registered(&app, "a", &format!("p{n}@example.org"), &session).await;
    }
    let first = device_key(&app, &admin.access, "a", &["badges:print"]).await;
    let second = device_key(&app, &admin.access, "a", &["badges:print"]).await;

    let (a, b) = tokio::join!(
        claim(&app, &first, json!({"batch_size": 6})),
        claim(&app, &second, json!({"batch_size": 6})),
    );

    let (a, b) = (job_registrations(&a), job_registrations(&b));
    assert!(
        a.iter().all(|id| !b.contains(id)),
        "{a:?} and {b:?} overlap"
    );
    assert_eq!(a.len() + b.len(), 10);
    assert!(a.len() <= 6 && b.len() <= 6);
    assert!(claim(&app, &first, json!({})).await.is_empty());
}

#[tokio::test]
async fn a_printed_badge_is_not_printed_again_and_done_marks_it() {
    let app = spawn_app().await;
    let (admin, session) = event_with_session(&app, "a").await;
    let (anna, _) = registered(&app, "a", "anna@example.org", &session).await;
    let printer = device_key(
        &app,
        &admin.access,
        "a",
        &["badges:print", "attendees:read"],
    )
    .await;
    let jobs = claim(
        &app,
        &printer,
        json!({"batch_size": 5, "lease_seconds": 60}),
    )
    .await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["reason"], "new");
    assert!(
        jobs[0]["attendee"]["qr_code"]
            .as_str()
            .unwrap()
            .starts_with("RG1.")
    );
    let job = jobs[0]["id"].as_str().unwrap();

    let done = app
        .post(
            &format!("/api/v1/events/a/print-jobs/{job}/done"),
            Some(&printer),
            &json!({}),
        )
        .await;

    done.assert_status(200);
    assert_eq!(done.json()["status"], "done");
    // Acknowledging twice is harmless; nothing is left to print.
    app.post(
        &format!("/api/v1/events/a/print-jobs/{job}/done"),
        Some(&printer),
        &json!({}),
    )
    .await
    .assert_status(200);
    assert!(claim(&app, &printer, json!({})).await.is_empty());
    let record = &everyone(&app, "a", &printer, 1).await[0];
    assert_eq!(record["registration_id"], anna.as_str());
    assert!(record["badge_printed_at"].is_string());
}

#[tokio::test]
async fn an_expired_lease_returns_the_job_to_the_queue() {
    let app = spawn_app().await;
    let (admin, session) = event_with_session(&app, "a").await;
    registered(&app, "a", "anna@example.org", &session).await;
    let slow = device_key(&app, &admin.access, "a", &["badges:print"]).await;
    let fast = device_key(&app, &admin.access, "a", &["badges:print"]).await;
    let jobs = claim(&app, &slow, json!({"lease_seconds": 30})).await;
    let job = jobs[0]["id"].as_str().unwrap().to_owned();
    assert!(
        claim(&app, &fast, json!({})).await.is_empty(),
        "the lease holds"
    );

    // The lease runs out.
    app.db
        .client()
        .await
        .execute(
            "UPDATE print_jobs SET lease_expires_at = now() - interval '1 second' WHERE id = $1::text::uuid",
            &[&job],
        )
        .await
        .unwrap();

    let again = claim(&app, &fast, json!({})).await;
    assert_eq!(again[0]["id"], job.as_str());
    assert_eq!(again[0]["claims"], 2);
    app.post(
        &format!("/api/v1/events/a/print-jobs/{job}/done"),
        Some(&slow),
        &json!({}),
    )
    .await
    .assert_problem(409, "lease_lost");
    app.post(
        &format!("/api/v1/events/a/print-jobs/{job}/done"),
        Some(&fast),
        &json!({}),
    )
    .await
    .assert_status(200);
}

#[tokio::test]
async fn reprints_come_on_request_and_when_a_printed_name_changes() {
    let app = spawn_app().await;
    let (admin, session) = event_with_session(&app, "a").await;
    let (anna, token) = registered(&app, "a", "anna@example.org", &session).await;
    let printer = device_key(&app, &admin.access, "a", &["badges:print"]).await;
    let job = claim(&app, &printer, json!({})).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.post(
        &format!("/api/v1/events/a/print-jobs/{job}/done"),
        Some(&printer),
        &json!({}),
    )
    .await
    .assert_status(200);

    // A change that is not on the badge queues nothing.
    app.patch(
        &format!("/api/v1/registrations/{anna}"),
        Some(&token),
        &json!({"phone": "+7 900 000-00-00"}),
    )
    .await
    .assert_status(200);
    assert!(claim(&app, &printer, json!({})).await.is_empty());
    app.patch(
        &format!("/api/v1/registrations/{anna}"),
        Some(&token),
        &json!({"full_name": "Анна Сергеевна Петрова"}),
    )
    .await
    .assert_status(200);
    let changed = claim(&app, &printer, json!({})).await;
    assert_eq!(changed[0]["reason"], "changed");
    assert_eq!(
        changed[0]["attendee"]["full_name"],
        "Анна Сергеевна Петрова"
    );

    let reprint = app
        .post(
            "/api/v1/events/a/print-jobs",
            Some(&admin.access),
            &json!({"registration_id": anna}),
        )
        .await;
    // The changed job is still open (claimed), so it is the one returned.
    reprint.assert_status(200);
    assert_eq!(reprint.json()["id"], changed[0]["id"]);
}

async fn scan(app: &TestApp, key: &str, body: Value) -> crate::helpers::Answer {
    app.post("/api/v1/events/a/checkins", Some(key), &body)
        .await
}

#[tokio::test]
async fn a_repeated_check_in_answers_with_the_original_time_and_counts_once() {
    let app = spawn_app().await;
    let (admin, session) = event_with_session(&app, "a").await;
    registered(&app, "a", "anna@example.org", &session).await;
    let desk = device_key(
        &app,
        &admin.access,
        "a",
        &["checkin:write", "attendees:read"],
    )
    .await;
    let qr = everyone(&app, "a", &desk, 1).await[0]["qr_code"].clone();

    let first = scan(&app, &desk, json!({"qr_code": qr})).await;
    let again = scan(&app, &desk, json!({"qr_code": qr})).await;

    first.assert_status(201);
    again.assert_status(200);
    assert_eq!(first.json()["checked_in_at"], again.json()["checked_in_at"]);
    assert_eq!(again.json()["first"], false);
    let stats = app
        .get("/api/v1/events/a/stats", Some(&admin.access))
        .await
        .json();
    assert_eq!(stats["checked_in"], 1);
    assert_eq!(stats["registered"], 1);
}

#[tokio::test]
async fn offline_scans_uploaded_twice_check_in_once_with_the_scan_time() {
    let app = spawn_app().await;
    let (admin, session) = event_with_session(&app, "a").await;
    registered(&app, "a", "anna@example.org", &session).await;
    registered(&app, "a", "boris@example.org", &session).await;
    let desk = device_key(
        &app,
        &admin.access,
        "a",
        &["checkin:write", "attendees:read"],
    )
    .await;
    let people = Value::Array(everyone(&app, "a", &desk, 2).await);
    let batch = json!({"scans": [
        {"qr_code": people[0]["qr_code"], "scanned_at": "2026-11-20T08:01:00Z", "client_nonce": "desk1-0001"},
        {"qr_code": people[1]["qr_code"], "scanned_at": "2026-11-20T08:02:00Z", "client_nonce": "desk1-0002"},
        {"qr_code": "RG1.forged", "scanned_at": "2026-11-20T08:03:00Z", "client_nonce": "desk1-0003"},
    ]});

    let first = app
        .post("/api/v1/events/a/checkins/batch", Some(&desk), &batch)
        .await;
    let retry = app
        .post("/api/v1/events/a/checkins/batch", Some(&desk), &batch)
        .await;

    let outcomes = |answer: &crate::helpers::Answer| -> Vec<String> {
        answer.json()["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["outcome"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(outcomes(&first), ["checked_in", "checked_in", "rejected"]);
    assert_eq!(
        outcomes(&retry),
        ["already_checked_in", "already_checked_in", "rejected"]
    );
    assert_eq!(first.json()["results"][2]["code"], "invalid_qr_code");
    assert_eq!(
        retry.json()["results"][0]["checkin"]["checked_in_at"],
        "2026-11-20T08:01:00Z"
    );
    let stats = app
        .get("/api/v1/events/a/stats", Some(&admin.access))
        .await
        .json();
    assert_eq!(stats["checked_in"], 2);
    let rows = app
        .db
        .client()
        .await
        .query_one("SELECT count(*) FROM checkins", &[])
        .await
        .unwrap();
    assert_eq!(rows.get::<_, i64>(0), 2);
}

#[tokio::test]
async fn a_tampered_or_foreign_code_is_rejected() {
    let app = spawn_app().await;
    let (admin, session) = event_with_session(&app, "a").await;
    app.event(&admin.access, "b", json!({})).await;
    let other = app.session(&admin.access, "b", json!({})).await;
    registered(&app, "a", "anna@example.org", &session).await;
    registered(
        &app,
        "b",
        "boris@example.org",
        other["id"].as_str().unwrap(),
    )
    .await;
    let desk = device_key(
        &app,
        &admin.access,
        "a",
        &["checkin:write", "attendees:read"],
    )
    .await;
    let b_reader = device_key(&app, &admin.access, "b", &["attendees:read"]).await;
    let qr = everyone(&app, "a", &desk, 1).await[0]["qr_code"]
        .as_str()
        .unwrap()
        .to_owned();
    let foreign = everyone(&app, "b", &b_reader, 1).await[0]["qr_code"]
        .as_str()
        .unwrap()
        .to_owned();
    // Change one character of the signed part.
    let mut tampered = qr.clone().into_bytes();
    let at = tampered.len() - 10;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();

    scan(&app, &desk, json!({"qr_code": tampered}))
        .await
        .assert_problem(422, "invalid_qr_code");
    scan(&app, &desk, json!({"qr_code": foreign}))
        .await
        .assert_problem(422, "invalid_qr_code");
    scan(&app, &desk, json!({"qr_code": "hello"}))
        .await
        .assert_problem(422, "invalid_qr_code");
    scan(&app, &desk, json!({"qr_code": qr}))
        .await
        .assert_status(201);
}

#[tokio::test]
async fn cancelled_and_unregistered_people_are_refused_at_the_door() {
    let app = spawn_app().await;
    let (admin, session) = event_with_session(&app, "a").await;
    let other = app
        .session(
            &admin.access,
            "a",
            json!({"title": "Круглый стол", "starts_at": "2027-04-23T11:00:00+03:00", "ends_at": "2027-04-23T12:00:00+03:00"}),
        )
        .await;
    let (anna, token) = registered(&app, "a", "anna@example.org", &session).await;
    registered(&app, "a", "boris@example.org", &session).await;
    let desk = device_key(
        &app,
        &admin.access,
        "a",
        &["checkin:write", "attendees:read"],
    )
    .await;
    let people = Value::Array(everyone(&app, "a", &desk, 2).await);
    let qr_of = |id: &str| {
        people
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["registration_id"] == id)
            .unwrap()["qr_code"]
            .clone()
    };
    let anna_qr = qr_of(&anna);
    let boris_qr = people
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["registration_id"] != anna.as_str())
        .unwrap()["qr_code"]
        .clone();

    scan(
        &app,
        &desk,
        json!({"qr_code": boris_qr, "session_id": other["id"]}),
    )
    .await
    .assert_problem(409, "not_registered_for_session");
    scan(
        &app,
        &desk,
        json!({"qr_code": boris_qr, "session_id": session}),
    )
    .await
    .assert_status(201);
    app.delete(&format!("/api/v1/registrations/{anna}"), Some(&token))
        .await
        .assert_status(200);
    scan(&app, &desk, json!({"qr_code": anna_qr}))
        .await
        .assert_problem(409, "registration_cancelled");
}

#[tokio::test]
async fn a_valid_code_of_a_vanished_registration_is_unknown() {
    let app = spawn_app().await;
    let (admin, session) = event_with_session(&app, "a").await;
    let (anna, _) = registered(&app, "a", "anna@example.org", &session).await;
    let desk = device_key(
        &app,
        &admin.access,
        "a",
        &["checkin:write", "attendees:read"],
    )
    .await;
    let qr = everyone(&app, "a", &desk, 1).await[0]["qr_code"].clone();
    app.db
        .client()
        .await
        .execute(
            "DELETE FROM registrations WHERE id = $1::text::uuid",
            &[&anna],
        )
        .await
        .unwrap();

    scan(&app, &desk, json!({"qr_code": qr}))
        .await
        .assert_problem(404, "unknown_code");
}

#[tokio::test]
async fn desks_verify_codes_offline_with_the_published_key() {
    use base64::Engine;
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};
    let app = spawn_app().await;
    let (admin, session) = event_with_session(&app, "a").await;
    let (anna, _) = registered(&app, "a", "anna@example.org", &session).await;
    let reader = device_key(&app, &admin.access, "a", &["attendees:read"]).await;
    let qr = everyone(&app, "a", &reader, 1).await[0]["qr_code"]
        .as_str()
        .unwrap()
        .to_owned();

    let key = app.get("/api/v1/events/a/checkin-key", None).await.json();

    assert_eq!(key["algorithm"], "Ed25519");
    let public: [u8; 32] = base64::engine::general_purpose::STANDARD
        .decode(key["public_key"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(qr.strip_prefix("RG1.").unwrap())
        .unwrap();
    assert_eq!(
        uuid::Uuid::from_slice(&bytes[16..32]).unwrap().to_string(),
        anna
    );
    let message = [b"registrar-checkin-v1".as_slice(), &bytes[..32]].concat();
    let signature = Signature::from_slice(&bytes[32..]).unwrap();
    VerifyingKey::from_bytes(&public)
        .unwrap()
        .verify(&message, &signature)
        .expect("the code verifies with the published key");
}

#[tokio::test]
async fn a_request_racing_another_to_create_the_checkin_key_gets_the_one_kept() {
    use base64::Engine;
    let app = spawn_app().await;
    event_with_session(&app, "a").await;
    let event_id: uuid::Uuid = app.get("/api/v1/events/a", None).await.json()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let seed = [7u8; 32];
    let sealed = registrar::secrets::KeyRing::development()
        .seal(&registrar::badges::qr::CHECKIN_KEY.place(event_id), &seed);
    // Another request is creating the key and has not committed yet.
    let in_flight = app.db.client().await;
    in_flight
        .batch_execute(&format!(
            "BEGIN; UPDATE events SET checkin_key_sealed = '\\x{}' WHERE slug = 'a'",
            hex::encode(sealed)
        ))
        .await
        .unwrap();
    let observer = app.db.client().await;
    let asking = app.get("/api/v1/events/a/checkin-key", None);
    tokio::pin!(asking);
    tokio::select! {
        answer = &mut asking => panic!("answered without waiting: {}", answer.text),
        () = lock_wait(&observer) => {}
    }
    in_flight.batch_execute("COMMIT").await.unwrap();

    let key = asking.await.assert_status(200).json();

    let public = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
    assert_eq!(
        key["public_key"],
        base64::engine::general_purpose::STANDARD.encode(public.as_bytes())
    );
}

// ---- the check-in key at rest ------------------------------------------------------------

/// The event's published check-in public key.
async fn public_key(app: &TestApp, address: &str) -> [u8; 32] {
    use base64::Engine;
    let answer = send(
        app.client
            .get(format!("{address}/api/v1/events/a/checkin-key")),
    )
    .await;
    let key = answer.assert_status(200).json();
    base64::engine::general_purpose::STANDARD
        .decode(key["public_key"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

async fn send(request: reqwest::RequestBuilder) -> crate::helpers::Answer {
    crate::helpers::send_checked(request).await.unwrap()
}

/// Every row of every table of the test's database, as text (what a dump holds).
async fn dump(app: &TestApp) -> String {
    let client = app.db.client().await;
    let tables: Vec<String> = column(
        &client,
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'",
        &[],
    )
    .await;
    let mut dump = String::new();
    for table in tables {
        for row in client
            .query(&format!("SELECT t::text FROM \"{table}\" t"), &[])
            .await
            .unwrap()
        {
            dump.push_str(row.get::<_, &str>(0));
            dump.push('\n');
        }
    }
    dump
}

/// Every byte string of at least 32 bytes written in hex (`\x…`) in `text`.
fn hex_strings(text: &str) -> Vec<Vec<u8>> {
    text.split("\\x")
        .skip(1)
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_hexdigit).collect();
            (digits.len() >= 64).then(|| hex::decode(&digits[..digits.len() / 2 * 2]).unwrap())
        })
        .collect()
}

#[tokio::test]
async fn a_dump_of_the_database_does_not_give_away_the_checkin_signing_key() {
    let app = spawn_app().await;
    let (admin, session) = event_with_session(&app, "a").await;
    registered(&app, "a", "anna@example.org", &session).await;
    let reader = device_key(&app, &admin.access, "a", &["attendees:read"]).await;
    everyone(&app, "a", &reader, 1).await;
    let public = public_key(&app, &app.address).await;

    let dump = dump(&app).await;

    let strings = hex_strings(&dump);
    assert!(!strings.is_empty(), "the dump holds byte strings: {dump}");
    for bytes in strings {
        for window in bytes.windows(32) {
            let seed: [u8; 32] = window.try_into().unwrap();
            let derived = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
            assert_ne!(
                derived.to_bytes(),
                public,
                "the dump holds the signing key's seed"
            );
        }
    }
}

fn encryption_key(byte: u8) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode([byte; 32])
}

/// Another instance of the service on the test's database, with these encryption keys.
async fn instance(app: &TestApp, keys: &str) -> anyhow::Result<String> {
    let mut config = crate::helpers::test_config(&app.db);
    config.encryption_keys = Some(keys.into());
    let instance = registrar::startup::Application::build(config).await?;
    let address = format!("http://127.0.0.1:{}", instance.port());
    tokio::spawn(instance.run_until_stopped());
    Ok(address)
}

async fn check_in_at(
    app: &TestApp,
    address: &str,
    key: &str,
    code: &str,
) -> crate::helpers::Answer {
    send(
        app.client
            .post(format!("{address}/api/v1/events/a/checkins"))
            .bearer_auth(key)
            .json(&json!({"qr_code": code})),
    )
    .await
}

#[tokio::test]
async fn badges_signed_before_a_key_rotation_still_check_in_after_it() {
    let k1 = format!("k1:{}", encryption_key(1));
    let k2 = format!("k2:{}", encryption_key(2));
    let app = spawn_app_with(|config| config.encryption_keys = Some(k1.clone().into())).await;
    let (admin, session) = event_with_session(&app, "a").await;
    registered(&app, "a", "anna@example.org", &session).await;
    registered(&app, "a", "boris@example.org", &session).await;
    let desk = device_key(
        &app,
        &admin.access,
        "a",
        &["attendees:read", "checkin:write"],
    )
    .await;
    let codes: Vec<String> = everyone(&app, "a", &desk, 2)
        .await
        .iter()
        .map(|a| a["qr_code"].as_str().unwrap().to_owned())
        .collect();
    let public = public_key(&app, &app.address).await;

    // A new key first, the old one still listed: old values open, new ones use the new key.
    let both = format!("{k2},{k1}");
    let rotated = instance(&app, &both).await.unwrap();
    check_in_at(&app, &rotated, &desk, &codes[0])
        .await
        .assert_status(201);
    let mut config = crate::helpers::test_config(&app.db);
    config.encryption_keys = Some(both.into());
    let resealed = registrar::startup::reseal_secrets(&config).await.unwrap();
    let key_ids: Vec<String> = app
        .db
        .client()
        .await
        .query(
            "SELECT convert_from(substring(checkin_key_sealed FROM 3 FOR \
                    get_byte(checkin_key_sealed, 1)), 'UTF8') FROM events",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    // The old key is dropped.
    let new_only = instance(&app, &k2).await.unwrap();

    assert_eq!(resealed, 1);
    assert_eq!(key_ids, ["k2"]);
    check_in_at(&app, &new_only, &desk, &codes[1])
        .await
        .assert_status(201);
    assert_eq!(public_key(&app, &new_only).await, public);
    // Codes issued now, through the new key only, are the same signed codes.
    let deadline = Instant::now() + Duration::from_secs(10);
    let reissued: Vec<String> = loop {
        let page = send(
            app.client
                .get(format!("{new_only}/api/v1/events/a/attendees?limit=10"))
                .bearer_auth(&desk),
        )
        .await
        .json();
        let items = page["items"].as_array().unwrap();
        if items.len() >= 2 || Instant::now() > deadline {
            break items
                .iter()
                .map(|a| a["qr_code"].as_str().unwrap().to_owned())
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (mut reissued, mut codes) = (reissued, codes);
    reissued.sort();
    codes.sort();
    assert_eq!(reissued, codes);
}

#[tokio::test]
async fn a_missing_or_wrong_encryption_key_stops_the_start_naming_it() {
    let app = spawn_app_with(|config| {
        config.encryption_keys = Some(format!("k1:{}", encryption_key(1)).into())
    })
    .await;
    event_with_session(&app, "a").await;
    public_key(&app, &app.address).await;

    let missing = instance(&app, &format!("k2:{}", encryption_key(2)))
        .await
        .unwrap_err();
    let wrong = instance(&app, &format!("k1:{}", encryption_key(9)))
        .await
        .unwrap_err();

    let missing = format!("{missing:#}");
    assert!(
        missing.contains("`k1`") && missing.contains("REGISTRAR_ENCRYPTION_KEYS"),
        "{missing}"
    );
    let wrong = format!("{wrong:#}");
    assert!(
        wrong.contains("`k1` does not open") && wrong.contains("events.checkin_key_sealed"),
        "{wrong}"
    );
}

#[tokio::test]
async fn plain_seeds_of_earlier_versions_are_sealed_at_start() {
    let app = spawn_app().await;
    event_with_session(&app, "a").await;
    // What an earlier version stored.
    let client = app.db.client().await;
    client
        .batch_execute(&format!(
            "UPDATE events SET checkin_key_seed = '\\x{}', checkin_key_sealed = NULL",
            "07".repeat(32)
        ))
        .await
        .unwrap();

    let upgraded = instance(&app, &format!("k1:{}", encryption_key(1)))
        .await
        .unwrap();

    let left: i64 = client
        .query_one(
            "SELECT count(*) FROM events WHERE checkin_key_seed IS NOT NULL \
                OR checkin_key_sealed IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
    let public = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]).verifying_key();
    assert_eq!(public_key(&app, &upgraded).await, public.to_bytes());
}

#[tokio::test]
async fn participants_fetch_their_own_qr_as_svg_or_png() {
    let app = spawn_app().await;
    let (admin, session) = event_with_session(&app, "a").await;
    let (anna, token) = registered(&app, "a", "anna@example.org", &session).await;
    let (boris, _) = registered(&app, "a", "boris@example.org", &session).await;

    let svg = app
        .get(
            &format!("/api/v1/registrations/{anna}/qr.svg"),
            Some(&token),
        )
        .await;
    let png = app
        .get(
            &format!("/api/v1/registrations/{anna}/qr.png"),
            Some(&admin.access),
        )
        .await;

    svg.assert_status(200);
    assert_eq!(svg.header("content-type"), Some("image/svg+xml"));
    assert!(
        svg.text.contains("<svg"),
        "{}",
        &svg.text[..100.min(svg.text.len())]
    );
    png.assert_status(200);
    assert_eq!(png.header("content-type"), Some("image/png"));
    app.get(
        &format!("/api/v1/registrations/{boris}/qr.png"),
        Some(&token),
    )
    .await
    .assert_problem(404, "not_found");
    app.get(&format!("/api/v1/registrations/{anna}/qr.svg"), None)
        .await
        .assert_problem(401, "authentication_required");
}

#[tokio::test]
async fn stats_count_by_category_and_session() {
    let app = spawn_app().await;
    let (admin, session) = event_with_session(&app, "a").await;
    registered(&app, "a", "anna@example.org", &session).await;
    let mut official = registration_body("gov@example.org", &[&session]);
    official["category"] = json!("government");
    app.post("/api/v1/events/a/registrations", None, &official)
        .await
        .assert_status(201);
    let (boris, token) = registered(&app, "a", "boris@example.org", &session).await;
    app.delete(&format!("/api/v1/registrations/{boris}"), Some(&token))
        .await
        .assert_status(200);

    let stats = app.get("/api/v1/events/a/stats", Some(&admin.access)).await;

    stats.assert_status(200);
    let stats = stats.json();
    assert_eq!(
        (stats["registered"].as_i64(), stats["cancelled"].as_i64()),
        (Some(2), Some(1))
    );
    assert_eq!(
        stats["by_category"],
        json!([
            {"category": "government", "registered": 1, "checked_in": 0},
            {"category": "nonprofit", "registered": 1, "checked_in": 0},
        ])
    );
    assert_eq!(stats["sessions"][0]["confirmed"], 2);
    assert_eq!(stats["sessions"][0]["capacity"], 100);
    app.get("/api/v1/events/a/stats", None)
        .await
        .assert_problem(401, "authentication_required");
}

#[tokio::test]
async fn a_session_door_list_shows_confirmed_attendees_and_their_door_check_in() {
    let app = spawn_app().await;
    let (admin, session) = event_with_session(&app, "a").await;
    registered(&app, "a", "anna@example.org", &session).await;
    let desk = device_key(
        &app,
        &admin.access,
        "a",
        &["checkin:write", "attendees:read"],
    )
    .await;
    let qr = everyone(&app, "a", &desk, 1).await[0]["qr_code"].clone();
    scan(&app, &desk, json!({"qr_code": qr, "session_id": session}))
        .await
        .assert_status(201);

    let list = app
        .get(
            &format!("/api/v1/events/a/sessions/{session}/attendees"),
            Some(&desk),
        )
        .await;

    list.assert_status(200);
    let items = list.json()["items"].clone();
    assert_eq!(items.as_array().unwrap().len(), 1);
    assert!(items[0]["session_checked_in_at"].is_string());
    assert!(
        items[0]["checked_in_at"].is_null(),
        "a door is not the entrance"
    );
}

/// Adds `count` active registrations with long names to the event `event_id` straight in the
/// database: enough that their CSV export cannot fit into socket and stream buffers.
async fn many_registrations(app: &TestApp, event_id: &str, count: i32) {
    app.db
        .client()
        .await
        .execute(
            "INSERT INTO registrations (id, event_id, full_name, email, email_normalized, \
                 organisation, category, status, source, manage_token_hash, consent_at) \
             SELECT gen_random_uuid(), $1::text::uuid, \
                 'Участница ' || g || ' ' || repeat('Длинноимённая ', 20), \
                 'p' || g || '@example.org', 'p' || g || '@example.org', \
                 repeat('Автономная некоммерческая организация ', 10), \
                 'nonprofit', 'active', 'public', \
                 sha256(convert_to(g::text, 'UTF8')), now() \
             FROM generate_series(1, $2) AS g",
            &[&event_id, &count],
        )
        .await
        .unwrap();
}

/// Sends an export request and never reads the answer, with a small receive buffer so that
/// the server soon cannot send any more.
async fn stalled_export(app: &TestApp, path: &str, token: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let address = app.address.trim_start_matches("http://").parse().unwrap();
    let mut stream = socket.connect(address).await.unwrap();
    stream
        .write_all(
            format!(
                "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
                 Connection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    stream
}

/// Reads what is left of an answer: its status, whether its chunked body was complete, and
/// how many bytes came.
async fn rest_of_answer(mut stream: tokio::net::TcpStream) -> (u16, bool, usize) {
    use tokio::io::AsyncReadExt;
    let mut bytes = Vec::new();
    let mut buffer = vec![0; 64 * 1024];
    let read_all = async {
        while let Ok(n) = stream.read(&mut buffer).await {
            if n == 0 {
                break;
            }
            bytes.extend_from_slice(&buffer[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read_all)
        .await
        .expect("the server ends the answer");
    let status = String::from_utf8_lossy(&bytes[9..12]).parse().unwrap();
    (status, bytes.ends_with(b"\r\n0\r\n\r\n"), bytes.len())
}

async fn connections_in_transaction(observer: &tokio_postgres::Client) -> i64 {
    observer
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn clients_that_stop_reading_the_export_cannot_starve_other_requests() {
    let app = crate::helpers::spawn_app_with(|config| {
        config.send_timeout_ms = 1_000;
        config.db_timeout_ms = 2_000;
    })
    .await;
    let admin = app.admin().await;
    let event = app.event(&admin.access, "a", json!({})).await;
    many_registrations(&app, event["id"].as_str().unwrap(), 20_000).await;
    let observer = app.db.client().await;

    let mut stalled = Vec::new();
    for _ in 0..12 {
        stalled.push(stalled_export(&app, "/api/v1/events/a/attendees.csv", &admin.access).await);
    }
    // Some export now holds a transaction open while its client does not read.
    let deadline = Instant::now() + Duration::from_secs(10);
    while connections_in_transaction(&observer).await == 0 {
        assert!(Instant::now() < deadline, "no export started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Others still get a connection at once.
    app.get("/api/v1/events/a", None).await.assert_status(200);
    app.get(
        "/api/v1/events/a/registrations?limit=1",
        Some(&admin.access),
    )
    .await
    .assert_status(200);

    // The stalled exports end, and give their connections back, within a bounded time.
    let deadline = Instant::now() + Duration::from_secs(10);
    while connections_in_transaction(&observer).await > 0 {
        assert!(
            Instant::now() < deadline,
            "a stalled export still holds its transaction"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The connections themselves are closed after the same time without progress.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut cut_short = 0;
    for stream in stalled {
        match rest_of_answer(stream).await {
            (200, complete, received) => {
                assert!(!complete, "a stalled export was not ended");
                // Only what had reached the client's own buffer: the server closed the
                // connection rather than keep the rest of the answer waiting for it.
                assert!(
                    received < 256 * 1024,
                    "{received} bytes came after the stall"
                );
                cut_short += 1;
            }
            (status, ..) => assert!([429, 503].contains(&status), "{status}"),
        }
    }
    assert!(cut_short >= 1);
    // And a client that reads gets the whole list.
    let full = app
        .get("/api/v1/events/a/attendees.csv", Some(&admin.access))
        .await;
    full.assert_status(200);
    assert_eq!(full.text.lines().count(), 20_001);
}

#[tokio::test]
async fn one_caller_cannot_take_every_export_slot() {
    let app = crate::helpers::spawn_app_with(|config| {
        // 14 connections for the one worker after the background work's: 3 export slots, so
        // that a slot is left for another caller once this one holds its two.
        config.db_pool_size = 20;
        config.send_timeout_ms = 60_000;
    })
    .await;
    let admin = app.admin().await;
    let event = app.event(&admin.access, "a", json!({})).await;
    many_registrations(&app, event["id"].as_str().unwrap(), 20_000).await;
    let key = device_key(&app, &admin.access, "a", &["attendees:read"]).await;
    let path = "/api/v1/events/a/attendees.csv";
    let _first = stalled_export(&app, path, &admin.access).await;
    let _second = stalled_export(&app, path, &admin.access).await;
    let observer = app.db.client().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while connections_in_transaction(&observer).await < 2 {
        assert!(Instant::now() < deadline, "the exports did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let third = app.get(path, Some(&admin.access)).await;
    let other_caller = app.get(path, Some(&key)).await;

    let problem = third.assert_problem(429, "too_many_exports");
    assert!(third.header("retry-after").is_some(), "{problem}");
    other_caller.assert_status(200);
    assert_eq!(other_caller.text.lines().count(), 20_001);
}
