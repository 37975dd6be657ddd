//! Printable badges, looked at as a person would: the PDF's pages rendered to images with
//! poppler's `pdftoppm`, the QR code read back from the image and checked in with, the text
//! read with `pdftotext`, the fonts listed with `pdffonts`. poppler-utils must be installed (`.ci/run` installs it).

use std::process::Command;

use serde_json::{Value, json};

use crate::helpers::{TestApp, Tokens, device_key, qr_code, registration_body, spawn_app};

const LONG_NAME: &str = "Константинопольская-Преображенская Анна-Мария Александровна";

fn poppler(tool: &str) -> String {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "{tool} is missing: install Debian's poppler-utils (apt-get install poppler-utils)"
    );
    tool.to_owned()
}

/// The PDF's pages as greyscale images at `dpi`.
fn pages(pdf: &[u8], dpi: u32) -> Vec<image::GrayImage> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("badges.pdf");
    std::fs::write(&file, pdf).unwrap();
    let status = Command::new(poppler("pdftoppm"))
        .args(["-png", "-gray", "-r", &dpi.to_string()])
        .arg(&file)
        .arg(dir.path().join("page"))
        .status()
        .unwrap();
    assert!(status.success(), "pdftoppm could not render the PDF");
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    names.sort();
    names
        .iter()
        .map(|p| image::open(p).unwrap().into_luma8())
        .collect()
}

/// Every badge of a page cut out, as a person with scissors would (the cutting marks'
/// grid: `columns` × `rows` badges of `w` × `h` mm centred on A4), its QR codes decoded.
fn cut_and_read(page: &image::GrayImage, dpi: u32, grid: (u32, u32, f32, f32)) -> Vec<String> {
    let (columns, rows, w, h) = grid;
    let px = |mm: f32| (mm / 25.4 * dpi as f32).round() as u32;
    let left = (210.0 - columns as f32 * w) / 2.0;
    let top = (297.0 - rows as f32 * h) / 2.0;
    let mut found = Vec::new();
    for row in 0..rows {
        for column in 0..columns {
            let badge = image::imageops::crop_imm(
                page,
                px(left + column as f32 * w),
                px(top + row as f32 * h),
                px(w),
                px(h),
            )
            .to_image();
            found.extend(qr_codes(&badge));
        }
    }
    found
}

/// Every QR code found on the image, decoded.
fn qr_codes(page: &image::GrayImage) -> Vec<String> {
    let mut prepared = rqrr::PreparedImage::prepare(page.clone());
    let mut found: Vec<String> = prepared
        .detect_grids()
        .iter()
        .filter_map(|grid| grid.decode().ok().map(|(_, text)| text))
        .collect();
    found.sort();
    found
}

fn text_of(pdf: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("badges.pdf");
    std::fs::write(&file, pdf).unwrap();
    let out = Command::new(poppler("pdftotext"))
        .args(["-layout"])
        .arg(&file)
        .arg("-")
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// The fonts `pdffonts` lists, each asserted to be embedded in the PDF (a printer or viewer
/// without DejaVu must not substitute a font that lacks Cyrillic).
fn embedded_fonts(pdf: &[u8]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("badges.pdf");
    std::fs::write(&file, pdf).unwrap();
    let out = Command::new(poppler("pdffonts"))
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "pdffonts could not read the PDF");
    let listing = String::from_utf8(out.stdout).unwrap();
    // name, type, encoding, then "emb sub uni" (yes/no each) and the object's id: read
    // from the end, as a type ("CID TrueType") has spaces.
    let fonts: Vec<String> = listing
        .lines()
        .skip(2)
        .map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            assert!(words.len() >= 7, "not a font line: {line}\n{listing}");
            let emb = words[words.len() - 5];
            assert_eq!(emb, "yes", "not embedded: {line}\n{listing}");
            words[0].to_owned()
        })
        .collect();
    assert!(!fonts.is_empty(), "no fonts:\n{listing}");
    fonts
}

/// pdfinfo's page count and the first page's size in points.
fn page_info(pdf: &[u8]) -> (usize, (f64, f64)) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("badges.pdf");
    std::fs::write(&file, pdf).unwrap();
    let out = Command::new(poppler("pdfinfo"))
        .arg(&file)
        .output()
        .unwrap();
    let info = String::from_utf8(out.stdout).unwrap();
    let value = |key: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {key} in {info}"))
            .to_owned()
    };
    let pages = value("Pages:").parse().unwrap();
    // "Page size:      297.638 x 419.528 pts"
    let size = value("Page size:");
    let mut numbers = size
        .split_whitespace()
        .filter_map(|w| w.parse::<f64>().ok());
    (pages, (numbers.next().unwrap(), numbers.next().unwrap()))
}

