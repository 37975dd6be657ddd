//! The programme: venues, tracks, sessions and speakers, and the public programme as JSON
//! and as iCalendar.

use reqwest::Method;
use serde_json::{Value, json};

use crate::events::invalid_fields;
use crate::helpers::{Answer, EVENT_LAST_DAY, TestApp, Tokens, spawn_app};

// ---- small helpers ---------------------------------------------------------------------

async fn created(app: &TestApp, token: &str, path: &str, body: Value) -> Value {
    let answer = app.post(path, Some(token), &body).await;
    answer.assert_status(201);
    answer.json()
}

async fn venue(app: &TestApp, token: &str, event: &str, body: Value) -> Value {
    created(app, token, &format!("/api/v1/events/{event}/venues"), body).await
}

async fn track(app: &TestApp, token: &str, event: &str, body: Value) -> Value {
    created(app, token, &format!("/api/v1/events/{event}/tracks"), body).await
}

async fn speaker(app: &TestApp, token: &str, event: &str, body: Value) -> Value {
    created(
        app,
        token,
        &format!("/api/v1/events/{event}/speakers"),
        body,
    )
    .await
}

fn id(value: &Value) -> &str {
    value["id"].as_str().expect("an id")
}

/// A session at the given local (Moscow) times.
fn at(start: &str, end: &str) -> Value {
    json!({"starts_at": start, "ends_at": end})
}

fn with(mut body: Value, extra: Value) -> Value {
    crate::helpers::merge(&mut body, extra);
    body
}

/// `(date, [titles])` of each day of a programme answer.
fn days_of(answer: &Answer) -> Vec<(String, Vec<String>)> {
    answer.assert_status(200);
    answer.json()["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|day| {
            (
                day["date"].as_str().unwrap().to_owned(),
                day["sessions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s["title"].as_str().unwrap().to_owned())
                    .collect(),
            )
        })
        .collect()
}

/// Titles of the sessions of a programme answer, in order.
fn titles_of(answer: &Answer) -> Vec<String> {
    days_of(answer)
        .into_iter()
        .flat_map(|(_, titles)| titles)
        .collect()
}

fn items_of(answer: &Answer) -> Vec<Value> {
    answer.assert_status(200);
    answer.json()["items"].as_array().unwrap().clone()
}

async fn put_speaker_on(
    app: &TestApp,
    token: &str,
    session: &str,
    speaker: &str,
    body: Value,
) -> Answer {
    app.call(
        Method::PUT,
        &format!("/api/v1/events/mmdn/sessions/{session}/speakers/{speaker}"),
    )
    .bearer(token)
    .json(&body)
    .send()
    .await
}

fn session_body(extra: Value) -> Value {
    with(
        json!({
            "title": "Социальное партнёрство. Социальное проектирование",
            "kind": "business_session",
            "starts_at": format!("{EVENT_LAST_DAY}T11:00:00+03:00"),
            "ends_at": format!("{EVENT_LAST_DAY}T13:00:00+03:00"),
            "status": "published",
        }),
        extra,
    )
}

async fn post_session(app: &TestApp, token: &str, extra: Value) -> Answer {
    app.post(
        "/api/v1/events/mmdn/sessions",
        Some(token),
        &session_body(extra),
    )
    .await
}

/// An app with an admin and the published event `mmdn`.
async fn with_event() -> (TestApp, Tokens) {
    let app = spawn_app().await;
    let admin = app.admin().await;
    app.event(&admin.access, "mmdn", json!({})).await;
    (app, admin)
}

// ---- venues and tracks -----------------------------------------------------------------

#[tokio::test]
async fn a_venue_is_created_read_changed_and_deleted() {
    let (app, admin) = with_event().await;
    let hall = venue(
        &app,
        &admin.access,
        "mmdn",
        json!({"name": "ДК «Металлург»", "city": "Мончегорск", "address": "пр. Металлургов, 25", "capacity": 120}),
    )
    .await;
    let path = format!("/api/v1/events/mmdn/venues/{}", id(&hall));

    let read = app.get(&path, None).await;
    let changed = app
        .patch(
            &path,
            Some(&admin.access),
            &json!({"address": null, "capacity": 150}),
        )
        .await;
    let deleted = app.delete(&path, Some(&admin.access)).await;

    read.assert_status(200);
    assert_eq!(read.json()["name"], "ДК «Металлург»");
    assert_eq!(read.json()["address"], "пр. Металлургов, 25");
    changed.assert_status(200);
    assert_eq!(changed.json()["address"], Value::Null);
    assert_eq!(changed.json()["capacity"], 150);
    assert_eq!(changed.json()["city"], "Мончегорск");
    deleted.assert_status(204);
    app.get(&path, None).await.assert_problem(404, "not_found");
}

#[tokio::test]
async fn a_venue_sessions_take_place_in_cannot_be_deleted() {
    let (app, admin) = with_event().await;
    let hall = venue(&app, &admin.access, "mmdn", json!({"name": "Зал"})).await;
    app.session(&admin.access, "mmdn", json!({"venue_id": id(&hall)}))
        .await;

    let answer = app
        .delete(
            &format!("/api/v1/events/mmdn/venues/{}", id(&hall)),
            Some(&admin.access),
        )
        .await;

    answer.assert_problem(409, "venue_in_use");
}

#[tokio::test]
async fn a_venue_with_a_negative_capacity_is_refused_naming_the_capacity() {
    let (app, admin) = with_event().await;

    let answer = app
        .post(
            "/api/v1/events/mmdn/venues",
            Some(&admin.access),
            &json!({"name": "Зал", "capacity": -1}),
        )
        .await;

    assert_eq!(invalid_fields(&answer), ["capacity"]);
}

#[tokio::test]
async fn a_track_colour_must_be_a_hex_colour() {
    let (app, admin) = with_event().await;

    for colour in ["red", "#12345", "#1234567", "#gggggg", "1f6feb"] {
        let answer = app
            .post(
                "/api/v1/events/mmdn/tracks",
                Some(&admin.access),
                &json!({"title": "Роль волонтёрского движения в жизни города", "colour": colour}),
            )
            .await;

        assert_eq!(invalid_fields(&answer), ["colour"], "{colour}");
    }
}

#[tokio::test]
async fn a_track_with_a_hex_colour_is_created() {
    let (app, admin) = with_event().await;

    let answer = app
        .post(
            "/api/v1/events/mmdn/tracks",
            Some(&admin.access),
            &json!({"title": "Роль волонтёрского движения в жизни города", "colour": "#1F6feb", "order": 2}),
        )
        .await;

    answer.assert_status(201);
    assert_eq!(answer.json()["colour"], "#1F6feb");
    assert_eq!(answer.json()["order"], 2);
}

#[tokio::test]
async fn a_track_title_longer_than_300_characters_is_refused() {
    let (app, admin) = with_event().await;

    let answer = app
        .post(
            "/api/v1/events/mmdn/tracks",
            Some(&admin.access),
            &json!({"title": "ё".repeat(301)}),
        )
        .await;

    assert_eq!(invalid_fields(&answer), ["title"]);
}

#[tokio::test]
async fn tracks_are_listed_in_their_order() {
    let (app, admin) = with_event().await;
    for (title, order) in [("Третье", 3), ("Первое", 1), ("Второе", 2)] {
        track(
            &app,
            &admin.access,
            "mmdn",
            json!({"title": title, "order": order}),
        )
        .await;
    }

    let answer = app.get("/api/v1/events/mmdn/tracks", None).await;

    let titles: Vec<Value> = items_of(&answer)
        .iter()
        .map(|t| t["title"].clone())
        .collect();
    assert_eq!(titles, [json!("Первое"), json!("Второе"), json!("Третье")]);
}

#[tokio::test]
async fn a_track_colour_is_cleared_with_null() {
    let (app, admin) = with_event().await;
    let direction = track(
        &app,
        &admin.access,
        "mmdn",
        json!({"title": "Т", "colour": "#1f6feb"}),
    )
    .await;

    let answer = app
        .patch(
            &format!("/api/v1/events/mmdn/tracks/{}", id(&direction)),
            Some(&admin.access),
            &json!({"colour": null}),
        )
        .await;

    answer.assert_status(200);
    assert_eq!(answer.json()["colour"], Value::Null);
    assert_eq!(answer.json()["title"], "Т");
}

#[tokio::test]
async fn a_track_sessions_belong_to_cannot_be_deleted() {
    let (app, admin) = with_event().await;
    let direction = track(&app, &admin.access, "mmdn", json!({"title": "Т"})).await;
    app.session(&admin.access, "mmdn", json!({"track_id": id(&direction)}))
        .await;

    let answer = app
        .delete(
            &format!("/api/v1/events/mmdn/tracks/{}", id(&direction)),
            Some(&admin.access),
        )
        .await;

    answer.assert_problem(409, "track_in_use");
}

