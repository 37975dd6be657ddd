//! Events: creating, reading, changing and deleting them; slugs; who may do what; members;
//! merge patches, ETags and keyset pagination.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{EVENT_FIRST_DAY, EVENT_LAST_DAY, TestApp, Tokens, spawn_app};

/// The fields a 422 `validation_failed` problem names, in order.
pub fn invalid_fields(answer: &crate::helpers::Answer) -> Vec<String> {
    let problem = answer.assert_problem(422, "validation_failed");
    problem["errors"]
        .as_array()
        .expect("a validation problem lists its errors")
        .iter()
        .map(|error| error["field"].as_str().unwrap().to_owned())
        .collect()
}

fn event_body(slug: &str, extra: Value) -> Value {
    let mut body = json!({
        "slug": slug,
        "title": "VII Мурманская международная деловая неделя",
        "time_zone": "Europe/Moscow",
        "starts_on": EVENT_FIRST_DAY,
        "ends_on": EVENT_LAST_DAY,
    });
    crate::helpers::merge(&mut body, extra);
    body
}

/// An app with an admin, an organiser who owns the published event `mmdn`, and a second
/// organiser who is not a member of it.
struct TwoOrganisers {
    app: TestApp,
    admin: Tokens,
    owner_id: uuid::Uuid,
    owner: Tokens,
    other_id: uuid::Uuid,
    other: Tokens,
}

async fn two_organisers(status: &str) -> TwoOrganisers {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let (owner_id, owner) = app.organiser(&admin, "olga@example.org").await;
    let (other_id, other) = app.organiser(&admin, "ivan@example.org").await;
    app.event(&owner.access, "mmdn", json!({"status": status}))
        .await;
    TwoOrganisers {
        app,
        admin,
        owner_id,
        owner,
        other_id,
        other,
    }
}

async fn add_member(world: &TwoOrganisers, user_id: uuid::Uuid, role: &str) {
    world
        .app
        .call(
            Method::PUT,
            &format!("/api/v1/events/mmdn/members/{user_id}"),
        )
        .bearer(&world.owner.access)
        .json(&json!({"role": role}))
        .send()
        .await
        .assert_status(201);
}

// ---- creating and reading -------------------------------------------------------------

#[tokio::test]
async fn creating_an_event_answers_201_with_its_location_and_etag() {
    let app = spawn_app().await;
    let admin = app.admin().await;

    let answer = app
        .post(
            "/api/v1/events",
            Some(&admin.access),
            &event_body("vii-mmdn", json!({"city": "Мурманск"})),
        )
        .await;

    answer.assert_status(201);
    let body = answer.json();
    assert_eq!(answer.header("location"), Some("/api/v1/events/vii-mmdn"));
    assert!(
        answer
            .header("etag")
            .is_some_and(|tag| tag.starts_with('"'))
    );
    assert_eq!(body["slug"], "vii-mmdn");
    assert_eq!(body["time_zone"], "Europe/Moscow");
    assert_eq!(body["starts_on"], EVENT_FIRST_DAY);
    assert_eq!(body["ends_on"], EVENT_LAST_DAY);
    assert_eq!(body["city"], "Мурманск");
    assert_eq!(body["status"], "draft");
    assert_eq!(body["capacity"], Value::Null);
    assert_eq!(body["allow_overlapping_sessions"], false);
}

#[tokio::test]
async fn the_organiser_who_creates_an_event_becomes_its_owner() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let (olga_id, olga) = app.organiser(&admin, "olga@example.org").await;

    app.event(&olga.access, "mmdn", json!({})).await;
    let members = app
        .get("/api/v1/events/mmdn/members", Some(&olga.access))
        .await;

    members.assert_status(200);
    let items = members.json()["items"].clone();
    assert_eq!(items.as_array().unwrap().len(), 1);
    assert_eq!(items[0]["user_id"], olga_id.to_string());
    assert_eq!(items[0]["email"], "olga@example.org");
    assert_eq!(items[0]["role"], "owner");
}

#[tokio::test]
async fn an_event_is_found_by_its_slug_and_by_its_id() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let created = app.event(&admin.access, "mmdn", json!({})).await;
    let id = created["id"].as_str().unwrap();

    let by_slug = app.get("/api/v1/events/mmdn", None).await;
    let by_id = app.get(&format!("/api/v1/events/{id}"), None).await;

    by_slug.assert_status(200);
    by_id.assert_status(200);
    assert_eq!(by_slug.json()["id"], id);
    assert_eq!(by_id.json()["slug"], "mmdn");
    assert_eq!(by_slug.text, by_id.text);
}

