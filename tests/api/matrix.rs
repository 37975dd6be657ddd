//! The authorisation matrix: every route of the application, for every kind of caller, gets
//! exactly the expected allow or deny. Routes are enumerated from the application's own
//! OpenAPI document, so a new route without a row here fails the test.

use std::collections::BTreeMap;
use std::fmt;

use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    ADMIN_EMAIL, Answer, PASSWORD, TestApp, Tokens, registration_body, spawn_app,
};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Policy {
    /// No credentials are looked at.
    Open,
    /// Anyone, but credentials that are sent must be valid.
    Public,
    /// Any signed-in organiser or admin.
    SignedIn,
    AdminOnly,
    /// Read what the public sees of (published) event A.
    EventView,
    /// Organisers of event A: viewers and up.
    EventPrivate,
    /// Owners and editors of event A.
    EventEdit,
    /// Owners of event A.
    EventManage,
    ReadAttendees,
    PrintBadges,
    CheckIn,
    RegistrationView,
    RegistrationChange,
    RegistrationHistory,
    RegistrationManage,
    /// An import of event A: organisers of A see it, owners and editors commit it; to
    /// anyone else it does not exist.
    ImportView,
    ImportCommit,
    /// Ends the caller's own login.
    Logout,
}

fn policy(route: &str) -> Option<Policy> {
    use Policy::*;
    Some(match route {
        "GET /healthz" | "GET /readyz" | "GET /metrics" | "GET /api/openapi.json" => Open,
        "GET /widget/v1/registrar.js" => Open,
        "POST /api/v1/auth/login" | "POST /api/v1/auth/refresh" => Open,
        "POST /api/v1/auth/logout" => Logout,
        "GET /api/v1/me" | "POST /api/v1/me/password" | "POST /api/v1/events" => SignedIn,
        "GET /api/v1/users"
        | "POST /api/v1/users"
        | "GET /api/v1/users/{id}"
        | "PATCH /api/v1/users/{id}" => AdminOnly,
        "GET /api/v1/events"
        | "POST /api/v1/events/{event}/registrations"
        | "POST /api/v1/events/{event}/registrations/resend" => Public,
        "GET /api/v1/events/{event}"
        | "GET /api/v1/events/{event}/programme"
        | "GET /api/v1/events/{event}/programme.ics"
        | "GET /api/v1/events/{event}/session-counts"
        | "GET /api/v1/events/{event}/sessions"
        | "GET /api/v1/events/{event}/sessions/{session_id}"
        | "GET /api/v1/events/{event}/sessions/{session_id}/calendar.ics"
        | "GET /api/v1/events/{event}/sessions/{session_id}/counts"
        | "GET /api/v1/events/{event}/sessions/{session_id}/speakers"
        | "GET /api/v1/events/{event}/speakers"
        | "GET /api/v1/events/{event}/speakers/{speaker_id}"
        | "GET /api/v1/events/{event}/tracks"
        | "GET /api/v1/events/{event}/tracks/{track_id}"
        | "GET /api/v1/events/{event}/venues"
        | "GET /api/v1/events/{event}/venues/{venue_id}"
        | "GET /api/v1/events/{event}/categories"
        | "GET /api/v1/events/{event}/categories/{code}"
        | "GET /api/v1/events/{event}/questions"
        | "GET /api/v1/events/{event}/questions/{key}"
        | "GET /api/v1/events/{event}/consents"
        | "GET /api/v1/events/{event}/consents/{consent_key}"
        | "GET /api/v1/events/{event}/consents/{consent_key}/versions"
        | "GET /api/v1/events/{event}/registration-form"
        | "GET /api/v1/events/{event}/checkin-key" => EventView,
        "GET /api/v1/events/{event}/members"
        | "GET /api/v1/events/{event}/registrations"
        | "GET /api/v1/events/{event}/stats"
        | "GET /api/v1/events/{event}/api-keys"
        | "GET /api/v1/events/{event}/sessions/{session_id}/waitlist"
        | "GET /api/v1/events/{event}/webhooks"
        | "GET /api/v1/events/{event}/badge-template"
        | "GET /api/v1/events/{event}/webhooks/{webhook_id}"
        | "GET /api/v1/events/{event}/webhooks/{webhook_id}/deliveries"
        | "GET /api/v1/events/{event}/webhooks/{webhook_id}/deliveries/{delivery_id}" => {
            EventPrivate
        }
        "PATCH /api/v1/events/{event}"
        | "POST /api/v1/events/{event}/venues"
        | "PATCH /api/v1/events/{event}/venues/{venue_id}"
        | "DELETE /api/v1/events/{event}/venues/{venue_id}"
        | "POST /api/v1/events/{event}/tracks"
        | "PATCH /api/v1/events/{event}/tracks/{track_id}"
        | "DELETE /api/v1/events/{event}/tracks/{track_id}"
        | "POST /api/v1/events/{event}/categories"
        | "PATCH /api/v1/events/{event}/categories/{code}"
        | "DELETE /api/v1/events/{event}/categories/{code}"
        | "POST /api/v1/events/{event}/questions"
        | "PATCH /api/v1/events/{event}/questions/{key}"
        | "DELETE /api/v1/events/{event}/questions/{key}"
        | "POST /api/v1/events/{event}/consents"
        | "PATCH /api/v1/events/{event}/consents/{consent_key}"
        | "DELETE /api/v1/events/{event}/consents/{consent_key}"
        | "POST /api/v1/events/{event}/speakers"
        | "PATCH /api/v1/events/{event}/speakers/{speaker_id}"
        | "DELETE /api/v1/events/{event}/speakers/{speaker_id}"
        | "POST /api/v1/events/{event}/sessions"
        | "PATCH /api/v1/events/{event}/sessions/{session_id}"
        | "DELETE /api/v1/events/{event}/sessions/{session_id}"
        | "PUT /api/v1/events/{event}/sessions/{session_id}/speakers/{speaker_id}"
        | "DELETE /api/v1/events/{event}/sessions/{session_id}/speakers/{speaker_id}"
        | "POST /api/v1/events/{event}/registrations/manual"
        | "POST /api/v1/events/{event}/api-keys"
        | "DELETE /api/v1/events/{event}/api-keys/{key_id}"
        | "POST /api/v1/events/{event}/print-jobs"
        | "PUT /api/v1/events/{event}/badge-template"
        | "POST /api/v1/events/{event}/webhooks"
        | "PATCH /api/v1/events/{event}/webhooks/{webhook_id}"
        | "DELETE /api/v1/events/{event}/webhooks/{webhook_id}"
        | "POST /api/v1/events/{event}/webhooks/{webhook_id}/rotate-secret"
        | "POST /api/v1/events/{event}/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver"
        | "POST /api/v1/events/{event}/webhooks/{webhook_id}/deliveries/redeliver-failed"
        | "POST /api/v1/events/{event}/imports" => EventEdit,
        "DELETE /api/v1/events/{event}"
        | "PUT /api/v1/events/{event}/members/{user_id}"
        | "DELETE /api/v1/events/{event}/members/{user_id}"
        | "POST /api/v1/events/{event}/personal-data/erase" => EventManage,
        "GET /api/v1/events/{event}/attendees"
        | "GET /api/v1/events/{event}/attendees.csv"
        | "GET /api/v1/events/{event}/attendees.xlsx"
        | "GET /api/v1/events/{event}/sessions/{session_id}/attendees"
        | "GET /api/v1/events/{event}/sessions/{session_id}/attendees.csv"
        | "GET /api/v1/events/{event}/sessions/{session_id}/attendees.xlsx" => ReadAttendees,
        "GET /api/v1/events/{event}/print-jobs"
        | "GET /api/v1/events/{event}/badges.pdf"
        | "POST /api/v1/events/{event}/print-jobs/claim"
        | "POST /api/v1/events/{event}/print-jobs/{job_id}/done" => PrintBadges,
        "POST /api/v1/events/{event}/checkins" | "POST /api/v1/events/{event}/checkins/batch" => {
            CheckIn
        }
        "GET /api/v1/registrations/{id}"
        | "GET /api/v1/registrations/{id}/export"
        | "GET /api/v1/registrations/{id}/qr.png"
        | "GET /api/v1/registrations/{id}/badge.pdf"
        | "GET /api/v1/registrations/{id}/qr.svg" => RegistrationView,
        "PATCH /api/v1/registrations/{id}"
        | "DELETE /api/v1/registrations/{id}"
        | "POST /api/v1/registrations/{id}/confirm-email"
        | "POST /api/v1/registrations/{id}/erase" => RegistrationChange,
        "GET /api/v1/registrations/{id}/history" => RegistrationHistory,
        "POST /api/v1/registrations/{id}/sessions/{session_id}/promote" => RegistrationManage,
        "GET /api/v1/imports/{id}" => ImportView,
        "POST /api/v1/imports/{id}/commit" => ImportCommit,
        _ => return None,
    })
}

