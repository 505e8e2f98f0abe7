//! The docs checked against the code: the `Cache-Status` vocabulary in
//! docs/configuration.md lists exactly the words the worker can emit, taken
//! from the code's own enums and from the literal details found in `src/`.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use cachefront::semantics::cache_status::{Forward, NoStoreReason, Tier};
use cachefront::semantics::policy::StaleOnFailure;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Details chosen at run time from a variable, so no literal call names them:
/// the admission's bypass words (`src/pipeline/route.rs`) and the origin
/// errors' codes (`src/error.rs`) that `error_answer` puts in the detail.
/// Each must still appear in its file, so this list cannot drift silently.
const DETAILS_FROM_VARIABLES: &[(&str, &str)] = &[
    ("src/pipeline/route.rs", "rule"),
    ("src/pipeline/route.rs", "bypass-cookie"),
    ("src/error.rs", "origin_unreachable"),
    ("src/error.rs", "origin_timeout"),
];

fn read(relative: &str) -> String {
    fs::read_to_string(Path::new(ROOT).join(relative))
        .unwrap_or_else(|e| panic!("cannot read {relative}: {e}"))
}

/// The `### Cache-Status vocabulary` section of docs/configuration.md.
fn vocabulary_section() -> String {
    let doc = read("docs/configuration.md");
    let start = doc
        .find("### `Cache-Status` vocabulary")
        .expect("docs/configuration.md has a `Cache-Status` vocabulary section");
    let rest = &doc[start + 3..];
    let end = rest.find("\n## ").unwrap_or(rest.len());
    rest[..end].to_owned()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("readable source folder") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// String literals passed as a detail in `src/`: `with_detail("…")` and the
/// reason of `stale_hit(ttl, "…")`.
fn literal_details() -> BTreeSet<String> {
    let mut files = Vec::new();
    rust_files(&Path::new(ROOT).join("src"), &mut files);
    let mut found = BTreeSet::new();
    for file in files {
        let text = fs::read_to_string(&file).expect("readable source");
        for marker in ["with_detail(", "stale_hit("] {
            for (at, _) in text.match_indices(marker) {
                let call = &text[at + marker.len()..];
                let call = &call[..call.find(')').unwrap_or(call.len())];
                if let Some(open) = call.find('"') {
                    let literal = &call[open + 1..];
                    if let Some(close) = literal.find('"') {
                        found.insert(literal[..close].to_owned());
                    }
                }
            }
        }
    }
    found
}

/// Every `detail=` word the code can emit.
fn emitted_details() -> BTreeSet<String> {
    let mut details: BTreeSet<String> = NoStoreReason::ALL
        .iter()
        .map(|r| r.as_str().to_owned())
        .collect();
    // A hit from the Cache API, the default tier, names no tier.
    details.extend(
        Tier::ALL
            .iter()
            .filter(|t| **t != Tier::Edge)
            .map(|t| t.as_str().to_owned()),
    );
    details.extend(StaleOnFailure::ALL.iter().map(|s| s.as_str().to_owned()));
    details.extend(literal_details());
    for (file, word) in DETAILS_FROM_VARIABLES {
        assert!(
            read(file).contains(&format!("\"{word}\"")),
            "{word:?} is no longer in {file}: update DETAILS_FROM_VARIABLES"
        );
        details.insert((*word).to_owned());
    }
    details
}

/// The words written as `<name>=<word>` in `text`.
fn documented(text: &str, name: &str) -> BTreeSet<String> {
    let marker = format!("{name}=");
    text.match_indices(&marker)
        .map(|(at, _)| {
            let rest = &text[at + marker.len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
                .unwrap_or(rest.len());
            rest[..end].to_owned()
        })
        .filter(|word| !word.is_empty())
        .collect()
}

#[test]
fn the_literal_details_are_found_in_the_source() {
    // Guards the scan itself: if it found nothing, the checks below would
    // pass on enums alone.
    let found = literal_details();
    for expected in [
        "purged",
        "config-error",
        "operator",
        "get-with-body",
        "assets",
    ] {
        assert!(
            found.contains(expected),
            "{expected} not found in {found:?}"
        );
    }
}

#[test]
fn every_cache_status_detail_the_code_emits_is_documented() {
    let documented = documented(&vocabulary_section(), "detail");
    let missing: Vec<_> = emitted_details()
        .into_iter()
        .filter(|d| !documented.contains(d))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/configuration.md's `Cache-Status` vocabulary lacks detail={missing:?}"
    );
}

#[test]
fn every_forward_reason_is_documented() {
    let documented = documented(&vocabulary_section(), "fwd");
    let missing: Vec<_> = Forward::ALL
        .iter()
        .map(|f| f.as_str())
        .filter(|f| !documented.contains(*f))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/configuration.md's `Cache-Status` vocabulary lacks fwd={missing:?}"
    );
}

#[test]
fn the_vocabulary_lists_no_value_the_code_never_emits() {
    let section = vocabulary_section();
    let emitted = emitted_details();
    let stale: Vec<_> = documented(&section, "detail")
        .into_iter()
        .filter(|d| !emitted.contains(d))
        .collect();
    assert!(
        stale.is_empty(),
        "documented but never emitted: detail={stale:?}"
    );
    let forwards: BTreeSet<&str> = Forward::ALL.iter().map(|f| f.as_str()).collect();
    let stale: Vec<_> = documented(&section, "fwd")
        .into_iter()
        .filter(|f| !forwards.contains(f.as_str()))
        .collect();
    assert!(
        stale.is_empty(),
        "documented but never emitted: fwd={stale:?}"
    );
}
