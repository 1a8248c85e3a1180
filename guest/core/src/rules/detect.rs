//! Detect: turns rows of an event queue into alerts, the server wrapper
//! artifacts of the KB (`Server.Monitor.HoneyfileAccess`, Sigma/Hayabusa
//! hits, connections to listed addresses) as one configurable module.
//!
//! A row that matches every `Condition` row raises an alert named by the
//! `AlertName` template, attributed to the row's client, with the row's
//! columns (filtered) as context. `alert()` semantics apply: the host
//! deduplicates by name for `Dedup` seconds.

use serde_json::{Map, Value};

use super::interest::{ColumnTest, Interest, column_matches};
use super::{Rule, Setup};
use crate::action::{Action, Alert, Failure};
use crate::host::{Event, Host, LogLevel};
use crate::params::{ParamError, ParamKind, ParamSpec, Params};
use crate::render::{FillTemplate, elide_right};
use crate::vql::{RawRow, VqlRegex, get_member_path, get_path, render_value, render_value_or_empty};

const PARAMS: &[ParamSpec] = &[
    ParamSpec::new(
        "Queue",
        ParamKind::String,
        "",
        "The event queue to watch, e.g. Linux.Detection.Honeyfiles.",
    ),
    ParamSpec::new(
        "Condition",
        ParamKind::Csv,
        "Column,Regex\n",
        "Rows that alert: every Column must match its Regex (no rows: every row alerts).",
    ),
    ParamSpec::new(
        "AlertName",
        ParamKind::String,
        "",
        "The alert's name, with {Column} for a column's value and {client.hostname}, {client.fqdn}, \
         {client_id} for the client's. The name is the dedup key: put what makes alerts distinct in it.",
    ),
    ParamSpec::new(
        "Dedup",
        ParamKind::Int,
        "7200",
        "Seconds during which the same name is suppressed (negative: never).",
    ),
    ParamSpec::new(
        "Severity",
        ParamKind::String,
        "",
        "Added to the context as Severity when set.",
    ),
    ParamSpec::new(
        "ContextInclude",
        ParamKind::Regex,
        ".+",
        "Columns copied into the alert's context.",
    ),
    ParamSpec::new(
        "ContextExclude",
        ParamKind::Regex,
        "^_",
        "Columns left out of the context.",
    ),
    ParamSpec::new(
        "ClientIdColumn",
        ParamKind::String,
        "ClientId",
        "The column holding the client id.",
    ),
    ParamSpec::new(
        "ArtifactType",
        ParamKind::Choices,
        "CLIENT_EVENT",
        "What the watched queue is: the alert is attributed to it.",
    )
    .with_choices(&["CLIENT_EVENT", "SERVER_MONITORING"]),
];

/// Alert names are cut to this many bytes.
const MAX_NAME: usize = 1000;

/// The configured Detect module.
#[derive(Debug, Clone)]
pub struct DetectRule {
    queue: String,
    condition: Vec<(String, VqlRegex)>,
    name: FillTemplate,
    dedup: i64,
    severity: String,
    include: VqlRegex,
    exclude: VqlRegex,
    client_column: String,
    artifact_type: String,
}

impl Rule for DetectRule {
    const NAME: &'static str = "Detect";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Raises an alert for every row of an event queue that meets a condition \
         (honey file access, Sigma hits above a level, connections to listed addresses).";
    const PARAMS: &'static [ParamSpec] = PARAMS;

