//! An event type's `text_template`: a tiny placeholder language, nothing
//! executable. `{dataset}`, `{event_type}` and `{object.<dotted path>}` are
//! replaced; a missing value reads as empty, a string as itself, any other value
//! as its JSON text. Any other text, braces included, stays as written.

use serde_json::{Map, Value};

/// The most bytes a template may have.
pub const MAX_TEMPLATE_BYTES: usize = 1024;

/// `template` with its placeholders replaced by the event's values. Once the text
/// passes `max_bytes` it is returned as it stands, longer than that, for the caller
/// to cut: a few placeholders of a large value would otherwise copy it many times.
pub fn render(
    template: &str,
    event_type: &str,
    dataset: &str,
    object: &Map<String, Value>,
    max_bytes: usize,
) -> String {
    let mut text = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        if text.len() > max_bytes {
            return text;
        }
        text.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after
            .find(['{', '}'])
            .filter(|&i| after.as_bytes()[i] == b'}')
        else {
            // Not a placeholder: the brace is text.
            text.push('{');
            rest = after;
            continue;
        };
        let name = &after[..close];
        match value_of(name, event_type, dataset, object) {
            Some(value) => text.push_str(&value),
            None => {
                text.push('{');
                text.push_str(name);
                text.push('}');
            }
        }
        rest = &after[close + 1..];
    }
    text.push_str(rest);
    text
}

/// A placeholder's value: `None` for a name that is not a placeholder at all.
fn value_of(
    name: &str,
    event_type: &str,
    dataset: &str,
    object: &Map<String, Value>,
) -> Option<String> {
    match name {
        "dataset" => Some(dataset.to_string()),
        "event_type" => Some(event_type.to_string()),
        _ => {
            let path = name.strip_prefix("object.")?;
            let mut words = path.split('.');
            let first = object.get(words.next()?);
            let found = words.try_fold(first, |value, word| {
                Some(match value? {
                    Value::Object(map) => map.get(word),
                    Value::Array(items) => word.parse::<usize>().ok().and_then(|i| items.get(i)),
                    _ => None,
                })
            });
            Some(match found.flatten() {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(text)) => text.clone(),
                Some(other) => other.to_string(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn render_with(template: &str, object: Value) -> String {
        render(
            template,
            "task.submitted",
            "jane/flowers",
            object.as_object().unwrap(),
            usize::MAX,
        )
    }

    #[test]
    fn replaces_the_event_s_values() {
        let object = json!({"name": "Label rose", "stage": {"name": "review", "order": 2}, "tags": ["a", "b"], "done": false, "gone": null});
        assert_eq!(
            render_with("Task {object.name} submitted in {dataset}", object.clone()),
            "Task Label rose submitted in jane/flowers"
        );
        assert_eq!(
            render_with(
                "{event_type}: {object.stage.name} #{object.stage.order} {object.tags.1} {object.done} {object.tags}",
                object.clone()
            ),
            "task.submitted: review #2 b false [\"a\",\"b\"]"
        );
    }

    #[test]
    fn a_missing_value_reads_as_empty() {
        let object = json!({"name": "x", "gone": null, "stage": "flat"});
        assert_eq!(
            render_with(
                "[{object.nope}][{object.gone}][{object.stage.name}][{object.name.x}]",
                object
            ),
            "[][][][]"
        );
    }

    #[test]
    fn anything_else_stays_as_written() {
        let object = json!({"name": "x"});
        for text in [
            "no placeholders",
            "{unknown}",
            "{object}",
            "a { b",
            "a } b",
            "{{dataset}",
            "{",
            "",
            "{objects.name}",
        ] {
            let expected = text.replace("{dataset}", "jane/flowers");
            assert_eq!(render_with(text, object.clone()), expected, "{text}");
        }
        assert_eq!(render_with("{{object.name}}", object), "{x}");
    }

    #[test]
    fn stops_once_past_the_most_bytes() {
        let object = json!({"big": "x".repeat(1000)});
        let text = render(
            &"{object.big}".repeat(50),
            "task.submitted",
            "jane/flowers",
            object.as_object().unwrap(),
            1500,
        );
        assert_eq!(text.len(), 2000);
    }
}
