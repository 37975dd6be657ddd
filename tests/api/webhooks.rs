//! Webhooks against a real receiver (`tests/support/webhook_receiver.py`), which checks every
//! signature with the Standard Webhooks reference library and records what it got.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::{Duration, Instant};

use registrar::config::Config;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::helpers::{
    JWT_SECRET, PASSWORD, TestApp, TestDb, another_instance_with, registration_body, spawn_app_with,
};
use crate::python::{python, support_dir};
use crate::registrations::{count, id_of};

/// The receiver, running for one test.
struct Receiver {
    base: String,
    http: reqwest::Client,
    _process: tokio::process::Child,
}

impl Receiver {
    async fn start() -> Self {
        let mut process = tokio::process::Command::new(python())
            .arg(support_dir().join("webhook_receiver.py"))
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("starting the webhook receiver");
        let stdout = process.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).await.unwrap();
        let port = line
            .strip_prefix("PORT ")
            .unwrap_or_else(|| panic!("the receiver said {line:?}"))
            .trim()
            .to_owned();
        Receiver {
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            _process: process,
        }
    }

    fn port(&self) -> &str {
        self.base.rsplit(':').next().unwrap()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Requests to `path` are checked with these secrets (each one alone).
    async fn trust(&self, path: &str, secrets: &[&str]) {
        let answer = self
            .http
            .put(self.url(&format!("/_secrets{path}")))
            .json(&secrets)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 204);
    }

    /// Every request so far, in the order they came.
    async fn requests(&self) -> Vec<Value> {
        self.http
            .get(self.url("/_requests"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The requests to `path`.
    async fn requests_to(&self, path: &str) -> Vec<Value> {
        self.requests()
            .await
            .into_iter()
            .filter(|r| r["path"] == path)
            .collect()
    }

    /// Waits (up to 20 s) until `done` holds for the requests to `path`.
    async fn wait(&self, path: &str, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let requests = self.requests_to(path).await;
            if done(&requests) {
                return requests;
            }
            assert!(
                Instant::now() < deadline,
                "waited 20 s for {what}; {path} got {requests:#?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// Answered 2xx.
fn answered_ok(request: &Value) -> bool {
    request["status"]
        .as_i64()
        .is_some_and(|s| (200..300).contains(&s))
}

fn delivered(requests: &[Value]) -> Vec<&Value> {
    requests.iter().filter(|r| answered_ok(r)).collect()
}

/// Retries after 50 ms rather than 5 s; private addresses allowed (the receiver is on
/// loopback).
fn fast(config: &mut Config) {
    config.webhook_allow_private = true;
    config.webhook_first_retry_ms = 50;
}

async fn app_with_receiver() -> (TestApp, Receiver, String) {
    let app = spawn_app_with(fast).await;
    let receiver = Receiver::start().await;
    let token = app.admin().await.access;
    (app, receiver, token)
}

/// Registers an endpoint at the receiver's `path` and tells the receiver its secret; returns
/// the endpoint's id and secret.
async fn endpoint(
    app: &TestApp,
    token: &str,
    event: &str,
    receiver: &Receiver,
    path: &str,
    extra: Value,
) -> (String, String) {
    let mut body = json!({"url": receiver.url(path)});
    crate::helpers::merge(&mut body, extra);
    let answer = app
        .post(
            &format!("/api/v1/events/{event}/webhooks"),
            Some(token),
            &body,
        )
        .await;
    answer.assert_status(201);
    let created = answer.json();
    let secret = created["secret"].as_str().unwrap().to_owned();
    receiver.trust(path, &[&secret]).await;
    (id_of(&created), secret)
}

/// Waits until the webhooks' consumer has read every change written so far.
async fn consumed(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while count(
        app,
        "SELECT count(*) FROM changes c, change_consumers k \
         WHERE k.name = 'webhooks' AND (c.xid, c.id) > (k.last_xid, k.last_id)",
    )
    .await
        > 0
    {
        assert!(Instant::now() < deadline, "the changes were not all read");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn deliveries(app: &TestApp, token: &str, event: &str, webhook: &str) -> Vec<Value> {
    let answer = app
        .get(
            &format!("/api/v1/events/{event}/webhooks/{webhook}/deliveries?limit=200"),
            Some(token),
        )
        .await;
    answer.assert_status(200);
    answer.json()["items"].as_array().unwrap().clone()
}

/// Waits until a delivery satisfies `done`.
async fn wait_for_delivery(
    app: &TestApp,
    token: &str,
    event: &str,
    webhook: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let list = deliveries(app, token, event, webhook).await;
        if let Some(found) = list.iter().find(|d| done(d)) {
            return found.clone();
        }
        assert!(Instant::now() < deadline, "no such delivery: {list:#?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn every_kind_of_change_is_delivered_signed_as_standard_webhooks_says() {
    let (app, receiver, token) = app_with_receiver().await;
    app.event(&token, "mmdn", json!({"status": "draft"})).await;
    let (webhook, _) = endpoint(&app, &token, "mmdn", &receiver, "/ok/all", json!({})).await;
    let first = id_of(&app.session(&token, "mmdn", json!({"capacity": 1})).await);
    let second = id_of(
        &app.session(
            &token,
            "mmdn",
            json!({"title": "Волонтёрство", "starts_at": "2027-04-23T11:00:00+03:00",
                   "ends_at": "2027-04-23T13:00:00+03:00"}),
        )
        .await,
    );
    // programme.published
    app.patch(
        "/api/v1/events/mmdn",
        Some(&token),
        &json!({"status": "published"}),
    )
    .await
    .assert_status(200);
    // registration.created and .confirmed; then .created and .waitlisted
    let anna = app
        .register("mmdn", "anna@example.org", &[&first])
        .await
        .json();
    let boris = app
        .register("mmdn", "boris@example.org", &[&first])
        .await
        .json();
    let anna_path = format!("/api/v1/registrations/{}", id_of(&anna));
    let anna_token = anna["manage_token"].as_str().unwrap().to_owned();
    // registration.changed
    app.patch(
        &anna_path,
        Some(&anna_token),
        &json!({"city": "Кандалакша"}),
    )
    .await
    .assert_status(200);
    // registration.confirmed (second), .session_removed (first), and Boris .promoted
    app.patch(
        &anna_path,
        Some(&anna_token),
        &json!({"session_ids": [second]}),
    )
    .await
    .assert_status(200);
    // checkin.created
    let qr = loop {
        let feed = app
            .get("/api/v1/events/mmdn/attendees?limit=1000", Some(&token))
            .await
            .json();
        if let Some(record) = feed["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["registration_id"] == anna["id"])
        {
            break record["qr_code"].clone();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    app.post(
        "/api/v1/events/mmdn/checkins",
        Some(&token),
        &json!({"qr_code": qr}),
    )
    .await
    .assert_status(201);
    // session.changed (and programme.changed), session.cancelled
    app.patch(
        &format!("/api/v1/events/mmdn/sessions/{second}"),
        Some(&token),
        &json!({"starts_at": "2027-04-23T10:00:00+03:00"}),
    )
    .await
    .assert_status(200);
    app.patch(
        &format!("/api/v1/events/mmdn/sessions/{first}"),
        Some(&token),
        &json!({"status": "cancelled"}),
    )
    .await
    .assert_status(200);
    // registration.cancelled
    let boris_token = boris["manage_token"].as_str().unwrap();
    app.delete(
        &format!("/api/v1/registrations/{}", id_of(&boris)),
        Some(boris_token),
    )
    .await
    .assert_status(200);
    // registration.erased (and .created, .cancelled): Vera erases her data.
    let vera = app.register("mmdn", "vera@example.org", &[]).await.json();
    app.post(
        &format!("/api/v1/registrations/{}/erase", id_of(&vera)),
        vera["manage_token"].as_str(),
        &json!({}),
    )
    .await
    .assert_status(200);

    consumed(&app).await;
    let changes: BTreeMap<i64, String> = app
        .db
        .client()
        .await
        .query("SELECT id, kind FROM changes", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let requests = receiver
        .wait("/ok/all", "every change", |r| {
            delivered(r).len() >= changes.len()
        })
        .await;

    let mut got = BTreeMap::new();
    for request in &requests {
        assert_eq!(request["verified"], json!([true]), "{request:#}");
        assert_eq!(request["content_type"], "application/json");
        let body = &request["body"];
        let change_id = body["data"]["change_id"].as_i64().unwrap();
        assert!(
            got.insert(change_id, body["type"].as_str().unwrap().to_owned())
                .is_none(),
            "one message per change: {request:#}"
        );
    }
    assert_eq!(got, changes, "exactly the committed changes, each once");
    let kinds: BTreeSet<&str> = got.values().map(String::as_str).collect();
    let all: BTreeSet<&str> = registrar::changes::ChangeKind::ALL
        .iter()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(kinds, all, "every kind of change was made and delivered");

    let of = |kind: &str| -> Vec<&Value> {
        requests
            .iter()
            .map(|r| &r["body"])
            .filter(|b| b["type"] == kind)
            .collect()
    };
    let waitlisted = of("registration.waitlisted")[0];
    assert_eq!(waitlisted["data"]["registration_id"], boris["id"]);
    assert_eq!(waitlisted["data"]["session_id"], first.as_str());
    assert_eq!(waitlisted["data"]["event"]["slug"], "mmdn");
    let registration = &waitlisted["data"]["registration"];
    assert_eq!(registration["email"], "boris@example.org");
    assert_eq!(registration["full_name"], "Анна Сергеевна Иванова");
    assert_eq!(registration["organisation"], "АНО «Городские события»");
    assert_eq!(registration["sessions"][0]["session_id"], first.as_str());
    let changed = of("registration.changed")[0];
    assert_eq!(changed["data"]["details"]["fields"], json!(["city"]));
    let promoted = of("registration.promoted")[0];
    assert_eq!(promoted["data"]["registration_id"], boris["id"]);
    let moved = of("session.changed")[0];
    assert_eq!(moved["data"]["session"]["id"], second.as_str());
    assert_eq!(moved["data"]["details"]["fields"], json!(["starts_at"]));
    assert_eq!(
        moved["data"]["session"]["starts_at"],
        "2027-04-23T10:00:00+03:00"
    );
    let erased = of("registration.erased")[0];
    assert_eq!(erased["data"]["registration_id"], vera["id"]);
    assert_eq!(
        erased["data"]["details"],
        json!({"reason": "participant_request"})
    );
    assert_eq!(erased["data"]["registration"]["full_name"], "—");
    assert_eq!(erased["data"]["registration"]["phone"], Value::Null);
    let published = of("programme.published")[0];
    assert_eq!(published["data"]["event"]["slug"], "mmdn");
    assert!(published["timestamp"].as_str().unwrap().ends_with('Z'));

    // The webhook-id is the delivery organisers see, and the answer is recorded.
    let listed = deliveries(&app, &token, "mmdn", &webhook).await;
    assert_eq!(listed.len(), changes.len());
    let ids: BTreeSet<&str> = listed.iter().map(|d| d["id"].as_str().unwrap()).collect();
    for request in &requests {
        assert!(ids.contains(request["webhook_id"].as_str().unwrap()));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let listed = loop {
        let listed = deliveries(&app, &token, "mmdn", &webhook).await;
        if listed.iter().all(|d| d["status"] == "delivered") {
            break listed;
        }
        assert!(Instant::now() < deadline, "not all recorded: {listed:#?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    for delivery in &listed {
        assert_eq!(delivery["last_status_code"], 200);
        assert_eq!(delivery["attempts"], 1);
    }

    let metrics = app.get("/metrics", None).await.text;
    assert!(
        metrics.contains(&format!(
            "registrar_notification_deliveries_total{{channel=\"webhook\",outcome=\"delivered\"}} {}",
            changes.len()
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("registrar_notification_queue_depth{channel=\"webhook\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("registrar_notification_delivery_seconds_count{channel=\"webhook\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_change_that_rolled_back_sends_nothing() {
    let (app, receiver, token) = app_with_receiver().await;
    app.event(&token, "mmdn", json!({})).await;
    let open = id_of(&app.session(&token, "mmdn", json!({"capacity": 10})).await);
    let full = id_of(
        &app.session(
            &token,
            "mmdn",
            json!({"capacity": 1, "waitlist_enabled": false,
                   "starts_at": "2027-04-23T11:00:00+03:00", "ends_at": "2027-04-23T13:00:00+03:00"}),
        )
        .await,
    );
    let (webhook, _) = endpoint(&app, &token, "mmdn", &receiver, "/ok/r", json!({})).await;
    let first = app
        .register("mmdn", "first@example.org", &[&full])
        .await
        .json();
    // Created, and confirmed in `open`, then refused for `full`: rolled back.
    app.register("mmdn", "anna@example.org", &[&open, &full])
        .await
        .assert_problem(409, "session_full");
    let anna = app
        .register("mmdn", "anna@example.org", &[&open])
        .await
        .json();

    consumed(&app).await;
    let requests = receiver
        .wait("/ok/r", "four messages", |r| delivered(r).len() >= 4)
        .await;
    let got: BTreeSet<(String, String)> = requests
        .iter()
        .map(|r| {
            (
                r["body"]["data"]["registration_id"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                r["body"]["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, String)> = [
        (id_of(&first), "registration.created"),
        (id_of(&first), "registration.confirmed"),
        (id_of(&anna), "registration.created"),
        (id_of(&anna), "registration.confirmed"),
    ]
    .into_iter()
    .map(|(id, kind)| (id, kind.to_owned()))
    .collect();
    assert_eq!(got, expected);
    // Every change is read, and no other delivery exists: nothing more will come.
    assert_eq!(deliveries(&app, &token, "mmdn", &webhook).await.len(), 4);
    assert_eq!(requests.len(), 4);
}

#[tokio::test]
async fn a_failing_receiver_gets_the_same_message_until_it_answers_2xx() {
    let (app, receiver, token) = app_with_receiver().await;
    app.event(&token, "mmdn", json!({})).await;
    let (webhook, _) = endpoint(&app, &token, "mmdn", &receiver, "/fail/2/r", json!({})).await;

    app.register("mmdn", "anna@example.org", &[])
        .await
        .assert_status(201);

    let requests = receiver
        .wait("/fail/2/r", "a success", |r| !delivered(r).is_empty())
        .await;
    let statuses: Vec<&Value> = requests.iter().map(|r| &r["status"]).collect();
    assert_eq!(statuses, [&json!(500), &json!(500), &json!(200)]);
    for request in &requests {
        assert_eq!(request["verified"], json!([true]));
        assert_eq!(request["webhook_id"], requests[0]["webhook_id"]);
        assert_eq!(
            request["raw"], requests[0]["raw"],
            "the same bytes each time"
        );
    }
    let delivery = wait_for_delivery(&app, &token, "mmdn", &webhook, |d| {
        d["status"] == "delivered"
    })
    .await;
    assert_eq!(delivery["id"], requests[0]["webhook_id"]);
    assert_eq!(delivery["attempts"], 3);
    assert_eq!(delivery["last_status_code"], 200);
    assert!(delivery["last_duration_ms"].is_number());
    let detail = app
        .get(
            &format!(
                "/api/v1/events/mmdn/webhooks/{webhook}/deliveries/{}",
                delivery["id"].as_str().unwrap()
            ),
            Some(&token),
        )
        .await
        .json();
    let codes: Vec<&Value> = detail["attempts_made"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["status_code"])
        .collect();
    assert_eq!(codes, [&json!(200), &json!(500), &json!(500)]);
    assert_eq!(detail["attempts_made"][1]["error"], "answered 500");
    assert_eq!(
        detail["attempts_made"][1]["response_excerpt"],
        "failing on purpose"
    );
    assert_eq!(detail["payload"], requests[0]["body"]);
    let hook = app
        .get(
            &format!("/api/v1/events/mmdn/webhooks/{webhook}"),
            Some(&token),
        )
        .await
        .json();
    assert_eq!(hook["failing_since"], Value::Null, "a success clears it");
}

#[tokio::test]
async fn one_registrations_messages_arrive_in_order_even_when_one_is_retried() {
    let (app, receiver, token) = app_with_receiver().await;
    app.event(&token, "mmdn", json!({})).await;
    let session = id_of(&app.session(&token, "mmdn", json!({})).await);
    endpoint(&app, &token, "mmdn", &receiver, "/fail/1/o", json!({})).await;

    let anna = app
        .register("mmdn", "anna@example.org", &[&session])
        .await
        .json();
    app.delete(
        &format!("/api/v1/registrations/{}", id_of(&anna)),
        Some(anna["manage_token"].as_str().unwrap()),
    )
    .await
    .assert_status(200);

    let mut requests = receiver
        .wait("/fail/1/o", "three messages", |r| delivered(r).len() >= 3)
        .await;
    requests.sort_by(|a, b| {
        a["started"]
            .as_f64()
            .partial_cmp(&b["started"].as_f64())
            .unwrap()
    });
    let order: Vec<(&str, i64)> = requests
        .iter()
        .map(|r| {
            (
                r["body"]["type"].as_str().unwrap(),
                r["status"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        order,
        [
            ("registration.created", 500),
            ("registration.created", 200),
            ("registration.confirmed", 500),
            ("registration.confirmed", 200),
            ("registration.cancelled", 500),
            ("registration.cancelled", 200),
        ]
    );
    for pair in requests.windows(2) {
        assert!(
            pair[1]["started"].as_f64() >= pair[0]["finished"].as_f64(),
            "one at a time: {pair:#?}"
        );
    }
}

#[tokio::test]
async fn an_endpoint_answering_410_is_disabled_and_sent_nothing_more() {
    let (app, receiver, token) = app_with_receiver().await;
    app.event(&token, "mmdn", json!({})).await;
    let (webhook, secret) = endpoint(&app, &token, "mmdn", &receiver, "/gone/g", json!({})).await;

    app.register("mmdn", "anna@example.org", &[])
        .await
        .assert_status(201);
    let failed =
        wait_for_delivery(&app, &token, "mmdn", &webhook, |d| d["status"] == "failed").await;
    assert_eq!(failed["last_status_code"], 410);
    assert_eq!(failed["attempts"], 1);
    let hook = app
        .get(
            &format!("/api/v1/events/mmdn/webhooks/{webhook}"),
            Some(&token),
        )
        .await
        .json();
    assert_eq!(hook["enabled"], false);
    assert_eq!(hook["disabled_reason"], "the endpoint answered 410 Gone");

    app.register("mmdn", "boris@example.org", &[])
        .await
        .assert_status(201);
    consumed(&app).await;
    assert_eq!(deliveries(&app, &token, "mmdn", &webhook).await.len(), 1);
    assert_eq!(receiver.requests_to("/gone/g").await.len(), 1);
    app.post(
        &format!("/api/v1/events/mmdn/webhooks/{webhook}/deliveries/redeliver-failed"),
        Some(&token),
        &json!({}),
    )
    .await
    .assert_problem(409, "webhook_disabled");

    // Pointed at a working URL and enabled again, the failed message goes out again, the
    // same message.
    receiver.trust("/ok/again", &[&secret]).await;
    let patched = app
        .patch(
            &format!("/api/v1/events/mmdn/webhooks/{webhook}"),
            Some(&token),
            &json!({"url": receiver.url("/ok/again"), "enabled": true}),
        )
        .await;
    patched.assert_status(200);
    assert_eq!(patched.json()["disabled_reason"], Value::Null);
    let redelivered = app
        .post(
            &format!("/api/v1/events/mmdn/webhooks/{webhook}/deliveries/redeliver-failed"),
            Some(&token),
            &json!({}),
        )
        .await;
    redelivered.assert_status(202);
    assert_eq!(redelivered.json()["redelivered"], 1);
    let again = receiver
        .wait("/ok/again", "the message again", |r| {
            !delivered(r).is_empty()
        })
        .await;
    assert_eq!(again[0]["webhook_id"], failed["id"]);
    assert_eq!(
        again[0]["raw"],
        receiver.requests_to("/gone/g").await[0]["raw"]
    );
    assert_eq!(again[0]["verified"], json!([true]));
}

#[tokio::test]
async fn an_endpoint_failing_for_three_days_is_disabled_and_its_message_failed() {
    let (app, receiver, token) = app_with_receiver().await;
    app.event(&token, "mmdn", json!({})).await;
    let (webhook, _) = endpoint(&app, &token, "mmdn", &receiver, "/fail/1000/d", json!({})).await;
    app.register("mmdn", "anna@example.org", &[])
        .await
        .assert_status(201);
    receiver
        .wait("/fail/1000/d", "a first attempt", |r| {
            r.iter().any(|r| !r["finished"].is_null())
        })
        .await;
    wait_for_delivery(&app, &token, "mmdn", &webhook, |d| {
        d["last_status_code"] == 500 && !d["in_progress"].as_bool().unwrap()
    })
    .await;

    // As if the first attempt had been three days ago, and every one since had failed.
    let db = app.db.client().await;
    db.batch_execute(
        "UPDATE webhook_deliveries SET first_attempt_at = now() - interval '3 days', \
                next_attempt_at = now(); \
         UPDATE webhook_endpoints SET failing_since = now() - interval '3 days';",
    )
    .await
    .unwrap();

    let failed =
        wait_for_delivery(&app, &token, "mmdn", &webhook, |d| d["status"] == "failed").await;
    // Given up, or failed as its endpoint was disabled: either way, after a 500.
    assert!(
        failed["last_error"]
            .as_str()
            .unwrap()
            .starts_with("answered 500"),
        "{failed}"
    );
    let hook = app
        .get(
            &format!("/api/v1/events/mmdn/webhooks/{webhook}"),
            Some(&token),
        )
        .await
        .json();
    assert_eq!(hook["enabled"], false);
    let reason = hook["disabled_reason"].as_str().unwrap();
    assert!(
        reason.contains("every delivery failed") && reason.contains("3 days"),
        "{reason}"
    );
}

#[tokio::test]
async fn endpoint_urls_must_be_public_https_and_short() {
    let app = spawn_app_with(|_| {}).await;
    let receiver = Receiver::start().await;
    let token = app.admin().await.access;
    app.event(&token, "mmdn", json!({})).await;
    let port = receiver.port();
    let long = format!("https://93.184.216.34/{}", "a".repeat(2000));
    for url in [
        format!("http://localhost:{port}/ok/x"),
        format!("http://127.0.0.1:{port}/ok/x"),
        format!("http://[::1]:{port}/ok/x"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://[fd00:ec2::254]/latest/meta-data/".to_owned(),
        "http://10.0.0.1/hook".to_owned(),
        "http://192.168.1.10/hook".to_owned(),
        "http://2130706433/hook".to_owned(),
        "ftp://93.184.216.34/hook".to_owned(),
        "/relative".to_owned(),
        long,
    ] {
        let answer = app
            .post(
                "/api/v1/events/mmdn/webhooks",
                Some(&token),
                &json!({"url": url}),
            )
            .await;
        let problem = answer.assert_problem(422, "validation_failed");
        assert_eq!(problem["errors"][0]["field"], "url", "{url}: {problem}");
    }
    let answer = app
        .post(
            "/api/v1/events/mmdn/webhooks",
            Some(&token),
            &json!({"url": "http://93.184.216.34/hook", "event_types": ["registration.created", "nope"]}),
        )
        .await;
    assert_eq!(
        answer.assert_problem(422, "invalid_body")["errors"][0]["field"],
        "event_types[1]"
    );
    // In development, http:// to a public address is fine; a change to a private one is not.
    let created = app
        .post(
            "/api/v1/events/mmdn/webhooks",
            Some(&token),
            &json!({"url": "http://93.184.216.34/hook"}),
        )
        .await;
    created.assert_status(201);
    let id = id_of(&created.json());
    let answer = app
        .patch(
            &format!("/api/v1/events/mmdn/webhooks/{id}"),
            Some(&token),
            &json!({"url": format!("http://localhost:{port}/ok/x")}),
        )
        .await;
    assert_eq!(
        answer.assert_problem(422, "validation_failed")["errors"][0]["field"],
        "url"
    );
    assert!(receiver.requests().await.is_empty());

    // Outside development, https only.
    let production = spawn_app_with(|config| {
        config.environment = registrar::config::Environment::Production;
        config.encryption_keys = Some(format!("k1:{}", "A".repeat(43) + "=").into());
    })
    .await;
    let token = production.admin().await.access;
    production.event(&token, "mmdn", json!({})).await;
    let answer = production
        .post(
            "/api/v1/events/mmdn/webhooks",
            Some(&token),
            &json!({"url": "http://93.184.216.34/hook"}),
        )
        .await;
    let problem = answer.assert_problem(422, "validation_failed");
    assert_eq!(problem["errors"][0]["field"], "url");
    assert_eq!(problem["errors"][0]["message"], "must be an https:// URL");
}

#[tokio::test]
async fn deliveries_to_private_addresses_are_refused_after_resolution() {
    // Private addresses not allowed: as in production.
    let app = spawn_app_with(|config| config.webhook_first_retry_ms = 60_000).await;
    let receiver = Receiver::start().await;
    let token = app.admin().await.access;
    app.event(&token, "mmdn", json!({})).await;
    let mut hooks = Vec::new();
    for _ in 0..2 {
        let created = app
            .post(
                "/api/v1/events/mmdn/webhooks",
                Some(&token),
                &json!({"url": "http://93.184.216.34/hook"}),
            )
            .await;
        created.assert_status(201);
        hooks.push(id_of(&created.json()));
    }
    // What the URLs were checked for no longer holds: one name now resolves to loopback
    // (as after a DNS change), the other URL is a loopback literal.
    let port = receiver.port();
    let db = app.db.client().await;
    for (hook, url) in [
        (&hooks[0], format!("http://localhost:{port}/ok/name")),
        (&hooks[1], format!("http://127.0.0.1:{port}/ok/literal")),
    ] {
        db.execute(
            "UPDATE webhook_endpoints SET url = $2 WHERE id = $1::text::uuid",
            &[hook, &url],
        )
        .await
        .unwrap();
    }

    app.register("mmdn", "anna@example.org", &[])
        .await
        .assert_status(201);

    let refused = |d: &Value| d["last_error"].is_string();
    let by_name = wait_for_delivery(&app, &token, "mmdn", &hooks[0], refused).await;
    assert_eq!(
        by_name["last_error"],
        "refused: the host resolves to no public address (loopback, private, link-local and \
         other non-public addresses are not called)"
    );
    assert_eq!(by_name["last_status_code"], Value::Null);
    assert_eq!(by_name["status"], "pending", "tried again later");
    let literal = wait_for_delivery(&app, &token, "mmdn", &hooks[1], refused).await;
    assert_eq!(
        literal["last_error"],
        "refused: the URL's address is not public (loopback, private, link-local and other \
         non-public addresses are not called)"
    );
    assert!(receiver.requests().await.is_empty(), "nothing reached it");
}

#[tokio::test]
async fn a_hanging_endpoint_delays_no_other() {
    let (app, receiver, token) = app_with_receiver().await;
    app.event(&token, "mmdn", json!({})).await;
    endpoint(&app, &token, "mmdn", &receiver, "/hang/h", json!({})).await;
    endpoint(&app, &token, "mmdn", &receiver, "/ok/fast", json!({})).await;

    for n in 0..3 {
        app.register("mmdn", &format!("p{n}@example.org"), &[])
            .await
            .assert_status(201);
    }

    receiver
        .wait("/ok/fast", "every message", |r| delivered(r).len() == 3)
        .await;
    let hanging = receiver.requests_to("/hang/h").await;
    assert!(!hanging.is_empty(), "the hanging endpoint was called");
    assert!(
        hanging.iter().all(|r| r["finished"].is_null()),
        "and is still hanging: {hanging:#?}"
    );
}

#[tokio::test]
async fn a_huge_answer_is_not_read_and_a_redirect_is_not_followed() {
    let (app, receiver, token) = app_with_receiver().await;
    app.event(&token, "mmdn", json!({})).await;
    let (big, _) = endpoint(&app, &token, "mmdn", &receiver, "/big/b", json!({})).await;
    let (redirect, _) = endpoint(&app, &token, "mmdn", &receiver, "/redirect/r", json!({})).await;

    app.register("mmdn", "anna@example.org", &[])
        .await
        .assert_status(201);

    let delivered =
        wait_for_delivery(&app, &token, "mmdn", &big, |d| d["status"] == "delivered").await;
    assert_eq!(delivered["attempts"], 1);
    let detail = app
        .get(
            &format!(
                "/api/v1/events/mmdn/webhooks/{big}/deliveries/{}",
                delivered["id"].as_str().unwrap()
            ),
            Some(&token),
        )
        .await
        .json();
    assert_eq!(
        detail["attempts_made"][0]["response_excerpt"],
        "x".repeat(1024)
    );

    let retried = wait_for_delivery(&app, &token, "mmdn", &redirect, |d| {
        d["attempts"].as_i64() >= Some(2) && !d["in_progress"].as_bool().unwrap()
    })
    .await;
    assert_eq!(retried["status"], "pending");
    assert_eq!(retried["last_status_code"], 307);
    assert_eq!(
        retried["last_error"],
        "answered 307: redirects are not followed"
    );
    assert!(
        receiver.requests_to("/ok/").await.is_empty(),
        "the redirect was not followed"
    );
}

#[tokio::test]
async fn two_instances_never_send_one_message_at_the_same_time() {
    let (app, receiver, token) = app_with_receiver().await;
    let other = another_instance_with(&app, fast).await;
    app.event(&token, "mmdn", json!({})).await;
    let session = id_of(&app.session(&token, "mmdn", json!({})).await);
    let (webhook, _) = endpoint(&app, &token, "mmdn", &receiver, "/slow/30/two", json!({})).await;

    let session = session.as_str();
    let registering = (0..20).map(|n| {
        let instance = if n % 2 == 0 { &app } else { &other };
        async move {
            instance
                .register("mmdn", &format!("p{n}@example.org"), &[session])
                .await
                .assert_status(201);
        }
    });
    futures_util::future::join_all(registering).await;

    let requests = receiver
        .wait("/slow/30/two", "40 messages", |r| delivered(r).len() >= 40)
        .await;
    assert!(
        requests.iter().all(|r| r["overlapping"] == false),
        "a message was being sent twice at once: {requests:#?}"
    );
    let mut per_message: BTreeMap<&str, usize> = BTreeMap::new();
    for request in &requests {
        *per_message
            .entry(request["webhook_id"].as_str().unwrap())
            .or_default() += 1;
    }
    assert_eq!(per_message.len(), 40);
    assert!(per_message.values().all(|n| *n == 1), "{per_message:?}");
    let listed: BTreeSet<String> = deliveries(&app, &token, "mmdn", &webhook)
        .await
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect();
    let sent: BTreeSet<String> = per_message.keys().map(|k| (*k).to_owned()).collect();
    assert_eq!(listed, sent);
}

#[tokio::test]
async fn a_rotated_secret_signs_beside_the_new_one_during_the_overlap() {
    let (app, receiver, token) = app_with_receiver().await;
    app.event(&token, "mmdn", json!({})).await;
    let (webhook, first) = endpoint(&app, &token, "mmdn", &receiver, "/ok/rot", json!({})).await;
    let rotate = async |body: Value| {
        let answer = app
            .post(
                &format!("/api/v1/events/mmdn/webhooks/{webhook}/rotate-secret"),
                Some(&token),
                &body,
            )
            .await;
        answer.assert_status(200);
        answer.json()
    };

    app.register("mmdn", "p1@example.org", &[])
        .await
        .assert_status(201);
    receiver
        .wait("/ok/rot", "a message", |r| delivered(r).len() == 1)
        .await;

    let rotated = rotate(json!({})).await;
    let second = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    assert!(rotated["previous_secret_expires_at"].is_string());
    receiver.trust("/ok/rot", &[&first, &second]).await;
    app.register("mmdn", "p2@example.org", &[])
        .await
        .assert_status(201);
    let requests = receiver
        .wait("/ok/rot", "a message", |r| delivered(r).len() == 2)
        .await;
    let during = &requests[1];
    assert_eq!(during["signature"].as_str().unwrap().split(' ').count(), 2);
    assert_eq!(
        during["verified"],
        json!([true, true]),
        "each secret verifies"
    );

    let rotated = rotate(json!({"overlap_seconds": 0})).await;
    let third = rotated["secret"].as_str().unwrap().to_owned();
    assert_eq!(rotated["previous_secret_expires_at"], Value::Null);
    receiver.trust("/ok/rot", &[&second, &third]).await;
    app.register("mmdn", "p3@example.org", &[])
        .await
        .assert_status(201);
    let requests = receiver
        .wait("/ok/rot", "a message", |r| delivered(r).len() == 3)
        .await;
    let after = &requests[2];
    assert_eq!(after["signature"].as_str().unwrap().split(' ').count(), 1);
    assert_eq!(after["verified"], json!([false, true]));

    let refused = app
        .post(
            &format!("/api/v1/events/mmdn/webhooks/{webhook}/rotate-secret"),
            Some(&token),
            &json!({"overlap_seconds": 604801}),
        )
        .await;
    assert_eq!(
        refused.assert_problem(422, "validation_failed")["errors"][0]["field"],
        "overlap_seconds"
    );
}

#[tokio::test]
async fn organisers_manage_endpoints_and_choose_the_kinds_sent() {
    let (app, receiver, token) = app_with_receiver().await;
    app.event(&token, "mmdn", json!({})).await;
    let (webhook, _) = endpoint(
        &app,
        &token,
        "mmdn",
        &receiver,
        "/ok/kinds",
        json!({"description": "CRM", "event_types": ["registration.cancelled"]}),
    )
    .await;
    let path = format!("/api/v1/events/mmdn/webhooks/{webhook}");
    let shown = app.get(&path, Some(&token)).await.json();
    assert_eq!(shown["description"], "CRM");
    assert_eq!(shown["event_types"], json!(["registration.cancelled"]));
    assert_eq!(shown["enabled"], true);
    assert!(shown.get("secret").is_none(), "the secret is shown once");
    let listed = app
        .get("/api/v1/events/mmdn/webhooks", Some(&token))
        .await
        .json();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);

    let anna = app.register("mmdn", "anna@example.org", &[]).await.json();
    app.delete(
        &format!("/api/v1/registrations/{}", id_of(&anna)),
        Some(anna["manage_token"].as_str().unwrap()),
    )
    .await
    .assert_status(200);
    let requests = receiver
        .wait("/ok/kinds", "the cancellation", |r| {
            !delivered(r).is_empty()
        })
        .await;
    consumed(&app).await;
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0]["body"]["type"], "registration.cancelled");

    let patched = app
        .patch(
            &path,
            Some(&token),
            &json!({"description": null, "event_types": []}),
        )
        .await;
    patched.assert_status(200);
    assert_eq!(patched.json()["description"], Value::Null);
    assert_eq!(patched.json()["event_types"], json!([]));
    let disabled = app
        .patch(&path, Some(&token), &json!({"enabled": false}))
        .await
        .json();
    assert_eq!(disabled["enabled"], false);
    assert_eq!(disabled["disabled_reason"], "disabled by an organiser");
    app.register("mmdn", "boris@example.org", &[])
        .await
        .assert_status(201);
    consumed(&app).await;
    assert_eq!(deliveries(&app, &token, "mmdn", &webhook).await.len(), 1);

    app.delete(&path, Some(&token)).await.assert_status(204);
    app.get(&path, Some(&token))
        .await
        .assert_problem(404, "not_found");
}

/// The service as its own process, as in production: killed with SIGKILL, started again.
struct Process {
    child: tokio::process::Child,
    address: String,
}

impl Process {
    async fn start(db: &TestDb) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_registrar"))
            .env("DATABASE_URL", &db.url)
            .env("REGISTRAR_BIND", format!("127.0.0.1:{port}"))
            .env("REGISTRAR_JWT_SECRET", JWT_SECRET)
            .env("REGISTRAR_REGISTRATION_RATE_LIMIT", "0")
            .env("REGISTRAR_LOGIN_RATE_LIMIT", "0")
            .env("REGISTRAR_WEBHOOK_ALLOW_PRIVATE", "true")
            // A lease of 4 s, so that the test need not wait long for it to run out.
            .env("REGISTRAR_WEBHOOK_TIMEOUT_MS", "2000")
            .env("RUST_LOG", "warn")
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let address = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while reqwest::get(format!("{address}/readyz")).await.is_err() {
            assert!(started.elapsed() < Duration::from_secs(30), "not started");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Process { child, address }
    }
}

#[tokio::test]
async fn a_message_cut_off_by_sigkill_is_sent_again_with_the_same_id_after_a_restart() {
    let db = TestDb::new().await;
    let receiver = Receiver::start().await;
    let mut first = Process::start(&db).await;
    {
        use diesel_async::AsyncConnection;
        let mut conn = diesel_async::AsyncPgConnection::establish(&db.url)
            .await
            .unwrap();
        registrar::users::create_admin(&mut conn, "admin@example.org", "Admin", PASSWORD.into())
            .await
            .unwrap();
    }
    let http = reqwest::Client::new();
    let login: Value = http
        .post(format!("{}/api/v1/auth/login", first.address))
        .json(&json!({"email": "admin@example.org", "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["access_token"].as_str().unwrap();
    let event = json!({"slug": "a", "title": "Событие", "time_zone": "Europe/Moscow",
        "starts_on": "2027-04-20", "ends_on": "2027-04-24", "status": "published"});
    let created = http
        .post(format!("{}/api/v1/events", first.address))
        .bearer_auth(token)
        .json(&event)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    let hook: Value = http
        .post(format!("{}/api/v1/events/a/webhooks", first.address))
        .bearer_auth(token)
        .json(&json!({"url": receiver.url("/hang-first/k")}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    receiver
        .trust("/hang-first/k", &[hook["secret"].as_str().unwrap()])
        .await;

    let registered = http
        .post(format!("{}/api/v1/events/a/registrations", first.address))
        .json(&registration_body("anna@example.org", &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status().as_u16(), 201);
    // Killed while the receiver holds the first attempt.
    let cut = receiver
        .wait("/hang-first/k", "the first attempt", |r| !r.is_empty())
        .await;
    first.child.start_kill().unwrap();
    first.child.wait().await.unwrap();
    let attempts_logged = |db: tokio_postgres::Client| async move {
        db.query_one("SELECT count(*) FROM webhook_attempts", &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    assert_eq!(
        attempts_logged(db.client().await).await,
        0,
        "killed before the attempt ended"
    );

    let _second = Process::start(&db).await;
    let requests = receiver
        .wait("/hang-first/k", "the message again", |r| {
            !delivered(r).is_empty()
        })
        .await;
    assert_eq!(requests.len(), 2, "{requests:#?}");
    assert!(requests[0]["finished"].is_null());
    assert_eq!(requests[1]["webhook_id"], cut[0]["webhook_id"]);
    assert_eq!(requests[1]["raw"], cut[0]["raw"]);
    assert_eq!(requests[1]["verified"], json!([true]));
    assert_eq!(requests[1]["body"]["type"], "registration.created");
}
