//! A client of Velociraptor's gRPC API: mutual TLS with the api_client
//! certificate, and `Query` calls, finite (lookups, actions) or endless
//! (event streams).

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::api_config::ApiClientConfig;
use super::proto::api_client::ApiClient as GrpcClient;
use super::proto::{VfsFileBuffer, VqlCollectorArgs, VqlEnv, VqlRequest, VqlResponse};

/// Why a call to the API failed. `Unavailable` is worth retrying; the
/// others are not until something changes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The server cannot be reached, went away, or took too long.
    #[error("Velociraptor API at {address} unavailable: {message}")]
    Unavailable { address: String, message: String },
    /// A certificate was refused, by the server or by us.
    #[error("Velociraptor API at {address}: {message}")]
    Tls { address: String, message: String },
    /// The API user may not do this.
    #[error("Velociraptor API at {address} refused: {message}")]
    Denied { address: String, message: String },
    /// The query ran and failed (the problems its log reports).
    #[error("Velociraptor query failed: {0}")]
    Query(String),
}

impl ApiError {
    pub fn is_transient(&self) -> bool {
        matches!(self, ApiError::Unavailable { .. })
    }
}

/// The rows of each statement of a finite query, and its log lines.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryOutput {
    /// Rows by statement (`query_id`), in order.
    pub statements: Vec<Vec<Value>>,
    pub logs: Vec<String>,
    /// Rows that could not be read, each with why: left out, never the
    /// rows beside them.
    pub unreadable: Vec<String>,
}

impl QueryOutput {
    /// The rows of the first statement.
    pub fn rows(&self) -> &[Value] {
        self.statements.first().map(Vec::as_slice).unwrap_or_default()
    }

    /// What the query's log says went wrong: its ERROR lines, and the
    /// plain lines Velociraptor's plugins write their failures as
    /// (`label: PermissionDenied: ...`, `Artifact X not known`), less the
    /// API's own progress lines.
    pub fn problems(&self) -> Vec<&str> {
        self.logs.iter().filter_map(|line| problem(line)).collect()
    }

    /// Whether the server refused the query for want of a permission.
    pub fn denied(&self) -> bool {
        self.problems().iter().any(|p| is_denial(p))
    }
}

/// A log line's level, split off as Velociraptor splits it: a known level
/// name before the first `:`, or none (DEFAULT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Default,
    Error,
    Warning,
    Info,
    Debug,
    Alert,
}

/// `line`'s level and message.
pub fn split_level(line: &str) -> (LogLevel, &str) {
    if let Some((head, rest)) = line.split_once(':') {
        let level = match head.to_ascii_uppercase().as_str() {
            "DEFAULT" => Some(LogLevel::Default),
            "ERROR" => Some(LogLevel::Error),
            "WARNING" | "WARN" => Some(LogLevel::Warning),
            "INFO" => Some(LogLevel::Info),
            "DEBUG" => Some(LogLevel::Debug),
            "ALERT" => Some(LogLevel::Alert),
            _ => None,
        };
        if let Some(level) = level {
            return (level, rest.trim());
        }
    }
    (LogLevel::Default, line.trim())
}

/// The failure a log line reports, if it reports one: an ERROR line, or a
/// plain line that is not one of the API's progress lines ("Starting query
/// execution.", "Time 0: name: Sending response part ...").
pub fn problem(line: &str) -> Option<&str> {
    match split_level(line) {
        (LogLevel::Error, message) => Some(message),
        (LogLevel::Default, message) if !message.is_empty() && !is_progress(message) => Some(message),
        _ => None,
    }
}

fn is_progress(message: &str) -> bool {
    message.starts_with("Starting query execution")
        || message.starts_with("Time ") && message.contains(": Sending response part ")
        || message.starts_with("Query Stats:")
}

/// Whether a problem is a permission refused (`PermissionDenied: Permission
/// denied: [LABEL_CLIENT]`, as the server's ACL checks word it).
pub fn is_denial(problem: &str) -> bool {
    let lower = problem.to_ascii_lowercase();
    lower.contains("permissiondenied") || lower.contains("permission denied")
}

/// A connection to one Velociraptor server, shared by every org's stream,
/// the lookups and the actions (HTTP/2 multiplexes them). It owns the
/// async runtime its calls run on, so the rest of the host stays plain
/// threads: the `*_blocking` calls may be made from any thread that is not
/// itself running async code.
#[derive(Debug, Clone)]
pub struct ApiClient {
    channel: Channel,
    runtime: Arc<tokio::runtime::Runtime>,
    address: String,
    key_file: String,
}

