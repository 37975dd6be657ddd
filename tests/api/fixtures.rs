//! The shared fixtures work as the tests of both modules expect.

use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn a_published_event_with_a_session_takes_a_registration() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    app.event(&admin.access, "mmdn", json!({})).await;
    let session = app
        .session(&admin.access, "mmdn", json!({"capacity": 10}))
        .await;
    let id = session["id"].as_str().unwrap();

    let answer = app.register("mmdn", "anna@example.org", &[id]).await;

    answer.assert_status(201);
    assert_eq!(answer.json()["sessions"][0]["status"], "confirmed");
}
