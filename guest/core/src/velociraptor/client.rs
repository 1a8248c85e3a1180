//! The client dictionary ("Client dictionary" in docs/velociraptor.md §6.5).

use serde_json::Value;

use super::{str_at, strings_at};
use crate::host::ServerInfo;
use crate::params::{ParamError, Row};
use crate::render::{Cell, Fields, Links, elide_right};
use crate::vql::render_value;

/// One `ClientMetadata` row: a metadata field to show, under an alias.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataField {
    pub field: String,
    /// The row's key in the e-mail; the field name when empty.
    pub alias: String,
}

/// Reads the `Field,Alias` table of parameter `param`.
pub fn metadata_fields(param: &str, rows: &[Row]) -> Result<Vec<MetadataField>, ParamError> {
    rows.iter()
        .enumerate()
        .map(|(i, row)| {
            let cell = |name: &str| row.get(name).map(render_value).unwrap_or_default();
            let field = cell("Field");
            if field.is_empty() {
                return Err(ParamError::new(param, format!("row {} has no Field", i + 1)));
            }
            Ok(MetadataField {
                alias: cell("Alias"),
                field,
            })
        })
        .collect()
}

/// Metadata values are shown up to this many bytes.
const METADATA_VALUE_LIMIT: usize = 100;

/// What is known of the client a notification is about.
#[derive(Debug, Clone, Copy)]
pub struct ClientDetails<'a> {
    pub client_id: &'a str,
    /// The `client_info()` object; empty for an unknown client.
    pub info: &'a Value,
    /// The `client_metadata()` object.
    pub metadata: Option<&'a Value>,
    /// First seen shortly before the flow started (FlowCompletion only).
    pub new_client: bool,
}

/// The client rows of a notification, in the artifacts' order:
/// Organisation (outside the root org), ID, FQDN, System, OS,
/// Architecture, New client, Labels, then the `wanted_metadata` fields.
pub fn client_fields(
    details: &ClientDetails<'_>,
    wanted_metadata: &[MetadataField],
    server: &ServerInfo,
    links: &Links,
    keep_empty: bool,
) -> Fields {
    let ClientDetails {
        client_id,
        info: client,
        metadata,
        new_client,
    } = *details;
    let mut fields = Fields::new(keep_empty);
    fields.push_if(server.org_id != "root", "Organisation", Cell::text(&server.org_name));
    fields.push(
        "ID",
        Cell::Link {
            text: client_id.to_string(),
            url: links.client(client_id),
        },
    );
    fields.push("FQDN", Cell::text(str_at(client, "os_info.fqdn")));
    fields.push("System", Cell::text(str_at(client, "os_info.system")));
    fields.push("OS", Cell::text(str_at(client, "os_info.release")));
    fields.push("Architecture", Cell::text(str_at(client, "os_info.machine")));
    fields.push_if(new_client, "New client", Cell::text("true"));
    fields.push(
        "Labels",
        Cell::List(strings_at(client, "labels").into_iter().map(Cell::Text).collect()),
    );
    for wanted in wanted_metadata {
        let value = metadata
            .and_then(|m| m.get(&wanted.field))
            .map(|v| match v {
                Value::Null => String::new(),
                other => render_value(other),
            })
            .unwrap_or_default();
        let key = if wanted.alias.is_empty() {
            &wanted.field
        } else {
            &wanted.alias
        };
        fields.push(
            key.clone(),
            Cell::Text(elide_right(&value, METADATA_VALUE_LIMIT).into_owned()),
        );
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn server(org: &str) -> ServerInfo {
        ServerInfo {
            org_id: org.into(),
            org_name: "Finance Org".into(),
            public_url: Some("https://v.example/app/index.html".into()),
            default_sender: "v@example.org".into(),
            max_email_bytes: 25 << 20,
        }
    }

    fn fixture_client() -> Value {
        let text = include_str!("../../../../tests/data/velociraptor/client_info.clients_plugin_output.json");
        serde_json::from_str::<Value>(text).unwrap()[0].clone()
    }

    #[test]
    fn the_fixture_client_shows_its_rows_in_order() {
        let links = Links::new(Some("https://v.example/app/index.html"), "root");
        let meta = json!({"Owner": "ann@corp.example", "Foo": "Bar"});
        let wanted = [
            MetadataField {
                field: "Owner".into(),
                alias: "Device owner".into(),
            },
            MetadataField {
                field: "Missing".into(),
                alias: String::new(),
            },
        ];
        let client = fixture_client();
        let details = ClientDetails {
            client_id: "C.123NewClient",
            info: &client,
            metadata: Some(&meta),
            new_client: false,
        };
        let f = client_fields(&details, &wanted, &server("root"), &links, false);
        assert_eq!(
            f.to_text(),
            "ID: C.123NewClient (https://v.example/app/index.html?org_id=root#/host/C.123NewClient)\n\
             FQDN: myHostname\n\
             System: windows\n\
             Labels: \n  - Label1\n  - Label2\n\
             Device owner: ann@corp.example"
        );
    }

    #[test]
    fn organisation_is_shown_outside_the_root_org_and_empty_rows_when_kept() {
        let links = Links::new(None, "O1");
        let wanted = [MetadataField {
            field: "Missing".into(),
            alias: String::new(),
        }];
        let empty = json!({});
        let details = ClientDetails {
            client_id: "C.1",
            info: &empty,
            metadata: None,
            new_client: true,
        };
        let f = client_fields(&details, &wanted, &server("O1"), &links, true);
        let keys: Vec<&str> = f.rows().iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "Organisation",
                "ID",
                "FQDN",
                "System",
                "OS",
                "Architecture",
                "New client",
                "Labels",
                "Missing"
            ]
        );
    }
}
