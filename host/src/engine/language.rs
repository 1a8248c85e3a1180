//! Which language a component was written in, for the operator console
//! and `velonotify_module_info`. Read from the component itself: a
//! JavaScript build names itself in a `producers` section (ComponentizeJS
//! writes `language: JavaScript`), a Python build links componentize-py's
//! runtime library (its core modules import and export names
//! `libcomponentize_py_runtime.so:...`), and a Rust build says `Rust` in
//! its producers. Nothing here is trusted for anything but display.

use wasmparser::{KnownCustom, Parser, Payload};

/// A component's source language, as far as its bytes tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    Rust,
    Python,
    JavaScript,
    Unknown,
}

impl Language {
    pub fn as_str(self) -> &'static str {
        match self {
            Language::Rust => "Rust",
            Language::Python => "Python",
            Language::JavaScript => "JavaScript",
            Language::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for Language {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The runtime library componentize-py links into every component.
const PYTHON_RUNTIME: &str = "libcomponentize_py_runtime.so:";

/// The language of `component`. An interpreter's build counts before the
/// languages its runtime was written in (a JavaScript component's engine
/// is C++ and Rust, a Python one's C).
pub fn language_of(component: &[u8]) -> Language {
    let mut languages = Vec::new();
    let mut python = false;
    for payload in Parser::new(0).parse_all(component) {
        let Ok(payload) = payload else { break };
        match payload {
            Payload::CustomSection(section) => {
                if let KnownCustom::Producers(producers) = section.as_known() {
                    for field in producers.into_iter().flatten() {
                        if field.name == "language" {
                            languages.extend(field.values.into_iter().flatten().map(|v| v.name.to_string()));
                        }
                    }
                }
            }
            Payload::ExportSection(exports) => {
                python |= exports
                    .into_iter()
                    .flatten()
                    .any(|e| e.name.starts_with(PYTHON_RUNTIME));
            }
            Payload::ImportSection(imports) => {
                python |= imports
                    .into_imports()
                    .flatten()
                    .any(|i| i.name.starts_with(PYTHON_RUNTIME) || i.module.starts_with(PYTHON_RUNTIME));
            }
            _ => {}
        }
    }
    if languages.iter().any(|l| l == "JavaScript") {
        Language::JavaScript
    } else if python {
        Language::Python
    } else if languages.iter().any(|l| l == "Rust") {
        Language::Rust
    } else {
        Language::Unknown
    }
}
