//! Server.Monitor.Alerts.UserMessage: posts each alert to the GUI message
//! panel of the matching users (docs/velociraptor.md §10).

use serde_json::{Map, Value};

use super::{Rule, Setup};
use crate::action::{Action, Failure, UserMessage};
use crate::host::{Event, Host, LogLevel};
use crate::params::{ParamKind, ParamSpec, Params};
use crate::velociraptor::AlertRow;
use crate::vql::{VqlRegex, is_truthy};

use super::alert_names::AlertNameFilter;
use super::alerts::ALERT_QUEUE;

const PARAMS: &[ParamSpec] = &[
    ParamSpec::new(
        "Recipients",
        ParamKind::Regex,
        ".+",
        "User names that receive the messages.",
    ),
    ParamSpec::new(
        "RecipientRoles",
        ParamKind::Regex,
        "^administrator$",
        "Users need at least one role matching this.",
    ),
    ParamSpec::new(
        "AlertMsgInclude",
        ParamKind::Regex,
        ".+",
        "Only alerts whose name matches are posted.",
    ),
    ParamSpec::new(
        "AlertMsgExclude",
        ParamKind::Regex,
        "",
        "Alerts whose name matches are not posted.",
    ),
];

/// The configured Server.Monitor.Alerts.UserMessage module.
#[derive(Debug, Clone)]
pub struct UserMessageRule {
    recipients: VqlRegex,
    roles: VqlRegex,
    names: AlertNameFilter,
}

impl Rule for UserMessageRule {
    const NAME: &'static str = "Server.Monitor.Alerts.UserMessage";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "Posts every alert to the in-app message panel of the Velociraptor users and roles that match.";
    const PARAMS: &'static [ParamSpec] = PARAMS;

    fn configure(p: &Params, _host: &dyn Host) -> Result<(Self, Setup), Failure> {
        let rule = Self {
            recipients: p.regex("Recipients").clone(),
            roles: p.regex("RecipientRoles").clone(),
            names: AlertNameFilter::from_params(p),
        };
        let setup = Setup {
            queues: vec![ALERT_QUEUE.to_string()],
            tick_seconds: None,
            interests: rule.names.interests(),
        };
        Ok((rule, setup))
    }

    fn may_act(&self, row_text: &str) -> bool {
        self.names.may_pass(row_text)
    }

    fn handle(&mut self, event: &Event, host: &dyn Host) -> Result<Vec<Action>, Failure> {
        // No event_data overrides here (unlike Server.Monitor.Alerts, docs/velociraptor.md §7.2).
        let alert = AlertRow::parse(&event.row)?;
        if !self.names.passes(alert.name) {
            host.log(
                LogLevel::Debug,
                &format!(
                    "alert {:?}: name filtered out by AlertMsgInclude/AlertMsgExclude",
                    alert.name
                ),
            );
            return Ok(Vec::new());
        }
        let message = Value::Object(message(&alert)).to_string();
        let mut actions = Vec::new();
        for user in host.users()? {
            let name = user.get("name").and_then(Value::as_str).unwrap_or("");
            // Users without roles only match the match-everything patterns.
            if !name.is_empty() && self.recipients.is_match(name) && self.roles.matches_value(user.get("roles")) {
                actions.push(Action::UserMessage(UserMessage {
                    user: name.to_string(),
                    message: message.clone(),
                }));
            }
        }
        if actions.is_empty() {
            host.log(
                LogLevel::Info,
                &format!("alert {:?}: no user matches Recipients and RecipientRoles", alert.name),
            );
        }
        Ok(actions)
    }
}

