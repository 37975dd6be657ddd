//! `registrar demo`: the demonstration event loads into a fresh database, once.

use registrar::demo::{self, Options, Outcome};
use serde_json::Value;

use crate::helpers::{TestApp, spawn_app, test_config};

async fn load(app: &TestApp, reset: bool) -> Outcome {
    demo::load(&test_config(&app.db), &Options { reset, owner: None })
        .await
        .expect("the demo loads")
}

fn sessions_of(programme: &Value) -> Vec<Value> {
    programme["days"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|day| day["sessions"].as_array().unwrap().clone())
        .collect()
}

#[tokio::test]
async fn the_demo_has_a_programme_of_five_days_three_tracks_and_the_80_seat_session() {
    let app = spawn_app().await;

    let outcome = load(&app, false).await;

    let Outcome::Created(summary) = outcome else {
        panic!("expected a new demo event, got {outcome:?}");
    };
    let programme = app
        .get(&format!("/api/v1/events/{}/programme", demo::SLUG), None)
        .await;
    programme.assert_status(200);
    let programme = programme.json();
    assert_eq!(
        programme["event"]["title"],
        "VII Мурманская международная деловая неделя"
    );
    assert_eq!(programme["event"]["time_zone"], "Europe/Moscow");
    let dates: Vec<String> = programme["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|day| day["date"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(dates.len(), 5);
    assert_eq!(dates[0], summary.first_day.to_string());
    assert_eq!(dates[4], summary.last_day.to_string());

    let tracks = app
        .get(&format!("/api/v1/events/{}/tracks", demo::SLUG), None)
        .await
        .json();
    let titles: Vec<&str> = tracks["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        titles,
        [
            "Роль волонтёрского движения в жизни города",
            "Опыт проектирования мероприятий и применение различных методик в организации \
             городских событий",
            "Городские события как фактор развития территорий. Социальное партнёрство в \
             организации",
        ]
    );

    let sessions = sessions_of(&programme);
    let business = sessions
        .iter()
        .find(|s| s["title"] == "Социальное партнёрство. Социальное проектирование")
        .expect("the business session is on the programme");
    assert_eq!(business["kind"], "business_session");
    assert_eq!(business["capacity"], 80);
    assert_eq!(business["waitlist_enabled"], true);
    assert_eq!(business["seats_left"], 6);
    assert_eq!(business["venue"]["city"], "Мончегорск");
    assert!(
        business["starts_at"]
            .as_str()
            .unwrap()
            .starts_with(&summary.last_day.to_string())
    );
    assert_eq!(business["speakers"][0]["full_name"], "Роман Дурягин");
    assert_eq!(
        business["speakers"][0]["position"],
        "Заместитель губернатора Мурманской области"
    );
    assert_eq!(business["speakers"][0]["role"], "guest_of_honour");
    assert_eq!(business["speakers"].as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn the_demo_shows_a_full_session_with_a_waitlist() {
    let app = spawn_app().await;

    load(&app, false).await;

    let programme = app
        .get(&format!("/api/v1/events/{}/programme", demo::SLUG), None)
        .await
        .json();
    let full: Vec<(String, Value, Value)> = sessions_of(&programme)
        .iter()
        .filter(|s| s["waitlisted"].as_i64().unwrap() > 0)
        .map(|s| {
            (
                s["title"].as_str().unwrap().to_owned(),
                s["seats_left"].clone(),
                s["waitlisted"].clone(),
            )
        })
        .collect();
    assert_eq!(
        full,
        [(
            "Экскурсия на горно-обогатительный комбинат".to_owned(),
            Value::from(0),
            Value::from(3)
        )]
    );
}

#[tokio::test]
async fn loading_the_demo_again_leaves_it_as_it_is() {
    let app = spawn_app().await;
    let Outcome::Created(first) = load(&app, false).await else {
        panic!("the first load creates the event");
    };

    let again = load(&app, false).await;

    assert_eq!(
        again,
        Outcome::Exists {
            event_id: first.event_id
        }
    );
    let sessions = app
        .get(&format!("/api/v1/events/{}/sessions", demo::SLUG), None)
        .await
        .json();
    assert_eq!(sessions["items"].as_array().unwrap().len(), first.sessions);
}

#[tokio::test]
async fn loading_the_demo_with_reset_replaces_it() {
    let app = spawn_app().await;
    let Outcome::Created(first) = load(&app, false).await else {
        panic!("the first load creates the event");
    };

    let Outcome::Created(second) = load(&app, true).await else {
        panic!("a reset creates the event again");
    };

    assert_ne!(second.event_id, first.event_id);
    assert_eq!(second.registrations, 100);
    let event = app
        .get(&format!("/api/v1/events/{}", demo::SLUG), None)
        .await
        .json();
    assert_eq!(event["id"], second.event_id.to_string());
}

#[tokio::test]
async fn the_demo_has_a_registration_form_with_a_limited_excursion_and_the_consent() {
    let app = spawn_app().await;
    load(&app, false).await;

    let form = app
        .get(
            &format!("/api/v1/events/{}/registration-form", demo::SLUG),
            None,
        )
        .await;

    form.assert_status(200);
    let form = form.json();
    let keys: Vec<&str> = form["questions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["direction", "town", "transfer", "arrival", "excursion"]
    );
    let plant = &form["questions"][4]["options"][0];
    assert_eq!(plant["key"], "plant");
    assert_eq!(plant["capacity"], 30);
    assert!(plant["places_left"].as_i64().unwrap() < 30);
    assert_eq!(form["consents"][0]["key"], "personal_data");
    assert_eq!(form["categories"].as_array().unwrap().len(), 5);
}
