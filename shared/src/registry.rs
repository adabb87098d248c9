//! Event types the platform registers beside the built-in ones: a name, a
//! description, an optional JSON Schema (draft 2020-12) for the events' `object`,
//! an optional text template, and whether it is archived. The bodies of
//! `POST /v1/event-types` and `PATCH /v1/event-types/{name}`, checked field by field.

use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use crate::event::FieldError;
use crate::event_type::EventType;
use crate::text_template::MAX_TEMPLATE_BYTES;

pub const MAX_DESCRIPTION_BYTES: usize = 1024;
/// The largest schema, as compact JSON.
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;

const NEW_FIELDS: &[&str] = &["name", "description", "schema", "text_template"];
const CHANGE_FIELDS: &[&str] = &["description", "schema", "text_template", "archived"];

#[derive(Debug, Clone, PartialEq)]
pub struct RegisteredType {
    pub name: EventType,
    pub description: String,
    /// A JSON Schema for the events' `object`, known to compile.
    pub schema: Option<Value>,
    pub text_template: Option<String>,
    /// No longer accepted at ingest nor subscribable; existing subscriptions keep it.
    pub archived: bool,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl RegisteredType {
    /// As `GET /v1/event-types` lists it.
    pub fn view(&self) -> Value {
        json!({
            "name": self.name,
            "description": self.description,
            "schema": self.schema,
            "text_template": self.text_template,
            "operational": false,
            "archived": self.archived,
        })
    }
}

/// A JSON Schema compiled for validating objects. Its `$ref`s resolve within the
/// schema only: nothing is fetched.
pub fn compile(schema: &Value) -> Result<jsonschema::Validator, String> {
    if !schema.is_object() && !schema.is_boolean() {
        return Err("must be a JSON Schema: an object or a boolean".into());
    }
    jsonschema::draft202012::new(schema).map_err(|e| format!("is not a valid JSON Schema: {e}"))
}

/// Where `object` breaks `validator`, as `<JSON pointer under /object>: <why>`. A
/// missing required property is pointed at itself, not at the object lacking it.
pub fn check_object(
    validator: &jsonschema::Validator,
    object: &Map<String, Value>,
) -> Result<(), FieldError> {
    let instance = Value::Object(object.clone());
    let Err(error) = validator.validate(&instance) else {
        return Ok(());
    };
    let mut place = format!("/object{}", error.instance_path().as_str());
    if let jsonschema::error::ValidationErrorKind::Required {
        property: Value::String(missing),
    } = error.kind()
    {
        place.push('/');
        place.push_str(&missing.replace('~', "~0").replace('/', "~1"));
    }
    Err(FieldError::new(place, error.to_string()))
}

fn refuse_unknown_fields(body: &Map<String, Value>, known: &[&str]) -> Result<(), FieldError> {
    match body.keys().find(|k| !known.contains(&k.as_str())) {
        Some(unknown) => Err(FieldError::new(
            unknown.as_str(),
            format!("unknown field; expected one of {}", known.join(", ")),
        )),
        None => Ok(()),
    }
}

fn description_field(value: &Value) -> Result<String, FieldError> {
    match value {
        Value::Null => Ok(String::new()),
        Value::String(s) if s.len() > MAX_DESCRIPTION_BYTES => Err(FieldError::new(
            "description",
            format!("must be at most {MAX_DESCRIPTION_BYTES} bytes"),
        )),
        Value::String(s) => Ok(s.clone()),
        _ => Err(FieldError::new("description", "must be a string")),
    }
}

fn schema_field(value: &Value) -> Result<Option<Value>, FieldError> {
    if value.is_null() {
        return Ok(None);
    }
    if value.to_string().len() > MAX_SCHEMA_BYTES {
        return Err(FieldError::new(
            "schema",
            format!("must be at most {} KiB", MAX_SCHEMA_BYTES / 1024),
        ));
    }
    compile(value).map_err(|problem| FieldError::new("schema", problem))?;
    Ok(Some(value.clone()))
}

fn template_field(value: &Value) -> Result<Option<String>, FieldError> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) if s.is_empty() => Err(FieldError::new(
            "text_template",
            "must not be empty (null removes it)",
        )),
        Value::String(s) if s.len() > MAX_TEMPLATE_BYTES => Err(FieldError::new(
            "text_template",
            format!("must be at most {MAX_TEMPLATE_BYTES} bytes"),
        )),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(FieldError::new("text_template", "must be a string")),
    }
}

