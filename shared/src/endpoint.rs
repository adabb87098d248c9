//! The rules an endpoint's settings must keep, for creation and for changes.

use serde_json::{Map, Value};
use time::OffsetDateTime;
use url::{Host, Url};

use crate::account::{Account, is_valid_name};
use crate::catalog::Catalog;
use crate::email::{self, DigestSchedule, EmailSettings};
use crate::event::{FieldError, any_event_type, known_event_type};
use crate::event_type::EventType;
use crate::ids::EndpointId;
use crate::model::{Endpoint, EndpointSecrets, Format};
use crate::net;
use crate::signing::Secret;

pub const MAX_URL_BYTES: usize = 2048;
pub const MAX_DESCRIPTION_BYTES: usize = 1024;
/// More datasets than this on one endpoint is a mistake.
pub const MAX_DATASETS: usize = 100;
/// How long a rotated-out secret keeps signing beside the new one.
pub const PREVIOUS_SECRET_LIFETIME: time::Duration = time::Duration::hours(24);

const FIELDS: &[&str] = &[
    "type",
    "url",
    "emails",
    "reactive",
    "digest",
    "description",
    "version",
    "event_types",
    "datasets",
    "format",
    "disabled",
];
/// Fields only a webhook endpoint has, and fields only an email endpoint has.
const WEBHOOK_FIELDS: &[&str] = &["url", "format"];
const EMAIL_FIELDS: &[&str] = &["emails", "reactive", "digest"];

/// The settings of a new endpoint, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointIn {
    pub url: String,
    pub description: String,
    pub version: u32,
    pub event_types: Vec<EventType>,
    pub datasets: Option<Vec<String>>,
    pub format: Format,
    pub disabled: bool,
    /// `Some` for an email endpoint (then `url` is empty).
    pub email: Option<EmailSettings>,
}

/// Checks a URL against CONTRACT's endpoint rules. Host names are not resolved here.
pub fn check_url(text: &str, allow_private_targets: bool) -> Result<Url, FieldError> {
    let refuse = |problem: &str| FieldError::new("url", problem);
    if text.len() > MAX_URL_BYTES {
        return Err(refuse(&format!("must be at most {MAX_URL_BYTES} bytes")));
    }
    let url = Url::parse(text).map_err(|e| refuse(&format!("is not an absolute URL ({e})")))?;
    // The URL as stored and requested is percent-encoded: up to nine times longer.
    if url.as_str().len() > MAX_URL_BYTES {
        return Err(refuse(&format!(
            "must be at most {MAX_URL_BYTES} bytes once percent-encoded"
        )));
    }
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

/// How long endpoint creation waits for a host name to resolve before accepting it.
pub const RESOLVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The creation-time DNS check: a host name that resolves to a private, loopback or
/// link-local address is refused; one that does not resolve (in time) is accepted,
/// and its deliveries fail and retry. The dispatcher checks again at every connection.
pub async fn refuse_private_host(url: &str, allow_private_targets: bool) -> Result<(), FieldError> {
    refuse_private_host_with(url, allow_private_targets, |host| async move {
        net::private_address_of(&host, false).await
    })
    .await
}

async fn refuse_private_host_with<F, Fut>(
    url: &str,
    allow_private_targets: bool,
    private_address_of: F,
) -> Result<(), FieldError>
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = Option<std::net::IpAddr>>,
{
    if allow_private_targets {
        return Ok(());
    }
    let Ok(parsed) = Url::parse(url) else {
        return Ok(());
    };
    let Some(Host::Domain(name)) = parsed.host() else {
        return Ok(());
    };
    match tokio::time::timeout(RESOLVE_TIMEOUT, private_address_of(name.to_string())).await {
        Ok(Some(ip)) => Err(FieldError::new(
            "url",
            format!("its host resolves to {ip}, a private, loopback or link-local address"),
        )),
        Ok(None) | Err(_) => Ok(()),
    }
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

fn refuse_unknown_fields(body: &Map<String, Value>) -> Result<(), FieldError> {
    match body.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        Some(unknown) => Err(FieldError::new(
            unknown.as_str(),
            format!("unknown field; expected one of {}", FIELDS.join(", ")),
        )),
        None => Ok(()),
    }
}

// Each field's rule. `null` stands for the field's default, so a PATCH can clear it.

fn url_field(value: &Value, allow_private_targets: bool) -> Result<String, FieldError> {
    match value {
        Value::Null => Err(FieldError::new("url", "is required")),
        Value::String(url) => Ok(check_url(url, allow_private_targets)?.to_string()),
        _ => Err(FieldError::new("url", "must be a string")),
    }
}

fn description_field(value: &Value) -> Result<String, FieldError> {
    match value {
        Value::Null => Ok(String::new()),
        Value::String(d) if d.len() <= MAX_DESCRIPTION_BYTES => Ok(d.clone()),
        Value::String(_) => Err(FieldError::new(
            "description",
            format!("must be at most {MAX_DESCRIPTION_BYTES} bytes"),
        )),
        _ => Err(FieldError::new("description", "must be a string")),
    }
}

fn version_field(value: &Value) -> Result<u32, FieldError> {
    if value.is_null() {
        return Ok(1);
    }
    value
        .as_u64()
        .filter(|v| *v >= 1)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| FieldError::new("version", "must be an integer of at least 1"))
}

