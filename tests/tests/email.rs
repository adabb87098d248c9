//! Email endpoints through `hookline dev` and the shipped binaries, read back
//! from the emails the emulator's SES recorded: a window's events make one
//! email to every address listed, naming each event (a registered type's text
//! template filling its text); a window with no events sends nothing; a digest
//! sent now counts the period's events by type and by dataset.

use std::time::Duration;

use hookline_tests::{Dev, emails_to, emulator_url, poll_until};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Short, so a test waits seconds for a window, not minutes.
const WINDOW_SECONDS: u64 = 3;
const EMAIL_TIMEOUT: Duration = Duration::from_secs(30);

/// Waits, if need be, until a window has just begun: the events sent next then
/// fall in one window. Windows are aligned to multiples of their length.
async fn at_a_window_start() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let into = now.as_millis() % u128::from(WINDOW_SECONDS * 1000);
    if into > 300 {
        tokio::time::sleep(Duration::from_millis(
            u64::try_from(u128::from(WINDOW_SECONDS * 1000) - into).unwrap() + 100,
        ))
        .await;
    }
}

#[tokio::test]
async fn a_window_s_events_make_one_email_and_a_digest_counts_them() {
    let window = format!("{WINDOW_SECONDS}s");
    let dev = Dev::start(&["--emulator", emulator_url(), "--email-window", &window]);
    let client = reqwest::Client::new();
    let run = ulid::Ulid::new().to_string().to_lowercase();
    let (first, second, quiet) = (
        format!("a-{run}@example.com"),
        format!("b-{run}@example.com"),
        format!("q-{run}@example.com"),
    );
    let since = time::OffsetDateTime::now_utc() - time::Duration::MINUTE;

    let (status, registered) = dev
        .send(
            &client,
            Method::POST,
            "/v1/event-types",
            json!({"name": "task.submitted",
                   "text_template": "Task {object.task_id} submitted by {object.assignee}"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{registered}");
    let task_type = registered["name"].as_str().unwrap().to_string();

    let endpoints = "/v1/accounts/jane/endpoints";
    let (status, mailbox) = dev
        .send(
            &client,
            Method::POST,
            endpoints,
            json!({"type": "email", "emails": [first, second], "datasets": ["jane/flowers"],
                   "description": "flower team"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{mailbox}");
    assert_eq!(mailbox["type"], "email");
    assert_eq!(mailbox["reactive"], true);
    assert!(mailbox.get("secret").is_none() && mailbox.get("url").is_none());
    // Every field of the endpoint object is there, null where it does not apply.
    assert_eq!(mailbox.get("format"), Some(&Value::Null), "{mailbox}");
    let mailbox_id = mailbox["id"].as_str().unwrap().to_string();
    // Subscribed to a dataset nothing happens in: its windows stay empty.
    let (status, quiet_box) = dev
        .send(
            &client,
            Method::POST,
            endpoints,
            json!({"type": "email", "emails": [quiet], "datasets": ["jane/quiet"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{quiet_box}");

    at_a_window_start().await;
    let events = json!({"events": [
        {"event_type": "sample.created", "dataset": "jane/flowers", "object": {"name": "rose.png"},
         "text": "Sample rose.png created"},
        {"event_type": "sample.created", "dataset": "jane/flowers", "object": {"name": "tulip.png"},
         "text": "Sample tulip.png created"},
        {"event_type": task_type, "dataset": "jane/flowers",
         "object": {"task_id": "t-17", "assignee": "ana"}},
    ]});
    let (status, accepted) = dev
        .send(&client, Method::POST, "/v1/events/batch", events)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");

    let email = poll_until(EMAIL_TIMEOUT, "the window's email", || async {
        emails_to(&client, &first).await.into_iter().next()
    })
    .await;
    assert_eq!(email["subject"], "3 events in jane/flowers", "{email}");
    let recipients = email["destinations"].to_string();
    assert!(
        recipients.contains(&first) && recipients.contains(&second),
        "{email}"
    );
    let body = email["body"].as_str().unwrap();
    for text in [
        "Sample rose.png created",
        "Sample tulip.png created",
        "Task t-17 submitted by ana",
    ] {
        assert!(body.contains(text), "{text} is not in {body}");
    }
    assert!(
        body.contains(&mailbox_id) && body.contains("flower team"),
        "{body}"
    );

    // The email is an attempt in the endpoint's log, under the first event it carries.
    let attempts_path = format!("{endpoints}/{mailbox_id}/attempts");
    let (_, attempts) = dev
        .send(&client, Method::GET, &attempts_path, Value::Null)
        .await;
    let attempts = attempts["data"].as_array().unwrap().clone();
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(attempts[0]["status"], "succeeded");

    // A digest now: the period's events counted by type and by dataset.
    let (status, period) = dev
        .send(
            &client,
            Method::POST,
            &format!("{endpoints}/{mailbox_id}/digest"),
            json!({"since": shared::timefmt::format(since)}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{period}");
    let digest = poll_until(EMAIL_TIMEOUT, "the digest", || async {
        emails_to(&client, &first)
            .await
            .into_iter()
            .find(|email| email["subject"].as_str().unwrap().starts_with("Digest"))
    })
    .await;
    assert_eq!(digest["subject"], "Digest for jane: 3 events", "{digest}");
    let body = digest["body"].as_str().unwrap();
    for row in [
        "<tr><td>sample.created</td><td>2</td></tr>".to_string(),
        format!("<tr><td>{task_type}</td><td>1</td></tr>"),
        "<tr><td>jane/flowers</td><td>3</td></tr>".to_string(),
    ] {
        assert!(body.contains(&row), "{row} is not in {body}");
    }

    // Still one window email: nothing was sent twice, and the quiet endpoint got nothing.
    let windows = emails_to(&client, &first)
        .await
        .into_iter()
        .filter(|email| email["subject"] != digest["subject"])
        .count();
    assert_eq!(windows, 1);
    assert!(emails_to(&client, &quiet).await.is_empty());
}