#[tokio::test]
async fn every_event_route_accepts_the_id_instead_of_the_slug() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let created = app.event(&admin.access, "mmdn", json!({})).await;
    let id = created["id"].as_str().unwrap();

    let session = app.session(&admin.access, id, json!({})).await;
    let changed = app
        .patch(
            &format!("/api/v1/events/{id}"),
            Some(&admin.access),
            &json!({"city": "Мончегорск"}),
        )
        .await;

    assert_eq!(session["event_id"], id);
    changed.assert_status(200);
    assert_eq!(changed.json()["city"], "Мончегорск");
    app.get(&format!("/api/v1/events/{id}/programme"), None)
        .await
        .assert_status(200);
}

#[tokio::test]
async fn an_unknown_event_is_a_404_problem() {
    let app = spawn_app().await;

    let answer = app.get("/api/v1/events/no-such-event", None).await;

    answer.assert_problem(404, "not_found");
}

#[tokio::test]
async fn cyrillic_text_round_trips_exactly() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    // Precomposed «ё», a decomposed «ё» (е + combining diaeresis), quotes, dashes, an emoji:
    // nothing may be normalised, re-encoded or trimmed on the way.
    let title = "Ёмкость «Социальное партнёрство» — е\u{0308}ще раз 🚀";
    let description = "Роль волонтёрского движения в жизни города.\nВторая строка\tс табуляцией.";

    let created = app
        .event(
            &admin.access,
            "mmdn",
            json!({"title": title, "description": description, "city": "Полярные Зори"}),
        )
        .await;
    let read = app.get("/api/v1/events/mmdn", None).await.json();

    assert_eq!(
        created["title"].as_str().unwrap().as_bytes(),
        title.as_bytes()
    );
    assert_eq!(read["title"].as_str().unwrap().as_bytes(), title.as_bytes());
    assert_eq!(
        read["description"].as_str().unwrap().as_bytes(),
        description.as_bytes()
    );
    assert_eq!(read["city"], "Полярные Зори");
}

// ---- slugs and validation -------------------------------------------------------------

#[tokio::test]
async fn a_slug_already_taken_is_a_409_naming_the_slug() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    app.event(&admin.access, "mmdn", json!({})).await;

    let answer = app
        .post(
            "/api/v1/events",
            Some(&admin.access),
            &event_body("mmdn", json!({})),
        )
        .await;

    let problem = answer.assert_problem(409, "slug_taken");
    assert_eq!(problem["field"], "slug");
}

#[tokio::test]
async fn only_signed_in_organisers_learn_that_a_drafts_slug_is_taken() {
    let world = two_organisers("draft").await;
    let app = &world.app;
    let body = event_body("mmdn", json!({}));
    let registration = app.register("mmdn", "anna@example.org", &[]).await;

    let anonymous = app.post("/api/v1/events", None, &body).await;
    let other_organiser = app
        .post("/api/v1/events", Some(&world.other.access), &body)
        .await;

    // Outsiders cannot reach the check at all, and see no draft anywhere.
    anonymous.assert_problem(401, "authentication_required");
    registration.assert_problem(404, "not_found");
    // Accounts are created by admins only: telling a colleague that the slug is in use (and
    // nothing else about the draft) is the price of slugs being unique addresses.
    let problem = other_organiser.assert_problem(409, "slug_taken");
    assert_eq!(problem["field"], "slug");
    assert!(!problem.to_string().contains("Мурманская"), "{problem}");
}

#[tokio::test]
async fn renaming_an_event_to_a_taken_slug_is_a_409() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    app.event(&admin.access, "mmdn", json!({})).await;
    app.event(&admin.access, "mmdn-2027", json!({})).await;

    let answer = app
        .patch(
            "/api/v1/events/mmdn-2027",
            Some(&admin.access),
            &json!({"slug": "mmdn"}),
        )
        .await;

    answer.assert_problem(409, "slug_taken");
}

