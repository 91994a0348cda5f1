//! The path validator (`fsync_protocol::check_path`, the mirror of `fsync.path_problem`): never
//! panics, and a path it accepts is one no layer may be tricked by — relative, within 1,024
//! bytes, no empty, `.` or `..` segment, no backslash, no NUL or control character.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else { return };
    if fsync_protocol::check_path(path).is_ok() {
        assert!(!path.is_empty() && path.len() <= fsync_protocol::limits::MAX_PATH_BYTES, "{path:?}");
        assert!(!path.starts_with('/') && !path.contains('\\'), "{path:?}");
        assert!(!path.chars().any(char::is_control), "{path:?}");
        assert!(path.split('/').all(|s| !s.is_empty() && s != "." && s != ".."), "{path:?}");
    }
});
