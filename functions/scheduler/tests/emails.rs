//! The scheduler's emails against the emulator's DynamoDB, SQS and SES.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use hookline_tests::{TestEnv, emails_to, emulator_url, poll_until};
use scheduler::{Deps, emails};
use serde_json::Value;
use shared::email::EmailSettings;
use shared::email::render::EmailEvent;
use shared::ids::MessageId;
use shared::mail::Mailer;
use shared::model::{AttemptStatus, Endpoint};
use shared::task::Task;
use time::OffsetDateTime;

fn deps(env: &TestEnv, mailer: Option<Mailer>) -> Deps {
    Deps {
        store: env.store.clone(),
        queues: env.queues.clone(),
        mailer,
        config: env.config.clone(),
    }
}

/// A mailer of the emulator's SES, its sender an identity there.
async fn mailer() -> Mailer {
    let sdk = shared::aws::for_emulator(emulator_url()).await;
    let mailer = Mailer::new(aws_sdk_sesv2::Client::new(&sdk), "hooks@example.com");
    mailer.create_sender_identity().await.unwrap();
    mailer
}

/// An email endpoint of jane's to an address of its own, and the address.
async fn email_endpoint(env: &TestEnv) -> (Endpoint, String) {
    let address = format!(
        "ops-{}@example.com",
        ulid::Ulid::new().to_string().to_lowercase()
    );
    let (endpoint, _) = env
        .add_endpoint("jane", "", |e| {
            e.email = Some(EmailSettings {
                emails: vec![address.clone()],
                reactive: true,
                digest: None,
            });
        })
        .await;
    (endpoint, address)
}

/// One event of `endpoint` in a window that has ended: its email is due.
async fn due_email(env: &TestEnv, endpoint: &Endpoint) -> EmailEvent {
    let now = OffsetDateTime::now_utc();
    let event = EmailEvent {
        message_id: MessageId::new(),
        event_type: "sample.created".into(),
        dataset: "jane/flowers".into(),
        created_at: shared::timefmt::format(now),
        text: "Sample rose.png created in dataset jane/flowers.".into(),
    };
    assert!(
        env.store
            .gather_email_event(
                &endpoint.account,
                &endpoint.id,
                now - time::Duration::MINUTE,
                now - time::Duration::SECOND,
                &event,
                true,
            )
            .await
            .unwrap()
    );
    event
}

/// Runs what is due until a run's report is the one `done` waits for.
async fn run_until(deps: &Deps, what: &str, done: impl Fn(&emails::Report) -> bool) {
    poll_until(Duration::from_secs(15), what, || async {
        let report = emails::run(deps, Instant::now() + Duration::from_secs(10)).await;
        assert_eq!(report.errors, 0, "{report:?}");
        done(&report).then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_email_whose_send_failed_is_sent_at_its_next_attempt() {
    let env = TestEnv::new("1s,1s").await;
    let (endpoint, address) = email_endpoint(&env).await;
    let event = due_email(&env, &endpoint).await;

    // No sender: the send fails, and its next attempt is registered.
    let report = emails::run(&deps(&env, None), Instant::now() + Duration::from_secs(10)).await;
    assert_eq!((report.failed, report.sent), (1, 0), "{report:?}");
    // Due after the schedule's first step (1 s, jittered); a held claim never would be.
    run_until(
        &deps(&env, Some(mailer().await)),
        "the email sent at its second attempt",
        |report| report.sent == 1,
    )
    .await;

    let client = reqwest::Client::new();
    assert_eq!(emails_to(&client, &address).await.len(), 1);
    let attempts = env
        .store
        .attempts_of_message(&endpoint.account, &event.message_id)
        .await
        .unwrap();
    let outcomes: Vec<(u32, AttemptStatus)> =
        attempts.iter().map(|a| (a.attempt, a.status)).collect();
    assert_eq!(
        outcomes,
        [(1, AttemptStatus::Failed), (2, AttemptStatus::Succeeded)]
    );
}

#[tokio::test]
async fn an_email_failing_four_times_raises_failing_and_its_success_recovered() {
    let env = TestEnv::new("1s,1s,1s,1s").await;
    let (endpoint, _) = email_endpoint(&env).await;
    let event = due_email(&env, &endpoint).await;
    let without_sender = deps(&env, None);
    for attempt in 1..=4 {
        run_until(
            &without_sender,
            &format!("attempt {attempt} failed"),
            |report| report.failed == 1,
        )
        .await;
    }
    run_until(
        &deps(&env, Some(mailer().await)),
        "the email sent at its fifth attempt",
        |report| report.sent == 1,
    )
    .await;

    // As a delivery's attempts would: `failing` at the fourth, `recovered` after it,
    // both about the first event the email carries.
    let raised: Vec<(String, Value)> = env
        .receive_all_delivery()
        .await
        .iter()
        .map(|received| match Task::from_body(&received.body) {
            Some(Ok(Task::Raise(raise))) => {
                assert_eq!(raise.endpoint_id, endpoint.id);
                (raise.event_type.to_string(), Value::Object(raise.object))
            }
            other => panic!("not a raise: {other:?}"),
        })
        .collect();
    let types: BTreeSet<&str> = raised.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        types,
        BTreeSet::from(["message.attempt.failing", "message.attempt.recovered"])
    );
    for (_, object) in &raised {
        assert_eq!(object["message_id"], event.message_id.as_str());
    }
}
