//! Answers changed after registering: by the participant and by organisers, checked by the
//! rules of registering, with places in choice options given back and taken in the same
//! transaction (never oversold under concurrency), and recorded in the history without
//! personal data.

use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::forms::{add_category, event_with_form, field_of, full_body, parallel_app};
use crate::helpers::{TestApp, spawn_app};
use crate::registrations::{count, id_of};

/// Registers `full_body(email)` choosing `excursion`: the registration's id and manage token.
async fn register(app: &TestApp, email: &str, excursion: &str) -> (String, String) {
    let mut body = full_body(email);
    body["answers"]["excursion"] = json!(excursion);
    let answer = app
        .post("/api/v1/events/mmdn/registrations", None, &body)
        .await;
    answer.assert_status(201);
    let json = answer.json();
    (
        id_of(&json),
        json["manage_token"].as_str().unwrap().to_owned(),
    )
}

/// `full_body`'s answers with `excursion` chosen.
fn answers_with(excursion: &str) -> Value {
    let mut answers = full_body("x")["answers"].clone();
    answers["excursion"] = json!(excursion);
    answers
}

/// The registrations holding a place in the plant excursion, sorted.
async fn plant_holders(app: &TestApp) -> Vec<String> {
    let rows = app
        .db
        .client()
        .await
        .query(
            "SELECT s.registration_id::text FROM form_seats s JOIN form_options o ON o.id = s.pool \
             WHERE o.key = 'plant' AND s.registration_id IS NOT NULL ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

async fn history(app: &TestApp, token: &str, id: &str) -> Vec<Value> {
    let answer = app
        .get(&format!("/api/v1/registrations/{id}/history"), Some(token))
        .await;
    answer.assert_status(200);
    answer.json().as_array().unwrap().clone()
}

fn changed_entries(history: &[Value]) -> Vec<&Value> {
    history
        .iter()
        .filter(|e| e["action"] == "changed")
        .collect()
}

#[tokio::test]
async fn participants_and_organisers_change_answers_without_consenting_again() {
    let app = spawn_app().await;
    let token = app.admin().await.access;
    event_with_form(&app, &token, 30).await;
    let (id, manage) = register(&app, "anna@example.org", "museum").await;
    let path = format!("/api/v1/registrations/{id}");
    let by_participant =
        json!({"direction": "volunteering", "town": "Кандалакша", "transfer": false});
    let by_organiser = json!({"direction": "projects", "town": "Кандалакша", "transfer": false,
                              "excursion": "plant", "topics": ["b"]});

    let first = app
        .patch(&path, Some(&manage), &json!({"answers": by_participant}))
        .await;
    let second = app
        .patch(&path, Some(&token), &json!({"answers": by_organiser}))
        .await;

    first.assert_status(200);
    assert_eq!(first.json()["answers"], by_participant);
    second.assert_status(200);
    assert_eq!(second.json()["answers"], by_organiser);
    let stored = app.get(&path, Some(&manage)).await;
    assert_eq!(stored.json()["answers"], by_organiser);
    assert_eq!(plant_holders(&app).await, vec![id.clone()]);
    let entries = history(&app, &token, &id).await;
    let changed = changed_entries(&entries);
    assert_eq!(changed.len(), 2);
    assert_eq!(changed[0]["actor"], "participant");
    assert_eq!(changed[1]["actor"], "organiser");
    assert_eq!(changed[1]["details"]["fields"], json!(["answers"]));
}

#[tokio::test]
async fn each_bad_answer_in_a_change_is_a_422_naming_it_and_nothing_changes() {
    let app = spawn_app().await;
    let token = app.admin().await.access;
    event_with_form(&app, &token, 30).await;
    let (id, manage) = register(&app, "anna@example.org", "plant").await;
    let path = format!("/api/v1/registrations/{id}");
    let with = |f: &dyn Fn(&mut Value)| {
        let mut answers = answers_with("plant");
        f(&mut answers);
        json!({ "answers": answers })
    };
    let cases = [
        (with(&|a| a["unknown"] = json!(1)), "answers.unknown"),
        (with(&|a| a["transfer"] = json!("yes")), "answers.transfer"),
        // Hidden by its condition: arrival is asked only with a transfer.
        (with(&|a| a["transfer"] = json!(false)), "answers.arrival"),
        (
            with(&|a| a["topics"] = json!(["a", "b", "c"])),
            "answers.topics",
        ),
        (
            with(&|a| a["town"] = json!("М".repeat(101))),
            "answers.town",
        ),
        (
            with(&|a| {
                a.as_object_mut().unwrap().remove("town");
            }),
            "answers.town",
        ),
        (
            with(&|a| a["excursion"] = json!("boat")),
            "answers.excursion",
        ),
        // The excursion is asked of business and government only.
        (
            json!({"category": "nonprofit", "answers": answers_with("museum")}),
            "answers.excursion",
        ),
        (json!({"category": "nonprofit"}), "answers.excursion"),
    ];

    for (body, field) in cases {
        for caller in [&manage, &token] {
            let answer = app.patch(&path, Some(caller), &body).await;
            let problem = answer.assert_problem(422, "validation_failed");
            let fields: Vec<&str> = problem["errors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["field"].as_str().unwrap())
                .collect();
            assert!(fields.contains(&field), "{field}: {problem}");
        }
    }

    let stored = app.get(&path, Some(&manage)).await.json();
    assert_eq!(stored["answers"], answers_with("plant"));
    assert_eq!(stored["category"], "business");
    assert_eq!(plant_holders(&app).await, vec![id.clone()]);
    assert!(changed_entries(&history(&app, &token, &id).await).is_empty());
}

#[tokio::test]
async fn a_full_option_in_a_change_is_a_409_naming_it_and_nothing_changes() {
    let app = spawn_app().await;
    let token = app.admin().await.access;
    event_with_form(&app, &token, 1).await;
    let (first, _) = register(&app, "first@example.org", "plant").await;
    let (second, manage) = register(&app, "second@example.org", "museum").await;
    let path = format!("/api/v1/registrations/{second}");
    let mut changed = answers_with("plant");
    changed["town"] = json!("Апатиты");

    let refused = app
        .patch(&path, Some(&manage), &json!({"answers": changed}))
        .await;

    let problem = refused.assert_problem(409, "option_full");
    assert_eq!(problem["field"], "answers.excursion");
    assert_eq!(problem["option"], "plant");
    let stored = app.get(&path, Some(&manage)).await.json();
    assert_eq!(stored["answers"], answers_with("museum"));
    assert_eq!(plant_holders(&app).await, vec![first]);
    assert!(changed_entries(&history(&app, &token, &second).await).is_empty());
}

#[tokio::test]
async fn changing_away_from_a_limited_option_frees_its_place_for_someone_else() {
    let app = spawn_app().await;
    let token = app.admin().await.access;
    event_with_form(&app, &token, 1).await;
    let (first, first_manage) = register(&app, "first@example.org", "plant").await;
    let (second, second_manage) = register(&app, "second@example.org", "museum").await;
    let to_plant = json!({"answers": answers_with("plant")});

    app.patch(
        &format!("/api/v1/registrations/{second}"),
        Some(&second_manage),
        &to_plant,
    )
    .await
    .assert_problem(409, "option_full");
    app.patch(
        &format!("/api/v1/registrations/{first}"),
        Some(&first_manage),
        &json!({"answers": answers_with("museum")}),
    )
    .await
    .assert_status(200);
    let taken = app
        .patch(
            &format!("/api/v1/registrations/{second}"),
            Some(&second_manage),
            &to_plant,
        )
        .await;

    taken.assert_status(200);
    assert_eq!(taken.json()["answers"]["excursion"], "plant");
    assert_eq!(plant_holders(&app).await, vec![second]);
    let plant = app
        .get("/api/v1/events/mmdn/questions/excursion", None)
        .await;
    assert_eq!(plant.json()["options"][0]["places_left"], 0);
}

#[tokio::test]
async fn an_option_kept_keeps_its_place_even_when_it_was_taken_beyond_capacity() {
    let app = spawn_app().await;
    let token = app.admin().await.access;
    event_with_form(&app, &token, 1).await;
    let (first, _) = register(&app, "first@example.org", "plant").await;
    let mut manual = full_body("guest@example.org");
    manual["answers"]["excursion"] = json!("plant");
    manual["over_capacity"] = json!(true);
    let guest = app
        .post(
            "/api/v1/events/mmdn/registrations/manual",
            Some(&token),
            &manual,
        )
        .await;
    guest.assert_status(201);
    let guest = guest.json();
    let path = format!("/api/v1/registrations/{}", id_of(&guest));
    let mut changed = answers_with("plant");
    changed["town"] = json!("Апатиты");

    let answer = app
        .patch(
            &path,
            Some(guest["manage_token"].as_str().unwrap()),
            &json!({"answers": changed}),
        )
        .await;

    answer.assert_status(200);
    assert_eq!(answer.json()["answers"], changed);
    assert_eq!(plant_holders(&app).await, vec![first]);
}

#[tokio::test]
async fn a_participant_in_an_invite_only_category_changes_answers_but_cannot_choose_one() {
    let app = spawn_app().await;
    let token = app.admin().await.access;
    event_with_form(&app, &token, 30).await;
    add_category(
        &app,
        &token,
        "mmdn",
        json!({"code": "speakers", "name": {"ru": "Спикеры", "en": "Speakers"}, "public": false}),
    )
    .await;
    let mut manual = full_body("speaker@example.org");
    manual["category"] = json!("speakers");
    manual["answers"]
        .as_object_mut()
        .unwrap()
        .remove("excursion");
    let speaker = app
        .post(
            "/api/v1/events/mmdn/registrations/manual",
            Some(&token),
            &manual,
        )
        .await;
    speaker.assert_status(201);
    let speaker = speaker.json();
    let (anna, manage) = register(&app, "anna@example.org", "museum").await;
    let mut answers = manual["answers"].clone();
    answers["town"] = json!("Апатиты");

    let changed = app
        .patch(
            &format!("/api/v1/registrations/{}", id_of(&speaker)),
            Some(speaker["manage_token"].as_str().unwrap()),
            &json!({"answers": answers}),
        )
        .await;
    let chosen = app
        .patch(
            &format!("/api/v1/registrations/{anna}"),
            Some(&manage),
            &json!({"category": "speakers", "answers": answers}),
        )
        .await;

    changed.assert_status(200);
    assert_eq!(changed.json()["answers"]["town"], "Апатиты");
    assert_eq!(changed.json()["category"], "speakers");
    assert_eq!(
        field_of(&chosen.assert_problem(422, "validation_failed")),
        "category"
    );
}

#[tokio::test]
async fn a_cancelled_registration_cannot_change_its_answers() {
    let app = spawn_app().await;
    let token = app.admin().await.access;
    event_with_form(&app, &token, 30).await;
    let (id, manage) = register(&app, "anna@example.org", "museum").await;
    let path = format!("/api/v1/registrations/{id}");
    app.delete(&path, Some(&manage)).await.assert_status(200);

    let answer = app
        .patch(
            &path,
            Some(&token),
            &json!({"answers": answers_with("plant")}),
        )
        .await;

    answer.assert_problem(409, "registration_cancelled");
    assert!(plant_holders(&app).await.is_empty());
    let stored = app.get(&path, Some(&token)).await.json();
    assert_eq!(stored["answers"], answers_with("museum"));
}

#[tokio::test]
async fn the_history_shows_old_and_new_answers_and_only_the_key_of_personal_ones() {
    let app = spawn_app().await;
    let token = app.admin().await.access;
    event_with_form(&app, &token, 30).await;
    app.post(
        "/api/v1/events/mmdn/questions",
        Some(&token),
        &json!({"key": "passport", "type": "text", "personal": true,
                "label": {"ru": "Паспорт", "en": "Passport"}}),
    )
    .await
    .assert_status(201);
    let mut body = full_body("anna@example.org");
    body["answers"]["passport"] = json!("4510 123456");
    let registered = app
        .post("/api/v1/events/mmdn/registrations", None, &body)
        .await;
    registered.assert_status(201);
    let id = id_of(&registered.json());
    let manage = registered.json()["manage_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut answers = body["answers"].clone();
    answers["town"] = json!("Апатиты");
    answers["passport"] = json!("4510 654321");
    answers.as_object_mut().unwrap().remove("notes");

    app.patch(
        &format!("/api/v1/registrations/{id}"),
        Some(&manage),
        &json!({"answers": answers, "city": "Апатиты"}),
    )
    .await
    .assert_status(200);

    let entries = history(&app, &token, &id).await;
    let changed = changed_entries(&entries);
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0]["details"]["fields"], json!(["city", "answers"]));
    assert_eq!(
        changed[0]["details"]["answers"],
        // In the form's order (by position, then key): the town was asked second, the
        // notes last, and the passport added after them.
        json!([
            {"key": "town", "old": "Мончегорск", "new": "Апатиты"},
            {"key": "notes", "old": "Строка\nещё строка", "new": null},
            {"key": "passport", "personal": true},
        ])
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM changes \
             WHERE details::text LIKE '%123456%' OR details::text LIKE '%654321%'"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn simultaneous_changes_never_oversell_an_option() {
    let app = parallel_app().await;
    let token = app.admin().await.access;
    event_with_form(&app, &token, 3).await;
    let mut registrations = Vec::new();
    for i in 0..20 {
        registrations.push(register(&app, &format!("p{i}@example.org"), "museum").await);
    }
    let to_plant = json!({"answers": answers_with("plant")});

    let answers = join_all(registrations.iter().map(|(id, manage)| {
        let (app, body) = (&app, &to_plant);
        async move {
            app.patch(&format!("/api/v1/registrations/{id}"), Some(manage), body)
                .await
        }
    }))
    .await;

    let mut winners = Vec::new();
    for ((id, _), answer) in registrations.iter().zip(&answers) {
        if answer.status.as_u16() == 200 {
            winners.push(id.clone());
        } else {
            let problem = answer.assert_problem(409, "option_full");
            assert_eq!(problem["option"], "plant");
            assert_eq!(field_of(&problem), "answers.excursion");
        }
    }
    winners.sort();
    assert_eq!(winners.len(), 3);
    assert_eq!(plant_holders(&app).await, winners);
    let rows = app
        .db
        .client()
        .await
        .query(
            "SELECT id::text FROM registrations WHERE answers ->> 'excursion' = 'plant' ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let chose: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(chose, winners);
}
