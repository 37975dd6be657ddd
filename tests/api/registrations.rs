//! Registrations: the rules a registration obeys, each error code, self-service with the
//! manage token, the organisers' side, history, privacy and idempotent retries.

use std::collections::HashSet;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, merge, registration_body, spawn_app};

pub fn id_of(value: &Value) -> String {
    value["id"].as_str().unwrap().to_owned()
}

/// One number from the test's database.
pub async fn count(app: &TestApp, sql: &str) -> i64 {
    app.db
        .client()
        .await
        .query_one(sql, &[])
        .await
        .unwrap()
        .get(0)
}

/// Times of a session on day `day` of April 2027 (20 to 24), `from` to `to` o'clock Moscow time.
fn at(day: u32, from: u32, to: u32) -> Value {
    json!({
        "starts_at": format!("2027-04-{day}T{from:02}:00:00+03:00"),
        "ends_at": format!("2027-04-{day}T{to:02}:00:00+03:00"),
    })
}

fn with(mut base: Value, extra: Value) -> Value {
    merge(&mut base, extra);
    base
}

/// An app with an admin (the owner of the events it creates) and a published event `mmdn`.
async fn app_with_event(event: Value) -> (TestApp, String) {
    let app = spawn_app().await;
    let token = app.admin().await.access;
    app.event(&token, "mmdn", event).await;
    (app, token)
}

async fn session(app: &TestApp, token: &str, fields: Value) -> String {
    id_of(&app.session(token, "mmdn", fields).await)
}

/// A public registration that must succeed: (id, manage token, answer body).
async fn registered(app: &TestApp, email: &str, sessions: &[&str]) -> (String, String, Value) {
    let answer = app.register("mmdn", email, sessions).await;
    answer.assert_status(201);
    let body = answer.json();
    (
        id_of(&body),
        body["manage_token"].as_str().unwrap().to_owned(),
        body,
    )
}

async fn view(app: &TestApp, token: &str, id: &str) -> Value {
    let answer = app
        .get(&format!("/api/v1/registrations/{id}"), Some(token))
        .await;
    answer.assert_status(200);
    answer.json()
}

/// A registration's places as (session, status, waitlist position).
fn places(view: &Value) -> Vec<(String, String, Value)> {
    view["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["session_id"].as_str().unwrap().to_owned(),
                p["status"].as_str().unwrap().to_owned(),
                p["waitlist_position"].clone(),
            )
        })
        .collect()
}

fn place(session: &str, status: &str, position: Value) -> (String, String, Value) {
    (session.to_owned(), status.to_owned(), position)
}

async fn counts(app: &TestApp, session: &str) -> Value {
    let answer = app
        .get(
            &format!("/api/v1/events/mmdn/sessions/{session}/counts"),
            None,
        )
        .await;
    answer.assert_status(200);
    answer.json()
}

fn counts_of(session: &str, capacity: Value, confirmed: i64, waitlisted: i64) -> Value {
    let seats_left = capacity
        .as_i64()
        .map_or(Value::Null, |c| json!((c - confirmed).max(0)));
    json!({
        "session_id": session, "capacity": capacity, "confirmed": confirmed,
        "waitlisted": waitlisted, "seats_left": seats_left,
    })
}

/// (action, session, actor) of each history entry, oldest first.
async fn history(app: &TestApp, token: &str, id: &str) -> Vec<(String, Value, String)> {
    let answer = app
        .get(&format!("/api/v1/registrations/{id}/history"), Some(token))
        .await;
    answer.assert_status(200);
    answer
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["session_id"].clone(),
                e["actor"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn entry(action: &str, session: Option<&str>, actor: &str) -> (String, Value, String) {
    (action.to_owned(), json!(session), actor.to_owned())
}

async fn manual(app: &TestApp, token: &str, body: Value) -> crate::helpers::Answer {
    app.post(
        "/api/v1/events/mmdn/registrations/manual",
        Some(token),
        &body,
    )
    .await
}

async fn registration_count(app: &TestApp) -> i64 {
    count(app, "SELECT count(*) FROM registrations").await
}

// --- Registering -------------------------------------------------------------------------

#[tokio::test]
async fn registering_answers_with_each_outcome_and_a_manage_token() {
    let (app, token) = app_with_event(json!({})).await;
    let limited = session(&app, &token, with(at(23, 11, 13), json!({"capacity": 5}))).await;
    let unlimited = session(&app, &token, at(24, 11, 13)).await;

    let answer = app
        .register("mmdn", "anna@example.org", &[&unlimited, &limited])
        .await;

    answer.assert_status(201);
    let body = answer.json();
    let id = id_of(&body);
    assert_eq!(
        answer.header("location"),
        Some(format!("/api/v1/registrations/{id}").as_str())
    );
    assert_eq!(answer.header("idempotent-replayed"), None);
    let manage = body["manage_token"].as_str().unwrap();
    assert!(manage.starts_with("rgm_") && manage.len() == 47, "{manage}");
    assert_eq!(body["status"], "active");
    assert_eq!(
        body["sessions"],
        json!([
            {"session_id": unlimited, "status": "confirmed", "waitlist_position": null},
            {"session_id": limited, "status": "confirmed", "waitlist_position": null},
        ])
    );
    // Only a digest of the token is stored.
    let stored = count(
        &app,
        &format!(
            "SELECT count(*) FROM registrations WHERE id = '{id}' \
             AND manage_token_hash = sha256(convert_to('{manage}', 'UTF8'))"
        ),
    )
    .await;
    assert_eq!(stored, 1);
    assert_eq!(
        counts(&app, &limited).await,
        counts_of(&limited, json!(5), 1, 0)
    );
}

#[tokio::test]
async fn registering_past_capacity_joins_the_waitlist() {
    let (app, token) = app_with_event(json!({})).await;
    let s = session(&app, &token, json!({"capacity": 1})).await;
    registered(&app, "anna@example.org", &[&s]).await;

    let (_, _, second) = registered(&app, "boris@example.org", &[&s]).await;
    let (_, _, third) = registered(&app, "clara@example.org", &[&s]).await;

    assert_eq!(
        second["sessions"],
        json!([{"session_id": s, "status": "waitlisted", "waitlist_position": 1}])
    );
    assert_eq!(
        third["sessions"],
        json!([{"session_id": s, "status": "waitlisted", "waitlist_position": 2}])
    );
    assert_eq!(counts(&app, &s).await, counts_of(&s, json!(1), 1, 2));
}

#[tokio::test]
async fn a_full_session_without_waitlist_refuses_and_nothing_is_created() {
    let (app, token) = app_with_event(json!({})).await;
    // Created last, the full session is claimed after the others (sessions are claimed in
    // the order of their ids), so a seat and a waitlist place are taken before the refusal.
    let roomy = session(
        &app,
        &token,
        with(
            at(23, 11, 13),
            json!({"capacity": 10, "waitlist_enabled": false}),
        ),
    )
    .await;
    let queued = session(&app, &token, with(at(22, 11, 13), json!({"capacity": 1}))).await;
    let full = session(
        &app,
        &token,
        with(
            at(24, 11, 13),
            json!({"capacity": 1, "waitlist_enabled": false}),
        ),
    )
    .await;
    registered(&app, "anna@example.org", &[&full, &queued]).await;
    let before = registration_count(&app).await;

    let answer = app
        .register("mmdn", "boris@example.org", &[&roomy, &queued, &full])
        .await;

    let problem = answer.assert_problem(409, "session_full");
    assert_eq!(problem["session_id"], full.as_str());
    assert_eq!(registration_count(&app).await, before);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM registrations WHERE email = 'boris@example.org'"
        )
        .await,
        0
    );
    let taken = count(
        &app,
        &format!(
            "SELECT count(*) FROM session_seats \
             WHERE session_id = '{roomy}' AND registration_id IS NOT NULL"
        ),
    )
    .await;
    assert_eq!(taken, 0);
    assert_eq!(
        counts(&app, &roomy).await,
        counts_of(&roomy, json!(10), 0, 0)
    );
    assert_eq!(
        counts(&app, &queued).await,
        counts_of(&queued, json!(1), 1, 0)
    );
    assert_eq!(counts(&app, &full).await, counts_of(&full, json!(1), 1, 0));
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM changes WHERE registration_id IS NOT NULL"
        )
        .await,
        3,
        "only anna's created and two confirmed entries"
    );
}

