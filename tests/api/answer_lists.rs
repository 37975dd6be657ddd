//! Answers where organisers read registrations: the list filtered by answers of every type,
//! the attendee feed, the CSV and XLSX exports (a column per question, values as people read
//! them) and the per-question counts of `/stats`.

use std::io::Cursor;

use calamine::{Data, DataType, Reader, Xlsx};
use serde_json::{Value, json};

use crate::badges::everyone;
use crate::forms::{event_with_form, full_body};
use crate::helpers::{TestApp, device_key, spawn_app};
use crate::registrations::id_of;

/// The questions of `event_with_form` in the form's order (the order they were added in,
/// none having a position), as the export heads their columns in the event's language
/// (Russian).
const HEADERS: [&str; 11] = [
    "Направление работы",
    "Город",
    "Нужен трансфер из Мурманска?",
    "Дата приезда",
    "Телефон",
    "Почта помощника",
    "Страна",
    "Гости",
    "Темы",
    "Экскурсия",
    "Заметки",
];

async fn register(app: &TestApp, body: &Value) -> String {
    let answer = app
        .post("/api/v1/events/mmdn/registrations", None, body)
        .await;
    answer.assert_status(201);
    id_of(&answer.json())
}

/// Anna (projects, transfer, topics А and В, two guests), Boris (volunteering, no transfer,
/// topic Б, no guests, a town that looks like a formula) and Vera (cancelled); their ids.
async fn three_registered(app: &TestApp) -> (String, String, String) {
    let anna = register(app, &full_body("anna@example.org")).await;
    let mut boris = full_body("boris@example.org");
    let answers = boris["answers"].as_object_mut().unwrap();
    answers.remove("arrival");
    answers.remove("notes");
    answers.insert("transfer".into(), json!(false));
    answers.insert("direction".into(), json!("volunteering"));
    answers.insert("topics".into(), json!(["b"]));
    answers.insert("guests".into(), json!(0));
    answers.insert("town".into(), json!("=HYPERLINK(\"x\")"));
    answers.insert("excursion".into(), json!("plant"));
    answers.insert("country".into(), json!("FI"));
    let boris = register(app, &boris).await;
    let mut vera = full_body("vera@example.org");
    vera["answers"]["excursion"] = json!("plant");
    let vera = register(app, &vera).await;
    (anna, boris, vera)
}

async fn cancel(app: &TestApp, token: &str, id: &str) {
    let answer = app
        .delete(&format!("/api/v1/registrations/{id}"), Some(token))
        .await;
    assert!(answer.status.is_success(), "{}", answer.text);
}

