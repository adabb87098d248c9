//! Typed, prefixed, time-sortable ids: `msg_…`, `ep_…`, `atmpt_…`, `key_…`.

use std::fmt;

use serde::{Deserialize, Serialize};
use ulid::Ulid;

/// Longest id body accepted from outside; ours are 26 characters.
const MAX_BODY: usize = 64;

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            pub fn new() -> Self {
                Self::from_ulid(Ulid::new())
            }

            pub fn from_ulid(ulid: Ulid) -> Self {
                Self(format!("{}{}", $prefix, ulid))
            }

            /// Accepts the prefix followed by 1–64 ASCII letters and digits, so an id
            /// taken from a path can never smuggle a key separator into a table key.
            pub fn parse(text: &str) -> Option<Self> {
                let body = text.strip_prefix($prefix)?;
                let valid = !body.is_empty()
                    && body.len() <= MAX_BODY
                    && body.bytes().all(|b| b.is_ascii_alphanumeric());
                valid.then(|| Self(text.to_string()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;

            fn try_from(text: String) -> Result<Self, Self::Error> {
                Self::parse(&text).ok_or_else(|| format!("`{text}` is not a {} id", $prefix))
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
    };
}

prefixed_id!(
    /// A message: one accepted event. Also the `webhook-id` every delivery of it carries.
    MessageId,
    "msg_"
);
prefixed_id!(
    /// An endpoint: a URL an account subscribed.
    EndpointId,
    "ep_"
);
prefixed_id!(
    /// One delivery attempt of a message to an endpoint.
    AttemptId,
    "atmpt_"
);

prefixed_id!(
    /// A platform key, as `hookline keys list` names it (never the key itself).
    ApiKeyId,
    "key_"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_carry_their_prefix_and_sort_by_time() {
        let first = MessageId::new();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = MessageId::new();
        assert!(first.as_str().starts_with("msg_"));
        assert_eq!(first.as_str().len(), 4 + 26);
        assert!(first < second);
        assert!(EndpointId::new().as_str().starts_with("ep_"));
        assert!(AttemptId::new().as_str().starts_with("atmpt_"));
    }

    #[test]
    fn parse_checks_prefix_and_characters() {
        assert!(MessageId::parse("msg_p5jXN8AQM9LWM0D4loKWxJek").is_some());
        for bad in [
            "",
            "msg_",
            "ep_01H",
            "msg_a#b",
            "msg_a/b",
            "MSG_abc",
            &format!("msg_{}", "a".repeat(65)),
        ] {
            assert!(MessageId::parse(bad).is_none(), "{bad}");
        }
        let id = EndpointId::new();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<EndpointId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<EndpointId>("\"msg_1\"").is_err());
    }
}
