//! What a rule asks the host to do (the guest-side view of the `action`
//! variant in `wit/types.wit`).

use crate::host::LookupError;
use crate::params::ParamError;

/// An e-mail, built and ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Email {
    pub secret: Option<String>,
    pub sender: String,
    pub recipients: Vec<String>,
    pub subject: String,
    /// The RFC 5322 message.
    pub message: Vec<u8>,
    pub send_interval_seconds: i64,
    pub link: Option<String>,
    /// The bodies that went into `message`, kept for tests and benchmarks
    /// that compare them with what a MIME parser reads back. They do not
    /// cross the component boundary.
    pub text: String,
    pub html: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserMessage {
    pub user: String,
    /// A JSON object.
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelOp {
    Set,
    Remove,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelChange {
    pub client_id: String,
    pub op: LabelOp,
    pub labels: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub name: String,
    pub dedup_seconds: Option<i64>,
    /// A JSON object.
    pub event_data: String,
    pub client_id: Option<String>,
    pub artifact: Option<String>,
    pub artifact_type: Option<String>,
    pub flow_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Email(Email),
    Webhook(Webhook),
    UserMessage(UserMessage),
    Label(LabelChange),
    Alert(Alert),
}

/// Why a rule could not handle a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error("{0}")]
    BadConfig(#[from] ParamError),
    #[error("bad event: {0}")]
    BadEvent(String),
    #[error("lookup failed: {0}")]
    Lookup(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<LookupError> for Failure {
    fn from(e: LookupError) -> Self {
        Failure::Lookup(e.to_string())
    }
}
