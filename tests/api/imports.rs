//! Importing participants from CSV and XLSX: the dry run, duplicates, bad files (hostile
//! workbooks included), the commit with capacity and waitlists, resumption after the service
//! is killed, two overlapping imports committed at once, and an exported list imported back.

use std::io::{Cursor, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::Method;
use reqwest::multipart::{Form, Part};
use rust_xlsxwriter::{Formula, Workbook};
use serde_json::{Value, json};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

use crate::helpers::{
    Answer, JWT_SECRET, PASSWORD, TestApp, TestDb, send_checked, served_at, spawn_app,
};

const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

/// An admin's token and a published event `a`.
async fn setup(app: &TestApp) -> String {
    let admin = app.admin().await;
    app.event(&admin.access, "a", json!({})).await;
    admin.access
}

/// Uploads `body` as the request body itself.
async fn upload_raw(
    app: &TestApp,
    token: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
    query: &str,
) -> Answer {
    app.call(Method::POST, &format!("/api/v1/events/a/imports{query}"))
        .bearer(token)
        .body(content_type, body)
        .send()
        .await
}

async fn upload_csv(app: &TestApp, token: &str, csv: &str) -> Answer {
    upload_raw(app, token, "text/csv", csv.to_owned(), "").await
}

/// Uploads a file as a browser form would.
async fn upload_form(
    app: &TestApp,
    token: &str,
    name: &str,
    bytes: Vec<u8>,
    mapping: Option<Value>,
) -> Answer {
    let mut form = Form::new().part("file", Part::bytes(bytes).file_name(name.to_owned()));
    if let Some(mapping) = mapping {
        form = form.text("mapping", mapping.to_string());
    }
    send_checked(
        app.client
            .post(format!("{}/api/v1/events/a/imports", app.address))
            .bearer_auth(token)
            .multipart(form),
    )
    .await
    .unwrap()
}

async fn commit(app: &TestApp, token: &str, id: &str) -> Answer {
    app.post(
        &format!("/api/v1/imports/{id}/commit"),
        Some(token),
        &json!({}),
    )
    .await
}

/// Polls the import until every row has its outcome.
async fn committed(app: &TestApp, token: &str, id: &str) -> Value {
    committed_within(app, token, id, Duration::from_secs(300)).await
}

async fn committed_within(app: &TestApp, token: &str, id: &str, deadline: Duration) -> Value {
    let started = Instant::now();
    loop {
        let answer = app
            .get(&format!("/api/v1/imports/{id}?limit=200"), Some(token))
            .await;
        answer.assert_status(200);
        let body = answer.json();
        if body["status"] == "committed" {
            return body;
        }
        assert!(started.elapsed() < deadline, "not committed: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn statuses(view: &Value) -> Vec<(i64, String)> {
    view["rows"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["row"].as_i64().unwrap(),
                r["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    db.client().await.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn a_csv_with_bom_and_semicolons_is_a_dry_run_that_registers_nobody() {
    let app = spawn_app().await;
    let token = setup(&app).await;
    let session = app.session(&token, "a", json!({"capacity": 10})).await;
    let existing = app.register("a", "Petrov@Example.org", &[]).await;
    existing.assert_status(201);
    let existing_id = existing.json()["id"].as_str().unwrap().to_owned();
    let csv = format!(
        "\u{feff}ФИО;Эл. почта;Организация;Категория;Сессии;Примечание\r\n\
         Анна Сергеевна Иванова;anna@example.org;АНО «Городские события»;government;{title}\r\n\
         Пётр Петров;petrov@EXAMPLE.org;ООО «Север»;business;\r\n\
         ;not-an-address;;royalty;Нет такой сессии\r\n\
         \r\n\
         Анна Иванова (дубль);ANNA@example.org;;;\r\n",
        title = session["title"].as_str().unwrap()
    );
    let answer = upload_form(&app, &token, "приглашённые.csv", csv.into_bytes(), None).await;
    answer.assert_status(201);
    let view = answer.json();
    assert_eq!(view["status"], "dry_run");
    assert_eq!(view["format"], "csv");
    assert_eq!(view["file_name"], "приглашённые.csv");
    assert_eq!(
        answer.header("location"),
        Some(format!("/api/v1/imports/{}", view["id"].as_str().unwrap()).as_str())
    );
    let fields: Vec<Value> = view["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].clone())
        .collect();
    assert_eq!(
        fields,
        vec![
            json!("full_name"),
            json!("email"),
            json!("organisation"),
            json!("category"),
            json!("sessions"),
            Value::Null
        ]
    );
    assert_eq!(
        statuses(&view),
        vec![
            (2, "create".to_owned()),
            (3, "duplicate".to_owned()),
            (4, "invalid".to_owned()),
            (6, "duplicate".to_owned()),
        ]
    );
    assert_eq!(
        view["summary"],
        json!({"rows": 4, "create": 1, "duplicate": 2, "invalid": 1, "pending": 0,
               "created": 0, "failed": 0})
    );
    let rows = view["rows"]["items"].as_array().unwrap();
    assert_eq!(rows[0]["fields"]["session_ids"], json!([session["id"]]));
    assert_eq!(rows[0]["fields"]["category"], "government");
    assert_eq!(
        rows[1]["duplicate_of"],
        json!({"registration_id": existing_id, "row": null})
    );
    assert_eq!(
        rows[3]["duplicate_of"],
        json!({"registration_id": null, "row": 2})
    );
    let problems: Vec<(String, String)> = rows[2]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["column"].as_str().unwrap().to_owned(),
                p["field"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        problems,
        vec![
            ("Категория".to_owned(), "category".to_owned()),
            ("Сессии".to_owned(), "sessions".to_owned()),
            ("ФИО".to_owned(), "full_name".to_owned()),
            ("Эл. почта".to_owned(), "email".to_owned()),
        ]
    );
    // Nothing registered.
    assert_eq!(
        count(&app.db, "SELECT count(*) FROM registrations").await,
        1
    );
}

#[tokio::test]
async fn an_xlsx_workbook_is_read_like_a_csv_with_a_mapping() {
    let app = spawn_app().await;
    let token = setup(&app).await;
    let session = app.session(&token, "a", json!({})).await;
    let mut workbook = Workbook::new();
    let sheet = workbook.add_worksheet();
    for (c, header) in ["Участник", "Адрес", "Тел.", "Сессия", "Язык"]
        .iter()
        .enumerate()
    {
        sheet.write_string(0, c as u16, *header).unwrap();
    }
    sheet.write_string(1, 0, "Мария Кузнецова").unwrap();
    sheet.write_string(1, 1, "maria@example.org").unwrap();
    // A phone number typed as a number.
    sheet.write_number(1, 2, 78153650000.0).unwrap();
    sheet
        .write_string(1, 3, session["id"].as_str().unwrap())
        .unwrap();
    sheet.write_string(1, 4, "en").unwrap();
    let bytes = workbook.save_to_buffer().unwrap();
    let mapping = json!({"Адрес": "email", "Тел.": "phone"});
    let query = format!(
        "?file_name=list.xlsx&mapping={}",
        url::form_urlencoded::byte_serialize(mapping.to_string().as_bytes()).collect::<String>()
    );
    let answer = upload_raw(&app, &token, XLSX, bytes, &query).await;
    answer.assert_status(201);
    let view = answer.json();
    assert_eq!(view["format"], "xlsx");
    assert_eq!(statuses(&view), vec![(2, "create".to_owned())]);
    let fields = &view["rows"]["items"][0]["fields"];
    assert_eq!(fields["full_name"], "Мария Кузнецова");
    assert_eq!(fields["email"], "maria@example.org");
    assert_eq!(fields["phone"], "78153650000");
    assert_eq!(fields["language"], "en");
    assert_eq!(fields["category"], "other");
    assert_eq!(fields["session_ids"], json!([session["id"]]));

    let id = view["id"].as_str().unwrap();
    commit(&app, &token, id).await.assert_status(202);
    let done = committed(&app, &token, id).await;
    let row = &done["rows"]["items"][0];
    assert_eq!(row["status"], "created");
    let registration = app
        .get(
            &format!(
                "/api/v1/registrations/{}",
                row["registration_id"].as_str().unwrap()
            ),
            Some(&token),
        )
        .await;
    registration.assert_status(200);
    assert_eq!(registration.json()["language"], "en");
    assert_eq!(registration.json()["source"], "organiser");
}

#[tokio::test]
async fn committing_registers_rows_within_capacity_and_onto_waitlists() {
    let app = spawn_app().await;
    let token = setup(&app).await;
    let waitlisted = app
        .session(
            &token,
            "a",
            json!({"title": "Круглый стол", "capacity": 1, "waitlist_enabled": true}),
        )
        .await;
    let closed = app
        .session(
            &token,
            "a",
            json!({"title": "Мастер-класс", "capacity": 1, "waitlist_enabled": false,
                   "starts_at": "2027-04-23T11:00:00+03:00", "ends_at": "2027-04-23T12:00:00+03:00"}),
        )
        .await;
    let csv = "full_name,email,sessions\n\
               Первый,first@example.org,Круглый стол; Мастер-класс\n\
               Второй,second@example.org,Круглый стол\n\
               Третий,third@example.org,Мастер-класс\n\
               Без адреса,,\n";
    let answer = upload_csv(&app, &token, csv).await;
    answer.assert_status(201);
    let id = answer.json()["id"].as_str().unwrap().to_owned();
    let started = commit(&app, &token, &id).await;
    started.assert_status(202);
    assert!(matches!(
        started.json()["status"].as_str(),
        Some("committing" | "committed")
    ));
    let done = committed(&app, &token, &id).await;
    assert_eq!(
        statuses(&done),
        vec![
            (2, "created".to_owned()),
            (3, "created".to_owned()),
            (4, "failed".to_owned()),
            (5, "invalid".to_owned()),
        ]
    );
    let rows = done["rows"]["items"].as_array().unwrap();
    assert_eq!(
        rows[0]["sessions"],
        json!([
            {"session_id": waitlisted["id"], "status": "confirmed", "waitlist_position": null},
            {"session_id": closed["id"], "status": "confirmed", "waitlist_position": null},
        ])
    );
    assert_eq!(
        rows[1]["sessions"],
        json!([{"session_id": waitlisted["id"], "status": "waitlisted", "waitlist_position": 1}])
    );
    assert_eq!(rows[2]["error"]["code"], "session_full");
    assert_eq!(
        done["summary"],
        json!({"rows": 4, "create": 0, "duplicate": 0, "invalid": 1, "pending": 0,
               "created": 2, "failed": 1})
    );
    // The history names the import as who registered.
    let history = app
        .get(
            &format!(
                "/api/v1/registrations/{}/history",
                rows[0]["registration_id"].as_str().unwrap()
            ),
            Some(&token),
        )
        .await;
    history.assert_status(200);
    let first = &history.json()[0];
    assert_eq!(first["actor"], "import");
    assert_eq!(first["actor_id"], json!(id));

    commit(&app, &token, &id)
        .await
        .assert_problem(409, "import_committed");
    // Only rows with a given status.
    let failed = app
        .get(&format!("/api/v1/imports/{id}?status=failed"), Some(&token))
        .await;
    assert_eq!(statuses(&failed.json()), vec![(4, "failed".to_owned())]);
}

#[tokio::test]
async fn an_expired_dry_run_cannot_be_committed() {
    let app = spawn_app().await;
    let token = setup(&app).await;
    let answer = upload_csv(&app, &token, "full_name,email\nАнна,anna@example.org\n").await;
    let id = answer.json()["id"].as_str().unwrap().to_owned();
    app.db
        .client()
        .await
        .execute(
            "UPDATE imports SET expires_at = now() - interval '1 minute'",
            &[],
        )
        .await
        .unwrap();
    commit(&app, &token, &id)
        .await
        .assert_problem(409, "import_expired");
    let view = app
        .get(&format!("/api/v1/imports/{id}"), Some(&token))
        .await;
    assert_eq!(view.json()["status"], "expired");
    assert_eq!(
        count(&app.db, "SELECT count(*) FROM registrations").await,
        0
    );
}

/// A problem about the file: 422 naming the row and column, and nothing stored.
async fn refused(app: &TestApp, answer: Answer, code: &str, row: Value, column: Value) -> Value {
    let problem = answer.assert_problem(422, code);
    assert_eq!(problem["row"], row, "{problem}");
    assert_eq!(problem["column"], column, "{problem}");
    assert_eq!(count(&app.db, "SELECT count(*) FROM imports").await, 0);
    assert_eq!(count(&app.db, "SELECT count(*) FROM import_rows").await, 0);
    problem
}

#[tokio::test]
async fn files_that_cannot_be_imported_are_refused_naming_row_and_column() {
    let app = spawn_app().await;
    let token = setup(&app).await;

    let pdf = upload_raw(&app, &token, "text/csv", b"%PDF-1.7\n\x00\x01".to_vec(), "").await;
    refused(&app, pdf, "invalid_file", Value::Null, Value::Null).await;

    let no_email = upload_csv(&app, &token, "ФИО;Город\nАнна;Мурманск\n").await;
    let problem = refused(&app, no_email, "invalid_file", json!(1), Value::Null).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("no usable header"),
        "{problem}"
    );

    let mut broken = b"full_name,email\nAnna,anna@example.org\n".to_vec();
    broken.extend_from_slice(b"Bor\xffis,boris@example.org\n");
    let answer = upload_raw(&app, &token, "text/csv", broken, "").await;
    refused(&app, answer, "invalid_file", json!(3), json!("A")).await;

    let formula = upload_csv(
        &app,
        &token,
        "full_name,email\nAnna,anna@example.org\n\"=HYPERLINK(\"\"http://x\"\")\",b@example.org\n",
    )
    .await;
    refused(&app, formula, "invalid_file", json!(3), json!("A")).await;

    let mut workbook = Workbook::new();
    let sheet = workbook.add_worksheet();
    sheet.write_string(0, 0, "full_name").unwrap();
    sheet.write_string(0, 1, "email").unwrap();
    sheet.write_string(1, 0, "Анна").unwrap();
    sheet
        .write_formula(1, 1, Formula::new("=CONCAT(\"a\",\"@example.org\")"))
        .unwrap();
    let answer = upload_raw(&app, &token, XLSX, workbook.save_to_buffer().unwrap(), "").await;
    refused(&app, answer, "invalid_file", json!(2), json!("B")).await;

    let answer = upload_form(
        &app,
        &token,
        "list.csv",
        b"full_name,email\nAnna,anna@example.org\n".to_vec(),
        Some(json!({"Почта": "email"})),
    )
    .await;
    let problem = refused(&app, answer, "invalid_file", json!(1), json!("Почта")).await;
    assert_eq!(problem["errors"][0]["field"], "mapping.Почта");

    let mut many = String::from("full_name,email\n");
    for i in 0..50_000 {
        many.push_str(&format!("П{i},p{i}@example.org\n"));
    }
    let answer = upload_csv(&app, &token, &many).await;
    refused(&app, answer, "invalid_file", json!(50_000), Value::Null).await;

    let huge = vec![b'a'; 20 * 1024 * 1024 + 1];
    let answer = upload_raw(&app, &token, "text/csv", huge, "").await;
    refused(&app, answer, "file_too_large", Value::Null, Value::Null).await;

    upload_raw(&app, &token, "application/json", "{}", "")
        .await
        .assert_problem(415, "unsupported_media_type");
}

/// A workbook of a header and one participant (its shared strings: `full_name`, `email`,
/// `Анна`, `anna@example.org`), whose `xl/sharedStrings.xml` is what `shared_strings`
/// writes instead.
fn with_shared_strings(mut shared_strings: impl FnMut(&mut dyn Write)) -> Vec<u8> {
    let mut workbook = Workbook::new();
    let sheet = workbook.add_worksheet();
    for (c, text) in ["full_name", "email"].iter().enumerate() {
        sheet.write_string(0, c as u16, *text).unwrap();
    }
    for (c, text) in ["Анна", "anna@example.org"].iter().enumerate() {
        sheet.write_string(1, c as u16, *text).unwrap();
    }
    let mut archive = ZipArchive::new(Cursor::new(workbook.save_to_buffer().unwrap())).unwrap();
    let mut out = ZipWriter::new(Cursor::new(Vec::new()));
    for i in 0..archive.len() {
        let entry = archive.by_index_raw(i).unwrap();
        if entry.name().unwrap() == "xl/sharedStrings.xml" {
            drop(entry);
            let options = SimpleFileOptions::default()
                .compression_method(CompressionMethod::Deflated)
                .compression_level(Some(9));
            out.start_file("xl/sharedStrings.xml", options).unwrap();
            shared_strings(&mut out);
        } else {
            out.raw_copy_file(entry).unwrap();
        }
    }
    out.finish().unwrap().into_inner()
}

/// The start of a shared-string table declaring `unique` strings, and its four strings.
fn sst(unique: u64) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n<sst \
         xmlns=\"http://schemas.openxmlformats.org/spreadsheetml/2006/main\" count=\"4\" \
         uniqueCount=\"{unique}\"><si><t>full_name</t></si><si><t>email</t></si>\
         <si><t>Анна</t></si><si><t>anna@example.org</t></si>"
    )
}

/// A refusal of the whole file, naming it, after which the service still answers.
async fn refused_file(app: &TestApp, token: &str, answer: Answer) -> String {
    let problem = refused(app, answer, "invalid_file", Value::Null, Value::Null).await;
    assert_eq!(problem["errors"][0]["field"], "file", "{problem}");
    app.get("/api/v1/events/a", Some(token))
        .await
        .assert_status(200);
    problem["detail"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_workbook_declaring_more_strings_than_it_can_hold_is_refused() {
    let app = spawn_app().await;
    let token = setup(&app).await;

    // About a kilobyte that declares a hundred billion strings.
    let declared = with_shared_strings(|out| {
        write!(out, "{}</sst>", sst(100_000_000_000)).unwrap();
    });
    assert!(declared.len() < 8 * 1024, "{}", declared.len());
    let answer = upload_raw(&app, &token, XLSX, declared, "").await;
    let detail = refused_file(&app, &token, answer).await;
    assert!(detail.contains("shared strings"), "{detail}");

    // The same workbook, honest about its strings, imports.
    let honest = with_shared_strings(|out| {
        write!(out, "{}</sst>", sst(4)).unwrap();
    });
    let answer = upload_raw(&app, &token, XLSX, honest, "").await;
    answer.assert_status(201);
    assert_eq!(statuses(&answer.json()), vec![(2, "create".to_owned())]);
}

/// A workbook whose shared strings end in one string of `megabytes` MB of zeros.
fn zeros(megabytes: usize) -> Vec<u8> {
    with_shared_strings(|out| {
        write!(out, "{}<si><t>", sst(5)).unwrap();
        let zeros = vec![b'0'; 1024 * 1024];
        for _ in 0..megabytes {
            out.write_all(&zeros).unwrap();
        }
        write!(out, "</t></si></sst>").unwrap();
    })
}

#[tokio::test]
async fn a_workbook_that_unzips_to_too_much_is_refused() {
    let app = spawn_app().await;
    let token = setup(&app).await;

    // 300 MB, deflated to about 300 KB.
    let bomb = zeros(300);
    assert!(bomb.len() < 1024 * 1024, "{}", bomb.len());
    let answer = upload_raw(&app, &token, XLSX, bomb.clone(), "").await;
    let detail = refused_file(&app, &token, answer).await;
    assert!(detail.contains("200 MB"), "{detail}");

    // 20 MB, within the bound, but a thousand times its compressed size.
    let answer = upload_raw(&app, &token, XLSX, zeros(20), "").await;
    let detail = refused_file(&app, &token, answer).await;
    assert!(detail.contains("times its size"), "{detail}");

    // The 300 MB, declared as a kilobyte: read no further than declared.
    let lying = declare_size(bomb, "xl/sharedStrings.xml", 1024);
    let answer = upload_raw(&app, &token, XLSX, lying, "").await;
    refused_file(&app, &token, answer).await;
}

/// A zip whose entry `name` declares `size` bytes unzipped, in its local and central
/// headers, whatever it holds.
fn declare_size(mut zip: Vec<u8>, name: &str, size: u32) -> Vec<u8> {
    let mut patched = 0;
    for at in 0..zip.len().saturating_sub(46) {
        // Where a header keeps the unzipped size, the name's length, and the name.
        let (size_at, length_at, name_at) = match &zip[at..at + 4] {
            b"PK\x03\x04" => (22, 26, 30),
            b"PK\x01\x02" => (24, 28, 46),
            _ => continue,
        };
        let length = u16::from_le_bytes([zip[at + length_at], zip[at + length_at + 1]]);
        if zip.get(at + name_at..at + name_at + length as usize) == Some(name.as_bytes()) {
            zip[at + size_at..at + size_at + 4].copy_from_slice(&size.to_le_bytes());
            patched += 1;
        }
    }
    assert_eq!(patched, 2);
    zip
}

/// `n` rows of participants `from..from + n`.
fn participants(from: usize, n: usize) -> String {
    let mut csv = String::from("full_name;email\n");
    for i in from..from + n {
        csv.push_str(&format!("Участник {i};person{i}@example.org\n"));
    }
    csv
}

#[tokio::test]
async fn overlapping_imports_committed_at_once_register_each_address_once() {
    let db = TestDb::new().await;
    let (one, two) = tokio::join!(Process::start(&db), Process::start(&db));
    let (on_one, on_two) = (served_at(&one.address, &db), served_at(&two.address, &db));
    let admin = on_one.admin().await;
    on_one.event(&admin.access, "a", json!({})).await;
    // Two organisers of the event, each committing on an instance of their own.
    let mut organisers = Vec::new();
    for (app, email) in [(&on_one, "one@example.org"), (&on_two, "two@example.org")] {
        let (id, tokens) = on_one.organiser(&admin, email).await;
        on_one
            .call(Method::PUT, &format!("/api/v1/events/a/members/{id}"))
            .bearer(&admin.access)
            .json(&json!({"role": "editor"}))
            .send()
            .await
            .assert_status(201);
        organisers.push((app, tokens.access));
    }
    // The same fifty addresses in the same rows (so in the same batches), then each file's
    // own twenty-five.
    let list = |own: &str| {
        let mut csv = participants(0, 50);
        for i in 0..25 {
            csv.push_str(&format!("Гость {i};{own}{i}@example.org\n"));
        }
        csv
    };
    let mut imports = Vec::new();
    for ((app, token), own) in organisers.iter().zip(["first", "second"]) {
        let answer = upload_csv(app, token, &list(own)).await;
        answer.assert_status(201);
        assert_eq!(answer.json()["summary"]["create"], 75);
        imports.push(answer.json()["id"].as_str().unwrap().to_owned());
    }

    // Both commits are held at their first registration until both have reached it, so
    // that their first batches register the same addresses at the same moment.
    let mut gate = db.client().await;
    let gate = gate.transaction().await.unwrap();
    gate.batch_execute("LOCK TABLE registrations IN SHARE MODE")
        .await
        .unwrap();
    let commits = organisers
        .iter()
        .zip(&imports)
        .map(|((app, token), id)| commit(app, token, id));
    for answer in futures_util::future::join_all(commits).await {
        answer.assert_status(202);
    }
    let observer = db.client().await;
    let waiting = |locktype: &'static str| {
        let observer = &observer;
        async move {
            let waiting: i64 = observer
                .query_one(
                    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
                     WHERE NOT l.granted AND a.datname = current_database() AND l.locktype = $1",
                    &[&locktype],
                )
                .await
                .unwrap()
                .get(0);
            waiting
        }
    };
    let started = Instant::now();
    while waiting("relation").await < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not both at the gate"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    gate.commit().await.unwrap();
    // One commit's registration waits for the other's transaction, holding the same address.
    let started = Instant::now();
    while waiting("transactionid").await == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no batch waited for the other"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    let mut reports = Vec::new();
    for ((app, token), id) in organisers.iter().zip(&imports) {
        reports.push(committed(app, token, id).await);
    }
    // Every row is created or a duplicate, and each of the shared addresses was created by
    // one import, the other's row naming that registration.
    let mut created = std::collections::HashMap::new();
    for report in &reports {
        for row in report["rows"]["items"].as_array().unwrap() {
            let email = row["fields"]["email"].as_str().unwrap().to_owned();
            if row["status"] == "created" {
                let registration = row["registration_id"].as_str().unwrap().to_owned();
                assert!(created.insert(email, registration).is_none(), "{row}");
            } else {
                assert_eq!(row["status"], "duplicate", "{row}");
            }
        }
    }
    assert_eq!(created.len(), 100);
    for report in &reports {
        for row in report["rows"]["items"].as_array().unwrap() {
            if row["status"] == "duplicate" {
                let email = row["fields"]["email"].as_str().unwrap();
                assert!(email.starts_with("person"), "{row}");
                assert_eq!(
                    row["duplicate_of"]["registration_id"].as_str(),
                    created.get(email).map(String::as_str),
                    "{row}"
                );
            }
        }
    }
    let summaries: Vec<_> = reports.iter().map(|r| r["summary"].clone()).collect();
    let sum = |key: &str| {
        summaries
            .iter()
            .map(|s| s[key].as_i64().unwrap())
            .sum::<i64>()
    };
    assert_eq!(
        (sum("created"), sum("duplicate"), sum("failed")),
        (100, 50, 0)
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM registrations WHERE status = 'active'"
        )
        .await,
        100
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM (SELECT email_normalized FROM registrations \
             WHERE status = 'active' GROUP BY 1 HAVING count(*) > 1) twice"
        )
        .await,
        0
    );
    // Neither instance failed a round of the commit or answered a request with an error.
    for process in [&one, &two] {
        let logs = process.logs();
        assert!(
            !logs.contains("background work failed") && !logs.contains("request failed"),
            "{logs}"
        );
    }
}

/// The service as its own process, so that it can be killed with SIGKILL, its log (warnings
/// and errors) kept.
struct Process {
    child: tokio::process::Child,
    address: String,
    log: tempfile::NamedTempFile,
}

impl Process {
    async fn start(db: &TestDb) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_registrar"))
            .env("DATABASE_URL", &db.url)
            .env("REGISTRAR_BIND", format!("127.0.0.1:{port}"))
            .env("REGISTRAR_JWT_SECRET", JWT_SECRET)
            .env("REGISTRAR_LOGIN_RATE_LIMIT", "0")
            .env("RUST_LOG", "warn")
            .stderr(Stdio::from(log.reopen().unwrap()))
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let address = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while reqwest::get(format!("{address}/readyz")).await.is_err() {
            assert!(started.elapsed() < Duration::from_secs(30), "not started");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Process {
            child,
            address,
            log,
        }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap()
    }
}

#[tokio::test]
async fn a_commit_cut_off_by_sigkill_resumes_without_registering_a_row_twice() {
    let db = TestDb::new().await;
    let mut first = Process::start(&db).await;
    {
        use diesel_async::AsyncConnection;
        let mut conn = diesel_async::AsyncPgConnection::establish(&db.url)
            .await
            .unwrap();
        registrar::users::create_admin(&mut conn, "admin@example.org", "Admin", PASSWORD.into())
            .await
            .unwrap();
    }
    let http = reqwest::Client::new();
    let login: Value = http
        .post(format!("{}/api/v1/auth/login", first.address))
        .json(&json!({"email": "admin@example.org", "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["access_token"].as_str().unwrap().to_owned();
    let event = json!({"slug": "a", "title": "Событие", "time_zone": "Europe/Moscow",
        "starts_on": "2027-04-20", "ends_on": "2027-04-24", "status": "published"});
    let created = http
        .post(format!("{}/api/v1/events", first.address))
        .bearer_auth(&token)
        .json(&event)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    const ROWS: i64 = 600;
    let upload: Value = http
        .post(format!("{}/api/v1/events/a/imports", first.address))
        .bearer_auth(&token)
        .header("content-type", "text/csv")
        .body(participants(0, ROWS as usize))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = upload["id"].as_str().unwrap().to_owned();
    let started = http
        .post(format!("{}/api/v1/imports/{id}/commit", first.address))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(started.status().as_u16(), 202);
    // Killed while rows are being registered.
    let waiting = Instant::now();
    loop {
        let done = count(
            &db,
            "SELECT count(*) FROM import_rows WHERE outcome IS NOT NULL",
        )
        .await;
        if done >= 50 {
            break;
        }
        assert!(
            waiting.elapsed() < Duration::from_secs(60),
            "the commit did not start"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.child.start_kill().unwrap();
    first.child.wait().await.unwrap();
    let outcomes = count(
        &db,
        "SELECT count(*) FROM import_rows WHERE outcome IS NOT NULL",
    )
    .await;
    assert!(outcomes < ROWS, "killed before the end: {outcomes}");
    // Every registration made has its row's outcome, and the other way round.
    assert_eq!(
        count(&db, "SELECT count(*) FROM registrations").await,
        count(
            &db,
            "SELECT count(*) FROM import_rows WHERE outcome = 'created'"
        )
        .await
    );

    let second = Process::start(&db).await;
    let waiting = Instant::now();
    loop {
        let status: String = db
            .client()
            .await
            .query_one("SELECT status FROM imports", &[])
            .await
            .unwrap()
            .get(0);
        if status == "committed" {
            break;
        }
        assert!(waiting.elapsed() < Duration::from_secs(300), "not resumed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(count(&db, "SELECT count(*) FROM registrations").await, ROWS);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM import_rows WHERE outcome = 'created'"
        )
        .await,
        ROWS
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(DISTINCT registration_id) FROM import_rows"
        )
        .await,
        ROWS
    );
    let report: Value = http
        .get(format!("{}/api/v1/imports/{id}", second.address))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(report["summary"]["created"], ROWS);
    assert_eq!(report["summary"]["duplicate"], 0);
}

/// Questions of every kind an import reads on event `a`; the excursion to the plant has
/// `plant_places` places.
async fn ask_questions(app: &TestApp, token: &str, plant_places: i64) {
    ask_questions_of(app, token, "a", plant_places).await;
}

/// The same questions on `event`.
async fn ask_questions_of(app: &TestApp, token: &str, event: &str, plant_places: i64) {
    let label = |ru: &str, en: &str| json!({"ru": ru, "en": en});
    let questions = [
        json!({"key": "transfer", "type": "yes_no",
               "label": label("Нужен трансфер?", "Transfer needed?")}),
        json!({"key": "topics", "type": "multiple_choice",
               "label": label("Темы", "Topics"), "options": [
                   {"key": "volunteering", "label": label("Волонтёрство", "Volunteering")},
                   {"key": "projects", "label": label("Проекты", "Projects")},
                   {"key": "towns", "label": label("Города", "Towns")}]}),
        json!({"key": "guests", "type": "number", "min": 0, "max": 5000,
               "label": label("Гости", "Guests")}),
        json!({"key": "arrival", "type": "date", "label": label("Дата приезда", "Arrival")}),
        json!({"key": "country", "type": "country", "label": label("Страна", "Country")}),
        json!({"key": "town", "type": "text", "max_length": 20,
               "label": label("Ваш город", "Your town")}),
        json!({"key": "excursion", "type": "single_choice",
               "label": label("Экскурсия", "Excursion"), "options": [
                   {"key": "plant", "label": label("На комбинат", "To the plant"),
                    "capacity": plant_places},
                   {"key": "museum", "label": label("В музей", "To the museum")}]}),
    ];
    for question in questions {
        app.post(
            &format!("/api/v1/events/{event}/questions"),
            Some(token),
            &question,
        )
        .await
        .assert_status(201);
    }
}

/// The columns' questions (null: none).
fn column_questions(view: &Value) -> Vec<Value> {
    view["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["question"].clone())
        .collect()
}

/// The dry run `view` shows `expected` as its rows' answers, and committing it registers them.
async fn answers_read_and_registered(app: &TestApp, token: &str, view: &Value, expected: &[Value]) {
    let read: Vec<Value> = view["rows"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["fields"]["answers"].clone())
        .collect();
    assert_eq!(read, expected);
    let id = view["id"].as_str().unwrap();
    assert_eq!(committed_answers(app, token, id).await, expected);
}

/// Commits an import and answers the registrations' answers, row by row (null: none).
async fn committed_answers(app: &TestApp, token: &str, id: &str) -> Vec<Value> {
    commit(app, token, id).await.assert_status(202);
    let done = committed(app, token, id).await;
    let mut answers = Vec::new();
    for row in done["rows"]["items"].as_array().unwrap() {
        assert_eq!(row["status"], "created", "{row}");
        let registration = app
            .get(
                &format!(
                    "/api/v1/registrations/{}",
                    row["registration_id"].as_str().unwrap()
                ),
                Some(token),
            )
            .await;
        registration.assert_status(200);
        answers.push(registration.json()["answers"].clone());
    }
    answers
}

#[tokio::test]
async fn answers_to_the_events_questions_are_read_from_a_csv_by_label_or_key() {
    let app = spawn_app().await;
    let token = setup(&app).await;
    ask_questions(&app, &token, 30).await;
    // Labels in either language, a key, and a column nobody asked about.
    let csv = "ФИО,Эл. почта,Нужен трансфер?,Topics,guests,Дата приезда,Страна,Экскурсия,Заметки\n\
               Анна Иванова,anna@example.org,Да,\"Волонтёрство; Проекты\",\"1 234,5\",19.04.2027,ru,На комбинат,первая\n\
               Пётр Петров,petr@example.org,нет,\"projects, towns\",2,2027-04-20,,museum,\n\
               Ирина Смирнова,irina@example.org,,,,,,,\n";
    let answer = upload_csv(&app, &token, csv).await;
    answer.assert_status(201);
    let view = answer.json();
    assert_eq!(
        column_questions(&view),
        vec![
            Value::Null,
            Value::Null,
            json!("transfer"),
            json!("topics"),
            json!("guests"),
            json!("arrival"),
            json!("country"),
            json!("excursion"),
            Value::Null,
        ]
    );
    assert_eq!(
        statuses(&view),
        vec![
            (2, "create".to_owned()),
            (3, "create".to_owned()),
            (4, "create".to_owned()),
        ]
    );
    // The dry run shows the answers as they will be registered.
    let expected = vec![
        json!({"transfer": true, "topics": ["volunteering", "projects"], "guests": 1234.5,
               "arrival": "2027-04-19", "country": "RU", "excursion": "plant"}),
        json!({"transfer": false, "topics": ["projects", "towns"], "guests": 2,
               "arrival": "2027-04-20", "excursion": "museum"}),
        json!({}),
    ];
    answers_read_and_registered(&app, &token, &view, &expected).await;
}

#[tokio::test]
async fn answers_are_read_from_typed_xlsx_cells_and_a_mapping() {
    use rust_xlsxwriter::{ExcelDateTime, Format};
    let app = spawn_app().await;
    let token = setup(&app).await;
    ask_questions(&app, &token, 30).await;
    let mut workbook = Workbook::new();
    let sheet = workbook.add_worksheet();
    for (c, header) in [
        "full_name",
        "email",
        "Transfer needed?",
        "Поездки",
        "Guests",
        "Arrival",
    ]
    .iter()
    .enumerate()
    {
        sheet.write_string(0, c as u16, *header).unwrap();
    }
    let day = Format::new().set_num_format("dd.mm.yyyy");
    sheet.write_string(1, 0, "Мария Кузнецова").unwrap();
    sheet.write_string(1, 1, "maria@example.org").unwrap();
    sheet.write_boolean(1, 2, true).unwrap();
    sheet.write_string(1, 3, "Towns;Волонтёрство").unwrap();
    sheet.write_number(1, 4, 3.0).unwrap();
    sheet
        .write_datetime_with_format(1, 5, ExcelDateTime::from_ymd(2027, 4, 19).unwrap(), &day)
        .unwrap();
    sheet.write_string(2, 0, "Олег Сидоров").unwrap();
    sheet.write_string(2, 1, "oleg@example.org").unwrap();
    sheet.write_boolean(2, 2, false).unwrap();
    sheet.write_string(2, 3, "projects").unwrap();
    sheet.write_number(2, 4, 0.5).unwrap();
    let bytes = workbook.save_to_buffer().unwrap();
    let answer = upload_form(
        &app,
        &token,
        "list.xlsx",
        bytes,
        Some(json!({"Поездки": "answers.topics"})),
    )
    .await;
    answer.assert_status(201);
    let view = answer.json();
    assert_eq!(
        column_questions(&view),
        vec![
            Value::Null,
            Value::Null,
            json!("transfer"),
            json!("topics"),
            json!("guests"),
            json!("arrival"),
        ]
    );
    let expected = vec![
        json!({"transfer": true, "topics": ["towns", "volunteering"], "guests": 3,
               "arrival": "2027-04-19"}),
        json!({"transfer": false, "topics": ["projects"], "guests": 0.5}),
    ];
    answers_read_and_registered(&app, &token, &view, &expected).await;
}

#[tokio::test]
async fn an_invalid_answer_makes_its_row_invalid_naming_the_column_and_why() {
    let app = spawn_app().await;
    let token = setup(&app).await;
    ask_questions(&app, &token, 30).await;
    let csv = "ФИО;Эл. почта;Нужен трансфер?;Темы;Гости;Дата приезда;Страна;Ваш город\n\
               Анна;anna@example.org;может быть;Проекты;1;19.04.2027;RU;Кола\n\
               Борис;boris@example.org;да;Проекты, Спорт;1;19.04.2027;RU;Кола\n\
               Вера;vera@example.org;да;Проекты;9 999;31.02.2027;RU;Кола\n\
               Глеб;gleb@example.org;да;Проекты;1;19.04.2027;Россия;Петропавловск-Камчатский\n\
               Дина;dina@example.org;да;Проекты;1;19.04.2027;RU;Кола\n";
    let answer = upload_csv(&app, &token, csv).await;
    answer.assert_status(201);
    let view = answer.json();
    assert_eq!(
        statuses(&view),
        vec![
            (2, "invalid".to_owned()),
            (3, "invalid".to_owned()),
            (4, "invalid".to_owned()),
            (5, "invalid".to_owned()),
            (6, "create".to_owned()),
        ]
    );
    let problems: Vec<Vec<(String, String, String)>> = view["rows"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r["problems"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        p["column"].as_str().unwrap().to_owned(),
                        p["field"].as_str().unwrap().to_owned(),
                        p["message"].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        })
        .collect();
    let expect = |column: &str, field: &str, message: &str| {
        (column.to_owned(), field.to_owned(), message.to_owned())
    };
    assert_eq!(
        problems[0],
        vec![expect(
            "Нужен трансфер?",
            "answers.transfer",
            "must be yes or no: да/нет, yes/no, true/false or 1/0"
        )]
    );
    assert_eq!(problems[1].len(), 1, "{:?}", problems[1]);
    assert_eq!(
        (problems[1][0].0.as_str(), problems[1][0].1.as_str()),
        ("Темы", "answers.topics")
    );
    assert!(problems[1][0].2.contains("«Спорт»"), "{:?}", problems[1]);
    // Read, then checked by the form's own rules.
    assert_eq!(
        problems[2],
        vec![
            expect(
                "Дата приезда",
                "answers.arrival",
                "must be a date: YYYY-MM-DD or DD.MM.YYYY"
            ),
            expect("Гости", "answers.guests", "must be at most 5000"),
        ]
    );
    assert_eq!(
        problems[3],
        vec![
            expect(
                "Страна",
                "answers.country",
                "must be an ISO 3166-1 alpha-2 country code such as RU"
            ),
            expect("Ваш город", "answers.town", "must be at most 20 characters"),
        ]
    );
    assert!(problems[4].is_empty());
    // Committed: the invalid rows are not registered.
    let id = view["id"].as_str().unwrap();
    commit(&app, &token, id).await.assert_status(202);
    let done = committed(&app, &token, id).await;
    assert_eq!(done["summary"]["invalid"], 4);
    assert_eq!(done["summary"]["created"], 1);
    assert_eq!(
        count(&app.db, "SELECT count(*) FROM registrations").await,
        1
    );
}

#[tokio::test]
async fn an_option_with_its_last_place_goes_to_one_row_and_the_next_is_told_it_is_full() {
    let app = spawn_app().await;
    let token = setup(&app).await;
    ask_questions(&app, &token, 1).await;
    let csv = "full_name,email,Экскурсия\n\
               Первый,first@example.org,На комбинат\n\
               Второй,second@example.org,plant\n\
               Третий,third@example.org,В музей\n";
    let answer = upload_csv(&app, &token, csv).await;
    answer.assert_status(201);
    let view = answer.json();
    // Places are claimed when registering, not by the dry run.
    assert_eq!(view["summary"]["create"], 3);
    let id = view["id"].as_str().unwrap();
    commit(&app, &token, id).await.assert_status(202);
    let done = committed(&app, &token, id).await;
    assert_eq!(
        statuses(&done),
        vec![
            (2, "created".to_owned()),
            (3, "failed".to_owned()),
            (4, "created".to_owned()),
        ]
    );
    let failed = &done["rows"]["items"][1];
    assert_eq!(failed["error"]["code"], "option_full", "{failed}");
    assert_eq!(
        count(
            &app.db,
            "SELECT count(*) FROM registrations WHERE answers->>'excursion' = 'plant'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn a_mapping_names_questions_as_answers_dot_key() {
    let app = spawn_app().await;
    let token = setup(&app).await;
    ask_questions(&app, &token, 30).await;
    let file = b"full_name,email,Comment,Transfer\nAnna,anna@example.org,hello,yes\n".to_vec();
    let answer = upload_form(
        &app,
        &token,
        "list.csv",
        file.clone(),
        Some(json!({"Comment": null, "Transfer": "answers.shuttle"})),
    )
    .await;
    let problem = refused(&app, answer, "invalid_file", json!(1), json!("Transfer")).await;
    assert_eq!(problem["errors"][0]["field"], "mapping.Transfer");
    let message = problem["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("no question") && message.contains("answers.transfer"),
        "{message}"
    );
    let answer = upload_form(
        &app,
        &token,
        "list.csv",
        file,
        Some(json!({"Comment": null, "Transfer": "answers.transfer"})),
    )
    .await;
    answer.assert_status(201);
    assert_eq!(
        answer.json()["rows"]["items"][0]["fields"]["answers"],
        json!({"transfer": true})
    );
}

#[tokio::test]
async fn an_exported_list_imports_back_into_another_event() {
    let app = spawn_app().await;
    let token = setup(&app).await;
    app.event(&token, "b", json!({})).await;
    let titles = ["Пленарное заседание", "Социальное партнёрство, секция 2"];
    let mut sessions = std::collections::HashMap::new();
    for event in ["a", "b"] {
        ask_questions_of(&app, &token, event, 30).await;
        for (i, title) in titles.iter().enumerate() {
            let hour = 10 + 3 * i;
            let session = app
                .session(
                    &token,
                    event,
                    json!({"title": title,
                           "starts_at": format!("2027-04-24T{hour}:00:00+03:00"),
                           "ends_at": format!("2027-04-24T{}:00:00+03:00", hour + 2)}),
                )
                .await;
            sessions.insert((event, *title), session["id"].as_str().unwrap().to_owned());
        }
    }
    // Event b's attendees, with what the export must protect or join.
    let people = [
        json!({"full_name": "=Иванова Анна", "email": "anna@example.org",
               "phone": "+7 (815) 365-00-00", "organisation": "АНО «Город; люди»",
               "position": "Координатор", "city": "Мончегорск", "category": "nonprofit",
               "session_ids": [sessions[&("b", titles[0])], sessions[&("b", titles[1])]],
               "answers": {"transfer": true, "topics": ["volunteering", "projects"],
                           "guests": 1234.5, "arrival": "2027-04-19", "country": "RU",
                           "town": "Кировск", "excursion": "plant"}}),
        json!({"full_name": "Пётр Петров", "email": "petr@example.org",
               "category": "government", "session_ids": [sessions[&("b", titles[1])]],
               "answers": {"transfer": false, "topics": ["towns"], "excursion": "museum"}}),
        json!({"full_name": "Ирина Смирнова", "email": "irina@example.org",
               "category": "other", "session_ids": [], "answers": {}}),
    ];
    for person in &people {
        let mut body = person.clone();
        body["consent"] = json!(true);
        app.post("/api/v1/events/b/registrations", Some(&token), &body)
            .await
            .assert_status(201);
    }
    let exported = app
        .get(
            "/api/v1/events/b/attendees.csv?bom=true&delimiter=semicolon",
            Some(&token),
        )
        .await;
    exported.assert_status(200);
    let workbook = app
        .get("/api/v1/events/b/attendees.xlsx", Some(&token))
        .await;
    workbook.assert_status(200);

    for (name, bytes) in [
        ("attendees.csv", exported.bytes.to_vec()),
        ("attendees.xlsx", workbook.bytes.to_vec()),
    ] {
        let answer = upload_form(&app, &token, name, bytes, None).await;
        answer.assert_status(201);
        let view = answer.json();
        let read: Vec<(String, Value, Value)> = view["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["column"].as_str().unwrap().to_owned(),
                    c["field"].clone(),
                    c["question"].clone(),
                )
            })
            .collect();
        let field = |column: &str| {
            read.iter()
                .find(|(c, ..)| c == column)
                .map(|(_, f, q)| (f.clone(), q.clone()))
                .unwrap_or_else(|| panic!("{name}: no column {column}: {read:?}"))
        };
        for column in [
            "full_name",
            "email",
            "phone",
            "organisation",
            "position",
            "city",
            "category",
            "sessions",
        ] {
            assert_eq!(field(column), (json!(column), Value::Null), "{name}");
        }
        for column in ["registration_id", "status", "registered_at"] {
            assert_eq!(field(column), (Value::Null, Value::Null), "{name}");
        }
        let mut questions: Vec<&str> = read.iter().filter_map(|(_, _, q)| q.as_str()).collect();
        questions.sort();
        assert_eq!(
            questions,
            [
                "arrival",
                "country",
                "excursion",
                "guests",
                "topics",
                "town",
                "transfer"
            ],
            "{name}"
        );
        // Every person as registered in b, their sessions those of a by the same titles.
        let rows = view["rows"]["items"].as_array().unwrap();
        assert_eq!(rows.len(), people.len(), "{name}: {view}");
        for person in &people {
            let row = rows
                .iter()
                .find(|r| r["fields"]["email"] == person["email"])
                .unwrap_or_else(|| panic!("{name}: {person} not read: {view}"));
            assert_eq!(row["status"], "create", "{name}: {row}");
            let fields = &row["fields"];
            for key in [
                "full_name",
                "phone",
                "organisation",
                "position",
                "city",
                "category",
                "answers",
            ] {
                let expected = person.get(key).cloned().unwrap_or(Value::Null);
                assert_eq!(fields[key], expected, "{name}: {key} of {row}");
            }
            let mut expected: Vec<String> = person["session_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|id| {
                    let title = titles
                        .iter()
                        .find(|t| sessions[&("b", **t)] == id.as_str().unwrap())
                        .unwrap();
                    sessions[&("a", *title)].clone()
                })
                .collect();
            let mut got: Vec<String> = fields["session_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|id| id.as_str().unwrap().to_owned())
                .collect();
            expected.sort();
            got.sort();
            assert_eq!(got, expected, "{name}: sessions of {row}");
        }
        if name == "attendees.xlsx" {
            let done = committed_answers(&app, &token, view["id"].as_str().unwrap()).await;
            assert_eq!(done.len(), people.len());
        }
    }
}

#[tokio::test]
async fn a_row_the_server_fails_to_register_is_failed_and_the_rest_are_registered() {
    let app = spawn_app().await;
    let token = setup(&app).await;
    // A rule of the database the service knows nothing of: registering that row is a server
    // error, every time.
    app.db
        .client()
        .await
        .batch_execute(
            "CREATE FUNCTION refuse_broken() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN \
                 IF NEW.email = 'broken@example.org' THEN \
                     RAISE EXCEPTION 'a rule the service does not know'; \
                 END IF; \
                 RETURN NEW; \
             END $$; \
             CREATE TRIGGER refuse_broken BEFORE INSERT ON registrations \
             FOR EACH ROW EXECUTE FUNCTION refuse_broken();",
        )
        .await
        .unwrap();
    let csv = "full_name,email\n\
               Первый,first@example.org\n\
               Сломанный,broken@example.org\n\
               Третий,third@example.org\n";
    let answer = upload_csv(&app, &token, csv).await;
    answer.assert_status(201);
    let id = answer.json()["id"].as_str().unwrap().to_owned();
    commit(&app, &token, &id).await.assert_status(202);

    // Not retried for ever: the import is committed within a minute (it takes a second).
    let done = committed_within(&app, &token, &id, Duration::from_secs(60)).await;
    assert_eq!(
        statuses(&done),
        vec![
            (2, "created".to_owned()),
            (3, "failed".to_owned()),
            (4, "created".to_owned()),
        ]
    );
    let error = &done["rows"]["items"][1]["error"];
    assert_eq!(error["code"], "internal_error");
    assert!(error["detail"].as_str().unwrap().contains("log"), "{error}");
    // Nothing of the failed row is registered.
    assert_eq!(
        count(&app.db, "SELECT count(*) FROM registrations").await,
        2
    );
}
