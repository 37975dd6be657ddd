//! Migrations applied to a database that already holds data: what an older version of the
//! service stored is carried over and served by the new one.

use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestDb, spawn_app_on};

/// Applies the embedded migrations one by one up to and including `last` (its version, the
/// digits of its directory's date), as the service's start-up does for all of them.
async fn migrate_up_to(db: &TestDb, last: &'static str) {
    let url = db.url.clone();
    tokio::task::spawn_blocking(move || {
        use diesel::Connection;
        use diesel_async::AsyncPgConnection;
        use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
        use diesel_migrations::MigrationHarness;

        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::establish(&url).unwrap();
        loop {
            let applied = conn
                .run_next_migration(registrar::db::MIGRATIONS)
                .unwrap_or_else(|error| panic!("migrating up to {last}: {error}"))
                .to_string();
            assert!(applied.as_str() <= last, "{last} is not a migration");
            if applied == last {
                break;
            }
        }
    })
    .await
    .unwrap();
}

/// When each registration of the older version was made (and its consent given).
const CONSENT_AT: [(&str, &str, &str); 5] = [
    ("gov@example.org", "government", "2026-10-01 09:15:00+03"),
    ("biz@example.org", "business", "2026-10-02 10:30:00+03"),
    ("ngo@example.org", "nonprofit", "2026-10-03 11:45:00+03"),
    ("press@example.org", "media", "2026-10-04 12:00:00+03"),
    ("other@example.org", "other", "2026-10-05 13:20:00+03"),
];

