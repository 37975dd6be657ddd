//! The attendee export as XLSX, opened with an independent reader (calamine) the way a
//! spreadsheet would: header, types, times in the event's time zone, frozen panes, widths.

use std::io::{Cursor, Read};

use calamine::{Data, DataType, Reader, Xlsx};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{Value, json};

use crate::helpers::{TestApp, Tokens, device_key, qr_code, registration_body, spawn_app};

const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

/// An admin and a published event `a` in `time_zone` with one session; its id.
async fn event_in(app: &TestApp, time_zone: &str) -> (Tokens, String) {
    let admin = app.admin().await;
    app.event(&admin.access, "a", json!({"time_zone": time_zone}))
        .await;
    let session = app
        .session(&admin.access, "a", json!({"capacity": 100}))
        .await;
    (admin, session["id"].as_str().unwrap().to_owned())
}

async fn register(app: &TestApp, body: Value) -> Value {
    let answer = app
        .post("/api/v1/events/a/registrations", None, &body)
        .await;
    answer.assert_status(201);
    answer.json()
}

/// The first sheet's cells, rows of columns.
fn sheet(bytes: &[u8]) -> Vec<Vec<Data>> {
    let mut workbook: Xlsx<_> = Xlsx::new(Cursor::new(bytes.to_vec())).expect("an XLSX file");
    let names = workbook.sheet_names();
    assert_eq!(names, ["Attendees"]);
    let range = workbook.worksheet_range("Attendees").unwrap();
    range.rows().map(<[Data]>::to_vec).collect()
}

/// The XML of the first worksheet, for what calamine does not read (panes, widths).
fn sheet_xml(bytes: &[u8]) -> String {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes.to_vec())).unwrap();
    let mut xml = String::new();
    archive
        .by_name("xl/worksheets/sheet1.xml")
        .unwrap()
        .read_to_string(&mut xml)
        .unwrap();
    xml
}

fn header(rows: &[Vec<Data>]) -> Vec<String> {
    rows[0].iter().map(|c| c.to_string()).collect()
}

fn column(rows: &[Vec<Data>], name: &str) -> usize {
    header(rows)
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name}"))
}

fn row_of<'a>(rows: &'a [Vec<Data>], column: usize, value: &str) -> &'a [Data] {
    rows.iter()
        .find(|r| r[column] == Data::String(value.to_owned()))
        .unwrap_or_else(|| panic!("no row with {value}"))
}

fn local(at: &str, time_zone: &str) -> NaiveDateTime {
    let tz: chrono_tz::Tz = time_zone.parse().unwrap();
    at.parse::<DateTime<Utc>>()
        .unwrap()
        .with_timezone(&tz)
        .naive_local()
}

fn assert_same_second(cell: &Data, expected: NaiveDateTime) {
    let Data::DateTime(_) = cell else {
        panic!("not a date-time cell: {cell:?}");
    };
    let got = cell.as_datetime().unwrap();
    let off = (got - expected).num_milliseconds().abs();
    assert!(off < 1000, "{got} is not {expected}");
}