#[tokio::test]
async fn a_slug_that_is_not_url_safe_is_refused_naming_the_slug() {
    let app = spawn_app().await;
    let admin = app.admin().await;

    for slug in [
        "ММДН",
        "VII-MMDN",
        "mmdn--2027",
        "-mmdn",
        "mmdn 2027",
        "",
        "a/b",
    ] {
        let answer = app
            .post(
                "/api/v1/events",
                Some(&admin.access),
                &event_body(slug, json!({})),
            )
            .await;

        assert_eq!(invalid_fields(&answer), ["slug"], "{slug:?}");
    }
}

#[tokio::test]
async fn a_slug_that_looks_like_an_id_is_refused() {
    let app = spawn_app().await;
    let admin = app.admin().await;

    let answer = app
        .post(
            "/api/v1/events",
            Some(&admin.access),
            &event_body("0191f2c4-7c5e-7d3a-9b1e-4a2f6c8d0e13", json!({})),
        )
        .await;

    assert_eq!(invalid_fields(&answer), ["slug"]);
}

#[tokio::test]
async fn an_unknown_time_zone_is_refused_naming_the_time_zone() {
    let app = spawn_app().await;
    let admin = app.admin().await;

    let answer = app
        .post(
            "/api/v1/events",
            Some(&admin.access),
            &event_body("mmdn", json!({"time_zone": "Europe/Murmansk"})),
        )
        .await;

    assert_eq!(invalid_fields(&answer), ["time_zone"]);
}

#[tokio::test]
async fn an_event_ending_before_it_starts_is_refused_naming_ends_on() {
    let app = spawn_app().await;
    let admin = app.admin().await;

    let answer = app
        .post(
            "/api/v1/events",
            Some(&admin.access),
            &event_body(
                "mmdn",
                json!({"starts_on": "2027-04-24", "ends_on": "2027-04-20"}),
            ),
        )
        .await;

    assert_eq!(invalid_fields(&answer), ["ends_on"]);
}

#[tokio::test]
async fn a_title_of_300_characters_is_accepted_and_one_of_301_refused() {
    let app = spawn_app().await;
    let admin = app.admin().await;

    // Cyrillic letters take two bytes each: the limit counts characters.
    let longest = app
        .post(
            "/api/v1/events",
            Some(&admin.access),
            &event_body("longest", json!({"title": "ж".repeat(300)})),
        )
        .await;
    let too_long = app
        .post(
            "/api/v1/events",
            Some(&admin.access),
            &event_body("too-long", json!({"title": "ж".repeat(301)})),
        )
        .await;

    longest.assert_status(201);
    assert_eq!(invalid_fields(&too_long), ["title"]);
}

#[tokio::test]
async fn every_invalid_field_of_an_event_is_named_at_once() {
    let app = spawn_app().await;
    let admin = app.admin().await;

    let answer = app
        .post(
            "/api/v1/events",
            Some(&admin.access),
            &event_body(
                "Bad Slug",
                json!({"title": "  ", "time_zone": "Moscow", "city": "x".repeat(201)}),
            ),
        )
        .await;

    assert_eq!(
        invalid_fields(&answer),
        ["slug", "title", "time_zone", "city"]
    );
}

// ---- merge patch and ETags ------------------------------------------------------------

#[tokio::test]
async fn a_patch_leaves_absent_fields_unchanged() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    app.event(
        &admin.access,
        "mmdn",
        json!({"description": "Деловая программа", "city": "Мурманск", "capacity": 500}),
    )
    .await;

    let answer = app
        .patch(
            "/api/v1/events/mmdn",
            Some(&admin.access),
            &json!({"title": "VIII Мурманская международная деловая неделя"}),
        )
        .await;

    answer.assert_status(200);
    let body = answer.json();
    assert_eq!(
        body["title"],
        "VIII Мурманская международная деловая неделя"
    );
    assert_eq!(body["description"], "Деловая программа");
    assert_eq!(body["city"], "Мурманск");
    assert_eq!(body["capacity"], 500);
    assert_eq!(body["status"], "published");
    assert_eq!(body["starts_on"], EVENT_FIRST_DAY);
}

#[tokio::test]
async fn a_patch_with_null_clears_a_field() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    app.event(
        &admin.access,
        "mmdn",
        json!({"description": "Деловая программа", "city": "Мурманск", "capacity": 500}),
    )
    .await;

    let answer = app
        .patch(
            "/api/v1/events/mmdn",
            Some(&admin.access),
            &json!({"description": null, "city": null, "capacity": null}),
        )
        .await;

    answer.assert_status(200);
    let read = app.get("/api/v1/events/mmdn", None).await.json();
    assert_eq!(read["description"], Value::Null);
    assert_eq!(read["city"], Value::Null);
    assert_eq!(read["capacity"], Value::Null);
    assert_eq!(read["title"], "VII Мурманская международная деловая неделя");
}

