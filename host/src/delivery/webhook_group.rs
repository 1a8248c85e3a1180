//! One post for a group of a module's webhooks (issue: grouping, D19): the
//! members' bodies folded into one body of the same shape, so the receiver
//! (Slack, Mattermost, Teams, or a JSON endpoint) takes it as it takes one.
//! The members were rendered by the module; the host only lists them.

use serde_json::{Map, Value, json};
use velonotify_core::rules::webhook::{ADAPTIVE_CARD, adaptive_card_message};

/// Members listed in one post at most; the rest are counted.
pub const MAX_LISTED: usize = 200;
/// Longest text of a chat post, in characters (Slack cuts a message's
/// `text` at 40,000).
const MAX_TEXT_CHARS: usize = 35_000;

/// The body of the post that stands for a group of `total` members, all to
/// one URL from `module`'s group `key`: `listed` holds the bodies of the
/// first of them (at most [`MAX_LISTED`]), oldest first. A group of one is
/// posted as its member was.
pub fn group_body(module: &str, key: &str, listed: &[Vec<u8>], total: usize) -> Vec<u8> {
    if let ([only], 1) = (listed, total) {
        return only.clone();
    }
    let parsed: Vec<Value> = listed
        .iter()
        .map(|body| {
            serde_json::from_slice(body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into()))
        })
        .collect();
    let count = total;
    let noun = if count == 1 { "notification" } else { "notifications" };
    let header = format!("{count} {noun} from {module}: {}", escape_chat(key));
    let body = match Shape::of(parsed.first()) {
        Shape::Chat => json!({ "text": chat_text(&header, &parsed, total, "\n• ") }),
        Shape::AdaptiveCard => adaptive_card_message(vec![
            json!({"type": "TextBlock", "text": header, "weight": "Bolder", "wrap": true}),
            json!({"type": "TextBlock", "text": chat_text("", &parsed, total, "\n\n"), "wrap": true}),
        ]),
        Shape::MessageCard => json!({
            "@type": "MessageCard",
            "@context": "https://schema.org/extensions",
            "summary": header,
            "title": header,
            "text": chat_text("", &parsed, total, "\n\n"),
        }),
        Shape::Json => {
            let listed: Vec<Value> = parsed.iter().take(MAX_LISTED).cloned().collect();
            json!({
                "text": header,
                "group": key,
                "module": module,
                "count": count,
                "notifications": listed,
            })
        }
    };
    body.to_string().into_bytes()
}

/// Whether posts with `body` can be folded into one: chat texts, Teams
/// cards and the Webhook module's own JSON (`text` and `data`). A
/// receiver's API object (a PagerDuty event, a TheHive or IRIS alert, a
/// Splunk event, a Discord or Telegram message) is one thing per post: a
/// list of them would be refused, so such members go one by one.
pub fn foldable(body: &[u8]) -> bool {
    let Ok(parsed) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    match Shape::of(Some(&parsed)) {
        Shape::Chat | Shape::AdaptiveCard | Shape::MessageCard => true,
        Shape::Json => parsed
            .as_object()
            .is_some_and(|o| o.len() == 2 && o.get("text").is_some_and(Value::is_string) && o.contains_key("data")),
    }
}

/// The shape of the members' bodies, read from the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// `{"text": ...}` alone: Slack, Mattermost.
    Chat,
    /// A Teams Workflows message: one Adaptive Card.
    AdaptiveCard,
    /// Office 365's connector card.
    MessageCard,
    /// Anything else: listed whole.
    Json,
}

impl Shape {
    fn of(first: Option<&Value>) -> Self {
        let Some(Value::Object(object)) = first else {
            return Self::Json;
        };
        if adaptive_card_text(first).is_some() {
            Self::AdaptiveCard
        } else if object.get("@type").and_then(Value::as_str) == Some("MessageCard") {
            Self::MessageCard
        } else if object.len() == 1 && object.get("text").is_some_and(Value::is_string) {
            Self::Chat
        } else {
            Self::Json
        }
    }
}

/// The header, then each member's text after `separator`, bounded; the
/// members not listed (of `total`) are counted.
fn chat_text(header: &str, members: &[Value], total: usize, separator: &str) -> String {
    let mut text = header.to_string();
    let mut listed = 0;
    for member in members.iter().take(MAX_LISTED) {
        let line = text_of(member);
        if text.chars().count() + line.chars().count() > MAX_TEXT_CHARS {
            break;
        }
        if !text.is_empty() {
            text.push_str(separator);
        }
        text.push_str(&line);
        listed += 1;
    }
    if listed < total {
        text.push_str(&format!("{separator}... and {} more", total - listed));
    }
    text
}