#[tokio::test]
async fn organisers_get_the_registrations_as_a_workbook_with_real_dates_in_the_event_s_zone() {
    let app = spawn_app().await;
    let (admin, session) = event_in(&app, "Asia/Yekaterinburg").await;
    let mut evil = registration_body("evil@example.org", &[&session]);
    evil["full_name"] = json!("=HYPERLINK(\"http://x\",\"Ёлкин\")");
    evil["phone"] = json!("+7 815 365-00-00");
    register(&app, evil).await;
    let mut long = registration_body("long@example.org", &[&session]);
    long["full_name"] = json!("Константинопольская-Преображенская Анна-Мария Александровна");
    register(&app, long).await;

    let answer = app
        .get("/api/v1/events/a/attendees.xlsx", Some(&admin.access))
        .await;

    answer.assert_status(200);
    assert_eq!(answer.header("content-type"), Some(XLSX));
    assert_eq!(
        answer.header("content-disposition"),
        Some("attachment; filename=\"a-attendees.xlsx\"")
    );
    let rows = sheet(&answer.bytes);
    let csv = app
        .get("/api/v1/events/a/attendees.csv", Some(&admin.access))
        .await;
    let csv_header: Vec<String> = csv
        .text
        .lines()
        .next()
        .unwrap()
        .split(',')
        .map(|c| c.trim_matches('"').to_owned())
        .collect();
    assert_eq!(header(&rows), csv_header, "the CSV's columns");
    assert_eq!(rows.len(), 3);
    let email = column(&rows, "email");
    let evil = row_of(&rows, email, "evil@example.org");
    // Text cells are text: never run as formulas, so written as entered.
    assert_eq!(
        evil[column(&rows, "full_name")],
        Data::String("=HYPERLINK(\"http://x\",\"Ёлкин\")".to_owned())
    );
    assert_eq!(
        evil[column(&rows, "phone")],
        Data::String("+7 815 365-00-00".to_owned())
    );
    let long_row = row_of(&rows, email, "long@example.org");
    assert_eq!(
        long_row[column(&rows, "sessions")],
        Data::String("Социальное партнёрство. Социальное проектирование".to_owned())
    );
    assert_eq!(
        long_row[column(&rows, "checked_in_at")],
        Data::Empty,
        "{long_row:?}"
    );
    let registered_at = csv
        .text
        .lines()
        .find(|line| line.contains("long@example.org"))
        .and_then(|line| line.rsplit(',').next())
        .map(|cell| cell.trim_matches('"').to_owned())
        .unwrap();
    assert_same_second(
        &long_row[column(&rows, "registered_at")],
        local(&registered_at, "Asia/Yekaterinburg"),
    );

    let xml = sheet_xml(&answer.bytes);
    assert!(
        xml.contains(r#"<pane xSplit="2" ySplit="1" topLeftCell="C2" activePane="bottomRight" state="frozen"/>"#),
        "no frozen header and name: {xml:.600}"
    );
    assert!(xml.contains("<autoFilter ref=\"A1:"), "no autofilter");
    let name_width = column_width(&xml, column(&rows, "full_name"));
    assert!(
        name_width >= 58.0,
        "the name column ({name_width}) is narrower than the longest name"
    );
    assert!(column_width(&xml, column(&rows, "city")) < 20.0);
}

/// The width given to the 0-based column `index`.
fn column_width(xml: &str, index: usize) -> f64 {
    let n = index + 1;
    let tag = format!("<col min=\"{n}\" max=\"{n}\" width=\"");
    let at = xml
        .find(&tag)
        .unwrap_or_else(|| panic!("no width for column {n}"))
        + tag.len();
    xml[at..].split('"').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn devices_get_the_workbook_without_contact_details() {
    let app = spawn_app().await;
    let (admin, session) = event_in(&app, "Europe/Moscow").await;
    register(&app, registration_body("anna@example.org", &[&session])).await;
    let key = device_key(&app, &admin.access, "a", &["attendees:read"]).await;

    let answer = app.get("/api/v1/events/a/attendees.xlsx", Some(&key)).await;

    answer.assert_status(200);
    let rows = sheet(&answer.bytes);
    assert_eq!(
        header(&rows)[..3],
        ["registration_id", "full_name", "organisation"]
    );
    assert!(!answer.bytes.windows(9).any(|w| w == b"anna@exam"));
    assert_eq!(rows.len(), 2);
}

#[tokio::test]
async fn a_session_s_workbook_and_csv_hold_its_confirmed_attendees_with_their_door_times() {
    let app = spawn_app().await;
    let (admin, session) = event_in(&app, "Europe/Moscow").await;
    let other = app
        .session(&admin.access, "a", json!({"title": "Другая сессия"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let anna = register(&app, registration_body("anna@example.org", &[&session])).await;
    register(&app, registration_body("boris@example.org", &[&other])).await;
    let desk = device_key(&app, &admin.access, "a", &["checkin:write"]).await;
    let qr = qr_code(&app, &admin.access, "a", anna["id"].as_str().unwrap()).await;
    let scanned = "2026-11-01T08:05:00Z";
    app.post(
        "/api/v1/events/a/checkins",
        Some(&desk),
        &json!({"qr_code": qr, "session_id": session, "scanned_at": scanned}),
    )
    .await
    .assert_status(201);

    let path = format!("/api/v1/events/a/sessions/{session}/attendees");
    let answer = app.get(&format!("{path}.xlsx"), Some(&admin.access)).await;

    answer.assert_status(200);
    let rows = sheet(&answer.bytes);
    assert_eq!(rows.len(), 2, "only the session's attendee");
    assert_eq!(
        header(&rows).last().map(String::as_str),
        Some("session_checked_in_at")
    );
    let row = row_of(&rows, column(&rows, "email"), "anna@example.org");
    assert_same_second(
        &row[column(&rows, "session_checked_in_at")],
        local(scanned, "Europe/Moscow"),
    );
    let csv = app.get(&format!("{path}.csv"), Some(&admin.access)).await;
    csv.assert_status(200);
    assert_eq!(csv.text.lines().count(), 2);
    assert!(csv.text.contains("anna@example.org"));
    assert!(csv.text.contains("\"2026-11-01T08:05:00+00:00\""));
    app.get(
        &format!(
            "/api/v1/events/a/sessions/{}/attendees.xlsx",
            uuid::Uuid::new_v4()
        ),
        Some(&admin.access),
    )
    .await
    .assert_problem(404, "not_found");
}

#[tokio::test]
async fn an_unknown_query_parameter_of_the_workbook_is_refused_by_name() {
    let app = spawn_app().await;
    let (admin, _) = event_in(&app, "Europe/Moscow").await;

    let problem = app
        .get(
            "/api/v1/events/a/attendees.xlsx?delimiter=semicolon",
            Some(&admin.access),
        )
        .await;

    problem.assert_status(400);
    assert!(problem.text.contains("delimiter"), "{}", problem.text);
}

#[tokio::test]
async fn an_empty_event_gives_a_workbook_with_only_the_header() {
    let app = spawn_app().await;
    let (admin, _) = event_in(&app, "Europe/Moscow").await;

    let answer = app
        .get("/api/v1/events/a/attendees.xlsx", Some(&admin.access))
        .await;

    answer.assert_status(200);
    let rows = sheet(&answer.bytes);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0][0], Data::String("registration_id".to_owned()));
}
