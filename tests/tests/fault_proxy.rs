//! The fault injector itself, on the emulator: what it forwards takes effect, what
//! it refuses does not, the SDK reads its faults as the services' own, and its
//! counts and choices are exact and follow the seed.

use std::collections::BTreeSet;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::AttributeValue;
use hookline_tests::faults::{FaultKind, FaultPlan, FaultProxy};
use hookline_tests::{TestEnv, emulator_url};

/// Clients of the table and queues of `env` that go through `proxy`; `attempts`
/// is the SDK's attempts per call (1: no retries).
async fn clients_through(
    proxy: &FaultProxy,
    attempts: u32,
) -> (aws_sdk_dynamodb::Client, aws_sdk_sqs::Client) {
    let sdk = shared::aws::for_emulator(proxy.url()).await;
    let retry =
        aws_sdk_dynamodb::config::retry::RetryConfig::standard().with_max_attempts(attempts);
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk)
            .retry_config(retry.clone())
            .build(),
    );
    let sqs = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(&sdk)
            .retry_config(retry)
            .build(),
    );
    (dynamodb, sqs)
}

fn key(name: &str) -> std::collections::HashMap<String, AttributeValue> {
    [
        ("pk".to_string(), AttributeValue::S(format!("fault#{name}"))),
        ("sk".to_string(), AttributeValue::S(name.to_string())),
    ]
    .into()
}

async fn put(dynamodb: &aws_sdk_dynamodb::Client, env: &TestEnv, name: &str) -> Result<(), String> {
    dynamodb
        .put_item()
        .table_name(&env.config.table)
        .set_item(Some(key(name)))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| e.code().unwrap_or("no code").to_string())
}