#[tokio::test]
async fn null_for_a_field_that_cannot_be_cleared_is_a_422() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    app.event(&admin.access, "mmdn", json!({})).await;

    for field in ["title", "slug", "time_zone", "starts_on", "status"] {
        let answer = app
            .patch(
                "/api/v1/events/mmdn",
                Some(&admin.access),
                &json!({ field: null }),
            )
            .await;

        answer.assert_problem(422, "invalid_body");
    }
    let read = app.get("/api/v1/events/mmdn", None).await.json();
    assert_eq!(read["title"], "VII Мурманская международная деловая неделя");
}

#[tokio::test]
async fn a_patch_is_validated_as_the_event_would_be() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    app.event(&admin.access, "mmdn", json!({})).await;

    let answer = app
        .patch(
            "/api/v1/events/mmdn",
            Some(&admin.access),
            &json!({"ends_on": "2027-04-19"}),
        )
        .await;

    assert_eq!(invalid_fields(&answer), ["ends_on"]);
}

#[tokio::test]
async fn the_days_cannot_shrink_past_the_sessions_they_hold() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    app.event(&admin.access, "mmdn", json!({})).await;
    app.session(&admin.access, "mmdn", json!({})).await; // on the last day

    let answer = app
        .patch(
            "/api/v1/events/mmdn",
            Some(&admin.access),
            &json!({"ends_on": "2027-04-23"}),
        )
        .await;

    assert_eq!(invalid_fields(&answer), ["ends_on"]);
}

#[tokio::test]
async fn a_patch_with_the_current_etag_succeeds_and_changes_the_etag() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    app.event(&admin.access, "mmdn", json!({})).await;
    let etag = app
        .get("/api/v1/events/mmdn", None)
        .await
        .header("etag")
        .unwrap()
        .to_owned();

    let answer = app
        .call(Method::PATCH, "/api/v1/events/mmdn")
        .bearer(&admin.access)
        .header("if-match", &etag)
        .json(&json!({"city": "Мончегорск"}))
        .send()
        .await;

    answer.assert_status(200);
    let new_etag = answer.header("etag").unwrap();
    assert_ne!(new_etag, etag);
    assert_eq!(
        app.get("/api/v1/events/mmdn", None).await.header("etag"),
        Some(new_etag)
    );
}

#[tokio::test]
async fn a_patch_with_a_stale_etag_is_a_412_and_changes_nothing() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    app.event(&admin.access, "mmdn", json!({})).await;
    let stale = app
        .get("/api/v1/events/mmdn", None)
        .await
        .header("etag")
        .unwrap()
        .to_owned();
    app.patch(
        "/api/v1/events/mmdn",
        Some(&admin.access),
        &json!({"city": "Мончегорск"}),
    )
    .await
    .assert_status(200);

    let answer = app
        .call(Method::PATCH, "/api/v1/events/mmdn")
        .bearer(&admin.access)
        .header("if-match", &stale)
        .json(&json!({"city": "Кандалакша"}))
        .send()
        .await;

    let problem = answer.assert_problem(412, "precondition_failed");
    let current = app.get("/api/v1/events/mmdn", None).await;
    assert_eq!(problem["current_etag"], current.header("etag").unwrap());
    assert_eq!(current.json()["city"], "Мончегорск");
}

#[tokio::test]
async fn reading_an_event_with_its_etag_in_if_none_match_is_a_304() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    app.event(&admin.access, "mmdn", json!({})).await;
    let etag = app
        .get("/api/v1/events/mmdn", None)
        .await
        .header("etag")
        .unwrap()
        .to_owned();

    let answer = app
        .call(Method::GET, "/api/v1/events/mmdn")
        .header("if-none-match", &etag)
        .send()
        .await;

    answer.assert_status(304);
    assert_eq!(answer.text, "");
    assert_eq!(answer.header("etag"), Some(etag.as_str()));
}

// ---- deleting -------------------------------------------------------------------------

