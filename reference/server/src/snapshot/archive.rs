//! The snapshot's deterministic zip (sorted paths as they come, fixed 1980 timestamps, `0644`,
//! deflate level 1; already-compressed types stored), written to a temporary file: on a writer
//! thread fed through a bounded channel in production, inline when blocking work must stay on the
//! calling task (simulated runs, DESIGN §13).
//!
//! [`write_zip`] and [`Entry`] are public so that benchmarks can build the same zip in memory
//! (`benches/hot_paths.rs` here and in the agent); the server itself goes through `ZipOut`.

use fsync_store::Blocking;
use std::io::{self, Seek, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use tempfile::NamedTempFile;
use tokio::task::JoinHandle;

/// Entries queued between the reader and the writer thread.
const QUEUE: usize = 32;
/// The writer's buffer in front of the temporary file.
const BUFFER_BYTES: usize = 256 * 1024;

/// One file for the zip.
pub struct Entry {
    pub path: String,
    pub bytes: Vec<u8>,
    /// Stored as is (images, fonts, binaries) rather than deflated.
    pub stored: bool,
}

type Writer = zip::ZipWriter<io::BufWriter<std::fs::File>>;

/// A zip being written.
pub(super) enum ZipOut {
    Thread { entries: SyncSender<Entry>, writer: JoinHandle<io::Result<NamedTempFile>> },
    Inline { zip: Box<Writer>, file: NamedTempFile },
}

impl ZipOut {
    pub fn start(blocking: Blocking) -> io::Result<ZipOut> {
        Ok(match blocking {
            Blocking::Threads => {
                let (entries, receiver) = sync_channel(QUEUE);
                ZipOut::Thread { entries, writer: tokio::task::spawn_blocking(move || write_all(receiver)) }
            }
            Blocking::Inline => {
                let (zip, file) = open()?;
                ZipOut::Inline { zip: Box::new(zip), file }
            }
        })
    }

    /// Adds an entry. `Ok(false)`: the writer thread has stopped (its error comes from `finish`).
    pub fn add(&mut self, entry: Entry) -> io::Result<bool> {
        match self {
            ZipOut::Thread { entries, .. } => Ok(entries.send(entry).is_ok()),
            ZipOut::Inline { zip, .. } => write_entry(zip, &entry).map(|()| true),
        }
    }

    /// Ends the zip; the temporary file that holds it.
    pub async fn finish(self) -> io::Result<NamedTempFile> {
        match self {
            ZipOut::Thread { entries, writer } => {
                drop(entries);
                writer.await.map_err(io::Error::other)?
            }
            ZipOut::Inline { zip, file } => {
                zip.finish().map_err(io::Error::other)?.flush()?;
                Ok(file)
            }
        }
    }
}

fn open() -> io::Result<(Writer, NamedTempFile)> {
    let file = NamedTempFile::new()?;
    let zip = zip::ZipWriter::new(io::BufWriter::with_capacity(BUFFER_BYTES, file.reopen()?));
    Ok((zip, file))
}

/// The writer thread: every entry received, then the end of the zip.
fn write_all(entries: Receiver<Entry>) -> io::Result<NamedTempFile> {
    let (mut zip, file) = open()?;
    for entry in entries {
        write_entry(&mut zip, &entry)?;
    }
    zip.finish().map_err(io::Error::other)?.flush()?;
    Ok(file)
}

/// Writes `entries`, in the order given, as the snapshot's zip into `out`, and returns `out`:
/// the same bytes `build_or_reuse` stores for the same entries (same options, same order).
pub fn write_zip<'a, W: Write + Seek>(out: W, entries: impl IntoIterator<Item = &'a Entry>) -> io::Result<W> {
    let mut zip = zip::ZipWriter::new(out);
    for entry in entries {
        write_entry(&mut zip, entry)?;
    }
    zip.finish().map_err(io::Error::other)
}

fn write_entry<W: Write + Seek>(zip: &mut zip::ZipWriter<W>, entry: &Entry) -> io::Result<()> {
    zip.start_file(entry.path.as_str(), entry_options(entry)).map_err(io::Error::other)?;
    zip.write_all(&entry.bytes)
}

/// Fixed options: the same entry always gives the same bytes.
fn entry_options(entry: &Entry) -> zip::write::SimpleFileOptions {
    let method = if entry.stored { zip::CompressionMethod::Stored } else { zip::CompressionMethod::Deflated };
    zip::write::SimpleFileOptions::default()
        .compression_method(method)
        .compression_level(if entry.stored { None } else { Some(1) })
        .last_modified_time(zip::DateTime::default())
        .unix_permissions(0o644)
        .large_file(entry.bytes.len() as u64 >= u32::MAX as u64)
}

/// Reads the finished zip back in chunks, through tokio's file (threads) or inline.
pub(super) enum ZipReader {
    Tokio(tokio::fs::File),
    Inline(std::fs::File),
}

impl ZipReader {
    pub fn open(file: &NamedTempFile, blocking: Blocking) -> io::Result<ZipReader> {
        let file = file.reopen()?;
        Ok(match blocking {
            Blocking::Threads => ZipReader::Tokio(tokio::fs::File::from_std(file)),
            Blocking::Inline => ZipReader::Inline(file),
        })
    }

    pub async fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        use std::io::Read;
        use tokio::io::AsyncReadExt;
        match self {
            ZipReader::Tokio(file) => file.read(buffer).await,
            ZipReader::Inline(file) => file.read(buffer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `write_zip` (the benchmarks' entry) writes the bytes the server's own path writes.
    #[tokio::test]
    async fn write_zip_gives_the_bytes_the_snapshot_stores() {
        let entries = vec![
            Entry { path: "a/b.txt".into(), bytes: b"hello hello hello".to_vec(), stored: false },
            Entry { path: "img.png".into(), bytes: vec![0x89, b'P', b'N', b'G', 0, 1, 2], stored: true },
        ];
        let in_memory = write_zip(io::Cursor::new(Vec::new()), &entries).unwrap().into_inner();
        let mut out = ZipOut::start(Blocking::Inline).unwrap();
        for entry in entries {
            assert!(out.add(entry).unwrap());
        }
        let file = out.finish().await.unwrap();
        assert_eq!(std::fs::read(file.path()).unwrap(), in_memory);
    }
}
