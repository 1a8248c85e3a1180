//! What a flow-completion e-mail says (docs/velociraptor.md §6.5).

use serde_json::Value;

use super::decision::state_name;
use super::{Completion, FlowCompletionRule, results};
use crate::action::Failure;
use crate::host::{Host, ServerInfo};
use crate::render::{
    FullTable, Html, Links, MailDocument, MailHtml, TableLimits, elide_left, silence_link_line, subject_safe,
    write_text_lines,
};
use crate::velociraptor::{
    ClientDetails, FlowFieldsOptions, client_fields, duration_text, flow_fields, str_at, strings_at, u64_at,
};
use crate::vql::{Timestamp, humanize_bytes, render_value};

/// Room the plain text of an e-mail gets up front (most fit).
const TEXT_BYTES_GUESS: usize = 2048;
/// Hard cap of the uploads table.
pub(crate) const MAX_UPLOADS_ROWS: usize = 100;
/// File names and stored names in the uploads table are cut from the left.
const UPLOAD_NAME_LIMIT: usize = 50;
const UPLOAD_LINK_LIMIT: usize = 30;

/// Everything known about the completed flow.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FlowView<'a> {
    pub completion: &'a Completion,
    /// The `flows()` object.
    pub flow: &'a Value,
    /// The `client_info()` object (empty when unknown).
    pub client: &'a Value,
    pub metadata: Option<&'a Value>,
    pub hunt: Option<&'a Value>,
    pub new_client: bool,
}

impl FlowView<'_> {
    pub fn finished(&self) -> bool {
        state_name(self.flow) == "FINISHED"
    }

    pub fn artifacts(&self) -> Vec<String> {
        strings_at(self.flow, "request.artifacts")
    }
}

/// The rendered e-mail before MIME.
#[derive(Debug, Clone)]
pub(crate) struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    /// The whole HTML, when the body was cut to fit the HTML budget.
    pub full_html: Option<String>,
}

/// The artifacts' `ShortenStringList`: the first `max` items joined by
/// `, `, then ` (+ N more)`.
pub(crate) fn shorten_list(items: &[String], max: usize) -> String {
    let mut out = items.iter().take(max).cloned().collect::<Vec<_>>().join(", ");
    if items.len() > max {
        out.push_str(&format!(" (+ {} more)", items.len() - max));
    }
    out
}

