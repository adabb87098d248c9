//! The bytes an endpoint receives. Built once per message; the same bytes are signed and sent.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::model::Format;

/// The `standard` body, its keys in CONTRACT's order.
#[derive(Serialize)]
pub struct Standard<'a> {
    pub event_type: &'a str,
    pub created_at: &'a str,
    pub api_version: &'a str,
    /// `None` (JSON null) for hookline's operational events.
    pub dataset: Option<&'a str>,
    pub object: &'a Map<String, Value>,
    pub text: &'a str,
}

pub fn standard(body: &Standard<'_>) -> String {
    serde_json::to_string(body).expect("a map of JSON values serialises")
}

#[derive(Debug, thiserror::Error)]
#[error("the stored payload is not a JSON object with a text: {0}")]
pub struct PayloadError(String);

/// The body for an endpoint of `format`, from a message's stored `standard` payload.
pub fn for_format(format: Format, standard_payload: &str) -> Result<Vec<u8>, PayloadError> {
    match format {
        Format::Standard => Ok(standard_payload.as_bytes().to_vec()),
        Format::Slack => {
            let parsed: Value =
                serde_json::from_str(standard_payload).map_err(|e| PayloadError(e.to_string()))?;
            let text = parsed
                .get("text")
                .and_then(Value::as_str)
                .ok_or_else(|| PayloadError("no text".into()))?;
            let text = slack_escaped(text);
            Ok(serde_json::to_vec(&serde_json::json!({ "text": text })).expect("serialises"))
        }
    }
}

/// `text` as Slack shows it word for word: its three control characters escaped,
/// as Slack asks. An event's text is plain (the same goes to email and to standard
/// endpoints), and a name such as `<!channel>` would otherwise notify a channel.
fn slack_escaped(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAYLOAD: &str =
        r#"{"event_type":"sample.created","text":"Sample \"rose.png\" created."}"#;

    #[test]
    fn standard_is_the_stored_payload_byte_for_byte() {
        assert_eq!(
            for_format(Format::Standard, PAYLOAD).unwrap(),
            PAYLOAD.as_bytes()
        );
    }

    #[test]
    fn slack_carries_only_the_text() {
        let body = for_format(Format::Slack, PAYLOAD).unwrap();
        assert_eq!(body, br#"{"text":"Sample \"rose.png\" created."}"#);
        assert!(for_format(Format::Slack, "[]").is_err());
    }

    #[test]
    fn slack_shows_the_text_as_written_not_as_its_markup() {
        let body = for_format(
            Format::Slack,
            r#"{"text":"Sample <!channel> & <https://x|y> created."}"#,
        )
        .unwrap();
        assert_eq!(
            body,
            br#"{"text":"Sample &lt;!channel&gt; &amp; &lt;https://x|y&gt; created."}"#
        );
    }
}
