//! Builds of the versioned test module (guest/testing/versioned), for the
//! hot-swap tests and the benchmarks: its version and mode sit in one marker
//! string, rewritten here in the component's bytes (same length, so the
//! component stays valid). Every build is a real, different component.

use std::path::Path;

/// The marker as the module is built.
const MARKER: &[u8] = b"velonotify-swap-build:v000:ok";

/// The component at `component` (a `versioned.wasm`) with its marker set to
/// `v{version}:{mode}` (`ok`, `cf`: configure fails, `tr`: traps, `fa`: fails,
/// `ev`: even rows only, declared as its interest).
pub fn versioned_build(component: &Path, version: u32, mode: &str) -> Vec<u8> {
    let mut bytes = std::fs::read(component).unwrap_or_else(|e| panic!("{}: {e}", component.display()));
    let at: Vec<usize> = bytes
        .windows(MARKER.len())
        .enumerate()
        .filter(|(_, w)| *w == MARKER)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(at.len(), 1, "the marker appears once in {}", component.display());
    let marker = format!("velonotify-swap-build:v{version:03}:{mode}");
    assert_eq!(marker.len(), MARKER.len());
    bytes[at[0]..at[0] + MARKER.len()].copy_from_slice(marker.as_bytes());
    bytes
}

/// A build as if made against `velociraptor:notify@{version}` (`x.y.z`,
/// one digit each): every versioned name of the package rewritten (same
/// length, so the component stays valid).
pub fn built_for_wit(component: &Path, version: &str) -> Vec<u8> {
    assert!(
        version.len() == 5 && version.split('.').all(|d| d.len() == 1),
        "{version}: one digit per part"
    );
    let mut bytes = versioned_build(component, 1, "ok");
    let package = b"velociraptor:notify";
    let mut renamed = 0;
    let mut i = 0;
    while let Some(found) = bytes[i..].windows(package.len()).position(|w| w == package) {
        let mut at = i + found + package.len();
        // `velociraptor:notify@0.3.x` or `velociraptor:notify/<interface>@0.3.x`
        if bytes[at] == b'/' {
            at += 1;
            while bytes[at].is_ascii_lowercase() || bytes[at] == b'-' {
                at += 1;
            }
        }
        if bytes[at..].starts_with(b"@0.3.") && bytes[at + 5].is_ascii_digit() {
            bytes[at + 1..at + 6].copy_from_slice(version.as_bytes());
            renamed += 1;
        }
        i = at;
    }
    assert!(renamed > 0, "no versioned package names in {}", component.display());
    bytes
}

/// Puts a build in `dir` as `versioned.wasm` the way a deployment should:
/// written beside, then renamed over the old file.
pub fn install_versioned(dir: &Path, bytes: &[u8]) {
    let temporary = dir.join("versioned.wasm.new");
    std::fs::write(&temporary, bytes).unwrap();
    std::fs::rename(&temporary, dir.join("versioned.wasm")).unwrap();
}

/// How long the reloader took to build each new version (load,
/// instantiate, configure), in log order: the part of a swap's latency
/// that is not the pipeline finishing the event in hand.
pub fn swap_build_ms(log: &str) -> Vec<f64> {
    log.lines()
        .filter_map(|l| {
            let (_, after) = l.split_once("built_ms=")?;
            after.split_whitespace().next()?.trim_matches('"').parse().ok()
        })
        .collect()
}

/// The "N ms after the file changed" of each swap in a service's log, in
/// the order of the swaps.
pub fn swap_latencies_ms(log: &str) -> Vec<f64> {
    log.lines()
        .filter_map(|l| {
            let (before, _) = l.split_once(" ms after the file changed")?;
            before.rsplit(' ').next()?.parse().ok()
        })
        .collect()
}