// ---- speakers --------------------------------------------------------------------------

/// Роман Дурягин as the guest of honour of a published session, so that the public sees him.
async fn duryagin_on_stage(app: &TestApp, token: &str) -> Value {
    let person = duryagin(app, token).await;
    let session = app.session(token, "mmdn", json!({})).await;
    put_speaker_on(
        app,
        token,
        id(&session),
        id(&person),
        json!({"role": "guest_of_honour"}),
    )
    .await
    .assert_status(200);
    person
}

async fn duryagin(app: &TestApp, token: &str) -> Value {
    speaker(
        app,
        token,
        "mmdn",
        json!({
            "full_name": "Роман Дурягин",
            "position": "Заместитель губернатора Мурманской области",
            "organisation": "Правительство Мурманской области",
            "email": "speaker@example.org",
            "phone": "+7 815 200-00-00",
        }),
    )
    .await
}

#[tokio::test]
async fn organisers_see_a_speakers_contact_details() {
    let (app, admin) = with_event().await;
    let person = duryagin(&app, &admin.access).await;

    let answer = app
        .get(
            &format!("/api/v1/events/mmdn/speakers/{}", id(&person)),
            Some(&admin.access),
        )
        .await;

    answer.assert_status(200);
    assert_eq!(
        answer.json()["contact"],
        json!({"email": "speaker@example.org", "phone": "+7 815 200-00-00"})
    );
}

#[tokio::test]
async fn anonymous_callers_do_not_see_a_speakers_contact_details() {
    let (app, admin) = with_event().await;
    let person = duryagin_on_stage(&app, &admin.access).await;

    let one = app
        .get(
            &format!("/api/v1/events/mmdn/speakers/{}", id(&person)),
            None,
        )
        .await;
    let list = app.get("/api/v1/events/mmdn/speakers", None).await;

    one.assert_status(200);
    assert_eq!(one.json()["full_name"], "Роман Дурягин");
    assert!(one.json().get("contact").is_none(), "{}", one.text);
    assert!(!one.text.contains("speaker@example.org"));
    assert!(!list.text.contains("speaker@example.org"));
    assert!(!list.text.contains("200-00-00"));
    assert_eq!(items_of(&list).len(), 1);
}

#[tokio::test]
async fn only_speakers_of_published_sessions_are_public() {
    let (app, admin) = with_event().await;
    let published = app.session(&admin.access, "mmdn", json!({})).await;
    let draft = app
        .session(
            &admin.access,
            "mmdn",
            json!({"title": "Черновик", "status": "draft"}),
        )
        .await;
    let cancelled = app
        .session(
            &admin.access,
            "mmdn",
            json!({"title": "Отменена", "status": "cancelled"}),
        )
        .await;
    let on_stage = speaker(
        &app,
        &admin.access,
        "mmdn",
        json!({"full_name": "На сцене"}),
    )
    .await;
    let in_draft = speaker(
        &app,
        &admin.access,
        "mmdn",
        json!({"full_name": "В черновике"}),
    )
    .await;
    let in_cancelled = speaker(
        &app,
        &admin.access,
        "mmdn",
        json!({"full_name": "В отменённой"}),
    )
    .await;
    let nowhere = speaker(&app, &admin.access, "mmdn", json!({"full_name": "Нигде"})).await;
    for (session, person) in [
        (&published, &on_stage),
        (&draft, &in_draft),
        (&draft, &on_stage),
        (&cancelled, &in_cancelled),
    ] {
        put_speaker_on(
            &app,
            &admin.access,
            id(session),
            id(person),
            json!({"role": "speaker"}),
        )
        .await
        .assert_status(200);
    }
    let names = |answer: &Answer| -> Vec<String> {
        items_of(answer)
            .iter()
            .map(|s| s["full_name"].as_str().unwrap().to_owned())
            .collect()
    };

    let public = app.get("/api/v1/events/mmdn/speakers", None).await;
    let organisers = app
        .get("/api/v1/events/mmdn/speakers", Some(&admin.access))
        .await;

    assert_eq!(names(&public), ["На сцене"]);
    assert_eq!(names(&organisers).len(), 4);
    for hidden in [&in_draft, &in_cancelled, &nowhere] {
        let path = format!("/api/v1/events/mmdn/speakers/{}", id(hidden));
        app.get(&path, None).await.assert_problem(404, "not_found");
        app.get(&path, Some(&admin.access)).await.assert_status(200);
    }
    app.get(
        &format!("/api/v1/events/mmdn/speakers/{}", id(&on_stage)),
        None,
    )
    .await
    .assert_status(200);
}

#[tokio::test]
async fn another_organiser_does_not_see_a_speakers_contact_details() {
    let (app, admin) = with_event().await;
    let person = duryagin_on_stage(&app, &admin.access).await;
    let (_, other) = app.organiser(&admin, "ivan@example.org").await;

    let answer = app
        .get(
            &format!("/api/v1/events/mmdn/speakers/{}", id(&person)),
            Some(&other.access),
        )
        .await;

    answer.assert_status(200);
    assert!(answer.json().get("contact").is_none(), "{}", answer.text);
}

#[tokio::test]
async fn the_programme_does_not_show_speakers_contact_details() {
    let (app, admin) = with_event().await;
    let person = duryagin(&app, &admin.access).await;
    let session = app.session(&admin.access, "mmdn", json!({})).await;
    put_speaker_on(
        &app,
        &admin.access,
        id(&session),
        id(&person),
        json!({"role": "guest_of_honour"}),
    )
    .await
    .assert_status(200);

    let answer = app.get("/api/v1/events/mmdn/programme", None).await;

    answer.assert_status(200);
    assert!(!answer.text.contains("speaker@example.org"));
    assert!(!answer.text.contains("200-00-00"));
}

#[tokio::test]
async fn a_speaker_with_an_invalid_email_or_photo_url_is_refused_naming_them() {
    let (app, admin) = with_event().await;

    let answer = app
        .post(
            "/api/v1/events/mmdn/speakers",
            Some(&admin.access),
            &json!({"full_name": "Роман Дурягин", "email": "not an email", "photo_url": "ftp://example.org/p.jpg"}),
        )
        .await;

    assert_eq!(invalid_fields(&answer), ["photo_url", "email"]);
}

#[tokio::test]
async fn session_speakers_are_listed_in_order_with_their_roles() {
    let (app, admin) = with_event().await;
    let session = app.session(&admin.access, "mmdn", json!({})).await;
    let guest = duryagin(&app, &admin.access).await;
    let moderator = speaker(
        &app,
        &admin.access,
        "mmdn",
        json!({"full_name": "Анна Модератор"}),
    )
    .await;
    put_speaker_on(
        &app,
        &admin.access,
        id(&session),
        id(&moderator),
        json!({"role": "moderator", "order": 2}),
    )
    .await
    .assert_status(200);

    let answer = put_speaker_on(
        &app,
        &admin.access,
        id(&session),
        id(&guest),
        json!({"role": "guest_of_honour", "order": 1}),
    )
    .await;

    answer.assert_status(200);
    let list = answer.json();
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(list[0]["full_name"], "Роман Дурягин");
    assert_eq!(list[0]["role"], "guest_of_honour");
    assert_eq!(list[0]["order"], 1);
    assert_eq!(list[1]["full_name"], "Анна Модератор");
    assert_eq!(list[1]["role"], "moderator");
}

#[tokio::test]
async fn a_speaker_of_another_event_cannot_be_put_on_a_session() {
    let (app, admin) = with_event().await;
    app.event(&admin.access, "other", json!({})).await;
    let stranger = speaker(&app, &admin.access, "other", json!({"full_name": "Чужой"})).await;
    let session = app.session(&admin.access, "mmdn", json!({})).await;

    let answer = put_speaker_on(
        &app,
        &admin.access,
        id(&session),
        id(&stranger),
        json!({"role": "speaker"}),
    )
    .await;

    answer.assert_problem(404, "not_found");
}

// ---- sessions: validation ---------------------------------------------------------------

#[tokio::test]
async fn a_session_shows_its_times_in_the_events_time_zone() {
    let (app, admin) = with_event().await;

    let session = app
        .session(
            &admin.access,
            "mmdn",
            at("2027-04-24T08:00:00Z", "2027-04-24T10:00:00Z"),
        )
        .await;

    assert_eq!(session["starts_at"], "2027-04-24T11:00:00+03:00");
    assert_eq!(session["ends_at"], "2027-04-24T13:00:00+03:00");
}

