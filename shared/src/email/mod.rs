//! Email endpoints: their settings (addresses, reactive windows, digest
//! schedules), the schedule arithmetic in the endpoint's time zone, and the
//! rendering of the emails ([`render`]). Pure functions; SES is in
//! [`crate::mail`], the stored windows and due work in [`crate::store`].

pub mod render;

use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use crate::event::FieldError;

/// The most addresses one email endpoint sends to.
pub const MAX_ADDRESSES: usize = 10;
/// RFC 5321's limits on a path and its local part.
const MAX_ADDRESS_BYTES: usize = 254;
const MAX_LOCAL_PART_BYTES: usize = 64;

/// What an email endpoint sends, and to whom.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailSettings {
    pub emails: Vec<String>,
    /// Send the events of each window as one email.
    pub reactive: bool,
    pub digest: Option<DigestSchedule>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Every {
    Day,
    Week,
}

/// When a digest is sent: each day (or week, on `weekday`) at `at` in `timezone`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestSchedule {
    pub every: Every,
    /// `HH:MM`, 24-hour clock, local time.
    pub at: String,
    /// An IANA time zone name.
    pub timezone: String,
    /// Weekly digests only: `monday` … `sunday`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weekday: Option<String>,
}

const WEEKDAYS: [(&str, Weekday); 7] = [
    ("monday", Weekday::Monday),
    ("tuesday", Weekday::Tuesday),
    ("wednesday", Weekday::Wednesday),
    ("thursday", Weekday::Thursday),
    ("friday", Weekday::Friday),
    ("saturday", Weekday::Saturday),
    ("sunday", Weekday::Sunday),
];

/// Whether `text` is a plain `local@domain` address SES takes: no display name,
/// no comments or quoting, nothing a header could be split on.
pub fn is_valid_address(text: &str) -> bool {
    let Some((local, domain)) = text.rsplit_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local.len() <= MAX_LOCAL_PART_BYTES
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    text.len() <= MAX_ADDRESS_BYTES && local_ok && domain_ok
}

/// The `emails` field: 1 to [`MAX_ADDRESSES`] valid addresses, duplicates dropped.
pub fn emails_field(value: &Value) -> Result<Vec<String>, FieldError> {
    let refuse = |problem: String| FieldError::new("emails", problem);
    let Value::Array(items) = value else {
        return Err(refuse(format!(
            "must be an array of 1 to {MAX_ADDRESSES} email addresses"
        )));
    };
    let mut emails: Vec<String> = Vec::new();
    for item in items {
        let Some(address) = item.as_str() else {
            return Err(refuse("must be an array of strings".into()));
        };
        if !is_valid_address(address) {
            return Err(refuse(format!("`{address}` is not an email address")));
        }
        if !emails.iter().any(|e| e.eq_ignore_ascii_case(address)) {
            emails.push(address.to_string());
        }
    }
    if emails.is_empty() || emails.len() > MAX_ADDRESSES {
        return Err(refuse(format!(
            "must hold 1 to {MAX_ADDRESSES} email addresses"
        )));
    }
    Ok(emails)
}

/// The `reactive` field; `null` is its default, `true`.
pub fn reactive_field(value: &Value) -> Result<bool, FieldError> {
    match value {
        Value::Null => Ok(true),
        Value::Bool(b) => Ok(*b),
        _ => Err(FieldError::new("reactive", "must be true or false")),
    }
}

/// The `digest` field: `null` (no digest) or a schedule.
pub fn digest_field(value: &Value) -> Result<Option<DigestSchedule>, FieldError> {
    let refuse = |problem: &str| FieldError::new("digest", problem);
    let body = match value {
        Value::Null => return Ok(None),
        Value::Object(body) => body,
        _ => return Err(refuse("must be null or an object")),
    };
    if let Some(unknown) = body
        .keys()
        .find(|k| !["every", "at", "timezone", "weekday"].contains(&k.as_str()))
    {
        return Err(refuse(&format!(
            "unknown field `{unknown}`; expected every, at, timezone, weekday"
        )));
    }
    let every = match body.get("every").and_then(Value::as_str) {
        Some("day") => Every::Day,
        Some("week") => Every::Week,
        _ => return Err(refuse("`every` must be \"day\" or \"week\"")),
    };
    let at = body
        .get("at")
        .and_then(Value::as_str)
        .filter(|at| parse_at(at).is_some())
        .ok_or_else(|| refuse("`at` must be a time of day \"HH:MM\""))?;
    let timezone = match body.get("timezone") {
        None | Some(Value::Null) => "UTC".to_string(),
        // Found whatever its case, and kept as the time zone database spells it.
        Some(Value::String(name)) => TimeZone::get(name)
            .ok()
            .and_then(|zone| zone.iana_name().map(str::to_string))
            .ok_or_else(|| refuse("`timezone` must be an IANA time zone name"))?,
        Some(_) => return Err(refuse("`timezone` must be an IANA time zone name")),
    };
    let weekday = match (every, body.get("weekday")) {
        (Every::Day, None | Some(Value::Null)) => None,
        (Every::Day, Some(_)) => return Err(refuse("`weekday` is for weekly digests only")),
        (Every::Week, day) => Some(
            day.and_then(Value::as_str)
                .filter(|day| weekday(day).is_some())
                .ok_or_else(|| {
                    refuse("`weekday` must be a day of the week, \"monday\" … \"sunday\"")
                })?
                .to_string(),
        ),
    };
    Ok(Some(DigestSchedule {
        every,
        at: at.to_string(),
        timezone,
        weekday,
    }))
}

