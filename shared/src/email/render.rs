//! The emails as text: a subject, a plain-text part and an HTML part. Nothing
//! taken from an event is markup: every such string is escaped in the HTML.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::account::Account;
use crate::ids::{EndpointId, MessageId};

/// One event as an email shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmailEvent {
    pub message_id: MessageId,
    pub event_type: String,
    pub dataset: String,
    /// The event's `created_at`, as the platform sent it.
    pub created_at: String,
    /// The event's `text` (a registered type's `text_template` already filled in).
    pub text: String,
}

/// An email ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Email {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Which endpoint and account an email is from: its footer.
#[derive(Debug, Clone, Copy)]
pub struct Sender<'a> {
    pub account: &'a Account,
    pub endpoint_id: &'a EndpointId,
    pub description: &'a str,
}

/// How many of the latest events a digest lists.
pub const DIGEST_LATEST: usize = 10;
/// Subjects stay short: longer texts are cut, with an ellipsis.
const MAX_SUBJECT_CHARS: usize = 120;

/// `&`, `<`, `>`, `"` and `'` as entities: the text shows as itself.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn plural(count: usize, one: &str) -> String {
    if count == 1 {
        format!("1 {one}")
    } else {
        format!("{count} {one}s")
    }
}

/// A subject on one line and of bounded length, whatever the event's names hold.
fn subject_line(text: &str) -> String {
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if line.chars().count() <= MAX_SUBJECT_CHARS {
        return line;
    }
    let mut cut: String = line.chars().take(MAX_SUBJECT_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// Where the events happened: `jane/flowers`, `jane/flowers and jane/trees`,
/// `3 datasets of jane`, or `account jane` when none names a dataset (hookline's
/// operational events have none).
fn places(events: &[EmailEvent], account: &Account) -> String {
    let mut datasets: Vec<&str> = events
        .iter()
        .map(|e| e.dataset.as_str())
        .filter(|dataset| !dataset.is_empty())
        .collect();
    datasets.sort_unstable();
    datasets.dedup();
    match datasets.as_slice() {
        [] => format!("account {account}"),
        [one] => one.to_string(),
        [one, two] => format!("{one} and {two}"),
        many => format!("{} datasets of {account}", many.len()),
    }
}

fn footer_text(sender: &Sender<'_>) -> String {
    let about = if sender.description.is_empty() {
        String::new()
    } else {
        format!(" ({})", sender.description)
    };
    format!(
        "Sent by hookline for email endpoint {}{about} of account {}.",
        sender.endpoint_id, sender.account
    )
}

fn html_page(body: &str, sender: &Sender<'_>) -> String {
    format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head>\
         <body style=\"font-family: sans-serif\">{body}\
         <hr><p style=\"color: #666; font-size: small\">{}</p></body></html>",
        escape_html(&footer_text(sender))
    )
}

/// What an event is, where and when: `sample.created in jane/flowers at …`, or
/// without the place for hookline's own events, which are about no dataset.
fn type_place_and_time(event: &EmailEvent) -> String {
    if event.dataset.is_empty() {
        format!("{} at {}", event.event_type, event.created_at)
    } else {
        format!(
            "{} in {} at {}",
            event.event_type, event.dataset, event.created_at
        )
    }
}

fn event_lines(events: &[EmailEvent], text: &mut String, html: &mut String) {
    html.push_str("<ul>");
    for event in events {
        let about = type_place_and_time(event);
        let _ = writeln!(text, "- {}\n  {about}", event.text);
        let _ = write!(
            html,
            "<li><p>{}<br><small>{}</small></p></li>",
            escape_html(&event.text),
            escape_html(&about)
        );
    }
    html.push_str("</ul>");
}

/// The email of one reactive window: every event it gathered, oldest first.
/// `more` counts the window's events beyond those listed.
pub fn window_email(sender: &Sender<'_>, events: &[EmailEvent], more: usize) -> Email {
    let count = events.len() + more;
    let subject = subject_line(&format!(
        "{} in {}",
        plural(count, "event"),
        places(events, sender.account)
    ));
    let mut text = format!("{subject}\n\n");
    let mut html = format!("<h2>{}</h2>", escape_html(&subject));
    event_lines(events, &mut text, &mut html);
    if more > 0 {
        let _ = writeln!(text, "… and {more} more.");
        let _ = write!(html, "<p>… and {more} more.</p>");
    }
    let _ = write!(text, "\n-- \n{}\n", footer_text(sender));
    Email {
        subject,
        text,
        html: html_page(&html, sender),
    }
}

/// What a digest summarises: the period's events, counted, and the latest of them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DigestSummary {
    pub by_type: BTreeMap<String, u64>,
    pub by_dataset: BTreeMap<String, u64>,
    /// Newest first, at most [`DIGEST_LATEST`].
    pub latest: Vec<EmailEvent>,
}