/// Every kind of caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Anonymous,
    ParticipantOwn,
    ParticipantOther,
    DeviceReadOwn,
    DevicePrintOwn,
    DeviceCheckinOwn,
    DeviceOtherEvent,
    Viewer,
    Editor,
    Owner,
    OtherOrganiser,
    Admin,
    Disabled,
    Expired,
}

const EVERYONE: [Who; 14] = [
    Who::Anonymous,
    Who::ParticipantOwn,
    Who::ParticipantOther,
    Who::DeviceReadOwn,
    Who::DevicePrintOwn,
    Who::DeviceCheckinOwn,
    Who::DeviceOtherEvent,
    Who::Viewer,
    Who::Editor,
    Who::Owner,
    Who::OtherOrganiser,
    Who::Admin,
    Who::Disabled,
    Who::Expired,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Allow,
    Deny(u16, &'static str),
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Allow => write!(f, "allow"),
            Expect::Deny(status, code) => write!(f, "{status} {code}"),
        }
    }
}

fn expected(policy: Policy, who: Who) -> Expect {
    use Expect::*;
    use Policy::*;
    use Who::*;
    const UNAUTHENTICATED: Expect = Deny(401, "authentication_required");
    const INVALID: Expect = Deny(401, "invalid_token");
    const FORBIDDEN: Expect = Deny(403, "forbidden");
    const HIDDEN: Expect = Deny(404, "not_found");
    if policy == Open {
        return Allow;
    }
    if matches!(who, Disabled | Expired) {
        return INVALID;
    }
    let user = matches!(who, Viewer | Editor | Owner | OtherOrganiser | Admin);
    let device = matches!(
        who,
        DeviceReadOwn | DevicePrintOwn | DeviceCheckinOwn | DeviceOtherEvent
    );
    let participant = matches!(who, ParticipantOwn | ParticipantOther);
    match policy {
        Open => Allow,
        Public | EventView => Allow,
        SignedIn | Logout if user => Allow,
        SignedIn if who == Anonymous => UNAUTHENTICATED,
        SignedIn => FORBIDDEN,
        Logout => UNAUTHENTICATED,
        AdminOnly if who == Admin => Allow,
        AdminOnly if who == Anonymous => UNAUTHENTICATED,
        AdminOnly => FORBIDDEN,
        RegistrationView | RegistrationChange | RegistrationHistory | RegistrationManage => {
            let organiser_allowed = match policy {
                RegistrationView | RegistrationHistory => {
                    matches!(who, Viewer | Editor | Owner | Admin)
                }
                _ => matches!(who, Editor | Owner | Admin),
            };
            match who {
                Anonymous => UNAUTHENTICATED,
                // Registrations of an event the caller does not organise do not exist to them.
                ParticipantOther | OtherOrganiser => HIDDEN,
                ParticipantOwn if matches!(policy, RegistrationView | RegistrationChange) => Allow,
                ParticipantOwn => FORBIDDEN,
                _ if device => FORBIDDEN,
                _ if organiser_allowed => Allow,
                _ => FORBIDDEN,
            }
        }
        ImportView | ImportCommit => {
            let allowed = match policy {
                ImportView => matches!(who, Viewer | Editor | Owner | Admin),
                _ => matches!(who, Editor | Owner | Admin),
            };
            match who {
                _ if allowed => Allow,
                Anonymous => UNAUTHENTICATED,
                Viewer => FORBIDDEN,
                _ => HIDDEN,
            }
        }
        _ => {
            let allowed = match policy {
                EventPrivate => matches!(who, Viewer | Editor | Owner | Admin),
                EventEdit => matches!(who, Editor | Owner | Admin),
                EventManage => matches!(who, Owner | Admin),
                ReadAttendees => matches!(who, Viewer | Editor | Owner | Admin | DeviceReadOwn),
                PrintBadges => matches!(who, Editor | Owner | Admin | DevicePrintOwn),
                CheckIn => matches!(who, Editor | Owner | Admin | DeviceCheckinOwn),
                _ => unreachable!("{policy:?}"),
            };
            match who {
                _ if allowed => Allow,
                Anonymous => UNAUTHENTICATED,
                _ if participant || device || user => FORBIDDEN,
                _ => unreachable!(),
            }
        }
    }
}