/// `AlertTime`, `Message`, `ClientId`, `FlowId`, `ArtifactName`,
/// `ArtifactType` (empty ones left out), then `Alert`: the context.
fn message(alert: &AlertRow) -> Map<String, Value> {
    let mut info = Map::new();
    let time = alert
        .time
        .map(|t| Value::String(t.rfc3339_precise()))
        .unwrap_or(Value::Null);
    for (key, value) in [
        ("AlertTime", time),
        ("Message", Value::String(alert.name.to_string())),
        ("ClientId", Value::String(alert.client_id.to_string())),
        ("FlowId", Value::String(alert.flow_id.to_string())),
        ("ArtifactName", Value::String(alert.artifact.to_string())),
        ("ArtifactType", Value::String(alert.artifact_type.to_string())),
    ] {
        if is_truthy(&value) {
            info.insert(key.into(), value);
        }
    }
    info.insert("Alert".into(), Value::Object(alert.event_data.clone().into_owned()));
    info
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::rules::configure;
    use crate::testing::FakeHost;

    fn host() -> FakeHost {
        FakeHost::new(json!({"users": [
            {"name": "admin", "roles": ["administrator"]},
            {"name": "ann", "roles": ["investigator", "Administrator"]},
            {"name": "bob", "roles": ["reader"]},
            {"name": "carol", "roles": null},
            {"name": "svc-backup", "roles": []},
        ]}))
    }

    fn users(params: &[(&str, &str)], row: Value) -> Vec<String> {
        let host = host();
        let given: Vec<(String, String)> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut rule = configure::<UserMessageRule>(&given, &host).unwrap().0;
        let event = Event {
            id: "e".into(),
            queue: ALERT_QUEUE.into(),
            row: row.as_object().unwrap().clone(),
            org_id: "root".into(),
        };
        rule.handle(&event, &host)
            .unwrap()
            .into_iter()
            .map(|a| match a {
                Action::UserMessage(m) => m.user,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    fn alert(name: &str) -> Value {
        json!({"client_id": "C.1", "name": name, "timestamp": "2026-05-10T08:00:03.5Z", "event_data": {"File": "/etc/shadow"},
               "artifact": "Linux.Detection.Honeyfiles", "artifact_type": "CLIENT_EVENT"})
    }

    #[test]
    fn administrators_get_the_message_by_default() {
        assert_eq!(
            users(&[], alert("Honey")),
            ["admin", "ann"],
            "role match is case-insensitive"
        );
    }

    #[test]
    fn recipients_and_roles_both_must_match() {
        assert_eq!(
            users(
                &[("Recipients", "^a"), ("RecipientRoles", "investigator|reader")],
                alert("x")
            ),
            ["ann"]
        );
        assert_eq!(users(&[("RecipientRoles", "reader")], alert("x")), ["bob"]);
    }

    #[test]
    fn users_without_roles_only_match_match_everything_patterns() {
        assert_eq!(users(&[("RecipientRoles", ".+")], alert("x")), ["admin", "ann", "bob"]);
        assert_eq!(
            users(&[("RecipientRoles", ".*")], alert("x")),
            ["admin", "ann", "bob", "carol", "svc-backup"]
        );
    }

    #[test]
    fn alert_names_are_filtered() {
        assert!(users(&[("AlertMsgExclude", "honey")], alert("Honey file")).is_empty());
        assert!(users(&[("AlertMsgInclude", "sigma")], alert("Honey file")).is_empty());
    }

    #[test]
    fn the_message_is_the_alert_summary_with_its_context_and_no_overrides() {
        let host = host();
        let mut rule = configure::<UserMessageRule>(&[], &host).unwrap().0;
        let mut row = alert("Honey");
        row["event_data"]["ClientId"] = json!("C.other");
        let event = Event {
            id: "e".into(),
            queue: ALERT_QUEUE.into(),
            row: row.as_object().unwrap().clone(),
            org_id: "root".into(),
        };
        let Action::UserMessage(m) = rule.handle(&event, &host).unwrap().remove(0) else {
            panic!()
        };
        let message: Value = serde_json::from_str(&m.message).unwrap();
        assert_eq!(
            message,
            json!({"AlertTime": "2026-05-10T08:00:03.5Z", "Message": "Honey", "ClientId": "C.1",
                   "ArtifactName": "Linux.Detection.Honeyfiles", "ArtifactType": "CLIENT_EVENT",
                   "Alert": {"File": "/etc/shadow", "ClientId": "C.other"}})
        );
    }
}
