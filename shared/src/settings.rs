//! An account's settings: whether its webhooks are enabled. Every account starts
//! enabled; while disabled, its events are stored and fan out to nothing.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::event::FieldError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AccountSettings {
    pub webhooks_enabled: bool,
}

impl Default for AccountSettings {
    fn default() -> Self {
        Self {
            webhooks_enabled: true,
        }
    }
}

/// The changes of a `PATCH …/settings` body; `None` leaves a setting as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SettingsPatch {
    pub webhooks_enabled: Option<bool>,
}

impl SettingsPatch {
    pub fn apply(self, settings: AccountSettings) -> AccountSettings {
        AccountSettings {
            webhooks_enabled: self.webhooks_enabled.unwrap_or(settings.webhooks_enabled),
        }
    }
}

pub fn parse_patch(body: &Map<String, Value>) -> Result<SettingsPatch, FieldError> {
    if let Some(unknown) = body.keys().find(|k| k.as_str() != "webhooks_enabled") {
        return Err(FieldError::new(
            unknown.as_str(),
            "unknown field; expected webhooks_enabled",
        ));
    }
    let webhooks_enabled = match body.get("webhooks_enabled") {
        None => None,
        Some(Value::Bool(enabled)) => Some(*enabled),
        Some(_) => return Err(FieldError::new("webhooks_enabled", "must be true or false")),
    };
    Ok(SettingsPatch { webhooks_enabled })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn body(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn accounts_start_enabled_and_a_patch_changes_what_it_names() {
        let enabled = AccountSettings::default();
        assert!(enabled.webhooks_enabled);
        let off = parse_patch(&body(json!({"webhooks_enabled": false}))).unwrap();
        let disabled = off.apply(enabled);
        assert!(!disabled.webhooks_enabled);
        assert_eq!(parse_patch(&Map::new()).unwrap().apply(disabled), disabled);
        assert_eq!(
            serde_json::to_value(disabled).unwrap(),
            json!({"webhooks_enabled": false})
        );
    }

    #[test]
    fn refuses_what_is_not_a_flag() {
        for (refused, field) in [
            (json!({"webhooks_enabled": "false"}), "webhooks_enabled"),
            (json!({"webhooks_enabled": 0}), "webhooks_enabled"),
            (json!({"webhooks_enabled": null}), "webhooks_enabled"),
            (json!({"enabled": true}), "enabled"),
        ] {
            let error = parse_patch(&body(refused.clone())).unwrap_err();
            assert_eq!(error.field, field, "{refused}");
        }
    }
}