#[tokio::test]
async fn an_owner_deletes_an_event_without_registrations() {
    let world = two_organisers("published").await;
    let app = &world.app;

    let answer = app
        .delete("/api/v1/events/mmdn", Some(&world.owner.access))
        .await;

    answer.assert_status(204);
    app.get("/api/v1/events/mmdn", Some(&world.owner.access))
        .await
        .assert_problem(404, "not_found");
}

#[tokio::test]
async fn an_event_with_registrations_cannot_be_deleted() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    app.event(&admin.access, "mmdn", json!({})).await;
    app.register("mmdn", "anna@example.org", &[])
        .await
        .assert_status(201);

    let answer = app.delete("/api/v1/events/mmdn", Some(&admin.access)).await;

    answer.assert_problem(409, "event_has_registrations");
    app.get("/api/v1/events/mmdn", None)
        .await
        .assert_status(200);
}

// ---- who may see and change an event --------------------------------------------------

#[tokio::test]
async fn an_organiser_cannot_see_another_organisers_draft_event() {
    let world = two_organisers("draft").await;

    let answer = world
        .app
        .get("/api/v1/events/mmdn", Some(&world.other.access))
        .await;

    answer.assert_problem(404, "not_found");
}

#[tokio::test]
async fn an_organiser_cannot_change_another_organisers_draft_event() {
    let world = two_organisers("draft").await;

    let answer = world
        .app
        .patch(
            "/api/v1/events/mmdn",
            Some(&world.other.access),
            &json!({"title": "Чужое"}),
        )
        .await;

    answer.assert_problem(404, "not_found");
}

#[tokio::test]
async fn an_organiser_cannot_change_another_organisers_published_event() {
    let world = two_organisers("published").await;

    let answer = world
        .app
        .patch(
            "/api/v1/events/mmdn",
            Some(&world.other.access),
            &json!({"title": "Чужое"}),
        )
        .await;

    answer.assert_problem(403, "forbidden");
    let read = world.app.get("/api/v1/events/mmdn", None).await.json();
    assert_eq!(read["title"], "VII Мурманская международная деловая неделя");
}

#[tokio::test]
async fn an_organiser_cannot_add_sessions_to_another_organisers_published_event() {
    let world = two_organisers("published").await;

    let answer = world
        .app
        .post(
            "/api/v1/events/mmdn/sessions",
            Some(&world.other.access),
            &json!({
                "title": "Чужая сессия", "kind": "other",
                "starts_at": format!("{EVENT_LAST_DAY}T11:00:00+03:00"),
                "ends_at": format!("{EVENT_LAST_DAY}T12:00:00+03:00"),
            }),
        )
        .await;

    answer.assert_problem(403, "forbidden");
}

#[tokio::test]
async fn an_organiser_cannot_delete_another_organisers_published_event() {
    let world = two_organisers("published").await;

    let answer = world
        .app
        .delete("/api/v1/events/mmdn", Some(&world.other.access))
        .await;

    answer.assert_problem(403, "forbidden");
}

#[tokio::test]
async fn another_organiser_reads_a_published_event_but_not_its_members() {
    let world = two_organisers("published").await;

    let event = world
        .app
        .get("/api/v1/events/mmdn", Some(&world.other.access))
        .await;
    let members = world
        .app
        .get("/api/v1/events/mmdn/members", Some(&world.other.access))
        .await;

    event.assert_status(200);
    members.assert_problem(403, "forbidden");
}

#[tokio::test]
async fn anonymous_callers_cannot_see_a_draft_event() {
    let world = two_organisers("draft").await;

    let answer = world.app.get("/api/v1/events/mmdn", None).await;

    answer.assert_problem(404, "not_found");
}

#[tokio::test]
async fn anonymous_callers_cannot_change_a_published_event() {
    let world = two_organisers("published").await;

    let answer = world
        .app
        .patch("/api/v1/events/mmdn", None, &json!({"title": "Чужое"}))
        .await;

    answer.assert_problem(401, "authentication_required");
}

#[tokio::test]
async fn an_admin_may_change_any_event() {
    let world = two_organisers("draft").await;

    let answer = world
        .app
        .patch(
            "/api/v1/events/mmdn",
            Some(&world.admin.access),
            &json!({"status": "published"}),
        )
        .await;

    answer.assert_status(200);
    assert_eq!(answer.json()["status"], "published");
}