/// Rows per response batch and the longest a partial batch waits: small
/// enough for prompt alerts, large enough not to ship rows one by one.
const MAX_ROW: u64 = 500;
const MAX_WAIT_S: u64 = 1;
/// A file is read in pieces of 1 MiB (the API's clients keep messages
/// under 4 MiB).
pub const FILE_PIECE_BYTES: u32 = 1 << 20;
/// Responses may carry large result batches.
const MAX_MESSAGE_BYTES: usize = 64 << 20;

impl ApiClient {
    /// Prepares a connection; nothing is dialled until the first call, so
    /// a server that is down at start-up is retried like one that goes
    /// away later.
    pub fn new(config: &ApiClientConfig, server_name: &str) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("velonotify-api")
            .enable_all()
            .build()?;
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&config.ca_certificate))
            .identity(Identity::from_pem(&config.client_cert, &config.client_private_key))
            .domain_name(server_name);
        let address = config.api_connection_string.clone();
        let endpoint = Endpoint::from_shared(format!("https://{address}"))
            .map_err(|e| anyhow::anyhow!("{}: api_connection_string {address:?}: {e}", config.path.display()))?
            .tls_config(tls)
            .map_err(|e| anyhow::anyhow!("{}: certificates: {}", config.path.display(), chain(&e)))?
            .connect_timeout(Duration::from_secs(10))
            // Velociraptor's server answers HTTP/2 pings sent more often than
            // every 5 minutes with GOAWAY; streams use heartbeat rows instead.
            .tcp_keepalive(Some(Duration::from_secs(60)));
        let channel = {
            let _entered = runtime.enter();
            endpoint.connect_lazy()
        };
        Ok(Self {
            channel,
            runtime: Arc::new(runtime),
            address,
            key_file: config.path.display().to_string(),
        })
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// The runtime the client's calls run on.
    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.runtime
    }

    fn request(vql: &str, env: &[(&str, String)], org_id: &str, timeout: Option<Duration>) -> VqlCollectorArgs {
        VqlCollectorArgs {
            query: vec![VqlRequest {
                vql: vql.to_string(),
                name: "velonotify".to_string(),
            }],
            env: env
                .iter()
                .map(|(key, value)| VqlEnv {
                    key: key.to_string(),
                    value: value.clone(),
                })
                .collect(),
            max_row: MAX_ROW,
            max_wait: MAX_WAIT_S,
            timeout: timeout.map_or(0, |t| t.as_secs().max(1)),
            org_id: org_id.to_string(),
        }
    }

    /// Starts an endless query (an event stream).
    pub async fn stream(
        &self,
        vql: &str,
        env: &[(&str, String)],
        org_id: &str,
    ) -> Result<tonic::Streaming<VqlResponse>, ApiError> {
        self.start(Self::request(vql, env, org_id, None)).await
    }

    async fn start(&self, request: VqlCollectorArgs) -> Result<tonic::Streaming<VqlResponse>, ApiError> {
        let mut client = GrpcClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE_BYTES);
        let response = client
            .query(request)
            .await
            .map_err(|status| self.status_error(&status))?;
        Ok(response.into_inner())
    }

    /// Runs a finite query to its end, at most `timeout`.
    pub async fn query(
        &self,
        vql: &str,
        env: &[(&str, String)],
        org_id: &str,
        timeout: Duration,
    ) -> Result<QueryOutput, ApiError> {
        let run = async {
            let mut stream = self.start(Self::request(vql, env, org_id, Some(timeout))).await?;
            let mut output = QueryOutput::default();
            while let Some(response) = stream.message().await.map_err(|s| self.status_error(&s))? {
                absorb(&mut output, response)?;
            }
            Ok(output)
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(result) => result,
            Err(_) => Err(ApiError::Unavailable {
                address: self.address.clone(),
                message: format!("no answer within {} s", timeout.as_secs_f64()),
            }),
        }
    }

    /// [`ApiClient::query`] from a plain thread.
    pub fn query_blocking(
        &self,
        vql: &str,
        env: &[(&str, String)],
        org_id: &str,
        timeout: Duration,
    ) -> Result<QueryOutput, ApiError> {
        self.runtime.block_on(self.query(vql, env, org_id, timeout))
    }

    /// The file of the file store at `components`, read in pieces of
    /// [`FILE_PIECE_BYTES`] within `timeout`, up to `max_bytes` (then the
    /// flag says more was left unread); no bytes for a path the store does
    /// not hold (the API answers it as an empty file).
    pub fn read_file_blocking(
        &self,
        org_id: &str,
        components: &[String],
        max_bytes: u64,
        timeout: Duration,
    ) -> Result<(Vec<u8>, bool), ApiError> {
        let read = async {
            let mut client =
                GrpcClient::new(self.channel.clone()).max_decoding_message_size(FILE_PIECE_BYTES as usize + 4096);
            let mut data = Vec::new();
            loop {
                let request = VfsFileBuffer {
                    client_id: String::new(),
                    offset: data.len() as u64,
                    length: FILE_PIECE_BYTES,
                    data: Vec::new(),
                    components: components.to_vec(),
                    org_id: org_id.to_string(),
                };
                let piece = match client.vfs_get_buffer(request).await {
                    Ok(answer) => answer.into_inner().data,
                    // The server's file store says so for a path it lacks.
                    Err(status) if is_missing_file(&status) => return Ok((Vec::new(), false)),
                    Err(status) => return Err(self.status_error(&status)),
                };
                if piece.is_empty() {
                    return Ok((data, false));
                }
                data.extend_from_slice(&piece);
                if data.len() as u64 > max_bytes {
                    data.truncate(usize::try_from(max_bytes).unwrap_or(usize::MAX));
                    return Ok((data, true));
                }
            }
        };
        self.runtime.block_on(async {
            match tokio::time::timeout(timeout, read).await {
                Ok(result) => result,
                Err(_) => Err(ApiError::Unavailable {
                    address: self.address.clone(),
                    message: format!("the file was not read within {} s", timeout.as_secs_f64()),
                }),
            }
        })
    }

    /// What a failed call means, in words an administrator can act on.
    pub fn status_error(&self, status: &tonic::Status) -> ApiError {
        let address = self.address.clone();
        let detail = chain(status);
        match status.code() {
            tonic::Code::PermissionDenied | tonic::Code::Unauthenticated => ApiError::Denied {
                address,
                message: format!(
                    "{detail} (does the API user have the roles it needs? see README, \"Against a real server\")"
                ),
            },
            _ => match tls_problem(&detail, &self.key_file) {
                Some(message) => ApiError::Tls { address, message },
                None => ApiError::Unavailable {
                    address,
                    message: detail,
                },
            },
        }
    }
}

