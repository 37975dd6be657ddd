//! Registrations under concurrency, against the real database: capacity is never exceeded,
//! waitlists stay dense and in order, and duplicates are refused, however requests interleave.

use std::collections::{BTreeSet, HashSet};

use futures_util::future::join_all;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Answer, TestApp, lock_wait, registration_body, spawn_app_with};
use crate::registrations::{count, id_of};

/// An app that really runs requests in parallel: several workers and database connections.
async fn parallel_app() -> TestApp {
    spawn_app_with(|config| {
        config.db_pool_size = 16;
        config.workers = 2;
        // Hundreds of requests queue for 16 connections on a machine busy with other tests:
        // waiting longer than the default is expected here, not a failure.
        config.db_timeout_ms = 60_000;
    })
    .await
}

/// The session's waitlist as organisers see it: (position, registration id), first first.
async fn waitlist(app: &TestApp, token: &str, event: &str, session: &str) -> Vec<(i64, String)> {
    let answer = app
        .get(
            &format!("/api/v1/events/{event}/sessions/{session}/waitlist"),
            Some(token),
        )
        .await;
    answer.assert_status(200);
    answer
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            (
                entry["position"].as_i64().unwrap(),
                entry["registration_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// A public registration for `session` of the event `mmdn`.
async fn register(app: &TestApp, email: String, session: &str) -> Answer {
    app.register("mmdn", &email, &[session]).await
}

async fn counts(app: &TestApp, event: &str, session: &str) -> Value {
    let answer = app
        .get(
            &format!("/api/v1/events/{event}/sessions/{session}/counts"),
            None,
        )
        .await;
    answer.assert_status(200);
    answer.json()
}

/// The rows behind a session's numbers must agree with each other: every confirmed place
/// holds exactly one seat (or none when confirmed over capacity), no waitlisted place holds
/// one, and no seat is free while anyone waits. Returns (confirmed, waitlisted).
async fn assert_rows_agree(app: &TestApp, session: &str) -> (i64, i64) {
    let confirmed = count(
        app,
        &format!(
            "SELECT count(*) FROM registration_sessions \
             WHERE session_id = '{session}' AND status = 'confirmed'"
        ),
    )
    .await;
    let waitlisted = count(
        app,
        &format!(
            "SELECT count(*) FROM registration_sessions \
             WHERE session_id = '{session}' AND status = 'waitlisted'"
        ),
    )
    .await;
    let occupied = count(
        app,
        &format!(
            "SELECT count(*) FROM session_seats \
             WHERE session_id = '{session}' AND registration_id IS NOT NULL"
        ),
    )
    .await;
    let free = count(
        app,
        &format!(
            "SELECT count(*) FROM session_seats \
             WHERE session_id = '{session}' AND registration_id IS NULL"
        ),
    )
    .await;
    let seats_held_by_their_confirmed_place = count(
        app,
        &format!(
            "SELECT count(*) FROM session_seats s JOIN registration_sessions rs \
               ON rs.session_id = s.session_id AND rs.registration_id = s.registration_id \
              AND rs.seat_no = s.seat_no AND rs.status = 'confirmed' \
             WHERE s.session_id = '{session}'"
        ),
    )
    .await;
    let confirmed_without_seat = count(
        app,
        &format!(
            "SELECT count(*) FROM registration_sessions \
             WHERE session_id = '{session}' AND status = 'confirmed' AND seat_no IS NULL"
        ),
    )
    .await;
    assert_eq!(occupied, seats_held_by_their_confirmed_place);
    assert_eq!(
        confirmed_without_seat, 0,
        "nobody here was confirmed over capacity"
    );
    assert_eq!(confirmed, occupied);
    if waitlisted > 0 {
        assert_eq!(free, 0, "a seat is free while {waitlisted} wait");
    }
    (confirmed, waitlisted)
}

#[tokio::test]
async fn three_hundred_simultaneous_registrations_fill_a_hundred_seats_and_are_told_exact_positions()
 {
    let app = parallel_app().await;
    let token = app.admin().await.access;
    app.event(&token, "mmdn", json!({})).await;
    let session = id_of(&app.session(&token, "mmdn", json!({"capacity": 100})).await);
    let started = std::time::Instant::now();

    let answers =
        join_all((0..300).map(|i| register(&app, format!("p{i}@example.org"), &session))).await;
    eprintln!("300 simultaneous registrations: {:?}", started.elapsed());

    let mut confirmed = HashSet::new();
    // Registration id -> the position it was told.
    let mut told = std::collections::HashMap::new();
    for answer in &answers {
        answer.assert_status(201);
        let body = answer.json();
        let place = &body["sessions"][0];
        assert_eq!(place["session_id"], session.as_str());
        match place["status"].as_str().unwrap() {
            "confirmed" => {
                assert_eq!(place["waitlist_position"], Value::Null);
                confirmed.insert(id_of(&body));
            }
            "waitlisted" => {
                told.insert(id_of(&body), place["waitlist_position"].as_i64().unwrap());
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(confirmed.len(), 100);
    // Nobody was told a position that another holds: each of 1..=200 was told exactly once...
    let mut positions: Vec<i64> = told.values().copied().collect();
    positions.sort_unstable();
    assert_eq!(positions, (1..=200).collect::<Vec<i64>>());
    // ... and to the registration the organisers' listing shows there.
    let listing = waitlist(&app, &token, "mmdn", &session).await;
    assert_eq!(listing.len(), 200);
    for (position, id) in &listing {
        assert_eq!(told.get(id), Some(position), "{id}");
    }
    assert_eq!(assert_rows_agree(&app, &session).await, (100, 200));
    let seat_numbers = count(
        &app,
        &format!(
            "SELECT count(DISTINCT seat_no) FROM registration_sessions \
             WHERE session_id = '{session}' AND status = 'confirmed' AND seat_no BETWEEN 1 AND 100"
        ),
    )
    .await;
    assert_eq!(seat_numbers, 100);
    assert_eq!(
        counts(&app, "mmdn", &session).await,
        json!({"session_id": session, "capacity": 100, "confirmed": 100, "waitlisted": 200, "seats_left": 0})
    );
    eprintln!("300 registrations and checks: {:?}", started.elapsed());
}

#[tokio::test]
async fn simultaneous_cancellations_and_registrations_keep_counts_true_and_the_waitlist_dense() {
    let app = parallel_app().await;
    let token = app.admin().await.access;
    app.event(&token, "mmdn", json!({})).await;
    let session = id_of(&app.session(&token, "mmdn", json!({"capacity": 20})).await);
    // 20 confirmed, then 20 waitlisted, in a known order.
    let mut first = Vec::new();
    for i in 0..40 {
        let answer = app
            .register("mmdn", &format!("early{i}@example.org"), &[&session])
            .await;
        answer.assert_status(201);
        let body = answer.json();
        let expected = if i < 20 { "confirmed" } else { "waitlisted" };
        assert_eq!(body["sessions"][0]["status"], expected);
        first.push((
            id_of(&body),
            body["manage_token"].as_str().unwrap().to_owned(),
        ));
    }
    let (confirmed_before, waitlisted_before) = first.split_at(20);
    // Ten confirmed participants and every other of the first ten waiting ones cancel while
    // thirty others register.
    let cancelling: Vec<&(String, String)> = confirmed_before[..10]
        .iter()
        .chain(waitlisted_before[..10].iter().step_by(2))
        .collect();
    let started = std::time::Instant::now();

    let cancellations = join_all(cancelling.iter().map(|(id, manage)| {
        app.call(Method::DELETE, &format!("/api/v1/registrations/{id}"))
            .bearer(manage)
            .send()
    }));
    let registrations =
        join_all((0..30).map(|i| register(&app, format!("late{i}@example.org"), &session)));
    let (cancelled, registered) = futures_util::join!(cancellations, registrations);

    eprintln!(
        "15 cancellations with 30 registrations: {:?}",
        started.elapsed()
    );
    for answer in &cancelled {
        answer.assert_status(200);
        assert_eq!(answer.json()["status"], "cancelled");
    }
    let mut late = HashSet::new();
    for answer in &registered {
        answer.assert_status(201);
        let body = answer.json();
        // Five of the first waiting participants always stay ahead of them; up to all twenty
        // and the twenty-nine others may be, depending on the moment.
        assert_eq!(body["sessions"][0]["status"], "waitlisted", "{body}");
        let position = body["sessions"][0]["waitlist_position"].as_i64().unwrap();
        assert!((6..=50).contains(&position), "position {position}");
        late.insert(id_of(&body));
    }
    assert_eq!(assert_rows_agree(&app, &session).await, (20, 35));
    assert_eq!(
        counts(&app, "mmdn", &session).await,
        json!({"session_id": session, "capacity": 20, "confirmed": 20, "waitlisted": 35, "seats_left": 0})
    );
    // First come, first served: the ten seats went to the first ten still waiting.
    let still_waiting: Vec<&String> = waitlisted_before
        .iter()
        .enumerate()
        .filter(|(i, _)| *i >= 10 || i % 2 == 1)
        .map(|(_, (id, _))| id)
        .collect();
    let expected_confirmed: BTreeSet<String> = confirmed_before[10..]
        .iter()
        .map(|(id, _)| id.clone())
        .chain(still_waiting[..10].iter().map(|id| (*id).clone()))
        .collect();
    let confirmed_rows = app
        .db
        .client()
        .await
        .query(
            &format!(
                "SELECT registration_id::text FROM registration_sessions \
                 WHERE session_id = '{session}' AND status = 'confirmed'"
            ),
            &[],
        )
        .await
        .unwrap();
    let confirmed_now: BTreeSet<String> = confirmed_rows.iter().map(|row| row.get(0)).collect();
    assert_eq!(confirmed_now, expected_confirmed);
    let listing = waitlist(&app, &token, "mmdn", &session).await;
    let positions: Vec<i64> = listing.iter().map(|(p, _)| *p).collect();
    assert_eq!(positions, (1..=35).collect::<Vec<i64>>());
    let head: Vec<&String> = listing[..5].iter().map(|(_, id)| id).collect();
    assert_eq!(head, still_waiting[10..].to_vec());
    let tail: HashSet<String> = listing[5..].iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(tail, late);
    // Each registration shows its own current position.
    for (position, id) in &listing {
        let answer = app
            .get(&format!("/api/v1/registrations/{id}"), Some(&token))
            .await;
        answer.assert_status(200);
        assert_eq!(
            answer.json()["sessions"][0]["waitlist_position"],
            *position,
            "{id}"
        );
    }
}

#[tokio::test]
async fn raising_the_capacity_while_registrations_arrive_leaves_no_seat_free() {
    let app = parallel_app().await;
    let token = app.admin().await.access;
    app.event(&token, "mmdn", json!({})).await;
    let session = id_of(&app.session(&token, "mmdn", json!({"capacity": 10})).await);

    let path = format!("/api/v1/events/mmdn/sessions/{session}");
    let change = json!({"capacity": 20});
    let raise = app.patch(&path, Some(&token), &change);
    let registrations =
        join_all((0..30).map(|i| register(&app, format!("p{i}@example.org"), &session)));
    let (raised, registered) = futures_util::join!(raise, registrations);

    raised.assert_status(200);
    assert_eq!(raised.json()["capacity"], 20);
    assert!(registered.iter().all(|a| a.status.as_u16() == 201));
    assert_eq!(assert_rows_agree(&app, &session).await, (20, 10));
    let positions: Vec<i64> = waitlist(&app, &token, "mmdn", &session)
        .await
        .iter()
        .map(|(p, _)| *p)
        .collect();
    assert_eq!(positions, (1..=10).collect::<Vec<i64>>());
}

#[tokio::test]
async fn simultaneous_registrations_with_one_email_create_one() {
    let app = parallel_app().await;
    let token = app.admin().await.access;
    app.event(&token, "mmdn", json!({})).await;
    let session = id_of(&app.session(&token, "mmdn", json!({"capacity": 50})).await);

    // Ten pairs, each the same address written differently.
    let pairs = join_all((0..10).map(|i| {
        let a = register(&app, format!("Pair{i}@Example.org"), &session);
        let b = register(&app, format!("  pair{i}@EXAMPLE.ORG "), &session);
        async move { futures_util::join!(a, b) }
    }))
    .await;

    for (a, b) in &pairs {
        let (created, refused) = if a.status.as_u16() == 201 {
            (a, b)
        } else {
            (b, a)
        };
        created.assert_status(201);
        let problem = refused.assert_problem(409, "already_registered");
        assert_eq!(problem["field"], "email");
    }
    let registrations = count(&app, "SELECT count(*) FROM registrations").await;
    assert_eq!(registrations, 10);
    assert_eq!(assert_rows_agree(&app, &session).await, (10, 0));
}

#[tokio::test]
async fn one_idempotency_key_sent_twenty_times_at_once_registers_once() {
    let app = parallel_app().await;
    let token = app.admin().await.access;
    app.event(&token, "mmdn", json!({})).await;
    let session = id_of(&app.session(&token, "mmdn", json!({"capacity": 50})).await);
    let body = registration_body("anna@example.org", &[&session]);

    let answers = join_all((0..20).map(|_| {
        app.call(Method::POST, "/api/v1/events/mmdn/registrations")
            .header("Idempotency-Key", "7f1c2d9e-retry")
            .json(&body)
            .send()
    }))
    .await;

    let mut created = Vec::new();
    for answer in &answers {
        match answer.status.as_u16() {
            201 => {
                let body = answer.json();
                created.push((
                    id_of(&body),
                    body["manage_token"].as_str().unwrap().to_owned(),
                ));
            }
            _ => {
                answer.assert_problem(409, "idempotency_key_in_use");
                assert_eq!(answer.header("retry-after"), Some("1"));
            }
        }
    }
    assert!(!created.is_empty());
    assert!(created.iter().all(|c| *c == created[0]), "{created:?}");
    assert_eq!(count(&app, "SELECT count(*) FROM registrations").await, 1);
    assert_eq!(
        count(&app, "SELECT count(*) FROM idempotency_keys").await,
        1
    );
    assert_eq!(assert_rows_agree(&app, &session).await, (1, 0));
    // The manage token handed out works.
    let (id, manage) = &created[0];
    app.get(&format!("/api/v1/registrations/{id}"), Some(manage))
        .await
        .assert_status(200);
}

/// Registers `email` for `sessions` while another transaction, standing for a registration
/// still in flight, holds every free seat that `claim` (SQL) takes; that transaction then
/// fails. Returns the answer to the registration.
async fn register_behind_a_failing_registration(
    app: &TestApp,
    claim: &str,
    email: &str,
    sessions: &[&str],
) -> Answer {
    let in_flight = app.db.client().await;
    in_flight
        .batch_execute(&format!("BEGIN; {claim}"))
        .await
        .unwrap();
    let observer = app.db.client().await;
    let registering = app.register("mmdn", email, sessions);
    tokio::pin!(registering);
    // Either the registration decides without waiting for the one in flight, or it waits.
    let decided = tokio::select! {
        answer = &mut registering => Some(answer),
        () = lock_wait(&observer) => None,
    };
    in_flight.batch_execute("ROLLBACK").await.unwrap();
    match decided {
        Some(answer) => answer,
        None => registering.await,
    }
}

#[tokio::test]
async fn a_seat_given_back_by_a_failing_registration_goes_to_the_one_that_found_none() {
    let app = parallel_app().await;
    let token = app.admin().await.access;
    app.event(&token, "mmdn", json!({})).await;
    let session = id_of(&app.session(&token, "mmdn", json!({"capacity": 1})).await);
    let claim = format!(
        "UPDATE session_seats SET registration_id = gen_random_uuid() \
         WHERE session_id = '{session}'"
    );

    let answer =
        register_behind_a_failing_registration(&app, &claim, "anna@example.org", &[&session]).await;

    answer.assert_status(201);
    assert_eq!(
        answer.json()["sessions"],
        json!([{"session_id": session, "status": "confirmed", "waitlist_position": null}])
    );
    assert_eq!(assert_rows_agree(&app, &session).await, (1, 0));
}

#[tokio::test]
async fn a_session_without_waitlist_is_not_full_while_a_failing_registration_holds_its_seat() {
    let app = parallel_app().await;
    let token = app.admin().await.access;
    app.event(&token, "mmdn", json!({})).await;
    let session = id_of(
        &app.session(
            &token,
            "mmdn",
            json!({"capacity": 1, "waitlist_enabled": false}),
        )
        .await,
    );
    let claim = format!(
        "UPDATE session_seats SET registration_id = gen_random_uuid() \
         WHERE session_id = '{session}'"
    );

    let answer =
        register_behind_a_failing_registration(&app, &claim, "anna@example.org", &[&session]).await;

    answer.assert_status(201);
    assert_eq!(answer.json()["sessions"][0]["status"], "confirmed");
    assert_eq!(assert_rows_agree(&app, &session).await, (1, 0));
}

#[tokio::test]
async fn an_event_is_not_full_while_a_failing_registration_holds_its_last_place() {
    let app = parallel_app().await;
    let token = app.admin().await.access;
    let event = app.event(&token, "mmdn", json!({"capacity": 1})).await;
    let event_id = id_of(&event);
    let claim = format!(
        "UPDATE event_seats SET registration_id = gen_random_uuid() WHERE event_id = '{event_id}'"
    );

    let answer =
        register_behind_a_failing_registration(&app, &claim, "anna@example.org", &[]).await;

    answer.assert_status(201);
    let held = count(
        &app,
        &format!(
            "SELECT count(*) FROM event_seats s JOIN registrations r ON r.id = s.registration_id \
             WHERE s.event_id = '{event_id}'"
        ),
    )
    .await;
    assert_eq!(held, 1);
}

#[tokio::test]
async fn a_waitlist_place_rolled_back_leaves_no_gap_in_the_positions_told_after_it() {
    let app = parallel_app().await;
    let token = app.admin().await.access;
    let event = app.event(&token, "mmdn", json!({})).await;
    let session = id_of(&app.session(&token, "mmdn", json!({"capacity": 1})).await);
    for i in 0..3 {
        app.register("mmdn", &format!("early{i}@example.org"), &[&session])
            .await
            .assert_status(201);
    }
    // A registration in flight joins the waitlist (third in line), then fails.
    let in_flight = format!(
        "SELECT register_participant(gen_random_uuid(), '{event}', 'Пётр Петров', \
             'petr@example.org', 'petr@example.org', NULL, NULL, NULL, NULL, 'other', 'public', \
             sha256(convert_to(random()::text, 'UTF8')), 'participant', gen_random_uuid(), \
             ARRAY[]::bigint[], false, ARRAY['{session}']::uuid[], NULL, NULL, NULL, NULL)",
        event = id_of(&event)
    );

    let answer =
        register_behind_a_failing_registration(&app, &in_flight, "anna@example.org", &[&session])
            .await;

    answer.assert_status(201);
    assert_eq!(
        answer.json()["sessions"],
        json!([{"session_id": session, "status": "waitlisted", "waitlist_position": 3}])
    );
    let listing = waitlist(&app, &token, "mmdn", &session).await;
    assert_eq!(listing.last().unwrap(), &(3, id_of(&answer.json())));
}