#[tokio::test]
async fn a_session_must_end_after_it_starts() {
    let (app, admin) = with_event().await;

    let answer = post_session(
        &app,
        &admin.access,
        at("2027-04-24T11:00:00+03:00", "2027-04-24T11:00:00+03:00"),
    )
    .await;

    assert_eq!(invalid_fields(&answer), ["ends_at"]);
}

#[tokio::test]
async fn a_session_before_local_midnight_of_the_first_day_is_refused() {
    let (app, admin) = with_event().await;

    // 23:30 in Moscow on the day before the event.
    let answer = post_session(
        &app,
        &admin.access,
        at("2027-04-19T20:30:00Z", "2027-04-19T22:00:00Z"),
    )
    .await;

    assert_eq!(invalid_fields(&answer), ["starts_at"]);
}

#[tokio::test]
async fn a_session_after_local_midnight_of_the_first_day_is_accepted_though_its_utc_date_is_earlier()
 {
    let (app, admin) = with_event().await;

    // 00:30 in Moscow on the first day is still the day before in UTC.
    let answer = post_session(
        &app,
        &admin.access,
        at("2027-04-19T21:30:00Z", "2027-04-19T22:30:00Z"),
    )
    .await;

    answer.assert_status(201);
    assert_eq!(answer.json()["starts_at"], "2027-04-20T00:30:00+03:00");
}

#[tokio::test]
async fn a_session_running_past_local_midnight_of_the_last_day_is_refused() {
    let (app, admin) = with_event().await;

    let answer = post_session(
        &app,
        &admin.access,
        at("2027-04-24T23:00:00+03:00", "2027-04-25T00:30:00+03:00"),
    )
    .await;

    assert_eq!(invalid_fields(&answer), ["ends_at"]);
}

#[tokio::test]
async fn a_session_ending_at_local_midnight_of_the_last_day_is_accepted() {
    let (app, admin) = with_event().await;

    let answer = post_session(
        &app,
        &admin.access,
        at("2027-04-24T23:00:00+03:00", "2027-04-24T21:00:00Z"),
    )
    .await;

    answer.assert_status(201);
    assert_eq!(answer.json()["ends_at"], "2027-04-25T00:00:00+03:00");
}

#[tokio::test]
async fn a_venue_of_another_event_is_refused_naming_venue_id() {
    let (app, admin) = with_event().await;
    app.event(&admin.access, "other", json!({})).await;
    let elsewhere = venue(&app, &admin.access, "other", json!({"name": "Чужой зал"})).await;

    let answer = post_session(&app, &admin.access, json!({"venue_id": id(&elsewhere)})).await;

    assert_eq!(invalid_fields(&answer), ["venue_id"]);
}

#[tokio::test]
async fn a_track_of_another_event_is_refused_naming_track_id() {
    let (app, admin) = with_event().await;
    app.event(&admin.access, "other", json!({})).await;
    let elsewhere = track(
        &app,
        &admin.access,
        "other",
        json!({"title": "Чужое направление"}),
    )
    .await;

    let answer = post_session(&app, &admin.access, json!({"track_id": id(&elsewhere)})).await;

    assert_eq!(invalid_fields(&answer), ["track_id"]);
}

#[tokio::test]
async fn moving_a_session_to_a_venue_of_another_event_is_refused_naming_venue_id() {
    let (app, admin) = with_event().await;
    app.event(&admin.access, "other", json!({})).await;
    let elsewhere = venue(&app, &admin.access, "other", json!({"name": "Чужой зал"})).await;
    let session = app.session(&admin.access, "mmdn", json!({})).await;

    let answer = app
        .patch(
            &format!("/api/v1/events/mmdn/sessions/{}", id(&session)),
            Some(&admin.access),
            &json!({"venue_id": id(&elsewhere)}),
        )
        .await;

    assert_eq!(invalid_fields(&answer), ["venue_id"]);
}

#[tokio::test]
async fn an_unknown_session_kind_is_a_422() {
    let (app, admin) = with_event().await;

    let answer = post_session(&app, &admin.access, json!({"kind": "party"})).await;

    answer.assert_problem(422, "invalid_body");
}

#[tokio::test]
async fn a_session_title_longer_than_300_characters_is_refused() {
    let (app, admin) = with_event().await;

    let answer = post_session(&app, &admin.access, json!({"title": "ё".repeat(301)})).await;

    assert_eq!(invalid_fields(&answer), ["title"]);
}

// ---- sessions: merge patch and ETags ------------------------------------------------------

#[tokio::test]
async fn a_session_patch_leaves_absent_fields_unchanged() {
    let (app, admin) = with_event().await;
    let hall = venue(&app, &admin.access, "mmdn", json!({"name": "Зал"})).await;
    let session = app
        .session(
            &admin.access,
            "mmdn",
            json!({"venue_id": id(&hall), "capacity": 80, "description": "Описание", "tags": ["волонтёры"], "language": "ru"}),
        )
        .await;

    let answer = app
        .patch(
            &format!("/api/v1/events/mmdn/sessions/{}", id(&session)),
            Some(&admin.access),
            &json!({"title": "Новое название"}),
        )
        .await;

    answer.assert_status(200);
    let body = answer.json();
    assert_eq!(body["title"], "Новое название");
    assert_eq!(body["venue_id"], id(&hall));
    assert_eq!(body["capacity"], 80);
    assert_eq!(body["description"], "Описание");
    assert_eq!(body["tags"], json!(["волонтёры"]));
    assert_eq!(body["language"], "ru");
    assert_eq!(body["waitlist_enabled"], true);
    assert_eq!(body["starts_at"], session["starts_at"]);
    assert_eq!(body["ends_at"], session["ends_at"]);
}

#[tokio::test]
async fn a_session_patch_with_null_clears_a_field() {
    let (app, admin) = with_event().await;
    let hall = venue(&app, &admin.access, "mmdn", json!({"name": "Зал"})).await;
    let direction = track(&app, &admin.access, "mmdn", json!({"title": "Т"})).await;
    let session = app
        .session(
            &admin.access,
            "mmdn",
            json!({"venue_id": id(&hall), "track_id": id(&direction), "capacity": 80, "description": "Описание", "tags": ["a"]}),
        )
        .await;

    let answer = app
        .patch(
            &format!("/api/v1/events/mmdn/sessions/{}", id(&session)),
            Some(&admin.access),
            &json!({"venue_id": null, "track_id": null, "capacity": null, "description": null, "tags": null}),
        )
        .await;

    answer.assert_status(200);
    let read = app
        .get(
            &format!("/api/v1/events/mmdn/sessions/{}", id(&session)),
            None,
        )
        .await
        .json();
    assert_eq!(read["venue_id"], Value::Null);
    assert_eq!(read["track_id"], Value::Null);
    assert_eq!(read["capacity"], Value::Null);
    assert_eq!(read["description"], Value::Null);
    assert_eq!(read["tags"], json!([]));
    assert_eq!(
        read["title"],
        "Социальное партнёрство. Социальное проектирование"
    );
}

#[tokio::test]
async fn null_for_a_session_field_that_cannot_be_cleared_is_a_422() {
    let (app, admin) = with_event().await;
    let session = app.session(&admin.access, "mmdn", json!({})).await;

    for field in [
        "title",
        "kind",
        "starts_at",
        "ends_at",
        "status",
        "waitlist_enabled",
    ] {
        let answer = app
            .patch(
                &format!("/api/v1/events/mmdn/sessions/{}", id(&session)),
                Some(&admin.access),
                &json!({ field: null }),
            )
            .await;

        answer.assert_problem(422, "invalid_body");
    }
}

#[tokio::test]
async fn a_session_patch_is_validated_against_the_stored_start() {
    let (app, admin) = with_event().await;
    let session = app.session(&admin.access, "mmdn", json!({})).await; // 11:00–13:00

    let answer = app
        .patch(
            &format!("/api/v1/events/mmdn/sessions/{}", id(&session)),
            Some(&admin.access),
            &json!({"ends_at": "2027-04-24T10:00:00+03:00"}),
        )
        .await;

    assert_eq!(invalid_fields(&answer), ["ends_at"]);
}

#[tokio::test]
async fn a_session_patch_with_a_stale_etag_is_a_412() {
    let (app, admin) = with_event().await;
    let session = app.session(&admin.access, "mmdn", json!({})).await;
    let path = format!("/api/v1/events/mmdn/sessions/{}", id(&session));
    let stale = app
        .get(&path, None)
        .await
        .header("etag")
        .unwrap()
        .to_owned();
    // Another organiser changes it first.
    app.patch(&path, Some(&admin.access), &json!({"capacity": 60}))
        .await
        .assert_status(200);

    let answer = app
        .call(Method::PATCH, &path)
        .bearer(&admin.access)
        .header("if-match", &stale)
        .json(&json!({"capacity": 100}))
        .send()
        .await;

    answer.assert_problem(412, "precondition_failed");
    assert_eq!(app.get(&path, None).await.json()["capacity"], 60);
}

