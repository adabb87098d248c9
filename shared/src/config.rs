//! Configuration from the environment, as CONTRACT.md's table names it.

use std::time::Duration;

use crate::retry::{RetrySchedule, ScheduleError};

pub const TABLE: &str = "HOOKLINE_TABLE";
pub const DELIVERY_QUEUE_URL: &str = "HOOKLINE_DELIVERY_QUEUE_URL";
pub const DLQ_URL: &str = "HOOKLINE_DLQ_URL";
pub const RETRY_SCHEDULE: &str = "HOOKLINE_RETRY_SCHEDULE";
pub const REQUEST_TIMEOUT_MS: &str = "HOOKLINE_REQUEST_TIMEOUT_MS";
pub const RETENTION_DAYS: &str = "HOOKLINE_RETENTION_DAYS";
pub const ALLOW_PRIVATE_TARGETS: &str = "HOOKLINE_ALLOW_PRIVATE_TARGETS";
pub const API_VERSION: &str = "HOOKLINE_API_VERSION";
pub const PORTAL_FRAME_ANCESTORS: &str = "HOOKLINE_PORTAL_FRAME_ANCESTORS";
pub const DISABLE_AFTER: &str = "HOOKLINE_DISABLE_AFTER";
pub const EMAIL_FROM: &str = "HOOKLINE_EMAIL_FROM";
pub const EMAIL_WINDOW: &str = "HOOKLINE_EMAIL_WINDOW";
pub const SLOW_QUEUE_URL: &str = "HOOKLINE_SLOW_QUEUE_URL";

/// Every variable [`Config::from_env`] reads; every function reads all of them.
pub const VARIABLES: &[&str] = &[
    TABLE,
    DELIVERY_QUEUE_URL,
    DLQ_URL,
    RETRY_SCHEDULE,
    REQUEST_TIMEOUT_MS,
    RETENTION_DAYS,
    ALLOW_PRIVATE_TARGETS,
    API_VERSION,
    PORTAL_FRAME_ANCESTORS,
    DISABLE_AFTER,
    EMAIL_FROM,
    EMAIL_WINDOW,
    SLOW_QUEUE_URL,
];

pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 15_000;
pub const DEFAULT_RETENTION_DAYS: u32 = 30;
pub const DEFAULT_API_VERSION: &str = "2021-08-01";
/// Only the API's own origin may frame the portal page unless told otherwise.
pub const DEFAULT_PORTAL_FRAME_ANCESTORS: &str = "'self'";
pub const DEFAULT_EMAIL_WINDOW: &str = "5m";
/// Bounds that keep a typo from turning into a zero or a year.
pub const MAX_REQUEST_TIMEOUT_MS: u64 = 60_000;
pub const MAX_RETENTION_DAYS: u32 = 3650;
/// Failures without a success for this long disable an endpoint.
pub const DEFAULT_DISABLE_AFTER: Duration = Duration::from_secs(5 * 24 * 60 * 60);