/// The world the matrix runs in: event A (published) with its programme, registrations and
/// devices; event B of another organiser.
struct World {
    admin: Tokens,
    owner: Tokens,
    editor: Tokens,
    viewer: Tokens,
    other_organiser: Tokens,
    disabled: Tokens,
    expired: String,
    spare_user: Uuid,
    session: String,
    venue: String,
    track: String,
    speaker: String,
    /// Registration R1 of event A and its manage token; R2's token is "someone else's".
    r1: (String, String),
    r2_token: String,
    r1_qr: String,
    read_key: String,
    print_key: String,
    checkin_key: String,
    other_event_key: String,
    /// A webhook endpoint of event A, and one of its deliveries.
    webhook: String,
    delivery: String,
}

const WEBHOOK_URL: &str = "https://203.0.113.10/hooks/registrar";

fn id(answer: &Answer) -> String {
    answer.json()["id"].as_str().unwrap().to_owned()
}

async fn key(app: &TestApp, token: &str, event: &str, scope: &str) -> String {
    let answer = app
        .post(
            &format!("/api/v1/events/{event}/api-keys"),
            Some(token),
            &json!({"name": "Устройство", "scopes": [scope]}),
        )
        .await;
    answer.assert_status(201);
    answer.json()["key"].as_str().unwrap().to_owned()
}

