//! Object storage (DESIGN §3): bytes through `object_store` (a local directory by default, any
//! S3-compatible service by URL), object rows in `storage.objects` as Supabase Storage keeps them,
//! so the same row level security policies decide who may write and sign.
//!
//! An object `name` in `bucket` is stored under the key `{bucket}/{name}`.

pub mod error;
pub mod http;
pub mod signing;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload};
use std::ops::Range;
use std::sync::Arc;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("object not found: {0}")]
    NotFound(String),
    #[error("range not satisfiable for an object of {size} bytes")]
    Range { size: u64 },
    #[error("storage URL {0:?}: {1}")]
    Config(String, String),
    #[error("object store: {0}")]
    Backend(#[from] object_store::Error),
}

/// Where object bytes live.
#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    /// What the storage was opened from, for messages (`file:///...`, `s3://bucket`).
    pub url: String,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage").field("url", &self.url).finish()
    }
}

/// An object being read: its size and a stream of the requested bytes.
pub struct ObjectBody {
    /// Size of the whole object.
    pub size: u64,
    /// The bytes served (all, or the requested range).
    pub range: Range<u64>,
    pub stream: BoxStream<'static, Result<Bytes, object_store::Error>>,
}

impl Storage {
    /// Opens `url`: `file://DIR` (created if missing), a plain directory path, or `s3://BUCKET`
    /// configured by `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT`), `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` (default `us-east-1`) and
    /// `AWS_ALLOW_HTTP` through `lookup`.
    pub fn open_with(url: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<Storage, StorageError> {
        let store: Arc<dyn ObjectStore> = if let Some(bucket) = url.strip_prefix("s3://") {
            let bucket = bucket.trim_end_matches('/');
            if bucket.is_empty() || bucket.contains('/') {
                return Err(StorageError::Config(url.into(), "expected s3://BUCKET".into()));
            }
            let var = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
            let mut builder = object_store::aws::AmazonS3Builder::new().with_bucket_name(bucket).with_region(
                var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")).unwrap_or_else(|| "us-east-1".into()),
            );
            if let Some(key) = var("AWS_ACCESS_KEY_ID") {
                builder = builder.with_access_key_id(key);
            }
            if let Some(secret) = var("AWS_SECRET_ACCESS_KEY") {
                builder = builder.with_secret_access_key(secret);
            }
            if let Some(token) = var("AWS_SESSION_TOKEN") {
                builder = builder.with_token(token);
            }
            if let Some(endpoint) = var("AWS_ENDPOINT_URL").or_else(|| var("AWS_ENDPOINT")) {
                let plain = endpoint.starts_with("http://");
                builder =
                    builder.with_endpoint(endpoint).with_allow_http(plain).with_virtual_hosted_style_request(false);
            }
            if var("AWS_ALLOW_HTTP").is_some_and(|v| v == "true" || v == "1") {
                builder = builder.with_allow_http(true);
            }
            Arc::new(builder.build().map_err(|e| StorageError::Config(url.into(), e.to_string()))?)
        } else {
            let dir = url.strip_prefix("file://").unwrap_or(url);
            if dir.is_empty() || url.contains("://") && !url.starts_with("file://") {
                return Err(StorageError::Config(url.into(), "expected file://DIR or s3://BUCKET".into()));
            }
            std::fs::create_dir_all(dir).map_err(|e| StorageError::Config(url.into(), e.to_string()))?;
            let local = object_store::local::LocalFileSystem::new_with_prefix(dir)
                .map_err(|e| StorageError::Config(url.into(), e.to_string()))?;
            Arc::new(local)
        };
        Ok(Storage { store, url: url.to_owned() })
    }

    /// A storage over any object store (tests, other backends).
    pub fn from_store(store: Arc<dyn ObjectStore>, url: impl Into<String>) -> Storage {
        Storage { store, url: url.into() }
    }

    /// The object store itself.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The key of `name` in `bucket`.
    pub fn key(bucket: &str, name: &str) -> ObjectPath {
        ObjectPath::from(format!("{bucket}/{name}"))
    }

    /// Stores `bytes` as `name` in `bucket`, replacing what was there, atomically.
    pub async fn put(&self, bucket: &str, name: &str, bytes: Bytes) -> Result<(), StorageError> {
        self.store.put(&Self::key(bucket, name), PutPayload::from_bytes(bytes)).await?;
        Ok(())
    }

    /// The whole object, in memory.
    pub async fn get_bytes(&self, bucket: &str, name: &str) -> Result<Bytes, StorageError> {
        let key = Self::key(bucket, name);
        match self.store.get(&key).await {
            Ok(result) => Ok(result.bytes().await?),
            Err(object_store::Error::NotFound { .. }) => Err(StorageError::NotFound(format!("{bucket}/{name}"))),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether the object exists.
    pub async fn exists(&self, bucket: &str, name: &str) -> Result<bool, StorageError> {
        match self.store.head(&Self::key(bucket, name)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes the object (absent is fine).
    pub async fn delete(&self, bucket: &str, name: &str) -> Result<(), StorageError> {
        match self.store.delete(&Self::key(bucket, name)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Streams the object, or the requested `range` of it.
    pub async fn open_read(
        &self,
        bucket: &str,
        name: &str,
        range: Option<ByteRange>,
    ) -> Result<ObjectBody, StorageError> {
        let key = Self::key(bucket, name);
        let not_found = || StorageError::NotFound(format!("{bucket}/{name}"));
        let size = match self.store.head(&key).await {
            Ok(meta) => meta.size,
            Err(object_store::Error::NotFound { .. }) => return Err(not_found()),
            Err(e) => return Err(e.into()),
        };
        let range = match range {
            None => 0..size,
            Some(range) => range.resolve(size).ok_or(StorageError::Range { size })?,
        };
        let options = GetOptions {
            range: (range != (0..size) && !range.is_empty()).then(|| GetRange::Bounded(range.clone())),
            ..GetOptions::default()
        };
        if range.is_empty() {
            return Ok(ObjectBody { size, range, stream: Box::pin(futures_util::stream::empty()) });
        }
        match self.store.get_opts(&key, options).await {
            Ok(result) => Ok(ObjectBody { size, range, stream: result.into_stream() }),
            Err(object_store::Error::NotFound { .. }) => Err(not_found()),
            Err(e) => Err(e.into()),
        }
    }
}

/// One `Range: bytes=...` request (RFC 9110), before the object's size is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=a-b` (inclusive).
    FromTo(u64, u64),
    /// `bytes=a-`.
    From(u64),
    /// `bytes=-n`: the last n bytes.
    Suffix(u64),
}

impl ByteRange {
    /// Parses a `Range` header; `None` for what is not a single byte range (multiple ranges are
    /// not supported and are answered with the whole object, as RFC 9110 allows).
    pub fn parse(header: &str) -> Option<ByteRange> {
        let spec = header.trim().strip_prefix("bytes=")?.trim();
        if spec.contains(',') {
            return None;
        }
        let (start, end) = spec.split_once('-')?;
        let number = |s: &str| s.trim().parse::<u64>().ok();
        match (start.trim().is_empty(), end.trim().is_empty()) {
            (true, false) => Some(ByteRange::Suffix(number(end)?)),
            (false, true) => Some(ByteRange::From(number(start)?)),
            (false, false) => {
                let (a, b) = (number(start)?, number(end)?);
                (a <= b).then_some(ByteRange::FromTo(a, b))
            }
            (true, true) => None,
        }
    }

    /// The half-open byte range this selects of an object of `size` bytes, or `None` when it is
    /// not satisfiable (416).
    pub fn resolve(self, size: u64) -> Option<Range<u64>> {
        match self {
            ByteRange::FromTo(a, b) if a < size => Some(a..b.saturating_add(1).min(size)),
            ByteRange::From(a) if a < size => Some(a..size),
            ByteRange::Suffix(n) if n > 0 && size > 0 => Some(size.saturating_sub(n)..size),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_ranges_parse_and_resolve() {
        assert_eq!(ByteRange::parse("bytes=0-9"), Some(ByteRange::FromTo(0, 9)));
        assert_eq!(ByteRange::parse("bytes=5-"), Some(ByteRange::From(5)));
        assert_eq!(ByteRange::parse("bytes=-3"), Some(ByteRange::Suffix(3)));
        for bad in ["bytes=9-5", "bytes=-", "items=0-1", "bytes=0-1,4-5", "bytes=a-b", ""] {
            assert_eq!(ByteRange::parse(bad), None, "{bad}");
        }
        assert_eq!(ByteRange::FromTo(0, 9).resolve(5), Some(0..5));
        assert_eq!(ByteRange::FromTo(2, 3).resolve(5), Some(2..4));
        assert_eq!(ByteRange::From(4).resolve(5), Some(4..5));
        assert_eq!(ByteRange::From(5).resolve(5), None);
        assert_eq!(ByteRange::Suffix(3).resolve(5), Some(2..5));
        assert_eq!(ByteRange::Suffix(9).resolve(5), Some(0..5));
        assert_eq!(ByteRange::Suffix(0).resolve(5), None);
        assert_eq!(ByteRange::Suffix(1).resolve(0), None);
    }

    #[tokio::test]
    async fn local_storage_round_trip_and_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open_with(&format!("file://{}", dir.path().display()), |_| None).unwrap();
        storage.put("b", "a/x.bin", Bytes::from_static(b"0123456789")).await.unwrap();
        assert!(storage.exists("b", "a/x.bin").await.unwrap());
        assert!(!storage.exists("b", "a/y.bin").await.unwrap());
        assert_eq!(&storage.get_bytes("b", "a/x.bin").await.unwrap()[..], b"0123456789");
        let read = |range| {
            let storage = storage.clone();
            async move {
                use futures_util::TryStreamExt;
                let body = storage.open_read("b", "a/x.bin", range).await?;
                let chunks: Vec<Bytes> = body.stream.try_collect().await?;
                Ok::<_, StorageError>((body.range, chunks.concat()))
            }
        };
        assert_eq!(read(None).await.unwrap(), (0..10, b"0123456789".to_vec()));
        assert_eq!(read(Some(ByteRange::FromTo(2, 4))).await.unwrap(), (2..5, b"234".to_vec()));
        assert_eq!(read(Some(ByteRange::Suffix(2))).await.unwrap(), (8..10, b"89".to_vec()));
        assert!(matches!(read(Some(ByteRange::From(10))).await, Err(StorageError::Range { size: 10 })));
        assert!(matches!(storage.open_read("b", "nope", None).await, Err(StorageError::NotFound(_))));
        storage.delete("b", "a/x.bin").await.unwrap();
        storage.delete("b", "a/x.bin").await.unwrap();
        assert!(!storage.exists("b", "a/x.bin").await.unwrap());
        assert!(Storage::open_with("ftp://x", |_| None).is_err());
        assert!(Storage::open_with("s3://", |_| None).is_err());
    }
}