#[derive(Debug, Clone)]
pub struct Config {
    pub table: String,
    pub delivery_queue_url: String,
    pub dlq_url: String,
    pub retry_schedule: RetrySchedule,
    pub request_timeout: Duration,
    pub retention_days: u32,
    pub allow_private_targets: bool,
    pub api_version: String,
    /// The sources of the portal page's CSP `frame-ancestors`, space-separated.
    pub portal_frame_ancestors: String,
    /// Failures without a success this long disable an endpoint.
    pub disable_after: Duration,
    /// The sender of email endpoints' mail (an SES identity); `None` where none is sent.
    pub email_from: Option<String>,
    /// How long reactive emails gather events: one email per endpoint per window.
    pub email_window: Duration,
    /// The slow lane (ADR 7); unset, slow endpoints stay on the delivery queue.
    pub slow_queue_url: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{0} is required but not set")]
    Missing(&'static str),
    #[error("{var}={value:?} is invalid: {reason}")]
    Invalid {
        var: &'static str,
        value: String,
        reason: String,
    },
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup`; an empty value counts as unset,
    /// except the retry schedule's, which is a schedule with no retries.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |var: &'static str| lookup(var).filter(|value| !value.trim().is_empty());
        let required = |var: &'static str| get(var).ok_or(ConfigError::Missing(var));
        let invalid = |var: &'static str, value: &str, reason: String| ConfigError::Invalid {
            var,
            value: value.to_string(),
            reason,
        };

        let retry_schedule = match lookup(RETRY_SCHEDULE) {
            Some(text) => RetrySchedule::parse(&text)
                .map_err(|e: ScheduleError| invalid(RETRY_SCHEDULE, &text, e.to_string()))?,
            None => RetrySchedule::default(),
        };
        let request_timeout_ms = match get(REQUEST_TIMEOUT_MS) {
            Some(text) => text
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|ms| (1..=MAX_REQUEST_TIMEOUT_MS).contains(ms))
                .ok_or_else(|| {
                    invalid(
                        REQUEST_TIMEOUT_MS,
                        &text,
                        format!("expected milliseconds from 1 to {MAX_REQUEST_TIMEOUT_MS}"),
                    )
                })?,
            None => DEFAULT_REQUEST_TIMEOUT_MS,
        };
        let retention_days = match get(RETENTION_DAYS) {
            Some(text) => text
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|days| (1..=MAX_RETENTION_DAYS).contains(days))
                .ok_or_else(|| {
                    invalid(
                        RETENTION_DAYS,
                        &text,
                        format!("expected days from 1 to {MAX_RETENTION_DAYS}"),
                    )
                })?,
            None => DEFAULT_RETENTION_DAYS,
        };
        let allow_private_targets = match get(ALLOW_PRIVATE_TARGETS).as_deref().map(str::trim) {
            None | Some("0") | Some("false") => false,
            Some("1") | Some("true") => true,
            Some(other) => {
                return Err(invalid(
                    ALLOW_PRIVATE_TARGETS,
                    other,
                    "expected 1 or 0".to_string(),
                ));
            }
        };

        let portal_frame_ancestors = match get(PORTAL_FRAME_ANCESTORS) {
            Some(text) if is_source_list(&text) => {
                text.split_ascii_whitespace().collect::<Vec<_>>().join(" ")
            }
            Some(text) => {
                return Err(invalid(
                    PORTAL_FRAME_ANCESTORS,
                    &text,
                    "expected CSP sources separated by spaces, such as 'self' https://app.example.com"
                        .to_string(),
                ));
            }
            None => DEFAULT_PORTAL_FRAME_ANCESTORS.to_string(),
        };

        let disable_after = match get(DISABLE_AFTER) {
            Some(text) => crate::retry::parse_duration(text.trim())
                .filter(|after| !after.is_zero())
                .ok_or_else(|| {
                    invalid(
                        DISABLE_AFTER,
                        &text,
                        "expected a duration such as 5d, 12h or 30s".to_string(),
                    )
                })?,
            None => DEFAULT_DISABLE_AFTER,
        };
        let email_window_text = get(EMAIL_WINDOW).unwrap_or_else(|| DEFAULT_EMAIL_WINDOW.into());
        let email_window = crate::retry::parse_duration(email_window_text.trim())
            .filter(|window| {
                (Duration::from_secs(1)..=Duration::from_secs(12 * 3600)).contains(window)
            })
            .ok_or_else(|| {
                invalid(
                    EMAIL_WINDOW,
                    &email_window_text,
                    "expected a duration of 1s to 12h, e.g. 5m".to_string(),
                )
            })?;

        Ok(Self {
            table: required(TABLE)?,
            delivery_queue_url: required(DELIVERY_QUEUE_URL)?,
            dlq_url: required(DLQ_URL)?,
            retry_schedule,
            request_timeout: Duration::from_millis(request_timeout_ms),
            retention_days,
            allow_private_targets,
            api_version: get(API_VERSION).unwrap_or_else(|| DEFAULT_API_VERSION.to_string()),
            portal_frame_ancestors,
            disable_after,
            email_from: get(EMAIL_FROM).map(|from| from.trim().to_string()),
            email_window,
            slow_queue_url: get(SLOW_QUEUE_URL),
        })
    }

    pub fn retention(&self) -> Duration {
        Duration::from_secs(u64::from(self.retention_days) * 24 * 60 * 60)
    }
}

/// Whether `text` is a list of CSP sources that cannot end the directive it is put
/// in: visible ASCII words without `;` or `,`, so no other directive can follow.
fn is_source_list(text: &str) -> bool {
    text.is_ascii()
        && text.split_ascii_whitespace().all(|source| {
            source
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b';' && b != b',')
        })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| env.get(name).cloned())
    }

    const REQUIRED: [(&str, &str); 3] = [
        (TABLE, "hookline"),
        (DELIVERY_QUEUE_URL, "http://q/delivery"),
        (DLQ_URL, "http://q/dlq"),
    ];

    #[test]
    fn defaults_apply_when_only_the_required_variables_are_set() {
        let config = config(&REQUIRED).unwrap();
        assert_eq!(config.table, "hookline");
        assert_eq!(config.retry_schedule, RetrySchedule::default());
        assert_eq!(config.request_timeout, Duration::from_secs(15));
        assert_eq!(config.retention_days, 30);
        assert!(!config.allow_private_targets);
        assert_eq!(config.api_version, "2021-08-01");
        assert_eq!(config.email_window, Duration::from_secs(300));
        assert_eq!(config.email_from, None);
        assert_eq!(config.portal_frame_ancestors, "'self'");
        assert_eq!(config.disable_after, Duration::from_secs(5 * 86_400));
    }

    #[test]
    fn each_required_variable_is_named_when_missing() {
        for missing in [TABLE, DELIVERY_QUEUE_URL, DLQ_URL] {
            let pairs: Vec<_> = REQUIRED
                .into_iter()
                .filter(|(k, _)| *k != missing)
                .collect();
            assert_eq!(config(&pairs).unwrap_err(), ConfigError::Missing(missing));
            let blank: Vec<_> = REQUIRED
                .into_iter()
                .map(|(k, v)| if k == missing { (k, " ") } else { (k, v) })
                .collect();
            assert_eq!(config(&blank).unwrap_err(), ConfigError::Missing(missing));
        }
    }

    #[test]
    fn optional_variables_are_read() {
        let mut pairs = REQUIRED.to_vec();
        pairs.extend([
            (RETRY_SCHEDULE, "1s,2s"),
            (REQUEST_TIMEOUT_MS, "2500"),
            (RETENTION_DAYS, "7"),
            (ALLOW_PRIVATE_TARGETS, "1"),
            (API_VERSION, "2024-01-01"),
            (PORTAL_FRAME_ANCESTORS, " 'self'   https://app.example.com "),
            (DISABLE_AFTER, "90s"),
        ]);
        let config = config(&pairs).unwrap();
        assert_eq!(config.retry_schedule.attempts(), 3);
        assert_eq!(config.request_timeout, Duration::from_millis(2500));
        assert_eq!(config.retention(), Duration::from_secs(7 * 86_400));
        assert!(config.allow_private_targets);
        assert_eq!(config.disable_after, Duration::from_secs(90));
        assert_eq!(config.api_version, "2024-01-01");
        assert_eq!(
            config.portal_frame_ancestors,
            "'self' https://app.example.com"
        );
    }

    #[test]
    fn an_empty_retry_schedule_is_one_attempt_and_no_retry() {
        let mut pairs = REQUIRED.to_vec();
        pairs.push((RETRY_SCHEDULE, ""));
        assert_eq!(config(&pairs).unwrap().retry_schedule.attempts(), 1);
    }

    #[test]
    fn malformed_values_name_the_variable() {
        for (var, value) in [
            (RETRY_SCHEDULE, "5 minutes"),
            (RETRY_SCHEDULE, "24h"),
            (REQUEST_TIMEOUT_MS, "fast"),
            (REQUEST_TIMEOUT_MS, "0"),
            (REQUEST_TIMEOUT_MS, "600000"),
            (RETENTION_DAYS, "-1"),
            (ALLOW_PRIVATE_TARGETS, "yes please"),
            (DISABLE_AFTER, "5 days"),
            (DISABLE_AFTER, "0d"),
            // Each would let the value end frame-ancestors and add a directive.
            (PORTAL_FRAME_ANCESTORS, "'self'; script-src *"),
            (
                PORTAL_FRAME_ANCESTORS,
                "https://a.example, https://b.example",
            ),
            (PORTAL_FRAME_ANCESTORS, "https://a.example\u{85}"),
        ] {
            let mut pairs = REQUIRED.to_vec();
            pairs.push((var, value));
            match config(&pairs).unwrap_err() {
                ConfigError::Invalid { var: named, .. } => assert_eq!(named, var, "{value}"),
                other => panic!("{var}={value}: {other:?}"),
            }
        }
    }
}