/// Whether a failed `VFSGetBuffer` says the file does not exist (as
/// opposed to the server failing or refusing).
fn is_missing_file(status: &tonic::Status) -> bool {
    let message = status.message().to_ascii_lowercase();
    status.code() == tonic::Code::NotFound || message.contains("no such file") || message.contains("file not found")
}

/// Adds one response to a finite query's output.
fn absorb(output: &mut QueryOutput, response: VqlResponse) -> Result<(), ApiError> {
    if !response.log.is_empty() {
        output.logs.push(response.log.trim_end().to_string());
    }
    if response.response.is_empty() {
        return Ok(());
    }
    let (rows, unreadable) = read_rows(&response.response)?;
    output.unreadable.extend(unreadable);
    let statement = response.query_id as usize;
    if output.statements.len() <= statement {
        output.statements.resize_with(statement + 1, Vec::new);
    }
    output.statements[statement].extend(rows);
    Ok(())
}

/// The rows of one response (a JSON array), each read on its own: a row
/// that cannot be read (nested deeper than the parser goes, a number out of
/// range) is left out with why, and the others are kept. Only a response
/// that is not an array at all is an error.
pub fn read_rows(response: &str) -> Result<(Vec<Value>, Vec<String>), ApiError> {
    let raw: Vec<&serde_json::value::RawValue> = serde_json::from_str(response)
        .map_err(|e| ApiError::Query(format!("the server sent rows that are not a JSON array: {e}")))?;
    let mut rows = Vec::with_capacity(raw.len());
    let mut unreadable = Vec::new();
    for row in raw {
        match serde_json::from_str(row.get()) {
            Ok(value) => rows.push(value),
            Err(e) => unreadable.push(format!("{e} (a row of {} bytes)", row.get().len())),
        }
    }
    Ok((rows, unreadable))
}

