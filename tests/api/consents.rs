//! Consent texts organisers manage: versions kept, each registration keeping the version it
//! accepted, required consents enforced, and what cannot be deleted.

use serde_json::{Value, json};

use crate::helpers::{TestApp, registration_body, spawn_app};

const PHOTOS_V1: &str = "Я согласен на фото- и видеосъёмку на площадках недели.";
const PHOTOS_V2: &str = "Я согласен на фото- и видеосъёмку и на публикацию снимков в отчёте.";

fn fields(problem: &Value) -> Vec<String> {
    let mut fields: Vec<String> = problem["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| e["field"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default();
    fields.sort();
    fields
}

/// Registers `email` accepting `consents`: the answer.
async fn register(app: &TestApp, email: &str, consents: Value) -> crate::helpers::Answer {
    let mut body = registration_body(email, &[]);
    body.as_object_mut().unwrap().remove("consent");
    body["consents"] = consents;
    app.post("/api/v1/events/kola/registrations", None, &body)
        .await
}

fn accepted(view: &Value, key: &str) -> Value {
    view["consents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["key"] == key)
        .cloned()
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn a_new_text_is_a_new_version_and_registrations_keep_the_one_they_accepted() {
    let app = spawn_app().await;
    let admin = app.admin().await.access;
    app.event(&admin, "kola", json!({})).await;

    let created = app
        .post(
            "/api/v1/events/kola/consents",
            Some(&admin),
            &json!({"key": "photos", "text": {"ru": PHOTOS_V1, "en": "I agree to be photographed."},
                    "position": 2}),
        )
        .await;
    created.assert_status(201);
    let created = created.json();
    assert_eq!(created["version"], 1);
    assert_eq!(created["required"], false);
    assert_eq!(created["text"]["ru"], PHOTOS_V1);
    let form = app
        .get("/api/v1/events/kola/registration-form", None)
        .await
        .json();
    let keys: Vec<(&str, i64)> = form["consents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["key"].as_str().unwrap(), c["version"].as_i64().unwrap()))
        .collect();
    assert_eq!(keys, [("personal_data", 1), ("photos", 1)]);

    let first = register(
        &app,
        "first@example.org",
        json!({"personal_data": true, "photos": true}),
    )
    .await;
    first.assert_status(201);
    let first = first.json();

    // A new text: version 2, in force from now on.
    let changed = app
        .patch(
            "/api/v1/events/kola/consents/photos",
            Some(&admin),
            &json!({"text": {"ru": PHOTOS_V2, "en": "I agree to be photographed and published."}}),
        )
        .await;
    changed.assert_status(200);
    assert_eq!(changed.json()["version"], 2);
    // Required and position change the consent as it is; the same text again is no new version.
    let same = app
        .patch(
            "/api/v1/events/kola/consents/photos",
            Some(&admin),
            &json!({"required": true, "position": 3,
                    "text": {"ru": PHOTOS_V2, "en": "I agree to be photographed and published."}}),
        )
        .await;
    same.assert_status(200);
    let same = same.json();
    assert_eq!(same["version"], 2);
    assert_eq!(same["required"], true);
    assert_eq!(same["position"], 3);
    let form = app
        .get("/api/v1/events/kola/registration-form", None)
        .await
        .json();
    assert_eq!(form["consents"][1]["version"], 2);
    assert_eq!(form["consents"][1]["text"]["ru"], PHOTOS_V2);

    // Now required: registering without it is refused, naming it, and nothing is stored.
    let refused = register(&app, "refused@example.org", json!({"personal_data": true})).await;
    let problem = refused.assert_problem(422, "validation_failed");
    assert_eq!(fields(&problem), ["consents.photos"]);

    let second = register(
        &app,
        "second@example.org",
        json!({"personal_data": true, "photos": true}),
    )
    .await;
    second.assert_status(201);
    let second = second.json();

    // Each registration shows what it accepted: to its participant and to organisers.
    let id = first["id"].as_str().unwrap();
    let mine = app
        .get(
            &format!("/api/v1/registrations/{id}"),
            first["manage_token"].as_str(),
        )
        .await
        .json();
    let photos = accepted(&mine, "photos");
    assert_eq!(photos["version"], 1);
    assert_eq!(photos["text"]["ru"], PHOTOS_V1);
    assert!(photos["accepted_at"].is_string());
    assert_eq!(accepted(&mine, "personal_data")["version"], 1);
    let id = second["id"].as_str().unwrap();
    let theirs = app
        .get(&format!("/api/v1/registrations/{id}"), Some(&admin))
        .await
        .json();
    assert_eq!(accepted(&theirs, "photos")["version"], 2);
    assert_eq!(accepted(&theirs, "photos")["text"]["ru"], PHOTOS_V2);
    let list = app
        .get("/api/v1/events/kola/registrations", Some(&admin))
        .await
        .json();
    let versions: Vec<i64> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| accepted(r, "photos")["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions.len(), 2);
    assert!(
        versions.contains(&1) && versions.contains(&2),
        "{versions:?}"
    );

    // Every text stays readable, with how many accepted it.
    let versions = app
        .get("/api/v1/events/kola/consents/photos/versions", None)
        .await;
    versions.assert_status(200);
    let versions = versions.json();
    let summary: Vec<(i64, &str, i64)> = versions
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_i64().unwrap(),
                v["text"]["ru"].as_str().unwrap(),
                v["accepted"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(summary, [(1, PHOTOS_V1, 1), (2, PHOTOS_V2, 1)]);

    // An accepted consent stays as the record of it; personal_data always stays.
    let problem = app
        .delete("/api/v1/events/kola/consents/photos", Some(&admin))
        .await
        .assert_problem(409, "consent_in_use");
    assert_eq!(problem["field"], "key");
    assert_eq!(problem["key"], "photos");
    app.delete("/api/v1/events/kola/consents/personal_data", Some(&admin))
        .await
        .assert_problem(409, "consent_fixed");
    // One nobody accepted goes, with its versions.
    app.post(
        "/api/v1/events/kola/consents",
        Some(&admin),
        &json!({"key": "mailing", "text": {"ru": "Рассылка", "en": "Mailing"}}),
    )
    .await
    .assert_status(201);
    app.delete("/api/v1/events/kola/consents/mailing", Some(&admin))
        .await
        .assert_status(204);
    app.get("/api/v1/events/kola/consents/mailing", None)
        .await
        .assert_problem(404, "not_found");
    let listed: Vec<String> = app
        .get("/api/v1/events/kola/consents", None)
        .await
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["key"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, ["personal_data", "photos"]);
}

#[tokio::test]
async fn bad_consents_are_refused_naming_the_field() {
    let app = spawn_app().await;
    let admin = app.admin().await.access;
    app.event(&admin, "kola", json!({})).await;

    let problem = app
        .post(
            "/api/v1/events/kola/consents",
            Some(&admin),
            &json!({"key": "Фото", "text": {"ru": "  ", "en": "x".repeat(10_001)},
                    "position": 1_000_000}),
        )
        .await
        .assert_problem(422, "validation_failed");
    assert_eq!(fields(&problem), ["key", "position", "text.en", "text.ru"]);
    let problem = app
        .post(
            "/api/v1/events/kola/consents",
            Some(&admin),
            &json!({"key": "photos", "text": {"ru": "Фото"}}),
        )
        .await
        .assert_problem(422, "invalid_body");
    assert_eq!(fields(&problem), ["text.en"]);
    app.post(
        "/api/v1/events/kola/consents",
        Some(&admin),
        &json!({"key": "personal_data", "required": true,
                "text": {"ru": "Ещё раз", "en": "Again"}}),
    )
    .await
    .assert_problem(409, "consent_exists");
    let problem = app
        .patch(
            "/api/v1/events/kola/consents/personal_data",
            Some(&admin),
            &json!({"required": false}),
        )
        .await
        .assert_problem(422, "validation_failed");
    assert_eq!(fields(&problem), ["required"]);
    let problem = app
        .patch(
            "/api/v1/events/kola/consents/personal_data",
            Some(&admin),
            &json!({"text": {"ru": "", "en": "Text"}}),
        )
        .await
        .assert_problem(422, "validation_failed");
    assert_eq!(fields(&problem), ["text.ru"]);
    app.patch(
        "/api/v1/events/kola/consents/tattoos",
        Some(&admin),
        &json!({"position": 1}),
    )
    .await
    .assert_problem(404, "not_found");
    // Nothing of that was stored: still the one consent, in its first version.
    let listed = app.get("/api/v1/events/kola/consents", None).await.json();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["version"], 1);
    assert_eq!(listed[0]["required"], true);
}

/// The consents of a batch of registrations (a page of the list, a batch of webhooks) are
/// found by the registrations' ids, also with statistics from when few consents were stored:
/// not by joining them to every registration.
#[tokio::test]
async fn accepted_consents_of_a_batch_are_found_by_its_ids_whatever_the_statistics() {
    let app = spawn_app().await;
    let token = app.admin().await.access;
    let event = crate::registrations::id_of(&app.event(&token, "mmdn", json!({})).await);
    let client = app.db.client().await;
    crate::helpers::bulk_registrations(&client, &event, "c", 20000).await;
    client
        .batch_execute(&format!(
            "ALTER TABLE registration_consents SET (autovacuum_enabled = false); \
             INSERT INTO registration_consents (registration_id, consent_key, version) \
             SELECT id, 'personal_data', 1 FROM registrations \
             WHERE event_id = '{event}' ORDER BY id LIMIT 5; \
             ANALYZE registrations, registration_consents; \
             INSERT INTO registration_consents (registration_id, consent_key, version) \
             SELECT r.id, 'personal_data', 1 FROM registrations r \
             WHERE r.event_id = '{event}' \
               AND NOT EXISTS (SELECT 1 FROM registration_consents c WHERE c.registration_id = r.id)"
        ))
        .await
        .unwrap();
    let ids: Vec<String> = client
        .query(
            "SELECT registration_id::text FROM registration_consents \
             ORDER BY registration_id DESC LIMIT 300",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| format!("'{}'", row.get::<_, String>(0)))
        .collect();

    let plan = crate::helpers::explained(
        &client,
        &registrar::forms::consents::ACCEPTED_BY
            .replace("$1", &format!("ARRAY[{}]::uuid[]", ids.join(","))),
    )
    .await;
    let read = crate::helpers::rows_scanned(&plan, "registrations");
    assert!(read <= 300, "{read} registrations read:\n{plan}");
}

#[tokio::test]
async fn a_participant_shown_a_text_since_changed_is_asked_again_not_recorded() {
    let app = spawn_app().await;
    let admin = app.admin().await.access;
    app.event(&admin, "kola", json!({})).await;
    app.post(
        "/api/v1/events/kola/consents",
        Some(&admin),
        &json!({"key": "photos", "required": true,
                "text": {"ru": PHOTOS_V1, "en": "I agree to be photographed."}}),
    )
    .await
    .assert_status(201);
    // The frontend shows version 1 and sends the version it showed.
    let shown = register(
        &app,
        "first@example.org",
        json!({"personal_data": 1, "photos": 1}),
    )
    .await;
    shown.assert_status(201);
    let view = app
        .get(
            &format!(
                "/api/v1/registrations/{}",
                shown.json()["id"].as_str().unwrap()
            ),
            Some(&admin),
        )
        .await
        .json();
    assert_eq!(accepted(&view, "photos")["version"], 1);

    // The text changes while the next participant reads version 1.
    app.patch(
        "/api/v1/events/kola/consents/photos",
        Some(&admin),
        &json!({"text": {"ru": PHOTOS_V2, "en": "I agree to be photographed and published."}}),
    )
    .await
    .assert_status(200);
    let stale = register(
        &app,
        "second@example.org",
        json!({"personal_data": 1, "photos": 1}),
    )
    .await
    .assert_problem(422, "validation_failed");
    assert_eq!(fields(&stale), ["consents.photos"], "{stale}");
    let message = stale["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("version in force (2)"), "{message}");
    let stored: i64 = app
        .db
        .client()
        .await
        .query_one("SELECT count(*) FROM registrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 1);

    // Shown the new text, they accept version 2; `true` still accepts the one in force.
    for (email, photos) in [
        ("second@example.org", json!(2)),
        ("third@example.org", json!(true)),
    ] {
        let answer = register(
            &app,
            email,
            json!({"personal_data": true, "photos": photos}),
        )
        .await;
        answer.assert_status(201);
        let view = app
            .get(
                &format!(
                    "/api/v1/registrations/{}",
                    answer.json()["id"].as_str().unwrap()
                ),
                Some(&admin),
            )
            .await
            .json();
        assert_eq!(accepted(&view, "photos")["version"], 2);
        assert_eq!(accepted(&view, "photos")["text"]["ru"], PHOTOS_V2);
    }
}