#[tokio::test]
async fn a_session_patch_with_the_current_etag_succeeds() {
    let (app, admin) = with_event().await;
    let session = app.session(&admin.access, "mmdn", json!({})).await;
    let path = format!("/api/v1/events/mmdn/sessions/{}", id(&session));
    let etag = app
        .get(&path, None)
        .await
        .header("etag")
        .unwrap()
        .to_owned();

    let answer = app
        .call(Method::PATCH, &path)
        .bearer(&admin.access)
        .header("if-match", &etag)
        .json(&json!({"capacity": 100}))
        .send()
        .await;

    answer.assert_status(200);
    assert_eq!(answer.json()["capacity"], 100);
    assert_ne!(answer.header("etag"), Some(etag.as_str()));
}

#[tokio::test]
async fn reading_a_session_with_its_etag_in_if_none_match_is_a_304() {
    let (app, admin) = with_event().await;
    let session = app.session(&admin.access, "mmdn", json!({})).await;
    let path = format!("/api/v1/events/mmdn/sessions/{}", id(&session));
    let etag = app
        .get(&path, None)
        .await
        .header("etag")
        .unwrap()
        .to_owned();

    let answer = app
        .call(Method::GET, &path)
        .header("if-none-match", &etag)
        .send()
        .await;

    answer.assert_status(304);
    assert_eq!(answer.text, "");
}

// ---- sessions: deleting and cancelling -------------------------------------------------

#[tokio::test]
async fn a_session_without_registrations_is_deleted() {
    let (app, admin) = with_event().await;
    let session = app.session(&admin.access, "mmdn", json!({})).await;
    let path = format!("/api/v1/events/mmdn/sessions/{}", id(&session));

    let answer = app.delete(&path, Some(&admin.access)).await;

    answer.assert_status(204);
    app.get(&path, Some(&admin.access))
        .await
        .assert_problem(404, "not_found");
}

#[tokio::test]
async fn a_session_with_active_registrations_cannot_be_deleted() {
    let (app, admin) = with_event().await;
    let session = app
        .session(&admin.access, "mmdn", json!({"capacity": 80}))
        .await;
    app.register("mmdn", "anna@example.org", &[id(&session)])
        .await
        .assert_status(201);

    let answer = app
        .delete(
            &format!("/api/v1/events/mmdn/sessions/{}", id(&session)),
            Some(&admin.access),
        )
        .await;

    let problem = answer.assert_problem(409, "session_has_registrations");
    assert_eq!(problem["active_registrations"], 1);
}

#[tokio::test]
async fn a_session_with_active_registrations_can_be_cancelled() {
    let (app, admin) = with_event().await;
    let session = app
        .session(&admin.access, "mmdn", json!({"capacity": 80}))
        .await;
    app.register("mmdn", "anna@example.org", &[id(&session)])
        .await
        .assert_status(201);

    let answer = app
        .patch(
            &format!("/api/v1/events/mmdn/sessions/{}", id(&session)),
            Some(&admin.access),
            &json!({"status": "cancelled"}),
        )
        .await;

    answer.assert_status(200);
    assert_eq!(answer.json()["status"], "cancelled");
    let programme = app.get("/api/v1/events/mmdn/programme", None).await;
    assert_eq!(titles_of(&programme), Vec::<String>::new());
}

#[tokio::test]
async fn a_session_whose_registrations_were_all_cancelled_can_be_deleted() {
    let (app, admin) = with_event().await;
    let session = app
        .session(&admin.access, "mmdn", json!({"capacity": 80}))
        .await;
    let registered = app
        .register("mmdn", "anna@example.org", &[id(&session)])
        .await
        .json();
    app.call(
        Method::DELETE,
        &format!(
            "/api/v1/registrations/{}",
            registered["id"].as_str().unwrap()
        ),
    )
    .bearer(registered["manage_token"].as_str().unwrap())
    .send()
    .await
    .assert_status(200);

    let answer = app
        .delete(
            &format!("/api/v1/events/mmdn/sessions/{}", id(&session)),
            Some(&admin.access),
        )
        .await;

    answer.assert_status(204);
}

// ---- sessions: who sees what, and lists -------------------------------------------------

