//! Documented limits of the SQL API. Each mirrors a `fsync.*` SQL function of the same name; the
//! server's integration tests assert that both sides agree.

/// Longest file path, in bytes of UTF-8 (`fsync.max_path_bytes()`).
pub const MAX_PATH_BYTES: usize = 1024;
/// Largest content of one file, in bytes of UTF-8 (`fsync.max_content_bytes()`).
pub const MAX_CONTENT_BYTES: usize = 5 * 1024 * 1024;
/// Largest total content of one bulk call, in bytes (`fsync.max_bulk_bytes()`).
pub const MAX_BULK_BYTES: usize = 64 * 1024 * 1024;
/// Most entries in one bulk call (`fsync.max_bulk_files()`).
pub const MAX_BULK_FILES: usize = 10_000;
/// Content above this size is left out of `file:update` events (`fsync.max_inline_event_bytes()`).
pub const MAX_INLINE_EVENT_BYTES: usize = 128 * 1024;
/// Largest HTTP request body the server accepts: a full bulk plus JSON overhead (the RPC route).
pub const MAX_REQUEST_BODY_BYTES: usize = MAX_BULK_BYTES + 16 * 1024 * 1024;
/// The longest life of a signed URL, in seconds (7 days, as an S3 presigned URL): a link handed
/// out stays a key to its object only this long.
pub const MAX_SIGNED_URL_SECONDS: u64 = 7 * 24 * 3600;
/// Largest object uploaded through Storage (Supabase Storage's default file size limit, 50 MB).
pub const MAX_OBJECT_BYTES: usize = 50 * 1000 * 1000;
/// Largest body of the small JSON endpoints: signing a URL, the snapshot function, sessions and
/// an agent's status report.
pub const MAX_SMALL_BODY_BYTES: usize = 64 * 1024;
/// Most phases an agent's status report may time, the longest phase name, and the longest
/// failure reason (an agent shortens its reason to fit).
pub const MAX_STATUS_TIMINGS: usize = 32;
/// Lag samples in one agent's lag report.
pub const MAX_LAG_SAMPLES: usize = 256;
pub const MAX_STATUS_PHASE_BYTES: usize = 64;
pub const MAX_STATUS_REASON_BYTES: usize = 8 * 1024;

/// The fixed set of `file_type` values (`fsync.file_types()`).
pub const FILE_TYPES: &[&str] = &[
    "typescript",
    "javascript",
    "json",
    "markdown",
    "sql",
    "text",
    "html",
    "css",
    "scss",
    "svg",
    "yaml",
    "toml",
    "xml",
    "shell",
    "python",
    "env",
    "image",
    "font",
    "binary",
];

/// Whether `file_type` is one of [`FILE_TYPES`].
pub fn is_file_type(file_type: &str) -> bool {
    FILE_TYPES.contains(&file_type)
}

/// The file type a legacy write or row gets when its type is missing or outside the fixed set,
/// from the path's extension (`fsync.infer_file_type`, word for word).
pub fn infer_file_type(path: &str) -> &'static str {
    let name = path.rsplit('/').next().unwrap_or(path);
    let extension = match name.rsplit_once('.') {
        Some((_, ext)) if !ext.is_empty() && !ext.contains('.') => ext.to_lowercase(),
        _ => return "text",
    };
    match extension.as_str() {
        "ts" | "tsx" | "mts" => "typescript",
        "js" | "jsx" | "mjs" | "cjs" => "javascript",
        "json" => "json",
        "md" => "markdown",
        "sql" => "sql",
        "html" | "htm" => "html",
        "css" => "css",
        "scss" => "scss",
        "svg" => "svg",
        "yaml" | "yml" => "yaml",
        "toml" => "toml",
        "xml" => "xml",
        "sh" => "shell",
        "py" => "python",
        "env" => "env",
        _ => "text",
    }
}
