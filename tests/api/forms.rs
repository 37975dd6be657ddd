//! Registration forms: participant categories with their own places, windows and waitlists;
//! and under concurrency, against the real database, categories never oversold.

use futures_util::future::join_all;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Answer, TestApp, registration_body, spawn_app, spawn_app_with};
use crate::registrations::{count, id_of};

async fn add_category(app: &TestApp, token: &str, event: &str, body: Value) -> Value {
    let answer = app
        .post(
            &format!("/api/v1/events/{event}/categories"),
            Some(token),
            &body,
        )
        .await;
    answer.assert_status(201);
    answer.json()
}

async fn register_in(app: &TestApp, event: &str, email: impl AsRef<str>, category: &str) -> Answer {
    let mut body = registration_body(email.as_ref(), &[]);
    body["category"] = json!(category);
    app.post(
        &format!("/api/v1/events/{event}/registrations"),
        None,
        &body,
    )
    .await
}

fn field_of(problem: &Value) -> String {
    problem["errors"][0]["field"]
        .as_str()
        .or(problem["field"].as_str())
        .unwrap_or_default()
        .to_owned()
}

async fn registrations_in(app: &TestApp, category: &str) -> i64 {
    count(
        app,
        &format!("SELECT count(*) FROM registrations WHERE category = '{category}'"),
    )
    .await
}

#[tokio::test]
async fn every_event_starts_with_the_five_standard_categories() {
    let app = spawn_app().await;
    let token = app.admin().await.access;
    app.event(&token, "mmdn", json!({})).await;

    let answer = app.get("/api/v1/events/mmdn/categories", None).await;

    answer.assert_status(200);
    let codes: Vec<String> = answer
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["code"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        codes,
        ["government", "business", "nonprofit", "media", "other"]
    );
    assert_eq!(
        answer.json()[1]["name"],
        json!({"ru": "Бизнес", "en": "Business"})
    );
}

#[tokio::test]
async fn a_full_category_without_waitlist_refuses_with_409_naming_the_category() {
    let app = spawn_app().await;
    let token = app.admin().await.access;
    app.event(&token, "mmdn", json!({})).await;
    let press = add_category(
        &app,
        &token,
        "mmdn",
        json!({"code": "press", "name": {"ru": "Пресса", "en": "Press"}, "capacity": 2}),
    )
    .await;
    assert_eq!(press["places_left"], 2);

    for i in 0..2 {
        register_in(&app, "mmdn", format!("p{i}@example.org"), "press")
            .await
            .assert_status(201);
    }
    let refused = register_in(&app, "mmdn", "late@example.org", "press").await;

    let problem = refused.assert_problem(409, "category_full");
    assert_eq!(problem["field"], "category");
    assert_eq!(registrations_in(&app, "press").await, 2);
    let press = app.get("/api/v1/events/mmdn/categories/press", None).await;
    assert_eq!(press.json()["places_left"], 0);
    assert_eq!(press.json()["registered"], 2);
}

#[tokio::test]
async fn a_full_category_with_waitlist_queues_and_a_cancellation_promotes_the_first() {
    let app = spawn_app().await;
    let token = app.admin().await.access;
    app.event(&token, "mmdn", json!({})).await;
    add_category(
        &app,
        &token,
        "mmdn",
        json!({"code": "students", "name": {"ru": "Студенты", "en": "Students"},
               "capacity": 1, "waitlist": true}),
    )
    .await;

    let first = register_in(&app, "mmdn", "first@example.org", "students").await;
    let second = register_in(&app, "mmdn", "second@example.org", "students").await;
    let third = register_in(&app, "mmdn", "third@example.org", "students").await;

    assert_eq!(first.json()["category_waitlist_position"], Value::Null);
    assert_eq!(second.json()["category_waitlist_position"], 1);
    assert_eq!(third.json()["category_waitlist_position"], 2);
    let manage = first.json()["manage_token"].as_str().unwrap().to_owned();
    app.call(
        Method::DELETE,
        &format!("/api/v1/registrations/{}", id_of(&first.json())),
    )
    .bearer(&manage)
    .send()
    .await
    .assert_status(200);
    let second_now = app
        .get(
            &format!("/api/v1/registrations/{}", id_of(&second.json())),
            Some(&token),
        )
        .await;
    assert_eq!(second_now.json()["category_waitlist_position"], Value::Null);
    let third_now = app
        .get(
            &format!("/api/v1/registrations/{}", id_of(&third.json())),
            Some(&token),
        )
        .await;
    assert_eq!(third_now.json()["category_waitlist_position"], 1);
    let history = app
        .get(
            &format!("/api/v1/registrations/{}/history", id_of(&second.json())),
            Some(&token),
        )
        .await;
    let history = history.json();
    let kinds: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(kinds.contains(&"promoted"), "{kinds:?}");
    let category = app
        .get("/api/v1/events/mmdn/categories/students", None)
        .await;
    assert_eq!(category.json()["waiting"], 1);
}

