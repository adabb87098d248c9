//! The scheduler's emails against the emulator's DynamoDB and SES.

use std::time::{Duration, Instant};

use hookline_tests::{TestEnv, emails_to, emulator_url, poll_until};
use scheduler::{Deps, emails};
use shared::email::EmailSettings;
use shared::email::render::EmailEvent;
use shared::ids::MessageId;
use shared::mail::Mailer;
use shared::model::AttemptStatus;
use time::OffsetDateTime;

fn deps(env: &TestEnv, mailer: Option<Mailer>) -> Deps {
    Deps {
        store: env.store.clone(),
        queues: env.queues.clone(),
        mailer,
        config: env.config.clone(),
    }
}

#[tokio::test]
async fn an_email_whose_send_failed_is_sent_at_its_next_attempt() {
    let env = TestEnv::new("1s,1s").await;
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
    // One event in a window that has ended: its email is due.
    let now = OffsetDateTime::now_utc();
    let event = EmailEvent {
        message_id: MessageId::new(),
        event_type: "sample.created".into(),
        dataset: "jane/flowers".into(),
        created_at: shared::timefmt::format(now),
        text: "Sample rose.png created in dataset jane/flowers.".into(),
    };
    let window_start = now - time::Duration::MINUTE;
    assert!(
        env.store
            .gather_email_event(
                &endpoint.account,
                &endpoint.id,
                window_start,
                now - time::Duration::SECOND,
                &event,
                true,
            )
            .await
            .unwrap()
    );

    // No sender: the send fails, and its next attempt is registered.
    let report = emails::run(&deps(&env, None), Instant::now() + Duration::from_secs(10)).await;
    assert_eq!((report.failed, report.sent), (1, 0), "{report:?}");

    let sdk = shared::aws::for_emulator(emulator_url()).await;
    let mailer = Mailer::new(aws_sdk_sesv2::Client::new(&sdk), "hooks@example.com");
    mailer.create_sender_identity().await.unwrap();
    let with_sender = deps(&env, Some(mailer));
    // Due after the schedule's first step (1 s, jittered); a held claim would never be.
    poll_until(
        Duration::from_secs(15),
        "the email sent at its second attempt",
        || async {
            let report = emails::run(&with_sender, Instant::now() + Duration::from_secs(10)).await;
            assert_eq!(report.errors, 0, "{report:?}");
            (report.sent == 1).then_some(())
        },
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
