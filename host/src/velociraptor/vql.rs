//! Every VQL statement velonotify sends to a Velociraptor server.
//!
//! Values (client ids, flow ids, queue names, labels, messages) never go
//! into the VQL text: they travel as query environment variables, named
//! here in CamelCase, so event data cannot change what a query does (VQL
//! injection). Numbers that come from velonotify's own configuration are
//! passed the same way, converted with `int()`.

/// The event stream of one org: one `watch_monitoring()` per queue, run
/// together by `chain(async=TRUE)`, plus a heartbeat row every
/// `HeartbeatSeconds` so a silent stream can be told from a dead one.
/// Queue `i` is named by the variable `Queue<i>`.
pub fn event_stream(queues: usize) -> String {
    let mut vql = String::new();
    for i in 0..queues {
        vql.push_str(&format!(
            "LET q{i} = SELECT * FROM watch_monitoring(artifact=Queue{i})\n"
        ));
    }
    vql.push_str(&format!(
        "LET beat = SELECT '{HEARTBEAT_SOURCE}' AS _Source, Unix AS _ts FROM clock(period=int(int=HeartbeatSeconds))\n"
    ));
    let parts: Vec<String> = (0..queues)
        .map(|i| format!("q{i}=q{i}"))
        .chain(["beat=beat".into()])
        .collect();
    vql.push_str(&format!("SELECT * FROM chain(async=TRUE, {})", parts.join(", ")));
    vql
}

/// The `_Source` of heartbeat rows.
pub const HEARTBEAT_SOURCE: &str = "velonotify.heartbeat";

/// Rows a server event queue stored since `Since` (epoch seconds), to
/// catch up after a disconnect. Their `_ts` comes back in milliseconds.
pub const BACKFILL: &str = "SELECT * FROM source(artifact=Queue, start_time=int(int=Since))";

/// [`BACKFILL`], a page of at most `rows` rows (a number velonotify picks,
/// never data).
pub fn backfill_page(rows: usize) -> String {
    format!("{BACKFILL} LIMIT {rows}")
}

/// The type of each artifact in `Names` (a JSON list), to know which
/// queues are stored on the server and can be read back.
pub const ARTIFACT_TYPES: &str = "SELECT name, type FROM artifact_definitions(names=parse_json_array(data=Names))";

pub const CLIENT_INFO: &str = "SELECT * FROM clients(client_id=ClientId)";
pub const CLIENT_METADATA: &str = "SELECT client_metadata(client_id=ClientId) AS Metadata FROM scope()";
/// `Search` is `label:<name>`; without it every client.
pub const CLIENTS_SEARCH: &str = "SELECT * FROM clients(search=Search)";
pub const CLIENTS_ALL: &str = "SELECT * FROM clients()";
pub const FLOW: &str = "SELECT * FROM flows(client_id=ClientId, flow_id=FlowId)";
/// Two statements: the first `MaxRows` rows of one source of a flow, then
/// how many rows it has.
pub const FLOW_RESULTS: &str = "SELECT * FROM source(client_id=ClientId, flow_id=FlowId, artifact=Source, \
                                count=int(int=MaxRows))\n\
                                SELECT count() AS Total FROM source(client_id=ClientId, flow_id=FlowId, \
                                artifact=Source) GROUP BY 1";
pub const FLOW_UPLOADS: &str = "SELECT * FROM uploads(client_id=ClientId, flow_id=FlowId)";
pub const HUNT: &str = "SELECT * FROM hunts(hunt_id=HuntId)";
pub const ARTIFACT: &str = "SELECT * FROM artifact_definitions(names=Name)";
pub const USERS: &str = "SELECT * FROM gui_users()";
pub const EVENT_TABLES: &str =
    "SELECT get_server_monitoring() AS Server, get_client_monitoring() AS Client FROM scope()";
/// Log rows of one event artifact written from `Since` to `Until` (epoch
/// seconds, both whole seconds around the wanted window).
pub const MONITORING_LOGS: &str = "SELECT * FROM monitoring_logs(client_id=ClientId, artifact=Artifact, \
                                   start_time=int(int=Since), end_time=int(int=Until))";
/// Audit rows (`Server.Audit.Logs`) written since `Since` (epoch seconds),
/// the oldest first, one more than an answer holds (so that the host
/// knows where it was cut: `audit_page`).
pub const AUDIT_LOG: &str = "SELECT * FROM source(artifact='Server.Audit.Logs', start_time=int(int=Since)) LIMIT 5001";

