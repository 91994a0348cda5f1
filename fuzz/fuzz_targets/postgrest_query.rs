//! The PostgREST query parser (`fsync_store::query::parse`): any query string becomes a read or
//! a clear error, never a panic; what it accepts names only plain columns and takes only the
//! operators the grammar has.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // `key=value&key=value`, as the server's query extractor hands pairs over.
    let pairs: Vec<(String, String)> = text
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (pair.to_owned(), String::new()),
        })
        .collect();
    if let Ok(query) = fsync_store::query::parse("project_files_current", &pairs) {
        for column in query.columns.iter().flatten() {
            assert!(!column.is_empty() && column.chars().all(|c| c.is_alphanumeric() || c == '_'), "{column:?}");
        }
        for filter in &query.filters {
            assert!(!filter.column.is_empty() && filter.column.chars().all(|c| c.is_alphanumeric() || c == '_'));
            assert!(filter.values.iter().all(|v| !v.contains('\0')), "{filter:?}");
        }
        for term in &query.order {
            assert!(!term.column.is_empty() && term.column.chars().all(|c| c.is_alphanumeric() || c == '_'));
        }
    }
});
