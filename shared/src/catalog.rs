//! The event types a platform may post: the built-in ones, seed of the registry,
//! and those it registered ([`crate::registry`]); and the sentence each reads as.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::event::FieldError;
use crate::event_type::EventType;
use crate::registry::{self, RegisteredType};
use crate::text_template;

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

/// hookline's own event types ([`crate::operational`]): listed and subscribable by
/// name like the others, never posted by the platform nor registered over.
pub const OPERATIONAL_TYPES: &[Definition] = &[
    Definition {
        name: "endpoint.disabled",
        description: "hookline disabled an endpoint: it answered 410 Gone, or failed without a success for too long.",
    },
    Definition {
        name: "message.attempt.failing",
        description: "A message failed its fourth attempt at an endpoint.",
    },
    Definition {
        name: "message.attempt.exhausted",
        description: "A message's last attempt at an endpoint failed; its job went to the dead-letter queue.",
    },
    Definition {
        name: "message.attempt.recovered",
        description: "A message reached an endpoint after it had been reported failing there.",
    },
];

fn is_known(name: &str) -> bool {
    EVENT_TYPES
        .iter()
        .chain(OPERATIONAL_TYPES)
        .any(|t| t.name == name)
}

/// Whether `name` is one of hookline's own operational types.
pub fn is_operational(name: &str) -> bool {
    OPERATIONAL_TYPES.iter().any(|t| t.name == name)
}

/// Whether `name` is a built-in type, operational ones included: those are read-only.
pub fn is_builtin(name: &str) -> bool {
    is_known(name)
}

/// `name` as an [`EventType`], when it is a built-in one.
pub fn builtin(name: &str) -> Option<EventType> {
    is_known(name).then(|| EventType::parse(name)).flatten()
}

/// A registered type with its schema compiled once.
#[derive(Debug, Clone)]
struct Entry {
    registered: RegisteredType,
    schema: Schema,
}

#[derive(Debug, Clone)]
enum Schema {
    None,
    Compiled(Arc<jsonschema::Validator>),
    /// In a catalog of names only ([`Catalog::names_only`]).
    NotCompiled,
}

/// The whole catalog at one moment: the built-in types and the registered ones.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    registered: BTreeMap<String, Entry>,
}

impl Catalog {
    /// The catalog with `registered` beside the built-ins. Err when a stored schema
    /// does not compile (it did when it was stored).
    pub fn new(registered: Vec<RegisteredType>) -> Result<Self, String> {
        let registered = registered
            .into_iter()
            .map(|registered| {
                let schema = match &registered.schema {
                    Some(schema) => Schema::Compiled(Arc::new(
                        registry::compile(schema)
                            .map_err(|e| format!("the schema of {}: {e}", registered.name))?,
                    )),
                    None => Schema::None,
                };
                Ok((registered.name.to_string(), Entry { registered, schema }))
            })
            .collect::<Result<_, String>>()?;
        Ok(Self { registered })
    }

    /// The catalog for naming types only (subscriptions, filters): no schema is
    /// compiled, which costs milliseconds each and keeps the JSON Schema code out
    /// of binaries that never check an event. It must not check one.
    pub fn names_only(registered: Vec<RegisteredType>) -> Self {
        let registered = registered
            .into_iter()
            .map(|registered| {
                let schema = match registered.schema {
                    Some(_) => Schema::NotCompiled,
                    None => Schema::None,
                };
                (registered.name.to_string(), Entry { registered, schema })
            })
            .collect();
        Self { registered }
    }

    /// `name` as an event type an event may have and an endpoint may newly
    /// subscribe to: built-in, or registered and not archived.
    pub fn subscribable(&self, name: &str) -> Option<EventType> {
        match self.registered.get(name) {
            Some(entry) if !entry.registered.archived => Some(entry.registered.name.clone()),
            Some(_) => None,
            None => builtin(name),
        }
    }

    /// `name` as an event type the catalog has or had, archived ones included.
    pub fn any(&self, name: &str) -> Option<EventType> {
        match self.registered.get(name) {
            Some(entry) => Some(entry.registered.name.clone()),
            None => builtin(name),
        }
    }