/// `check` says whether a name may be subscribed to (an archived type may be
/// kept by a patch, see [`EndpointPatch::refuse_archived_additions`]).
fn event_types_field(
    value: &Value,
    check: impl Fn(&str, &str) -> Result<EventType, FieldError>,
) -> Result<Vec<EventType>, FieldError> {
    if value.is_null() {
        return Ok(Vec::new());
    }
    let types = string_list(value, "event_types")?
        .iter()
        .map(|name| check("event_types", name))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(without_repeats(types))
}

fn datasets_field(value: &Value, account: &Account) -> Result<Option<Vec<String>>, FieldError> {
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
            Some((owner, name)) if account == owner && is_valid_name(name) => {}
            _ => {
                return Err(FieldError::new(
                    "datasets",
                    format!("`{dataset}` is not a dataset `{account}/<name>` of this account"),
                ));
            }
        }
    }
    Ok(Some(without_repeats(datasets)))
}

/// `items` in the order given, each once: an endpoint answers its lists as they were sent.
fn without_repeats<T: PartialEq>(items: Vec<T>) -> Vec<T> {
    let mut kept: Vec<T> = Vec::with_capacity(items.len());
    for item in items {
        if !kept.contains(&item) {
            kept.push(item);
        }
    }
    kept
}

fn format_field(value: &Value) -> Result<Format, FieldError> {
    match value {
        Value::Null => Ok(Format::Standard),
        Value::String(f) => Format::parse(f)
            .ok_or_else(|| FieldError::new("format", "must be \"standard\" or \"slack\"")),
        _ => Err(FieldError::new(
            "format",
            "must be \"standard\" or \"slack\"",
        )),
    }
}

fn disabled_field(value: &Value) -> Result<bool, FieldError> {
    match value {
        Value::Null => Ok(false),
        Value::Bool(b) => Ok(*b),
        _ => Err(FieldError::new("disabled", "must be true or false")),
    }
}

/// Refuses the fields of `body` that the other kind of endpoint has.
fn refuse_fields_of_other_kind(body: &Map<String, Value>, email: bool) -> Result<(), FieldError> {
    let (theirs, kind) = if email {
        (WEBHOOK_FIELDS, "an email endpoint")
    } else {
        (EMAIL_FIELDS, "a webhook endpoint")
    };
    match theirs.iter().find(|field| body.contains_key(**field)) {
        Some(field) => Err(FieldError::new(*field, format!("is not a field of {kind}"))),
        None => Ok(()),
    }
}

/// `type`: whether the new endpoint is an email endpoint.
fn is_email_type(value: &Value) -> Result<bool, FieldError> {
    match value {
        Value::Null => Ok(false),
        Value::String(kind) if kind == "webhook" => Ok(false),
        Value::String(kind) if kind == "email" => Ok(true),
        _ => Err(FieldError::new("type", "must be \"webhook\" or \"email\"")),
    }
}