/// The org's running hunts, newest first, without their large
/// `start_request` (docs/velociraptor.md §2.7). One row more than an
/// answer holds is never needed: the bound is the answer's.
pub const RUNNING_HUNTS: &str = "SELECT hunt_id, hunt_description, creator, state, create_time, start_time, \
                                 expires, artifacts, tags, stats FROM hunts() \
                                 WHERE state = 'RUNNING' AND NOT stats.stopped \
                                 ORDER BY create_time DESC LIMIT 1000";
/// The collections in the clients' hands (`in_flight_flows`: the flow ids
/// a client has been handed and not finished), unfinished, created after
/// `After` and up to `Before` (microseconds), oldest first. A client's
/// index of every flow it ever ran is not read, nor the server's own
/// (docs/velociraptor.md §2.7).
pub const ACTIVE_FLOWS: &str = "SELECT client_id, session_id, state, status, create_time, start_time, \
                                active_time, request.artifacts AS artifacts, request.creator AS creator \
                                FROM foreach(\
                                row={SELECT client_id AS ClientId, in_flight_flows FROM clients() WHERE in_flight_flows}, \
                                query={SELECT * FROM foreach(row={SELECT _key AS FlowId FROM items(item=in_flight_flows)}, \
                                query={SELECT * FROM flows(client_id=ClientId, flow_id=FlowId)})}) \
                                WHERE state =~ '^(RUNNING|WAITING|IN_PROGRESS|UNRESPONSIVE)$' \
                                AND create_time > int(int=After) AND create_time <= int(int=Before) \
                                ORDER BY create_time LIMIT 1000";

/// An in-app message: `User`, and `Message` as a JSON object.
/// `user_message()` sends to any name, existing or not: the message goes
/// only to a user `gui_users()` knows (no row otherwise).
pub const USER_MESSAGE: &str = "SELECT user_message(user=User, message=parse_json(data=Message)) AS Sent \
                                FROM gui_users() WHERE name = User";
/// A label change: `ClientId`, `Labels` as a JSON list, `Op` (set/remove).
pub const LABEL: &str =
    "SELECT label(client_id=ClientId, labels=parse_json_array(data=Labels), op=Op) AS Done FROM scope()";
/// An alert row written into `Server.Internal.Alerts`: `Row` as JSON.
pub const PUSH_ALERT: &str = "SELECT send_event(artifact='Server.Internal.Alerts', client_id='server', \
                              row=parse_json(data=Row)) AS Sent FROM scope()";

/// Every statement above, for peers that check what they are sent.
pub fn catalogue(queues: usize) -> Vec<String> {
    let mut all: Vec<String> = [
        BACKFILL,
        ARTIFACT_TYPES,
        CLIENT_INFO,
        CLIENT_METADATA,
        CLIENTS_SEARCH,
        CLIENTS_ALL,
        FLOW,
        FLOW_RESULTS,
        FLOW_UPLOADS,
        HUNT,
        ARTIFACT,
        USERS,
        EVENT_TABLES,
        MONITORING_LOGS,
        AUDIT_LOG,
        RUNNING_HUNTS,
        ACTIVE_FLOWS,
        USER_MESSAGE,
        LABEL,
        PUSH_ALERT,
    ]
    .map(str::to_string)
    .to_vec();
    all.extend((1..=queues).map(event_stream));
    all.push(backfill_page(5000));
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_stream_names_queues_by_variable() {
        assert_eq!(
            event_stream(2),
            "LET q0 = SELECT * FROM watch_monitoring(artifact=Queue0)\n\
             LET q1 = SELECT * FROM watch_monitoring(artifact=Queue1)\n\
             LET beat = SELECT 'velonotify.heartbeat' AS _Source, Unix AS _ts FROM clock(period=int(int=HeartbeatSeconds))\n\
             SELECT * FROM chain(async=TRUE, q0=q0, q1=q1, beat=beat)"
        );
    }

    #[test]
    fn no_statement_quotes_a_value_it_is_given() {
        // Every value is a variable: the only quoted strings are constants.
        for vql in catalogue(3) {
            for quoted in vql.split('\'').skip(1).step_by(2) {
                assert!(
                    [
                        "Server.Internal.Alerts",
                        "server",
                        "Server.Audit.Logs",
                        "RUNNING",
                        "^(RUNNING|WAITING|IN_PROGRESS|UNRESPONSIVE)$",
                        HEARTBEAT_SOURCE
                    ]
                    .contains(&quoted),
                    "{quoted:?} in {vql}"
                );
            }
        }
    }
}
