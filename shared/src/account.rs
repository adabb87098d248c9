//! An account: the owner part of a dataset, the `{account}` of an API path, and the
//! scope of every endpoint, message and attempt. Parsed once where it enters, so a
//! table key or a queue job never carries a malformed one and a function that takes
//! an [`Account`] cannot be handed some other string by mistake.

/// Longest account name, and longest part of a dataset name.
pub const MAX_NAME_BYTES: usize = 100;

/// A name as accounts and datasets spell them: letters, digits, `.`, `_` and `-`,
/// starting with a letter or digit, at most [`MAX_NAME_BYTES`]. No key separator
/// (`#`) or path separator can pass.
pub fn is_valid_name(text: &str) -> bool {
    text.len() <= MAX_NAME_BYTES
        && text
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

crate::name::validated_name!(Account, is_valid_name, "an account name");

impl Account {
    /// The owner of a dataset `owner/name`, when both parts are valid names.
    pub fn of_dataset(dataset: &str) -> Option<Self> {
        let (owner, name) = dataset.split_once('/')?;
        is_valid_name(name).then_some(())?;
        Self::parse(owner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_pass_and_names_that_do_not() {
        for good in ["jane", "j", "Jane.Doe_2-x", &"a".repeat(MAX_NAME_BYTES)] {
            assert_eq!(Account::parse(good).unwrap(), good, "{good}");
        }
        for bad in [
            "",
            ".jane",
            "-jane",
            "ja#ne",
            "ja/ne",
            "ja ne",
            "jané",
            &"a".repeat(MAX_NAME_BYTES + 1),
        ] {
            assert!(Account::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn the_owner_of_a_dataset() {
        assert_eq!(Account::of_dataset("jane/flowers").unwrap(), "jane");
        for bad in [
            "jane",
            "jane/",
            "/flowers",
            "jane/flo/wers",
            "ja#ne/flowers",
        ] {
            assert!(Account::of_dataset(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn travels_as_a_string_and_refuses_a_malformed_one() {
        let account = Account::parse("jane").unwrap();
        assert_eq!(serde_json::to_string(&account).unwrap(), "\"jane\"");
        assert_eq!(
            serde_json::from_str::<Account>("\"jane\"").unwrap(),
            account
        );
        assert!(serde_json::from_str::<Account>("\"ja#ne\"").is_err());
    }
}