fn parse_at(text: &str) -> Option<(i8, i8)> {
    let (hours, minutes) = text.split_once(':')?;
    // Two digits each: a number's parser would also take a sign, as in `+9:00`.
    let two_digits = |part: &str| part.len() == 2 && part.bytes().all(|b| b.is_ascii_digit());
    if !two_digits(hours) || !two_digits(minutes) {
        return None;
    }
    let hours: i8 = hours.parse().ok().filter(|h| (0..24).contains(h))?;
    let minutes: i8 = minutes.parse().ok().filter(|m| (0..60).contains(m))?;
    Some((hours, minutes))
}

fn weekday(name: &str) -> Option<Weekday> {
    WEEKDAYS.iter().find(|(n, _)| *n == name).map(|(_, d)| *d)
}

fn to_timestamp(time: OffsetDateTime) -> jiff::Timestamp {
    jiff::Timestamp::from_second(time.unix_timestamp()).expect("a time in jiff's range")
}

fn from_timestamp(time: jiff::Timestamp) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(time.as_second()).expect("a time in time's range")
}

impl DigestSchedule {
    fn zone(&self) -> TimeZone {
        // Checked when the schedule was accepted; the tz database is compiled in.
        TimeZone::get(&self.timezone).unwrap_or(TimeZone::UTC)
    }

    /// The moment of the digest on `date`, if one is sent that day. A time the
    /// clocks skip over that day is taken as the moment after the gap.
    fn on(&self, date: Date, zone: &TimeZone) -> Option<jiff::Timestamp> {
        if let Some(day) = self.weekday.as_deref().and_then(weekday)
            && date.weekday() != day
        {
            return None;
        }
        let (hours, minutes) = parse_at(&self.at)?;
        let zoned = date.at(hours, minutes, 0, 0).to_zoned(zone.clone()).ok()?;
        Some(zoned.timestamp())
    }

    /// The first digest moment strictly after `after`.
    pub fn next_after(&self, after: OffsetDateTime) -> OffsetDateTime {
        let zone = self.zone();
        let after = to_timestamp(after);
        let mut date = after.to_zoned(zone.clone()).date();
        // A weekly schedule has a moment within 8 local days; a daily one within 2.
        for _ in 0..9 {
            if let Some(moment) = self.on(date, &zone).filter(|m| *m > after) {
                return from_timestamp(moment);
            }
            date = date.tomorrow().expect("a date in range");
        }
        unreachable!("a valid schedule has a moment every week")
    }

    /// The digest moment before `moment`: where the period that ends at `moment` began.
    pub fn previous_before(&self, moment: OffsetDateTime) -> OffsetDateTime {
        let zone = self.zone();
        let before = to_timestamp(moment);
        let mut date = before.to_zoned(zone.clone()).date();
        for _ in 0..9 {
            if let Some(found) = self.on(date, &zone).filter(|m| *m < before) {
                return from_timestamp(found);
            }
            date = date.yesterday().expect("a date in range");
        }
        unreachable!("a valid schedule has a moment every week")
    }

    /// Whether `moment` is one of this schedule's moments (a due digest of a
    /// schedule changed since is not sent).
    pub fn is_moment(&self, moment: OffsetDateTime) -> bool {
        self.next_after(moment - time::Duration::SECOND) == moment
    }

    /// The period the last digest before `now` covered: `[start, end)`.
    pub fn last_period(&self, now: OffsetDateTime) -> (OffsetDateTime, OffsetDateTime) {
        let end = self.previous_before(now + time::Duration::SECOND);
        (self.previous_before(end), end)
    }
}

