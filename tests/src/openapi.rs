//! Checking answers against the API's OpenAPI 3.1 document: the status must be one
//! the operation lists, and the body must be valid against that answer's schema.
//! OpenAPI 3.1 schemas are JSON Schema (draft 2020-12), so each schema is checked
//! with the whole document as its root, which resolves every `#/components/…` ref.

use std::collections::BTreeSet;

use serde_json::{Value, json};

pub struct Document {
    document: Value,
}

/// `/` and `~` escaped for a JSON pointer.
fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// A JSON pointer as a URI fragment: what a URI may not hold (`{`, `}`, …) percent-encoded.
fn fragment(pointer: &str) -> String {
    pointer
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl Document {
    pub fn new(document: Value) -> Self {
        Self { document }
    }

    pub fn as_value(&self) -> &Value {
        &self.document
    }

    /// The path templates, as written (`/v1/accounts/{account}/endpoints`).
    pub fn paths(&self) -> Vec<String> {
        self.document["paths"]
            .as_object()
            .map(|paths| paths.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The methods a path documents, upper-case as in an `Allow` header.
    pub fn methods(&self, template: &str) -> BTreeSet<String> {
        const METHODS: [&str; 8] = [
            "get", "put", "post", "delete", "options", "head", "patch", "trace",
        ];
        self.document["paths"][template]
            .as_object()
            .map(|item| {
                item.keys()
                    .filter(|key| METHODS.contains(&key.as_str()))
                    .map(|method| method.to_ascii_uppercase())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every documented answer: (method, path template, status).
    pub fn answers(&self) -> BTreeSet<(String, String, u16)> {
        let mut answers = BTreeSet::new();
        for template in self.paths() {
            for method in self.methods(&template) {
                let operation = &self.document["paths"][&template][method.to_ascii_lowercase()];
                for status in operation["responses"].as_object().into_iter().flatten() {
                    let status = status.0.parse().expect("numeric statuses only");
                    answers.insert((method.clone(), template.clone(), status));
                }
            }
        }
        answers
    }

    /// The template a concrete path (its query aside) matches: each `{param}`
    /// stands for one segment.
    pub fn template_of(&self, path: &str) -> Option<String> {
        let path = path.split('?').next().unwrap_or(path);
        let segments: Vec<&str> = path.split('/').collect();
        self.paths().into_iter().find(|template| {
            let parts: Vec<&str> = template.split('/').collect();
            parts.len() == segments.len()
                && parts.iter().zip(&segments).all(|(part, segment)| {
                    part == segment || (part.starts_with('{') && !segment.is_empty())
                })
        })
    }

    /// Checks an answer to `method path` (a concrete path): a status the operation
    /// lists; a body of a documented media type where it documents one (a JSON body
    /// valid against its schema), none where not.
    pub fn check(
        &self,
        method: &str,
        path: &str,
        status: u16,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<(), String> {
        let template = self
            .template_of(path)
            .ok_or_else(|| format!("{path} matches no documented path"))?;
        let response = self.response(method, &template, status)?;
        let Some(media_types) = response.get("content").and_then(Value::as_object) else {
            return if body.is_empty() {
                Ok(())
            } else {
                Err(format!("{status} documents no body, but one came"))
            };
        };
        let essence = content_type
            .and_then(|t| t.split(';').next())
            .map(str::trim)
            .unwrap_or_default();
        if !media_types.contains_key(essence) {
            return Err(format!(
                "content-type {content_type:?}, documented as one of {:?}",
                media_types.keys().collect::<Vec<_>>()
            ));
        }
        if essence != "application/json" {
            return Ok(());
        }
        let body: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
        self.check_answer(method, &template, status, &body)
    }

    /// Checks a JSON body answered with `status` to `method template`.
    pub fn check_answer(
        &self,
        method: &str,
        template: &str,
        status: u16,
        body: &Value,
    ) -> Result<(), String> {
        let (pointer, response) = self.response_at(method, template, status)?;
        if response["content"]["application/json"]["schema"].is_null() {
            return Err(format!("{status} documents no JSON body"));
        }
        self.validate(&format!("{pointer}/content/application~1json/schema"), body)
    }

    /// Validates `value` against the schema at the JSON pointer `pointer` of the document.
    pub fn validate(&self, pointer: &str, value: &Value) -> Result<(), String> {
        let mut root = self.document.clone();
        let root_object = root.as_object_mut().expect("the document is an object");
        root_object.insert(
            "$schema".into(),
            json!("https://json-schema.org/draft/2020-12/schema"),
        );
        root_object.insert("$ref".into(), json!(format!("#{}", fragment(pointer))));
        let validator = jsonschema::draft202012::new(&root)
            .map_err(|e| format!("the schema at {pointer} does not compile: {e}"))?;
        let errors: Vec<String> = validator
            .iter_errors(value)
            .map(|error| format!("{error} (at {})", error.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!("{value} breaks {pointer}: {}", errors.join("; ")))
        }
    }

    fn response(&self, method: &str, template: &str, status: u16) -> Result<&Value, String> {
        self.response_at(method, template, status).map(|(_, r)| r)
    }

    /// The response object documented for `status`, and its JSON pointer (after a `$ref`).
    fn response_at(
        &self,
        method: &str,
        template: &str,
        status: u16,
    ) -> Result<(String, &Value), String> {
        let method = method.to_ascii_lowercase();
        let operation = &self.document["paths"][template][&method];
        if operation.is_null() {
            return Err(format!("{method} {template} is not documented"));
        }
        let response = &operation["responses"][status.to_string()];
        if response.is_null() {
            return Err(format!("{method} {template} does not document {status}"));
        }
        match response["$ref"].as_str() {
            Some(reference) => {
                let pointer = reference.trim_start_matches('#').to_string();
                let target = self
                    .document
                    .pointer(&pointer)
                    .ok_or_else(|| format!("{reference} is not in the document"))?;
                Ok((pointer, target))
            }
            None => Ok((
                format!("/paths/{}/{method}/responses/{status}", escape(template)),
                response,
            )),
        }
    }
}