/// Checks the body of `POST …/endpoints` for `account`.
pub fn parse_new(
    body: &Map<String, Value>,
    account: &Account,
    allow_private_targets: bool,
    catalog: &Catalog,
) -> Result<EndpointIn, FieldError> {
    refuse_unknown_fields(body)?;
    let field = |name: &str| body.get(name).unwrap_or(&Value::Null);
    let is_email = is_email_type(field("type"))?;
    refuse_fields_of_other_kind(body, is_email)?;
    let email = if is_email {
        let emails = match field("emails") {
            Value::Null => return Err(FieldError::new("emails", "is required")),
            emails => email::emails_field(emails)?,
        };
        Some(EmailSettings {
            emails,
            reactive: email::reactive_field(field("reactive"))?,
            digest: email::digest_field(field("digest"))?,
        })
    } else {
        None
    };
    Ok(EndpointIn {
        url: if is_email {
            String::new()
        } else {
            url_field(field("url"), allow_private_targets)?
        },
        description: description_field(field("description"))?,
        version: version_field(field("version"))?,
        event_types: event_types_field(field("event_types"), |field, name| {
            known_event_type(field, name, catalog)
        })?,
        datasets: datasets_field(field("datasets"), account)?,
        format: format_field(field("format"))?,
        disabled: disabled_field(field("disabled"))?,
        email,
    })
}

/// The changes of a `PATCH …/endpoints/{id}`: `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EndpointPatch {
    pub url: Option<String>,
    pub description: Option<String>,
    pub version: Option<u32>,
    pub event_types: Option<Vec<EventType>>,
    /// `Some(None)`: back to every dataset of the account.
    pub datasets: Option<Option<Vec<String>>>,
    pub format: Option<Format>,
    pub disabled: Option<bool>,
    pub emails: Option<Vec<String>>,
    pub reactive: Option<bool>,
    /// `Some(None)`: no digest.
    pub digest: Option<Option<DigestSchedule>>,
}

/// Checks the body of `PATCH …/endpoints/{id}`: any subset of the creation fields,
/// where `null` sets an optional field back to its default.
pub fn parse_patch(
    body: &Map<String, Value>,
    account: &Account,
    allow_private_targets: bool,
    catalog: &Catalog,
) -> Result<EndpointPatch, FieldError> {
    refuse_unknown_fields(body)?;
    if body.contains_key("type") {
        return Err(FieldError::new(
            "type",
            "cannot be changed; create a new endpoint instead",
        ));
    }
    let get = |name: &str| body.get(name);
    Ok(EndpointPatch {
        emails: get("emails")
            .map(|v| match v {
                Value::Null => Err(FieldError::new("emails", "cannot be null")),
                v => email::emails_field(v),
            })
            .transpose()?,
        reactive: get("reactive").map(email::reactive_field).transpose()?,
        digest: get("digest").map(email::digest_field).transpose()?,
        url: get("url")
            .map(|v| url_field(v, allow_private_targets))
            .transpose()?,
        description: get("description").map(description_field).transpose()?,
        version: get("version").map(version_field).transpose()?,
        event_types: get("event_types")
            .map(|v| event_types_field(v, |field, name| any_event_type(field, name, catalog)))
            .transpose()?,
        datasets: get("datasets")
            .map(|v| datasets_field(v, account))
            .transpose()?,
        format: get("format").map(format_field).transpose()?,
        disabled: get("disabled").map(disabled_field).transpose()?,
    })
}

impl EndpointPatch {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// A patch names only fields of the endpoint's own kind.
    pub fn refuse_fields_of_other_kind(&self, endpoint: &Endpoint) -> Result<(), FieldError> {
        let named = |field: &str| match field {
            "url" => self.url.is_some(),
            "format" => self.format.is_some(),
            "emails" => self.emails.is_some(),
            "reactive" => self.reactive.is_some(),
            _ => self.digest.is_some(),
        };
        let mut body = Map::new();
        for field in WEBHOOK_FIELDS
            .iter()
            .chain(EMAIL_FIELDS)
            .filter(|f| named(f))
        {
            body.insert((*field).to_string(), Value::Null);
        }
        refuse_fields_of_other_kind(&body, endpoint.email.is_some())
    }

    /// An archived type stays on an endpoint that has it, but is not added anew.
    pub fn refuse_archived_additions(
        &self,
        endpoint: &Endpoint,
        catalog: &Catalog,
    ) -> Result<(), FieldError> {
        let added = self.event_types.iter().flatten();
        for event_type in added.filter(|t| !endpoint.event_types.contains(t)) {
            known_event_type("event_types", event_type.as_str(), catalog)?;
        }
        Ok(())
    }