    fn configure(p: &Params, _host: &dyn Host) -> Result<(Self, Setup), Failure> {
        let queue = p.text("Queue").trim().to_string();
        if queue.is_empty() {
            return Err(ParamError::new("Queue", "name the queue to watch").into());
        }
        let template = p.text("AlertName");
        if template.trim().is_empty() {
            return Err(ParamError::new("AlertName", "give the alert a name").into());
        }
        let name = FillTemplate::parse(template).map_err(|e| ParamError::new("AlertName", e.to_string()))?;
        let mut condition = Vec::new();
        for (i, row) in p.table("Condition").iter().enumerate() {
            let cell = |n: &str| row.get(n).map(render_value_or_empty).unwrap_or_default();
            let column = cell("Column");
            if column.is_empty() {
                return Err(ParamError::new("Condition", format!("row {} has no Column", i + 1)).into());
            }
            let regex = VqlRegex::new(&cell("Regex"))
                .map_err(|e| ParamError::new("Condition", format!("row {}: {e}", i + 1)))?;
            condition.push((column.into_owned(), regex));
        }
        let rule = Self {
            queue: queue.clone(),
            condition,
            name,
            dedup: p.int("Dedup"),
            severity: p.text("Severity").to_string(),
            include: p.regex("ContextInclude").clone(),
            exclude: p.regex("ContextExclude").clone(),
            client_column: p.text("ClientIdColumn").to_string(),
            artifact_type: p.text("ArtifactType").to_string(),
        };
        let setup = Setup {
            queues: vec![queue],
            tick_seconds: None,
            interests: rule.interests(),
        };
        Ok((rule, setup))
    }

    /// The condition, on the columns it names: a row whose column fails
    /// its regex cannot alert. A column named by a dotted path and not
    /// found as such is left to `handle` (it may be a path into a value),
    /// and so is a row that is not a JSON object (`handle` says why).
    fn may_act(&self, row_text: &str) -> bool {
        if self.condition.is_empty() {
            return true;
        }
        let Some(row) = RawRow::parse(row_text) else {
            return true;
        };
        self.condition
            .iter()
            .all(|(column, regex)| match column_matches(regex, &row, column) {
                Some(matches) => matches,
                None if column.contains('.') => true,
                None => regex.matches_value(None),
            })
    }

