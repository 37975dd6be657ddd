//! Email to participants, delivered to a real SMTP server (aiosmtpd, tests/support/smtp_sink.py)
//! and read back with a MIME parser.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use mailparse::{DispositionType, MailHeaderMap, ParsedMail};
use registrar::config::Config;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::helpers::{TestApp, another_instance_with, registration_body, spawn_app_with};
use crate::python::{python, support_dir};
use crate::registrations::{count, id_of};

/// `count` once it is `expected`, or after five seconds: a mail's outcome is recorded once
/// its round's mails are all out, a moment after the server has it.
async fn count_soon(app: &TestApp, sql: &str, expected: i64) -> i64 {
    let mut found = count(app, sql).await;
    for _ in 0..100 {
        if found == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        found = count(app, sql).await;
    }
    found
}

/// An SMTP server writing each message it accepts to a file.
pub struct SmtpServer {
    pub port: u16,
    dir: PathBuf,
    child: Option<tokio::process::Child>,
}

/// A port nothing listens on (yet).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl SmtpServer {
    pub async fn start() -> Self {
        let mut server = SmtpServer::down();
        server.up().await;
        server
    }

    /// A server that is not running yet (its port is free).
    pub fn down() -> Self {
        let dir = std::env::temp_dir().join(format!("smtp-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        SmtpServer {
            port: free_port(),
            dir,
            child: None,
        }
    }

    pub async fn up(&mut self) {
        let mut child = tokio::process::Command::new(python())
            .arg(support_dir().join("smtp_sink.py"))
            .args(["--port", &self.port.to_string(), "--dir"])
            .arg(&self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("starting the SMTP server");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("the SMTP server started in time")
            .unwrap();
        assert_eq!(ready.as_deref(), Some("ready"));
        self.child = Some(child);
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received so far, in the order received.
    pub fn messages(&self) -> Vec<Vec<u8>> {
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .map(|p| (std::fs::metadata(&p).unwrap().modified().unwrap(), p))
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|(_, p)| std::fs::read(p).unwrap())
            .collect()
    }

    /// Waits until `n` messages came (up to 30 s) and returns all of them, parsed.
    pub async fn wait_for(&self, n: usize) -> Vec<Mail> {
        for _ in 0..600 {
            let messages = self.messages();
            if messages.len() >= n {
                return messages.iter().map(|m| Mail::parse(m)).collect();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{} of {n} messages came", self.messages().len());
    }

    /// The first message to `to` whose subject starts with `subject`.
    pub async fn with_subject(&self, to: &str, subject: &str) -> Mail {
        for _ in 0..600 {
            if let Some(mail) = self
                .messages()
                .iter()
                .map(|m| Mail::parse(m))
                .find(|m| m.to == to && m.subject.starts_with(subject))
            {
                return mail;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no message to {to} about {subject} came");
    }

    /// The next message to `to` after the first `seen` ones (sent to anyone).
    pub async fn next_to(&self, to: &str, seen: usize) -> Mail {
        for _ in 0..600 {
            if let Some(mail) = self
                .messages()
                .iter()
                .skip(seen)
                .map(|m| Mail::parse(m))
                .find(|m| m.to == to)
            {
                return mail;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no message to {to} came");
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A message as a participant's mail program shows it.
#[derive(Debug)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub message_id: String,
    pub text: String,
    pub html: String,
    /// The inline image: its content id and bytes.
    pub inline: Option<(String, Vec<u8>)>,
    /// The attached calendar: its file name and text.
    pub calendar: Option<(String, String)>,
}

fn walk<'a>(part: &'a ParsedMail<'a>, parts: &mut Vec<&'a ParsedMail<'a>>) {
    parts.push(part);
    for sub in &part.subparts {
        walk(sub, parts);
    }
}

impl Mail {
    pub fn parse(raw: &[u8]) -> Mail {
        let parsed = mailparse::parse_mail(raw).unwrap();
        let mut parts = Vec::new();
        walk(&parsed, &mut parts);
        let text_of = |mime: &str| {
            parts
                .iter()
                .find(|p| {
                    p.ctype.mimetype == mime
                        && p.get_content_disposition().disposition == DispositionType::Inline
                })
                .map(|p| p.get_body().unwrap())
                .unwrap_or_default()
        };
        let inline = parts
            .iter()
            .find(|p| p.ctype.mimetype == "image/png")
            .map(|p| {
                let cid = p.headers.get_first_value("Content-ID").unwrap_or_default();
                assert_eq!(
                    p.get_content_disposition().disposition,
                    DispositionType::Inline
                );
                (cid, p.get_body_raw().unwrap())
            });
        let calendar = parts
            .iter()
            .find(|p| p.ctype.mimetype == "text/calendar")
            .map(|p| {
                let disposition = p.get_content_disposition();
                assert_eq!(disposition.disposition, DispositionType::Attachment);
                (
                    disposition
                        .params
                        .get("filename")
                        .cloned()
                        .unwrap_or_default(),
                    p.get_body().unwrap(),
                )
            });
        Mail {
            to: parsed.headers.get_first_value("X-Envelope-To").unwrap(),
            subject: parsed.headers.get_first_value("Subject").unwrap(),
            message_id: parsed.headers.get_first_value("Message-ID").unwrap(),
            text: text_of("text/plain"),
            html: text_of("text/html"),
            inline,
            calendar,
        }
    }

    /// The manage link's token, from the plain-text part.
    pub fn token(&self) -> String {
        let start = self.text.find("t=rgm_").expect("a manage link") + 2;
        self.text[start..start + 47].to_owned()
    }
}

pub const LINK_TEMPLATE: &str = "https://portal.example.org/r/{id}?t={token}";

/// Configuration sending mail to `smtp`, with the mail rounds polling often.
fn sending_to(smtp: &SmtpServer, config: &mut Config) {
    config.smtp_url = Some(smtp.url().into());
    config.email_from = Some("Деловая неделя <noreply@mmdn.example.org>".into());
    config.email_poll_ms = 100;
}

/// An app sending mail to `smtp`.
pub async fn mail_app(smtp: &SmtpServer, configure: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_with(|config| {
        sending_to(smtp, config);
        configure(config);
    })
    .await
}

async fn register_as(app: &TestApp, event: &str, body: Value, accept_language: &str) -> Value {
    let answer = app
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/events/{event}/registrations"),
        )
        .header("accept-language", accept_language)
        .json(&body)
        .send()
        .await;
    answer.assert_status(201);
    answer.json()
}

fn body_for(email: &str, name: &str, sessions: &[&str]) -> Value {
    let mut body = registration_body(email, sessions);
    body["full_name"] = json!(name);
    body
}

fn parse_calendar(text: &str) -> ical::parser::ical::component::IcalCalendar {
    ical::IcalParser::new(std::io::BufReader::new(text.as_bytes()))
        .next()
        .expect("a calendar")
        .unwrap_or_else(|e| panic!("not a calendar ({e}):\n{text}"))
}

/// What a participant in `language` gets, kind by kind: the subjects' beginnings, and words
/// of the text each mail must hold.
struct Expected {
    registered: &'static str,
    waitlisted: &'static str,
    waitlist_place: &'static str,
    promoted: &'static str,
    cancelled: &'static str,
    session_changed: &'static str,
    session_cancelled: &'static str,
    manage_link: &'static str,
}

const RU: Expected = Expected {
    registered: "Вы зарегистрированы: ",
    waitlisted: "Вы в листе ожидания: ",
    waitlist_place: "Лист ожидания: вы 1-й в очереди.",
    promoted: "Для вас освободилось место: ",
    cancelled: "Регистрация отменена: ",
    session_changed: "Изменения в программе: ",
    session_cancelled: "Сессия отменена: ",
    manage_link: "Ссылка на вашу регистрацию: ",
};

const EN: Expected = Expected {
    registered: "You are registered: ",
    waitlisted: "You are on the waitlist: ",
    waitlist_place: "Waitlist: you are number 1 in line.",
    promoted: "A seat is yours: ",
    cancelled: "Your registration is cancelled: ",
    session_changed: "Programme change: ",
    session_cancelled: "Session cancelled: ",
    manage_link: "Your registration link: ",
};

/// Two participants go through every mail a registration gets: registered, waitlisted,
/// cancelled, promoted, a session moved, a session cancelled, a new link.
async fn every_kind_of_mail(language: &str, expected: Expected) {
    let smtp = SmtpServer::start().await;
    let app = mail_app(&smtp, |_| {}).await;
    let token = app.admin().await.access;
    let title = "Деловая неделя <Мончегорск> & «Север»";
    app.event(
        &token,
        "mmdn",
        json!({"title": title, "manage_url_template": LINK_TEMPLATE}),
    )
    .await;
    let venue = id_of(
        &app.post(
            "/api/v1/events/mmdn/venues",
            Some(&token),
            &json!({"name": "ДК «Металлург»", "city": "Мончегорск"}),
        )
        .await
        .json(),
    );
    let small = id_of(
        &app.session(
            &token,
            "mmdn",
            json!({"title": "Социальное партнёрство", "capacity": 1, "venue_id": venue}),
        )
        .await,
    );
    let other = id_of(
        &app.session(
            &token,
            "mmdn",
            json!({"title": "Волонтёрство", "starts_at": "2027-04-23T11:00:00+03:00",
                   "ends_at": "2027-04-23T13:00:00+03:00"}),
        )
        .await,
    );
    let anna_name = "Анна <b>Иванова</b>";
    let mut body = body_for("anna@example.org", anna_name, &[&small, &other]);
    body["language"] = json!(language);
    let anna = register_as(
        &app,
        "mmdn",
        body,
        // The body's language wins over the header.
        if language == "ru" { "en" } else { "ru" },
    )
    .await;
    assert_eq!(anna["language"], language);
    let boris = register_as(
        &app,
        "mmdn",
        body_for("boris@example.org", "Борис Петров", &[&small]),
        if language == "ru" {
            "ru-RU,ru;q=0.9"
        } else {
            "de-DE, en-GB;q=0.8, ru;q=0.5"
        },
    )
    .await;
    assert_eq!(boris["language"], language);

    // Registered: the sessions, the badge's QR code inline, the sessions as a calendar.
    let registered = smtp.next_to("anna@example.org", 0).await;
    assert_eq!(
        registered.subject,
        format!("{}{title}", expected.registered)
    );
    assert!(registered.text.contains(anna_name), "{}", registered.text);
    assert!(registered.text.contains("Социальное партнёрство"));
    assert!(
        registered
            .html
            .contains("Анна &lt;b&gt;Иванова&lt;&#x2f;b&gt;"),
        "{}",
        registered.html
    );
    assert!(!registered.html.contains("<b>Иванова"));
    assert!(registered.html.contains("&lt;Мончегорск&gt; &amp;"));
    let (cid, png) = registered.inline.clone().expect("the QR code");
    assert_eq!(cid, "<badge-qr>");
    assert!(registered.html.contains("src=\"cid:badge-qr\""));
    let anna_token = registered.token();
    assert_eq!(Some(anna_token.as_str()), anna["manage_token"].as_str());
    let anna_id = id_of(&anna);
    let link = LINK_TEMPLATE
        .replace("{id}", &anna_id)
        .replace("{token}", &anna_token);
    assert!(registered.text.contains(&link));
    let badge = app
        .client
        .get(format!(
            "{}/api/v1/registrations/{anna_id}/qr.png",
            app.address
        ))
        .bearer_auth(&anna_token)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(png, badge.to_vec(), "the badge's own QR code");
    let (file, ics) = registered.calendar.clone().expect("the calendar");
    assert_eq!(file, "sessions.ics");
    let calendar = parse_calendar(&ics);
    let mut summaries: Vec<String> = calendar
        .events
        .iter()
        .map(|e| {
            e.properties
                .iter()
                .find(|p| p.name == "SUMMARY")
                .and_then(|p| p.value.clone())
                .unwrap()
        })
        .collect();
    summaries.sort();
    assert_eq!(summaries, ["Волонтёрство", "Социальное партнёрство"]);

    // Waitlisted, with its place in the queue; no badge yet.
    let waitlisted = smtp.next_to("boris@example.org", 0).await;
    assert_eq!(
        waitlisted.subject,
        format!("{}{title}", expected.waitlisted)
    );
    assert!(
        waitlisted.text.contains(expected.waitlist_place),
        "{}",
        waitlisted.text
    );
    assert!(waitlisted.html.contains(expected.waitlist_place));
    assert!(waitlisted.inline.is_none());

    // Anna leaves the small session: Boris is promoted.
    let seen = smtp.messages().len();
    app.patch(
        &format!("/api/v1/registrations/{anna_id}"),
        Some(&anna_token),
        &json!({"session_ids": [other]}),
    )
    .await
    .assert_status(200);
    let promoted = smtp.next_to("boris@example.org", seen).await;
    assert_eq!(
        promoted.subject,
        format!("{}Социальное партнёрство", expected.promoted)
    );
    assert!(promoted.inline.is_some() && promoted.calendar.is_some());

    // The other session moves: Anna, who holds a place in it, hears of it.
    let seen = smtp.messages().len();
    app.patch(
        &format!("/api/v1/events/mmdn/sessions/{other}"),
        Some(&token),
        &json!({"starts_at": "2027-04-23T15:00:00+03:00", "ends_at": "2027-04-23T17:00:00+03:00"}),
    )
    .await
    .assert_status(200);
    let changed = smtp.next_to("anna@example.org", seen).await;
    assert_eq!(
        changed.subject,
        format!("{}Волонтёрство", expected.session_changed)
    );
    let when = if language == "ru" {
        "23 апреля 2027 г., 15:00–17:00"
    } else {
        "23 April 2027, 15:00–17:00"
    };
    assert!(changed.text.contains(when), "{}", changed.text);

    // A new link, asked for by address: the old token stops working.
    let seen = smtp.messages().len();
    app.post(
        "/api/v1/events/mmdn/registrations/resend",
        None,
        &json!({"email": "ANNA@example.org"}),
    )
    .await
    .assert_status(202);
    let relinked = smtp.next_to("anna@example.org", seen).await;
    assert_eq!(relinked.subject, format!("{}{title}", expected.manage_link));
    let new_token = relinked.token();
    assert_ne!(new_token, anna_token);
    app.get(
        &format!("/api/v1/registrations/{anna_id}"),
        Some(&anna_token),
    )
    .await
    .assert_problem(401, "invalid_token");
    app.get(
        &format!("/api/v1/registrations/{anna_id}"),
        Some(&new_token),
    )
    .await
    .assert_status(200);

    // The session is cancelled.
    let seen = smtp.messages().len();
    app.patch(
        &format!("/api/v1/events/mmdn/sessions/{other}"),
        Some(&token),
        &json!({"status": "cancelled"}),
    )
    .await
    .assert_status(200);
    let cancelled_session = smtp.next_to("anna@example.org", seen).await;
    assert_eq!(
        cancelled_session.subject,
        format!("{}Волонтёрство", expected.session_cancelled)
    );

    // Anna cancels.
    let seen = smtp.messages().len();
    app.delete(
        &format!("/api/v1/registrations/{anna_id}"),
        Some(&new_token),
    )
    .await
    .assert_status(200);
    let cancelled = smtp.next_to("anna@example.org", seen).await;
    assert_eq!(cancelled.subject, format!("{}{title}", expected.cancelled));
    assert!(cancelled.text.contains(anna_name));

    // Seven mails, each once, each with an id of its own.
    let all = smtp.wait_for(7).await;
    assert_eq!(all.len(), 7);
    let mut ids: Vec<&str> = all.iter().map(|m| m.message_id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 7);
    // Counted once recorded, a moment after the server has the mail.
    let sent = "registrar_notification_deliveries_total{channel=\"email\",outcome=\"sent\"} 7";
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = app.get("/metrics", None).await.text;
        if metrics.contains(sent) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(metrics.contains(sent), "{metrics}");
}

#[tokio::test]
async fn every_kind_of_mail_reads_well_in_russian() {
    every_kind_of_mail("ru", RU).await;
}

#[tokio::test]
async fn every_kind_of_mail_reads_well_in_english() {
    every_kind_of_mail("en", EN).await;
}

#[tokio::test]
async fn a_registration_that_rolled_back_mails_nothing() {
    let smtp = SmtpServer::start().await;
    let app = mail_app(&smtp, |_| {}).await;
    let token = app.admin().await.access;
    app.event(&token, "mmdn", json!({})).await;
    let open = id_of(&app.session(&token, "mmdn", json!({})).await);
    let full = id_of(
        &app.session(
            &token,
            "mmdn",
            json!({"capacity": 0, "waitlist_enabled": false,
                   "starts_at": "2027-04-23T11:00:00+03:00", "ends_at": "2027-04-23T13:00:00+03:00"}),
        )
        .await,
    );

    app.register("mmdn", "refused@example.org", &[&open, &full])
        .await
        .assert_problem(409, "session_full");
    app.register("mmdn", "anna@example.org", &[&open])
        .await
        .assert_status(201);

    let mails = smtp.wait_for(1).await;
    // Time for a mail of the refused registration to come, had it been queued.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(smtp.messages().len(), 1);
    assert_eq!(mails[0].to, "anna@example.org");
    assert_eq!(count(&app, "SELECT count(*) FROM email_messages").await, 1);
}

#[tokio::test]
async fn mail_waits_while_smtp_is_down_and_goes_out_when_it_is_back() {
    let mut smtp = SmtpServer::down();
    let app = mail_app(&smtp, |_| {}).await;
    let token = app.admin().await.access;
    app.event(&token, "mmdn", json!({})).await;

    // Registering does not depend on mail.
    app.register("mmdn", "anna@example.org", &[])
        .await
        .assert_status(201);
    let mut failed = 0;
    for _ in 0..200 {
        failed = count(
            &app,
            "SELECT count(*) FROM email_messages WHERE status = 'queued' AND attempts > 0 \
             AND last_error LIKE 'SMTP connection failed%'",
        )
        .await;
        if failed > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rows: Vec<String> = app
        .db
        .client()
        .await
        .query("SELECT row_to_json(m)::text FROM email_messages m", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(failed, 1, "the attempt failed and the mail waits: {rows:?}");

    smtp.up().await;
    // The first retry comes within five seconds.
    let mails = smtp.wait_for(1).await;
    assert_eq!(mails[0].to, "anna@example.org");
    assert_eq!(
        count_soon(
            &app,
            "SELECT count(*) FROM email_messages WHERE status = 'sent'",
            1
        )
        .await,
        1
    );
    let metrics = app.get("/metrics", None).await.text;
    assert!(
        metrics.contains(
            "registrar_notification_deliveries_total{channel=\"email\",outcome=\"retry\"}"
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn without_smtp_the_service_registers_and_keeps_the_mail() {
    let app = spawn_app_with(|config| {
        config.smtp_url = None;
        config.email_poll_ms = 100;
    })
    .await;
    let token = app.admin().await.access;
    app.event(&token, "mmdn", json!({})).await;
    app.register("mmdn", "anna@example.org", &[])
        .await
        .assert_status(201);
    let mut queued = 0;
    for _ in 0..200 {
        queued = count(
            &app,
            "SELECT count(*) FROM email_messages WHERE status = 'queued' AND attempts = 0",
        )
        .await;
        if queued > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(queued, 1);
}

#[tokio::test]
async fn asking_for_a_new_link_answers_alike_for_unknown_addresses_and_takes_the_registration_over()
{
    let smtp = SmtpServer::start().await;
    let app = mail_app(&smtp, |_| {}).await;
    let token = app.admin().await.access;
    app.event(
        &token,
        "mmdn",
        json!({"manage_url_template": LINK_TEMPLATE}),
    )
    .await;
    // Someone registers Anna's address, with a key that makes the request safe to retry.
    let body = registration_body("anna@example.org", &[]);
    let register = || {
        app.call(reqwest::Method::POST, "/api/v1/events/mmdn/registrations")
            .header("idempotency-key", "portal-0001")
            .json(&body)
            .send()
    };
    let first = register().await;
    first.assert_status(201);
    let intruder_token = first.json()["manage_token"].as_str().unwrap().to_owned();
    let id = id_of(&first.json());
    let replay = register().await;
    assert_eq!(replay.json()["manage_token"], intruder_token.as_str());
    smtp.wait_for(1).await;

    let unknown = app
        .post(
            "/api/v1/events/mmdn/registrations/resend",
            None,
            &json!({"email": "nobody@example.org"}),
        )
        .await;
    let known = app
        .post(
            "/api/v1/events/mmdn/registrations/resend",
            None,
            &json!({"email": "anna@example.org"}),
        )
        .await;
    for answer in [&unknown, &known] {
        answer.assert_status(202);
        assert_eq!(answer.text, "");
        assert_eq!(answer.header("content-type"), None);
    }

    // Anna gets the new link; the token the intruder holds no longer works, and replaying
    // the registration does not hand them the new one.
    let mail = smtp.next_to("anna@example.org", 1).await;
    let anna_token = mail.token();
    app.get(
        &format!("/api/v1/registrations/{id}"),
        Some(&intruder_token),
    )
    .await
    .assert_problem(401, "invalid_token");
    app.get(&format!("/api/v1/registrations/{id}"), Some(&anna_token))
        .await
        .assert_status(200);
    let replay = register().await;
    replay.assert_status(201);
    assert_eq!(replay.json()["id"], id.as_str());
    assert_eq!(replay.json()["manage_token"], Value::Null);
    // Nothing went to the unknown address.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        smtp.messages()
            .iter()
            .all(|m| Mail::parse(m).to == "anna@example.org")
    );
}

#[tokio::test]
async fn asking_for_new_links_is_rate_limited_per_address() {
    let app = spawn_app_with(|config| {
        config.resend_email_limit = 2;
        config.resend_rate_limit = 100;
    })
    .await;
    let token = app.admin().await.access;
    app.event(&token, "mmdn", json!({})).await;
    let ask = async |email: &str| {
        app.post(
            "/api/v1/events/mmdn/registrations/resend",
            None,
            &json!({"email": email}),
        )
        .await
    };
    ask("anna@example.org").await.assert_status(202);
    ask("Anna@Example.org").await.assert_status(202);
    let limited = ask("anna@example.org").await;
    limited.assert_problem(429, "rate_limited");
    assert!(limited.header("retry-after").is_some());
    ask("boris@example.org").await.assert_status(202);
    app.post(
        "/api/v1/events/mmdn/registrations/resend",
        None,
        &json!({"email": "not an address"}),
    )
    .await
    .assert_problem(422, "validation_failed");
}

/// An event whose participants confirm their address, with a session of `capacity` seats.
async fn confirming_event(app: &TestApp, capacity: i64) -> (String, String) {
    let token = app.admin().await.access;
    app.event(
        &token,
        "mmdn",
        json!({"manage_url_template": LINK_TEMPLATE, "require_email_confirmation": true,
               "email_confirmation_hours": 2}),
    )
    .await;
    let session = id_of(
        &app.session(&token, "mmdn", json!({"capacity": capacity}))
            .await,
    );
    (token, session)
}

#[tokio::test]
async fn an_address_not_confirmed_in_time_gives_its_seat_to_the_waitlist() {
    let smtp = SmtpServer::start().await;
    let app = mail_app(&smtp, |_| {}).await;
    let (token, session) = confirming_event(&app, 1).await;

    let anna = app.register("mmdn", "anna@example.org", &[&session]).await;
    anna.assert_status(201);
    let anna = anna.json();
    assert_eq!(
        anna["manage_token"],
        Value::Null,
        "the token goes to the address"
    );
    assert!(anna["confirm_by"].is_string());
    let boris = app.register("mmdn", "boris@example.org", &[&session]).await;
    let boris_id = id_of(&boris.json());
    assert_eq!(boris.json()["sessions"][0]["status"], "waitlisted");

    let confirm = smtp.next_to("anna@example.org", 0).await;
    assert_eq!(
        confirm.subject,
        "Подтвердите адрес почты: VII Мурманская международная деловая неделя"
    );
    assert!(confirm.inline.is_none());
    let anna_token = confirm.token();
    // Boris waits for his address to be confirmed too: his link comes first.
    let boris_mail = smtp.next_to("boris@example.org", 0).await;
    let boris_token = boris_mail.token();
    app.post(
        &format!("/api/v1/registrations/{boris_id}/confirm-email"),
        Some(&boris_token),
        &json!(null),
    )
    .await
    .assert_status(200);

    // Anna's deadline passes.
    app.db
        .client()
        .await
        .execute(
            "UPDATE registrations SET confirm_by = now() - interval '1 second' WHERE id = $1::text::uuid",
            &[&id_of(&anna)],
        )
        .await
        .unwrap();
    let promoted = smtp
        .with_subject("boris@example.org", "Для вас освободилось место")
        .await;
    assert!(
        promoted.text.contains("Место подтверждено."),
        "{}",
        promoted.text
    );
    let view = app
        .get(
            &format!("/api/v1/registrations/{}", id_of(&anna)),
            Some(&token),
        )
        .await
        .json();
    assert_eq!(view["status"], "cancelled");
    let history = app
        .get(
            &format!("/api/v1/registrations/{}/history", id_of(&anna)),
            Some(&token),
        )
        .await
        .json();
    let last = history.as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["action"].clone(), last["actor"].clone()),
        (json!("cancelled"), json!("system"))
    );
    // Following the link now is too late; and no mail tells an address never confirmed that
    // its registration was cancelled.
    app.post(
        &format!("/api/v1/registrations/{}/confirm-email", id_of(&anna)),
        Some(&anna_token),
        &json!(null),
    )
    .await
    .assert_problem(409, "registration_cancelled");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let to_anna: Vec<String> = smtp
        .messages()
        .iter()
        .map(|m| Mail::parse(m))
        .filter(|m| m.to == "anna@example.org")
        .map(|m| m.subject)
        .collect();
    assert_eq!(to_anna.len(), 1, "{to_anna:?}");
}

#[tokio::test]
async fn following_the_link_in_time_keeps_the_registration_and_mails_it() {
    let smtp = SmtpServer::start().await;
    let app = mail_app(&smtp, |_| {}).await;
    let (_, session) = confirming_event(&app, 1).await;
    let anna = register_as(
        &app,
        "mmdn",
        registration_body("anna@example.org", &[&session]),
        "en-GB",
    )
    .await;
    let id = id_of(&anna);
    let confirm = smtp.next_to("anna@example.org", 0).await;
    assert_eq!(
        confirm.subject,
        "Please confirm your email address: VII Мурманская международная деловая неделя"
    );
    assert!(confirm.html.contains("Confirm my address"));

    let confirmed = app
        .post(
            &format!("/api/v1/registrations/{id}/confirm-email"),
            Some(&confirm.token()),
            &json!(null),
        )
        .await;
    confirmed.assert_status(200);
    assert_eq!(confirmed.json()["confirm_by"], Value::Null);
    let registered = smtp.next_to("anna@example.org", 1).await;
    assert!(registered.subject.starts_with("You are registered"));
    assert!(registered.inline.is_some() && registered.calendar.is_some());
    // Again: nothing changes, nothing is mailed.
    app.post(
        &format!("/api/v1/registrations/{id}/confirm-email"),
        Some(&confirm.token()),
        &json!(null),
    )
    .await
    .assert_status(200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(smtp.messages().len(), 2);
}

#[tokio::test]
async fn unconfirmed_registrations_expire_while_others_register_without_overselling() {
    let app = spawn_app_with(|config| {
        config.email_poll_ms = 50;
    })
    .await;
    let (token, session) = confirming_event(&app, 5).await;
    // Five hold the seats unconfirmed, five wait behind them.
    let mut holders = Vec::new();
    for i in 0..5 {
        holders.push(id_of(
            &app.register("mmdn", &format!("holder{i}@example.org"), &[&session])
                .await
                .json(),
        ));
    }
    let mut waiting = Vec::new();
    for i in 0..5 {
        waiting.push(id_of(
            &app.register("mmdn", &format!("waiting{i}@example.org"), &[&session])
                .await
                .json(),
        ));
    }
    app.db
        .client()
        .await
        .execute(
            "UPDATE registrations SET confirm_by = now() WHERE email LIKE 'holder%'",
            &[],
        )
        .await
        .unwrap();

    // Meanwhile ten more register.
    let late: Vec<_> = (0..10)
        .map(|i| {
            let app = &app;
            let session = session.clone();
            async move {
                let answer = app
                    .register("mmdn", &format!("late{i}@example.org"), &[&session])
                    .await;
                answer.assert_status(201);
                answer.json()["sessions"][0]["status"].clone()
            }
        })
        .collect();
    let statuses = futures_util::future::join_all(late).await;
    assert!(statuses.iter().all(|s| s == "waitlisted"), "{statuses:?}");

    for _ in 0..200 {
        let active = count(
            &app,
            "SELECT count(*) FROM registrations WHERE email LIKE 'holder%' AND status = 'active'",
        )
        .await;
        if active == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Exactly the five first in line got the seats; the others wait in order.
    let confirmed: Vec<String> = app
        .db
        .client()
        .await
        .query(
            "SELECT registration_id::text FROM registration_sessions \
             WHERE status = 'confirmed' ORDER BY registration_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut expected = waiting.clone();
    expected.sort();
    assert_eq!(confirmed, expected);
    let seats = count(
        &app,
        "SELECT count(*) FROM session_seats WHERE registration_id IS NOT NULL",
    )
    .await;
    assert_eq!(seats, 5);
    let list = app
        .get(
            &format!("/api/v1/events/mmdn/sessions/{session}/waitlist"),
            Some(&token),
        )
        .await
        .json();
    let positions: Vec<i64> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["position"].as_i64().unwrap())
        .collect();
    assert_eq!(positions, (1..=10).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_reminder_goes_out_once_before_the_first_session() {
    let smtp = SmtpServer::start().await;
    let app = mail_app(&smtp, |config| config.email_reminder_hours = 24).await;
    let token = app.admin().await.access;
    let now = chrono::Utc::now().with_timezone(&chrono_tz::Europe::Moscow);
    let today = now.date_naive();
    app.event(
        &token,
        "soon",
        json!({"starts_on": today.to_string(),
               "ends_on": (today + chrono::Duration::days(1)).to_string(),
               "default_language": "en"}),
    )
    .await;
    let starts = now + chrono::Duration::hours(3);
    let session = id_of(
        &app.session(
            &token,
            "soon",
            json!({"starts_at": starts.to_rfc3339(),
                   "ends_at": (starts + chrono::Duration::hours(1)).to_rfc3339()}),
        )
        .await,
    );
    let anna = app.register("soon", "anna@example.org", &[&session]).await;
    anna.assert_status(201);
    assert_eq!(anna.json()["language"], "en", "the event's default");
    let mut body = registration_body("boris@example.org", &[&session]);
    body["language"] = json!("ru");
    app.post("/api/v1/events/soon/registrations", None, &body)
        .await
        .assert_status(201);
    smtp.wait_for(2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        smtp.messages().len(),
        2,
        "registered within the reminder's time: no reminder"
    );

    // Registered long before.
    app.db
        .client()
        .await
        .execute(
            "UPDATE registrations SET created_at = now() - interval '2 days'",
            &[],
        )
        .await
        .unwrap();
    let reminder = smtp.with_subject("anna@example.org", "Reminder: ").await;
    assert!(
        reminder.subject.starts_with("Reminder: VII Мурманская"),
        "{}",
        reminder.subject
    );
    assert!(reminder.text.contains("your first session starts on"));
    assert!(reminder.inline.is_some());
    let russian = smtp
        .with_subject("boris@example.org", "Напоминание: ")
        .await;
    assert!(russian.text.contains("Ваша первая сессия начинается"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(smtp.messages().len(), 4, "reminded once");
}

#[tokio::test]
async fn the_mail_queue_holds_no_personal_data_and_no_token() {
    let smtp = SmtpServer::start().await;
    let app = mail_app(&smtp, |_| {}).await;
    let token = app.admin().await.access;
    app.event(
        &token,
        "mmdn",
        json!({"manage_url_template": LINK_TEMPLATE}),
    )
    .await;
    let answer = app.register("mmdn", "anna.secret@example.org", &[]).await;
    let manage_token = answer.json()["manage_token"].as_str().unwrap().to_owned();
    let mail = smtp.next_to("anna.secret@example.org", 0).await;
    assert_eq!(mail.token(), manage_token);

    let rows: Vec<String> = app
        .db
        .client()
        .await
        .query("SELECT row_to_json(m)::text FROM email_messages m", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(rows.len(), 1);
    let nonce: Vec<u8> = app
        .db
        .client()
        .await
        .query_one("SELECT token_nonce FROM registrations", &[])
        .await
        .unwrap()
        .get(0);
    for row in &rows {
        for secret in [
            "anna.secret",
            "Анна",
            "Иванова",
            "Мончегорск",
            manage_token.as_str(),
            &manage_token[4..],
            &hex::encode(&nonce),
        ] {
            assert!(!row.contains(secret), "{secret} in {row}");
        }
    }
    // Nor is the token stored anywhere in the database.
    let dump = app
        .db
        .client()
        .await
        .query_one(
            "SELECT string_agg(row_to_json(r)::text, '') FROM registrations r",
            &[],
        )
        .await
        .unwrap()
        .get::<_, String>(0);
    assert!(!dump.contains(&manage_token[4..]));
}

#[tokio::test]
async fn the_language_follows_the_body_then_accept_language_then_the_event() {
    let app = spawn_app_with(|_| {}).await;
    let token = app.admin().await.access;
    app.event(&token, "mmdn", json!({"default_language": "en"}))
        .await;
    let cases = [
        (json!({"language": "ru"}), "en", "ru"),
        (json!({}), "de-DE, ru;q=0.7, en;q=0.5", "ru"),
        (json!({}), "en;q=0, ru", "ru"),
        (json!({}), "ru;q=0.1, EN-us", "en"),
        (json!({}), "de, fr;q=0.9", "en"),
        (json!({}), "*", "en"),
    ];
    for (n, (extra, header, want)) in cases.into_iter().enumerate() {
        let mut body = registration_body(&format!("p{n}@example.org"), &[]);
        crate::helpers::merge(&mut body, extra);
        let created = register_as(&app, "mmdn", body, header).await;
        assert_eq!(created["language"], want, "{header}");
        let view = app
            .get(
                &format!("/api/v1/registrations/{}", id_of(&created)),
                Some(created["manage_token"].as_str().unwrap()),
            )
            .await
            .json();
        assert_eq!(view["language"], want);
    }
    // Changeable later.
    let created = app.register("mmdn", "later@example.org", &[]).await.json();
    let changed = app
        .patch(
            &format!("/api/v1/registrations/{}", id_of(&created)),
            Some(created["manage_token"].as_str().unwrap()),
            &json!({"language": "ru"}),
        )
        .await;
    assert_eq!(changed.json()["language"], "ru");
    app.post(
        "/api/v1/events/mmdn/registrations",
        None,
        &json!({"full_name": "X", "email": "x@example.org", "category": "other",
                "consent": true, "language": "de"}),
    )
    .await
    .assert_problem(422, "invalid_body");
}

#[tokio::test]
async fn manage_link_templates_are_checked() {
    let app = spawn_app_with(|_| {}).await;
    let token = app.admin().await.access;
    app.event(&token, "mmdn", json!({})).await;
    let long = format!(
        "https://portal.example.org/{}?t={{token}}",
        "a".repeat(2000)
    );
    for (template, message) in [
        ("ftp://portal.example.org/{token}", "http or https"),
        ("https://portal.example.org/r/{id}", "{token}"),
        (
            "https://portal.example.org/r/{id}/{who}?t={token}",
            "placeholders",
        ),
        ("/r/{id}?t={token}", "absolute"),
        (long.as_str(), "2000"),
    ] {
        let answer = app
            .patch(
                "/api/v1/events/mmdn",
                Some(&token),
                &json!({"manage_url_template": template}),
            )
            .await;
        let problem = answer.assert_problem(422, "validation_failed");
        assert_eq!(problem["errors"][0]["field"], "manage_url_template");
        assert!(
            problem["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains(message),
            "{problem}"
        );
    }
    let problem = app
        .patch(
            "/api/v1/events/mmdn",
            Some(&token),
            &json!({"require_email_confirmation": true}),
        )
        .await
        .assert_problem(422, "validation_failed");
    assert_eq!(problem["errors"][0]["field"], "manage_url_template");
    app.patch(
        "/api/v1/events/mmdn",
        Some(&token),
        &json!({"manage_url_template": "http://localhost:3000/r/{id}#{token}",
                "require_email_confirmation": true}),
    )
    .await
    .assert_status(200);
}

#[tokio::test]
async fn production_takes_https_manage_links_only() {
    let app = spawn_app_with(|config| {
        config.environment = registrar::config::Environment::Production;
        config.encryption_keys = Some(
            "k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
                .to_owned()
                .into(),
        );
    })
    .await;
    let token = app.admin().await.access;
    let answer = app
        .post(
            "/api/v1/events",
            Some(&token),
            &json!({"slug": "mmdn", "title": "Неделя", "time_zone": "Europe/Moscow",
                    "starts_on": "2027-04-20", "ends_on": "2027-04-24",
                    "manage_url_template": "http://portal.example.org/r/{id}?t={token}"}),
        )
        .await;
    let problem = answer.assert_problem(422, "validation_failed");
    assert_eq!(problem["errors"][0]["message"], "must be an https URL");
}

#[tokio::test]
async fn two_instances_send_each_mail_once() {
    let smtp = SmtpServer::start().await;
    let app = mail_app(&smtp, |_| {}).await;
    let other = another_instance_with(&app, |config| sending_to(&smtp, config)).await;
    let token = app.admin().await.access;
    app.event(&token, "mmdn", json!({})).await;

    let registrations = (0..30).map(|i| {
        let instance = if i % 2 == 0 { &app } else { &other };
        async move {
            instance
                .register("mmdn", &format!("p{i}@example.org"), &[])
                .await
                .assert_status(201);
        }
    });
    futures_util::future::join_all(registrations).await;

    let mails = smtp.wait_for(30).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(smtp.messages().len(), 30, "each mail once");
    let mut to: Vec<&str> = mails.iter().map(|m| m.to.as_str()).collect();
    to.sort();
    to.dedup();
    assert_eq!(to.len(), 30);
}

#[tokio::test]
async fn a_mail_an_instance_died_sending_is_sent_once_its_lease_expires() {
    // The first instance has no SMTP: its mail stays queued.
    let app = spawn_app_with(|config| config.email_poll_ms = 100).await;
    let token = app.admin().await.access;
    app.event(&token, "mmdn", json!({})).await;
    app.register("mmdn", "anna@example.org", &[])
        .await
        .assert_status(201);
    for _ in 0..200 {
        if count(&app, "SELECT count(*) FROM email_messages").await == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // As an instance killed while sending leaves it: leased, its lease running.
    let client = app.db.client().await;
    client
        .execute(
            "UPDATE email_messages SET attempts = 1, first_attempt_at = now(), \
                    leased_until = now() + interval '1 hour'",
            &[],
        )
        .await
        .unwrap();

    let smtp = SmtpServer::start().await;
    let _restarted = another_instance_with(&app, |config| sending_to(&smtp, config)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(smtp.messages().is_empty(), "not while the lease runs");
    client
        .execute("UPDATE email_messages SET leased_until = now()", &[])
        .await
        .unwrap();
    let mails = smtp.wait_for(1).await;
    assert_eq!(mails[0].to, "anna@example.org");
    assert!(
        mails[0].message_id.starts_with("<mail-1."),
        "{}",
        mails[0].message_id
    );
    assert_eq!(
        count_soon(
            &app,
            "SELECT count(*) FROM email_messages WHERE status = 'sent' AND attempts = 2",
            1
        )
        .await,
        1
    );
}