fn encoded(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// The ids the organisers' list answers for `query`.
async fn listed(app: &TestApp, token: &str, query: &str) -> Vec<String> {
    let answer = app
        .get(
            &format!("/api/v1/events/mmdn/registrations?{query}"),
            Some(token),
        )
        .await;
    answer.assert_status(200);
    let mut ids: Vec<String> = answer.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect();
    ids.sort();
    ids
}

fn sorted(mut ids: Vec<&String>) -> Vec<String> {
    ids.sort();
    ids.into_iter().cloned().collect()
}

fn fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| e["field"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn the_list_filters_by_an_answer_of_every_type_and_all_filters_must_hold() {
    let app = spawn_app().await;
    let token = app.admin().await.access;
    event_with_form(&app, &token, 30).await;
    let (anna, boris, vera) = three_registered(&app).await;

    let cases: Vec<(String, Vec<&String>)> = vec![
        ("answer.direction=projects".into(), vec![&anna, &vera]),
        ("answer.direction=volunteering".into(), vec![&boris]),
        ("answer.topics=c".into(), vec![&anna, &vera]),
        ("answer.topics=b".into(), vec![&boris]),
        ("answer.topics=a&answer.topics=c".into(), vec![&anna, &vera]),
        ("answer.topics=a&answer.topics=b".into(), vec![]),
        ("answer.transfer=false".into(), vec![&boris]),
        ("answer.transfer=true".into(), vec![&anna, &vera]),
        ("answer.guests=2".into(), vec![&anna, &vera]),
        ("answer.guests=2.0".into(), vec![&anna, &vera]),
        ("answer.guests=0".into(), vec![&boris]),
        (
            format!("answer.town={}", encoded("Мончегорск")),
            vec![&anna, &vera],
        ),
        (
            format!("answer.town={}", encoded("=HYPERLINK(\"x\")")),
            vec![&boris],
        ),
        ("answer.town=monchegorsk".into(), vec![]),
        ("answer.arrival=2027-04-23".into(), vec![&anna, &vera]),
        ("answer.country=FI".into(), vec![&boris]),
        (
            format!("answer.mobile={}", encoded("+7 (815) 365-00-00")),
            vec![&anna, &boris, &vera],
        ),
        ("answer.excursion=plant".into(), vec![&boris, &vera]),
        (
            "answer.excursion=plant&answer.transfer=true".into(),
            vec![&vera],
        ),
        (
            "answer.excursion=plant&answer.transfer=true&status=active&category=business".into(),
            vec![&vera],
        ),
    ];
    for (query, expected) in cases {
        assert_eq!(
            listed(&app, &token, &query).await,
            sorted(expected),
            "{query}"
        );
    }
}

#[tokio::test]
async fn an_unknown_question_or_a_value_it_cannot_have_is_a_422_naming_the_filter() {
    let app = spawn_app().await;
    let token = app.admin().await.access;
    event_with_form(&app, &token, 30).await;
    register(&app, &full_body("anna@example.org")).await;

    for (query, field) in [
        ("answer.nope=1", "answer.nope"),
        ("answer.direction=sailing", "answer.direction"),
        ("answer.topics=z", "answer.topics"),
        ("answer.transfer=yes", "answer.transfer"),
        ("answer.guests=many", "answer.guests"),
        ("answer.guests=6", "answer.guests"),
        ("answer.country=XX", "answer.country"),
        ("answer.arrival=23.04.2027", "answer.arrival"),
        ("answer.town=", "answer.town"),
    ] {
        let answer = app
            .get(
                &format!("/api/v1/events/mmdn/registrations?{query}"),
                Some(&token),
            )
            .await;
        let problem = answer.assert_problem(422, "validation_failed");
        assert_eq!(fields(&problem), [field], "{query}");
        assert!(
            !answer.text.contains("sailing"),
            "the value is not repeated"
        );
    }
    let both = app
        .get(
            "/api/v1/events/mmdn/registrations?answer.nope=1&answer.guests=many&category=nope",
            Some(&token),
        )
        .await;
    let mut named = fields(&both.assert_problem(422, "validation_failed"));
    named.sort();
    assert_eq!(named, ["answer.guests", "answer.nope", "category"]);
}

#[tokio::test]
async fn an_unknown_category_in_the_list_is_a_422_naming_the_category() {
    let app = spawn_app().await;
    let token = app.admin().await.access;
    event_with_form(&app, &token, 30).await;
    let anna = register(&app, &full_body("anna@example.org")).await;

    let unknown = app
        .get(
            "/api/v1/events/mmdn/registrations?category=sailors",
            Some(&token),
        )
        .await;

    assert_eq!(
        fields(&unknown.assert_problem(422, "validation_failed")),
        ["category"]
    );
    assert_eq!(listed(&app, &token, "category=business").await, [anna]);
    assert!(listed(&app, &token, "category=media").await.is_empty());
}

/// Adds a personal question (a passport number) to the form of `event_with_form`, last.
async fn with_personal_question(app: &TestApp, token: &str) {
    app.post(
        "/api/v1/events/mmdn/questions",
        Some(token),
        &json!({"key": "passport", "type": "text", "personal": true,
                "label": {"ru": "Паспорт", "en": "Passport"}}),
    )
    .await
    .assert_status(201);
}

#[tokio::test]
async fn the_feed_carries_each_attendee_s_answers_and_devices_do_not_get_personal_ones() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    event_with_form(&app, &admin.access, 30).await;
    with_personal_question(&app, &admin.access).await;
    let mut body = full_body("anna@example.org");
    body["answers"]["passport"] = json!("4710 123456");
    let anna = register(&app, &body).await;
    let key = device_key(&app, &admin.access, "mmdn", &["attendees:read"]).await;

    let as_organiser = everyone(&app, "mmdn", &admin.access, 1).await;
    let as_device = everyone(&app, "mmdn", &key, 1).await;

    let item = &as_organiser[0];
    assert_eq!(item["registration_id"], anna.as_str());
    let view = app
        .get(
            &format!("/api/v1/registrations/{anna}"),
            Some(&admin.access),
        )
        .await
        .json();
    assert_eq!(item["answers"], view["answers"]);
    assert_eq!(item["answers"], body["answers"]);
    // Personal: the question marked so, and the contacts (the assistant's email, the mobile).
    let mut impersonal = body["answers"].clone();
    for key in ["passport", "assistant", "mobile"] {
        impersonal.as_object_mut().unwrap().remove(key);
    }
    assert_eq!(as_device[0]["answers"], impersonal);
    assert!(!as_device[0].to_string().contains("4710"));
    assert!(!as_device[0].to_string().contains("help@example.org"));
}

/// The CSV's rows as cells (every cell is quoted; no cell here holds a quote or a comma
/// except where the test reads it whole).
fn csv_rows(text: &str) -> Vec<Vec<String>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(text.as_bytes());
    reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

fn at<'a>(rows: &'a [Vec<String>], column: &str, value: &str) -> &'a [String] {
    let col = rows[0].iter().position(|h| h == column).unwrap();
    rows.iter()
        .find(|r| r[col] == value)
        .unwrap_or_else(|| panic!("no row with {value}"))
}