/// The type a `POST /v1/event-types` body registers, made at `now`.
pub fn parse_new(
    body: &Map<String, Value>,
    now: OffsetDateTime,
) -> Result<RegisteredType, FieldError> {
    refuse_unknown_fields(body, NEW_FIELDS)?;
    let field = |name: &str| body.get(name).unwrap_or(&Value::Null);
    let name = match field("name") {
        Value::Null => return Err(FieldError::new("name", "is required")),
        Value::String(name) => EventType::parse(name).ok_or_else(|| {
            FieldError::new(
                "name",
                "must be lower-case dotted words of a-z, 0-9 and _, 3 to 64 bytes, e.g. task.submitted",
            )
        })?,
        _ => return Err(FieldError::new("name", "must be a string")),
    };
    Ok(RegisteredType {
        name,
        description: description_field(field("description"))?,
        schema: schema_field(field("schema"))?,
        text_template: template_field(field("text_template"))?,
        archived: false,
        created_at: now,
        updated_at: now,
    })
}

/// What a `PATCH /v1/event-types/{name}` body changes; `null` removes a schema or template.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Change {
    pub description: Option<String>,
    pub schema: Option<Option<Value>>,
    pub text_template: Option<Option<String>>,
    pub archived: Option<bool>,
}

pub fn parse_change(body: &Map<String, Value>) -> Result<Change, FieldError> {
    refuse_unknown_fields(body, CHANGE_FIELDS)?;
    let archived = match body.get("archived") {
        None => None,
        Some(Value::Bool(archived)) => Some(*archived),
        Some(_) => return Err(FieldError::new("archived", "must be true or false")),
    };
    Ok(Change {
        description: body.get("description").map(description_field).transpose()?,
        schema: body.get("schema").map(schema_field).transpose()?,
        text_template: body.get("text_template").map(template_field).transpose()?,
        archived,
    })
}

impl Change {
    pub fn archive() -> Self {
        Self {
            archived: Some(true),
            ..Self::default()
        }
    }

    pub fn apply(&self, registered: &RegisteredType, now: OffsetDateTime) -> RegisteredType {
        let mut changed = registered.clone();
        if let Some(description) = &self.description {
            changed.description = description.clone();
        }
        if let Some(schema) = &self.schema {
            changed.schema = schema.clone();
        }
        if let Some(template) = &self.text_template {
            changed.text_template = template.clone();
        }
        if let Some(archived) = self.archived {
            changed.archived = archived;
        }
        if changed != *registered {
            changed.updated_at = now;
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap()
    }

    const TASK_SCHEMA: &str = r#"{"type": "object", "required": ["task_id", "stage"],
        "properties": {"task_id": {"type": "string"}, "stage": {"type": "string"},
                       "assignee": {"type": "string"}}}"#;

    #[test]
    fn registers_a_type_with_a_schema_and_a_template() {
        let schema: Value = serde_json::from_str(TASK_SCHEMA).unwrap();
        let registered = parse_new(
            &body(
                json!({"name": "task.submitted", "description": "A task was submitted.",
                         "schema": schema, "text_template": "Task {object.task_id} submitted"}),
            ),
            now(),
        )
        .unwrap();
        assert_eq!(registered.name, "task.submitted");
        assert_eq!(registered.schema.as_ref(), Some(&schema));
        assert!(!registered.archived);
        assert_eq!(registered.view()["operational"], false);
        let minimal = parse_new(&body(json!({"name": "task.completed"})), now()).unwrap();
        assert_eq!(
            (
                minimal.description.as_str(),
                minimal.schema,
                minimal.text_template
            ),
            ("", None, None)
        );
    }