    fn handle(&mut self, event: &Event, host: &dyn Host) -> Result<Vec<Action>, Failure> {
        let row = &event.row;
        if let Some((column, _)) = self
            .condition
            .iter()
            .find(|(c, re)| !re.matches_value(get_member_path(row, c)))
        {
            host.log(LogLevel::Debug, &format!("row does not meet the condition on {column}"));
            return Ok(Vec::new());
        }
        let client_id = get_member_path(row, &self.client_column)
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
            .map(str::to_string);
        let client = match (&client_id, self.name.fields().any(|f| f.starts_with("client."))) {
            (Some(id), true) => host.client_info(id)?,
            _ => None,
        };
        let name = self.name.fill(|field| match field {
            "client_id" => client_id.clone(),
            other => match other.strip_prefix("client.") {
                Some(key) => {
                    let os = client.as_ref().and_then(|c| get_path(c, &format!("os_info.{key}")));
                    os.or_else(|| client.as_ref().and_then(|c| get_path(c, key)))
                        .map(|v| render_value_or_empty(v).into_owned())
                }
                None => get_member_path(row, other).map(|v| render_value_or_empty(v).into_owned()),
            },
        });
        let name = elide_right(&crate::render::subject_safe(&name), MAX_NAME).into_owned();
        if name.trim().is_empty() {
            return Err(Failure::BadEvent("the alert name is empty for this row".into()));
        }
        let mut context: Map<String, Value> = event
            .row
            .iter()
            .filter(|(k, _)| *k != &self.client_column)
            .filter(|(k, _)| self.include.is_match(k) && (self.exclude.is_empty() || !self.exclude.is_match(k)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !self.severity.is_empty() {
            context.insert("Severity".into(), Value::String(self.severity.clone()));
        }
        let flow_id = event.row.get("FlowId").filter(|v| v.is_string()).map(render_value);
        Ok(vec![Action::Alert(Alert {
            name,
            dedup_seconds: Some(self.dedup),
            event_data: Value::Object(context).to_string(),
            client_id,
            artifact: Some(self.queue.clone()),
            artifact_type: Some(self.artifact_type.clone()),
            flow_id,
        })])
    }
}

impl DetectRule {
    /// The condition as an interest in the watched queue: the host calls
    /// the module only for rows whose columns may meet it.
    fn interests(&self) -> Vec<Interest> {
        let columns: Vec<ColumnTest> = self
            .condition
            .iter()
            .filter_map(|(column, regex)| ColumnTest::matches(column, regex))
            .collect();
        if columns.is_empty() {
            return Vec::new();
        }
        vec![Interest {
            queue: self.queue.clone(),
            columns,
        }]
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::rules::configure;
    use crate::testing::FakeHost;

    const HONEY: &[(&str, &str)] = &[
        ("Queue", "Linux.Detection.Honeyfiles"),
        ("AlertName", "Honey file \"{FileName}\" accessed on {client.hostname}"),
        ("Severity", "high"),
        ("Dedup", "300"),
    ];

    fn host() -> FakeHost {
        FakeHost::new(
            json!({"clients": {"C.1": {"client_id": "C.1", "os_info": {"hostname": "ws-lin-07", "fqdn": "ws-lin-07.corp"}}}}),
        )
    }

    fn detect(params: &[(&str, &str)], row: Value) -> Result<Vec<Action>, Failure> {
        let host = host();
        let given: Vec<(String, String)> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let (mut rule, setup) = configure::<DetectRule>(&given, &host)?;
        assert_eq!(setup.queues, [params[0].1]);
        let event = Event {
            id: "e".into(),
            queue: params[0].1.into(),
            row: row.as_object().unwrap().clone(),
            org_id: "root".into(),
        };
        rule.handle(&event, &host)
    }

    proptest::proptest! {
        /// Deciding on the raw columns never drops a row that would alert:
        /// whenever `may_act` or the host's reading of the module's interest
        /// says no, `handle` on the built row gives no
        /// action, whatever the columns hold (strings with escapes,
        /// numbers, null, arrays, objects, dotted names, missing).
        #[test]
        fn a_row_may_act_refuses_would_not_have_alerted(
            row in proptest::collection::btree_map(
                proptest::sample::select(vec!["Image", "FileName", "Pid", "Tags", "a.b", "a", "User"]),
                value(),
                0..7,
            ),
            condition in proptest::sample::select(vec![
                "Image,(?i)\\\\tools\\\\",
                "FileName,shadow|\"\nPid,^1",
                "a.b,x",
                "Tags,admin",
                "User,",
                "Missing,.",
            ]),
        ) {
            let text = serde_json::to_string(&row).unwrap();
            let params = [
                ("Queue", "Q"),
                ("AlertName", "hit {Image}"),
                ("Condition", &format!("Column,Regex\n{condition}\n")),
            ];
            let host = host();
            let given: Vec<(String, String)> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            let (mut rule, setup) = configure::<DetectRule>(&given, &host).unwrap();
            let filters = crate::rules::interest::compile(&setup.interests).unwrap();
            let host_spares = RawRow::parse(&text)
                .is_some_and(|row| !crate::rules::interest::admitted(&filters, "Q", &row));
            if host_spares || !rule.may_act(&text) {
                let event = Event {
                    id: "e".into(),
                    queue: "Q".into(),
                    row: serde_json::from_str(&text).unwrap(),
                    org_id: "root".into(),
                };
                proptest::prop_assert_eq!(rule.handle(&event, &host).unwrap(), Vec::new(), "{}", text);
            }
        }
    }

    fn value() -> impl proptest::strategy::Strategy<Value = Value> {
        let texts = vec![
            "C:\\Tools\\x.exe",
            "c:\\tools\\",
            "/etc/shadow",
            "x",
            "admin",
            "1",
            "12",
            "\"",
            "\n",
            "é",
            "",
        ];
        crate::testing::json_value(texts, "b")
    }

    fn one_alert(params: &[(&str, &str)], row: Value) -> Alert {
        match detect(params, row).unwrap().pop() {
            Some(Action::Alert(a)) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_honey_file_access_becomes_the_kb_alert() {
        let row = json!({"Timestamp": "2026-05-10T08:00:03Z", "FileName": "/home/alice/.ssh/id_rsa", "Pid": 48213,
                         "ProcessName": "wazuh-syscheckd", "ClientId": "C.1", "_ts": 1_778_400_005, "_Source": "Linux.Detection.Honeyfiles"});
        let alert = one_alert(HONEY, row);
        assert_eq!(
            alert.name,
            "Honey file \"/home/alice/.ssh/id_rsa\" accessed on ws-lin-07"
        );
        assert_eq!(alert.client_id.as_deref(), Some("C.1"));
        assert_eq!(alert.artifact.as_deref(), Some("Linux.Detection.Honeyfiles"));
        assert_eq!(alert.artifact_type.as_deref(), Some("CLIENT_EVENT"));
        assert_eq!(alert.dedup_seconds, Some(300));
        let context: Value = serde_json::from_str(&alert.event_data).unwrap();
        assert_eq!(
            context,
            json!({"Timestamp": "2026-05-10T08:00:03Z", "FileName": "/home/alice/.ssh/id_rsa", "Pid": 48213,
                   "ProcessName": "wazuh-syscheckd", "Severity": "high"}),
            "the client column and _-columns are left out"
        );
    }

    #[test]
    fn only_rows_meeting_every_condition_alert() {
        let sigma = [
            ("Queue", "Sigma.Windows.Hayabusa.Monitoring"),
            ("AlertName", "{Title}"),
            ("Condition", "Column,Regex\nLevel,^(high|critical)$\nChannel,Sysmon\n"),
            ("ContextInclude", "^(Level|Channel|EID|Details)$"),
        ];
        let row = |level: &str| {
            json!({"Title": "PowerShell Download Cradle", "Level": level, "Channel": "Microsoft-Windows-Sysmon/Operational",
                                      "EID": 1, "Details": {"Image": "powershell.exe"}, "Computer": "WIN-FIN-01", "ClientId": "C.1"})
        };
        assert!(detect(&sigma, row("medium")).unwrap().is_empty());
        let alert = one_alert(&sigma, row("HIGH"));
        assert_eq!(alert.name, "PowerShell Download Cradle");
        let context: Value = serde_json::from_str(&alert.event_data).unwrap();
        assert_eq!(
            context,
            json!({"Level": "HIGH", "Channel": "Microsoft-Windows-Sysmon/Operational", "EID": 1, "Details": {"Image": "powershell.exe"}})
        );
    }

    #[test]
    fn connections_to_listed_addresses_alert_per_address() {
        let params = [
            ("Queue", "Windows.Network.NetstatEnriched"),
            ("AlertName", "Connection to {Raddr.IP} from {Name} on {client_id}"),
            (
                "Condition",
                "Column,Regex\nRaddr.IP,^(198\\.51\\.100\\.42|203\\.0\\.113\\.7)$\n",
            ),
        ];
        let row = |ip: &str| json!({"Name": "powershell.exe", "Raddr": {"IP": ip, "Port": 443}, "ClientId": "C.1"});
        assert!(detect(&params, row("192.0.2.1")).unwrap().is_empty());
        assert_eq!(
            one_alert(&params, row("198.51.100.42")).name,
            "Connection to 198.51.100.42 from powershell.exe on C.1"
        );
    }

    #[test]
    fn hostile_values_cannot_break_the_name() {
        let row = json!({"FileName": "/tmp/x\r\nBcc: e@evil.example", "ClientId": "C.1"});
        assert_eq!(
            one_alert(HONEY, row).name,
            "Honey file \"/tmp/x  Bcc: e@evil.example\" accessed on ws-lin-07"
        );
    }

    #[test]
    fn bad_parameters_are_named() {
        let host = host();
        let err = configure::<DetectRule>(&[("AlertName".into(), "x".into())], &host).unwrap_err();
        assert!(err.to_string().contains("parameter Queue"), "{err}");
        let err = configure::<DetectRule>(
            &[("Queue".into(), "Q".into()), ("AlertName".into(), "{x".into())],
            &host,
        )
        .unwrap_err();
        assert!(err.to_string().contains("parameter AlertName: unclosed {"), "{err}");
    }
}
