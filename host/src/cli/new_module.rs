//! `velonotify new`: a rule module project that builds as it is, in Rust,
//! Python or JavaScript, with the WIT world, the language's SDK, a build
//! script, self-test rows and the actions they should give. The files are
//! the repository's own (`wit/`, `guest/templates/`, the SDKs), built into
//! the binary, so a project made anywhere matches this velonotify.

use std::path::Path;

use anyhow::{Context as _, bail};

/// The language of a new module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Language {
    Rust,
    Python,
    Js,
}

/// A file of a project: where it goes, and its text (with placeholders).
type Template = (&'static str, &'static str);

const WIT: &[Template] = &[
    ("wit/world.wit", include_str!("../../../wit/world.wit")),
    ("wit/types.wit", include_str!("../../../wit/types.wit")),
    ("wit/actions.wit", include_str!("../../../wit/actions.wit")),
    ("wit/clock.wit", include_str!("../../../wit/clock.wit")),
    ("wit/links.wit", include_str!("../../../wit/links.wit")),
    ("wit/log.wit", include_str!("../../../wit/log.wit")),
    ("wit/lookups.wit", include_str!("../../../wit/lookups.wit")),
    ("wit/state.wit", include_str!("../../../wit/state.wit")),
];

const COMMON: &[Template] = &[
    ("README.md", include_str!("../../../guest/templates/common/README.md")),
    (
        "__STEM__.selftest.jsonl",
        include_str!("../../../guest/templates/common/selftest.jsonl"),
    ),
    (
        "expected.jsonl",
        include_str!("../../../guest/templates/common/expected.jsonl"),
    ),
];

const PYTHON: &[Template] = &[
    ("app.py", include_str!("../../../guest/templates/python/app.py")),
    ("build.sh", include_str!("../../../guest/templates/python/build.sh")),
    (
        "velonotify/__init__.py",
        include_str!("../../../guest/python/velonotify/__init__.py"),
    ),
];

const JS: &[Template] = &[
    ("app.js", include_str!("../../../guest/templates/js/app.js")),
    ("build.sh", include_str!("../../../guest/templates/js/build.sh")),
    ("velonotify.js", include_str!("../../../guest/js/velonotify.js")),
    ("build.mjs", include_str!("../../../guest/js/build.mjs")),
    ("package.json", include_str!("../../../guest/js/package.json")),
    ("package-lock.json", include_str!("../../../guest/js/package-lock.json")),
];

const RUST: &[Template] = &[
    ("Cargo.toml", include_str!("../../../guest/templates/rust/Cargo.toml")),
    ("src/lib.rs", include_str!("../../../guest/templates/rust/src/lib.rs")),
    ("build.sh", include_str!("../../../guest/templates/rust/build.sh")),
];

/// Writes a new module project named `name` into `dir` (which must be
/// missing or empty). Returns the stem of its files (`<stem>.wasm`).
pub fn create(language: Language, name: &str, dir: &Path) -> anyhow::Result<String> {
    check_name(name)?;
    if dir.exists()
        && dir
            .read_dir()
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_some()
    {
        bail!(
            "{} is not empty: velonotify new writes into a new or empty directory",
            dir.display()
        );
    }
    let stem = stem(name);
    let (own, label) = match language {
        Language::Rust => (RUST, "Rust"),
        Language::Python => (PYTHON, "Python"),
        Language::Js => (JS, "JavaScript"),
    };
    for (path, text) in WIT.iter().chain(COMMON).chain(own) {
        let path = dir.join(path.replace("__STEM__", &stem));
        let text = text
            .replace("__MODULE_NAME__", name)
            .replace("__STEM__", &stem)
            .replace("__LANG__", label);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        if path.extension().is_some_and(|e| e == "sh") {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    Ok(stem)
}

/// A module name as the artifacts name theirs: letters, digits, `.`, `_`
/// and `-` (it goes into source files and file names).
fn check_name(name: &str) -> anyhow::Result<()> {
    let fits = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty() || name.len() > 100 || !name.chars().all(fits) {
        bail!(
            "{name:?} is not a module name: use letters, digits, '.', '_' and '-' (e.g. Custom.Detection.Honeyfiles)"
        );
    }
    Ok(())
}

/// The file stem of a module: `Custom.Detection.Honeyfiles` gives
/// `custom_detection_honeyfiles` (also a Rust crate name).
fn stem(name: &str) -> String {
    let stem: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let stem = stem.trim_matches('_').to_string();
    if stem.starts_with(|c: char| c.is_ascii_digit()) || stem.is_empty() {
        format!("rule_{stem}")
    } else {
        stem
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_stems_and_bad_names_are_refused() {
        assert_eq!(stem("Custom.Detection.Honeyfiles"), "custom_detection_honeyfiles");
        assert_eq!(stem("9lives"), "rule_9lives");
        assert!(
            check_name("a\"; rm -rf /")
                .unwrap_err()
                .to_string()
                .contains("is not a module name")
        );
        assert!(check_name("").is_err());
    }

    #[test]
    fn a_project_is_written_with_its_names_in_place_and_never_over_files() {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("rule");
        let stem = create(Language::Python, "Custom.Files", &project).unwrap();
        assert_eq!(stem, "custom_files");
        let app = std::fs::read_to_string(project.join("app.py")).unwrap();
        assert!(app.contains("name = \"Custom.Files\"") && !app.contains("__"), "{app}");
        assert!(project.join("custom_files.selftest.jsonl").exists());
        assert!(project.join("wit/world.wit").exists());
        let again = create(Language::Js, "Custom.Files", &project).unwrap_err();
        assert!(again.to_string().contains("is not empty"), "{again}");
    }
}
