//! Who gets an e-mail (docs/velociraptor.md §6.4, §7.5), with decisions D4
//! and D7 (docs/decisions.md).

use crate::params::Row;
use crate::vql::{VqlRegex, render_value};

/// Principals that run collections but read no mail (D4).
const SERVICE_PRINCIPALS: [&str; 2] = ["InterrogationService", "VelociraptorServer"];

/// The `NotifyExecutorDomains` table: user name pattern to mail domain.
#[derive(Debug, Clone, Default)]
pub struct ExecutorDomains {
    rows: Vec<(VqlRegex, String)>,
}

impl ExecutorDomains {
    /// Reads the `UsernameRegex,Domain` table of parameter `param`.
    pub fn from_rows(param: &str, rows: &[Row]) -> Result<Self, crate::params::ParamError> {
        let mut out = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            let cell = |name: &str| row.get(name).map(render_value).unwrap_or_default();
            let regex = VqlRegex::new(&cell("UsernameRegex"))
                .map_err(|e| crate::params::ParamError::new(param, format!("row {}: {e}", i + 1)))?;
            let domain = cell("Domain");
            if domain.is_empty() || !is_address(&format!("user@{domain}")) {
                return Err(crate::params::ParamError::new(
                    param,
                    format!("row {}: {domain:?} is not a mail domain", i + 1),
                ));
            }
            out.push((regex, domain));
        }
        Ok(Self { rows: out })
    }

    /// The address of the user who started a collection: the creator
    /// itself when it already is an address, else `creator@domain` from the
    /// first row whose pattern matches; none for service principals
    /// (D4).
    pub fn creator_address(&self, creator: &str) -> Option<String> {
        if creator.is_empty() || SERVICE_PRINCIPALS.contains(&creator) {
            return None;
        }
        if is_address(creator) {
            return Some(creator.to_string());
        }
        self.rows
            .iter()
            .find(|(regex, _)| regex.is_match(creator))
            .map(|(_, domain)| format!("{creator}@{domain}"))
            .filter(|a| is_address(a))
    }
}

/// The `Address` column of a `Recipients` table, validated.
pub fn fixed_recipients(param: &str, rows: &[Row]) -> Result<Vec<String>, crate::params::ParamError> {
    let mut out = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let address = row.get("Address").map(render_value).unwrap_or_default();
        let address = address.trim();
        if address.is_empty() {
            continue;
        }
        if !is_address(address) {
            return Err(crate::params::ParamError::new(
                param,
                format!("row {}: {address:?} is not an e-mail address", i + 1),
            ));
        }
        out.push(address.to_string());
    }
    Ok(out)
}

/// The artifacts' `Unique`: first occurrence wins; comparison ignores case
/// so that `Ann@corp` and `ann@corp` get one e-mail.
pub fn unique(addresses: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for a in addresses {
        if !out.iter().any(|o| o.eq_ignore_ascii_case(&a)) {
            out.push(a);
        }
    }
    out
}

/// A plain `local@domain` address that can go into a header and an SMTP
/// envelope as it is: no spaces, controls, quotes, brackets or separators
/// that could start another address or header.
pub fn is_address(text: &str) -> bool {
    if text.len() > 254 {
        return false;
    }
    let Some((local, domain)) = text.rsplit_once('@') else {
        return false;
    };
    let plain = |s: &str| {
        !s.is_empty()
            && s.chars().all(|c| {
                !c.is_control()
                    && !c.is_whitespace()
                    && !matches!(
                        c,
                        '<' | '>' | '(' | ')' | '[' | ']' | '\\' | ',' | ';' | ':' | '"' | '@'
                    )
            })
    };
    plain(local) && plain(domain) && !domain.starts_with('.') && !domain.ends_with('.')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::parse_csv_table;

    fn domains(csv: &str) -> ExecutorDomains {
        ExecutorDomains::from_rows("NotifyExecutorDomains", &parse_csv_table(csv).unwrap()).unwrap()
    }

    #[test]
    fn a_creator_that_is_an_address_is_used_as_is() {
        let d = domains("UsernameRegex,Domain\n.+,corp.example\n");
        assert_eq!(
            d.creator_address("ann@other.example").as_deref(),
            Some("ann@other.example")
        );
    }

    #[test]
    fn the_first_matching_row_maps_a_user_name() {
        let d = domains("UsernameRegex,Domain\n^adm-,admins.example\n.+,corp.example\n");
        assert_eq!(d.creator_address("adm-bob").as_deref(), Some("adm-bob@admins.example"));
        assert_eq!(d.creator_address("carol").as_deref(), Some("carol@corp.example"));
    }

    #[test]
    fn service_principals_are_never_recipients() {
        let d = domains("UsernameRegex,Domain\n.*,corp.example\n");
        for p in ["InterrogationService", "VelociraptorServer", ""] {
            assert_eq!(d.creator_address(p), None, "{p:?}");
        }
    }

    #[test]
    fn unmapped_user_names_have_no_address() {
        assert_eq!(domains("UsernameRegex,Domain\n").creator_address("bob"), None);
    }

    #[test]
    fn recipients_are_validated() {
        let rows = parse_csv_table("Address\nsoc@example.org\n\n").unwrap();
        assert_eq!(fixed_recipients("Recipients", &rows).unwrap(), ["soc@example.org"]);
        let bad = parse_csv_table("Address\n\"a@b.example, evil@x.example\"\n").unwrap();
        let err = fixed_recipients("Recipients", &bad).unwrap_err();
        assert_eq!(err.param, "Recipients");
    }

    #[test]
    fn addresses_with_header_tricks_are_refused() {
        for bad in [
            "a b@x.example",
            "a@x.example\r\nBcc: e@v",
            "<a@x.example>",
            "a@",
            "@x",
            "a@.x",
            "\"a\"@x",
        ] {
            assert!(!is_address(bad), "{bad:?}");
        }
        assert!(is_address("first.last+tag@sub.example.org"));
    }

    #[test]
    fn unique_keeps_the_first_spelling() {
        let got = unique([
            "A@x.example".to_string(),
            "b@x.example".to_string(),
            "a@x.example".to_string(),
        ]);
        assert_eq!(got, ["A@x.example", "b@x.example"]);
    }
}