    /// The endpoint with these changes made.
    pub fn apply(&self, endpoint: &Endpoint, now: OffsetDateTime) -> Endpoint {
        let mut changed = endpoint.clone();
        if let Some(url) = &self.url {
            changed.url = url.clone();
        }
        if let Some(description) = &self.description {
            changed.description = description.clone();
        }
        if let Some(version) = self.version {
            changed.version = version;
        }
        if let Some(event_types) = &self.event_types {
            changed.event_types = event_types.clone();
        }
        if let Some(datasets) = &self.datasets {
            changed.datasets = datasets.clone();
        }
        if let Some(format) = self.format {
            changed.format = format;
        }
        if let Some(disabled) = self.disabled {
            changed.disabled = disabled;
            if !disabled {
                // Enabled again by its owner: whatever hookline disabled it for is over,
                // and a new run of failures starts from scratch.
                changed.disabled_reason = None;
                changed.failing_since = None;
            }
        }
        if let Some(email) = &mut changed.email {
            if let Some(emails) = &self.emails {
                email.emails = emails.clone();
            }
            if let Some(reactive) = self.reactive {
                email.reactive = reactive;
            }
            if let Some(digest) = &self.digest {
                email.digest = digest.clone();
            }
        }
        changed.updated_at = next_version(endpoint.updated_at, now);
        changed
    }
}

/// The `updated_at` of a change made at `now` to an endpoint last changed at
/// `previous`: `now`, or a microsecond (the stored precision) after `previous` when
/// the clock of the instance making the change is behind the one that made the last.
/// An endpoint's versions only grow, as the dispatcher's cache relies on: a cached
/// endpoint older than the version a job names is read again.
pub fn next_version(previous: OffsetDateTime, now: OffsetDateTime) -> OffsetDateTime {
    now.max(previous + time::Duration::MICROSECOND)
}

/// A new endpoint of `account` with a fresh id and secret: what the API and the CLI create.
pub fn new_endpoint(
    account: &Account,
    input: EndpointIn,
    now: OffsetDateTime,
) -> (Endpoint, EndpointSecrets) {
    let endpoint = Endpoint {
        id: EndpointId::new(),
        account: account.clone(),
        url: input.url,
        description: input.description,
        version: input.version,
        event_types: input.event_types,
        datasets: input.datasets,
        format: input.format,
        disabled: input.disabled,
        disabled_reason: None,
        failing_since: None,
        email: input.email,
        created_at: now,
        updated_at: now,
    };
    (endpoint, EndpointSecrets::new(Secret::generate()))
}