async fn make_member(app: &TestApp, owner: &str, user: Uuid, role: &str) {
    app.put(
        &format!("/api/v1/events/a/members/{user}"),
        Some(owner),
        &json!({"role": role}),
    )
    .await
    .assert_status(201);
}

fn expired_token(user: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": user, "sid": Uuid::now_v7(), "iss": "registrar", "aud": "registrar-api",
                "iat": now - 7200, "exp": now - 3600}),
        &jsonwebtoken::EncodingKey::from_secret(crate::helpers::JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

async fn world(app: &TestApp) -> World {
    let admin = app.admin().await;
    let (owner_id, owner) = app.organiser(&admin, "owner@example.org").await;
    let (editor_id, editor) = app.organiser(&admin, "editor@example.org").await;
    let (viewer_id, viewer) = app.organiser(&admin, "viewer@example.org").await;
    let (_, other_organiser) = app.organiser(&admin, "other@example.org").await;
    let (disabled_id, disabled) = app.organiser(&admin, "disabled@example.org").await;
    let (spare_user, _) = app.organiser(&admin, "spare@example.org").await;
    app.event(&owner.access, "a", json!({})).await;
    app.event(&other_organiser.access, "b", json!({})).await;
    // TEST-NET-3: a public address that is never routed, so no request leaves the machine.
    let webhook = id(&app
        .post(
            "/api/v1/events/a/webhooks",
            Some(&owner.access),
            &json!({"url": WEBHOOK_URL}),
        )
        .await);
    make_member(app, &owner.access, editor_id, "editor").await;
    make_member(app, &owner.access, viewer_id, "viewer").await;
    let session = app
        .session(&owner.access, "a", json!({"capacity": 1000}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let venue = id(&app
        .post(
            "/api/v1/events/a/venues",
            Some(&owner.access),
            &json!({"name": "Зал"}),
        )
        .await);
    let track = id(&app
        .post(
            "/api/v1/events/a/tracks",
            Some(&owner.access),
            &json!({"title": "Направление"}),
        )
        .await);
    let speaker = id(&app
        .post(
            "/api/v1/events/a/speakers",
            Some(&owner.access),
            &json!({"full_name": "Роман Дурягин"}),
        )
        .await);
    // On the published session, so that the public may see the speaker.
    app.put(
        &format!("/api/v1/events/a/sessions/{session}/speakers/{speaker}"),
        Some(&owner.access),
        &json!({"role": "speaker"}),
    )
    .await
    .assert_status(200);
    let r1 = app
        .register("a", "r1@example.org", &[&session])
        .await
        .json();
    let r2 = app
        .register("a", "r2@example.org", &[&session])
        .await
        .json();
    let read_key = key(app, &owner.access, "a", "attendees:read").await;
    let print_key = key(app, &owner.access, "a", "badges:print").await;
    let checkin_key = key(app, &owner.access, "a", "checkin:write").await;
    let other_event_key = key(app, &other_organiser.access, "b", "attendees:read").await;
    let r1_id = r1["id"].as_str().unwrap().to_owned();
    let r1_qr = loop {
        let feed = app
            .get("/api/v1/events/a/attendees?limit=1000", Some(&read_key))
            .await
            .json();
        if let Some(record) = feed["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["registration_id"] == r1_id.as_str())
        {
            break record["qr_code"].as_str().unwrap().to_owned();
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    app.patch(
        &format!("/api/v1/users/{disabled_id}"),
        Some(&admin.access),
        &json!({"disabled": true}),
    )
    .await
    .assert_status(200);
    let delivery = loop {
        let listed = app
            .get(
                &format!("/api/v1/events/a/webhooks/{webhook}/deliveries"),
                Some(&owner.access),
            )
            .await
            .json();
        if let Some(first) = listed["items"].as_array().unwrap().first() {
            break first["id"].as_str().unwrap().to_owned();
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    World {
        webhook,
        delivery,
        expired: expired_token(&owner_id.to_string()),
        admin,
        owner,
        editor,
        viewer,
        other_organiser,
        disabled,
        spare_user,
        session,
        venue,
        track,
        speaker,
        r1: (r1_id, r1["manage_token"].as_str().unwrap().to_owned()),
        r2_token: r2["manage_token"].as_str().unwrap().to_owned(),
        r1_qr,
        read_key,
        print_key,
        checkin_key,
        other_event_key,
    }
}

/// A request for one route by one caller: the path with its parameters filled (fresh
/// resources where the call would consume them), a valid body, and the registration whose
/// manage token is "the participant's own".
struct Call {
    path: String,
    body: Option<Value>,
    own_registration: Option<(String, String)>,
}

async fn fresh_registration(app: &TestApp, n: usize) -> (String, String) {
    let answer = app
        .register("a", &format!("fresh{n}@example.org"), &[])
        .await;
    answer.assert_status(201);
    let body = answer.json();
    (
        body["id"].as_str().unwrap().to_owned(),
        body["manage_token"].as_str().unwrap().to_owned(),
    )
}

async fn call_for(app: &TestApp, w: &World, method: &Method, template: &str, n: usize) -> Call {
    let owner = w.owner.access.as_str();
    let deleting = *method == Method::DELETE;
    let mut own_registration = Some(w.r1.clone());
    let mut path = template.replace("{event}", "a");
    if path.contains("{venue_id}") {
        let venue = if deleting {
            id(&app
                .post(
                    "/api/v1/events/a/venues",
                    Some(owner),
                    &json!({"name": format!("Зал {n}")}),
                )
                .await)
        } else {
            w.venue.clone()
        };
        path = path.replace("{venue_id}", &venue);
    }
    if path.contains("{track_id}") {
        let track = if deleting {
            id(&app
                .post(
                    "/api/v1/events/a/tracks",
                    Some(owner),
                    &json!({"title": format!("Трек {n}")}),
                )
                .await)
        } else {
            w.track.clone()
        };
        path = path.replace("{track_id}", &track);
    }
    if path.contains("{code}") {
        let code = if deleting || *method == Method::PATCH {
            // A category of its own: a PATCH that succeeds must not rename the shared one.
            let code = format!("c{n}");
            app.post(
                "/api/v1/events/a/categories",
                Some(owner),
                &json!({"code": code, "name": {"ru": "Категория", "en": "Category"}}),
            )
            .await
            .assert_status(201);
            code
        } else {
            "business".to_owned()
        };
        path = path.replace("{code}", &code);
    }
    if path.contains("{key}") {
        // A question of its own for every call.
        let key = format!("q{n}");
        app.post(
            "/api/v1/events/a/questions",
            Some(owner),
            &json!({"key": key, "type": "text", "label": {"ru": "Вопрос", "en": "Question"}}),
        )
        .await
        .assert_status(201);
        path = path.replace("{key}", &key);
    }
    if path.contains("{consent_key}") {
        let key = if deleting || *method == Method::PATCH {
            // A consent of its own, optional: registering in other calls does not need it.
            let key = format!("k{n}");
            app.post(
                "/api/v1/events/a/consents",
                Some(owner),
                &json!({"key": key, "text": {"ru": "Согласие", "en": "Consent"}}),
            )
            .await
            .assert_status(201);
            key
        } else {
            "personal_data".to_owned()
        };
        path = path.replace("{consent_key}", &key);
    }
    if path.contains("{speaker_id}") {
        let speaker = if deleting {
            let speaker = id(&app
                .post(
                    "/api/v1/events/a/speakers",
                    Some(owner),
                    &json!({"full_name": format!("Спикер {n}")}),
                )
                .await);
            if path.contains("/sessions/") {
                app.put(
                    &format!("/api/v1/events/a/sessions/{}/speakers/{speaker}", w.session),
                    Some(owner),
                    &json!({"role": "speaker"}),
                )
                .await
                .assert_status(200);
            }
            speaker
        } else {
            w.speaker.clone()
        };
        path = path.replace("{speaker_id}", &speaker);
    }
    if path.contains("{session_id}") {
        let session = if deleting && !path.contains("/speakers/") {
            app.session(owner, "a", json!({"title": format!("Сессия {n}")}))
                .await["id"]
                .as_str()
                .unwrap()
                .to_owned()
        } else {
            w.session.clone()
        };
        path = path.replace("{session_id}", &session);
    }
    if path.contains("{key_id}") {
        let answer = app
            .post(
                "/api/v1/events/a/api-keys",
                Some(owner),
                &json!({"name": "x", "scopes": ["attendees:read"]}),
            )
            .await;
        path = path.replace("{key_id}", &id(&answer));
    }
    if path.contains("{job_id}") {
        let (registration, _) = fresh_registration(app, n).await;
        let job = app
            .post(
                "/api/v1/events/a/print-jobs",
                Some(owner),
                &json!({"registration_id": registration}),
            )
            .await;
        path = path.replace("{job_id}", &id(&job));
    }
    if path.contains("{webhook_id}") {
        let webhook = if deleting {
            id(&app
                .post(
                    "/api/v1/events/a/webhooks",
                    Some(owner),
                    &json!({"url": WEBHOOK_URL}),
                )
                .await)
        } else {
            w.webhook.clone()
        };
        path = path
            .replace("{webhook_id}", &webhook)
            .replace("{delivery_id}", &w.delivery);
    }
    if path.contains("{user_id}") {
        if deleting {
            app.put(
                &format!("/api/v1/events/a/members/{}", w.spare_user),
                Some(owner),
                &json!({"role": "viewer"}),
            )
            .await;
        }
        path = path.replace("{user_id}", &w.spare_user.to_string());
    }
    if template.starts_with("/api/v1/registrations/{id}") {
        // Erasing, like cancelling, uses a registration up.
        let registration = if deleting || template.ends_with("/erase") {
            fresh_registration(app, n).await
        } else {
            w.r1.clone()
        };
        path = path.replace("{id}", &registration.0);
        own_registration = Some(registration);
    }
    if template.starts_with("/api/v1/imports/{id}") {
        // Each call its own import: a commit consumes it.
        let answer = app
            .call(
                Method::POST,
                "/api/v1/events/a/imports?file_name=invited.csv",
            )
            .bearer(owner)
            .body(
                "text/csv",
                format!("full_name,email\nАнна Иванова,import{n}@example.org\n"),
            )
            .send()
            .await;
        answer.assert_status(201);
        path = path.replace("{id}", &id(&answer));
    }
    if template.starts_with("/api/v1/users/{id}") {
        path = path.replace("{id}", &w.spare_user.to_string());
    }
    if template == "/api/v1/events/{event}" && deleting {
        let slug = format!("doomed-{n}");
        app.event(owner, &slug, json!({})).await;
        path = format!("/api/v1/events/{slug}");
    }
    let email = format!("call{n}@example.org");
    let body = match (method.as_str(), template) {
        ("POST", "/api/v1/auth/login") => {
            Some(json!({"email": "owner@example.org", "password": PASSWORD}))
        }
        ("POST", "/api/v1/auth/refresh") => Some(json!({"refresh_token": "rgr_unknown"})),
        ("POST", "/api/v1/auth/logout") => Some(json!({})),
        ("POST", "/api/v1/me/password") => {
            Some(json!({"current_password": PASSWORD, "new_password": PASSWORD}))
        }
        ("POST", "/api/v1/users") => {
            Some(json!({"email": email, "display_name": "Новый", "password": PASSWORD}))
        }
        ("PATCH", "/api/v1/users/{id}") => Some(json!({"display_name": "Запасной"})),
        ("POST", "/api/v1/events") => Some(json!({
            "slug": format!("new-{n}"), "title": "Новое событие", "time_zone": "Europe/Moscow",
            "starts_on": "2027-05-01", "ends_on": "2027-05-02"})),
        ("PATCH", "/api/v1/events/{event}") => Some(json!({"description": "Описание"})),
        ("PUT", "/api/v1/events/{event}/members/{user_id}") => Some(json!({"role": "viewer"})),
        ("PUT", "/api/v1/events/{event}/badge-template") => {
            Some(json!({"category_labels": {"media": "Пресса"}}))
        }
        ("POST", "/api/v1/events/{event}/venues") => Some(json!({"name": "Зал"})),
        ("PATCH", "/api/v1/events/{event}/venues/{venue_id}") => {
            Some(json!({"city": "Мончегорск"}))
        }
        ("POST", "/api/v1/events/{event}/tracks") => Some(json!({"title": "Направление"})),
        ("PATCH", "/api/v1/events/{event}/tracks/{track_id}") => Some(json!({"colour": "#1f6feb"})),
        ("POST", "/api/v1/events/{event}/categories") => Some(json!({
            "code": format!("new{n}"), "name": {"ru": "Студенты", "en": "Students"}})),
        ("PATCH", "/api/v1/events/{event}/categories/{code}") => Some(json!({"capacity": 50})),
        ("POST", "/api/v1/events/{event}/questions") => Some(json!({
            "key": format!("new{n}"), "type": "yes_no", "label": {"ru": "Трансфер", "en": "Transfer"}})),
        ("PATCH", "/api/v1/events/{event}/questions/{key}") => Some(json!({"required": false})),
        ("POST", "/api/v1/events/{event}/consents") => Some(json!({
            "key": format!("new{n}"), "text": {"ru": "Фотосъёмка", "en": "Photos"}})),
        ("PATCH", "/api/v1/events/{event}/consents/{consent_key}") => {
            Some(json!({"text": {"ru": "Новый текст", "en": "New text"}}))
        }
        ("POST", "/api/v1/events/{event}/speakers") => Some(json!({"full_name": "Спикер"})),
        ("PATCH", "/api/v1/events/{event}/speakers/{speaker_id}") => Some(json!({"bio": "Био"})),
        ("POST", "/api/v1/events/{event}/sessions") => Some(json!({
            "title": "Сессия", "kind": "workshop",
            "starts_at": "2027-04-21T10:00:00+03:00", "ends_at": "2027-04-21T11:00:00+03:00"})),
        ("PATCH", "/api/v1/events/{event}/sessions/{session_id}") => {
            Some(json!({"language": "ru"}))
        }
        ("PUT", "/api/v1/events/{event}/sessions/{session_id}/speakers/{speaker_id}") => {
            Some(json!({"role": "moderator"}))
        }
        ("POST", "/api/v1/events/{event}/registrations") => Some(registration_body(&email, &[])),
        ("POST", "/api/v1/events/{event}/registrations/resend") => Some(json!({"email": email})),
        ("POST", "/api/v1/events/{event}/registrations/manual") => {
            Some(registration_body(&email, &[]))
        }
        ("POST", "/api/v1/events/{event}/api-keys") => {
            Some(json!({"name": "Принтер", "scopes": ["badges:print"]}))
        }
        ("POST", "/api/v1/events/{event}/print-jobs") => Some(json!({"registration_id": w.r1.0})),
        ("POST", "/api/v1/events/{event}/print-jobs/claim") => Some(json!({"batch_size": 1})),
        ("POST", "/api/v1/events/{event}/print-jobs/{job_id}/done") => Some(json!({})),
        ("POST", "/api/v1/events/{event}/checkins") => Some(json!({"qr_code": w.r1_qr})),
        ("POST", "/api/v1/events/{event}/checkins/batch") => Some(json!({"scans": [
            {"qr_code": w.r1_qr, "scanned_at": "2026-11-20T08:00:00Z", "client_nonce": format!("n{n}")}]})),
        ("PATCH", "/api/v1/registrations/{id}") => Some(json!({"city": "Мончегорск"})),
        ("POST", "/api/v1/registrations/{id}/sessions/{session_id}/promote") => Some(json!({})),
        // Event A is not over: allowed callers are told so (409), and nothing is erased.
        ("POST", "/api/v1/events/{event}/personal-data/erase") => Some(json!({"dry_run": true})),
        ("POST", "/api/v1/events/{event}/webhooks") => Some(json!({"url": WEBHOOK_URL})),
        ("PATCH", "/api/v1/events/{event}/webhooks/{webhook_id}") => {
            Some(json!({"description": "CRM"}))
        }
        ("POST", "/api/v1/events/{event}/webhooks/{webhook_id}/rotate-secret") => {
            Some(json!({"overlap_seconds": 60}))
        }
        _ => None,
    };
    Call {
        path,
        body,
        own_registration,
    }
}

fn token_of(w: &World, who: Who, own: &Option<(String, String)>) -> Option<String> {
    Some(match who {
        Who::Anonymous => return None,
        Who::ParticipantOwn => own
            .as_ref()
            .map(|(_, t)| t.clone())
            .unwrap_or_else(|| w.r1.1.clone()),
        Who::ParticipantOther => w.r2_token.clone(),
        Who::DeviceReadOwn => w.read_key.clone(),
        Who::DevicePrintOwn => w.print_key.clone(),
        Who::DeviceCheckinOwn => w.checkin_key.clone(),
        Who::DeviceOtherEvent => w.other_event_key.clone(),
        Who::Viewer => w.viewer.access.clone(),
        Who::Editor => w.editor.access.clone(),
        Who::Owner => w.owner.access.clone(),
        Who::OtherOrganiser => w.other_organiser.access.clone(),
        Who::Admin => w.admin.access.clone(),
        Who::Disabled => w.disabled.access.clone(),
        Who::Expired => w.expired.clone(),
    })
}

fn verdict(answer: &Answer) -> Expect {
    let code = serde_json::from_str::<Value>(&answer.text)
        .ok()
        .and_then(|body| body["code"].as_str().map(str::to_owned));
    match (answer.status.as_u16(), code.as_deref()) {
        (401, Some("authentication_required")) => Expect::Deny(401, "authentication_required"),
        (401, Some("invalid_token")) => Expect::Deny(401, "invalid_token"),
        (403, Some("forbidden")) => Expect::Deny(403, "forbidden"),
        (404, Some("not_found")) => Expect::Deny(404, "not_found"),
        (status, _) if status >= 500 => Expect::Deny(status, "server_error"),
        _ => Expect::Allow,
    }
}

#[tokio::test]
async fn every_route_allows_and_denies_exactly_whom_it_should() {
    let app = spawn_app().await;
    let w = world(&app).await;
    let doc = registrar::openapi::document();
    let mut routes: Vec<(Method, String)> = Vec::new();
    for (path, item) in &doc.paths.paths {
        for (method, present) in [
            (Method::GET, item.get.is_some()),
            (Method::POST, item.post.is_some()),
            (Method::PUT, item.put.is_some()),
            (Method::PATCH, item.patch.is_some()),
            (Method::DELETE, item.delete.is_some()),
        ] {
            if present {
                routes.push((method, path.clone()));
            }
        }
    }
    let missing: Vec<String> = routes
        .iter()
        .map(|(m, p)| format!("{m} {p}"))
        .filter(|route| policy(route).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "routes without a row in the matrix: {missing:#?}"
    );
    // Logging out ends the caller's login: do it last.
    routes.sort_by_key(|(m, p)| p == "/api/v1/auth/logout" && *m == Method::POST);

    let mut failures = BTreeMap::new();
    let mut n = 0;
    for (method, template) in &routes {
        let route = format!("{method} {template}");
        let policy = policy(&route).unwrap();
        for who in EVERYONE {
            n += 1;
            let call = call_for(&app, &w, method, template, n).await;
            let mut request = app.call(method.clone(), &call.path);
            if let Some(token) = token_of(&w, who, &call.own_registration) {
                request = request.bearer(&token);
            }
            if let Some(body) = &call.body {
                request = request.json(body);
            }
            let answer = request.send().await;
            let (want, got) = (expected(policy, who), verdict(&answer));
            if want != got {
                failures.insert(
                    format!("{route} as {who:?}"),
                    format!(
                        "expected {want}, got {} {}",
                        answer.status.as_u16(),
                        answer.text
                    ),
                );
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {n} calls wrong: {failures:#?}",
        failures.len()
    );
    assert_eq!(n, routes.len() * EVERYONE.len());
}

/// Request bodies, field by field, against the document: a top-level field the document lets
/// be `null` is taken as `null`, and one it does not is refused as `null` (422 `invalid_body`,
/// or `validation_failed` from an event's form, naming it); a field the document lists as
/// required is refused when absent, and any other may be left out. Each route's valid body
/// from the matrix is changed in one field at a time and sent as an admin.
#[tokio::test]
async fn every_request_field_takes_null_and_absence_as_the_document_says() {
    let app = spawn_app().await;
    let w = world(&app).await;
    let doc = crate::contract::document();
    let mut operations: Vec<(Method, String, Value)> = Vec::new();
    for (template, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let schema = &operation["requestBody"]["content"]["application/json"]["schema"];
            if schema.is_null() {
                continue;
            }
            let schema = match schema["$ref"].as_str() {
                Some(reference) => doc.pointer(reference.trim_start_matches('#')).unwrap(),
                None => schema,
            };
            operations.push((
                method.to_uppercase().parse().unwrap(),
                template.clone(),
                schema.clone(),
            ));
        }
    }
    assert!(
        operations.len() > 20,
        "{} operations with a body",
        operations.len()
    );

    let mut wrong = Vec::new();
    let mut n = 10_000;
    for (method, template, schema) in &operations {
        let required: Vec<&str> = schema["required"]
            .as_array()
            .map(|names| names.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let properties = schema["properties"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        // The body every probe starts from must itself be read.
        n += 1;
        let call = call_for(&app, &w, method, template, n).await;
        let answer = app
            .call(method.clone(), &call.path)
            .bearer(&admin_token(&app, &w, template).await)
            .json(call.body.as_ref().unwrap_or(&json!({})))
            .send()
            .await;
        if answer.status == 422 && answer.json()["code"] == "invalid_body" {
            wrong.push(format!(
                "{method} {template}: give call_for a body the server reads ({})",
                answer.text
            ));
            continue;
        }
        for (field, field_schema) in &properties {
            for absent in [false, true] {
                n += 1;
                let call = call_for(&app, &w, method, template, n).await;
                let mut body = call.body.clone().unwrap_or_else(|| json!({}));
                let object = body.as_object_mut().unwrap();
                if absent {
                    object.remove(field);
                } else {
                    object.insert(field.clone(), Value::Null);
                }
                let answer = app
                    .call(method.clone(), &call.path)
                    .bearer(&admin_token(&app, &w, template).await)
                    .json(&body)
                    .send()
                    .await;
                // Refused while the body is read (`invalid_body`) or by the event's form
                // (`validation_failed`, registrations), naming the field either way.
                let refused = answer.status == 422 && {
                    let problem = answer.json();
                    (problem["code"] == "invalid_body" || problem["code"] == "validation_failed")
                        && problem["errors"]
                            .as_array()
                            .is_some_and(|errors| errors.iter().any(|e| e["field"] == *field))
                };
                let (documented, what) = if absent {
                    (!required.contains(&field.as_str()), "absent")
                } else {
                    (crate::contract::accepts(field_schema, &Value::Null), "null")
                };
                if documented == refused {
                    wrong.push(format!(
                        "{method} {template} `{field}` {what}: the document {} it, the server {} it ({} {})",
                        if documented { "allows" } else { "refuses" },
                        if refused { "refuses" } else { "takes" },
                        answer.status.as_u16(),
                        answer.text
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// The admin's token, or a login of its own for a call that ends the login it is made with.
async fn admin_token(app: &TestApp, w: &World, template: &str) -> String {
    if template == "/api/v1/auth/logout" {
        Tokens::from(app.login(ADMIN_EMAIL, PASSWORD).await.assert_status(200)).access
    } else {
        w.admin.access.clone()
    }
}