#[tokio::test]
async fn anonymous_callers_list_only_published_events() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    app.event(&admin.access, "published", json!({})).await;
    app.event(&admin.access, "draft", json!({"status": "draft"}))
        .await;
    app.event(&admin.access, "archived", json!({"status": "archived"}))
        .await;

    let answer = app.get("/api/v1/events", None).await;

    answer.assert_status(200);
    let slugs: Vec<String> = answer.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["slug"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(slugs, ["published"]);
}

#[tokio::test]
async fn an_organiser_lists_published_events_and_their_own_drafts_only() {
    let world = two_organisers("draft").await;
    let app = &world.app;
    app.event(
        &world.other.access,
        "ivans-draft",
        json!({"status": "draft"}),
    )
    .await;
    app.event(&world.other.access, "ivans-published", json!({}))
        .await;

    let answer = app.get("/api/v1/events", Some(&world.owner.access)).await;

    answer.assert_status(200);
    let mut slugs: Vec<String> = answer.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["slug"].as_str().unwrap().to_owned())
        .collect();
    slugs.sort();
    assert_eq!(slugs, ["ivans-published", "mmdn"]);
}

// ---- members --------------------------------------------------------------------------

#[tokio::test]
async fn an_owner_adds_an_organiser_as_editor() {
    let world = two_organisers("draft").await;

    let answer = world
        .app
        .call(
            Method::PUT,
            &format!("/api/v1/events/mmdn/members/{}", world.other_id),
        )
        .bearer(&world.owner.access)
        .json(&json!({"role": "editor"}))
        .send()
        .await;

    answer.assert_status(201);
    let body = answer.json();
    assert_eq!(body["user_id"], world.other_id.to_string());
    assert_eq!(body["email"], "ivan@example.org");
    assert_eq!(body["role"], "editor");
}

#[tokio::test]
async fn an_editor_changes_the_programme_of_a_draft_event() {
    let world = two_organisers("draft").await;
    add_member(&world, world.other_id, "editor").await;

    let answer = world
        .app
        .post(
            "/api/v1/events/mmdn/venues",
            Some(&world.other.access),
            &json!({"name": "Дворец культуры «Металлург»", "city": "Мончегорск"}),
        )
        .await;

    answer.assert_status(201);
}

#[tokio::test]
async fn an_editor_cannot_manage_members() {
    let world = two_organisers("draft").await;
    add_member(&world, world.other_id, "editor").await;

    let answer = world
        .app
        .call(
            Method::PUT,
            &format!("/api/v1/events/mmdn/members/{}", world.other_id),
        )
        .bearer(&world.other.access)
        .json(&json!({"role": "owner"}))
        .send()
        .await;

    answer.assert_problem(403, "forbidden");
}

#[tokio::test]
async fn changing_a_members_role_answers_200_with_the_new_role() {
    let world = two_organisers("draft").await;
    add_member(&world, world.other_id, "viewer").await;

    let answer = world
        .app
        .call(
            Method::PUT,
            &format!("/api/v1/events/mmdn/members/{}", world.other_id),
        )
        .bearer(&world.owner.access)
        .json(&json!({"role": "editor"}))
        .send()
        .await;

    answer.assert_status(200);
    assert_eq!(answer.json()["role"], "editor");
}

