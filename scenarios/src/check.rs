//! Where cases and their committed transcripts live, and the verdicts the tests and the CLI
//! share: expectations met, both stacks alike, the transcript as committed — each failure with
//! a readable diff.

use crate::case::Case;
use crate::parse::{self, ParseError};
use crate::run::Run;
use similar::TextDiff;
use std::path::{Path, PathBuf};

/// `scenarios/cases`.
pub fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("cases")
}

/// `scenarios/transcripts`: one insta snapshot per case.
pub fn transcripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("transcripts")
}

/// Every case under `dir`, by file name.
pub fn all_cases(dir: &Path) -> Result<Vec<Case>, ParseError> {
    let unreadable =
        |e: std::io::Error| ParseError { file: dir.display().to_string(), line: 0, problem: e.to_string() };
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(unreadable)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "scenario"))
        .collect();
    paths.sort();
    paths.iter().map(|path| parse::read(path)).collect()
}

/// The cases named `names` (all of them when empty).
pub fn select(cases: Vec<Case>, names: &[String]) -> Result<Vec<Case>, String> {
    if names.is_empty() {
        return Ok(cases);
    }
    names
        .iter()
        .map(|name| {
            cases.iter().find(|c| &c.name == name).cloned().ok_or_else(|| {
                let known: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
                format!("no case named {name:?} (cases: {})", known.join(", "))
            })
        })
        .collect()
}

/// Every missed `=>` expectation, or nothing.
pub fn expectations(case: &Case, stack: &str, run: &Run) -> Result<(), String> {
    if run.mismatches.is_empty() {
        return Ok(());
    }
    let missed: Vec<String> = run.mismatches.iter().map(ToString::to_string).collect();
    Err(format!(
        "{} on the {stack} stack: {} expectation(s) missed\n  {}\n\n{}",
        case.name,
        missed.len(),
        missed.join("\n  "),
        run.transcript
    ))
}

/// Both stacks wrote the same transcript, or a diff of the two.
pub fn same_on_both(case: &Case, sim: &str, real: &str) -> Result<(), String> {
    if sim == real {
        return Ok(());
    }
    Err(format!(
        "{}: the stacks wrote different transcripts\n{}\n--- simulator ---\n{sim}\n--- real stack ---\n{real}",
        case.name,
        diff("simulator", sim, "real stack", real)
    ))
}

/// The committed transcript of `case` (the body of its insta snapshot), if any.
pub fn committed(case: &Case) -> Option<String> {
    let text = std::fs::read_to_string(transcripts_dir().join(format!("{}.snap", case.name))).ok()?;
    // An insta snapshot: a `---` header block, then the body.
    let body = text.strip_prefix("---\n")?.split_once("\n---\n")?.1;
    Some(body.to_owned())
}

/// A unified diff of two texts.
pub fn diff(left_name: &str, left: &str, right_name: &str, right: &str) -> String {
    TextDiff::from_lines(left, right).unified_diff().context_radius(2).header(left_name, right_name).to_string()
}
