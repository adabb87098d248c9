//! Times as hookline writes them: RFC 3339 in UTC with microseconds, e.g.
//! `2021-08-09T14:40:19.987691Z`, which every common date parser reads.

use serde::{Deserialize, Deserializer, Serializer};
use time::format_description::FormatItem;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

const FORMAT: &[FormatItem<'_>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

pub fn format(time: OffsetDateTime) -> String {
    time.to_offset(UtcOffset::UTC)
        .format(FORMAT)
        .expect("a UTC time formats")
}

pub fn parse(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

/// `text`, an RFC 3339 time, in UTC: as written when it is already (`T`, then `Z` or
/// `+00:00`), else as [`format`] writes it; `None` if it is no RFC 3339 time.
pub fn in_utc(text: &str) -> Option<String> {
    let time = parse(text)?;
    let written_in_utc =
        text.as_bytes().get(10) == Some(&b'T') && (text.ends_with('Z') || text.ends_with("+00:00"));
    Some(if written_in_utc {
        text.to_string()
    } else {
        format(time)
    })
}

/// `#[serde(with = "shared::timefmt")]`
pub fn serialize<S: Serializer>(time: &OffsetDateTime, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format(*time))
}

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<OffsetDateTime, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse(&text)
        .ok_or_else(|| serde::de::Error::custom(format!("`{text}` is not an RFC 3339 time")))
}

/// `#[serde(with = "shared::timefmt::option")]`
pub mod option {
    use super::*;

    pub fn serialize<S: Serializer>(
        time: &Option<OffsetDateTime>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match time {
            Some(time) => super::serialize(time, serializer),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<OffsetDateTime>, D::Error> {
        let text = Option::<String>::deserialize(deserializer)?;
        text.map(|text| {
            parse(&text).ok_or_else(|| {
                serde::de::Error::custom(format!("`{text}` is not an RFC 3339 time"))
            })
        })
        .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_microseconds_in_utc_and_reads_any_rfc3339() {
        let time = parse("2021-08-09T16:40:19.987691234+02:00").unwrap();
        assert_eq!(format(time), "2021-08-09T14:40:19.987691Z");
        assert_eq!(
            format(parse("2021-08-09T14:40:19Z").unwrap()),
            "2021-08-09T14:40:19.000000Z"
        );
        assert!(parse("2021-08-09 14:40").is_none());
    }

    #[test]
    fn a_time_in_utc_stays_as_written_and_any_other_is_rewritten() {
        for utc in [
            "2021-08-09T14:40:19.987691+00:00",
            "2021-08-09T14:40:19Z",
            "2021-08-09T14:40:19.123456789Z",
        ] {
            assert_eq!(in_utc(utc).as_deref(), Some(utc));
        }
        for (other, rewritten) in [
            ("2021-08-09T16:40:19.5+02:00", "2021-08-09T14:40:19.500000Z"),
            ("2021-08-09T14:40:19-00:00", "2021-08-09T14:40:19.000000Z"),
            ("2021-08-09 14:40:19Z", "2021-08-09T14:40:19.000000Z"),
            ("2021-08-09t14:40:19z", "2021-08-09T14:40:19.000000Z"),
        ] {
            assert_eq!(in_utc(other).as_deref(), Some(rewritten), "{other}");
        }
        assert_eq!(in_utc("yesterday"), None);
    }
}