#[tokio::test]
async fn an_event_at_capacity_refuses_with_event_full() {
    let (app, token) = app_with_event(json!({"capacity": 2})).await;
    let s = session(&app, &token, json!({})).await;
    let (first, first_token, _) = registered(&app, "anna@example.org", &[&s]).await;
    registered(&app, "boris@example.org", &[]).await;

    let answer = app.register("mmdn", "clara@example.org", &[&s]).await;

    answer.assert_problem(409, "event_full");
    assert_eq!(registration_count(&app).await, 2);
    assert_eq!(counts(&app, &s).await, counts_of(&s, Value::Null, 1, 0));
    // A cancellation frees a place.
    app.delete(
        &format!("/api/v1/registrations/{first}"),
        Some(&first_token),
    )
    .await
    .assert_status(200);
    registered(&app, "clara@example.org", &[&s]).await;
    app.register("mmdn", "dmitry@example.org", &[])
        .await
        .assert_problem(409, "event_full");
}

#[tokio::test]
async fn an_organiser_exceeding_capacity_on_purpose_still_takes_a_free_event_place() {
    let (app, token) = app_with_event(json!({"capacity": 2})).await;
    let body = with(
        registration_body("guest@example.org", &[]),
        json!({"over_capacity": true}),
    );
    manual(&app, &token, body).await.assert_status(201);

    registered(&app, "anna@example.org", &[]).await;
    let answer = app.register("mmdn", "boris@example.org", &[]).await;

    answer.assert_problem(409, "event_full");
    assert_eq!(registration_count(&app).await, 2);
    let held = count(
        &app,
        "SELECT count(*) FROM event_seats WHERE registration_id IS NOT NULL",
    )
    .await;
    assert_eq!(held, 2);
}