#[tokio::test]
async fn the_forms_migration_carries_over_categories_and_consents_of_existing_registrations() {
    let db = TestDb::empty().await;
    // The last version before categories and consents became per event.
    migrate_up_to(&db, "20261130000120").await;
    let client = db.client().await;
    let event = Uuid::new_v4().to_string();
    let session = Uuid::new_v4().to_string();
    client
        .execute(
            "INSERT INTO events (id, slug, title, time_zone, starts_on, ends_on, city, status) \
             VALUES ($1::text::uuid, 'mmdn', 'VII Мурманская международная деловая неделя', \
                     'Europe/Moscow', '2027-04-20', '2027-04-24', 'Мурманск', 'published')",
            &[&event],
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO sessions (id, event_id, title, kind, starts_at, ends_at, status) \
             VALUES ($1::text::uuid, $2::text::uuid, 'Социальное партнёрство', 'business_session', \
                     '2027-04-24 11:00+03', '2027-04-24 13:00+03', 'published')",
            &[&session, &event],
        )
        .await
        .unwrap();
    let mut registrations = Vec::new();
    for (email, category, consent_at) in CONSENT_AT {
        let id = Uuid::new_v4().to_string();
        // The nonprofit one was cancelled before the upgrade.
        let cancelled = category == "nonprofit";
        client
            .execute(
                "INSERT INTO registrations (id, event_id, full_name, email, email_normalized, \
                     organisation, category, status, source, manage_token_hash, consent_at, \
                     created_at, updated_at, cancelled_at) \
                 VALUES ($1::text::uuid, $2::text::uuid, 'Анна Сергеевна Иванова', $3, $3, 'АНО «Городские события»', \
                         $4, CASE WHEN $5 THEN 'cancelled' ELSE 'active' END, 'public', \
                         uuid_send(gen_random_uuid()), $6::text::timestamptz, \
                         $6::text::timestamptz, $6::text::timestamptz, \
                         CASE WHEN $5 THEN $6::text::timestamptz + interval '1 day' END)",
                &[&id, &event, &email, &category, &cancelled, &consent_at],
            )
            .await
            .unwrap();
        client
            .execute(
                "INSERT INTO registration_sessions (registration_id, session_id, status) \
                 VALUES ($1::text::uuid, $2::text::uuid, CASE WHEN $3 THEN 'cancelled' ELSE 'confirmed' END)",
                &[&id, &session, &cancelled],
            )
            .await
            .unwrap();
        registrations.push((id, category, cancelled, consent_at));
    }
    drop(client);

    // The new version starts on it and applies the migrations still pending.
    let app = spawn_app_on(db, |_| {}).await;
    let client = app.db.client().await;
    let pending: i64 = client
        .query_one(
            "SELECT count(*) FROM __diesel_schema_migrations WHERE version > '20261130000120'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(pending > 0, "the later migrations were applied");

    // The event has the five categories every event used to have, as rows of its own.
    let rows = client
        .query(
            "SELECT code, name_ru, name_en, capacity IS NULL AND NOT waitlist AND public \
             FROM event_categories WHERE event_id = $1::text::uuid ORDER BY position",
            &[&event],
        )
        .await
        .unwrap();
    let categories: Vec<(String, String, String, bool)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let expected = [
        ("government", "Власть", "Government"),
        ("business", "Бизнес", "Business"),
        ("nonprofit", "Общество", "Society"),
        ("media", "СМИ", "Media"),
        ("other", "Другое", "Other"),
    ];
    assert_eq!(
        categories,
        expected
            .iter()
            .map(|(code, ru, en)| (code.to_string(), ru.to_string(), en.to_string(), true))
            .collect::<Vec<_>>()
    );
    let listed = app.get("/api/v1/events/mmdn/categories", None).await;
    listed.assert_status(200);
    let listed: Vec<(Value, Value)> = listed
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["code"].clone(), c["name"].clone()))
        .collect();
    assert_eq!(
        listed,
        expected
            .iter()
            .map(|(code, ru, en)| (json!(code), json!({"ru": ru, "en": en})))
            .collect::<Vec<_>>()
    );

    // Every registration keeps its category and the consent it gave, when it gave it: the
    // one text there was, version 1 of personal_data.
    let admin = app.admin().await.access;
    for (id, category, cancelled, consent_at) in &registrations {
        let consents = client
            .query(
                "SELECT c.consent_key, c.version, c.accepted_at = r.consent_at, \
                        c.accepted_at = $2::text::timestamptz \
                 FROM registration_consents c JOIN registrations r ON r.id = c.registration_id \
                 WHERE c.registration_id = $1::text::uuid",
                &[id, consent_at],
            )
            .await
            .unwrap();
        let consents: Vec<(String, i32, bool, bool)> = consents
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect();
        assert_eq!(
            consents,
            [("personal_data".to_owned(), 1, true, true)],
            "{category}"
        );

        let view = app
            .get(&format!("/api/v1/registrations/{id}"), Some(&admin))
            .await;
        view.assert_status(200);
        let view = view.json();
        assert_eq!(view["category"], *category);
        assert_eq!(
            view["status"],
            if *cancelled { "cancelled" } else { "active" }
        );
        assert_eq!(view["category_waitlist_position"], Value::Null);
        assert_eq!(
            view["sessions"],
            json!([{
                "session_id": session,
                "status": if *cancelled { "cancelled" } else { "confirmed" },
                "waitlist_position": null,
                "over_capacity": false,
            }])
        );
        let accepted = view["consents"].as_array().unwrap();
        assert_eq!(accepted.len(), 1, "{view}");
        assert_eq!(accepted[0]["key"], "personal_data");
        assert_eq!(accepted[0]["version"], 1);
        assert_eq!(accepted[0]["accepted_at"], view["consent_at"]);
        let accepted_at =
            chrono::DateTime::parse_from_rfc3339(accepted[0]["accepted_at"].as_str().unwrap())
                .unwrap();
        let given =
            chrono::DateTime::parse_from_str(&format!("{consent_at}00"), "%Y-%m-%d %H:%M:%S%z")
                .unwrap();
        assert_eq!(accepted_at, given, "{category}");
    }
    let total: i64 = client
        .query_one("SELECT count(*) FROM registration_consents", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(total as usize, registrations.len());
}