#[tokio::test]
async fn a_viewer_sees_a_draft_event_and_its_members() {
    let world = two_organisers("draft").await;
    add_member(&world, world.other_id, "viewer").await;

    let event = world
        .app
        .get("/api/v1/events/mmdn", Some(&world.other.access))
        .await;
    let members = world
        .app
        .get("/api/v1/events/mmdn/members", Some(&world.other.access))
        .await;

    event.assert_status(200);
    members.assert_status(200);
    assert_eq!(members.json()["items"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_viewer_cannot_change_the_event() {
    let world = two_organisers("draft").await;
    add_member(&world, world.other_id, "viewer").await;

    let answer = world
        .app
        .patch(
            "/api/v1/events/mmdn",
            Some(&world.other.access),
            &json!({"title": "Изменено"}),
        )
        .await;

    answer.assert_problem(403, "forbidden");
}

#[tokio::test]
async fn a_viewer_cannot_add_to_the_programme() {
    let world = two_organisers("draft").await;
    add_member(&world, world.other_id, "viewer").await;

    let answer = world
        .app
        .post(
            "/api/v1/events/mmdn/tracks",
            Some(&world.other.access),
            &json!({"title": "Роль волонтёрского движения в жизни города"}),
        )
        .await;

    answer.assert_problem(403, "forbidden");
}

#[tokio::test]
async fn the_last_owner_cannot_be_removed() {
    let world = two_organisers("draft").await;

    let answer = world
        .app
        .delete(
            &format!("/api/v1/events/mmdn/members/{}", world.owner_id),
            Some(&world.owner.access),
        )
        .await;

    answer.assert_problem(409, "last_owner");
    let members = world
        .app
        .get("/api/v1/events/mmdn/members", Some(&world.owner.access))
        .await;
    assert_eq!(members.json()["items"][0]["role"], "owner");
}

#[tokio::test]
async fn the_last_owner_cannot_be_demoted() {
    let world = two_organisers("draft").await;
    add_member(&world, world.other_id, "editor").await;

    let answer = world
        .app
        .call(
            Method::PUT,
            &format!("/api/v1/events/mmdn/members/{}", world.owner_id),
        )
        .bearer(&world.owner.access)
        .json(&json!({"role": "editor"}))
        .send()
        .await;

    answer.assert_problem(409, "last_owner");
}

#[tokio::test]
async fn an_owner_may_leave_when_another_owner_remains() {
    let world = two_organisers("draft").await;
    add_member(&world, world.other_id, "owner").await;

    let answer = world
        .app
        .delete(
            &format!("/api/v1/events/mmdn/members/{}", world.owner_id),
            Some(&world.owner.access),
        )
        .await;

    answer.assert_status(204);
    world
        .app
        .get("/api/v1/events/mmdn", Some(&world.owner.access))
        .await
        .assert_problem(404, "not_found");
}

#[tokio::test]
async fn a_removed_member_no_longer_sees_the_draft_event() {
    let world = two_organisers("draft").await;
    add_member(&world, world.other_id, "editor").await;

    world
        .app
        .delete(
            &format!("/api/v1/events/mmdn/members/{}", world.other_id),
            Some(&world.owner.access),
        )
        .await
        .assert_status(204);

    world
        .app
        .get("/api/v1/events/mmdn", Some(&world.other.access))
        .await
        .assert_problem(404, "not_found");
}

#[tokio::test]
async fn adding_an_account_that_does_not_exist_is_refused_naming_user_id() {
    let world = two_organisers("draft").await;

    let answer = world
        .app
        .call(
            Method::PUT,
            &format!("/api/v1/events/mmdn/members/{}", uuid::Uuid::nil()),
        )
        .bearer(&world.owner.access)
        .json(&json!({"role": "viewer"}))
        .send()
        .await;

    assert_eq!(invalid_fields(&answer), ["user_id"]);
}

// ---- keyset pagination ----------------------------------------------------------------

async fn slugs_of(answer: &crate::helpers::Answer) -> Vec<String> {
    answer.assert_status(200);
    answer.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["slug"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn events_are_listed_page_by_page_in_start_date_order() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    for (slug, day) in [
        ("c", "2027-06-01"),
        ("a", "2027-04-01"),
        ("b", "2027-05-01"),
    ] {
        app.event(
            &admin.access,
            slug,
            json!({"starts_on": day, "ends_on": day}),
        )
        .await;
    }

    let first = app.get("/api/v1/events?limit=2", None).await;
    let cursor = first.json()["next_cursor"].as_str().unwrap().to_owned();
    let second = app
        .get(&format!("/api/v1/events?limit=2&cursor={cursor}"), None)
        .await;

    assert_eq!(slugs_of(&first).await, ["a", "b"]);
    assert_eq!(slugs_of(&second).await, ["c"]);
    assert_eq!(second.json()["next_cursor"], Value::Null);
}

#[tokio::test]
async fn a_limit_above_200_is_refused_naming_the_limit() {
    let app = spawn_app().await;

    let answer = app.get("/api/v1/events?limit=201", None).await;

    assert_eq!(invalid_fields(&answer), ["limit"]);
}

#[tokio::test]
async fn a_cursor_the_list_did_not_return_is_refused_naming_the_cursor() {
    let app = spawn_app().await;

    let answer = app
        .get("/api/v1/events?cursor=bm90LWEtY3Vyc29y", None)
        .await;

    assert_eq!(invalid_fields(&answer), ["cursor"]);
}
