//! Registration forms: participant categories with their own places, windows and waitlists;
//! and under concurrency, against the real database, categories never oversold.

use std::collections::BTreeSet;

use futures_util::future::join_all;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{
    Answer, TestApp, column, deadlocks, registration_body, spawn_app, spawn_app_with,
};
use crate::registrations::{count, id_of};

pub async fn add_category(app: &TestApp, token: &str, event: &str, body: Value) -> Value {
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

pub fn field_of(problem: &Value) -> String {
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
    students_with_waitlist(&app, &token, 1).await;

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

    // A category questions are asked of keeps its code too, until they are asked of others.
    app.post(
        "/api/v1/events/mmdn/questions",
        Some(&token),
        &json!({"key": "outlet", "type": "text", "label": {"ru": "Издание", "en": "Outlet"},
                "categories": ["government", "other"]}),
    )
    .await
    .assert_status(201);
    let path = "/api/v1/events/mmdn/categories/other";
    let deleted = app.delete(path, Some(&token)).await;
    assert_eq!(
        deleted.assert_problem(409, "category_in_use")["questions"],
        json!(["outlet"])
    );
    app.patch(path, Some(&token), &json!({"code": "rest"}))
        .await
        .assert_problem(409, "category_in_use");
    app.patch(
        "/api/v1/events/mmdn/questions/outlet",
        Some(&token),
        &json!({"categories": ["government"]}),
    )
    .await
    .assert_status(200);
    app.delete(path, Some(&token)).await.assert_status(204);
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

/// Event `mmdn` with a category `students` of `capacity` places and a waitlist.
async fn students_with_waitlist(app: &TestApp, token: &str, capacity: i32) {
    app.event(token, "mmdn", json!({})).await;
    add_category(
        app,
        token,
        "mmdn",
        json!({"code": "students", "name": {"ru": "Студенты", "en": "Students"},
               "capacity": capacity, "waitlist": true}),
    )
    .await;
}

/// An app that really runs requests in parallel.
pub async fn parallel_app() -> TestApp {
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
    students_with_waitlist(&app, &token, 30).await;
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

/// A form with every type of question, a condition and a category rule, on event `mmdn`:
/// the excursion to the plant has `plant_places` places.
pub async fn event_with_form(app: &TestApp, token: &str, plant_places: i64) {
    app.event(token, "mmdn", json!({})).await;
    let label = |ru: &str, en: &str| json!({"ru": ru, "en": en});
    let questions = [
        json!({"key": "direction", "type": "single_choice", "required": true,
               "label": label("Направление работы", "Direction of work"), "options": [
                   {"key": "volunteering", "label": label("Волонтёрство", "Volunteering")},
                   {"key": "projects", "label": label("Проекты", "Projects")}]}),
        json!({"key": "town", "type": "text", "required": true, "max_length": 100,
               "label": label("Город", "Town")}),
        json!({"key": "transfer", "type": "yes_no", "required": true,
               "label": label("Нужен трансфер из Мурманска?", "Transfer from Murmansk?")}),
        json!({"key": "arrival", "type": "date", "required": true,
               "label": label("Дата приезда", "Arrival"),
               "shown_when": {"question": "transfer", "equals": true}}),
        json!({"key": "mobile", "type": "phone", "label": label("Телефон", "Phone")}),
        json!({"key": "assistant", "type": "email", "label": label("Почта помощника", "Assistant's email")}),
        json!({"key": "country", "type": "country", "label": label("Страна", "Country")}),
        json!({"key": "guests", "type": "number", "min": 0, "max": 5,
               "label": label("Гости", "Guests")}),
        json!({"key": "topics", "type": "multiple_choice", "max_choices": 2,
               "label": label("Темы", "Topics"), "options": [
                   {"key": "a", "label": label("А", "A")}, {"key": "b", "label": label("Б", "B")},
                   {"key": "c", "label": label("В", "C")}]}),
        json!({"key": "excursion", "type": "single_choice", "categories": ["business", "government"],
               "label": label("Экскурсия", "Excursion"), "options": [
                   {"key": "plant", "label": label("На комбинат", "To the plant"), "capacity": plant_places},
                   {"key": "museum", "label": label("В музей", "To the museum")}]}),
        json!({"key": "notes", "type": "multiline", "help": label("Что угодно", "Anything"),
               "label": label("Заметки", "Notes")}),
    ];
    for question in questions {
        app.post("/api/v1/events/mmdn/questions", Some(token), &question)
            .await
            .assert_status(201);
    }
}

/// A body that satisfies the form of `event_with_form`.
pub fn full_body(email: &str) -> Value {
    let mut body = registration_body(email, &[]);
    body["category"] = json!("business");
    body["answers"] = json!({
        "direction": "projects", "town": "Мончегорск", "transfer": true, "arrival": "2027-04-23",
        "mobile": "+7 (815) 365-00-00", "assistant": "help@example.org", "country": "RU",
        "guests": 2, "topics": ["a", "c"], "excursion": "museum", "notes": "Строка\nещё строка",
    });
    body
}

/// The members each body has wrong by Python's `jsonschema` (tests/support/validate_form.py),
/// named as the server names fields: `/answers/topics/0` is `answers.topics[0]`.
fn python_fields(schema: &Value, bodies: &[Value]) -> Vec<BTreeSet<String>> {
    use std::io::Write;
    let mut child = std::process::Command::new(crate::python::python())
        .arg(crate::python::support_dir().join("validate_form.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            json!({"schema": schema, "bodies": bodies})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let pointers: Vec<Vec<String>> = serde_json::from_slice(&output.stdout).unwrap();
    pointers
        .into_iter()
        .map(|body| body.iter().map(|p| field_of_pointer(p)).collect())
        .collect()
}

fn field_of_pointer(pointer: &str) -> String {
    let mut field = String::new();
    for segment in pointer.split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        if segment.parse::<usize>().is_ok() {
            field.push_str(&format!("[{segment}]"));
        } else {
            if !field.is_empty() {
                field.push('.');
            }
            field.push_str(&segment);
        }
    }
    field
}

/// The fields the server names in its answer to a body: none when it registers.
fn server_fields(answer: &Answer) -> BTreeSet<String> {
    match answer.status.as_u16() {
        201 => BTreeSet::new(),
        422 => answer.json()["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("{}", answer.text))
            .iter()
            .map(|e| e["field"].as_str().unwrap().to_owned())
            .collect(),
        _ => panic!("{}", answer.text),
    }
}

/// A body that satisfies the form of `event_with_form`, with every field a body may have.
fn valid_body(email: &str) -> Value {
    let mut body = full_body(email);
    body.as_object_mut().unwrap().remove("consent");
    body["consents"] = json!({"personal_data": true});
    body["phone"] = json!("+7 815 365-00-00");
    body["language"] = json!("ru");
    body
}

/// A body for the form of `event_with_form`: what it shows, the body, and the fields a
/// validator must find wrong (none: it is valid). Each is `valid_body` with one change, and
/// each invalid one breaks one rule.
struct Case {
    what: &'static str,
    body: Value,
    wrong: Vec<&'static str>,
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut case = |what: &'static str, change: &dyn Fn(&mut Value), wrong: &[&'static str]| {
        let mut body = valid_body(&format!("case{}@example.org", cases.len()));
        change(&mut body);
        cases.push(Case {
            what,
            body,
            wrong: wrong.to_vec(),
        });
    };
    let remove = |body: &mut Value, field: &str| {
        body.as_object_mut().unwrap().remove(field);
    };
    let remove_answer = |body: &mut Value, key: &str| {
        body["answers"].as_object_mut().unwrap().remove(key);
    };

    // Valid bodies.
    case("every question answered", &|_| {}, &[]);
    case(
        "only what is required, and no transfer",
        &|b| {
            b["answers"] =
                json!({"direction": "volunteering", "town": "Кандалакша", "transfer": false});
            for field in [
                "organisation",
                "position",
                "city",
                "phone",
                "session_ids",
                "language",
            ] {
                remove(b, field);
            }
        },
        &[],
    );
    case(
        "the earlier consent instead of consents",
        &|b| {
            remove(b, "consents");
            b["consent"] = json!(true);
        },
        &[],
    );
    case(
        "an internationalised address with spaces around it",
        &|b| b["email"] = json!(" вера@пример.рф "),
        &[],
    );
    case(
        "a name of 200 letters (400 bytes)",
        &|b| b["full_name"] = json!("Я".repeat(200)),
        &[],
    );
    case(
        "a leap day and phone numbers as people write them",
        &|b| {
            b["answers"]["arrival"] = json!("2028-02-29");
            b["answers"]["mobile"] = json!("8 (815) 365.00.00");
            b["phone"] = json!("(+7) 815 365-00-00");
        },
        &[],
    );
    case(
        "optional fields null",
        &|b| {
            for field in ["organisation", "position", "city", "phone", "language"] {
                b[field] = Value::Null;
            }
        },
        &[],
    );

    // The fixed fields.
    case("no name", &|b| remove(b, "full_name"), &["full_name"]);
    case(
        "a blank name",
        &|b| b["full_name"] = json!(" \u{a0} "),
        &["full_name"],
    );
    case(
        "a name with a control character",
        &|b| b["full_name"] = json!("Анна\u{7}"),
        &["full_name"],
    );
    case(
        "a name ending in a new line",
        &|b| b["full_name"] = json!("Анна\n"),
        &["full_name"],
    );
    case(
        "a name of 201 letters",
        &|b| b["full_name"] = json!("Я".repeat(201)),
        &["full_name"],
    );
    case(
        "a name that is a number",
        &|b| b["full_name"] = json!(42),
        &["full_name"],
    );
    case(
        "not an address",
        &|b| b["email"] = json!("nobody"),
        &["email"],
    );
    case(
        "an address without a dot in its domain",
        &|b| b["email"] = json!("anna@example"),
        &["email"],
    );
    case(
        "an address with a space in it",
        &|b| b["email"] = json!("an na@example.org"),
        &["email"],
    );
    case(
        "an address whose domain begins with a hyphen",
        &|b| b["email"] = json!("anna@-example.org"),
        &["email"],
    );
    case(
        "a phone number in words",
        &|b| b["phone"] = json!("call me"),
        &["phone"],
    );
    case(
        "a phone number of two digits",
        &|b| b["phone"] = json!("12"),
        &["phone"],
    );
    case(
        "a phone number ending in a new line",
        &|b| b["phone"] = json!("+7 815 365-00-00\n"),
        &["phone"],
    );
    case(
        "a city of two lines",
        &|b| b["city"] = json!("Мончегорск\nКировск"),
        &["city"],
    );
    case(
        "an organisation of 301 letters",
        &|b| b["organisation"] = json!("Я".repeat(301)),
        &["organisation"],
    );
    case(
        "a session id that is not one",
        &|b| b["session_ids"] = json!(["x"]),
        &["session_ids[0]"],
    );
    case(
        "a session id in braces",
        &|b| b["session_ids"] = json!(["{0196a1b2-0000-7000-8000-000000000000}"]),
        &["session_ids[0]"],
    );
    case(
        "an unknown category (and the question asked of some categories left out)",
        &|b| {
            b["category"] = json!("astronauts");
            remove_answer(b, "excursion");
        },
        &["category"],
    );
    case(
        "an unknown language",
        &|b| b["language"] = json!("de"),
        &["language"],
    );
    case(
        "an unknown field",
        &|b| b["nickname"] = json!("Аня"),
        &["nickname"],
    );

    // Consents.
    case(
        "the earlier consent refused next to consents",
        &|b| b["consent"] = json!(false),
        &["consent"],
    );
    case(
        "the required consent refused",
        &|b| b["consents"] = json!({"personal_data": false}),
        &["consents.personal_data"],
    );
    case(
        "the required consent left out",
        &|b| b["consents"] = json!({}),
        &["consents.personal_data"],
    );
    case(
        "an unknown consent",
        &|b| b["consents"]["tattoos"] = json!(true),
        &["consents.tattoos"],
    );
    case(
        "the version shown, written as a decimal",
        &|b| b["consents"] = json!({"personal_data": 1.0}),
        &[],
    );
    case(
        "the version shown, as a string",
        &|b| b["consents"] = json!({"personal_data": "1"}),
        &["consents.personal_data"],
    );
    case(
        "a version that is not a whole number",
        &|b| b["consents"] = json!({"personal_data": 1.5}),
        &["consents.personal_data"],
    );
    case(
        "no consent at all",
        &|b| remove(b, "consents"),
        &["consents"],
    );

    // Answers, question type by question type.
    case(
        "an unknown question",
        &|b| b["answers"]["unknown"] = json!(1),
        &["answers.unknown"],
    );
    case(
        "a required question unanswered",
        &|b| remove_answer(b, "direction"),
        &["answers.direction"],
    );
    case(
        "single choice: not an option",
        &|b| b["answers"]["direction"] = json!("sailing"),
        &["answers.direction"],
    );
    case(
        "text: too long",
        &|b| b["answers"]["town"] = json!("М".repeat(101)),
        &["answers.town"],
    );
    case(
        "text: empty",
        &|b| b["answers"]["town"] = json!(""),
        &["answers.town"],
    );
    case(
        "text: a number",
        &|b| b["answers"]["town"] = json!(5),
        &["answers.town"],
    );
    case(
        "yes/no: a string (and the question it shows left out)",
        &|b| {
            b["answers"]["transfer"] = json!("yes");
            remove_answer(b, "arrival");
        },
        &["answers.transfer"],
    );
    case(
        "condition: a hidden question answered",
        &|b| b["answers"]["transfer"] = json!(false),
        &["answers.arrival"],
    );
    case(
        "condition: a question required when shown, shown and unanswered",
        &|b| remove_answer(b, "arrival"),
        &["answers.arrival"],
    );
    case(
        "date: not YYYY-MM-DD",
        &|b| b["answers"]["arrival"] = json!("23.04.2027"),
        &["answers.arrival"],
    );
    case(
        "date: a day that does not exist",
        &|b| b["answers"]["arrival"] = json!("2027-02-31"),
        &["answers.arrival"],
    );
    case(
        "date: 29 February of a common year",
        &|b| b["answers"]["arrival"] = json!("2027-02-29"),
        &["answers.arrival"],
    );
    case(
        "date: the year 0",
        &|b| b["answers"]["arrival"] = json!("0000-04-23"),
        &["answers.arrival"],
    );
    case(
        "phone: words",
        &|b| b["answers"]["mobile"] = json!("call me"),
        &["answers.mobile"],
    );
    case(
        "phone: ending in a new line",
        &|b| b["answers"]["mobile"] = json!("+7 815 365-00-00\n"),
        &["answers.mobile"],
    );
    case(
        "email: not an address",
        &|b| b["answers"]["assistant"] = json!("nobody"),
        &["answers.assistant"],
    );
    case(
        "email: ending in a new line",
        &|b| b["answers"]["assistant"] = json!("help@example.org\n"),
        &["answers.assistant"],
    );
    case(
        "country: not a code",
        &|b| b["answers"]["country"] = json!("XX"),
        &["answers.country"],
    );
    case(
        "number: above the maximum",
        &|b| b["answers"]["guests"] = json!(6),
        &["answers.guests"],
    );
    case(
        "number: a string",
        &|b| b["answers"]["guests"] = json!("2"),
        &["answers.guests"],
    );
    case(
        "multiple choice: too many",
        &|b| b["answers"]["topics"] = json!(["a", "b", "c"]),
        &["answers.topics"],
    );
    case(
        "multiple choice: one twice",
        &|b| b["answers"]["topics"] = json!(["a", "a"]),
        &["answers.topics"],
    );
    case(
        "multiple choice: none",
        &|b| b["answers"]["topics"] = json!([]),
        &["answers.topics"],
    );
    case(
        "multiple choice: not an option",
        &|b| b["answers"]["topics"] = json!(["a", "z"]),
        &["answers.topics[1]"],
    );
    case(
        "a category the question is not asked of",
        &|b| b["category"] = json!("nonprofit"),
        &["answers.excursion"],
    );
    case(
        "single choice with places: not an option",
        &|b| b["answers"]["excursion"] = json!("zoo"),
        &["answers.excursion"],
    );
    case(
        "multiline: too long",
        &|b| b["answers"]["notes"] = json!("ж".repeat(5001)),
        &["answers.notes"],
    );
    case(
        "multiline: a list",
        &|b| b["answers"]["notes"] = json!(["Строка"]),
        &["answers.notes"],
    );
    case(
        "multiline: lines, tabs and carriage returns",
        &|b| b["answers"]["notes"] = json!("Первая строка\r\n\tвторая"),
        &[],
    );
    case(
        "multiline: a NUL character",
        &|b| b["answers"]["notes"] = json!("Строка\u{0}"),
        &["answers.notes"],
    );
    case(
        "multiline: a bell",
        &|b| b["answers"]["notes"] = json!("Строка\u{7}"),
        &["answers.notes"],
    );
    case(
        "multiline: only white space",
        &|b| b["answers"]["notes"] = json!(" \n\t "),
        &["answers.notes"],
    );
    case(
        "text: a NUL character",
        &|b| b["answers"]["town"] = json!("Мур\u{0}манск"),
        &["answers.town"],
    );
    case(
        "text: two lines",
        &|b| b["answers"]["town"] = json!("Мур\nманск"),
        &["answers.town"],
    );
    case(
        "text: only white space",
        &|b| b["answers"]["town"] = json!("  \u{a0}"),
        &["answers.town"],
    );
    case(
        "a name that shows nothing",
        &|b| b["full_name"] = json!("\u{200b}\u{2060}"),
        &["full_name"],
    );
    case(
        "text: only a zero-width space",
        &|b| b["answers"]["town"] = json!("\u{200b}"),
        &["answers.town"],
    );
    case(
        "text: white space around a town",
        &|b| b["answers"]["town"] = json!(" Кировск "),
        &[],
    );
    cases
}

#[tokio::test]
async fn a_form_with_every_question_type_takes_valid_answers_and_shows_them() {
    let app = spawn_app().await;
    let token = app.admin().await.access;
    event_with_form(&app, &token, 30).await;

    let form = app.get("/api/v1/events/mmdn/registration-form", None).await;
    let registered = app
        .post(
            "/api/v1/events/mmdn/registrations",
            None,
            &full_body("anna@example.org"),
        )
        .await;
    let mut without_transfer = full_body("boris@example.org");
    without_transfer["answers"]["transfer"] = json!(false);
    without_transfer["answers"]
        .as_object_mut()
        .unwrap()
        .remove("arrival");
    let second = app
        .post("/api/v1/events/mmdn/registrations", None, &without_transfer)
        .await;

    form.assert_status(200);
    let form = form.json();
    let keys: Vec<&str> = form["questions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), 11);
    assert_eq!(
        form["schema"]["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_eq!(form["consents"][0]["key"], "personal_data");
    assert_eq!(form["consents"][0]["version"], 1);
    registered.assert_status(201);
    second.assert_status(201);
    let view = app
        .get(
            &format!("/api/v1/registrations/{}", id_of(&registered.json())),
            Some(&token),
        )
        .await;
    assert_eq!(view.json()["answers"], full_body("x")["answers"]);
    let plant = app
        .get("/api/v1/events/mmdn/questions/excursion", None)
        .await;
    assert_eq!(plant.json()["options"][0]["places_left"], 30);
}

#[tokio::test]
async fn each_broken_rule_is_a_422_naming_the_field_and_nothing_is_stored() {
    let app = spawn_app().await;
    let token = app.admin().await.access;
    event_with_form(&app, &token, 30).await;

    // What the schema cannot say, the server checks beyond it: an address's domain IDNA
    // refuses, the registration's own and an email question's answer alike.
    let mut beyond = Vec::new();
    for (field, address) in [
        ("email", "anna@xn--zz.org"),
        ("answers.assistant", "a@xn--zz.org"),
    ] {
        let mut body = valid_body("beyond@example.org");
        if field == "email" {
            body["email"] = json!(address);
        } else {
            body["answers"]["assistant"] = json!(address);
        }
        beyond.push(Case {
            what: "a domain IDNA refuses",
            body,
            wrong: vec![field],
        });
    }
    for case in cases()
        .into_iter()
        .filter(|c| !c.wrong.is_empty())
        .chain(beyond)
    {
        let answer = app
            .post("/api/v1/events/mmdn/registrations", None, &case.body)
            .await;
        assert_eq!(
            answer.status.as_u16(),
            422,
            "{}: {}",
            case.what,
            answer.text
        );
        let fields = server_fields(&answer);
        for field in &case.wrong {
            assert!(fields.contains(*field), "{}: {}", case.what, answer.text);
        }
        assert!(
            !answer.text.contains("23.04.2027")
                && !answer.text.contains("sailing")
                && !answer.text.contains("call me"),
            "{}: {}",
            case.what,
            answer.text
        );
    }
    assert_eq!(count(&app, "SELECT count(*) FROM registrations").await, 0);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM form_seats WHERE registration_id IS NOT NULL"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn an_independent_validator_agrees_with_the_server_on_valid_and_invalid_bodies() {
    let app = spawn_app().await;
    let token = app.admin().await.access;
    event_with_form(&app, &token, 30).await;
    let schema = app
        .get("/api/v1/events/mmdn/registration-form", None)
        .await
        .json()["schema"]
        .clone();
    let cases = cases();
    let mut bodies: Vec<Value> = cases.iter().map(|c| c.body.clone()).collect();
    // What the server checks beyond the schema, and nothing else: an address's domain by
    // IDNA, and a session listed twice with its id in capital and in small letters.
    let mut bad_domain = valid_body("domain@example.org");
    bad_domain["email"] = json!("anna@xn--zz.org");
    let mut repeated = valid_body("repeated@example.org");
    repeated["session_ids"] = json!([
        "0196a1b2-0000-7000-8000-00000000000a",
        "0196A1B2-0000-7000-8000-00000000000A"
    ]);
    bodies.extend([bad_domain, repeated]);

    let mut python = python_fields(&schema, &bodies);
    let mut server = Vec::new();
    for body in &bodies {
        let answer = app
            .post("/api/v1/events/mmdn/registrations", None, body)
            .await;
        server.push(server_fields(&answer));
    }
    let beyond: Vec<(BTreeSet<String>, BTreeSet<String>)> = python
        .drain(cases.len()..)
        .zip(server.drain(cases.len()..))
        .collect();

    let disagreements: Vec<String> = cases
        .iter()
        .zip(python.iter().zip(&server))
        .filter(|(case, (python, server))| {
            let wrong: BTreeSet<String> = case.wrong.iter().map(|f| (*f).to_owned()).collect();
            **python != wrong || **server != wrong
        })
        .map(|(case, (python, server))| {
            format!(
                "{}: expected {:?}, Python found {python:?}, the server {server:?}",
                case.what, case.wrong
            )
        })
        .collect();
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
    let field = |f: &str| BTreeSet::from([f.to_owned()]);
    assert_eq!(
        beyond,
        [
            (BTreeSet::new(), field("email")),
            (BTreeSet::new(), field("session_ids[1]"))
        ]
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM registrations").await,
        cases.iter().filter(|c| c.wrong.is_empty()).count() as i64
    );
}

#[tokio::test]
async fn a_question_added_without_a_position_goes_last() {
    let app = spawn_app().await;
    let token = app.admin().await.access;
    app.event(&token, "mmdn", json!({})).await;
    let add = |key: &'static str, position: Option<i64>| {
        let mut question = json!({"key": key, "type": "yes_no",
                                  "label": {"ru": key, "en": key}});
        if let Some(position) = position {
            question["position"] = json!(position);
        }
        question
    };

    let mut positions = Vec::new();
    for question in [
        add("transfer", None),
        add("arrival", None),
        add("intro", Some(-10)),
        add("budget", None),
    ] {
        let answer = app
            .post("/api/v1/events/mmdn/questions", Some(&token), &question)
            .await;
        answer.assert_status(201);
        positions.push(answer.json()["position"].clone());
    }
    let form = app
        .get("/api/v1/events/mmdn/registration-form", None)
        .await
        .json();

    assert_eq!(positions, [json!(0), json!(1), json!(-10), json!(2)]);
    let keys: Vec<&str> = form["questions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["intro", "transfer", "arrival", "budget"]);
}

#[tokio::test]
async fn a_full_option_is_a_409_naming_the_answer_and_the_option() {
    let app = spawn_app().await;
    let token = app.admin().await.access;
    event_with_form(&app, &token, 1).await;
    let mut first = full_body("first@example.org");
    first["answers"]["excursion"] = json!("plant");
    app.post("/api/v1/events/mmdn/registrations", None, &first)
        .await
        .assert_status(201);

    let mut second = full_body("second@example.org");
    second["answers"]["excursion"] = json!("plant");
    let refused = app
        .post("/api/v1/events/mmdn/registrations", None, &second)
        .await;

    let problem = refused.assert_problem(409, "option_full");
    assert_eq!(problem["field"], "answers.excursion");
    assert_eq!(problem["option"], "plant");
    assert_eq!(count(&app, "SELECT count(*) FROM registrations").await, 1);
}

#[tokio::test]
async fn questions_with_answers_refuse_changes_that_would_orphan_them() {
    let app = spawn_app().await;
    let token = app.admin().await.access;
    event_with_form(&app, &token, 30).await;
    let mut body = full_body("anna@example.org");
    body["answers"]["excursion"] = json!("plant");
    app.post("/api/v1/events/mmdn/registrations", None, &body)
        .await
        .assert_status(201);
    let path = "/api/v1/events/mmdn/questions";

    let new_type = app
        .patch(
            &format!("{path}/town"),
            Some(&token),
            &json!({"type": "multiline"}),
        )
        .await;
    let new_key = app
        .patch(
            &format!("{path}/town"),
            Some(&token),
            &json!({"key": "city"}),
        )
        .await;
    let option_removed = app
        .patch(
            &format!("{path}/excursion"),
            Some(&token),
            &json!({"options": [{"key": "museum", "label": {"ru": "Музей", "en": "Museum"}}]}),
        )
        .await;
    let deleted = app.delete(&format!("{path}/town"), Some(&token)).await;
    let relabelled = app
        .patch(
            &format!("{path}/town"),
            Some(&token),
            &json!({"label": {"ru": "Ваш город", "en": "Your town"}, "max_length": 50}),
        )
        .await;
    app.post(
        path,
        Some(&token),
        &json!({"key": "late", "type": "text", "label": {"ru": "Поздний", "en": "Late"}}),
    )
    .await
    .assert_status(201);
    let unanswered = app.delete(&format!("{path}/late"), Some(&token)).await;
    let bad_condition = app
        .post(
            path,
            Some(&token),
            &json!({"key": "hotel", "type": "yes_no", "label": {"ru": "Отель", "en": "Hotel"},
                    "shown_when": {"question": "town", "equals": true}}),
        )
        .await;

    new_type.assert_problem(409, "question_in_use");
    new_key.assert_problem(409, "question_in_use");
    assert_eq!(
        option_removed.assert_problem(409, "option_in_use")["option"],
        "plant"
    );
    deleted.assert_problem(409, "question_in_use");
    relabelled.assert_status(200);
    unanswered.assert_status(204);
    assert_eq!(
        field_of(&bad_condition.assert_problem(422, "validation_failed")),
        "shown_when.equals"
    );
}

#[tokio::test]
async fn conditions_may_not_go_round_in_a_circle() {
    let app = spawn_app().await;
    let token = app.admin().await.access;
    app.event(&token, "mmdn", json!({})).await;
    let path = "/api/v1/events/mmdn/questions";
    let yes_no = |key: &str, shown_when: Value| {
        let mut body = json!({"key": key, "type": "yes_no",
                              "label": {"ru": "Вопрос", "en": "Question"}});
        if !shown_when.is_null() {
            body["shown_when"] = shown_when;
        }
        body
    };
    for (key, after) in [
        ("hotel", None),
        ("parking", Some("hotel")),
        ("car", Some("parking")),
    ] {
        let condition = after.map_or(Value::Null, |q| json!({"question": q, "equals": true}));
        app.post(path, Some(&token), &yes_no(key, condition))
            .await
            .assert_status(201);
    }

    // hotel would be shown after car, which is shown after parking, shown after hotel.
    for over in ["parking", "car"] {
        let answer = app
            .patch(
                &format!("{path}/hotel"),
                Some(&token),
                &json!({"shown_when": {"question": over, "equals": true}}),
            )
            .await;
        assert_eq!(
            field_of(&answer.assert_problem(422, "validation_failed")),
            "shown_when.question"
        );
    }
    app.patch(
        &format!("{path}/car"),
        Some(&token),
        &json!({"shown_when": {"question": "car", "equals": true}}),
    )
    .await
    .assert_problem(422, "validation_failed");
    // A chain is fine.
    app.post(
        path,
        Some(&token),
        &yes_no("valet", json!({"question": "car", "equals": false})),
    )
    .await
    .assert_status(201);
    let form = app
        .get("/api/v1/events/mmdn/registration-form", None)
        .await
        .json();
    let hotel = form["questions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["key"] == "hotel")
        .unwrap()
        .clone();
    assert_eq!(hotel["shown_when"], Value::Null);
}

#[tokio::test]
async fn simultaneous_registrations_never_oversell_an_option() {
    let app = parallel_app().await;
    let token = app.admin().await.access;
    event_with_form(&app, &token, 30).await;

    let answers = join_all((0..60).map(|i| {
        let mut body = full_body(&format!("p{i}@example.org"));
        body["answers"]["excursion"] = json!("plant");
        let app = &app;
        async move {
            app.post("/api/v1/events/mmdn/registrations", None, &body)
                .await
        }
    }))
    .await;

    let ok = answers.iter().filter(|a| a.status.as_u16() == 201).count();
    assert_eq!(ok, 30);
    for refused in answers.iter().filter(|a| a.status.as_u16() != 201) {
        assert_eq!(
            refused.assert_problem(409, "option_full")["option"],
            "plant"
        );
    }
    assert_eq!(count(&app, "SELECT count(*) FROM registrations").await, 30);
    let held = count(
        &app,
        "SELECT count(*) FROM form_seats s JOIN form_options o ON o.id = s.pool \
         WHERE o.key = 'plant' AND s.registration_id IS NOT NULL",
    )
    .await;
    assert_eq!(held, 30);
    let plant = app
        .get("/api/v1/events/mmdn/questions/excursion", None)
        .await;
    assert_eq!(plant.json()["options"][0]["places_left"], 0);
    assert_eq!(plant.json()["options"][0]["full"], true);
}

#[tokio::test]
async fn a_question_added_through_one_instance_is_asked_at_once_by_the_others() {
    // Forms that would otherwise be kept for ten minutes.
    let long_cache = |config: &mut registrar::config::Config| config.public_cache_ms = 600_000;
    let one = crate::helpers::spawn_app_with(long_cache).await;
    let other = crate::helpers::another_instance_with(&one, long_cache).await;
    let token = one.admin().await.access;
    one.event(&token, "mmdn", json!({})).await;
    // Both instances read, and keep, the form as it is: no questions.
    for (i, app) in [&one, &other].into_iter().enumerate() {
        register_in(app, "mmdn", format!("before{i}@example.org"), "business")
            .await
            .assert_status(201);
    }

    one.post(
        "/api/v1/events/mmdn/questions",
        Some(&token),
        &json!({"key": "town", "type": "text", "required": true,
                "label": {"ru": "Город", "en": "Town"}}),
    )
    .await
    .assert_status(201);

    // The instance that made the change asks the question at once; the other as soon as it
    // hears of it.
    // (the body has no answers at all, and one is required now)
    let here = register_in(&one, "mmdn", "here@example.org", "business").await;
    assert_eq!(
        field_of(&here.assert_problem(422, "validation_failed")),
        "answers"
    );
    let changed = std::time::Instant::now();
    for attempt in 0.. {
        let there = register_in(
            &other,
            "mmdn",
            format!("there{attempt}@example.org"),
            "business",
        )
        .await;
        if there.status.as_u16() == 422 {
            assert_eq!(field_of(&there.json()), "answers");
            break;
        }
        there.assert_status(201);
        assert!(
            changed.elapsed() < std::time::Duration::from_secs(10),
            "the other instance still checks against its old form"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn cancellations_racing_registrations_give_a_category_s_places_to_its_queue_in_order() {
    let app = parallel_app().await;
    let token = app.admin().await.access;
    students_with_waitlist(&app, &token, 20).await;
    // Twenty placed, then twenty waiting in this order.
    let mut first = Vec::new();
    for i in 0..40 {
        let answer = register_in(&app, "mmdn", format!("s{i}@example.org"), "students").await;
        answer.assert_status(201);
        let body = answer.json();
        let expected = if i < 20 { json!(null) } else { json!(i - 19) };
        assert_eq!(body["category_waitlist_position"], expected);
        first.push((
            id_of(&body),
            body["manage_token"].as_str().unwrap().to_owned(),
        ));
    }
    let (placed, queue) = first.split_at(20);

    // Ten placed students leave, and so do every other one of the first ten waiting (some
    // may be given a place just before), while thirty more register.
    let leaving: Vec<&(String, String)> = placed[..10]
        .iter()
        .chain(queue[..10].iter().step_by(2))
        .collect();
    let cancellations = join_all(leaving.iter().map(|(id, manage)| {
        app.call(Method::DELETE, &format!("/api/v1/registrations/{id}"))
            .bearer(manage)
            .send()
    }));
    let arrivals = join_all(
        (0..30).map(|i| register_in(&app, "mmdn", format!("n{i}@example.org"), "students")),
    );
    let (cancellations, arrivals) = futures_util::join!(cancellations, arrivals);
    for answer in &cancellations {
        answer.assert_status(200);
    }
    let arrived: Vec<String> = arrivals
        .iter()
        .map(|answer| {
            answer.assert_status(201);
            let body = answer.json();
            assert!(
                !body["category_waitlist_position"].is_null(),
                "nobody gets in ahead of the queue: {body}"
            );
            id_of(&body)
        })
        .collect();

    let client = app.db.client().await;
    let rows = |sql: &'static str| column::<String>(&client, sql, &[]);
    let mut holders = rows(
        "SELECT s.registration_id::text FROM form_seats s JOIN event_categories c ON c.id = s.pool \
         WHERE c.code = 'students' AND s.registration_id IS NOT NULL",
    )
    .await;
    holders.sort();
    // The ten who stayed, and the first ten still waiting, in the queue's order.
    let stayed: Vec<&String> = queue
        .iter()
        .skip(1)
        .step_by(2)
        .take(5)
        .map(|(id, _)| id)
        .collect();
    let mut expected: Vec<String> = placed[10..]
        .iter()
        .map(|(id, _)| id)
        .chain(stayed.iter().copied())
        .chain(queue[10..15].iter().map(|(id, _)| id))
        .cloned()
        .collect();
    expected.sort();
    assert_eq!(holders, expected);

    // Promoted in the queue's order: those who left may have been promoted before leaving.
    let promoted = rows(
        "SELECT registration_id::text FROM changes WHERE kind = 'registration.promoted' ORDER BY id",
    )
    .await;
    let ticket = |id: &String| {
        queue
            .iter()
            .position(|(q, _)| q == id)
            .expect("from the queue")
    };
    let tickets: Vec<usize> = promoted.iter().map(ticket).collect();
    assert!(tickets.is_sorted(), "{tickets:?}");
    for id in expected
        .iter()
        .filter(|id| queue.iter().any(|(q, _)| q == *id))
    {
        assert!(promoted.contains(id), "{id} was given a place unannounced");
    }

    // Those still waiting: the last five of the first queue, then the thirty, in the order
    // they joined it, at positions 1 to 35.
    let mut waiting: Vec<(i64, String)> = Vec::new();
    for id in queue[15..].iter().map(|(id, _)| id).chain(&arrived) {
        let now = app
            .get(&format!("/api/v1/registrations/{id}"), Some(&token))
            .await
            .json();
        waiting.push((
            now["category_waitlist_position"].as_i64().unwrap(),
            id.clone(),
        ));
    }
    waiting.sort();
    let positions: Vec<i64> = waiting.iter().map(|(p, _)| *p).collect();
    assert_eq!(positions, (1..=35).collect::<Vec<i64>>());
    let in_line: Vec<String> = waiting.into_iter().map(|(_, id)| id).collect();
    assert_eq!(
        in_line,
        rows(
            "SELECT id::text FROM registrations WHERE category_waitlist_order IS NOT NULL \
             ORDER BY category_waitlist_order"
        )
        .await
    );
    let first_five: Vec<&String> = queue[15..].iter().map(|(id, _)| id).collect();
    assert_eq!(in_line[..5].iter().collect::<Vec<_>>(), first_five);
    let category = app
        .get("/api/v1/events/mmdn/categories/students", None)
        .await;
    assert_eq!(category.json()["waiting"], 35);
    assert_eq!(category.json()["places_left"], 0);

    // No cancellation waited for another in a cycle (a retry would have hidden it).
    assert_eq!(deadlocks(&app.db).await, 0);
}
