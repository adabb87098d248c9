//! An event type's name, e.g. `sample.created`: what an event is, what an endpoint
//! subscribes to and what a DLQ replay filters by. Parsed once where it enters;
//! whether the catalog knows it is a separate question ([`crate::catalog::known`]).

pub const MIN_BYTES: usize = 3;
pub const MAX_BYTES: usize = 64;

/// Lower-case dotted words of `a`–`z`, `0`–`9` and `_`, 3–64 bytes: `task.submitted`.
fn is_valid(text: &str) -> bool {
    (MIN_BYTES..=MAX_BYTES).contains(&text.len())
        && text.split('.').all(|word| {
            !word.is_empty()
                && word
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
}

crate::name::validated_name!(EventType, is_valid, "an event type name");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_pass_and_names_that_do_not() {
        for good in [
            "sample.created",
            "message.attempt.failing",
            "task_2.submitted",
            "abc",
            &"a".repeat(MAX_BYTES),
        ] {
            assert_eq!(EventType::parse(good).unwrap(), good, "{good}");
        }
        for bad in [
            "",
            "ab",
            "Sample.created",
            "sample..created",
            ".sample",
            "sample.",
            "sample-created",
            "sample created",
            "sample#created",
            &"a".repeat(MAX_BYTES + 1),
        ] {
            assert!(EventType::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn travels_as_a_string_and_refuses_a_malformed_one() {
        let name = EventType::parse("sample.created").unwrap();
        assert_eq!(serde_json::to_string(&name).unwrap(), "\"sample.created\"");
        assert_eq!(
            serde_json::from_str::<EventType>("\"sample.created\"").unwrap(),
            name
        );
        assert!(serde_json::from_str::<EventType>("\"Sample\"").is_err());
    }
}
