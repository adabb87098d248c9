//! The endpoint writes the API makes, against the emulator's table: each is
//! conditional, and each recognises its own earlier success — when the SDK
//! retries a write whose answer was lost, the retry's condition fails on the
//! first try's effect, and the write must still report success.

use hookline_tests::TestEnv;
use shared::endpoint;
use shared::model::EndpointSecrets;
use shared::signing::Secret;
use shared::store::Creation;
use time::OffsetDateTime;

#[tokio::test]
async fn a_repeated_create_succeeds_and_a_different_one_with_the_same_id_fails() {
    let env = TestEnv::new("").await;
    let (endpoint, secret) = env
        .add_endpoint("jane", "https://example.com/a", |_| {})
        .await;
    let secrets = EndpointSecrets::new(secret);
    let again = env.store.create_endpoint(&endpoint, &secrets).await;
    assert_eq!(
        again.expect("the same write again is the same success"),
        Creation::Created
    );

    let other = EndpointSecrets::new(Secret::generate());
    assert!(env.store.create_endpoint(&endpoint, &other).await.is_err());
    let mut moved = endpoint.clone();
    moved.url = "https://example.com/b".into();
    assert!(env.store.create_endpoint(&moved, &secrets).await.is_err());
    let (stored, stored_secrets) = env
        .store
        .get_endpoint(&"jane".parse().unwrap(), &endpoint.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.url, endpoint.url);
    assert_eq!(stored_secrets.current, secrets.current);
}

#[tokio::test]
async fn a_repeated_update_succeeds_and_a_stale_one_fails() {
    let env = TestEnv::new("").await;
    let (original, _) = env
        .add_endpoint("jane", "https://example.com/a", |_| {})
        .await;
    let (current, _) = env
        .store
        .get_endpoint(&"jane".parse().unwrap(), &original.id)
        .await
        .unwrap()
        .unwrap();
    let mut changed = current.clone();
    changed.url = "https://example.com/b".into();
    changed.updated_at = OffsetDateTime::now_utc();
    for _ in 0..2 {
        assert!(
            env.store
                .update_endpoint(&changed, current.updated_at)
                .await
                .unwrap()
        );
    }

    // Another change made from the same stale read: refused, and nothing written.
    let mut stale = current.clone();
    stale.url = "https://example.com/c".into();
    stale.updated_at = OffsetDateTime::now_utc();
    assert!(
        !env.store
            .update_endpoint(&stale, current.updated_at)
            .await
            .unwrap()
    );
    let (stored, _) = env
        .store
        .get_endpoint(&"jane".parse().unwrap(), &original.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.url, "https://example.com/b");
}

#[tokio::test]
async fn a_repeated_rotation_succeeds_and_a_racing_one_fails() {
    let env = TestEnv::new("").await;
    let (endpoint, secret) = env
        .add_endpoint("jane", "https://example.com/a", |_| {})
        .await;
    let before = EndpointSecrets::new(secret.clone());
    let now = OffsetDateTime::now_utc();
    let rotated = endpoint::rotated(&before, Secret::generate(), now);
    for _ in 0..2 {
        assert!(
            env.store
                .rotate_secret(&endpoint, &rotated, &secret, now)
                .await
                .unwrap()
        );
    }

    // A second rotation from the same read lost the race: refused, the first one stays.
    let racing = endpoint::rotated(&before, Secret::generate(), now);
    assert!(
        !env.store
            .rotate_secret(&endpoint, &racing, &secret, now)
            .await
            .unwrap()
    );
    let (_, stored) = env
        .store
        .get_endpoint(&"jane".parse().unwrap(), &endpoint.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.current, rotated.current);
}

#[tokio::test]
async fn a_rotation_after_an_edit_it_did_not_read_fails() {
    let env = TestEnv::new("").await;
    let (added, secret) = env
        .add_endpoint("jane", "https://example.com/a", |_| {})
        .await;
    let read = env.stored_endpoint(&added.account, &added.id).await;
    // An edit lands between the rotation's read and its write, stamped by a clock
    // ahead of the rotating instance's.
    let mut edited = read.clone();
    edited.url = "https://example.com/b".into();
    edited.updated_at = read.updated_at + time::Duration::minutes(5);
    assert!(
        env.store
            .update_endpoint(&edited, read.updated_at)
            .await
            .unwrap()
    );

    let now = OffsetDateTime::now_utc();
    let rotated = endpoint::rotated(
        &EndpointSecrets::new(secret.clone()),
        Secret::generate(),
        now,
    );
    assert!(
        !env.store
            .rotate_secret(&read, &rotated, &secret, now)
            .await
            .unwrap(),
        "a rotation from a read older than the edit is refused, to be made again from a new read"
    );
    let (stored, secrets) = env
        .store
        .get_endpoint(&read.account, &read.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.url, edited.url);
    assert_eq!(
        stored.updated_at, edited.updated_at,
        "the version never goes back"
    );
    assert_eq!(secrets.current, secret, "the secret is not rotated");
}