#[tokio::test]
async fn invite_only_categories_take_organisers_registrations_only() {
    let app = spawn_app().await;
    let token = app.admin().await.access;
    app.event(&token, "mmdn", json!({})).await;
    add_category(
        &app,
        &token,
        "mmdn",
        json!({"code": "speakers", "name": {"ru": "Спикеры", "en": "Speakers"}, "public": false}),
    )
    .await;

    let public = register_in(&app, "mmdn", "p@example.org", "speakers").await;
    let mut manual = registration_body("s@example.org", &[]);
    manual["category"] = json!("speakers");
    let by_organiser = app
        .post(
            "/api/v1/events/mmdn/registrations/manual",
            Some(&token),
            &manual,
        )
        .await;
    let listed = app.get("/api/v1/events/mmdn/categories", None).await;

    assert_eq!(
        field_of(&public.assert_problem(422, "validation_failed")),
        "category"
    );
    by_organiser.assert_status(201);
    assert!(
        !listed
            .json()
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["code"] == "speakers")
    );
    app.get("/api/v1/events/mmdn/categories/speakers", None)
        .await
        .assert_problem(404, "not_found");
    assert_eq!(registrations_in(&app, "speakers").await, 1);
}

#[tokio::test]
async fn a_category_outside_its_window_or_unknown_is_refused_naming_the_category() {
    let app = spawn_app().await;
    let token = app.admin().await.access;
    app.event(&token, "mmdn", json!({})).await;
    add_category(
        &app,
        &token,
        "mmdn",
        json!({"code": "early", "name": {"ru": "Ранние", "en": "Early"},
               "registration_closes_at": "2020-01-01T00:00:00Z"}),
    )
    .await;

    let closed = register_in(&app, "mmdn", "p@example.org", "early").await;
    let unknown = register_in(&app, "mmdn", "q@example.org", "astronauts").await;
    let malformed = register_in(&app, "mmdn", "r@example.org", "Бизнес").await;

    assert_eq!(
        closed.assert_problem(409, "registration_closed")["field"],
        "category"
    );
    assert_eq!(
        field_of(&unknown.assert_problem(422, "validation_failed")),
        "category"
    );
    assert_eq!(
        field_of(&malformed.assert_problem(422, "validation_failed")),
        "category"
    );
    assert_eq!(count(&app, "SELECT count(*) FROM registrations").await, 0);
}

#[tokio::test]
async fn categories_in_use_keep_their_code_and_cannot_be_deleted() {
    let app = spawn_app().await;
    let token = app.admin().await.access;
    app.event(&token, "mmdn", json!({})).await;
    app.register("mmdn", "p@example.org", &[])
        .await
        .assert_status(201);

    let renamed = app
        .patch(
            "/api/v1/events/mmdn/categories/nonprofit",
            Some(&token),
            &json!({"code": "society"}),
        )
        .await;
    let deleted = app
        .delete("/api/v1/events/mmdn/categories/nonprofit", Some(&token))
        .await;
    let unused = app
        .delete("/api/v1/events/mmdn/categories/media", Some(&token))
        .await;
    let duplicate = app
        .post(
            "/api/v1/events/mmdn/categories",
            Some(&token),
            &json!({"code": "business", "name": {"ru": "Б", "en": "B"}}),
        )
        .await;

    renamed.assert_problem(409, "category_in_use");
    deleted.assert_problem(409, "category_in_use");
    unused.assert_status(204);
    assert_eq!(
        duplicate.assert_problem(409, "category_exists")["field"],
        "code"
    );
}

