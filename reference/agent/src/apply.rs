//! Applying changes to the project directory.
//!
//! A batch (one `seq`: one event, or one catch-up) is applied as a unit: every change is checked
//! first (path rules, content present, content hash, no symlink on the way, no file where a
//! directory must be), every new content is staged in a sibling directory, and only then are the
//! staged files renamed into place and deleted files removed. A batch that fails a check changes
//! nothing. Each file appears by `rename`, so a reader never sees a half-written file. Nothing is
//! fsynced: a preview container that loses power hydrates again.

use fsync_protocol::check_path;
use fsync_protocol::events::FileChange;
use fsync_protocol::hash::hex_sha256;
use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Why a batch was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("refused path {path:?}: {reason}")]
    BadPath { path: String, reason: String },
    #[error("{path}: the change carries no content (binary files come from storage)")]
    MissingContent { path: String },
    #[error("{path}: content hash {actual} does not match {expected}")]
    HashMismatch { path: String, expected: String, actual: String },
    #[error("{path}: {what}: {source}")]
    Io {
        path: String,
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

/// What a batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    pub written: usize,
    pub deleted: usize,
}

/// A project's directory on disk.
#[derive(Debug, Clone)]
pub struct ProjectDir {
    root: PathBuf,
    staging: PathBuf,
    /// Names staged files: the staging directory is this directory's own, so a counter is
    /// unique (a file left by a crashed run is overwritten).
    staged: Arc<AtomicU64>,
}

impl ProjectDir {
    /// Opens (creating if needed) the directory `root` and its staging directory beside it.
    pub fn open(root: impl Into<PathBuf>) -> io::Result<ProjectDir> {
        let root = root.into();
        fs::create_dir_all(&root)?;
        let root = root.canonicalize()?;
        let name = root.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "project".into());
        let staging = root.with_file_name(format!(".{name}.fsync-staging"));
        fs::create_dir_all(&staging)?;
        Ok(ProjectDir { root, staging, staged: Arc::default() })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Applies one batch as a unit (see the module docs).
    pub fn apply(&self, changes: &[FileChange]) -> Result<Applied, ApplyError> {
        self.apply_with(changes, &BTreeMap::new())
    }