    #[test]
    fn refuses_each_bad_field_by_name() {
        let cases = [
            ("name", json!({})),
            ("name", json!({"name": "Task.Submitted"})),
            ("name", json!({"name": 3})),
            (
                "schema",
                json!({"name": "task.x", "schema": {"type": "nonsense"}}),
            ),
            (
                "schema",
                json!({"name": "task.x", "schema": {"minLength": -1}}),
            ),
            ("schema", json!({"name": "task.x", "schema": "string"})),
            (
                "schema",
                json!({"name": "task.x", "schema": {"$ref": "https://example.com/s.json"}}),
            ),
            (
                "text_template",
                json!({"name": "task.x", "text_template": 1}),
            ),
            (
                "text_template",
                json!({"name": "task.x", "text_template": ""}),
            ),
            (
                "description",
                json!({"name": "task.x", "description": "d".repeat(MAX_DESCRIPTION_BYTES + 1)}),
            ),
            ("colour", json!({"name": "task.x", "colour": "red"})),
        ];
        for (field, value) in cases {
            let error = parse_new(&body(value.clone()), now()).unwrap_err();
            assert_eq!(error.field, field, "{value}");
        }
        assert_eq!(
            parse_change(&body(json!({"archived": "yes"})))
                .unwrap_err()
                .field,
            "archived"
        );
        assert_eq!(
            parse_change(&body(json!({"name": "a.b"})))
                .unwrap_err()
                .field,
            "name"
        );
    }

    #[test]
    fn a_change_touches_only_what_it_names() {
        let registered = parse_new(
            &body(json!({"name": "task.submitted", "schema": {"type": "object"}, "text_template": "T"})),
            now(),
        )
        .unwrap();
        let later = now() + time::Duration::minutes(1);
        let change =
            parse_change(&body(json!({"description": "d", "text_template": null}))).unwrap();
        let changed = change.apply(&registered, later);
        assert_eq!(changed.description, "d");
        assert_eq!(changed.text_template, None);
        assert_eq!(changed.schema, registered.schema);
        assert_eq!(changed.updated_at, later);
        let archived = Change::archive().apply(&changed, later);
        assert!(archived.archived);
        assert_eq!(
            Change::default().apply(&registered, later).updated_at,
            now()
        );
    }

    #[test]
    fn an_object_that_breaks_the_schema_is_named_by_its_pointer() {
        let validator = compile(&serde_json::from_str(TASK_SCHEMA).unwrap()).unwrap();
        let object = |v: Value| v.as_object().unwrap().clone();
        assert!(
            check_object(
                &validator,
                &object(json!({"task_id": "t1", "stage": "review"}))
            )
            .is_ok()
        );
        let error = check_object(
            &validator,
            &object(json!({"task_id": 7, "stage": "review"})),
        )
        .unwrap_err();
        assert_eq!(error.field, "/object/task_id");
        assert!(
            error.to_string().starts_with("/object/task_id: "),
            "{error}"
        );
        let error = check_object(&validator, &object(json!({"task_id": "t1"}))).unwrap_err();
        assert_eq!(error.field, "/object/stage");
        assert!(error.problem.contains("stage"), "{error}");
    }

    #[test]
    fn a_missing_property_is_pointed_at_escaped_where_it_would_be() {
        let validator = compile(&json!({
            "type": "object",
            "properties": {"box": {"type": "object", "required": ["a/b~c"]}},
            "required": ["box"]
        }))
        .unwrap();
        let field = |value: Value| {
            let object = value.as_object().unwrap().clone();
            check_object(&validator, &object).unwrap_err().field
        };
        assert_eq!(field(json!({})), "/object/box");
        assert_eq!(field(json!({"box": {}})), "/object/box/a~1b~0c");
    }
}