#[tokio::test]
async fn a_capacity_below_the_places_held_is_refused_and_a_higher_one_promotes() {
    let app = spawn_app().await;
    let token = app.admin().await.access;
    app.event(&token, "mmdn", json!({})).await;
    add_category(
        &app,
        &token,
        "mmdn",
        json!({"code": "vip", "name": {"ru": "ВИП", "en": "VIP"}, "capacity": 2, "waitlist": true}),
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..4 {
        let answer = register_in(&app, "mmdn", &format!("v{i}@example.org"), "vip").await;
        ids.push(id_of(&answer.json()));
    }

    let lower = app
        .patch(
            "/api/v1/events/mmdn/categories/vip",
            Some(&token),
            &json!({"capacity": 1}),
        )
        .await;
    let waitlist_off = app
        .patch(
            "/api/v1/events/mmdn/categories/vip",
            Some(&token),
            &json!({"waitlist": false}),
        )
        .await;
    let higher = app
        .patch(
            "/api/v1/events/mmdn/categories/vip",
            Some(&token),
            &json!({"capacity": 3}),
        )
        .await;

    lower.assert_problem(409, "capacity_below_registered");
    waitlist_off.assert_problem(409, "waitlist_not_empty");
    higher.assert_status(200);
    assert_eq!(higher.json()["registered"], 3);
    assert_eq!(higher.json()["waiting"], 1);
    let third = app
        .get(&format!("/api/v1/registrations/{}", ids[2]), Some(&token))
        .await;
    assert_eq!(third.json()["category_waitlist_position"], Value::Null);
    let fourth = app
        .get(&format!("/api/v1/registrations/{}", ids[3]), Some(&token))
        .await;
    assert_eq!(fourth.json()["category_waitlist_position"], 1);
}

#[tokio::test]
async fn changing_category_follows_the_rules_of_registering_in_it() {
    let app = spawn_app().await;
    let token = app.admin().await.access;
    app.event(&token, "mmdn", json!({})).await;
    add_category(
        &app,
        &token,
        "mmdn",
        json!({"code": "press", "name": {"ru": "Пресса", "en": "Press"}, "capacity": 1}),
    )
    .await;
    register_in(&app, "mmdn", "journalist@example.org", "press")
        .await
        .assert_status(201);
    let answer = app.register("mmdn", "p@example.org", &[]).await;
    let (id, manage) = (
        id_of(&answer.json()),
        answer.json()["manage_token"].as_str().unwrap().to_owned(),
    );
    let path = format!("/api/v1/registrations/{id}");

    let full = app
        .patch(&path, Some(&manage), &json!({"category": "press"}))
        .await;
    let unknown = app
        .patch(&path, Some(&manage), &json!({"category": "astronauts"}))
        .await;
    let moved = app
        .patch(&path, Some(&manage), &json!({"category": "business"}))
        .await;

    assert_eq!(
        full.assert_problem(409, "category_full")["field"],
        "category"
    );
    assert_eq!(
        field_of(&unknown.assert_problem(422, "validation_failed")),
        "category"
    );
    moved.assert_status(200);
    assert_eq!(moved.json()["category"], "business");
    assert_eq!(registrations_in(&app, "press").await, 1);
}

/// An app that really runs requests in parallel.
async fn parallel_app() -> TestApp {
    spawn_app_with(|config| {
        config.db_pool_size = 16;
        config.workers = 2;
        config.db_timeout_ms = 60_000;
    })
    .await
}

#[tokio::test]
async fn simultaneous_registrations_never_oversell_a_category_and_queue_in_exact_order() {
    let app = parallel_app().await;
    let token = app.admin().await.access;
    app.event(&token, "mmdn", json!({})).await;
    add_category(
        &app,
        &token,
        "mmdn",
        json!({"code": "students", "name": {"ru": "Студенты", "en": "Students"},
               "capacity": 30, "waitlist": true}),
    )
    .await;
    add_category(
        &app,
        &token,
        "mmdn",
        json!({"code": "press", "name": {"ru": "Пресса", "en": "Press"}, "capacity": 10}),
    )
    .await;

    let students = join_all(
        (0..80).map(|i| register_in(&app, "mmdn", format!("s{i}@example.org"), "students")),
    );
    let press =
        join_all((0..40).map(|i| register_in(&app, "mmdn", format!("p{i}@example.org"), "press")));
    let (students, press) = futures_util::join!(students, press);

    let mut positions: Vec<i64> = Vec::new();
    let mut placed = 0;
    for answer in &students {
        answer.assert_status(201);
        match answer.json()["category_waitlist_position"].as_i64() {
            Some(position) => positions.push(position),
            None => placed += 1,
        }
    }
    positions.sort_unstable();
    assert_eq!(placed, 30);
    assert_eq!(positions, (1..=50).collect::<Vec<i64>>());
    let press_ok = press.iter().filter(|a| a.status.as_u16() == 201).count();
    assert_eq!(press_ok, 10);
    for answer in press.iter().filter(|a| a.status.as_u16() != 201) {
        answer.assert_problem(409, "category_full");
    }
    assert_eq!(registrations_in(&app, "press").await, 10);
    let held = count(
        &app,
        "SELECT count(*) FROM form_seats s JOIN event_categories c ON c.id = s.pool \
         WHERE c.code = 'students' AND s.registration_id IS NOT NULL",
    )
    .await;
    assert_eq!(held, 30);
    let waiting = count(
        &app,
        "SELECT count(*) FROM registrations WHERE category = 'students' \
         AND category_waitlist_order IS NOT NULL",
    )
    .await;
    assert_eq!(waiting, 50);

    // Cancelling ten placed students gives the places to the first ten in line, in order.
    let mut placed_ids = Vec::new();
    let mut queue: Vec<(i64, String)> = Vec::new();
    for answer in &students {
        let body = answer.json();
        match body["category_waitlist_position"].as_i64() {
            None => placed_ids.push((
                id_of(&body),
                body["manage_token"].as_str().unwrap().to_owned(),
            )),
            Some(position) => queue.push((position, id_of(&body))),
        }
    }
    queue.sort();
    join_all(placed_ids[..10].iter().map(|(id, manage)| {
        app.call(Method::DELETE, &format!("/api/v1/registrations/{id}"))
            .bearer(manage)
            .send()
    }))
    .await
    .iter()
    .for_each(|a| {
        a.assert_status(200);
    });
    for (position, id) in &queue {
        let now = app
            .get(&format!("/api/v1/registrations/{id}"), Some(&token))
            .await
            .json();
        let expected = if *position <= 10 {
            Value::Null
        } else {
            json!(position - 10)
        };
        assert_eq!(now["category_waitlist_position"], expected, "{id}");
    }
}