/// A rotation: `new` signs from now on, the current secret beside it until `now + PREVIOUS_SECRET_LIFETIME`.
pub fn rotated(secrets: &EndpointSecrets, new: Secret, now: OffsetDateTime) -> EndpointSecrets {
    EndpointSecrets {
        current: new,
        previous: Some((secrets.current.clone(), now + PREVIOUS_SECRET_LIFETIME)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn refuses_urls_that_break_a_rule() {
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_BYTES));
        // 1,034 bytes as written, 6,104 percent-encoded.
        let long_encoded = format!("https://example.com/{}", "é".repeat(1014));
        for url in [
            "example.com/hook",
            "/hook",
            "ftp://example.com/hook",
            "http://example.com/hook",
            "https://user:pw@example.com/hook",
            "https://user@example.com/hook",
            long.as_str(),
            long_encoded.as_str(),
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
    fn reserved_addresses_are_refused_in_every_spelling_the_parser_accepts() {
        for url in [
            "https://192.0.513/",
            "https://198.18.1/",
            "https://0xcb.0.0x71.9/",
            "https://4294967295/",
            "https://0360.0.0.1/",
            "https://[::ffff:0:7f00:1]/",
            "https://[::ffff:a9fe:a9fe]/",
            "https://[2002:7f00:1::1]/",
            "https://[64:ff9b:1::808:808]/",
            "https://[2001:0:4136:e378:8000:63bf:80ff:fffe]/",
            "https://[2001:db8::1]/",
            "https://[3fff::1]/",
        ] {
            assert!(check_url(url, false).is_err(), "{url} should be refused");
            assert!(check_url(url, true).is_ok(), "{url} should parse");
        }
    }

    #[test]
    fn accepts_public_https_and_private_targets_when_allowed() {
        assert!(check_url("https://example.com/hooks?x=1", false).is_ok());
        assert!(check_url("https://8.8.8.8/", false).is_ok());
        for spelling in [
            "https://0x08080808/",
            "https://134744072/",
            "https://8.8.2056/",
        ] {
            let url = check_url(spelling, false).expect(spelling);
            assert_eq!(url.host_str(), Some("8.8.8.8"), "{spelling}");
        }
        assert!(check_url("https://[2002:808:808::1]/", false).is_ok());
        assert!(check_url("http://127.0.0.1:8080/hook", true).is_ok());
        assert!(check_url("https://user@127.0.0.1/", true).is_err());
        assert!(check_url("ftp://127.0.0.1/", true).is_err());
    }

    #[test]
    fn parses_a_full_endpoint() {
        let body = json!({
            "url": "https://example.com/hook", "description": "ops", "version": 2,
            "event_types": ["sample.deleted", "dataset.created", "sample.deleted"],
            "datasets": ["jane/trees", "jane/flowers", "jane/trees"],
            "format": "slack", "disabled": true
        });
        let parsed = parse_new(
            body.as_object().unwrap(),
            &"jane".parse().unwrap(),
            false,
            &Catalog::default(),
        )
        .unwrap();
        assert_eq!(parsed.version, 2);
        assert_eq!(parsed.format, Format::Slack);
        // In the order given, each once.
        let types: Vec<&str> = parsed.event_types.iter().map(EventType::as_str).collect();
        assert_eq!(types, ["sample.deleted", "dataset.created"]);
        assert_eq!(
            parsed.datasets,
            Some(vec!["jane/trees".to_string(), "jane/flowers".to_string()])
        );
        assert!(parsed.disabled);
        let minimal = parse_new(
            json!({"url": "https://example.com"}).as_object().unwrap(),
            &"jane".parse().unwrap(),
            false,
            &Catalog::default(),
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
            let error = parse_new(
                body.as_object().unwrap(),
                &"jane".parse().unwrap(),
                false,
                &Catalog::default(),
            )
            .unwrap_err();
            assert_eq!(error.field, field, "{body}");
        }
    }

    #[test]
    fn a_patch_changes_only_what_it_names_and_null_restores_defaults() {
        let input = parse_new(
            json!({"url": "https://e.com", "description": "ops", "event_types": ["sample.created"],
                   "datasets": ["jane/flowers"], "format": "slack", "version": 3})
            .as_object()
            .unwrap(),
            &"jane".parse().unwrap(),
            false,
            &Catalog::default(),
        )
        .unwrap();
        let created = time::macros::datetime!(2026-01-01 0:00 UTC);
        let (endpoint, _) = new_endpoint(&"jane".parse().unwrap(), input, created);
        let patch = parse_patch(
            json!({"description": null, "datasets": null, "disabled": true})
                .as_object()
                .unwrap(),
            &"jane".parse().unwrap(),
            false,
            &Catalog::default(),
        )
        .unwrap();
        let later = created + time::Duration::minutes(1);
        let patched = patch.apply(&endpoint, later);
        assert_eq!(patched.description, "");
        assert_eq!(patched.datasets, None);
        assert!(patched.disabled);
        assert_eq!(patched.event_types, ["sample.created"]);
        assert!(
            patch
                .refuse_archived_additions(&endpoint, &Catalog::default())
                .is_ok()
        );
        assert_eq!((patched.format, patched.version), (Format::Slack, 3));
        assert_eq!((patched.created_at, patched.updated_at), (created, later));
        // A clock behind the last change's still makes a later version.
        let behind = patch.apply(&patched, created);
        assert_eq!(behind.updated_at, later + time::Duration::MICROSECOND);
        assert!(
            parse_patch(
                &Map::new(),
                &"jane".parse().unwrap(),
                false,
                &Catalog::default()
            )
            .unwrap()
            .is_empty()
        );
        for body in [
            json!({"url": null}),
            json!({"version": 0}),
            json!({"id": "ep_1"}),
            json!({"url": "https://10.0.0.1/"}),
        ] {
            assert!(
                parse_patch(
                    body.as_object().unwrap(),
                    &"jane".parse().unwrap(),
                    false,
                    &Catalog::default()
                )
                .is_err(),
                "{body}"
            );
        }
    }

    fn jane() -> Account {
        "jane".parse().unwrap()
    }

    #[test]
    fn an_email_endpoint_has_addresses_a_window_and_a_digest() {
        let parse = |body: Value| {
            parse_new(
                body.as_object().unwrap(),
                &jane(),
                false,
                &Catalog::default(),
            )
        };
        let created = parse(json!({"type": "email", "emails": ["a@example.com"],
                                   "digest": {"every": "day", "at": "08:00"}}))
        .unwrap();
        assert_eq!(created.url, "");
        let email = created.email.clone().unwrap();
        assert!(email.reactive);
        assert_eq!(email.digest.unwrap().timezone, "UTC");
        let webhook = parse(json!({"type": "webhook", "url": "https://e.com"})).unwrap();
        assert_eq!(webhook.email, None);
        for (field, body) in [
            ("emails", json!({"type": "email"})),
            ("emails", json!({"type": "email", "emails": []})),
            (
                "url",
                json!({"type": "email", "emails": ["a@e.com"], "url": "https://e.com"}),
            ),
            (
                "format",
                json!({"type": "email", "emails": ["a@e.com"], "format": "slack"}),
            ),
            (
                "emails",
                json!({"url": "https://e.com", "emails": ["a@e.com"]}),
            ),
            ("digest", json!({"url": "https://e.com", "digest": null})),
            ("type", json!({"type": "sms", "emails": ["a@e.com"]})),
            (
                "reactive",
                json!({"type": "email", "emails": ["a@e.com"], "reactive": 1}),
            ),
        ] {
            assert_eq!(parse(body.clone()).unwrap_err().field, field, "{body}");
        }

        let (endpoint, _) = new_endpoint(&jane(), created, OffsetDateTime::now_utc());
        let patch = |body: Value| {
            parse_patch(
                body.as_object().unwrap(),
                &jane(),
                false,
                &Catalog::default(),
            )
        };
        let changes =
            patch(json!({"reactive": false, "digest": null, "emails": ["b@example.com"]})).unwrap();
        assert!(changes.refuse_fields_of_other_kind(&endpoint).is_ok());
        let patched = changes
            .apply(&endpoint, OffsetDateTime::now_utc())
            .email
            .unwrap();
        assert_eq!(
            (patched.emails, patched.reactive, patched.digest),
            (vec!["b@example.com".to_string()], false, None)
        );
        let restored = patch(json!({"reactive": null}))
            .unwrap()
            .apply(&endpoint, OffsetDateTime::now_utc());
        assert!(restored.email.unwrap().reactive);
        assert_eq!(patch(json!({"emails": null})).unwrap_err().field, "emails");
        assert_eq!(patch(json!({"type": "webhook"})).unwrap_err().field, "type");
        let url_change = patch(json!({"url": "https://e.com"})).unwrap();
        assert_eq!(
            url_change
                .refuse_fields_of_other_kind(&endpoint)
                .unwrap_err()
                .field,
            "url"
        );
    }

    #[test]
    fn rotation_keeps_the_old_secret_for_a_day() {
        let now = time::OffsetDateTime::now_utc();
        let first = EndpointSecrets::new(Secret::generate());
        let next = Secret::generate();
        let rotated = rotated(&first, next.clone(), now);
        assert_eq!(rotated.current, next);
        assert_eq!(
            rotated.previous,
            Some((first.current.clone(), now + PREVIOUS_SECRET_LIFETIME))
        );
        assert_eq!(rotated.signing(now).len(), 2);
        assert_eq!(
            rotated.signing(now + time::Duration::hours(25)),
            vec![&next]
        );
    }

    #[tokio::test]
    async fn a_host_name_resolving_to_a_private_address_is_refused() {
        let loopback = |_host: String| async { Some("127.0.0.1".parse().unwrap()) };
        let unresolved = |_host: String| async { None };
        let error = refuse_private_host_with("https://sneaky.example/", false, loopback)
            .await
            .unwrap_err();
        assert_eq!(error.field, "url");
        assert!(error.problem.contains("127.0.0.1"), "{error}");
        assert!(
            refuse_private_host_with("https://sneaky.example/", true, loopback)
                .await
                .is_ok()
        );
        assert!(
            refuse_private_host_with("https://nowhere.example/", false, unresolved)
                .await
                .is_ok()
        );
        // Literal addresses were judged by `check_url`; they are not looked up.
        assert!(
            refuse_private_host_with("https://8.8.8.8/", false, loopback)
                .await
                .is_ok()
        );
        // The real resolver: `localhost` resolves to loopback everywhere.
        assert!(
            refuse_private_host("https://localhost:8443/", false)
                .await
                .is_err()
        );
    }
}