pub(crate) fn render(
    rule: &FlowCompletionRule,
    view: &FlowView<'_>,
    server: &ServerInfo,
    links: &Links,
    now: Timestamp,
    host: &dyn Host,
) -> Result<Rendered, Failure> {
    let finished = view.finished();
    let (verb, title) = if finished {
        ("finished collecting", "Client collection finished")
    } else {
        ("FAILED to collect", "Client collection FAILED")
    };
    let artifacts = view.artifacts();
    let client_id = &view.completion.client_id;
    let fqdn = str_at(view.client, "os_info.fqdn");
    let subject = subject_safe(&format!(
        "{} {verb} {}",
        if fqdn.is_empty() { "Client" } else { fqdn },
        shorten_list(&artifacts, 1)
    ));
    let summary = format!(
        "Client {client_id} ({fqdn}) has {verb} {}. It took {} and returned {} row(s). {} file(s) were uploaded, totalling {}.",
        artifacts.join(", "),
        // The artifact prints VQL's NULL for a flow that never ran.
        duration_text(view.flow).unwrap_or_else(|| render_value(&Value::Null)),
        u64_at(view.flow, "total_collected_rows"),
        u64_at(view.flow, "total_uploaded_files"),
        humanize_bytes(u64_at(view.flow, "total_uploaded_bytes")),
    );

    let details = ClientDetails {
        client_id,
        info: view.client,
        metadata: view.metadata,
        new_client: view.new_client,
    };
    let client = client_fields(&details, &rule.client_metadata, server, links, rule.keep_empty);
    let options = FlowFieldsOptions {
        finished: Some(view.completion.finished),
        keep_empty: rule.keep_empty,
        now,
    };
    let flow = flow_fields(
        client_id,
        &view.completion.flow_id,
        view.flow,
        view.hunt,
        links,
        options,
    );

    // The text shows one table: the client's rows, then the flow's, a
    // row of the flow replacing the client's row of the same name.
    let mut text = String::with_capacity(TEXT_BYTES_GUESS);
    text.push_str(title);
    text.push_str("\n\n");
    text.push_str(&summary);
    text.push_str("\n\n");
    write_text_lines(client.overlaid(&flow), &mut text);
    text.push('\n');
    let silence_link = host.silence_similar();
    if let Some(url) = &silence_link {
        text.push('\n');
        text.push_str(&silence_link_line(url));
        text.push('\n');
    }

    let html = if rule.html {
        let mut document = MailDocument::begin(title, &Html::text(&summary), !finished, 3 * text.len());
        document.section("Client details", |out| client.write_html(out));
        document.section("Flow details", |out| flow.write_html(out));
        if rule.uploads_rows > 0 && u64_at(view.flow, "total_uploaded_files") > 0 {
            let uploads = host.flow_uploads(client_id, &view.completion.flow_id)?;
            document.section("Uploads", |out| {
                write_uploads_table(&uploads, rule.uploads_rows, links, out)
            });
        }
        results::write_tables(rule, view, host, &mut document)?;
        Some(document.finish(
            &format!(
                "Sent from Velociraptor by velonotify ({})",
                <FlowCompletionRule as super::Rule>::NAME
            ),
            silence_link.as_deref(),
        ))
    } else {
        None
    };
    let (html, full_html) = match html {
        Some(MailHtml { html, full }) => (Some(html), full),
        None => (None, None),
    };
    Ok(Rendered {
        subject,
        text,
        html,
        full_html,
    })
}

/// The `Uploads` section: file name, size and a download link per file.
fn write_uploads_table(uploads: &[Value], max_rows: usize, links: &Links, out: &mut Html) {
    let headers = ["File name", "Size", "URL"].iter().map(|h| Html::text(h)).collect();
    let mut table = FullTable::new(headers, uploads.len());
    for upload in uploads.iter().take(max_rows) {
        let path = first_text(upload, &["client_path", "Upload.Path"]);
        let size = u64_at(upload, "uploaded_size").max(u64_at(upload, "Upload.StoredSize"));
        let components = match strings_at(upload, "_Components") {
            c if !c.is_empty() => c,
            _ => strings_at(upload, "Upload.Components"),
        };
        let vfs_path = str_at(upload, "vfs_path");
        let stored_name = components.last().map_or(path, String::as_str);
        let link_text = elide_left(stored_name, UPLOAD_LINK_LIMIT);
        table.push_cell(|cell| cell.push_text(&elide_left(path, UPLOAD_NAME_LIMIT)));
        table.push_cell(|cell| cell.push_text(&humanize_bytes(size)));
        table.push_cell(|cell| match links.upload(&components, vfs_path) {
            Some(url) => cell.push_link(&url, &link_text),
            None => cell.push_text(&link_text),
        });
        table.end_row();
    }
    let limits = TableLimits {
        max_rows: Some(max_rows),
        max_cols: 3,
    };
    table.write_html(limits, out);
}

fn first_text<'a>(value: &'a Value, paths: &[&str]) -> &'a str {
    paths
        .iter()
        .map(|p| str_at(value, p))
        .find(|s| !s.is_empty())
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortened_lists_count_the_rest() {
        let items: Vec<String> = ["Windows.KapeFiles.Targets", "Windows.Sys.Users", "Generic.Client.Info"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(shorten_list(&items, 1), "Windows.KapeFiles.Targets (+ 2 more)");
        assert_eq!(shorten_list(&items[..1], 1), "Windows.KapeFiles.Targets");
        assert_eq!(shorten_list(&[], 1), "");
    }
}