    /// Like [`ProjectDir::apply`], with the bytes of writes that carry no content (binary files,
    /// fetched from storage) given by path; they are checked against the change's hash too.
    pub fn apply_with(
        &self,
        changes: &[FileChange],
        binaries: &BTreeMap<String, Vec<u8>>,
    ) -> Result<Applied, ApplyError> {
        for change in changes {
            self.check(change, binaries)?;
        }
        // Stage every new content; on any failure remove what was staged and stop.
        let mut staged: Vec<(PathBuf, &str)> = Vec::new();
        for change in changes {
            if let FileChange::Write { path, content, .. } = change {
                let bytes = content.as_deref().map(str::as_bytes).or_else(|| binaries.get(path).map(Vec::as_slice));
                let bytes = bytes.expect("checked: every write has its bytes");
                match self.stage(bytes) {
                    Ok(file) => staged.push((file, path)),
                    Err(source) => {
                        for (file, _) in &staged {
                            let _ = fs::remove_file(file);
                        }
                        return Err(ApplyError::Io { path: path.clone(), what: "stage", source });
                    }
                }
            }
        }
        let mut applied = Applied::default();
        let mut staged = staged.into_iter();
        for change in changes {
            match change {
                FileChange::Write { path, .. } => {
                    let (file, _) = staged.next().expect("one staged file per write");
                    put_in_place(&file, &self.root.join(path))
                        .map_err(|(what, source)| io_error(path, what, source))?;
                    applied.written += 1;
                }
                FileChange::Delete { path, .. } => {
                    match fs::remove_file(self.root.join(path)) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(source) => return Err(io_error(path, "delete", source)),
                    }
                    self.remove_empty_parents(path);
                    applied.deleted += 1;
                }
            }
        }
        Ok(applied)
    }

    /// Every file under the root, by relative path, with its bytes (for convergence checks).
    pub fn tree(&self) -> io::Result<BTreeMap<String, Vec<u8>>> {
        read_tree(&self.root)
    }

    fn check(&self, change: &FileChange, binaries: &BTreeMap<String, Vec<u8>>) -> Result<(), ApplyError> {
        let path = change.path();
        check_path(path).map_err(|p| bad(path, p.to_string()))?;
        // Nothing on the way may be a symlink (it could lead out of the root), and no ancestor
        // may be a file (a path and its parent cannot both be files).
        let mut at = self.root.clone();
        let segments: Vec<&str> = path.split('/').collect();
        for (i, segment) in segments.iter().enumerate() {
            at.push(segment);
            let last = i + 1 == segments.len();
            match fs::symlink_metadata(&at) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(bad(path, format!("{} is a symbolic link", at.display())))
                }
                Ok(meta) if !last && !meta.is_dir() => {
                    return Err(bad(path, format!("{} is a file, not a directory", at.display())))
                }
                Ok(meta) if last && meta.is_dir() => return Err(bad(path, "is a directory".to_owned())),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(source) => return Err(io_error(path, "inspect", source)),
            }
        }
        if let FileChange::Write { content, content_hash: expected, .. } = change {
            let bytes = match content {
                Some(content) => content.as_bytes(),
                None => match binaries.get(path) {
                    Some(bytes) => bytes.as_slice(),
                    None => return Err(ApplyError::MissingContent { path: path.to_owned() }),
                },
            };
            if let Some(expected) = expected {
                let actual = hex_sha256(bytes);
                if &actual != expected {
                    return Err(ApplyError::HashMismatch { path: path.to_owned(), expected: expected.clone(), actual });
                }
            }
        }
        Ok(())
    }

    fn stage(&self, bytes: &[u8]) -> io::Result<PathBuf> {
        let file = self.staging.join(self.staged.fetch_add(1, Ordering::Relaxed).to_string());
        let mut out = fs::File::create(&file)?;
        out.write_all(bytes)?;
        Ok(file)
    }

    /// Removes the now-empty directories between a deleted file and the root.
    fn remove_empty_parents(&self, path: &str) {
        let mut dir = self.root.join(path);
        while dir.pop() && dir != self.root && dir.starts_with(&self.root) {
            if fs::remove_dir(&dir).is_err() {
                break; // not empty (or gone): stop climbing
            }
        }
    }
}

/// Renames the staged `file` to `target`, creating the directories on the way when the first
/// try finds one missing (most writes land in a directory that exists: one rename, no lookups).
fn put_in_place(file: &Path, target: &Path) -> Result<(), (&'static str, io::Error)> {
    match fs::rename(file, target) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent).map_err(|source| ("create directories", source))?;
            }
            fs::rename(file, target).map_err(|source| ("move into place", source))
        }
        other => other.map_err(|source| ("move into place", source)),
    }
}

/// Every regular file under `root`, by path relative to it.
pub fn read_tree(root: &Path) -> io::Result<BTreeMap<String, Vec<u8>>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                let relative = entry.path().strip_prefix(root).expect("under the root").to_string_lossy().into_owned();
                files.insert(relative, fs::read(entry.path())?);
            }
        }
    }
    Ok(files)
}

fn bad(path: &str, reason: String) -> ApplyError {
    ApplyError::BadPath { path: path.to_owned(), reason }
}

