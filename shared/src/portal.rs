//! Portal sessions: short-lived tokens that let one account's people manage that
//! account's webhooks through the portal page. A token is shown once; the table
//! keeps its SHA-256 with its account, expiry and the account's portal generation
//! when it was made. Revoking every token of an account moves the generation on,
//! so a token made before (or while) it moved is refused.

use serde_json::{Map, Value};
use time::{Duration, OffsetDateTime};

use crate::account::Account;
use crate::event::FieldError;
use crate::keys;

pub const TOKEN_PREFIX: &str = "hlp_";
/// Bounds and default of `ttl_seconds`.
pub const MIN_TTL_SECONDS: i64 = 60;
pub const MAX_TTL_SECONDS: i64 = 86_400;
pub const DEFAULT_TTL_SECONDS: i64 = 3_600;

/// Between the account and the random part of a token: in no URL-safe base64, so
/// the last one in a token ends its account, whose name may hold dots too.
pub const ACCOUNT_END: char = '.';

/// A new portal token of `account`: `hlp_<account>.<random>`. The portal page's URL
/// carries only the token, so the page reads from it which account it manages (as
/// Svix's portal reads its application from the token); the server trusts nothing
/// of it but the whole token's hash.
pub fn generate_token(account: &Account) -> String {
    keys::generate_with(&format!("{TOKEN_PREFIX}{account}{ACCOUNT_END}"))
}

/// Whether a presented secret is meant as a portal token rather than a platform key.
pub fn is_token(secret: &str) -> bool {
    secret.starts_with(TOKEN_PREFIX)
}

/// A portal token as stored: never the token itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalToken {
    pub token_hash: String,
    pub account: Account,
    /// The account's portal generation when the token was made.
    pub generation: u64,
    /// Whole seconds, as DynamoDB's TTL reads them.
    pub expires_at: OffsetDateTime,
}

impl PortalToken {
    /// The stored form of `token`, for `account` at `generation`, ending `ttl` after `now`.
    pub fn new(
        token: &str,
        account: &Account,
        generation: u64,
        now: OffsetDateTime,
        ttl: Duration,
    ) -> Self {
        // Rounded up: a token lives at least the `ttl_seconds` asked for.
        let end = now + ttl;
        let expires_at = (end + Duration::seconds(i64::from(end.nanosecond() > 0)))
            .replace_nanosecond(0)
            .expect("0 is a valid nanosecond");
        Self {
            token_hash: keys::hash(token),
            account: account.clone(),
            generation,
            expires_at,
        }
    }

    /// Whether the token still opens its account: not expired, and not revoked
    /// (the account's generation is still the one it was made in).
    pub fn is_live(&self, now: OffsetDateTime, current_generation: u64) -> bool {
        now < self.expires_at && self.generation == current_generation
    }
}

/// `ttl_seconds` of a `POST …/portal-sessions` body: an integer from
/// [`MIN_TTL_SECONDS`] to [`MAX_TTL_SECONDS`], [`DEFAULT_TTL_SECONDS`] when absent.
pub fn parse_ttl(body: &Map<String, Value>) -> Result<Duration, FieldError> {
    if let Some(unknown) = body.keys().find(|k| k.as_str() != "ttl_seconds") {
        return Err(FieldError::new(
            unknown.as_str(),
            "unknown field; expected ttl_seconds",
        ));
    }
    let seconds = match body.get("ttl_seconds") {
        None | Some(Value::Null) => DEFAULT_TTL_SECONDS,
        Some(value) => value
            .as_i64()
            .filter(|s| (MIN_TTL_SECONDS..=MAX_TTL_SECONDS).contains(s))
            .ok_or_else(|| {
                FieldError::new(
                    "ttl_seconds",
                    format!("must be an integer from {MIN_TTL_SECONDS} to {MAX_TTL_SECONDS}"),
                )
            })?,
    };
    Ok(Duration::seconds(seconds))
}

/// The portal page's address with `token` in its fragment, which browsers never
/// send to a server, so the token stays out of access logs.
pub fn page_url(origin: &str, token: &str) -> String {
    format!("{origin}/portal#token={token}")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn body(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn ttl_defaults_and_bounds() {
        assert_eq!(parse_ttl(&Map::new()).unwrap(), Duration::hours(1));
        assert_eq!(
            parse_ttl(&body(json!({"ttl_seconds": null}))).unwrap(),
            Duration::hours(1)
        );
        for ok in [60, 61, 86_400] {
            assert_eq!(
                parse_ttl(&body(json!({ "ttl_seconds": ok }))).unwrap(),
                Duration::seconds(ok)
            );
        }
        for (refused, field) in [
            (json!({"ttl_seconds": 59}), "ttl_seconds"),
            (json!({"ttl_seconds": 86_401}), "ttl_seconds"),
            (json!({"ttl_seconds": 0}), "ttl_seconds"),
            (json!({"ttl_seconds": -60}), "ttl_seconds"),
            (json!({"ttl_seconds": 90.5}), "ttl_seconds"),
            (json!({"ttl_seconds": "3600"}), "ttl_seconds"),
            (json!({"ttl_seconds": true}), "ttl_seconds"),
            (json!({"ttl": 60}), "ttl"),
        ] {
            let error = parse_ttl(&body(refused.clone())).unwrap_err();
            assert_eq!(error.field, field, "{refused}");
        }
    }

    #[test]
    fn a_token_lives_until_it_expires_or_its_generation_moves_on() {
        let now = OffsetDateTime::now_utc()
            .replace_nanosecond(250_000_000)
            .unwrap();
        let jane = Account::parse("jane").unwrap();
        let token = generate_token(&jane);
        assert!(is_token(&token) && !is_token(&keys::generate()));
        let stored = PortalToken::new(&token, &jane, 3, now, Duration::seconds(60));
        assert_eq!(stored.token_hash, keys::hash(&token));
        // Whole seconds, rounded up: it lives its 60 s at least.
        assert_eq!(stored.expires_at, now + Duration::milliseconds(60_750));
        assert!(stored.is_live(now, 3));
        assert!(stored.is_live(now + Duration::seconds(60), 3));
        assert!(!stored.is_live(now, 4), "revoked");
        assert!(!stored.is_live(now, 2), "generations only move on");
        assert!(!stored.is_live(stored.expires_at, 3), "expired");
    }

    #[test]
    fn a_token_names_its_account_before_the_last_dot_as_the_page_reads_it() {
        for name in ["jane", "jane.doe", "a-b_c.d"] {
            let account = Account::parse(name).unwrap();
            let token = generate_token(&account);
            let (named, random) = token
                .strip_prefix(TOKEN_PREFIX)
                .unwrap()
                .rsplit_once(ACCOUNT_END)
                .unwrap();
            assert_eq!(named, name);
            assert!(random.len() >= 43, "{token}");
            assert_ne!(generate_token(&account), token);
        }
    }

    #[test]
    fn the_url_carries_the_token_in_its_fragment() {
        assert_eq!(
            page_url("http://127.0.0.1:3000", "hlp_abc"),
            "http://127.0.0.1:3000/portal#token=hlp_abc"
        );
    }
}