async fn stored(env: &TestEnv, name: &str) -> bool {
    env.dynamodb
        .get_item()
        .table_name(&env.config.table)
        .set_key(Some(key(name)))
        .send()
        .await
        .expect("the emulator answers")
        .item
        .is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_faulted_after_forwarding_took_effect_and_a_refused_one_did_not() {
    let env = TestEnv::new("").await;
    let proxy = FaultProxy::start(emulator_url(), 1);
    let (dynamodb, sqs) = clients_through(&proxy, 1).await;
    let queue = env.queues.delivery_url().to_string();

    proxy.arm(FaultPlan {
        share: 1.0,
        after_forwarding: 1.0,
        throttled: 0.0,
    });
    assert_eq!(
        put(&dynamodb, &env, "lost").await,
        Err("InternalServerError".into())
    );
    let sent = sqs
        .send_message()
        .queue_url(&queue)
        .message_body("lost")
        .send()
        .await
        .expect_err("the answer is a fault");
    assert_eq!(sent.code(), Some("InternalFailure"));
    assert!(stored(&env, "lost").await, "the put took effect");
    assert_eq!(env.queue_depth(&queue).await, 1, "the message was sent");

    proxy.arm(FaultPlan {
        share: 1.0,
        after_forwarding: 0.0,
        throttled: 0.5,
    });
    for n in 0..6 {
        assert!(put(&dynamodb, &env, &format!("refused-{n}")).await.is_err());
        assert!(!stored(&env, &format!("refused-{n}")).await);
    }
    assert_eq!(env.queue_depth(&queue).await, 1);

    proxy.disarm();
    assert_eq!(put(&dynamodb, &env, "through").await, Ok(()));
    assert!(stored(&env, "through").await);

    let counts = proxy.counts();
    assert_eq!(counts.calls_of("DynamoDB.PutItem"), 8);
    assert_eq!(counts.calls_of("SQS.SendMessage"), 1);
    assert_eq!(counts.faults_of(FaultKind::AnswerLost), 2);
    assert_eq!(
        counts.faults_of(FaultKind::Throttled) + counts.faults_of(FaultKind::Failed),
        6
    );
    assert_eq!(counts.armed_calls, 8);
    println!("{counts}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_reads_the_faults_as_the_services_own_errors_and_retries_them() {
    let env = TestEnv::new("").await;
    let proxy = FaultProxy::start(emulator_url(), 2);
    // The SDK's defaults: three attempts, throttling and 500s retried.
    let (dynamodb, sqs) = clients_through(&proxy, 3).await;
    let codes =
        |list: &[&str]| -> BTreeSet<String> { list.iter().map(|c| c.to_string()).collect() };
    let cases = [
        (
            1.0,
            codes(&[
                "ThrottlingException",
                "ProvisionedThroughputExceededException",
            ]),
            codes(&["ThrottlingException", "RequestThrottled"]),
        ),
        (
            0.0,
            codes(&["InternalServerError"]),
            codes(&["InternalFailure"]),
        ),
    ];
    for (throttled, dynamodb_expected, sqs_expected) in cases {
        proxy.arm(FaultPlan {
            share: 1.0,
            after_forwarding: 0.0,
            throttled,
        });
        let before = proxy.counts();
        let mut dynamodb_codes = BTreeSet::new();
        let mut sqs_codes = BTreeSet::new();
        for n in 0..2 {
            dynamodb_codes.insert(
                put(&dynamodb, &env, &format!("{throttled}-{n}"))
                    .await
                    .unwrap_err(),
            );
            let error = sqs
                .get_queue_attributes()
                .queue_url(env.queues.delivery_url())
                .send()
                .await
                .expect_err("refused");
            sqs_codes.insert(error.code().unwrap_or("no code").to_string());
        }
        // Which throttling code a call gets follows the seed; each is one the SDK retries.
        assert!(
            dynamodb_codes.is_subset(&dynamodb_expected),
            "{dynamodb_codes:?}"
        );
        assert!(sqs_codes.is_subset(&sqs_expected), "{sqs_codes:?}");
        let after = proxy.counts();
        let more = |operation: &str| after.calls_of(operation) - before.calls_of(operation);
        assert_eq!(
            more("DynamoDB.PutItem"),
            6,
            "each call was tried three times"
        );
        assert_eq!(more("SQS.GetQueueAttributes"), 6);
    }
    let counts = proxy.counts();
    assert_eq!(counts.faults_of(FaultKind::Throttled), 12);
    assert_eq!(counts.faults_of(FaultKind::Failed), 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_are_exact_and_the_same_seed_faults_the_same_calls() {
    let env = TestEnv::new("").await;
    let outcomes = |seed| {
        let env = &env;
        async move {
            let proxy = FaultProxy::start(emulator_url(), seed);
            let (dynamodb, _) = clients_through(&proxy, 1).await;
            proxy.arm(FaultPlan::share(0.25));
            let mut outcomes = Vec::new();
            for n in 0..120 {
                outcomes.push(put(&dynamodb, env, &format!("{seed}-{n}")).await.is_ok());
            }
            proxy.disarm();
            for n in 0..10 {
                assert_eq!(
                    put(&dynamodb, env, &format!("{seed}-after-{n}")).await,
                    Ok(())
                );
            }
            (outcomes, proxy.counts())
        }
    };
    let (first, counts) = outcomes(42).await;
    let failed = first.iter().filter(|ok| !**ok).count() as u64;
    assert!(failed > 0, "a quarter of the calls fail");
    assert_eq!(counts.total_faults(), failed);
    assert_eq!(counts.calls_of("DynamoDB.PutItem"), 130);
    assert_eq!(counts.armed_calls, 120);
    assert_eq!(
        counts.faulted.get("DynamoDB.PutItem").copied(),
        Some(failed)
    );
    // A call faulted after forwarding is stored all the same; the others are not.
    let mut stored_count = 0;
    for n in 0..120 {
        stored_count += usize::from(stored(&env, &format!("42-{n}")).await);
    }
    assert_eq!(
        stored_count as u64,
        120 - failed + counts.faults_of(FaultKind::AnswerLost)
    );

    let (again, _) = outcomes(42).await;
    assert_eq!(first, again, "the same seed faults the same calls");
    let (other, _) = outcomes(43).await;
    assert_ne!(first, other);
}