fn assert_size_mm(size: (f64, f64), w_mm: f64, h_mm: f64) {
    let mm = |pt: f64| pt * 25.4 / 72.0;
    assert!(
        (mm(size.0) - w_mm).abs() < 0.5 && (mm(size.1) - h_mm).abs() < 0.5,
        "page is {:.1} × {:.1} mm, not {w_mm} × {h_mm}",
        mm(size.0),
        mm(size.1)
    );
}

async fn event(app: &TestApp) -> (Tokens, String) {
    let admin = app.admin().await;
    app.event(&admin.access, "a", json!({})).await;
    let session = app
        .session(&admin.access, "a", json!({"capacity": 100}))
        .await;
    (admin, session["id"].as_str().unwrap().to_owned())
}

async fn register(app: &TestApp, email: &str, extra: Value, sessions: &[&str]) -> String {
    let mut body = registration_body(email, sessions);
    crate::helpers::merge(&mut body, extra);
    let answer = app
        .post("/api/v1/events/a/registrations", None, &body)
        .await;
    answer.assert_status(201);
    answer.json()["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_qr_code_read_from_a_rendered_badge_is_the_signed_code_the_desk_checks_in() {
    let app = spawn_app().await;
    let (admin, session) = event(&app).await;
    let id = register(
        &app,
        "anna@example.org",
        json!({"full_name": LONG_NAME, "organisation": "Администрация города Мончегорска",
               "category": "government"}),
        &[&session],
    )
    .await;

    let answer = app
        .get(
            &format!("/api/v1/registrations/{id}/badge.pdf"),
            Some(&admin.access),
        )
        .await;

    answer.assert_status(200);
    assert_eq!(answer.header("content-type"), Some("application/pdf"));
    assert_eq!(answer.header("badge-count"), Some("1"));
    let (count, size) = page_info(&answer.bytes);
    assert_eq!(count, 1);
    assert_size_mm(size, 105.0, 148.0);
    let rendered = pages(&answer.bytes, 150);
    let read = qr_codes(&rendered[0]);
    let expected = qr_code(&app, &admin.access, "a", &id).await;
    assert_eq!(read, std::slice::from_ref(&expected), "the badge's QR code");
    let desk = device_key(&app, &admin.access, "a", &["checkin:write"]).await;
    let checked_in = app
        .post(
            "/api/v1/events/a/checkins",
            Some(&desk),
            &json!({"qr_code": read[0]}),
        )
        .await;
    checked_in.assert_status(201);
    assert_eq!(checked_in.json()["registration_id"], id.as_str());

    let fonts = embedded_fonts(&answer.bytes);
    assert!(fonts.iter().all(|f| f.contains("DejaVuSans")), "{fonts:?}");
    let text = text_of(&answer.bytes);
    for words in [
        "Константинопольская-",
        "Преображенская",
        "Александровна",
        "Администрация",
        "Мончегорска",
        "ВЛАСТЬ",
        "Мурманская международная",
    ] {
        assert!(
            text.contains(words),
            "{words:?} is not on the badge:\n{text}"
        );
    }
}

#[tokio::test]
async fn sheets_of_four_and_eight_hold_every_badge_with_a_readable_code() {
    let app = spawn_app().await;
    let (admin, session) = event(&app).await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(
            register(
                &app,
                &format!("p{n}@example.org"),
                json!({"full_name": format!("Участник Номер {n}")}),
                &[&session],
            )
            .await,
        );
    }
    let mut expected = Vec::new();
    for id in &ids {
        expected.push(qr_code(&app, &admin.access, "a", id).await);
    }
    expected.sort();

    for (layout, pages_expected, dpi, grid) in [
        ("a4x4", 2, 150, Some((2, 2, 95.0, 138.0))),
        ("a4x8", 1, 300, Some((2, 4, 95.0, 68.0))),
        ("a6", 5, 150, None),
    ] {
        let answer = app
            .get(
                &format!("/api/v1/events/a/badges.pdf?layout={layout}"),
                Some(&admin.access),
            )
            .await;
        answer.assert_status(200);
        assert_eq!(answer.header("badge-count"), Some("5"));
        let (count, size) = page_info(&answer.bytes);
        assert_eq!(count, pages_expected, "{layout}");
        if layout == "a6" {
            assert_size_mm(size, 105.0, 148.0);
        } else {
            assert_size_mm(size, 210.0, 297.0);
        }
        let mut read: Vec<String> = pages(&answer.bytes, dpi)
            .iter()
            .flat_map(|page| match grid {
                Some(grid) => cut_and_read(page, dpi, grid),
                None => qr_codes(page),
            })
            .collect();
        read.sort();
        assert_eq!(read, expected, "{layout}: every badge's code, once");
    }
}

