//! File path rules: relative POSIX paths with no empty, `.` or `..` segments, no leading `/`, no
//! backslash, no NUL or control characters, at most [`MAX_PATH_BYTES`] bytes.
//!
//! Same rules, order and wording as `fsync.path_problem` in SQL, so that the client can refuse
//! what the server would refuse, and the agent can trust what it writes to disk.

use crate::limits::MAX_PATH_BYTES;
use std::fmt;

/// Why a path is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathProblem {
    Empty,
    TooLong,
    ControlCharacter,
    Backslash,
    Absolute,
    EmptySegment,
    DotSegment,
}

impl fmt::Display for PathProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathProblem::Empty => f.write_str("is empty"),
            PathProblem::TooLong => write!(f, "is longer than {MAX_PATH_BYTES} bytes"),
            PathProblem::ControlCharacter => f.write_str("contains a control character"),
            PathProblem::Backslash => f.write_str("contains a backslash"),
            PathProblem::Absolute => f.write_str("is absolute (starts with /)"),
            PathProblem::EmptySegment => f.write_str("has an empty segment"),
            PathProblem::DotSegment => f.write_str("has a \".\" or \"..\" segment"),
        }
    }
}

impl std::error::Error for PathProblem {}

/// Checks a file path against the rules, in the order SQL checks them.
pub fn check_path(path: &str) -> Result<(), PathProblem> {
    if path.is_empty() {
        return Err(PathProblem::Empty);
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(PathProblem::TooLong);
    }
    // C0 controls (NUL included), DEL and C1 controls: exactly what `char::is_control` covers.
    if path.chars().any(char::is_control) {
        return Err(PathProblem::ControlCharacter);
    }
    if path.contains('\\') {
        return Err(PathProblem::Backslash);
    }
    if path.starts_with('/') {
        return Err(PathProblem::Absolute);
    }
    for segment in path.split('/') {
        if segment.is_empty() {
            return Err(PathProblem::EmptySegment);
        }
        if segment == "." || segment == ".." {
            return Err(PathProblem::DotSegment);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_relative_posix_paths() {
        for ok in ["a", "src/main.ts", "a/b/c.d", ".env", "..a", "a..", "ünïcode/ファイル"] {
            assert_eq!(check_path(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn refuses_each_rule() {
        let long = "a".repeat(MAX_PATH_BYTES + 1);
        let cases = [
            ("", PathProblem::Empty),
            (long.as_str(), PathProblem::TooLong),
            ("a\0b", PathProblem::ControlCharacter),
            ("a\nb", PathProblem::ControlCharacter),
            ("a\u{7f}", PathProblem::ControlCharacter),
            ("a\u{85}", PathProblem::ControlCharacter),
            ("a\\b", PathProblem::Backslash),
            ("/etc/passwd", PathProblem::Absolute),
            ("a//b", PathProblem::EmptySegment),
            ("a/", PathProblem::EmptySegment),
            ("./a", PathProblem::DotSegment),
            ("a/../../b", PathProblem::DotSegment),
            ("..", PathProblem::DotSegment),
        ];
        for (path, problem) in cases {
            assert_eq!(check_path(path), Err(problem), "{path:?}");
        }
    }

    #[test]
    fn the_limit_counts_bytes_not_chars() {
        let exactly = "é".repeat(MAX_PATH_BYTES / 2);
        assert_eq!(check_path(&exactly), Ok(()));
        let over = format!("{exactly}a");
        assert_eq!(check_path(&over), Err(PathProblem::TooLong));
    }
}