    /// Whether `object` fits the schema of `event_type`, if it has one.
    pub fn check_object(
        &self,
        event_type: &EventType,
        object: &Map<String, Value>,
    ) -> Result<(), FieldError> {
        match self.registered.get(event_type.as_str()).map(|e| &e.schema) {
            Some(Schema::Compiled(validator)) => registry::check_object(validator, object),
            Some(Schema::NotCompiled) => {
                panic!("a catalog of names only checks no event: build it with Catalog::new")
            }
            Some(Schema::None) | None => Ok(()),
        }
    }

    /// The text template of `event_type`, if it has one.
    pub fn text_template(&self, event_type: &EventType) -> Option<&str> {
        self.registered
            .get(event_type.as_str())
            .and_then(|e| e.registered.text_template.as_deref())
    }

    /// `GET /v1/event-types`'s `data`: the built-in types, the operational ones, then
    /// the registered ones by name.
    pub fn listing(&self) -> Vec<Value> {
        let builtins = EVENT_TYPES.iter().chain(OPERATIONAL_TYPES).map(|t| {
            json!({"name": t.name, "description": t.description, "schema": null,
                   "text_template": null, "operational": is_operational(t.name), "archived": false})
        });
        builtins
            .chain(self.registered.values().map(|e| e.registered.view()))
            .collect()
    }
}

/// The most bytes of a text hookline writes for an event, `…` included. Its values
/// come from the object, so unbounded it could hold the object again (or, through a
/// template, many times over) and take a message within the body limit past
/// DynamoDB's 400 KB item.
pub const MAX_GENERATED_TEXT_BYTES: usize = 4096;

/// An event's text when the platform sent none: from its type's template, else the
/// built-in sentence; cut to [`MAX_GENERATED_TEXT_BYTES`].
pub fn text(
    template: Option<&str>,
    event_type: &str,
    dataset: &str,
    object: &Map<String, Value>,
) -> String {
    let text = match template {
        Some(template) => text_template::render(
            template,
            event_type,
            dataset,
            object,
            MAX_GENERATED_TEXT_BYTES,
        ),
        None => default_text(event_type, dataset, object),
    };
    cut(text, MAX_GENERATED_TEXT_BYTES)
}