fn io_error(path: &str, what: &'static str, source: io::Error) -> ApplyError {
    ApplyError::Io { path: path.to_owned(), what, source }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fsync_protocol::content_hash;
    use fsync_store::Ids;

    fn dir() -> ProjectDir {
        let base = std::env::temp_dir().join(format!("fsync-apply-{}", fsync_store::SystemIds.uuid().simple()));
        ProjectDir::open(base.join("project")).unwrap()
    }

    fn write(path: &str, content: &str) -> FileChange {
        FileChange::Write {
            path: path.into(),
            file_type: "text".into(),
            content: Some(content.into()),
            content_hash: Some(content_hash(content)),
            version: 1,
        }
    }

    fn delete(path: &str) -> FileChange {
        FileChange::Delete { path: path.into(), version: 2 }
    }

    fn tree(d: &ProjectDir) -> Vec<(String, String)> {
        d.tree().unwrap().into_iter().map(|(k, v)| (k, String::from_utf8(v).unwrap())).collect()
    }

    #[test]
    fn writes_overwrite_and_deletes_with_their_empty_directories() {
        let d = dir();
        let applied = d.apply(&[write("src/a/b.ts", "one"), write("top.md", "t"), write("src/keep.ts", "k")]).unwrap();
        assert_eq!(applied, Applied { written: 3, deleted: 0 });
        d.apply(&[write("src/a/b.ts", "two")]).unwrap();
        assert_eq!(
            tree(&d),
            [("src/a/b.ts".into(), "two".into()), ("src/keep.ts".into(), "k".into()), ("top.md".into(), "t".into())]
        );

        assert_eq!(d.apply(&[delete("src/a/b.ts")]).unwrap(), Applied { written: 0, deleted: 1 });
        assert!(!d.root().join("src/a").exists(), "the emptied directory is gone");
        assert!(d.root().join("src").is_dir(), "a directory with files stays");
        d.apply(&[delete("src/keep.ts"), delete("never/there.ts")]).unwrap();
        assert!(!d.root().join("src").exists());
        assert_eq!(tree(&d), [("top.md".into(), "t".into())]);
        d.apply(&[delete("top.md")]).unwrap();
        assert!(d.root().is_dir(), "the root itself stays, even empty");
    }

    #[test]
    fn a_write_after_a_delete_that_emptied_its_directory_recreates_it() {
        let d = dir();
        d.apply(&[write("a/only.ts", "1"), write("b/c/d.ts", "2")]).unwrap();
        // The delete removes a/ (and b/c/) before the writes of the same batch land there.
        d.apply(&[delete("a/only.ts"), write("a/next.ts", "3"), delete("b/c/d.ts"), write("b/c/e/f.ts", "4")]).unwrap();
        assert_eq!(tree(&d), [("a/next.ts".into(), "3".into()), ("b/c/e/f.ts".into(), "4".into())]);
        assert_eq!(fs::read_dir(&d.staging).unwrap().count(), 0, "nothing left staged");
    }

    #[test]
    fn a_batch_with_one_bad_change_changes_nothing() {
        let d = dir();
        d.apply(&[write("kept.txt", "before")]).unwrap();
        let before = tree(&d);
        let mut wrong_hash = write("x.txt", "x");
        if let FileChange::Write { content_hash, .. } = &mut wrong_hash {
            *content_hash = Some(content_hash_of_other());
        }
        let no_content = FileChange::Write {
            path: "bin.png".into(),
            file_type: "image".into(),
            content: None,
            content_hash: None,
            version: 1,
        };
        for bad in [write("../escape.txt", "x"), write("/abs.txt", "x"), wrong_hash, no_content] {
            let err = d.apply(&[write("kept.txt", "after"), write("new.txt", "n"), bad.clone()]).unwrap_err();
            assert!(!err.to_string().is_empty());
            assert_eq!(tree(&d), before, "{bad:?} left the tree as it was");
        }
        assert!(!d.root().parent().unwrap().join("escape.txt").exists());
        assert_eq!(fs::read_dir(&d.staging).unwrap().count(), 0, "nothing left staged");
    }

    fn content_hash_of_other() -> String {
        content_hash("something else")
    }

    #[test]
    fn symlinks_and_file_directory_clashes_are_refused() {
        let d = dir();
        let outside = d.root().parent().unwrap().join("outside");
        fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, d.root().join("link")).unwrap();
        let err = d.apply(&[write("link/evil.txt", "x")]).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0, "nothing written through the link");

        d.apply(&[write("a", "file")]).unwrap();
        let err = d.apply(&[write("a/b", "x")]).unwrap_err();
        assert!(err.to_string().contains("is a file, not a directory"), "{err}");
        d.apply(&[write("dir/f", "x")]).unwrap();
        let err = d.apply(&[write("dir", "x")]).unwrap_err();
        assert!(err.to_string().contains("is a directory"), "{err}");
    }
}