fn text_of(member: &Value) -> String {
    if let Some(text) = adaptive_card_text(Some(member)) {
        return text;
    }
    match member {
        Value::Object(object) => match object.get("text") {
            Some(Value::String(text)) => text.clone(),
            _ => Value::Object(Map::clone(object)).to_string(),
        },
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// The text blocks of a Teams message's Adaptive Card, joined; None when
/// `member` is not such a message.
fn adaptive_card_text(member: Option<&Value>) -> Option<String> {
    let member = member?;
    if member.get("type")?.as_str()? != "message" {
        return None;
    }
    let attachment = member.get("attachments")?.as_array()?.first()?;
    if attachment.get("contentType")?.as_str()? != ADAPTIVE_CARD {
        return None;
    }
    let blocks = attachment.get("content")?.get("body")?.as_array()?;
    let texts: Vec<&str> = blocks.iter().filter_map(|b| b.get("text")?.as_str()).collect();
    Some(texts.join("\n\n"))
}

/// A group key's label values come from events: made inert for chat markup
/// (Slack's `&<>` escapes also defuse `<!channel>`).
fn escape_chat(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bodies(values: &[Value]) -> Vec<Vec<u8>> {
        values.iter().map(|v| v.to_string().into_bytes()).collect()
    }

    fn read(body: &[u8]) -> Value {
        serde_json::from_slice(body).unwrap()
    }

    #[test]
    fn slack_members_become_one_message_listing_each() {
        let members = bodies(&[
            json!({"text": "Alert from ws1: Honey"}),
            json!({"text": "Alert from ws2: Honey"}),
        ]);
        let post = read(&group_body("webhook", "{alertname=\"<!channel>\"}", &members, 2));
        assert_eq!(
            post,
            json!({"text": "2 notifications from webhook: {alertname=\"&lt;!channel&gt;\"}\n• Alert from ws1: Honey\n• Alert from ws2: Honey"})
        );
    }

    #[test]
    fn teams_members_stay_a_message_card() {
        let card = |text: &str| json!({"@type": "MessageCard", "@context": "https://schema.org/extensions", "summary": text, "text": text});
        let post = read(&group_body(
            "teams",
            "{alertname=\"x\"}",
            &bodies(&[card("a"), card("b")]),
            2,
        ));
        assert_eq!(post["@type"], "MessageCard");
        assert_eq!(post["title"], "2 notifications from teams: {alertname=\"x\"}");
        assert_eq!(post["text"], "a\n\nb");
    }

    #[test]
    fn teams_workflow_members_stay_one_adaptive_card() {
        let card = |text: &str| {
            json!({"type": "message", "attachments": [{"contentType": ADAPTIVE_CARD, "contentUrl": null,
                   "content": {"type": "AdaptiveCard", "version": "1.4", "body": [{"type": "TextBlock", "text": text}]}}]})
        };
        let post = read(&group_body(
            "teams",
            "{alertname=\"x\"}",
            &bodies(&[card("a"), card("b")]),
            2,
        ));
        let content = &post["attachments"][0]["content"];
        assert_eq!(content["type"], "AdaptiveCard");
        assert_eq!(
            content["body"][0]["text"],
            "2 notifications from teams: {alertname=\"x\"}"
        );
        assert_eq!(content["body"][1]["text"], "a\n\nb");
    }

    #[test]
    fn json_members_are_listed_whole_and_bounded() {
        let members: Vec<Value> = (0..MAX_LISTED)
            .map(|i| json!({"text": "t", "data": {"n": i}}))
            .collect();
        let post = read(&group_body(
            "json",
            "{alertname=\"x\"}",
            &bodies(&members),
            MAX_LISTED + 5,
        ));
        assert_eq!(post["count"], MAX_LISTED + 5);
        assert_eq!(post["notifications"].as_array().unwrap().len(), MAX_LISTED);
        assert_eq!(post["notifications"][3]["data"]["n"], 3);
    }

    #[test]
    fn chat_cards_and_the_modules_json_fold_and_receivers_objects_do_not() {
        for body in [
            json!({"text": "x"}),
            json!({"text": "x", "data": {"a": 1}}),
            json!({"@type": "MessageCard", "text": "x"}),
        ] {
            assert!(foldable(body.to_string().as_bytes()), "{body}");
        }
        for body in [
            json!({"routing_key": "k", "event_action": "trigger", "payload": {}}),
            json!({"type": "velociraptor-alert", "title": "t", "sourceRef": "r"}),
            json!({"content": "x", "allowed_mentions": {"parse": []}}),
        ] {
            assert!(!foldable(body.to_string().as_bytes()), "{body}");
        }
    }

    #[test]
    fn a_group_of_one_is_posted_as_its_member_was() {
        let member = b"not json, signed as it is".to_vec();
        assert_eq!(group_body("hook", "k", std::slice::from_ref(&member), 1), member);
    }

    #[test]
    fn a_long_chat_group_is_cut_and_counted() {
        let long = "x".repeat(10_000);
        let members = bodies(&vec![json!({ "text": long }); 10]);
        let post = read(&group_body("webhook", "k", &members, 10));
        let text = post["text"].as_str().unwrap();
        assert!(text.chars().count() <= MAX_TEXT_CHARS + 40, "{}", text.len());
        assert!(text.ends_with("... and 7 more"), "{}", &text[text.len() - 30..]);
    }
}
