//! Lookups limited to the ones a module's configuration allows
//! (`lookups = ["client_info", "users"]`): on a shared server, a module
//! should read no more of Velociraptor than its job needs.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::Value;

use super::{LookupAnswer, LookupError, Lookups, OrgInfo, ResultPage};

/// Every lookup a module can make, by the name the configuration uses.
pub const LOOKUP_NAMES: [&str; 12] = [
    "client_info",
    "client_metadata",
    "clients",
    "flow",
    "flow_results",
    "flow_uploads",
    "hunt",
    "artifact",
    "event_tables",
    "users",
    "monitoring_logs",
    "audit_log",
];

/// `inner`, answering only the lookups in `allowed`.
pub struct RestrictedLookups {
    inner: Arc<dyn Lookups>,
    allowed: BTreeSet<String>,
}

impl std::fmt::Debug for RestrictedLookups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestrictedLookups")
            .field("allowed", &self.allowed)
            .finish_non_exhaustive()
    }
}

impl RestrictedLookups {
    /// Fails naming the first entry of `allowed` that is not a lookup.
    pub fn new(inner: Arc<dyn Lookups>, allowed: &[String]) -> Result<Self, String> {
        if let Some(unknown) = allowed.iter().find(|a| !LOOKUP_NAMES.contains(&a.as_str())) {
            return Err(format!(
                "unknown lookup {unknown:?} (known: {})",
                LOOKUP_NAMES.join(", ")
            ));
        }
        Ok(Self {
            inner,
            allowed: allowed.iter().cloned().collect(),
        })
    }

    fn check(&self, name: &str) -> Result<(), LookupError> {
        if self.allowed.contains(name) {
            Ok(())
        } else {
            Err(LookupError::Denied(format!(
                "lookup {name} is not in the module's `lookups`"
            )))
        }
    }
}

impl Lookups for RestrictedLookups {
    fn org_info(&self, org_id: &str) -> OrgInfo {
        self.inner.org_info(org_id)
    }

    fn client_info(&self, org_id: &str, client_id: &str) -> LookupAnswer<Option<Value>> {
        self.check("client_info")?;
        self.inner.client_info(org_id, client_id)
    }

    fn client_metadata(&self, org_id: &str, client_id: &str) -> LookupAnswer<Option<Value>> {
        self.check("client_metadata")?;
        self.inner.client_metadata(org_id, client_id)
    }

    fn clients(&self, org_id: &str, label: Option<&str>) -> LookupAnswer<Vec<Value>> {
        self.check("clients")?;
        self.inner.clients(org_id, label)
    }

    fn flow(&self, org_id: &str, client_id: &str, flow_id: &str) -> LookupAnswer<Option<Value>> {
        self.check("flow")?;
        self.inner.flow(org_id, client_id, flow_id)
    }

    fn flow_results(
        &self,
        org_id: &str,
        client_id: &str,
        flow_id: &str,
        source: &str,
        max_rows: Option<u32>,
        max_bytes: Option<u64>,
    ) -> LookupAnswer<ResultPage> {
        self.check("flow_results")?;
        self.inner
            .flow_results(org_id, client_id, flow_id, source, max_rows, max_bytes)
    }

    fn flow_uploads(&self, org_id: &str, client_id: &str, flow_id: &str) -> LookupAnswer<Vec<Value>> {
        self.check("flow_uploads")?;
        self.inner.flow_uploads(org_id, client_id, flow_id)
    }

    fn hunt(&self, org_id: &str, hunt_id: &str) -> LookupAnswer<Option<Value>> {
        self.check("hunt")?;
        self.inner.hunt(org_id, hunt_id)
    }

    fn artifact(&self, org_id: &str, name: &str) -> LookupAnswer<Option<Value>> {
        self.check("artifact")?;
        self.inner.artifact(org_id, name)
    }

    fn event_tables(&self, org_id: &str) -> LookupAnswer<Value> {
        self.check("event_tables")?;
        self.inner.event_tables(org_id)
    }

    fn users(&self, org_id: &str) -> LookupAnswer<Vec<Value>> {
        self.check("users")?;
        self.inner.users(org_id)
    }

    fn monitoring_logs(
        &self,
        org_id: &str,
        client_id: &str,
        artifact: &str,
        since_ms: u64,
        until_ms: u64,
    ) -> LookupAnswer<Vec<Value>> {
        self.check("monitoring_logs")?;
        self.inner
            .monitoring_logs(org_id, client_id, artifact, since_ms, until_ms)
    }

    fn audit_log(&self, org_id: &str, since_us: u64) -> LookupAnswer<Vec<Value>> {
        self.check("audit_log")?;
        self.inner.audit_log(org_id, since_us)
    }

    fn apply_label_change(&self, org_id: &str, client_id: &str, add: bool, labels: &[String]) {
        self.inner.apply_label_change(org_id, client_id, add, labels);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lookups::World;

    #[test]
    fn only_the_allowed_lookups_are_answered() {
        let world: Arc<dyn Lookups> = Arc::new(World::parse(r#"{"users": [{"name": "ann"}]}"#).unwrap());
        let restricted = RestrictedLookups::new(world, &["users".into()]).unwrap();
        assert_eq!(restricted.users("root").unwrap().len(), 1);
        assert_eq!(
            restricted.client_info("root", "C.1"),
            Err(LookupError::Denied(
                "lookup client_info is not in the module's `lookups`".into()
            ))
        );
    }

    #[test]
    fn an_unknown_lookup_name_is_refused() {
        let world: Arc<dyn Lookups> = Arc::new(World::empty());
        let err = RestrictedLookups::new(world, &["clients_info".into()]).unwrap_err();
        assert!(err.starts_with("unknown lookup \"clients_info\""), "{err}");
    }
}
