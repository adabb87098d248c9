//! The rules an endpoint's settings must keep, for creation and for changes.

use serde_json::{Map, Value};
use url::{Host, Url};

use crate::catalog;
use crate::event::{FieldError, is_valid_name};
use crate::model::Format;
use crate::net;

pub const MAX_URL_BYTES: usize = 2048;
pub const MAX_DESCRIPTION_BYTES: usize = 1024;
/// Enough for every event type; more datasets than this is a mistake.
pub const MAX_DATASETS: usize = 100;

const FIELDS: &[&str] = &[
    "url",
    "description",
    "version",
    "event_types",
    "datasets",
    "format",
    "disabled",
];

/// The settings of a new endpoint, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointIn {
    pub url: String,
    pub description: String,
    pub version: u32,
    pub event_types: Vec<String>,
    pub datasets: Option<Vec<String>>,
    pub format: Format,
    pub disabled: bool,
}

/// Checks a URL against CONTRACT's endpoint rules. Host names are not resolved here.
pub fn check_url(text: &str, allow_private_targets: bool) -> Result<Url, FieldError> {
    let refuse = |problem: &str| FieldError::new("url", problem);
    if text.len() > MAX_URL_BYTES {
        return Err(refuse(&format!("must be at most {MAX_URL_BYTES} bytes")));
    }
    let url = Url::parse(text).map_err(|e| refuse(&format!("is not an absolute URL ({e})")))?;
    match url.scheme() {
        "https" => {}
        "http" if allow_private_targets => {}
        _ => return Err(refuse("must use https")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(refuse("must not carry a user name or password"));
    }
    if !allow_private_targets {
        let private = match url.host() {
            None => return Err(refuse("must name a host")),
            Some(Host::Ipv4(ip)) => !net::is_public(ip.into()),
            Some(Host::Ipv6(ip)) => !net::is_public(ip.into()),
            Some(Host::Domain(name)) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                name == "localhost" || name.ends_with(".localhost")
            }
        };
        if private {
            return Err(refuse(
                "must not point at a private, loopback or link-local address",
            ));
        }
    }
    Ok(url)
}

fn string_list(value: &Value, field: &str) -> Result<Vec<String>, FieldError> {
    let Value::Array(items) = value else {
        return Err(FieldError::new(field, "must be an array of strings"));
    };
    items
        .iter()
        .map(|item| match item {
            Value::String(s) => Ok(s.clone()),
            _ => Err(FieldError::new(field, "must be an array of strings")),
        })
        .collect()
}

fn check_event_types(value: &Value) -> Result<Vec<String>, FieldError> {
    let mut types = string_list(value, "event_types")?;
    if let Some(unknown) = types.iter().find(|t| !catalog::is_known(t)) {
        return Err(FieldError::new(
            "event_types",
            format!("`{unknown}` is not a known event type (see GET /v1/event-types)"),
        ));
    }
    types.dedup();
    Ok(types)
}

fn check_datasets(value: &Value, account: &str) -> Result<Option<Vec<String>>, FieldError> {
    if value.is_null() {
        return Ok(None);
    }
    let datasets = string_list(value, "datasets")?;
    if datasets.len() > MAX_DATASETS {
        return Err(FieldError::new(
            "datasets",
            format!("at most {MAX_DATASETS} entries"),
        ));
    }
    for dataset in &datasets {
        match dataset.split_once('/') {
            Some((owner, name)) if owner == account && is_valid_name(name) => {}
            _ => {
                return Err(FieldError::new(
                    "datasets",
                    format!("`{dataset}` is not a dataset `{account}/<name>` of this account"),
                ));
            }
        }
    }
    Ok(Some(datasets))
}

