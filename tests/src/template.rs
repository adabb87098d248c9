//! The SAM template in `infra/`, read as JSON, for the tests that hold the
//! code to it.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// The workspace's root directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits inside the workspace")
        .to_path_buf()
}

/// `infra/`, where the template lives.
pub fn infra_dir() -> PathBuf {
    workspace_root().join("infra")
}

/// The template as JSON, with CloudFormation's short-form tags (`!Ref x`,
/// `!GetAtt a.b`, `!Sub …`) rewritten to their long forms, so the checks
/// read one shape whichever form the template uses.
pub fn template() -> Value {
    let path = infra_dir().join("template.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let yaml: serde_norway::Value = serde_norway::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
    to_json(yaml)
}

pub fn to_json(yaml: serde_norway::Value) -> Value {
    use serde_norway::Value as Y;
    match yaml {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(
                    n.as_f64()
                        .expect("a YAML number is a float if not an integer"),
                )
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(to_json).collect()),
        Y::Mapping(mapping) => Value::Object(
            mapping
                .into_iter()
                .map(|(key, value)| (scalar_text(&to_json(key)), to_json(value)))
                .collect(),
        ),
        Y::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let name = tag.trim_start_matches('!');
            let value = to_json(tagged.value);
            let (key, value) = match name {
                "Ref" | "Condition" => (name.to_string(), value),
                // `!GetAtt Table.Arn` is the string form of `Fn::GetAtt: [Table, Arn]`.
                "GetAtt" => match value {
                    Value::String(s) => {
                        let (resource, attribute) =
                            s.split_once('.').expect("!GetAtt names resource.attribute");
                        (
                            "Fn::GetAtt".to_string(),
                            Value::from(vec![resource, attribute]),
                        )
                    }
                    other => ("Fn::GetAtt".to_string(), other),
                },
                _ => (format!("Fn::{name}"), value),
            };
            Value::Object(Map::from_iter([(key, value)]))
        }
    }
}

/// A scalar as text, the way CloudFormation reads keys and `Ref`s to numbers.
pub fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("expected a scalar, found {other}"),
    }
}

/// The template's resources, by logical id.
pub fn resources(template: &Value) -> &Map<String, Value> {
    template["Resources"]
        .as_object()
        .expect("the template has Resources")
}

/// The resources of one CloudFormation type.
pub fn resources_of_type<'t>(template: &'t Value, kind: &str) -> Vec<(&'t str, &'t Value)> {
    resources(template)
        .iter()
        .filter(|(_, resource)| resource["Type"] == kind)
        .map(|(name, resource)| (name.as_str(), resource))
        .collect()
}

/// The template's Lambda functions, by logical id.
pub fn functions(template: &Value) -> Vec<(&str, &Value)> {
    let functions = resources_of_type(template, "AWS::Serverless::Function");
    assert!(
        !functions.is_empty(),
        "the template defines no AWS::Serverless::Function"
    );
    functions
}

/// A function's property, or the `Globals` one it inherits.
pub fn function_property<'t>(template: &'t Value, function: &'t Value, key: &str) -> &'t Value {
    match &function["Properties"][key] {
        Value::Null => &template["Globals"]["Function"][key],
        own => own,
    }
}

/// The queue a configuration variable of every function names, e.g.
/// `HOOKLINE_DELIVERY_QUEUE_URL`: its logical id and resource.
pub fn queue_named_by<'t>(template: &'t Value, variable: &str) -> (&'t str, &'t Value) {
    let value = &template["Globals"]["Function"]["Environment"]["Variables"][variable];
    let logical_id = value["Ref"]
        .as_str()
        .unwrap_or_else(|| panic!("{variable} is not a Ref to a queue: {value}"));
    let (id, queue) = resources(template)
        .get_key_value(logical_id)
        .unwrap_or_else(|| panic!("{variable} names {logical_id}, which is no resource"));
    assert_eq!(
        queue["Type"], "AWS::SQS::Queue",
        "{variable} names {logical_id}"
    );
    (id.as_str(), queue)
}

/// The delivery queue.
pub fn delivery_queue(template: &Value) -> &Value {
    queue_named_by(template, shared::config::DELIVERY_QUEUE_URL).1
}