fn answers_of(rows: &[Vec<String>], row: &[String]) -> Vec<String> {
    let first = rows[0].len() - HEADERS.len();
    row[first..].to_vec()
}

#[tokio::test]
async fn the_csv_has_a_column_per_question_in_order_with_answers_as_people_read_them() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    event_with_form(&app, &admin.access, 30).await;
    let (_, _, vera) = three_registered(&app).await;
    cancel(&app, &admin.access, &vera).await;

    let answer = app
        .get("/api/v1/events/mmdn/attendees.csv", Some(&admin.access))
        .await;

    answer.assert_status(200);
    let rows = csv_rows(&answer.text);
    assert_eq!(rows.len(), 3, "the cancelled registration is not exported");
    let header = &rows[0];
    let fixed = header.len() - HEADERS.len();
    assert_eq!(
        header[fixed - 1],
        "registered_at",
        "after the fixed columns"
    );
    assert_eq!(header[fixed..], HEADERS);
    let anna = at(&rows, "email", "anna@example.org");
    assert_eq!(
        answers_of(&rows, anna),
        [
            "Проекты",
            "Мончегорск",
            "Да",
            "2027-04-23",
            "'+7 (815) 365-00-00",
            "help@example.org",
            "RU",
            "2",
            "А; В",
            "В музей",
            "Строка\nещё строка",
        ]
    );
    let boris = at(&rows, "email", "boris@example.org");
    assert_eq!(
        answers_of(&rows, boris),
        [
            "Волонтёрство",
            "'=HYPERLINK(\"x\")",
            "Нет",
            "",
            "'+7 (815) 365-00-00",
            "help@example.org",
            "FI",
            "0",
            "Б",
            "На комбинат",
            "",
        ]
    );
}

#[tokio::test]
async fn an_event_in_english_heads_and_fills_the_answer_columns_in_english() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    event_with_form(&app, &admin.access, 30).await;
    app.patch(
        "/api/v1/events/mmdn",
        Some(&admin.access),
        &json!({"default_language": "en"}),
    )
    .await
    .assert_status(200);
    register(&app, &full_body("anna@example.org")).await;

    let answer = app
        .get("/api/v1/events/mmdn/attendees.csv", Some(&admin.access))
        .await;

    let rows = csv_rows(&answer.text);
    let fixed = rows[0].len() - HEADERS.len();
    assert_eq!(rows[0][fixed], "Direction of work");
    assert_eq!(rows[0][fixed + 2], "Transfer from Murmansk?");
    let anna = at(&rows, "email", "anna@example.org");
    let answers = answers_of(&rows, anna);
    assert_eq!(
        (
            answers[0].as_str(),
            answers[8].as_str(),
            answers[2].as_str()
        ),
        ("Projects", "A; C", "Yes")
    );
}

#[tokio::test]
async fn devices_get_no_column_of_a_personal_question() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    event_with_form(&app, &admin.access, 30).await;
    with_personal_question(&app, &admin.access).await;
    let mut body = full_body("anna@example.org");
    body["answers"]["passport"] = json!("4710 123456");
    register(&app, &body).await;
    let key = device_key(&app, &admin.access, "mmdn", &["attendees:read"]).await;

    let organiser = app
        .get("/api/v1/events/mmdn/attendees.csv", Some(&admin.access))
        .await;
    let device = app
        .get("/api/v1/events/mmdn/attendees.csv", Some(&key))
        .await;
    let workbook = app
        .get("/api/v1/events/mmdn/attendees.xlsx", Some(&key))
        .await;

    let header = &csv_rows(&organiser.text)[0];
    assert_eq!(header.last().map(String::as_str), Some("Паспорт"));
    assert!(organiser.text.contains("4710 123456"));
    device.assert_status(200);
    assert!(!device.text.contains("Паспорт"));
    assert!(!device.text.contains("4710"));
    // Less the email and phone, the passport, and the contact questions (email, phone).
    assert_eq!(csv_rows(&device.text)[0].len(), header.len() - 5);
    workbook.assert_status(200);
    let rows = sheet(&workbook.bytes);
    assert_eq!(rows[0].len(), header.len() - 5);
    assert!(!rows[0].contains(&Data::String("Паспорт".to_owned())));
}

fn sheet(bytes: &[u8]) -> Vec<Vec<Data>> {
    let mut workbook: Xlsx<_> = Xlsx::new(Cursor::new(bytes.to_vec())).expect("an XLSX file");
    let range = workbook.worksheet_range("Attendees").unwrap();
    range.rows().map(<[Data]>::to_vec).collect()
}

