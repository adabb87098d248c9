//! The event types a platform may post, and the sentence each one reads as.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::event_type::EventType;

/// A built-in event type as `GET /v1/event-types` lists it.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Definition {
    pub name: &'static str,
    pub description: &'static str,
}

pub const EVENT_TYPES: &[Definition] = &[
    Definition {
        name: "dataset.created",
        description: "A dataset was created.",
    },
    Definition {
        name: "dataset.updated",
        description: "A dataset's settings or metadata changed.",
    },
    Definition {
        name: "dataset.deleted",
        description: "A dataset was deleted.",
    },
    Definition {
        name: "sample.created",
        description: "A sample was added to a dataset.",
    },
    Definition {
        name: "sample.updated",
        description: "A sample's data or metadata changed.",
    },
    Definition {
        name: "sample.deleted",
        description: "A sample was removed from a dataset.",
    },
    Definition {
        name: "label.updated",
        description: "A sample's labels were created or changed.",
    },
    Definition {
        name: "label.deleted",
        description: "A sample's labels were removed.",
    },
    Definition {
        name: "issue.created",
        description: "An issue was opened on a dataset.",
    },
    Definition {
        name: "issue.updated",
        description: "An issue was changed, commented on or closed.",
    },
    Definition {
        name: "release.created",
        description: "A release of a dataset was published.",
    },
];

fn is_known(name: &str) -> bool {
    EVENT_TYPES.iter().any(|t| t.name == name)
}

/// `name` as an [`EventType`], when the catalog has it.
pub fn known(name: &str) -> Option<EventType> {
    is_known(name).then(|| EventType::parse(name)).flatten()
}

/// The sentence a delivery carries when the platform sent no `text`, e.g.
/// `Sample rose.png created in dataset jane/flowers.`
pub fn default_text(event_type: &str, dataset: &str, object: &Map<String, Value>) -> String {
    let (resource, action) = event_type
        .split_once('.')
        .unwrap_or((event_type, "changed"));
    let noun = capitalized(resource);
    if resource == "dataset" {
        return format!("{noun} {dataset} {action}.");
    }
    let name = ["name", "title", "id"]
        .iter()
        .find_map(|key| match object.get(*key) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        });
    match name {
        Some(name) => format!("{noun} {name} {action} in dataset {dataset}."),
        None => format!("{noun} {action} in dataset {dataset}."),
    }
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn catalog_has_the_eleven_seed_types() {
        assert_eq!(EVENT_TYPES.len(), 11);
        assert!(is_known("sample.created") && is_known("release.created"));
        assert!(!is_known("sample.exploded") && !is_known(""));
        assert!(EVENT_TYPES.iter().all(|t| known(t.name).is_some()));
        assert_eq!(known("sample.exploded"), None);
    }

    #[test]
    fn default_text_reads_as_a_sentence() {
        let rose = object(json!({"name": "rose.png"}));
        assert_eq!(
            default_text("sample.created", "jane/flowers", &rose),
            "Sample rose.png created in dataset jane/flowers."
        );
        assert_eq!(
            default_text("dataset.deleted", "jane/flowers", &rose),
            "Dataset jane/flowers deleted."
        );
        assert_eq!(
            default_text("issue.updated", "jane/flowers", &object(json!({"id": 42}))),
            "Issue 42 updated in dataset jane/flowers."
        );
        assert_eq!(
            default_text("label.deleted", "jane/flowers", &object(json!({}))),
            "Label deleted in dataset jane/flowers."
        );
    }
}