/// Recognises certificate problems in an error's text and says what to do.
fn tls_problem(detail: &str, key_file: &str) -> Option<String> {
    let has = |needle: &str| detail.contains(needle);
    if has("CertificateExpired") || has("certificate expired") {
        Some(format!(
            "the server refused our client certificate: it has expired (client_cert in {key_file}); \
             generate a new api_client config ({detail})"
        ))
    } else if has("UnknownCA") || has("BadCertificate") || has("unknown ca") || has("bad certificate") {
        Some(format!(
            "the server refused our client certificate: is it signed by this server's CA? \
             (client_cert in {key_file}; {detail})"
        ))
    } else if has("invalid peer certificate") || has("UnknownIssuer") || has("NotValidForName") {
        Some(format!(
            "the server's certificate does not check against ca_certificate and the server name \
             (ca_certificate in {key_file}; {detail})"
        ))
    } else if has("InvalidCertificate") || has("certificate") && has("tls") {
        Some(format!("TLS failure ({detail})"))
    } else {
        None
    }
}

/// An error and its causes on one line.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let more = inner.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_gathered_per_statement_and_logs_kept() {
        let mut out = QueryOutput::default();
        let batch = |query_id, rows: &str, log: &str| VqlResponse {
            response: rows.to_string(),
            query_id,
            log: log.to_string(),
            ..Default::default()
        };
        absorb(&mut out, batch(0, "", "DEBUG:Starting query execution.\n")).unwrap();
        absorb(&mut out, batch(0, r#"[{"a":1},{"a":2}]"#, "")).unwrap();
        absorb(&mut out, batch(1, r#"[{"Total":7}]"#, "")).unwrap();
        absorb(&mut out, batch(0, r#"[{"a":3}]"#, "")).unwrap();
        absorb(&mut out, batch(0, "", "ERROR:client_info: permission denied\n")).unwrap();
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        absorb(&mut out, batch(0, &format!(r#"[{{"a":4}},{{"deep":{deep}}}]"#), "")).unwrap();
        assert_eq!(
            out.rows().len(),
            4,
            "the unreadable row is left out, its neighbour kept"
        );
        assert_eq!(out.unreadable.len(), 1);
        assert!(out.unreadable[0].contains("recursion limit"), "{:?}", out.unreadable);
        assert_eq!(out.statements[1][0]["Total"], 7);
        assert_eq!(out.problems(), ["client_info: permission denied"]);
        assert!(absorb(&mut out, batch(0, "{not rows", "")).is_err());
    }

    /// Velociraptor's plugins log their failures without a level; the API
    /// logs its progress the same way.
    #[test]
    fn plain_log_lines_are_problems_unless_they_are_the_apis_progress() {
        let out = QueryOutput {
            logs: [
                "Starting query execution.",
                "Time 0: velonotify: Sending response part 0 1.2 kB (3 rows).",
                "DEBUG:Query Stats: {}",
                "INFO:all fine",
                "label: PermissionDenied: Permission denied: [LABEL_CLIENT]",
                "Artifact Custom.Typo not known",
                "ERROR:send_event: no such queue",
            ]
            .map(String::from)
            .to_vec(),
            ..QueryOutput::default()
        };
        assert_eq!(
            out.problems(),
            [
                "label: PermissionDenied: Permission denied: [LABEL_CLIENT]",
                "Artifact Custom.Typo not known",
                "send_event: no such queue"
            ]
        );
        assert!(out.denied());
        assert!(!QueryOutput::default().denied());
        assert_eq!(split_level("Time 0: x"), (LogLevel::Default, "Time 0: x"));
    }

    #[test]
    fn certificate_problems_are_told_apart() {
        let expired = tls_problem("transport error: received fatal alert: CertificateExpired", "api.yaml").unwrap();
        assert!(expired.starts_with("the server refused our client certificate: it has expired"));
        let foreign = tls_problem("received fatal alert: UnknownCA", "api.yaml").unwrap();
        assert!(foreign.contains("signed by this server's CA"));
        let server = tls_problem("invalid peer certificate: UnknownIssuer", "api.yaml").unwrap();
        assert!(server.starts_with("the server's certificate does not check"));
        assert_eq!(tls_problem("Connection refused (os error 111)", "api.yaml"), None);
    }
}