/// The start of the reactive window that holds `at`, for windows of `length`:
/// windows are aligned to multiples of their length since the Unix epoch.
pub fn window_start(at: OffsetDateTime, length: std::time::Duration) -> OffsetDateTime {
    let seconds = i64::try_from(length.as_secs().max(1)).unwrap_or(i64::MAX);
    let at = at.unix_timestamp();
    OffsetDateTime::from_unix_timestamp(at - at.rem_euclid(seconds)).expect("in range")
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use time::macros::datetime;

    use super::*;

    #[test]
    fn addresses_are_plain_and_bounded() {
        for good in [
            "jane@example.com",
            "a.b+tag@mail.example.co.uk",
            "x_y@a-b.io",
        ] {
            assert!(is_valid_address(good), "{good}");
        }
        for bad in [
            "",
            "jane",
            "@example.com",
            "jane@",
            "jane@localhost",
            "Jane <jane@example.com>",
            "jane@example.com\r\nBcc: x@y.z",
            "ja ne@example.com",
            "jane@exa_mple.com",
            ".jane@example.com",
            "jane..doe@example.com",
            "jane@-example.com",
        ] {
            assert!(!is_valid_address(bad), "{bad:?}");
        }
        assert_eq!(
            emails_field(&json!(["a@example.com", "A@example.com", "b@example.com"])).unwrap(),
            ["a@example.com", "b@example.com"]
        );
        for bad in [
            json!([]),
            json!("a@example.com"),
            json!(null),
            json!([1]),
            json!(["nope"]),
            json!(
                (0..11)
                    .map(|i| format!("u{i}@example.com"))
                    .collect::<Vec<_>>()
            ),
        ] {
            assert_eq!(emails_field(&bad).unwrap_err().field, "emails", "{bad}");
        }
    }

    #[test]
    fn digest_schedules_are_checked_and_default_to_utc() {
        let daily = digest_field(&json!({"every": "day", "at": "09:30"}))
            .unwrap()
            .unwrap();
        assert_eq!(daily.timezone, "UTC");
        assert_eq!(daily.weekday, None);
        let weekly = digest_field(
            &json!({"every": "week", "at": "17:00", "timezone": "Europe/Paris", "weekday": "friday"}),
        )
        .unwrap()
        .unwrap();
        assert_eq!(weekly.weekday.as_deref(), Some("friday"));
        let spelled =
            digest_field(&json!({"every": "day", "at": "09:30", "timezone": "europe/paris"}))
                .unwrap()
                .unwrap();
        assert_eq!(spelled.timezone, "Europe/Paris");
        assert_eq!(digest_field(&json!(null)).unwrap(), None);
        for bad in [
            json!("daily"),
            json!({"every": "month", "at": "09:00"}),
            json!({"every": "day", "at": "9:00"}),
            json!({"every": "day", "at": "+9:00"}),
            json!({"every": "day", "at": "09:+5"}),
            json!({"every": "day", "at": "-0:00"}),
            json!({"every": "day", "at": "24:00"}),
            json!({"every": "day", "at": "09:00", "timezone": "Mars/Olympus"}),
            json!({"every": "day", "at": "09:00", "weekday": "monday"}),
            json!({"every": "week", "at": "09:00"}),
            json!({"every": "week", "at": "09:00", "weekday": "someday"}),
            json!({"every": "day", "at": "09:00", "hour": 9}),
        ] {
            assert_eq!(digest_field(&bad).unwrap_err().field, "digest", "{bad}");
        }
    }

    fn schedule(body: Value) -> DigestSchedule {
        digest_field(&body).unwrap().unwrap()
    }

    #[test]
    fn daily_moments_follow_the_local_clock_across_daylight_saving() {
        let paris = schedule(json!({"every": "day", "at": "09:00", "timezone": "Europe/Paris"}));
        // Winter: UTC+1; after the change on 2026-03-29: UTC+2.
        assert_eq!(
            paris.next_after(datetime!(2026-03-28 07:00 UTC)),
            datetime!(2026-03-28 08:00 UTC)
        );
        assert_eq!(
            paris.next_after(datetime!(2026-03-28 08:00 UTC)),
            datetime!(2026-03-29 07:00 UTC)
        );
        assert!(paris.is_moment(datetime!(2026-03-29 07:00 UTC)));
        assert!(!paris.is_moment(datetime!(2026-03-29 08:00 UTC)));
        assert_eq!(
            paris.last_period(datetime!(2026-03-29 12:00 UTC)),
            (
                datetime!(2026-03-28 08:00 UTC),
                datetime!(2026-03-29 07:00 UTC)
            )
        );
        // A time the clocks skip over is sent just after the gap.
        let skipped = schedule(json!({"every": "day", "at": "02:30", "timezone": "Europe/Paris"}));
        assert_eq!(
            skipped.next_after(datetime!(2026-03-28 12:00 UTC)),
            datetime!(2026-03-29 01:30 UTC)
        );
    }

    #[test]
    fn weekly_moments_fall_on_their_weekday() {
        let friday = schedule(json!({"every": "week", "at": "17:00", "weekday": "friday"}));
        // 2026-11-24 is a Tuesday.
        let next = friday.next_after(datetime!(2026-11-24 12:00 UTC));
        assert_eq!(next, datetime!(2026-11-27 17:00 UTC));
        assert_eq!(friday.next_after(next), datetime!(2026-12-04 17:00 UTC));
        assert_eq!(
            friday.last_period(datetime!(2026-11-27 17:00 UTC)),
            (
                datetime!(2026-11-20 17:00 UTC),
                datetime!(2026-11-27 17:00 UTC)
            )
        );
    }

    #[test]
    fn windows_align_to_their_length() {
        let five = std::time::Duration::from_secs(300);
        assert_eq!(
            window_start(datetime!(2026-11-24 12:04:59 UTC), five),
            datetime!(2026-11-24 12:00 UTC)
        );
        assert_eq!(
            window_start(datetime!(2026-11-24 12:05 UTC), five),
            datetime!(2026-11-24 12:05 UTC)
        );
    }
}