/// `text` if it has at most `max_bytes`, else its start ending in `…`, within them.
fn cut(mut text: String, max_bytes: usize) -> String {
    const ELLIPSIS: char = '…';
    if text.len() <= max_bytes {
        return text;
    }
    text.truncate(text.floor_char_boundary(max_bytes - ELLIPSIS.len_utf8()));
    text.push(ELLIPSIS);
    text
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
        assert!(EVENT_TYPES.iter().all(|t| builtin(t.name).is_some()));
        assert_eq!(builtin("sample.exploded"), None);
    }

    #[test]
    fn the_operational_types_are_built_in_and_marked() {
        assert_eq!(OPERATIONAL_TYPES.len(), 4);
        for name in [
            "endpoint.disabled",
            "message.attempt.failing",
            "message.attempt.exhausted",
            "message.attempt.recovered",
        ] {
            assert!(is_operational(name) && is_builtin(name), "{name}");
            assert!(Catalog::default().subscribable(name).is_some(), "{name}");
        }
        assert!(!is_operational("sample.created") && !is_operational("endpoint"));
        let listing = Catalog::default().listing();
        let operational: Vec<&Value> = listing
            .iter()
            .filter(|t| t["operational"] == true)
            .map(|t| &t["name"])
            .collect();
        assert_eq!(operational.len(), 4);
        assert_eq!(listing.len(), EVENT_TYPES.len() + OPERATIONAL_TYPES.len());
    }

    fn registered(name: &str, archived: bool, schema: Option<Value>) -> RegisteredType {
        let now = time::OffsetDateTime::now_utc();
        RegisteredType {
            name: EventType::parse(name).unwrap(),
            description: String::new(),
            schema,
            text_template: Some("Task {object.name} in {dataset}".into()),
            archived,
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn a_catalog_of_names_only_names_what_the_full_one_names() {
        let types = || {
            vec![
                registered("task.submitted", false, Some(json!({"required": ["name"]}))),
                registered("task.old", true, None),
            ]
        };
        let (full, names) = (Catalog::new(types()).unwrap(), Catalog::names_only(types()));
        for name in ["sample.created", "task.submitted", "task.old", "task.never"] {
            assert_eq!(names.subscribable(name), full.subscribable(name), "{name}");
            assert_eq!(names.any(name), full.any(name), "{name}");
        }
        // Even a schema that would not compile: names only never compiles it.
        let broken = vec![registered("task.odd", false, Some(json!({"type": 12})))];
        assert!(Catalog::new(broken.clone()).is_err());
        assert!(
            Catalog::names_only(broken)
                .subscribable("task.odd")
                .is_some()
        );
    }

    #[test]
    #[should_panic(expected = "names only")]
    fn a_catalog_of_names_only_checks_no_event() {
        let names = Catalog::names_only(vec![registered(
            "task.submitted",
            false,
            Some(json!({"required": ["name"]})),
        )]);
        let submitted = names.subscribable("task.submitted").unwrap();
        let _ = names.check_object(&submitted, &object(json!({"name": "x"})));
    }

    #[test]
    fn the_catalog_is_the_built_ins_and_the_registered_types() {
        let catalog = Catalog::new(vec![
            registered("task.submitted", false, Some(json!({"required": ["name"]}))),
            registered("task.old", true, None),
        ])
        .unwrap();
        assert!(catalog.subscribable("sample.created").is_some());
        assert!(catalog.subscribable("task.submitted").is_some());
        assert_eq!(catalog.subscribable("task.old"), None);
        assert!(catalog.any("task.old").is_some());
        assert_eq!(catalog.any("task.never"), None);
        let listing = catalog.listing();
        let seeded = EVENT_TYPES.len() + OPERATIONAL_TYPES.len();
        assert_eq!(listing.len(), seeded + 2);
        assert_eq!(listing[0]["schema"], Value::Null);
        assert_eq!(listing[seeded]["name"], "task.old");

        let submitted = catalog.subscribable("task.submitted").unwrap();
        assert!(
            catalog
                .check_object(&submitted, &object(json!({"name": "x"})))
                .is_ok()
        );
        assert_eq!(
            catalog
                .check_object(&submitted, &object(json!({})))
                .unwrap_err()
                .field,
            "/object/name"
        );
        let template = catalog.text_template(&submitted);
        assert_eq!(
            text(
                template,
                "task.submitted",
                "jane/flowers",
                &object(json!({"name": "t1"}))
            ),
            "Task t1 in jane/flowers"
        );
        assert_eq!(
            text(
                None,
                "sample.created",
                "jane/flowers",
                &object(json!({"name": "rose.png"}))
            ),
            "Sample rose.png created in dataset jane/flowers."
        );
        assert!(
            Catalog::new(vec![registered(
                "task.bad",
                false,
                Some(json!({"type": 5}))
            )])
            .is_err()
        );
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

    #[test]
    fn a_generated_text_is_cut_to_its_most_bytes() {
        // Multi-byte characters, so that the cut must find a character's boundary.
        let long = object(json!({"name": "é".repeat(100_000)}));
        for template in [None, Some("{object.name}{object.name}")] {
            let text = text(template, "sample.created", "jane/flowers", &long);
            assert!(text.len() <= MAX_GENERATED_TEXT_BYTES, "{template:?}");
            assert!(text.len() > MAX_GENERATED_TEXT_BYTES - 4, "{template:?}");
            assert!(text.ends_with("éé…"), "{template:?}");
        }
        let rose = object(json!({"name": "rose.png"}));
        assert_eq!(
            text(
                Some("{object.name} done"),
                "sample.created",
                "jane/flowers",
                &rose
            ),
            "rose.png done"
        );
    }
}