#[tokio::test]
async fn anonymous_callers_list_only_published_sessions() {
    let (app, admin) = with_event().await;
    app.session(&admin.access, "mmdn", json!({"title": "Опубликована"}))
        .await;
    app.session(
        &admin.access,
        "mmdn",
        json!({"title": "Черновик", "status": "draft"}),
    )
    .await;

    let public = app.get("/api/v1/events/mmdn/sessions", None).await;
    let organiser = app
        .get("/api/v1/events/mmdn/sessions", Some(&admin.access))
        .await;

    let titles = |items: Vec<Value>| -> Vec<String> {
        items
            .iter()
            .map(|s| s["title"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(titles(items_of(&public)), ["Опубликована"]);
    let mut all = titles(items_of(&organiser));
    all.sort();
    assert_eq!(all, ["Опубликована", "Черновик"]);
}

#[tokio::test]
async fn anonymous_callers_cannot_read_a_draft_session() {
    let (app, admin) = with_event().await;
    let draft = app
        .session(&admin.access, "mmdn", json!({"status": "draft"}))
        .await;

    let answer = app
        .get(
            &format!("/api/v1/events/mmdn/sessions/{}", id(&draft)),
            None,
        )
        .await;

    answer.assert_problem(404, "not_found");
}

#[tokio::test]
async fn another_organiser_cannot_read_a_draft_session_of_a_published_event() {
    let (app, admin) = with_event().await;
    let (_, other) = app.organiser(&admin, "ivan@example.org").await;
    let draft = app
        .session(&admin.access, "mmdn", json!({"status": "draft"}))
        .await;

    let answer = app
        .get(
            &format!("/api/v1/events/mmdn/sessions/{}", id(&draft)),
            Some(&other.access),
        )
        .await;

    answer.assert_problem(404, "not_found");
}

#[tokio::test]
async fn sessions_are_listed_page_by_page_in_time_order() {
    let (app, admin) = with_event().await;
    for (title, hour) in [("В", 15), ("А", 9), ("Б", 12)] {
        app.session(
            &admin.access,
            "mmdn",
            json!({
                "title": title,
                "starts_at": format!("{EVENT_LAST_DAY}T{hour}:00:00+03:00"),
                "ends_at": format!("{EVENT_LAST_DAY}T{hour}:30:00+03:00"),
            }),
        )
        .await;
    }

    let first = app.get("/api/v1/events/mmdn/sessions?limit=2", None).await;
    let cursor = first.json()["next_cursor"].as_str().unwrap().to_owned();
    let second = app
        .get(
            &format!("/api/v1/events/mmdn/sessions?limit=2&cursor={cursor}"),
            None,
        )
        .await;

    let titles = |answer: &Answer| -> Vec<String> {
        items_of(answer)
            .iter()
            .map(|s| s["title"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(titles(&first), ["А", "Б"]);
    assert_eq!(titles(&second), ["В"]);
    assert_eq!(second.json()["next_cursor"], Value::Null);
}

#[tokio::test]
async fn session_lists_refuse_a_limit_above_200() {
    let (app, _admin) = with_event().await;

    let answer = app
        .get("/api/v1/events/mmdn/sessions?limit=201", None)
        .await;

    assert_eq!(invalid_fields(&answer), ["limit"]);
}

#[tokio::test]
async fn speakers_are_listed_page_by_page() {
    let (app, admin) = with_event().await;
    for name in ["Первый", "Второй", "Третий"] {
        speaker(&app, &admin.access, "mmdn", json!({"full_name": name})).await;
    }

    let first = app
        .get("/api/v1/events/mmdn/speakers?limit=2", Some(&admin.access))
        .await;
    let cursor = first.json()["next_cursor"].as_str().unwrap().to_owned();
    let second = app
        .get(
            &format!("/api/v1/events/mmdn/speakers?limit=2&cursor={cursor}"),
            Some(&admin.access),
        )
        .await;

    let names = |answer: &Answer| -> Vec<String> {
        items_of(answer)
            .iter()
            .map(|s| s["full_name"].as_str().unwrap().to_owned())
            .collect()
    };
    // Speakers are listed in the order they were added (their ids are time-ordered).
    assert_eq!(names(&first), ["Первый", "Второй"]);
    assert_eq!(names(&second), ["Третий"]);
    assert_eq!(second.json()["next_cursor"], Value::Null);
}

// ---- the public programme: days ----------------------------------------------------------

#[tokio::test]
async fn sessions_either_side_of_local_midnight_fall_on_different_days() {
    let (app, admin) = with_event().await;
    // 23:30 and 00:30 in Moscow: the same UTC date (21 April), different local days.
    app.session(
        &admin.access,
        "mmdn",
        with(
            at("2027-04-21T20:30:00Z", "2027-04-21T21:00:00Z"),
            json!({"title": "Поздно вечером"}),
        ),
    )
    .await;
    app.session(
        &admin.access,
        "mmdn",
        with(
            at("2027-04-21T21:30:00Z", "2027-04-21T22:30:00Z"),
            json!({"title": "После полуночи"}),
        ),
    )
    .await;

    let answer = app.get("/api/v1/events/mmdn/programme", None).await;

    assert_eq!(
        days_of(&answer),
        [
            ("2027-04-21".to_owned(), vec!["Поздно вечером".to_owned()]),
            ("2027-04-22".to_owned(), vec!["После полуночи".to_owned()]),
        ]
    );
    let days = answer.json()["days"].clone();
    assert_eq!(
        days[0]["sessions"][0]["starts_at"],
        "2027-04-21T23:30:00+03:00"
    );
    assert_eq!(
        days[1]["sessions"][0]["starts_at"],
        "2027-04-22T00:30:00+03:00"
    );
}

#[tokio::test]
async fn sessions_of_one_local_day_share_it_though_their_utc_dates_differ() {
    let (app, admin) = with_event().await;
    // 01:00 and 22:00 in Moscow on 23 April: 22 and 23 April in UTC.
    app.session(
        &admin.access,
        "mmdn",
        with(
            at("2027-04-22T22:00:00Z", "2027-04-22T23:00:00Z"),
            json!({"title": "Ночью"}),
        ),
    )
    .await;
    app.session(
        &admin.access,
        "mmdn",
        with(
            at("2027-04-23T19:00:00Z", "2027-04-23T20:00:00Z"),
            json!({"title": "Вечером"}),
        ),
    )
    .await;

    let answer = app.get("/api/v1/events/mmdn/programme", None).await;

    assert_eq!(
        days_of(&answer),
        [(
            "2027-04-23".to_owned(),
            vec!["Ночью".to_owned(), "Вечером".to_owned()]
        )]
    );
}

#[tokio::test]
async fn the_day_filter_uses_the_events_time_zone() {
    let (app, admin) = with_event().await;
    app.session(
        &admin.access,
        "mmdn",
        with(
            at("2027-04-21T20:30:00Z", "2027-04-21T21:00:00Z"),
            json!({"title": "Поздно вечером"}),
        ),
    )
    .await;
    app.session(
        &admin.access,
        "mmdn",
        with(
            at("2027-04-21T21:30:00Z", "2027-04-21T22:30:00Z"),
            json!({"title": "После полуночи"}),
        ),
    )
    .await;

    let answer = app
        .get("/api/v1/events/mmdn/programme?day=2027-04-22", None)
        .await;

    assert_eq!(titles_of(&answer), ["После полуночи"]);
}

#[tokio::test]
async fn the_programme_groups_by_local_day_in_a_zone_west_of_utc() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    app.event(
        &admin.access,
        "nyc",
        json!({"time_zone": "America/New_York"}),
    )
    .await;
    // 20:00 and 21:00 in New York on 21 April (daylight time, UTC−4): 22 April in UTC for
    // the second one.
    app.session(
        &admin.access,
        "nyc",
        with(
            at("2027-04-22T00:00:00Z", "2027-04-22T00:30:00Z"),
            json!({"title": "Evening"}),
        ),
    )
    .await;
    app.session(
        &admin.access,
        "nyc",
        with(
            at("2027-04-22T04:30:00Z", "2027-04-22T05:00:00Z"),
            json!({"title": "After midnight"}),
        ),
    )
    .await;

    let answer = app.get("/api/v1/events/nyc/programme", None).await;

    assert_eq!(
        days_of(&answer),
        [
            ("2027-04-21".to_owned(), vec!["Evening".to_owned()]),
            ("2027-04-22".to_owned(), vec!["After midnight".to_owned()]),
        ]
    );
    assert_eq!(
        answer.json()["days"][0]["sessions"][0]["starts_at"],
        "2027-04-21T20:00:00-04:00"
    );
}

#[tokio::test]
async fn the_programme_groups_by_local_day_across_a_change_to_summer_time() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    // Berlin moves from UTC+1 to UTC+2 at 02:00 on 28 March 2027.
    app.event(
        &admin.access,
        "berlin",
        json!({"time_zone": "Europe/Berlin", "starts_on": "2027-03-27", "ends_on": "2027-03-29"}),
    )
    .await;
    for (title, start, end) in [
        ("Sa 23:30", "2027-03-27T22:30:00Z", "2027-03-27T22:45:00Z"),
        ("So 00:30", "2027-03-27T23:30:00Z", "2027-03-27T23:45:00Z"),
        ("So 23:30", "2027-03-28T21:30:00Z", "2027-03-28T21:45:00Z"),
        ("Mo 00:30", "2027-03-28T22:30:00Z", "2027-03-28T22:45:00Z"),
    ] {
        app.session(
            &admin.access,
            "berlin",
            with(at(start, end), json!({"title": title})),
        )
        .await;
    }

    let answer = app.get("/api/v1/events/berlin/programme", None).await;

    assert_eq!(
        days_of(&answer),
        [
            ("2027-03-27".to_owned(), vec!["Sa 23:30".to_owned()]),
            (
                "2027-03-28".to_owned(),
                vec!["So 00:30".to_owned(), "So 23:30".to_owned()]
            ),
            ("2027-03-29".to_owned(), vec!["Mo 00:30".to_owned()]),
        ]
    );
    let days = answer.json()["days"].clone();
    assert_eq!(
        days[1]["sessions"][0]["starts_at"],
        "2027-03-28T00:30:00+01:00"
    );
    assert_eq!(
        days[1]["sessions"][1]["starts_at"],
        "2027-03-28T23:30:00+02:00"
    );
}

#[tokio::test]
async fn unpublishing_an_event_hides_its_programme_at_once() {
    let (app, admin) = with_event().await;
    app.session(&admin.access, "mmdn", json!({})).await;
    app.get("/api/v1/events/mmdn/programme", None)
        .await
        .assert_status(200);

    app.patch(
        "/api/v1/events/mmdn",
        Some(&admin.access),
        &json!({"status": "draft"}),
    )
    .await
    .assert_status(200);

    app.get("/api/v1/events/mmdn/programme", None)
        .await
        .assert_problem(404, "not_found");
}

#[tokio::test]
async fn changing_the_events_time_zone_moves_its_sessions_to_other_days() {
    let (app, admin) = with_event().await;
    // 23:30 in Moscow on 21 April is 06:30 on 22 April in Vladivostok (UTC+10).
    app.session(
        &admin.access,
        "mmdn",
        with(
            at("2027-04-21T20:30:00Z", "2027-04-21T21:00:00Z"),
            json!({"title": "Поздно вечером"}),
        ),
    )
    .await;
    app.get("/api/v1/events/mmdn/programme", None)
        .await
        .assert_status(200);

    app.patch(
        "/api/v1/events/mmdn",
        Some(&admin.access),
        &json!({"time_zone": "Asia/Vladivostok"}),
    )
    .await
    .assert_status(200);

    let answer = app.get("/api/v1/events/mmdn/programme", None).await;
    assert_eq!(
        days_of(&answer),
        [("2027-04-22".to_owned(), vec!["Поздно вечером".to_owned()])]
    );
    assert_eq!(
        answer.json()["days"][0]["sessions"][0]["starts_at"],
        "2027-04-22T06:30:00+10:00"
    );
}

#[tokio::test]
async fn a_time_zone_that_would_push_sessions_outside_the_days_is_refused() {
    let (app, admin) = with_event().await;
    // 23:00 in Moscow on the last day ends after midnight in Vladivostok.
    app.session(
        &admin.access,
        "mmdn",
        at("2027-04-24T23:00:00+03:00", "2027-04-24T23:30:00+03:00"),
    )
    .await;

    let answer = app
        .patch(
            "/api/v1/events/mmdn",
            Some(&admin.access),
            &json!({"time_zone": "Asia/Vladivostok"}),
        )
        .await;

    assert_eq!(invalid_fields(&answer), ["ends_on"]);
}

#[tokio::test]
async fn the_programme_shows_published_sessions_only() {
    let (app, admin) = with_event().await;
    app.session(&admin.access, "mmdn", json!({"title": "Опубликована"}))
        .await;
    app.session(
        &admin.access,
        "mmdn",
        json!({"title": "Черновик", "status": "draft"}),
    )
    .await;
    app.session(
        &admin.access,
        "mmdn",
        json!({"title": "Отменена", "status": "cancelled"}),
    )
    .await;

    let answer = app
        .get("/api/v1/events/mmdn/programme", Some(&admin.access))
        .await;

    assert_eq!(titles_of(&answer), ["Опубликована"]);
}

#[tokio::test]
async fn the_programme_of_a_draft_event_is_hidden_from_anonymous_callers() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    app.event(&admin.access, "mmdn", json!({"status": "draft"}))
        .await;

    let anonymous = app.get("/api/v1/events/mmdn/programme", None).await;
    let organiser = app
        .get("/api/v1/events/mmdn/programme", Some(&admin.access))
        .await;

    anonymous.assert_problem(404, "not_found");
    organiser.assert_status(200);
    assert_eq!(organiser.header("cache-control"), Some("private, no-cache"));
}

#[tokio::test]
async fn the_programme_shows_track_venue_speakers_and_seats_left() {
    let (app, admin) = with_event().await;
    let hall = venue(
        &app,
        &admin.access,
        "mmdn",
        json!({"name": "ДК «Металлург»", "city": "Мончегорск", "address": "пр. Металлургов, 25"}),
    )
    .await;
    let direction = track(
        &app,
        &admin.access,
        "mmdn",
        json!({"title": "Роль волонтёрского движения в жизни города", "colour": "#1f6feb"}),
    )
    .await;
    let session = app
        .session(
            &admin.access,
            "mmdn",
            json!({"venue_id": id(&hall), "track_id": id(&direction), "capacity": 2, "waitlist_enabled": true}),
        )
        .await;
    let guest = duryagin(&app, &admin.access).await;
    put_speaker_on(
        &app,
        &admin.access,
        id(&session),
        id(&guest),
        json!({"role": "guest_of_honour"}),
    )
    .await
    .assert_status(200);
    for email in ["a@example.org", "b@example.org", "c@example.org"] {
        app.register("mmdn", email, &[id(&session)])
            .await
            .assert_status(201);
    }

    let answer = app.get("/api/v1/events/mmdn/programme", None).await;

    answer.assert_status(200);
    let entry = answer.json()["days"][0]["sessions"][0].clone();
    assert_eq!(
        entry["track"],
        json!({"id": id(&direction), "title": "Роль волонтёрского движения в жизни города", "colour": "#1f6feb"})
    );
    assert_eq!(
        entry["venue"],
        json!({"id": id(&hall), "name": "ДК «Металлург»", "city": "Мончегорск", "address": "пр. Металлургов, 25"})
    );
    assert_eq!(entry["speakers"][0]["full_name"], "Роман Дурягин");
    assert_eq!(entry["speakers"][0]["role"], "guest_of_honour");
    assert_eq!(entry["capacity"], 2);
    assert_eq!(entry["seats_left"], 0);
    assert_eq!(entry["waitlisted"], 1);
    assert_eq!(answer.json()["event"]["time_zone"], "Europe/Moscow");
}

#[tokio::test]
async fn cyrillic_session_text_round_trips_exactly_through_the_programme() {
    let (app, admin) = with_event().await;
    let title = "«Городские события» — фактор развития территорий: ЁЛКА, ёлка, е\u{0308}лка";
    let description = "Опыт корпоративного волонтёрства.\nСоциальное партнёрство.";
    app.session(
        &admin.access,
        "mmdn",
        json!({"title": title, "description": description, "tags": ["партнёрство"]}),
    )
    .await;

    let answer = app.get("/api/v1/events/mmdn/programme", None).await;

    let entry = answer.json()["days"][0]["sessions"][0].clone();
    assert_eq!(
        entry["title"].as_str().unwrap().as_bytes(),
        title.as_bytes()
    );
    assert_eq!(
        entry["description"].as_str().unwrap().as_bytes(),
        description.as_bytes()
    );
    assert_eq!(entry["tags"], json!(["партнёрство"]));
}

// ---- the public programme: filters -------------------------------------------------------

/// Three sessions on three days, in two venues and two tracks, of three kinds; a speaker on
/// the second. Returns the ids of (venue of the first, track of the second, the speaker).
async fn filter_world(app: &TestApp, token: &str) -> (String, String, String) {
    let murmansk = venue(
        app,
        token,
        "mmdn",
        json!({"name": "Конгресс-холл", "city": "Мурманск"}),
    )
    .await;
    let monchegorsk = venue(
        app,
        token,
        "mmdn",
        json!({"name": "ДК «Металлург»", "city": "Мончегорск"}),
    )
    .await;
    let volunteers = track(
        app,
        token,
        "mmdn",
        json!({"title": "Роль волонтёрского движения в жизни города"}),
    )
    .await;
    let events = track(
        app,
        token,
        "mmdn",
        json!({"title": "Городские события как фактор развития территорий"}),
    )
    .await;
    app.session(
        token,
        "mmdn",
        json!({
            "title": "Пленарное заседание", "kind": "plenary",
            "starts_at": "2027-04-20T10:00:00+03:00", "ends_at": "2027-04-20T12:00:00+03:00",
            "venue_id": id(&murmansk), "track_id": id(&volunteers),
        }),
    )
    .await;
    let round_table = app
        .session(
            token,
            "mmdn",
            json!({
                "title": "Круглый стол", "kind": "round_table",
                "starts_at": "2027-04-22T10:00:00+03:00", "ends_at": "2027-04-22T12:00:00+03:00",
                "venue_id": id(&monchegorsk), "track_id": id(&events),
            }),
        )
        .await;
    app.session(
        token,
        "mmdn",
        json!({
            "title": "Деловая сессия", "kind": "business_session",
            "venue_id": id(&monchegorsk), "track_id": id(&volunteers),
        }),
    )
    .await;
    let person = speaker(app, token, "mmdn", json!({"full_name": "Роман Дурягин"})).await;
    let answer = app
        .call(
            Method::PUT,
            &format!(
                "/api/v1/events/mmdn/sessions/{}/speakers/{}",
                id(&round_table),
                id(&person)
            ),
        )
        .bearer(token)
        .json(&json!({"role": "speaker"}))
        .send()
        .await;
    answer.assert_status(200);
    (
        id(&murmansk).to_owned(),
        id(&events).to_owned(),
        id(&person).to_owned(),
    )
}

#[tokio::test]
async fn the_programme_lists_days_in_order() {
    let (app, admin) = with_event().await;
    filter_world(&app, &admin.access).await;

    let answer = app.get("/api/v1/events/mmdn/programme", None).await;

    assert_eq!(
        days_of(&answer),
        [
            (
                "2027-04-20".to_owned(),
                vec!["Пленарное заседание".to_owned()]
            ),
            ("2027-04-22".to_owned(), vec!["Круглый стол".to_owned()]),
            ("2027-04-24".to_owned(), vec!["Деловая сессия".to_owned()]),
        ]
    );
}

#[tokio::test]
async fn the_programme_filters_by_track() {
    let (app, admin) = with_event().await;
    let (_, track_id, _) = filter_world(&app, &admin.access).await;

    let answer = app
        .get(
            &format!("/api/v1/events/mmdn/programme?track={track_id}"),
            None,
        )
        .await;

    assert_eq!(titles_of(&answer), ["Круглый стол"]);
}

#[tokio::test]
async fn the_programme_filters_by_day() {
    let (app, admin) = with_event().await;
    filter_world(&app, &admin.access).await;

    let answer = app
        .get("/api/v1/events/mmdn/programme?day=2027-04-24", None)
        .await;

    assert_eq!(
        days_of(&answer),
        [("2027-04-24".to_owned(), vec!["Деловая сессия".to_owned()])]
    );
}

#[tokio::test]
async fn the_programme_filters_by_venue() {
    let (app, admin) = with_event().await;
    let (venue_id, _, _) = filter_world(&app, &admin.access).await;

    let answer = app
        .get(
            &format!("/api/v1/events/mmdn/programme?venue={venue_id}"),
            None,
        )
        .await;

    assert_eq!(titles_of(&answer), ["Пленарное заседание"]);
}

#[tokio::test]
async fn the_programme_filters_by_speaker() {
    let (app, admin) = with_event().await;
    let (_, _, speaker_id) = filter_world(&app, &admin.access).await;

    let answer = app
        .get(
            &format!("/api/v1/events/mmdn/programme?speaker={speaker_id}"),
            None,
        )
        .await;

    assert_eq!(titles_of(&answer), ["Круглый стол"]);
}

#[tokio::test]
async fn the_programme_filters_by_kind() {
    let (app, admin) = with_event().await;
    filter_world(&app, &admin.access).await;

    let answer = app
        .get("/api/v1/events/mmdn/programme?kind=business_session", None)
        .await;

    assert_eq!(titles_of(&answer), ["Деловая сессия"]);
}

#[tokio::test]
async fn the_programme_combines_filters() {
    let (app, admin) = with_event().await;
    filter_world(&app, &admin.access).await;

    let answer = app
        .get(
            "/api/v1/events/mmdn/programme?kind=plenary&day=2027-04-24",
            None,
        )
        .await;

    assert_eq!(days_of(&answer), Vec::<(String, Vec<String>)>::new());
}

#[tokio::test]
async fn an_unknown_programme_parameter_is_a_400() {
    let (app, _admin) = with_event().await;

    let answer = app
        .get("/api/v1/events/mmdn/programme?town=Мончегорск", None)
        .await;

    answer.assert_problem(400, "invalid_query");
}

// ---- the public programme: search -------------------------------------------------------

async fn search_world(app: &TestApp, token: &str) {
    app.session(
        token,
        "mmdn",
        json!({
            "title": "Социальное партнёрство. Социальное проектирование",
            "description": "Роль волонтёрского движения в жизни города",
        }),
    )
    .await;
    app.session(
        token,
        "mmdn",
        json!({
            "title": "Городские события как фактор развития территорий",
            "starts_at": "2027-04-23T11:00:00+03:00", "ends_at": "2027-04-23T13:00:00+03:00",
        }),
    )
    .await;
    app.session(
        token,
        "mmdn",
        json!({
            "title": "Corporate volunteering programmes",
            "description": "How industrial companies support city events",
            "language": "en",
            "starts_at": "2027-04-22T11:00:00+03:00", "ends_at": "2027-04-22T13:00:00+03:00",
        }),
    )
    .await;
}

/// The programme path with `q` percent-encoded.
fn programme_search(q: &str) -> String {
    let url = reqwest::Url::parse_with_params("http://localhost/", &[("q", q)]).unwrap();
    format!("/api/v1/events/mmdn/programme?{}", url.query().unwrap())
}

async fn search(app: &TestApp, q: &str) -> Vec<String> {
    titles_of(&app.get(&programme_search(q), None).await)
}

#[tokio::test]
async fn searching_for_a_word_finds_its_other_forms_in_russian() {
    let (app, admin) = with_event().await;
    search_world(&app, &admin.access).await;

    let found = search(&app, "волонтёр").await;

    assert_eq!(found, ["Социальное партнёрство. Социальное проектирование"]);
}

#[tokio::test]
async fn searching_treats_yo_and_ye_alike() {
    let (app, admin) = with_event().await;
    search_world(&app, &admin.access).await;

    let with_ye = search(&app, "волонтерского").await;
    let with_capital_yo = search(&app, "ПАРТНЁРСТВО").await;

    assert_eq!(
        with_ye,
        ["Социальное партнёрство. Социальное проектирование"]
    );
    assert_eq!(
        with_capital_yo,
        ["Социальное партнёрство. Социальное проектирование"]
    );
}

#[tokio::test]
async fn searching_matches_every_word_by_its_stem() {
    let (app, admin) = with_event().await;
    search_world(&app, &admin.access).await;

    let found = search(&app, "городское событие").await;

    assert_eq!(found, ["Городские события как фактор развития территорий"]);
}

#[tokio::test]
async fn searching_finds_english_text_by_its_stem() {
    let (app, admin) = with_event().await;
    search_world(&app, &admin.access).await;

    let volunteers = search(&app, "Volunteers").await;
    let programme = search(&app, "programme").await;

    assert_eq!(volunteers, ["Corporate volunteering programmes"]);
    assert_eq!(programme, ["Corporate volunteering programmes"]);
}

#[tokio::test]
async fn searching_for_something_absent_finds_nothing() {
    let (app, admin) = with_event().await;
    search_world(&app, &admin.access).await;

    let found = search(&app, "металлургия").await;

    assert_eq!(found, Vec::<String>::new());
}

#[tokio::test]
async fn searching_with_query_syntax_characters_is_harmless() {
    let (app, admin) = with_event().await;
    search_world(&app, &admin.access).await;

    let found = search(&app, "волонтёр' & | ! :* (").await;

    assert_eq!(found, ["Социальное партнёрство. Социальное проектирование"]);
}

#[tokio::test]
async fn a_search_longer_than_200_characters_is_refused_naming_q() {
    let (app, _admin) = with_event().await;

    let answer = app.get(&programme_search(&"ё".repeat(201)), None).await;

    assert_eq!(invalid_fields(&answer), ["q"]);
}

// ---- the public programme: caching ------------------------------------------------------

#[tokio::test]
async fn a_new_event_time_zone_makes_a_cached_session_stale() {
    let (app, admin) = with_event().await;
    let session = app.session(&admin.access, "mmdn", json!({})).await; // 11:00 in Moscow
    let path = format!("/api/v1/events/mmdn/sessions/{}", id(&session));
    let etag = app
        .get(&path, None)
        .await
        .header("etag")
        .unwrap()
        .to_owned();
    app.patch(
        "/api/v1/events/mmdn",
        Some(&admin.access),
        &json!({"time_zone": "Asia/Yekaterinburg"}),
    )
    .await
    .assert_status(200);

    let answer = app
        .call(Method::GET, &path)
        .header("if-none-match", &etag)
        .send()
        .await;

    answer.assert_status(200);
    assert_eq!(answer.json()["starts_at"], "2027-04-24T13:00:00+05:00");
    assert_ne!(answer.header("etag"), Some(etag.as_str()));
}

#[tokio::test]
async fn the_programme_carries_an_etag_and_cache_control() {
    let (app, admin) = with_event().await;
    app.session(&admin.access, "mmdn", json!({})).await;

    let answer = app.get("/api/v1/events/mmdn/programme", None).await;

    answer.assert_status(200);
    assert!(
        answer
            .header("etag")
            .is_some_and(|tag| tag.starts_with('"'))
    );
    assert_eq!(
        answer.header("cache-control"),
        Some("public, max-age=5, stale-while-revalidate=30")
    );
}

#[tokio::test]
async fn the_programme_with_its_etag_in_if_none_match_is_a_304() {
    let (app, admin) = with_event().await;
    app.session(&admin.access, "mmdn", json!({})).await;
    let etag = app
        .get("/api/v1/events/mmdn/programme", None)
        .await
        .header("etag")
        .unwrap()
        .to_owned();

    let answer = app
        .call(Method::GET, "/api/v1/events/mmdn/programme")
        .header("if-none-match", &etag)
        .send()
        .await;

    answer.assert_status(304);
    assert_eq!(answer.text, "");
    assert_eq!(answer.header("etag"), Some(etag.as_str()));
    assert_eq!(
        answer.header("cache-control"),
        Some("public, max-age=5, stale-while-revalidate=30")
    );
}

#[tokio::test]
async fn a_changed_programme_no_longer_matches_the_old_etag() {
    let (app, admin) = with_event().await;
    let session = app.session(&admin.access, "mmdn", json!({})).await;
    let etag = app
        .get("/api/v1/events/mmdn/programme", None)
        .await
        .header("etag")
        .unwrap()
        .to_owned();
    app.patch(
        &format!("/api/v1/events/mmdn/sessions/{}", id(&session)),
        Some(&admin.access),
        &json!({"title": "Новое название"}),
    )
    .await
    .assert_status(200);

    let answer = app
        .call(Method::GET, "/api/v1/events/mmdn/programme")
        .header("if-none-match", &etag)
        .send()
        .await;

    answer.assert_status(200);
    assert_ne!(answer.header("etag"), Some(etag.as_str()));
    assert_eq!(titles_of(&answer), ["Новое название"]);
}

#[tokio::test]
async fn a_programme_is_the_same_by_slug_and_by_id() {
    let (app, admin) = with_event().await;
    app.session(&admin.access, "mmdn", json!({})).await;
    let event_id = app.get("/api/v1/events/mmdn", None).await.json()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let by_slug = app.get("/api/v1/events/mmdn/programme", None).await;
    let by_id = app
        .get(&format!("/api/v1/events/{event_id}/programme"), None)
        .await;

    assert_eq!(by_slug.text, by_id.text);
    assert_eq!(by_slug.header("etag"), by_id.header("etag"));
}

// ---- iCalendar ---------------------------------------------------------------------------

fn parse_calendar(text: &str) -> ical::parser::ical::component::IcalCalendar {
    let mut calendars: Vec<_> = ical::IcalParser::new(std::io::BufReader::new(text.as_bytes()))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("not a calendar ({e}):\n{text}"));
    assert_eq!(calendars.len(), 1, "{text}");
    calendars.remove(0)
}

fn property<'a>(
    properties: &'a [ical::property::Property],
    name: &str,
) -> &'a ical::property::Property {
    properties
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no {name} in {properties:?}"))
}

