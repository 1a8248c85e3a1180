//! Which versions of the `velociraptor:notify` WIT package this host runs.
//!
//! A component names the package version it was built against in every
//! import and export (`velociraptor:notify/lookups@0.3.0`). Versions follow
//! semver: a module built against a compatible version loads, any other is
//! refused with both versions named, before the linker's own (vaguer)
//! error about a missing export.

/// The package the host implements (`wit/*.wit`).
pub const PACKAGE: &str = "velociraptor:notify";

/// The version of [`PACKAGE`] in `wit/` (pinned by a test below).
pub const HOST_VERSION: Version = Version {
    major: 0,
    minor: 3,
    patch: 3,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl Version {
    fn parse(text: &str) -> Option<Self> {
        // Pre-release and build suffixes do not change compatibility.
        let core = text.split(['-', '+']).next()?;
        let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
        let version = Self {
            major: parts.next()??,
            minor: parts.next()??,
            patch: parts.next()??,
        };
        parts.next().is_none().then_some(version)
    }

    /// Semver compatibility as Cargo reads it: the same major version, and
    /// while the major is 0 the same minor.
    pub fn compatible_with(self, host: Version) -> bool {
        if host.major == 0 {
            self.major == 0 && self.minor == host.minor
        } else {
            self.major == host.major
        }
    }

    /// What a compatible version looks like, for messages.
    fn range(self) -> String {
        if self.major == 0 {
            format!("0.{}.x", self.minor)
        } else {
            format!("{}.x", self.major)
        }
    }
}

/// Checks every `velociraptor:notify` item a component imports or exports.
/// Names of other packages (WASI) are the linker's business.
pub fn check<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<(), String> {
    let prefix = format!("{PACKAGE}/");
    let mut seen = false;
    for name in names {
        let Some(item) = name.strip_prefix(&prefix) else {
            continue;
        };
        seen = true;
        let Some((_, version)) = item.split_once('@') else {
            return Err(format!(
                "it uses {name} without a package version; this host speaks {PACKAGE}@{}",
                HOST_VERSION.range()
            ));
        };
        match Version::parse(version) {
            Some(v) if v.compatible_with(HOST_VERSION) => {}
            Some(v) => {
                return Err(format!(
                    "it was built for {PACKAGE}@{v} ({name}); this host speaks {PACKAGE}@{}: \
                     rebuild the module against this host's wit/ or upgrade velonotify",
                    HOST_VERSION.range()
                ));
            }
            None => return Err(format!("{name} has an unreadable version")),
        }
    }
    if seen {
        Ok(())
    } else {
        Err(format!("it neither imports nor exports anything of {PACKAGE}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_version_is_the_version_of_the_wit_files() {
        let wit = concat!(env!("CARGO_MANIFEST_DIR"), "/../wit");
        for entry in std::fs::read_dir(wit).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            assert!(
                text.contains(&format!("package {PACKAGE}@{HOST_VERSION};")),
                "a wit file declares another package version than {HOST_VERSION}"
            );
        }
    }

    #[test]
    fn patch_releases_are_compatible_and_other_minors_of_zero_are_not() {
        let ok = ["velociraptor:notify/types@0.3.0", "velociraptor:notify/lookups@0.3.7"];
        assert_eq!(check(ok), Ok(()));
        // 0.1 modules imported one `host` interface: they are refused by name.
        let err = check(["wasi:cli/environment@0.2.6", "velociraptor:notify/host@0.1.0"]).unwrap_err();
        assert!(err.contains("built for velociraptor:notify@0.1.0"), "{err}");
        // 0.2 modules return a `setup` without interests.
        let err = check(["velociraptor:notify/types@0.2.0"]).unwrap_err();
        assert!(err.contains("built for velociraptor:notify@0.2.0"), "{err}");
        assert!(err.contains("speaks velociraptor:notify@0.3.x"), "{err}");
    }

    #[test]
    fn another_major_version_is_refused_and_named() {
        let err = check(["velociraptor:notify/rule@2.0.0"]).unwrap_err();
        assert!(err.contains("built for velociraptor:notify@2.0.0"), "{err}");
    }

    #[test]
    fn a_component_without_the_package_is_refused() {
        let err = check(["wasi:cli/run@0.2.0"]).unwrap_err();
        assert!(err.contains("neither imports nor exports"), "{err}");
    }

    #[test]
    fn compatibility_follows_semver_above_one() {
        let host = Version::parse("1.2.0").unwrap();
        assert!(Version::parse("1.9.3").unwrap().compatible_with(host));
        assert!(!Version::parse("2.0.0").unwrap().compatible_with(host));
        assert!(Version::parse("0.3.0-rc.1").unwrap().compatible_with(HOST_VERSION));
        assert_eq!(Version::parse("0.1"), None);
    }
}