/// Checks the body of `POST …/endpoints` for `account`.
pub fn parse_new(
    body: &Map<String, Value>,
    account: &str,
    allow_private_targets: bool,
) -> Result<EndpointIn, FieldError> {
    if let Some(unknown) = body.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(FieldError::new(
            unknown.as_str(),
            format!("unknown field; expected one of {}", FIELDS.join(", ")),
        ));
    }
    let url = match body.get("url") {
        None | Some(Value::Null) => return Err(FieldError::new("url", "is required")),
        Some(Value::String(url)) => check_url(url, allow_private_targets)?.to_string(),
        Some(_) => return Err(FieldError::new("url", "must be a string")),
    };
    let description = match body.get("description") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(d)) if d.len() <= MAX_DESCRIPTION_BYTES => d.clone(),
        Some(Value::String(_)) => {
            return Err(FieldError::new(
                "description",
                format!("must be at most {MAX_DESCRIPTION_BYTES} bytes"),
            ));
        }
        Some(_) => return Err(FieldError::new("description", "must be a string")),
    };
    let version = match body.get("version") {
        None | Some(Value::Null) => 1,
        Some(v) => v
            .as_u64()
            .filter(|v| *v >= 1)
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| FieldError::new("version", "must be an integer of at least 1"))?,
    };
    let event_types = match body.get("event_types") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => check_event_types(v)?,
    };
    let datasets = match body.get("datasets") {
        None => None,
        Some(v) => check_datasets(v, account)?,
    };
    let format = match body.get("format") {
        None | Some(Value::Null) => Format::Standard,
        Some(Value::String(f)) => Format::parse(f)
            .ok_or_else(|| FieldError::new("format", "must be \"standard\" or \"slack\""))?,
        Some(_) => {
            return Err(FieldError::new(
                "format",
                "must be \"standard\" or \"slack\"",
            ));
        }
    };
    let disabled = match body.get("disabled") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(FieldError::new("disabled", "must be true or false")),
    };
    Ok(EndpointIn {
        url,
        description,
        version,
        event_types,
        datasets,
        format,
        disabled,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn refuses_urls_that_break_a_rule() {
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_BYTES));
        for url in [
            "example.com/hook",
            "/hook",
            "ftp://example.com/hook",
            "http://example.com/hook",
            "https://user:pw@example.com/hook",
            "https://user@example.com/hook",
            long.as_str(),
            "https://127.0.0.1/hook",
            "https://2130706433/",
            "https://0x7f000001/",
            "https://0177.0.0.1/",
            "https://[::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://[fd00::1]/",
            "https://169.254.169.254/latest/meta-data",
            "https://10.1.2.3/",
            "https://100.64.0.1/",
            "https://0.0.0.0/",
            "https://localhost/",
            "https://api.localhost./",
        ] {
            assert!(check_url(url, false).is_err(), "{url} should be refused");
        }
    }

    #[test]
    fn accepts_public_https_and_private_targets_when_allowed() {
        assert!(check_url("https://example.com/hooks?x=1", false).is_ok());
        assert!(check_url("https://8.8.8.8/", false).is_ok());
        assert!(check_url("http://127.0.0.1:8080/hook", true).is_ok());
        assert!(check_url("https://user@127.0.0.1/", true).is_err());
        assert!(check_url("ftp://127.0.0.1/", true).is_err());
    }

    #[test]
    fn parses_a_full_endpoint() {
        let body = json!({
            "url": "https://example.com/hook", "description": "ops", "version": 2,
            "event_types": ["sample.created"], "datasets": ["jane/flowers"],
            "format": "slack", "disabled": true
        });
        let parsed = parse_new(body.as_object().unwrap(), "jane", false).unwrap();
        assert_eq!(parsed.version, 2);
        assert_eq!(parsed.format, Format::Slack);
        assert_eq!(parsed.datasets, Some(vec!["jane/flowers".to_string()]));
        assert!(parsed.disabled);
        let minimal = parse_new(
            json!({"url": "https://example.com"}).as_object().unwrap(),
            "jane",
            false,
        )
        .unwrap();
        assert_eq!(
            (minimal.version, minimal.format, minimal.datasets),
            (1, Format::Standard, None)
        );
    }

    #[test]
    fn refuses_each_bad_field_by_name() {
        let cases = [
            ("url", json!({})),
            ("url", json!({"url": 5})),
            (
                "description",
                json!({"url": "https://e.com", "description": "d".repeat(1025)}),
            ),
            ("version", json!({"url": "https://e.com", "version": 0})),
            ("version", json!({"url": "https://e.com", "version": "2"})),
            (
                "event_types",
                json!({"url": "https://e.com", "event_types": ["nope"]}),
            ),
            (
                "event_types",
                json!({"url": "https://e.com", "event_types": "sample.created"}),
            ),
            (
                "datasets",
                json!({"url": "https://e.com", "datasets": ["bob/flowers"]}),
            ),
            ("format", json!({"url": "https://e.com", "format": "xml"})),
            (
                "disabled",
                json!({"url": "https://e.com", "disabled": "yes"}),
            ),
            (
                "secret",
                json!({"url": "https://e.com", "secret": "whsec_x"}),
            ),
        ];
        for (field, body) in cases {
            let error = parse_new(body.as_object().unwrap(), "jane", false).unwrap_err();
            assert_eq!(error.field, field, "{body}");
        }
    }
}
