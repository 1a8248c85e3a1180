//! Core types to WIT types.

use velonotify_core::action::{Action, Failure, LabelOp};
use velonotify_core::params::{ParamKind, ParamSpec};
use velonotify_core::rules::interest::{Interest, ValueTest};

use crate::bindings::velociraptor::notify::actions;
use crate::bindings::velociraptor::notify::types as wit;

pub(crate) fn param(spec: &ParamSpec) -> wit::Param {
    wit::Param {
        name: spec.name.to_string(),
        kind: match spec.kind {
            ParamKind::Bool => wit::ParamKind::Bool,
            ParamKind::Int => wit::ParamKind::Int,
            ParamKind::String => wit::ParamKind::String,
            ParamKind::Regex => wit::ParamKind::Regex,
            ParamKind::Csv => wit::ParamKind::Csv,
            ParamKind::JsonArray => wit::ParamKind::JsonArray,
            ParamKind::Choices => wit::ParamKind::Choices,
            ParamKind::Multichoice => wit::ParamKind::Multichoice,
        },
        default: spec.default.to_string(),
        description: spec.description.to_string(),
        choices: spec.choices.iter().map(|c| c.to_string()).collect(),
    }
}

pub(crate) fn failure(failure: Failure) -> wit::Failure {
    match failure {
        Failure::BadConfig(e) => wit::Failure::BadConfig(wit::ParamError {
            param: e.param,
            message: e.message,
        }),
        Failure::BadEvent(m) => wit::Failure::BadEvent(m),
        Failure::Lookup(m) => wit::Failure::Lookup(m),
        Failure::Internal(m) => wit::Failure::Internal(m),
    }
}

pub(crate) fn action(action: Action) -> actions::Action {
    match action {
        Action::Email(e) => actions::Action::Email(actions::Email {
            secret: e.secret,
            sender: e.sender,
            recipients: e.recipients,
            subject: e.subject,
            message: e.message,
            send_interval_seconds: e.send_interval_seconds,
            link: e.link,
        }),
        Action::Webhook(w) => actions::Action::Webhook(actions::Webhook {
            url: w.url,
            headers: w.headers,
            body: w.body,
        }),
        Action::UserMessage(m) => actions::Action::UserMessage(actions::UserMessage {
            user: m.user,
            message: m.message,
        }),
        Action::Label(l) => actions::Action::Label(actions::LabelChange {
            client_id: l.client_id,
            op: match l.op {
                LabelOp::Set => actions::LabelOp::Set,
                LabelOp::Remove => actions::LabelOp::Remove,
            },
            labels: l.labels,
        }),
        Action::Alert(a) => actions::Action::Alert(actions::Alert {
            name: a.name,
            dedup_seconds: a.dedup_seconds,
            event_data: a.event_data,
            client_id: a.client_id,
            artifact: a.artifact,
            artifact_type: a.artifact_type,
            flow_id: a.flow_id,
        }),
    }
}

pub(crate) fn interest(interest: Interest) -> wit::Interest {
    wit::Interest {
        queue: interest.queue,
        columns: interest
            .columns
            .into_iter()
            .map(|c| wit::ColumnTest {
                column: c.column,
                test: match c.test {
                    ValueTest::Matches(p) => wit::ValueTest::Matches(p),
                    ValueTest::NotMatches(p) => wit::ValueTest::NotMatches(p),
                    ValueTest::OneOf(values) => wit::ValueTest::OneOf(values),
                },
            })
            .collect(),
    }
}