#[tokio::test]
async fn a_place_freed_in_a_full_event_goes_to_a_registration_beyond_its_capacity() {
    let (app, token) = app_with_event(json!({"capacity": 1})).await;
    let (first, first_token, _) = registered(&app, "anna@example.org", &[]).await;
    let body = with(
        registration_body("guest@example.org", &[]),
        json!({"over_capacity": true}),
    );
    manual(&app, &token, body).await.assert_status(201);

    app.delete(
        &format!("/api/v1/registrations/{first}"),
        Some(&first_token),
    )
    .await
    .assert_status(200);

    // One active registration for one place: the event is still full.
    app.register("mmdn", "boris@example.org", &[])
        .await
        .assert_problem(409, "event_full");
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM registrations WHERE status = 'active'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn unpublished_events_take_no_public_registrations() {
    let app = spawn_app().await;
    let token = app.admin().await.access;
    app.event(&token, "draft", json!({"status": "draft"})).await;

    let answer = app.register("draft", "anna@example.org", &[]).await;

    answer.assert_problem(404, "not_found");
    assert_eq!(registration_count(&app).await, 0);
}

// --- Waitlist promotions -----------------------------------------------------------------

#[tokio::test]
async fn cancelling_a_registration_promotes_the_first_waitlisted() {
    let (app, token) = app_with_event(json!({})).await;
    let s = session(&app, &token, json!({"capacity": 1})).await;
    let (anna, anna_token, _) = registered(&app, "anna@example.org", &[&s]).await;
    let (boris, boris_token, _) = registered(&app, "boris@example.org", &[&s]).await;
    let (clara, clara_token, _) = registered(&app, "clara@example.org", &[&s]).await;

    let answer = app
        .delete(&format!("/api/v1/registrations/{anna}"), Some(&anna_token))
        .await;

    answer.assert_status(200);
    let body = answer.json();
    assert_eq!(body["status"], "cancelled");
    assert!(body["cancelled_at"].is_string());
    assert_eq!(places(&body), [place(&s, "cancelled", Value::Null)]);
    assert_eq!(
        places(&view(&app, &boris_token, &boris).await),
        [place(&s, "confirmed", Value::Null)]
    );
    assert_eq!(
        places(&view(&app, &clara_token, &clara).await),
        [place(&s, "waitlisted", json!(1))]
    );
    assert_eq!(counts(&app, &s).await, counts_of(&s, json!(1), 1, 1));
    assert_eq!(
        history(&app, &token, &boris).await.last().unwrap(),
        &entry("promoted", Some(&s), "system")
    );
    // Cancelling again changes nothing.
    let again = app
        .delete(&format!("/api/v1/registrations/{anna}"), Some(&anna_token))
        .await;
    again.assert_status(200);
    assert_eq!(again.json()["cancelled_at"], body["cancelled_at"]);
    assert_eq!(counts(&app, &s).await, counts_of(&s, json!(1), 1, 1));
}

#[tokio::test]
async fn removing_a_session_from_a_registration_promotes_the_first_waitlisted() {
    let (app, token) = app_with_event(json!({})).await;
    let s1 = session(&app, &token, with(at(24, 11, 13), json!({"capacity": 1}))).await;
    let s2 = session(&app, &token, at(24, 14, 16)).await;
    let (anna, anna_token, _) = registered(&app, "anna@example.org", &[&s1, &s2]).await;
    let (boris, boris_token, _) = registered(&app, "boris@example.org", &[&s1]).await;

    let answer = app
        .patch(
            &format!("/api/v1/registrations/{anna}"),
            Some(&anna_token),
            &json!({"session_ids": [s2]}),
        )
        .await;

    answer.assert_status(200);
    assert_eq!(
        places(&answer.json()),
        [
            place(&s1, "cancelled", Value::Null),
            place(&s2, "confirmed", Value::Null)
        ]
    );
    assert_eq!(
        places(&view(&app, &boris_token, &boris).await),
        [place(&s1, "confirmed", Value::Null)]
    );
    assert_eq!(counts(&app, &s1).await, counts_of(&s1, json!(1), 1, 0));
    assert_eq!(
        history(&app, &token, &anna).await.last().unwrap(),
        &entry("session_removed", Some(&s1), "participant")
    );
}

#[tokio::test]
async fn raising_a_session_capacity_promotes_waitlisted_registrations_in_order() {
    let (app, token) = app_with_event(json!({})).await;
    let s = session(&app, &token, json!({"capacity": 1})).await;
    registered(&app, "anna@example.org", &[&s]).await;
    let (boris, boris_token, _) = registered(&app, "boris@example.org", &[&s]).await;
    let (clara, clara_token, _) = registered(&app, "clara@example.org", &[&s]).await;
    let (dmitry, dmitry_token, _) = registered(&app, "dmitry@example.org", &[&s]).await;

    app.patch(
        &format!("/api/v1/events/mmdn/sessions/{s}"),
        Some(&token),
        &json!({"capacity": 3}),
    )
    .await
    .assert_status(200);

    assert_eq!(
        places(&view(&app, &boris_token, &boris).await),
        [place(&s, "confirmed", Value::Null)]
    );
    assert_eq!(
        places(&view(&app, &clara_token, &clara).await),
        [place(&s, "confirmed", Value::Null)]
    );
    assert_eq!(
        places(&view(&app, &dmitry_token, &dmitry).await),
        [place(&s, "waitlisted", json!(1))]
    );
    assert_eq!(counts(&app, &s).await, counts_of(&s, json!(3), 3, 1));
    // Unlimited: everyone waiting gets in.
    app.patch(
        &format!("/api/v1/events/mmdn/sessions/{s}"),
        Some(&token),
        &json!({"capacity": null}),
    )
    .await
    .assert_status(200);
    assert_eq!(counts(&app, &s).await, counts_of(&s, Value::Null, 4, 0));
}

#[tokio::test]
async fn capacity_cannot_go_below_the_confirmed_registrations() {
    let (app, token) = app_with_event(json!({})).await;
    let s = session(&app, &token, json!({"capacity": 3})).await;
    registered(&app, "anna@example.org", &[&s]).await;
    registered(&app, "boris@example.org", &[&s]).await;

    let answer = app
        .patch(
            &format!("/api/v1/events/mmdn/sessions/{s}"),
            Some(&token),
            &json!({"capacity": 1}),
        )
        .await;

    let problem = answer.assert_problem(409, "capacity_below_confirmed");
    assert_eq!(problem["confirmed"], 2);
    assert_eq!(counts(&app, &s).await, counts_of(&s, json!(3), 2, 0));
    app.patch(
        &format!("/api/v1/events/mmdn/sessions/{s}"),
        Some(&token),
        &json!({"capacity": 2}),
    )
    .await
    .assert_status(200);
    assert_eq!(
        count(
            &app,
            &format!("SELECT count(*) FROM session_seats WHERE session_id = '{s}'")
        )
        .await,
        2
    );
    app.register("mmdn", "clara@example.org", &[&s])
        .await
        .assert_status(201);
    assert_eq!(counts(&app, &s).await, counts_of(&s, json!(2), 2, 1));
}

// --- Rules -------------------------------------------------------------------------------

#[tokio::test]
async fn registering_outside_the_event_window_is_refused() {
    let app = spawn_app().await;
    let token = app.admin().await.access;
    app.event(
        &token,
        "closed",
        json!({"registration_closes_at": "2026-01-01T00:00:00Z"}),
    )
    .await;
    app.event(
        &token,
        "later",
        json!({"registration_opens_at": "2027-04-19T00:00:00Z"}),
    )
    .await;

    let closed = app.register("closed", "anna@example.org", &[]).await;
    let not_yet = app.register("later", "anna@example.org", &[]).await;

    let problem = closed.assert_problem(409, "registration_closed");
    assert_eq!(problem.get("session_id"), None);
    not_yet.assert_problem(409, "registration_closed");
    assert_eq!(registration_count(&app).await, 0);
}

#[tokio::test]
async fn an_event_that_is_over_takes_no_public_registrations_unless_its_window_says_so() {
    let app = spawn_app().await;
    let token = app.admin().await.access;
    // Over a month ago; one of them is kept open on purpose.
    let over = json!({"starts_on": "2026-10-28", "ends_on": "2026-11-01"});
    app.event(&token, "over", over.clone()).await;
    let mut reopened = over.clone();
    merge(
        &mut reopened,
        json!({"registration_closes_at": "2099-01-01T00:00:00Z"}),
    );
    app.event(&token, "reopened", reopened).await;

    let late = app.register("over", "anna@example.org", &[]).await;
    let allowed = app.register("reopened", "anna@example.org", &[]).await;
    let by_organiser = app
        .post(
            "/api/v1/events/over/registrations/manual",
            Some(&token),
            &registration_body("boris@example.org", &[]),
        )
        .await;

    late.assert_problem(409, "registration_closed");
    allowed.assert_status(201);
    by_organiser.assert_status(201);
}

#[tokio::test]
async fn a_session_window_overrides_the_event_window() {
    let (app, token) =
        app_with_event(json!({"registration_closes_at": "2026-01-01T00:00:00Z"})).await;
    let late = session(
        &app,
        &token,
        with(
            at(24, 11, 13),
            json!({"registration_closes_at": "2027-04-01T00:00:00Z"}),
        ),
    )
    .await;
    let ordinary = session(&app, &token, at(23, 11, 13)).await;

    let answer = app.register("mmdn", "anna@example.org", &[&late]).await;
    let refused = app
        .register("mmdn", "boris@example.org", &[&late, &ordinary])
        .await;

    answer.assert_status(201);
    assert_eq!(answer.json()["sessions"][0]["status"], "confirmed");
    let problem = refused.assert_problem(409, "registration_closed");
    assert_eq!(problem["session_id"], ordinary.as_str());
    assert_eq!(registration_count(&app).await, 1);
}

#[tokio::test]
async fn a_session_window_closed_early_refuses_that_session() {
    let (app, token) = app_with_event(json!({})).await;
    let closed = session(
        &app,
        &token,
        with(
            at(24, 11, 13),
            json!({"registration_closes_at": "2026-01-01T00:00:00Z"}),
        ),
    )
    .await;
    let open = session(&app, &token, at(23, 11, 13)).await;

    let answer = app
        .register("mmdn", "anna@example.org", &[&open, &closed])
        .await;

    let problem = answer.assert_problem(409, "registration_closed");
    assert_eq!(problem["session_id"], closed.as_str());
    assert_eq!(registration_count(&app).await, 0);
    let (id, manage, _) = registered(&app, "anna@example.org", &[&open]).await;
    app.patch(
        &format!("/api/v1/registrations/{id}"),
        Some(&manage),
        &json!({"session_ids": [open, closed]}),
    )
    .await
    .assert_problem(409, "registration_closed");
}

#[tokio::test]
async fn draft_sessions_cannot_be_booked_and_cancelled_ones_are_refused() {
    let (app, token) = app_with_event(json!({})).await;
    let draft = session(
        &app,
        &token,
        with(at(24, 11, 13), json!({"status": "draft"})),
    )
    .await;
    let cancelled = session(&app, &token, at(23, 11, 13)).await;
    app.patch(
        &format!("/api/v1/events/mmdn/sessions/{cancelled}"),
        Some(&token),
        &json!({"status": "cancelled"}),
    )
    .await
    .assert_status(200);

    let to_draft = app.register("mmdn", "anna@example.org", &[&draft]).await;
    let to_cancelled = app
        .register("mmdn", "anna@example.org", &[&cancelled])
        .await;

    let problem = to_draft.assert_problem(422, "validation_failed");
    assert_eq!(problem["errors"][0]["field"], "session_ids[0]");
    let problem = to_cancelled.assert_problem(409, "session_cancelled");
    assert_eq!(problem["session_id"], cancelled.as_str());
    assert_eq!(registration_count(&app).await, 0);
}

#[tokio::test]
async fn one_active_registration_per_address_whatever_its_unicode_form() {
    let (app, _) = app_with_event(json!({})).await;
    for (first, again) in [
        // K: the Kelvin sign (U+212A).
        ("kate@example.org", "\u{212a}ate@example.org"),
        ("kim@example.org", "ｋｉｍ@example.org"),
        ("straße@example.org", "STRASSE@example.org"),
        ("anna@пример.рф", "anna@xn--e1afmkfd.xn--p1ai"),
        ("boris@xn--e1afmkfd.xn--p1ai", "Boris@Пример.РФ"),
    ] {
        let (id, manage, _) = registered(&app, first, &[]).await;

        let problem = app
            .register("mmdn", again, &[])
            .await
            .assert_problem(409, "already_registered");

        assert_eq!(problem["field"], "email", "{again}");
        // The address stays as it was written.
        assert_eq!(view(&app, &manage, &id).await["email"], first);
    }
}

#[tokio::test]
async fn organisers_find_a_registration_by_any_form_of_its_address() {
    let (app, token) = app_with_event(json!({})).await;
    registered(&app, "anna@пример.рф", &[]).await;
    registered(&app, "Straße@example.org", &[]).await;
    registered(&app, "boris@example.org", &[]).await;

    for (q, expected) in [
        ("anna@xn--e1afmkfd.xn--p1ai", "anna@пример.рф"),
        ("ANNA@ПРИМЕР.РФ", "anna@пример.рф"),
        ("strasse", "Straße@example.org"),
    ] {
        let answer = app
            .get(
                &format!("/api/v1/events/mmdn/registrations?q={}", urlencoding(q)),
                Some(&token),
            )
            .await;
        answer.assert_status(200);
        let found: Vec<&str> = answer.json()["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["email"].as_str().unwrap())
            .map(|e| if e == expected { expected } else { "another" })
            .collect();
        assert_eq!(found, [expected], "{q}");
    }
}

fn urlencoding(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Registrations and accounts stored before the addresses' comparison rule: their keys are
/// brought to the rule when the service starts, and rows whose addresses turn out to be the
/// same are all kept.
#[tokio::test]
async fn stored_addresses_are_brought_to_the_comparison_rule_at_start() {
    let (app, token) = app_with_event(json!({})).await;
    let (strasse, _, _) = registered(&app, "strasse@example.org", &[]).await;
    let (strasse_too, strasse_manage, _) = registered(&app, "second@example.org", &[]).await;
    let (anna, _, _) = registered(&app, "third@example.org", &[]).await;
    let (cancelled, cancelled_manage, _) = registered(&app, "fourth@example.org", &[]).await;
    app.delete(
        &format!("/api/v1/registrations/{cancelled}"),
        Some(&cancelled_manage),
    )
    .await
    .assert_status(200);
    let olga = account(&app, &token, "olga@example.org", "first password 1").await;
    let olga_too = account(&app, &token, "olga2@example.org", "second password 2").await;
    // As an earlier version stored them: keys lowercased only, under rule 0.
    let db = app.db.client().await;
    for (id, email) in [
        (&strasse_too, "Straße@example.org"),
        (&anna, "Anna@Пример.РФ"),
        (&cancelled, "anna@xn--e1afmkfd.xn--p1ai"),
    ] {
        db.execute(
            "UPDATE registrations SET email = $2, email_normalized = lower($2), email_rule = 0 \
             WHERE id::text = $1",
            &[id, &email],
        )
        .await
        .unwrap();
    }
    db.execute(
        "UPDATE registrations SET email_normalized = lower(email), email_rule = 0",
        &[],
    )
    .await
    .unwrap();
    for (id, email) in [
        (&olga, "olga@пример.рф"),
        (&olga_too, "OLGA@xn--e1afmkfd.xn--p1ai"),
    ] {
        db.execute(
            "UPDATE users SET email = $2, email_normalized = lower($2), email_rule = 0 \
             WHERE id::text = $1",
            &[id, &email],
        )
        .await
        .unwrap();
    }

    // A new instance starts on the same database.
    let restarted = crate::helpers::another_instance(&app).await;

    let rows = db
        .query(
            "SELECT id::text, email, email_normalized, email_rule, email_shared, status \
             FROM registrations ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let state: Vec<(String, String, String, i16, bool, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
        .collect();
    let active = |email: &str, key: &str, shared: bool| {
        (
            email.to_owned(),
            key.to_owned(),
            1_i16,
            shared,
            "active".to_owned(),
        )
    };
    let of = |id: &str| {
        let (_, email, key, rule, shared, status) =
            state.iter().find(|row| row.0 == id).unwrap().clone();
        (email, key, rule, shared, status)
    };
    assert_eq!(
        of(&strasse),
        active("strasse@example.org", "strasse@example.org", false)
    );
    // The second address of the same mailbox is kept, active, and exempt from the rule.
    assert_eq!(
        of(&strasse_too),
        active("Straße@example.org", "strasse@example.org", true)
    );
    assert_eq!(
        of(&anna),
        active("Anna@Пример.РФ", "anna@xn--e1afmkfd.xn--p1ai", false)
    );
    // A cancelled registration competes with nothing.
    assert_eq!(
        of(&cancelled),
        (
            "anna@xn--e1afmkfd.xn--p1ai".to_owned(),
            "anna@xn--e1afmkfd.xn--p1ai".to_owned(),
            1,
            false,
            "cancelled".to_owned()
        )
    );
    // The rule holds from now on, through either instance.
    for app in [&app, &restarted] {
        app.register("mmdn", "STRASSE@example.org", &[])
            .await
            .assert_problem(409, "already_registered");
        app.register("mmdn", "anna@пример.рф", &[])
            .await
            .assert_problem(409, "already_registered");
    }
    // The participant of the kept duplicate still manages it.
    app.get(
        &format!("/api/v1/registrations/{strasse_too}"),
        Some(&strasse_manage),
    )
    .await
    .assert_status(200);
    // Both accounts of one mailbox still log in, each with its own password.
    let users = db
        .query("SELECT email_normalized, email_shared FROM users WHERE id::text = ANY($1) ORDER BY email_shared", &[&vec![olga.clone(), olga_too.clone()]])
        .await
        .unwrap();
    let users: Vec<(String, bool)> = users.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        users,
        [
            ("olga@xn--e1afmkfd.xn--p1ai".to_owned(), false),
            ("olga@xn--e1afmkfd.xn--p1ai".to_owned(), true)
        ]
    );
    for password in ["first password 1", "second password 2"] {
        restarted
            .login("olga@пример.рф", password)
            .await
            .assert_status(200);
    }
    restarted
        .login("olga@пример.рф", "a third password")
        .await
        .assert_problem(401, "invalid_credentials");
}

async fn account(app: &TestApp, admin: &str, email: &str, password: &str) -> String {
    let answer = app
        .post(
            "/api/v1/users",
            Some(admin),
            &json!({"email": email, "display_name": "Ольга", "password": password}),
        )
        .await;
    answer.assert_status(201);
    answer.json()["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn one_active_registration_per_email_compared_case_insensitively_after_trimming() {
    let (app, _) = app_with_event(json!({})).await;
    registered(&app, "Anna.Ivanova@Example.org", &[]).await;

    let answer = app
        .register("mmdn", "  anna.ivanova@EXAMPLE.ORG ", &[])
        .await;

    let problem = answer.assert_problem(409, "already_registered");
    assert_eq!(problem["field"], "email");
    assert_eq!(registration_count(&app).await, 1);
    // Changing another registration's address to this one is refused alike.
    let (boris, manage, _) = registered(&app, "boris@example.org", &[]).await;
    app.patch(
        &format!("/api/v1/registrations/{boris}"),
        Some(&manage),
        &json!({"email": " ANNA.IVANOVA@example.org"}),
    )
    .await
    .assert_problem(409, "already_registered");
    assert_eq!(
        view(&app, &manage, &boris).await["email"],
        "boris@example.org"
    );
}

#[tokio::test]
async fn a_cancelled_registration_frees_its_email_for_a_new_one() {
    let (app, _) = app_with_event(json!({})).await;
    let (id, manage, _) = registered(&app, "anna@example.org", &[]).await;
    app.delete(&format!("/api/v1/registrations/{id}"), Some(&manage))
        .await
        .assert_status(200);

    let (again, _, _) = registered(&app, "ANNA@example.org", &[]).await;

    assert_ne!(again, id);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM registrations WHERE email_normalized = 'anna@example.org' \
             AND status = 'active'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn overlapping_sessions_in_one_request_conflict() {
    let (app, token) = app_with_event(json!({})).await;
    let a = session(&app, &token, at(24, 11, 13)).await;
    let b = session(&app, &token, at(24, 12, 14)).await;
    let c = session(&app, &token, at(24, 13, 15)).await;

    let answer = app
        .register("mmdn", "anna@example.org", &[&a, &c, &b])
        .await;

    let problem = answer.assert_problem(409, "schedule_conflict");
    let named: HashSet<&str> = problem["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(
        named == HashSet::from([a.as_str(), b.as_str()])
            || named == HashSet::from([c.as_str(), b.as_str()]),
        "{problem}"
    );
    assert_eq!(registration_count(&app).await, 0);
    // Back to back is no overlap.
    registered(&app, "anna@example.org", &[&a, &c]).await;
}

#[tokio::test]
async fn adding_a_session_that_overlaps_one_already_held_conflicts() {
    let (app, token) = app_with_event(json!({})).await;
    let a = session(&app, &token, at(24, 11, 13)).await;
    let b = session(&app, &token, at(24, 12, 14)).await;
    let (id, manage, _) = registered(&app, "anna@example.org", &[&a]).await;

    let answer = app
        .patch(
            &format!("/api/v1/registrations/{id}"),
            Some(&manage),
            &json!({"session_ids": [a, b]}),
        )
        .await;

    let problem = answer.assert_problem(409, "schedule_conflict");
    assert_eq!(problem["sessions"], json!([a, b]));
    assert_eq!(
        places(&view(&app, &manage, &id).await),
        [place(&a, "confirmed", Value::Null)]
    );
    // Swapping one for the other is fine.
    app.patch(
        &format!("/api/v1/registrations/{id}"),
        Some(&manage),
        &json!({"session_ids": [b]}),
    )
    .await
    .assert_status(200);
}

#[tokio::test]
async fn events_that_allow_overlaps_take_overlapping_sessions() {
    let (app, token) = app_with_event(json!({"allow_overlapping_sessions": true})).await;
    let a = session(&app, &token, at(24, 11, 13)).await;
    let b = session(&app, &token, at(24, 12, 14)).await;
    let c = session(&app, &token, at(24, 11, 12)).await;

    let (id, manage, body) = registered(&app, "anna@example.org", &[&a, &b]).await;
    let answer = app
        .patch(
            &format!("/api/v1/registrations/{id}"),
            Some(&manage),
            &json!({"session_ids": [a, b, c]}),
        )
        .await;

    assert_eq!(body["sessions"].as_array().unwrap().len(), 2);
    answer.assert_status(200);
    assert_eq!(
        places(&answer.json()),
        [
            place(&a, "confirmed", Value::Null),
            place(&c, "confirmed", Value::Null),
            place(&b, "confirmed", Value::Null),
        ]
    );
}

#[tokio::test]
async fn consent_must_be_true() {
    let (app, _) = app_with_event(json!({})).await;
    let body = with(
        registration_body("anna@example.org", &[]),
        json!({"consent": false}),
    );

    let answer = app
        .post("/api/v1/events/mmdn/registrations", None, &body)
        .await;

    let problem = answer.assert_problem(422, "validation_failed");
    assert_eq!(
        problem["errors"],
        json!([{"field": "consent", "message": "must be true to register"}])
    );
    assert_eq!(registration_count(&app).await, 0);
}

// --- Participant self-service ------------------------------------------------------------

#[tokio::test]
async fn participants_view_change_and_cancel_their_registration_with_the_manage_token() {
    let (app, token) = app_with_event(json!({})).await;
    let a = session(&app, &token, with(at(24, 11, 13), json!({"capacity": 10}))).await;
    let b = session(&app, &token, at(23, 11, 13)).await;
    let (id, manage, _) = registered(&app, "anna@example.org", &[&a]).await;

    let seen = view(&app, &manage, &id).await;
    let changed = app
        .patch(
            &format!("/api/v1/registrations/{id}"),
            Some(&manage),
            &json!({"city": "Апатиты", "phone": "+7 815 555-12-34", "session_ids": [b]}),
        )
        .await;
    let beyond = app
        .patch(
            &format!("/api/v1/registrations/{id}"),
            Some(&manage),
            &json!({"over_capacity": true}),
        )
        .await;
    let cancelled = app
        .delete(&format!("/api/v1/registrations/{id}"), Some(&manage))
        .await;

    assert_eq!(seen["id"], id.as_str());
    assert_eq!(seen["email"], "anna@example.org");
    assert_eq!(seen["full_name"], "Анна Сергеевна Иванова");
    assert_eq!(seen["city"], "Мончегорск");
    assert_eq!(seen["source"], "public");
    assert_eq!(seen["status"], "active");
    assert_eq!(places(&seen), [place(&a, "confirmed", Value::Null)]);
    changed.assert_status(200);
    let body = changed.json();
    assert_eq!(body["city"], "Апатиты");
    assert_eq!(body["phone"], "+7 815 555-12-34");
    assert_eq!(body["organisation"], "АНО «Городские события»");
    assert_eq!(
        places(&body),
        [
            place(&b, "confirmed", Value::Null),
            place(&a, "cancelled", Value::Null),
        ]
    );
    beyond.assert_problem(403, "forbidden");
    cancelled.assert_status(200);
    assert_eq!(cancelled.json()["status"], "cancelled");
    assert_eq!(counts(&app, &a).await, counts_of(&a, json!(10), 0, 0));
    assert_eq!(counts(&app, &b).await, counts_of(&b, Value::Null, 0, 0));
    // A cancelled registration can still be read, but no longer changed.
    assert_eq!(view(&app, &manage, &id).await["status"], "cancelled");
    app.patch(
        &format!("/api/v1/registrations/{id}"),
        Some(&manage),
        &json!({"city": "Кировск"}),
    )
    .await
    .assert_problem(409, "registration_cancelled");
}

#[tokio::test]
async fn a_change_takes_the_optional_details_registering_takes() {
    let (app, _) = app_with_event(json!({})).await;
    // Registering takes empty optional details, as the form's schema says.
    let mut body = registration_body("anna@example.org", &[]);
    merge(
        &mut body,
        json!({"organisation": "", "position": " ", "city": ""}),
    );
    let registered = app
        .post("/api/v1/events/mmdn/registrations", None, &body)
        .await;
    registered.assert_status(201);
    let registered = registered.json();
    let (id, manage) = (
        id_of(&registered),
        registered["manage_token"].as_str().unwrap(),
    );
    assert_eq!(view(&app, manage, &id).await["organisation"], "");

    // So does a change of them; a name must still say something.
    let path = format!("/api/v1/registrations/{id}");
    let changed = app
        .patch(
            &path,
            Some(manage),
            &json!({"organisation": "АНО «Городские события»"}),
        )
        .await;
    changed.assert_status(200);
    let changed = app
        .patch(
            &path,
            Some(manage),
            &json!({"organisation": "", "city": " "}),
        )
        .await;
    changed.assert_status(200);
    assert_eq!(changed.json()["organisation"], "");
    assert_eq!(changed.json()["city"], " ");
    app.patch(&path, Some(manage), &json!({"full_name": " "}))
        .await
        .assert_problem(422, "validation_failed");
    app.patch(&path, Some(manage), &json!({"city": "Апатиты\nКировск"}))
        .await
        .assert_problem(422, "validation_failed");
}

#[tokio::test]
async fn a_manage_token_opens_only_its_own_registration() {
    let (app, _) = app_with_event(json!({})).await;
    let (anna, anna_token, _) = registered(&app, "anna@example.org", &[]).await;
    let (boris, _, _) = registered(&app, "boris@example.org", &[]).await;
    let path = format!("/api/v1/registrations/{boris}");

    let read = app.get(&path, Some(&anna_token)).await;
    let changed = app
        .patch(&path, Some(&anna_token), &json!({"city": "Кировск"}))
        .await;
    let cancelled = app.delete(&path, Some(&anna_token)).await;
    let anonymous = app.get(&path, None).await;
    let forged = app
        .get(&path, Some(&format!("rgm_{}", "A".repeat(43))))
        .await;

    read.assert_problem(404, "not_found");
    changed.assert_problem(404, "not_found");
    cancelled.assert_problem(404, "not_found");
    anonymous.assert_problem(401, "authentication_required");
    forged.assert_problem(401, "invalid_token");
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM registrations WHERE status = 'active' AND city = 'Мончегорск'"
        )
        .await,
        2
    );
    // Nor does it open the organisers' side.
    app.get(
        &format!("/api/v1/registrations/{anna}/history"),
        Some(&anna_token),
    )
    .await
    .assert_problem(403, "forbidden");
    app.get("/api/v1/events/mmdn/registrations", Some(&anna_token))
        .await
        .assert_problem(403, "forbidden");
}

// --- Organisers --------------------------------------------------------------------------

async fn listed(app: &TestApp, token: &str, query: &str) -> Vec<String> {
    let answer = app
        .get(
            &format!("/api/v1/events/mmdn/registrations?{query}"),
            Some(token),
        )
        .await;
    answer.assert_status(200);
    let body = answer.json();
    assert_eq!(body["next_cursor"], Value::Null);
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect()
}

#[tokio::test]
async fn organisers_list_registrations_with_filters() {
    let (app, token) = app_with_event(json!({})).await;
    let s1 = session(&app, &token, with(at(24, 11, 13), json!({"capacity": 1}))).await;
    let s2 = session(&app, &token, at(23, 11, 13)).await;
    let people = [
        (
            "anna@example.org",
            "Анна Иванова",
            "City Events",
            "nonprofit",
            vec![&s1],
        ),
        (
            "boris@example.org",
            "Борис Петров",
            "Kola Mining",
            "business",
            vec![&s1, &s2],
        ),
        (
            "clara@example.org",
            "Clara Smith",
            "Media House",
            "media",
            vec![&s2],
        ),
        (
            "dmitry@example.org",
            "Dmitry Orlov",
            "50% Partners",
            "government",
            vec![],
        ),
    ];
    let mut ids = Vec::new();
    for (email, name, organisation, category, sessions) in &people {
        let sessions: Vec<&str> = sessions.iter().map(|s| s.as_str()).collect();
        let body = with(
            registration_body(email, &sessions),
            json!({"full_name": name, "organisation": organisation, "category": category}),
        );
        let answer = app
            .post("/api/v1/events/mmdn/registrations", None, &body)
            .await;
        answer.assert_status(201);
        ids.push(id_of(&answer.json()));
    }
    let [anna, boris, clara, dmitry] = [0, 1, 2, 3].map(|i| ids[i].clone());
    app.delete(&format!("/api/v1/registrations/{clara}"), Some(&token))
        .await
        .assert_status(200);

    assert_eq!(
        listed(&app, &token, "").await,
        [
            anna.as_str(),
            boris.as_str(),
            clara.as_str(),
            dmitry.as_str()
        ]
    );
    assert_eq!(
        listed(&app, &token, "status=cancelled").await,
        [clara.as_str()]
    );
    assert_eq!(
        listed(&app, &token, "status=active").await,
        [anna.as_str(), boris.as_str(), dmitry.as_str()]
    );
    assert_eq!(
        listed(&app, &token, &format!("session_id={s1}")).await,
        [anna.as_str(), boris.as_str()]
    );
    assert_eq!(
        listed(
            &app,
            &token,
            &format!("session_id={s1}&session_status=waitlisted")
        )
        .await,
        [boris.as_str()]
    );
    assert_eq!(
        listed(&app, &token, &format!("session_id={s2}")).await,
        [boris.as_str()]
    );
    assert_eq!(
        listed(
            &app,
            &token,
            &format!("session_id={s2}&session_status=cancelled")
        )
        .await,
        [clara.as_str()]
    );
    assert_eq!(
        listed(&app, &token, "category=business").await,
        [boris.as_str()]
    );
    assert_eq!(
        listed(&app, &token, "category=other").await,
        Vec::<String>::new()
    );
    assert_eq!(listed(&app, &token, "q=KOLA").await, [boris.as_str()]);
    assert_eq!(
        listed(&app, &token, "q=%D0%9F%D0%B5%D1%82%D1%80%D0%BE%D0%B2").await,
        [boris.as_str()]
    );
    assert_eq!(
        listed(&app, &token, "q=clara%40example").await,
        [clara.as_str()]
    );
    assert_eq!(listed(&app, &token, "q=50%25").await, [dmitry.as_str()]);
    assert_eq!(listed(&app, &token, "q=_").await, Vec::<String>::new());
    assert_eq!(
        listed(&app, &token, "status=active&category=nonprofit&q=anna").await,
        [anna.as_str()]
    );
    let answer = app
        .get("/api/v1/events/mmdn/registrations", Some(&token))
        .await;
    let first = &answer.json()["items"][0];
    assert_eq!(first["email"], "anna@example.org");
    assert_eq!(first["organisation"], "City Events");
    assert_eq!(places(first), [place(&s1, "confirmed", Value::Null)]);
    // Categories are the event's own: one it does not have is refused by name, as the
    // badges' PDF refuses it.
    let vip = app
        .get(
            "/api/v1/events/mmdn/registrations?category=vip",
            Some(&token),
        )
        .await;
    let problem = vip.assert_problem(422, "validation_failed");
    assert_eq!(problem["errors"][0]["field"], "category");
}

#[tokio::test]
async fn organisers_page_through_registrations() {
    let (app, token) = app_with_event(json!({})).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(registered(&app, &format!("p{i}@example.org"), &[]).await.0);
    }

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = Vec::new();
    loop {
        let query = match &cursor {
            Some(c) => format!("limit=2&cursor={c}"),
            None => "limit=2".to_owned(),
        };
        let answer = app
            .get(
                &format!("/api/v1/events/mmdn/registrations?{query}"),
                Some(&token),
            )
            .await;
        answer.assert_status(200);
        let body = answer.json();
        let items: Vec<String> = body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(id_of)
            .collect();
        pages.push(items.len());
        seen.extend(items);
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }

    assert_eq!(pages, [2, 2, 1]);
    assert_eq!(seen, ids);
    app.get("/api/v1/events/mmdn/registrations?limit=0", Some(&token))
        .await
        .assert_problem(422, "validation_failed");
    app.get(
        "/api/v1/events/mmdn/registrations?cursor=nonsense",
        Some(&token),
    )
    .await
    .assert_problem(422, "validation_failed");
}

#[tokio::test]
async fn organisers_add_participants_outside_the_window_and_beyond_capacity_on_purpose() {
    let (app, token) =
        app_with_event(json!({"registration_closes_at": "2026-01-01T00:00:00Z"})).await;
    let s = session(
        &app,
        &token,
        json!({"capacity": 1, "waitlist_enabled": false}),
    )
    .await;
    let first = manual(&app, &token, registration_body("anna@example.org", &[&s])).await;
    let refused = manual(&app, &token, registration_body("boris@example.org", &[&s])).await;
    let beyond = manual(
        &app,
        &token,
        with(
            registration_body("boris@example.org", &[&s]),
            json!({"over_capacity": true}),
        ),
    )
    .await;

    first.assert_status(201);
    assert_eq!(first.json()["sessions"][0]["status"], "confirmed");
    let problem = refused.assert_problem(409, "session_full");
    assert_eq!(problem["session_id"], s.as_str());
    beyond.assert_status(201);
    let body = beyond.json();
    assert_eq!(
        body["sessions"],
        json!([{"session_id": s, "status": "confirmed", "waitlist_position": null}])
    );
    let boris = id_of(&body);
    let seen = view(&app, &token, &boris).await;
    assert_eq!(seen["source"], "organiser");
    assert_eq!(seen["sessions"][0]["over_capacity"], true);
    assert_eq!(counts(&app, &s).await, counts_of(&s, json!(1), 2, 0));
    let answer = app
        .get(
            &format!("/api/v1/registrations/{boris}/history"),
            Some(&token),
        )
        .await;
    let entries = answer.json();
    assert_eq!(entries[0]["action"], "created");
    assert_eq!(entries[0]["actor"], "organiser");
    assert_eq!(entries[0]["details"]["over_capacity"], true);
    assert_eq!(entries[1]["action"], "confirmed");
    assert_eq!(entries[1]["details"]["over_capacity"], true);
    assert_eq!(entries.as_array().unwrap().len(), 2);
    // The manage token handed to the organiser works for the participant.
    let manage = body["manage_token"].as_str().unwrap();
    assert_eq!(
        view(&app, manage, &boris).await["email"],
        "boris@example.org"
    );
    // The public is still refused outside the window.
    app.register("mmdn", "clara@example.org", &[])
        .await
        .assert_problem(409, "registration_closed");
}

#[tokio::test]
async fn organisers_promote_out_of_turn_beyond_capacity_only_when_told() {
    let (app, token) = app_with_event(json!({})).await;
    let s = session(&app, &token, json!({"capacity": 1})).await;
    let (anna, _, _) = registered(&app, "anna@example.org", &[&s]).await;
    let (boris, boris_token, _) = registered(&app, "boris@example.org", &[&s]).await;
    let (clara, _, _) = registered(&app, "clara@example.org", &[&s]).await;
    let promote = |id: &str| format!("/api/v1/registrations/{id}/sessions/{s}/promote");

    let refused = app
        .call(Method::POST, &promote(&clara))
        .bearer(&token)
        .send()
        .await;
    let promoted = app
        .post(
            &promote(&clara),
            Some(&token),
            &json!({"over_capacity": true}),
        )
        .await;
    let again = app.post(&promote(&clara), Some(&token), &json!({})).await;
    let by_participant = app
        .post(&promote(&boris), Some(&boris_token), &json!({}))
        .await;

    let problem = refused.assert_problem(409, "session_full");
    assert_eq!(problem["session_id"], s.as_str());
    promoted.assert_status(200);
    let body = promoted.json();
    assert_eq!(places(&body), [place(&s, "confirmed", Value::Null)]);
    assert_eq!(body["sessions"][0]["over_capacity"], true);
    again.assert_problem(409, "not_waitlisted");
    by_participant.assert_problem(403, "forbidden");
    assert_eq!(
        places(&view(&app, &token, &boris).await),
        [place(&s, "waitlisted", json!(1))]
    );
    assert_eq!(counts(&app, &s).await, counts_of(&s, json!(1), 2, 1));
    let me = app.get("/api/v1/me", Some(&token)).await.json();
    let answer = app
        .get(
            &format!("/api/v1/registrations/{clara}/history"),
            Some(&token),
        )
        .await;
    let last = answer.json().as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["action"], "promoted");
    assert_eq!(last["actor"], "organiser");
    assert_eq!(last["actor_id"], me["id"]);
    assert_eq!(last["session_id"], s.as_str());
    assert_eq!(
        last["details"],
        json!({"over_capacity": true, "out_of_turn": true})
    );
    // When a seat frees up, the one confirmed beyond capacity takes it; the waitlist waits.
    app.delete(&format!("/api/v1/registrations/{anna}"), Some(&token))
        .await
        .assert_status(200);
    assert_eq!(counts(&app, &s).await, counts_of(&s, json!(1), 1, 1));
    assert_eq!(
        places(&view(&app, &token, &boris).await),
        [place(&s, "waitlisted", json!(1))]
    );
    let seat_holder = count(
        &app,
        &format!(
            "SELECT count(*) FROM session_seats WHERE session_id = '{s}' \
             AND registration_id = '{clara}'"
        ),
    )
    .await;
    assert_eq!(seat_holder, 1);
    let clara_now = view(&app, &token, &clara).await;
    assert_eq!(places(&clara_now), [place(&s, "confirmed", Value::Null)]);
    assert_eq!(clara_now["sessions"][0]["over_capacity"], false);
}

#[tokio::test]
async fn nobody_is_beyond_an_unlimited_capacity() {
    let (app, token) = app_with_event(json!({})).await;
    let s = session(
        &app,
        &token,
        json!({"capacity": 1, "waitlist_enabled": false}),
    )
    .await;
    registered(&app, "anna@example.org", &[&s]).await;
    let body = with(
        registration_body("boris@example.org", &[&s]),
        json!({"over_capacity": true}),
    );
    let boris = id_of(&manual(&app, &token, body).await.json());
    assert_eq!(
        view(&app, &token, &boris).await["sessions"][0]["over_capacity"],
        true
    );

    app.patch(
        &format!("/api/v1/events/mmdn/sessions/{s}"),
        Some(&token),
        &json!({"capacity": null}),
    )
    .await
    .assert_status(200);

    assert_eq!(
        view(&app, &token, &boris).await["sessions"][0]["over_capacity"],
        false
    );
    assert_eq!(counts(&app, &s).await, counts_of(&s, Value::Null, 2, 0));
}

#[tokio::test]
async fn organisers_promote_out_of_turn_into_a_free_seat() {
    let (app, token) = app_with_event(json!({})).await;
    let s = session(&app, &token, json!({"capacity": 1})).await;
    let (anna, _, _) = registered(&app, "anna@example.org", &[&s]).await;
    let (boris, _, _) = registered(&app, "boris@example.org", &[&s]).await;
    let (clara, _, _) = registered(&app, "clara@example.org", &[&s]).await;
    // Clara jumps the queue when Anna's seat frees up.
    app.post(
        &format!("/api/v1/registrations/{clara}/sessions/{s}/promote"),
        Some(&token),
        &json!({"over_capacity": true}),
    )
    .await
    .assert_status(200);
    app.patch(
        &format!("/api/v1/events/mmdn/sessions/{s}"),
        Some(&token),
        &json!({"capacity": 2}),
    )
    .await
    .assert_status(200);

    // Capacity 2, Anna and Clara hold the seats: Boris still waits.
    assert_eq!(counts(&app, &s).await, counts_of(&s, json!(2), 2, 1));
    assert_eq!(
        places(&view(&app, &token, &boris).await),
        [place(&s, "waitlisted", json!(1))]
    );
    assert_eq!(
        places(&view(&app, &token, &anna).await),
        [place(&s, "confirmed", Value::Null)]
    );
}

#[tokio::test]
async fn history_records_every_change_with_its_actor() {
    let (app, token) = app_with_event(json!({})).await;
    let me = app.get("/api/v1/me", Some(&token)).await.json();
    let s = session(&app, &token, json!({"capacity": 1})).await;
    let (anna, _, _) = registered(&app, "anna@example.org", &[&s]).await;
    let (boris, boris_token, _) = registered(&app, "boris@example.org", &[&s]).await;
    app.patch(
        &format!("/api/v1/registrations/{boris}"),
        Some(&boris_token),
        &json!({"city": "Кировск", "position": null}),
    )
    .await
    .assert_status(200);
    app.delete(&format!("/api/v1/registrations/{anna}"), Some(&token))
        .await
        .assert_status(200);
    app.delete(
        &format!("/api/v1/registrations/{boris}"),
        Some(&boris_token),
    )
    .await
    .assert_status(200);

    assert_eq!(
        history(&app, &token, &anna).await,
        [
            entry("created", None, "participant"),
            entry("confirmed", Some(&s), "participant"),
            entry("cancelled", None, "organiser"),
        ]
    );
    assert_eq!(
        history(&app, &token, &boris).await,
        [
            entry("created", None, "participant"),
            entry("waitlisted", Some(&s), "participant"),
            entry("changed", None, "participant"),
            entry("promoted", Some(&s), "system"),
            entry("cancelled", None, "participant"),
        ]
    );
    let raw = app
        .get(
            &format!("/api/v1/registrations/{boris}/history"),
            Some(&token),
        )
        .await
        .json();
    assert_eq!(raw[0]["actor_id"], boris.as_str());
    assert_eq!(raw[2]["details"], json!({"fields": ["position", "city"]}));
    assert_eq!(raw[3]["actor_id"], Value::Null);
    assert!(raw[4]["at"].is_string());
    let anna_raw = app
        .get(
            &format!("/api/v1/registrations/{anna}/history"),
            Some(&token),
        )
        .await
        .json();
    assert_eq!(anna_raw[2]["actor_id"], me["id"]);
}

// --- Privacy -----------------------------------------------------------------------------

#[tokio::test]
async fn public_endpoints_show_counts_only() {
    let (app, token) = app_with_event(json!({})).await;
    let s = session(&app, &token, json!({"capacity": 1})).await;
    registered(&app, "anna@example.org", &[&s]).await;
    let body = with(
        registration_body("boris@example.org", &[&s]),
        json!({"full_name": "Борис Петров", "organisation": "Kola Mining"}),
    );
    app.post("/api/v1/events/mmdn/registrations", None, &body)
        .await
        .assert_status(201);

    let programme = app.get("/api/v1/events/mmdn/programme", None).await;
    let one = app
        .get(&format!("/api/v1/events/mmdn/sessions/{s}/counts"), None)
        .await;
    let all = app.get("/api/v1/events/mmdn/session-counts", None).await;
    let waitlist = app
        .get(&format!("/api/v1/events/mmdn/sessions/{s}/waitlist"), None)
        .await;
    let list = app.get("/api/v1/events/mmdn/registrations", None).await;

    programme.assert_status(200);
    for secret in [
        "anna@example.org",
        "boris@example.org",
        "Иванова",
        "Петров",
        "Kola Mining",
        "Мончегорск",
    ] {
        assert!(
            !programme.text.contains(secret),
            "{secret} in the programme"
        );
        assert!(!one.text.contains(secret) && !all.text.contains(secret));
    }
    assert!(
        programme.text.contains("\"waitlisted\":1"),
        "{}",
        programme.text
    );
    one.assert_status(200);
    assert_eq!(one.json(), counts_of(&s, json!(1), 1, 1));
    all.assert_status(200);
    assert_eq!(all.json(), json!([counts_of(&s, json!(1), 1, 1)]));
    waitlist.assert_problem(401, "authentication_required");
    list.assert_problem(401, "authentication_required");
}

#[tokio::test]
async fn other_organisers_see_no_registrations_of_an_event() {
    let (app, token) = app_with_event(json!({})).await;
    let admin = crate::helpers::Tokens {
        access: token.clone(),
        refresh: String::new(),
    };
    let (_, stranger) = app.organiser(&admin, "olga@example.org").await;
    let s = session(&app, &token, json!({"capacity": 1})).await;
    let (anna, _, _) = registered(&app, "anna@example.org", &[&s]).await;
    registered(&app, "boris@example.org", &[&s]).await;

    let list = app
        .get("/api/v1/events/mmdn/registrations", Some(&stranger.access))
        .await;
    let waitlist = app
        .get(
            &format!("/api/v1/events/mmdn/sessions/{s}/waitlist"),
            Some(&stranger.access),
        )
        .await;
    let one = app
        .get(
            &format!("/api/v1/registrations/{anna}"),
            Some(&stranger.access),
        )
        .await;
    let history = app
        .get(
            &format!("/api/v1/registrations/{anna}/history"),
            Some(&stranger.access),
        )
        .await;
    let cancel = app
        .delete(
            &format!("/api/v1/registrations/{anna}"),
            Some(&stranger.access),
        )
        .await;
    let added = manual(
        &app,
        &stranger.access,
        registration_body("clara@example.org", &[]),
    )
    .await;

    list.assert_problem(403, "forbidden");
    waitlist.assert_problem(403, "forbidden");
    one.assert_problem(404, "not_found");
    history.assert_problem(404, "not_found");
    cancel.assert_problem(404, "not_found");
    added.assert_problem(403, "forbidden");
    assert!(!one.text.contains("anna@example.org"));
    assert_eq!(registration_count(&app).await, 2);
    assert_eq!(counts(&app, &s).await, counts_of(&s, json!(1), 1, 1));
}

// --- Idempotent retries ------------------------------------------------------------------

async fn post_with_key(app: &TestApp, key: &str, body: &Value) -> crate::helpers::Answer {
    app.call(Method::POST, "/api/v1/events/mmdn/registrations")
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
}

#[tokio::test]
async fn a_retry_with_the_same_idempotency_key_and_body_gets_the_original_answer() {
    let (app, token) = app_with_event(json!({})).await;
    let s = session(&app, &token, json!({"capacity": 1})).await;
    registered(&app, "boris@example.org", &[&s]).await;
    let body = registration_body("anna@example.org", &[&s]);

    let first = post_with_key(&app, "checkout-42", &body).await;
    // Meanwhile the seat frees up, so a new request would have another outcome.
    let boris = listed(&app, &token, "q=boris").await.remove(0);
    app.delete(&format!("/api/v1/registrations/{boris}"), Some(&token))
        .await
        .assert_status(200);
    let retry = post_with_key(&app, "checkout-42", &body).await;
    // The same JSON written in another order is the same request.
    let mut reordered = serde_json::Map::new();
    let fields = body.as_object().unwrap();
    for key in fields.keys().rev() {
        reordered.insert(key.clone(), fields[key].clone());
    }
    let reordered_retry = post_with_key(&app, "checkout-42", &Value::Object(reordered)).await;

    first.assert_status(201);
    assert_eq!(first.header("idempotent-replayed"), None);
    let original = first.json();
    assert_eq!(original["sessions"][0]["status"], "waitlisted");
    for answer in [&retry, &reordered_retry] {
        answer.assert_status(201);
        assert_eq!(answer.header("idempotent-replayed"), Some("true"));
        assert_eq!(answer.header("location"), first.header("location"));
        assert_eq!(answer.json(), original);
    }
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM registrations WHERE email = 'anna@example.org'"
        )
        .await,
        1
    );
    let manage = original["manage_token"].as_str().unwrap();
    let seen = view(&app, manage, &id_of(&original)).await;
    assert_eq!(places(&seen), [place(&s, "confirmed", Value::Null)]);
    // Another key is another request.
    post_with_key(&app, "checkout-43", &body)
        .await
        .assert_problem(409, "already_registered");
}

