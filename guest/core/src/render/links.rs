//! The GUI addresses `link_to()` makes (docs/velociraptor.md §1.13).

/// Builds links into the Velociraptor GUI for one org.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Links {
    /// The public URL without query and fragment; None when not configured.
    base: Option<String>,
    org_id: String,
}

impl Links {
    /// `public_url` is the server's `GUI.public_url`, e.g.
    /// `https://velociraptor.example.org:8889/app/index.html`.
    pub fn new(public_url: Option<&str>, org_id: &str) -> Self {
        let base = public_url
            .map(|u| u.split(['?', '#']).next().unwrap_or(u).to_string())
            .filter(|u| !u.is_empty());
        let org_id = if org_id.is_empty() { "root" } else { org_id };
        Self {
            base,
            org_id: org_id.to_string(),
        }
    }

    /// `…?org_id=X#/host/<client_id>`
    pub fn client(&self, client_id: &str) -> Option<String> {
        self.app(&["host", client_id])
    }

    /// `…?org_id=X#/collected/<client_id>/<flow_id>/<tab>`
    pub fn collection(&self, client_id: &str, flow_id: &str, tab: &str) -> Option<String> {
        self.app(&["collected", client_id, flow_id, tab])
    }

    /// `…?org_id=X#/hunts/<hunt_id>/overview`
    pub fn hunt(&self, hunt_id: &str) -> Option<String> {
        self.app(&["hunts", hunt_id, "overview"])
    }

    /// `…?org_id=X#/hunts`: the hunt list.
    pub fn hunt_list(&self) -> Option<String> {
        self.app(&["hunts"])
    }

    /// `…?org_id=X#/artifacts/<name>`
    pub fn artifact(&self, name: &str) -> Option<String> {
        self.app(&["artifacts", name])
    }

    /// `…?org_id=X#/users/<name>`
    pub fn user(&self, name: &str) -> Option<String> {
        self.app(&["users", name])
    }

    /// `…?org_id=X#/events/server/<artifact>`: a server event artifact's
    /// rows (the audit log is `Server.Audit.Logs`).
    pub fn server_events(&self, artifact: &str) -> Option<String> {
        self.app(&["events", "server", artifact])
    }

    /// `https://host[:port]/api/v1/DownloadVFSFile?fs_components=…&org_id=X&vfs_path=…`
    pub fn upload(&self, components: &[String], vfs_path: &str) -> Option<String> {
        let base = self.base.as_deref()?;
        let (scheme, rest) = base.split_once("://")?;
        let host = rest.split('/').next().unwrap_or(rest);
        let mut query: Vec<String> = components
            .iter()
            .map(|c| format!("fs_components={}", query_escape(c)))
            .collect();
        query.push(format!("org_id={}", query_escape(&self.org_id)));
        query.push(format!("vfs_path={}", query_escape(vfs_path)));
        Some(format!("{scheme}://{host}/api/v1/DownloadVFSFile?{}", query.join("&")))
    }

    fn app(&self, fragment: &[&str]) -> Option<String> {
        let base = self.base.as_deref()?;
        let parts: Vec<String> = fragment.iter().map(|p| query_escape(p).replace('+', "%20")).collect();
        Some(format!(
            "{base}?org_id={}#/{}",
            query_escape(&self.org_id),
            parts.join("/")
        ))
    }
}

/// Go's `url.QueryEscape`: unreserved characters stay, space becomes `+`,
/// everything else is percent-encoded.
fn query_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links() -> Links {
        Links::new(Some("https://127.0.0.1:8889/app/index.html?x=1#/old"), "O123")
    }

    #[test]
    fn artifact_link_matches_the_one_seen_in_a_real_email() {
        assert_eq!(
            links().artifact("TEST.ErrorMessage").unwrap(),
            "https://127.0.0.1:8889/app/index.html?org_id=O123#/artifacts/TEST.ErrorMessage"
        );
    }

    #[test]
    fn fragment_parts_are_escaped_with_percent_20_for_spaces() {
        assert_eq!(
            links().collection("C.1", "F.2", "logs").unwrap(),
            "https://127.0.0.1:8889/app/index.html?org_id=O123#/collected/C.1/F.2/logs"
        );
        assert_eq!(
            links().artifact("My Art/x").unwrap(),
            "https://127.0.0.1:8889/app/index.html?org_id=O123#/artifacts/My%20Art%2Fx"
        );
        assert!(links().hunt("H.1").unwrap().ends_with("#/hunts/H.1/overview"));
        assert!(links().client("C.1").unwrap().ends_with("#/host/C.1"));
    }

    #[test]
    fn upload_links_use_the_host_and_sorted_query() {
        assert_eq!(
            links()
                .upload(&["clients".into(), "C.1".into(), "a b".into()], "/x y")
                .unwrap(),
            "https://127.0.0.1:8889/api/v1/DownloadVFSFile?fs_components=clients&fs_components=C.1&fs_components=a+b&org_id=O123&vfs_path=%2Fx+y"
        );
    }

    #[test]
    fn no_public_url_means_no_links() {
        let l = Links::new(None, "");
        assert_eq!(l.client("C.1"), None);
        assert_eq!(l.upload(&[], "x"), None);
    }
}