#[tokio::test]
async fn filters_choose_the_badges_and_printing_marks_them_printed_in_the_queue_s_way() {
    let app = spawn_app().await;
    let (admin, session) = event(&app).await;
    let media = register(
        &app,
        "press@example.org",
        json!({"category": "media", "full_name": "Пресса Первая"}),
        &[&session],
    )
    .await;
    let other = register(
        &app,
        "biz@example.org",
        json!({"category": "business", "full_name": "Бизнес Второй"}),
        &[],
    )
    .await;
    let printer = device_key(&app, &admin.access, "a", &["badges:print"]).await;
    // A job waits for the business badge in the print queue.
    let claimed = app
        .post(
            "/api/v1/events/a/print-jobs/claim",
            Some(&printer),
            &json!({}),
        )
        .await;
    claimed.assert_status(200);

    let by_category = app
        .get("/api/v1/events/a/badges.pdf?category=media", Some(&printer))
        .await;
    by_category.assert_status(200);
    assert!(text_of(&by_category.bytes).contains("Пресса"));
    assert!(!text_of(&by_category.bytes).contains("Бизнес"));
    let by_session = app
        .get(
            &format!("/api/v1/events/a/badges.pdf?session={session}"),
            Some(&printer),
        )
        .await;
    assert_eq!(by_session.header("badge-count"), Some("1"));
    let by_ids = app
        .get(
            &format!("/api/v1/events/a/badges.pdf?ids={other},{media}"),
            Some(&printer),
        )
        .await;
    assert_eq!(by_ids.header("badge-count"), Some("2"));

    let printed = app
        .get(
            &format!("/api/v1/events/a/badges.pdf?ids={other}&mark_printed=true"),
            Some(&printer),
        )
        .await;
    printed.assert_status(200);

    // The feed shows the change once every older transaction of the server has ended.
    let mut printed_at = Value::Null;
    for _ in 0..200 {
        let feed = app
            .get("/api/v1/events/a/attendees?limit=1000", Some(&admin.access))
            .await
            .json();
        if let Some(record) =
            feed["items"].as_array().unwrap().iter().find(|a| {
                a["registration_id"] == other.as_str() && a["badge_printed_at"].is_string()
            })
        {
            printed_at = record["badge_printed_at"].clone();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        printed_at.is_string(),
        "the badge does not count as printed"
    );
    let jobs = app
        .get("/api/v1/events/a/print-jobs", Some(&admin.access))
        .await
        .json();
    let open: Vec<&Value> = jobs["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["registration_id"] == other.as_str() && j["status"] != "done")
        .collect();
    assert!(
        open.is_empty(),
        "the queue still holds the printed badge: {open:?}"
    );
    let left = app
        .get(
            "/api/v1/events/a/badges.pdf?not_printed=true",
            Some(&printer),
        )
        .await;
    assert_eq!(left.header("badge-count"), Some("1"));
    assert!(text_of(&left.bytes).contains("Пресса"));
    app.get(
        &format!("/api/v1/events/a/badges.pdf?ids={other}&not_printed=true"),
        Some(&printer),
    )
    .await
    .assert_problem(404, "no_badges");
}

#[tokio::test]
async fn bad_filters_are_refused_by_name() {
    let app = spawn_app().await;
    let (admin, _) = event(&app).await;
    register(&app, "anna@example.org", json!({}), &[]).await;

    let bad_ids = app
        .get("/api/v1/events/a/badges.pdf?ids=abc", Some(&admin.access))
        .await
        .assert_problem(422, "validation_failed");
    assert_eq!(bad_ids["errors"][0]["field"], "ids");
    let bad_layout = app
        .get("/api/v1/events/a/badges.pdf?layout=a3", Some(&admin.access))
        .await;
    bad_layout.assert_status(400);
    assert!(bad_layout.text.contains("layout"), "{}", bad_layout.text);
    let unknown = app
        .get(
            "/api/v1/events/a/badges.pdf?category=vip",
            Some(&admin.access),
        )
        .await
        .assert_problem(422, "validation_failed");
    assert_eq!(unknown["errors"][0]["field"], "category");
}

#[tokio::test]
async fn a_participant_prints_their_own_badge_but_cannot_mark_it_printed() {
    let app = spawn_app().await;
    let (_, session) = event(&app).await;
    let answer = app
        .register("a", "anna@example.org", &[&session])
        .await
        .json();
    let (id, token) = (
        answer["id"].as_str().unwrap().to_owned(),
        answer["manage_token"].as_str().unwrap().to_owned(),
    );

    app.get(
        &format!("/api/v1/registrations/{id}/badge.pdf"),
        Some(&token),
    )
    .await
    .assert_status(200);
    app.get(
        &format!("/api/v1/registrations/{id}/badge.pdf?mark_printed=true"),
        Some(&token),
    )
    .await
    .assert_problem(403, "forbidden");
}

/// A 2 × 2 PNG.
fn tiny_png() -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, 2, 2);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().unwrap();
    writer
        .write_image_data(&[200, 30, 30, 30, 200, 30, 30, 30, 200, 10, 10, 10])
        .unwrap();
    writer.finish().unwrap();
    bytes
}