#[tokio::test]
async fn the_workbook_has_the_csv_s_answer_columns_with_numbers_and_dates_as_such() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    event_with_form(&app, &admin.access, 30).await;
    three_registered(&app).await;

    let answer = app
        .get("/api/v1/events/mmdn/attendees.xlsx", Some(&admin.access))
        .await;
    let csv = app
        .get("/api/v1/events/mmdn/attendees.csv", Some(&admin.access))
        .await;

    answer.assert_status(200);
    let rows = sheet(&answer.bytes);
    let header: Vec<String> = rows[0].iter().map(|c| c.to_string()).collect();
    assert_eq!(header, csv_rows(&csv.text)[0], "the CSV's columns");
    let email = header.iter().position(|h| h == "email").unwrap();
    let column = |name: &str| header.iter().position(|h| h == name).unwrap();
    let row = |address: &str| {
        rows.iter()
            .find(|r| r[email] == Data::String(address.to_owned()))
            .unwrap()
            .clone()
    };
    let anna = row("anna@example.org");
    assert_eq!(anna[column("Гости")], Data::Float(2.0));
    let arrival = &anna[column("Дата приезда")];
    assert!(matches!(arrival, Data::DateTime(_)), "{arrival:?}");
    assert_eq!(
        arrival.as_date(),
        chrono::NaiveDate::from_ymd_opt(2027, 4, 23)
    );
    assert_eq!(anna[column("Темы")], Data::String("А; В".to_owned()));
    assert_eq!(
        anna[column("Нужен трансфер из Мурманска?")],
        Data::String("Да".to_owned())
    );
    assert_eq!(
        anna[column("Телефон")],
        Data::String("+7 (815) 365-00-00".to_owned())
    );
    let boris = row("boris@example.org");
    assert_eq!(boris[column("Гости")], Data::Float(0.0));
    assert_eq!(boris[column("Дата приезда")], Data::Empty);
    // Text cells are never run as formulas: written as entered.
    assert_eq!(
        boris[column("Город")],
        Data::String("=HYPERLINK(\"x\")".to_owned())
    );
    assert_eq!(
        boris[column("Экскурсия")],
        Data::String("На комбинат".to_owned())
    );
}

#[tokio::test]
async fn stats_count_the_answers_of_active_registrations_question_by_question() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    event_with_form(&app, &admin.access, 30).await;
    let (_, _, vera) = three_registered(&app).await;
    let mut gleb = full_body("gleb@example.org");
    gleb["answers"]["excursion"] = json!("plant");
    let gleb = register(&app, &gleb).await;
    cancel(&app, &admin.access, &gleb).await;

    let stats = app
        .get("/api/v1/events/mmdn/stats", Some(&admin.access))
        .await;

    stats.assert_status(200);
    let stats = stats.json();
    let question = |key: &str| {
        stats["questions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["question"] == key)
            .unwrap_or_else(|| panic!("no {key}"))
            .clone()
    };
    let keys: Vec<&str> = stats["questions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["question"].as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), HEADERS.len());
    assert_eq!(keys[..4], ["direction", "town", "transfer", "arrival"]);
    let excursion = question("excursion");
    assert_eq!(excursion["answered"], 3);
    assert_eq!(
        excursion["options"],
        json!([
            {"option": "plant", "label": {"ru": "На комбинат", "en": "To the plant"},
             "chosen": 2, "capacity": 30, "places_left": 28},
            {"option": "museum", "label": {"ru": "В музей", "en": "To the museum"},
             "chosen": 1, "capacity": null, "places_left": null},
        ])
    );
    let topics = question("topics");
    let chosen: Vec<(&str, i64)> = topics["options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["option"].as_str().unwrap(), o["chosen"].as_i64().unwrap()))
        .collect();
    assert_eq!(chosen, [("a", 2), ("b", 1), ("c", 2)]);
    let transfer = question("transfer");
    assert_eq!(
        (&transfer["yes"], &transfer["no"], &transfer["answered"]),
        (&json!(2), &json!(1), &json!(3))
    );
    assert_eq!(question("arrival")["answered"], 2);
    assert_eq!(question("notes")["answered"], 2);
    assert_eq!(question("town")["answered"], 3);
    assert_eq!(question("town")["yes"], Value::Null);
    assert_eq!(question("town")["options"], json!([]));

    cancel(&app, &admin.access, &vera).await;
    let after = app
        .get("/api/v1/events/mmdn/stats", Some(&admin.access))
        .await
        .json();
    let transfer = after["questions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["question"] == "transfer")
        .unwrap()
        .clone();
    assert_eq!(
        (transfer["yes"].as_i64(), transfer["no"].as_i64()),
        (Some(1), Some(1))
    );
}