impl DigestSummary {
    /// Counts `event` in; `events` are fed oldest first.
    pub fn add(&mut self, event: EmailEvent) {
        *self.by_type.entry(event.event_type.clone()).or_default() += 1;
        // hookline's own events are about no dataset: counted by type only.
        if !event.dataset.is_empty() {
            *self.by_dataset.entry(event.dataset.clone()).or_default() += 1;
        }
        self.latest.insert(0, event);
        self.latest.truncate(DIGEST_LATEST);
    }

    pub fn total(&self) -> u64 {
        self.by_type.values().sum()
    }
}

fn count_table(title: &str, counts: &BTreeMap<String, u64>, text: &mut String, html: &mut String) {
    let _ = writeln!(text, "{title}:");
    let _ = write!(html, "<h3>{}</h3><table>", escape_html(title));
    for (name, count) in counts {
        let _ = writeln!(text, "  {name}: {count}");
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{count}</td></tr>",
            escape_html(name)
        );
    }
    text.push('\n');
    html.push_str("</table>");
}

/// A digest of `[since, until)`: counts by type and by dataset and the latest
/// events, or "no activity".
pub fn digest_email(
    sender: &Sender<'_>,
    summary: &DigestSummary,
    since: OffsetDateTime,
    until: OffsetDateTime,
) -> Email {
    let total = usize::try_from(summary.total()).unwrap_or(usize::MAX);
    let what = if total == 0 {
        "no activity".to_string()
    } else {
        plural(total, "event")
    };
    let subject = subject_line(&format!("Digest for {}: {what}", sender.account));
    let period = format!(
        "From {} to {}.",
        crate::timefmt::format(since),
        crate::timefmt::format(until)
    );
    let mut text = format!("{subject}\n{period}\n\n");
    let mut html = format!(
        "<h2>{}</h2><p>{}</p>",
        escape_html(&subject),
        escape_html(&period)
    );
    if total == 0 {
        text.push_str("No activity in this period.\n");
        html.push_str("<p>No activity in this period.</p>");
    } else {
        count_table("By event type", &summary.by_type, &mut text, &mut html);
        count_table("By dataset", &summary.by_dataset, &mut text, &mut html);
        text.push_str("Latest events:\n");
        html.push_str("<h3>Latest events</h3>");
        event_lines(&summary.latest, &mut text, &mut html);
    }
    let _ = write!(text, "\n-- \n{}\n", footer_text(sender));
    Email {
        subject,
        text,
        html: html_page(&html, sender),
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn event(event_type: &str, dataset: &str, text: &str) -> EmailEvent {
        EmailEvent {
            message_id: MessageId::new(),
            event_type: event_type.into(),
            dataset: dataset.into(),
            created_at: "2026-11-24T12:00:00Z".into(),
            text: text.into(),
        }
    }

    fn sender<'a>(account: &'a Account, endpoint_id: &'a EndpointId) -> Sender<'a> {
        Sender {
            account,
            endpoint_id,
            description: "team",
        }
    }

    #[test]
    fn a_window_email_names_every_event_and_escapes_them_in_html() {
        let account: Account = "jane".parse().unwrap();
        let id = EndpointId::new();
        let events = [
            event("sample.created", "jane/flowers", "Sample <b>rose</b> & co"),
            event("sample.deleted", "jane/flowers", "Sample \"tulip\" deleted"),
            event("issue.created", "jane/flowers", "Issue 'x' opened"),
        ];
        let email = window_email(&sender(&account, &id), &events, 0);
        assert_eq!(email.subject, "3 events in jane/flowers");
        for e in &events {
            assert!(email.text.contains(&e.text), "{}", email.text);
            assert!(email.html.contains(&escape_html(&e.text)));
        }
        assert!(!email.html.contains("<b>rose</b>"));
        assert!(email.html.contains("&lt;b&gt;rose&lt;/b&gt; &amp; co"));
        let footer = format!("email endpoint {id} (team) of account jane");
        assert!(email.text.contains(&footer) && email.html.contains(&footer));

        let one = window_email(&sender(&account, &id), &events[..1], 0);
        assert_eq!(one.subject, "1 event in jane/flowers");
        let mixed = [
            event("a.b", "jane/flowers", "x"),
            event("a.b", "jane/trees", "y"),
            event("a.b", "jane/moss", "z"),
        ];
        let email = window_email(&sender(&account, &id), &mixed, 2);
        assert_eq!(email.subject, "5 events in 3 datasets of jane");
        assert!(email.text.contains("and 2 more."));
        assert_eq!(
            window_email(&sender(&account, &id), &mixed[..2], 0).subject,
            "2 events in jane/flowers and jane/trees"
        );
        let operational = [event("endpoint.disabled", "", "ep_1 disabled")];
        let email = window_email(&sender(&account, &id), &operational, 0);
        assert_eq!(email.subject, "1 event in account jane");
        // About no dataset, so it names none.
        assert!(
            email
                .text
                .contains("endpoint.disabled at 2026-11-24T12:00:00Z")
                && !email.text.contains(" in  "),
            "{}",
            email.text
        );
    }

    #[test]
    fn a_subject_is_one_bounded_line() {
        let account: Account = "jane".parse().unwrap();
        let id = EndpointId::new();
        let long = format!("jane/{}", "x".repeat(300));
        let email = window_email(&sender(&account, &id), &[event("a.b", &long, "t")], 0);
        assert!(email.subject.chars().count() <= MAX_SUBJECT_CHARS);
        assert!(!email.subject.contains('\n'));
    }

    #[test]
    fn a_digest_counts_by_type_and_dataset_or_says_no_activity() {
        let account: Account = "jane".parse().unwrap();
        let id = EndpointId::new();
        let since = datetime!(2026-11-23 09:00 UTC);
        let until = datetime!(2026-11-24 09:00 UTC);
        let empty = digest_email(
            &sender(&account, &id),
            &DigestSummary::default(),
            since,
            until,
        );
        assert_eq!(empty.subject, "Digest for jane: no activity");
        assert!(empty.text.contains("No activity"));

        let mut summary = DigestSummary::default();
        for i in 0..12 {
            let dataset = if i % 3 == 0 {
                "jane/trees"
            } else {
                "jane/flowers"
            };
            summary.add(event("sample.created", dataset, &format!("event {i}")));
        }
        summary.add(event("endpoint.disabled", "", "ep_1 disabled"));
        summary.add(event("issue.created", "jane/flowers", "<script>"));
        let email = digest_email(&sender(&account, &id), &summary, since, until);
        assert_eq!(email.subject, "Digest for jane: 14 events");
        assert!(email.text.contains("endpoint.disabled: 1"));
        // Counted by type only: no dataset row without a name.
        assert_eq!(summary.by_dataset.len(), 2);
        assert!(email.text.contains("sample.created: 12"), "{}", email.text);
        assert!(email.text.contains("issue.created: 1"));
        assert!(email.text.contains("jane/flowers: 9"));
        assert!(email.text.contains("jane/trees: 4"));
        assert_eq!(summary.latest.len(), DIGEST_LATEST);
        assert_eq!(summary.latest[0].text, "<script>");
        assert!(
            !email.text.contains("event 2\n"),
            "only the latest are listed"
        );
        assert!(email.html.contains("&lt;script&gt;") && !email.html.contains("<script>"));
    }
}