fn value_of<'a>(properties: &'a [ical::property::Property], name: &str) -> &'a str {
    property(properties, name).value.as_deref().unwrap()
}

fn params_of(properties: &[ical::property::Property], name: &str) -> Vec<(String, Vec<String>)> {
    property(properties, name)
        .params
        .clone()
        .unwrap_or_default()
}

/// A TEXT value as written, unescaped (RFC 5545 §3.3.11).
fn unescape(value: &str) -> String {
    let mut out = String::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n' | 'N') => out.push('\n'),
                Some(other) => out.push(other),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[tokio::test]
async fn the_programme_as_icalendar_parses_with_the_events_time_zone() {
    let (app, admin) = with_event().await;
    let hall = venue(
        &app,
        &admin.access,
        "mmdn",
        json!({"name": "ДК «Металлург»", "city": "Мончегорск"}),
    )
    .await;
    app.session(&admin.access, "mmdn", json!({"venue_id": id(&hall)}))
        .await;
    app.session(
        &admin.access,
        "mmdn",
        with(
            at("2027-04-21T21:30:00Z", "2027-04-21T22:30:00Z"),
            json!({"title": "После полуночи"}),
        ),
    )
    .await;

    let answer = app.get("/api/v1/events/mmdn/programme.ics", None).await;

    answer.assert_status(200);
    assert_eq!(
        answer.header("content-type"),
        Some("text/calendar; charset=utf-8")
    );
    assert!(answer.header("etag").is_some());
    let calendar = parse_calendar(&answer.text);
    assert_eq!(value_of(&calendar.properties, "VERSION"), "2.0");
    assert_eq!(calendar.timezones.len(), 1);
    let zone = &calendar.timezones[0];
    assert_eq!(value_of(&zone.properties, "TZID"), "Europe/Moscow");
    assert!(!zone.transitions.is_empty());
    assert_eq!(
        value_of(&zone.transitions[0].properties, "TZOFFSETTO"),
        "+0300"
    );
    assert_eq!(calendar.events.len(), 2);
    let tzid = vec![("TZID".to_owned(), vec!["Europe/Moscow".to_owned()])];
    let after_midnight = &calendar.events[0].properties;
    assert_eq!(value_of(after_midnight, "DTSTART"), "20270422T003000");
    assert_eq!(params_of(after_midnight, "DTSTART"), tzid);
    assert_eq!(value_of(after_midnight, "DTEND"), "20270422T013000");
    let business = &calendar.events[1].properties;
    assert_eq!(value_of(business, "DTSTART"), "20270424T110000");
    assert_eq!(params_of(business, "DTSTART"), tzid);
    assert_eq!(value_of(business, "DTEND"), "20270424T130000");
    assert_eq!(params_of(business, "DTEND"), tzid);
    assert_eq!(
        unescape(value_of(business, "SUMMARY")),
        "Социальное партнёрство. Социальное проектирование"
    );
    assert_eq!(
        unescape(value_of(business, "LOCATION")),
        "ДК «Металлург», Мончегорск"
    );
}

#[tokio::test]
async fn one_session_as_icalendar_parses_with_the_events_time_zone() {
    let (app, admin) = with_event().await;
    let session = app.session(&admin.access, "mmdn", json!({})).await;
    let guest = duryagin(&app, &admin.access).await;
    put_speaker_on(
        &app,
        &admin.access,
        id(&session),
        id(&guest),
        json!({"role": "guest_of_honour"}),
    )
    .await
    .assert_status(200);

    let answer = app
        .get(
            &format!("/api/v1/events/mmdn/sessions/{}/calendar.ics", id(&session)),
            None,
        )
        .await;

    answer.assert_status(200);
    let calendar = parse_calendar(&answer.text);
    assert_eq!(
        value_of(&calendar.timezones[0].properties, "TZID"),
        "Europe/Moscow"
    );
    assert_eq!(calendar.events.len(), 1);
    let event = &calendar.events[0].properties;
    assert_eq!(
        value_of(event, "UID"),
        format!("{}@registrar", id(&session))
    );
    assert_eq!(value_of(event, "DTSTART"), "20270424T110000");
    assert_eq!(
        params_of(event, "DTSTART"),
        [("TZID".to_owned(), vec!["Europe/Moscow".to_owned()])]
    );
    assert_eq!(
        unescape(value_of(event, "DESCRIPTION")),
        "Роман Дурягин, Заместитель губернатора Мурманской области"
    );
}

#[tokio::test]
async fn long_cyrillic_text_survives_line_folding_in_icalendar() {
    let (app, admin) = with_event().await;
    let title = "Опыт проектирования мероприятий и применение различных методик в организации \
                 городских событий; «Городские события как фактор развития территорий», \
                 социальное партнёрство в организации";
    let description = "Строка первая.\nСтрока вторая, с запятой; и точкой с запятой \\ и чертой.";
    let session = app
        .session(
            &admin.access,
            "mmdn",
            json!({"title": title, "description": description}),
        )
        .await;

    let answer = app
        .get(
            &format!("/api/v1/events/mmdn/sessions/{}/calendar.ics", id(&session)),
            None,
        )
        .await;

    for physical in answer.text.split("\r\n") {
        assert!(physical.len() <= 75, "{physical}");
    }
    let calendar = parse_calendar(&answer.text);
    let event = &calendar.events[0].properties;
    assert_eq!(unescape(value_of(event, "SUMMARY")), title);
    assert_eq!(unescape(value_of(event, "DESCRIPTION")), description);
}

#[tokio::test]
async fn a_space_where_a_line_folds_survives_in_icalendar() {
    let (app, admin) = with_event().await;
    // "SUMMARY:" and 33 two-octet letters fill 74 octets: the space falls on the fold.
    let title = format!("{} {}", "ж".repeat(33), "партнёрство");
    let session = app
        .session(&admin.access, "mmdn", json!({"title": title}))
        .await;

    let answer = app
        .get(
            &format!("/api/v1/events/mmdn/sessions/{}/calendar.ics", id(&session)),
            None,
        )
        .await;

    let calendar = parse_calendar(&answer.text);
    assert_eq!(
        unescape(value_of(&calendar.events[0].properties, "SUMMARY")),
        title
    );
}

#[tokio::test]
async fn a_draft_session_has_no_public_calendar() {
    let (app, admin) = with_event().await;
    let draft = app
        .session(&admin.access, "mmdn", json!({"status": "draft"}))
        .await;

    let answer = app
        .get(
            &format!("/api/v1/events/mmdn/sessions/{}/calendar.ics", id(&draft)),
            None,
        )
        .await;

    answer.assert_problem(404, "not_found");
}

#[tokio::test]
async fn a_change_through_one_instance_reaches_the_other_instances_copies_at_once() {
    // Copies that would otherwise be kept for ten minutes.
    let long_cache = |config: &mut registrar::config::Config| config.public_cache_ms = 600_000;
    let one = crate::helpers::spawn_app_with(long_cache).await;
    let other = crate::helpers::another_instance_with(&one, long_cache).await;
    let token = one.admin().await.access;
    one.event(&token, "mmdn", json!({})).await;
    let session = one.session(&token, "mmdn", json!({"capacity": 10})).await;
    let session = session["id"].as_str().unwrap().to_owned();
    // The other instance reads, and keeps, the programme and the settings registrations are
    // checked against.
    other
        .register("mmdn", "first@example.org", &[&session])
        .await
        .assert_status(201);
    let programme = other.get("/api/v1/events/mmdn/programme", None).await;
    assert!(
        programme.text.contains("Социальное партнёрство"),
        "{}",
        programme.text
    );

    one.patch(
        &format!("/api/v1/events/mmdn/sessions/{session}"),
        Some(&token),
        &json!({"title": "Перенесённая сессия", "status": "cancelled"}),
    )
    .await
    .assert_status(200);

    let changed = std::time::Instant::now();
    for attempt in 0.. {
        let programme = other.get("/api/v1/events/mmdn/programme", None).await;
        let registering = other
            .register("mmdn", &format!("later{attempt}@example.org"), &[&session])
            .await;
        // Renamed and cancelled: the old title is gone from the programme either way.
        if !programme.text.contains("Социальное партнёрство") && registering.status.as_u16() == 409
        {
            registering.assert_problem(409, "session_cancelled");
            break;
        }
        assert!(
            changed.elapsed() < std::time::Duration::from_secs(10),
            "the other instance still serves its old copies: {} / {}",
            programme.status,
            registering.status
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