#[tokio::test]
async fn an_idempotency_key_reused_with_another_body_is_refused() {
    let (app, _) = app_with_event(json!({})).await;
    post_with_key(
        &app,
        "checkout-42",
        &registration_body("anna@example.org", &[]),
    )
    .await
    .assert_status(201);

    let answer = post_with_key(
        &app,
        "checkout-42",
        &registration_body("boris@example.org", &[]),
    )
    .await;
    let malformed = post_with_key(
        &app,
        "two words",
        &registration_body("clara@example.org", &[]),
    )
    .await;

    answer.assert_problem(422, "idempotency_key_reused");
    malformed.assert_problem(422, "validation_failed");
    assert_eq!(registration_count(&app).await, 1);
}

/// A statement outside an explicit transaction commits after it has sent its rows. A
/// registration whose commit fails (here a deferred constraint refuses it at commit; a full
/// disk or the server dying then does the same) must not be answered 201.
#[tokio::test]
async fn a_registration_whose_commit_fails_is_not_answered_201() {
    let (app, token) = app_with_event(json!({})).await;
    let plenary = session(&app, &token, with(at(21, 10, 12), json!({"capacity": 10}))).await;
    app.db
        .client()
        .await
        .batch_execute(
            "CREATE FUNCTION refuse_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN RAISE EXCEPTION 'refused at commit'; END $$;
             CREATE CONSTRAINT TRIGGER refuse_at_commit AFTER INSERT ON registrations
             DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_at_commit();",
        )
        .await
        .unwrap();

    let answer = app.register("mmdn", "late@example.org", &[&plenary]).await;

    assert_eq!(answer.status, 500, "{}", answer.text);
    assert_eq!(count(&app, "SELECT count(*) FROM registrations").await, 0);
}