#[tokio::test]
async fn the_template_sets_fields_colours_labels_and_a_logo_and_the_badge_follows_it() {
    let app = spawn_app().await;
    let (admin, session) = event(&app).await;
    let id = register(
        &app,
        "anna@example.org",
        json!({"category": "media", "city": "Мончегорск", "position": "Корреспондент"}),
        &[&session],
    )
    .await;
    let defaults = app
        .get("/api/v1/events/a/badge-template", Some(&admin.access))
        .await;
    defaults.assert_status(200);
    assert_eq!(defaults.json()["category_labels"]["media"], "СМИ");
    assert_eq!(defaults.json()["updated_at"], Value::Null);
    use base64::Engine;
    let logo = base64::engine::general_purpose::STANDARD.encode(tiny_png());

    let stored = app
        .put(
            "/api/v1/events/a/badge-template",
            Some(&admin.access),
            &json!({
                "fields": {"organisation": true, "position": false, "city": true, "event_title": false},
                "layout": "a4x8",
                "category_colours": {"media": "#F4D03F"},
                "category_labels": {"media": "Пресса"},
                "logo": {"media_type": "image/png", "data": logo},
            }),
        )
        .await;

    stored.assert_status(200);
    let stored = stored.json();
    assert_eq!(stored["category_colours"]["media"], "#F4D03F");
    assert_eq!(stored["category_colours"]["government"], "#1F4E9C");
    assert_eq!(stored["logo"]["data"], logo.as_str());
    let pdf = app
        .get(
            &format!("/api/v1/registrations/{id}/badge.pdf"),
            Some(&admin.access),
        )
        .await;
    pdf.assert_status(200);
    let (_, size) = page_info(&pdf.bytes);
    assert_size_mm(size, 210.0, 297.0);
    embedded_fonts(&pdf.bytes);
    let text = text_of(&pdf.bytes);
    assert!(
        text.contains("ПРЕССА") && text.contains("Мончегорск"),
        "{text}"
    );
    assert!(
        !text.contains("Корреспондент") && !text.contains("Мурманская"),
        "{text}"
    );
    assert_eq!(qr_codes(&pages(&pdf.bytes, 200)[0]).len(), 1);
}

#[tokio::test]
async fn a_bad_template_is_refused_field_by_field_and_nothing_is_stored() {
    let app = spawn_app().await;
    let (admin, _) = event(&app).await;
    use base64::Engine;
    let broken = base64::engine::general_purpose::STANDARD.encode(b"\x89PNG\r\n\x1a\nnot really");
    let huge = base64::engine::general_purpose::STANDARD.encode(vec![0u8; 140 * 1024]);

    for (body, field) in [
        (
            json!({"category_colours": {"media": "red"}}),
            "category_colours.media",
        ),
        (
            json!({"category_colours": {"vip": "#FFFFFF"}}),
            "category_colours.vip",
        ),
        (
            json!({"category_labels": {"media": ""}}),
            "category_labels.media",
        ),
        (
            json!({"logo": {"media_type": "image/png", "data": broken}}),
            "logo.data",
        ),
        (
            json!({"logo": {"media_type": "image/gif", "data": "R0lGODlh"}}),
            "logo.media_type",
        ),
        (
            json!({"logo": {"media_type": "image/png", "data": "***"}}),
            "logo.data",
        ),
        (
            json!({"logo": {"media_type": "image/png", "data": huge}}),
            "logo.data",
        ),
    ] {
        let problem = app
            .put(
                "/api/v1/events/a/badge-template",
                Some(&admin.access),
                &body,
            )
            .await
            .assert_problem(422, "validation_failed");
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }
    let after = app
        .get("/api/v1/events/a/badge-template", Some(&admin.access))
        .await
        .json();
    assert_eq!(after["updated_at"], Value::Null);
}