/// Waitlist positions are counted now, and a page of places waiting in one long queue reads
/// that queue once, not once for each place (a round of mails, a page of the list).
#[tokio::test]
async fn positions_of_many_places_in_one_long_queue_read_the_queue_once() {
    let app = spawn_app().await;
    let token = app.admin().await.access;
    let event = id_of(&app.event(&token, "queue", json!({})).await);
    let session = app
        .session(
            &token,
            "queue",
            json!({"capacity": 1, "waitlist_enabled": true}),
        )
        .await;
    let session = id_of(&session);
    let client = app.db.client().await;
    // 2,000 places waiting, straight in the database: the triggers hand out the tickets.
    crate::helpers::bulk_registrations(&client, &event, "q", 2000).await;
    client
        .batch_execute(&format!(
            "INSERT INTO registration_sessions (registration_id, session_id, status) \
             SELECT id, '{session}', 'waitlisted' FROM registrations \
             WHERE event_id = '{event}' ORDER BY email_normalized COLLATE \"C\"; \
             ANALYZE registration_sessions"
        ))
        .await
        .unwrap();
    // Two of those ahead leave the queue: one promoted, one cancelled.
    client
        .batch_execute(&format!(
            "UPDATE registration_sessions SET status = 'confirmed' \
             WHERE session_id = '{session}' AND waitlist_order = \
                 (SELECT min(waitlist_order) FROM registration_sessions WHERE session_id = '{session}'); \
             UPDATE registration_sessions SET status = 'cancelled' \
             WHERE session_id = '{session}' AND waitlist_order = \
                 (SELECT min(waitlist_order) + 10 FROM registration_sessions WHERE session_id = '{session}')"
        ))
        .await
        .unwrap();
    let last: Vec<uuid::Uuid> = client
        .query(
            "SELECT registration_id::text FROM registration_sessions \
             WHERE session_id = $1::text::uuid AND status = 'waitlisted' \
             ORDER BY waitlist_order DESC LIMIT 20",
            &[&session],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get::<_, String>(0).parse().unwrap())
        .collect();

    let mut conn =
        <diesel_async::AsyncPgConnection as diesel_async::AsyncConnection>::establish(&app.db.url)
            .await
            .unwrap();
    let places = registrar::registrations::places_of(&mut conn, &last)
        .await
        .unwrap();
    let positions: Vec<i64> = last
        .iter()
        .map(|id| places[id][0].waitlist_position.unwrap())
        .collect();
    assert_eq!(positions, (1979..=1998).rev().collect::<Vec<i64>>());

    let ids = last
        .iter()
        .map(|id| format!("'{id}'"))
        .collect::<Vec<_>>()
        .join(",");
    let plan = crate::helpers::explained(
        &client,
        &registrar::registrations::PLACES.replace("$1", &format!("ARRAY[{ids}]::uuid[]")),
    )
    .await;
    let read = crate::helpers::rows_scanned(&plan, "registration_sessions");
    assert!(
        read <= 2_100,
        "{read} rows of registration_sessions read:\n{plan}"
    );
}
