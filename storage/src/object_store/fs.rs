//! Local-directory backend: the embedded default.
//!
//! Durability and atomicity: every write goes to a temporary file under `<root>/.tmp/<store>`,
//! is fsynced, then moved onto its key: `rename(2)` for `put`, `link(2)` for `put_if_absent`
//! (which fails with `EEXIST` atomically, so of several racing creators exactly one wins). The
//! parent directory is fsynced afterwards, so an acknowledged object survives power loss and a
//! reader never sees a partial object.
//!
//! Several processes may share one directory (brokers of one cluster on a local bucket): each
//! store stages in a directory of its own, and clears only other stores' staging directories
//! idle for longer than [`STALE_TMP`] (a crashed process's leftovers). A store whose staging
//! directory was cleared under it (idle that long) creates it again.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;

use super::{validate_key, ObjectMeta, ObjectStore};
use crate::{Error, Result};

const TMP_DIR: &str = ".tmp";
/// Another store's staging directory unchanged for this long is a crashed process's.
const STALE_TMP: std::time::Duration = std::time::Duration::from_secs(3600);

#[derive(Debug)]
pub struct FsStore {
    root: PathBuf,
    /// This store's staging directory.
    tmp: PathBuf,
    tmp_counter: AtomicU64,
}

impl FsStore {
    /// Opens (creating if needed) the directory `root` and clears staging directories that
    /// crashed processes left.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        let tmp_root = root.join(TMP_DIR);
        fs::create_dir_all(&tmp_root).map_err(|e| Error::io(&tmp_root, e))?;
        for entry in fs::read_dir(&tmp_root).map_err(|e| Error::io(&tmp_root, e))?.flatten() {
            let idle = entry.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
            if idle.is_some_and(|idle| idle > STALE_TMP) {
                let path = entry.path();
                let removed = if path.is_dir() { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
                if let Err(e) = removed {
                    tracing::warn!(path = %path.display(), error = %e, "cannot clear a stale staging directory");
                }
            }
        }
        let tmp = tmp_root.join(format!("{}-{:016x}", std::process::id(), rand::random::<u64>()));
        fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        sync_dir(&root)?;
        Ok(FsStore { root, tmp, tmp_counter: AtomicU64::new(0) })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, key: &str) -> Result<PathBuf> {
        validate_key(key)?;
        if key == TMP_DIR || key.starts_with(".tmp/") {
            return Err(Error::InvalidKey { key: key.to_string(), reason: "reserved prefix .tmp".into() });
        }
        Ok(self.root.join(key))
    }

    fn tmp_path(&self) -> PathBuf {
        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
        self.tmp.join(n.to_string())
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::Failed(format!("blocking task panicked: {e}")))?
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io(dir, e))
}

/// Creates the missing ancestors of `path` one by one, fsyncing each new directory's parent.
fn ensure_parent(root: &Path, path: &Path) -> Result<()> {
    let Some(parent) = path.parent() else { return Ok(()) };
    if parent.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut dir = parent;
    while !dir.is_dir() && dir != root {
        missing.push(dir);
        dir = dir.parent().unwrap_or(root);
    }
    for dir in missing.into_iter().rev() {
        match fs::create_dir(dir) {
            Ok(()) => sync_dir(dir.parent().unwrap_or(root))?,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io(dir, e)),
        }
    }
    Ok(())
}

fn write_tmp(tmp: &Path, data: &[u8]) -> Result<()> {
    let open = || OpenOptions::new().write(true).create_new(true).open(tmp);
    let mut file = match open() {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            // Our staging directory was cleared as stale by another process: make it again.
            if let Some(dir) = tmp.parent() {
                fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            }
            open()
        }
        other => other,
    }
    .map_err(|e| Error::io(tmp, e))?;
    file.write_all(data).map_err(|e| Error::io(tmp, e))?;
    file.sync_all().map_err(|e| Error::io(tmp, e))
}

fn not_found(key: &str) -> Error {
    Error::NotFound { key: key.to_string() }
}

/// True when an I/O error means "no object at this key": nothing there, a directory there (the
/// key is only a prefix of other keys), or a path component is an object (`a/b` when `a` is).
fn is_absent(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory | ErrorKind::IsADirectory)
}

#[async_trait]
impl ObjectStore for FsStore {
    async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        let (root, path, tmp) = (self.root.clone(), self.path_of(key)?, self.tmp_path());
        blocking(move || {
            write_tmp(&tmp, &data)?;
            ensure_parent(&root, &path)?;
            fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
            sync_dir(path.parent().unwrap_or(&root))
        })
        .await
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<()> {
        let (root, path, tmp, key) = (self.root.clone(), self.path_of(key)?, self.tmp_path(), key.to_string());
        blocking(move || {
            write_tmp(&tmp, &data)?;
            ensure_parent(&root, &path)?;
            let linked = fs::hard_link(&tmp, &path);
            let _ = fs::remove_file(&tmp);
            match linked {
                Ok(()) => sync_dir(path.parent().unwrap_or(&root)),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => Err(Error::AlreadyExists { key }),
                Err(e) => Err(Error::io(&path, e)),
            }
        })
        .await
    }

    async fn get(&self, key: &str) -> Result<Bytes> {
        let (path, key) = (self.path_of(key)?, key.to_string());
        blocking(move || match fs::read(&path) {
            Ok(data) => Ok(Bytes::from(data)),
            Err(e) if is_absent(&e) => Err(not_found(&key)),
            Err(e) => Err(Error::io(&path, e)),
        })
        .await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        let (path, key) = (self.path_of(key)?, key.to_string());
        blocking(move || {
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if is_absent(&e) => return Err(not_found(&key)),
                Err(e) => return Err(Error::io(&path, e)),
            };
            let meta = file.metadata().map_err(|e| Error::io(&path, e))?;
            if !meta.is_file() {
                return Err(not_found(&key));
            }
            let len = meta.len();
            let r = super::clamp_range(&range, len);
            let mut buf = vec![0u8; r.len()];
            file.read_exact_at(&mut buf, r.start as u64).map_err(|e| Error::io(&path, e))?;
            Ok(Bytes::from(buf))
        })
        .await
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        let (path, key) = (self.path_of(key)?, key.to_string());
        blocking(move || match fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(Some(ObjectMeta { key, size: m.len() })),
            Ok(_) => Ok(None),
            Err(e) if is_absent(&e) => Ok(None),
            Err(e) => Err(Error::io(&path, e)),
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let path = self.path_of(key)?;
        blocking(move || match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if is_absent(&e) => Ok(()),
            Err(e) => Err(Error::io(&path, e)),
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let root = self.root.clone();
        let prefix = prefix.to_string();
        blocking(move || {
            // Walk only the deepest directory the prefix names completely.
            let dir_part = prefix.rfind('/').map(|i| &prefix[..i]).unwrap_or("");
            let mut out = Vec::new();
            let start = if dir_part.is_empty() { root.clone() } else { root.join(dir_part) };
            walk(&root, &start, &prefix, &mut out)?;
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(out)
        })
        .await
    }
}

fn walk(root: &Path, dir: &Path, prefix: &str, out: &mut Vec<ObjectMeta>) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound || e.kind() == ErrorKind::NotADirectory => return Ok(()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        let Ok(rel) = path.strip_prefix(root) else { continue };
        let Some(key) = rel.to_str() else { continue };
        if key == TMP_DIR {
            continue;
        }
        let file_type = entry.file_type().map_err(|e| Error::io(&path, e))?;
        if file_type.is_dir() {
            let as_dir = format!("{key}/");
            if as_dir.starts_with(prefix) || prefix.starts_with(&as_dir) {
                walk(root, &path, prefix, out)?;
            }
        } else if key.starts_with(prefix) {
            let size = entry.metadata().map_err(|e| Error::io(&path, e))?.len();
            out.push(ObjectMeta { key: key.to_string(), size });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stores_sharing_a_directory_keep_each_others_staging_and_clear_stale_ones() {
        let dir = tempfile::tempdir().unwrap();
        let first = FsStore::open(dir.path()).unwrap();
        let stale = dir.path().join(TMP_DIR).join("1-dead");
        fs::create_dir_all(&stale).unwrap();
        fs::write(stale.join("0"), b"half").unwrap();
        let old = std::time::SystemTime::now() - STALE_TMP - std::time::Duration::from_secs(60);
        File::open(&stale).unwrap().set_modified(old).unwrap();

        // Opening a second store on the directory leaves the first one's staging alone.
        let second = FsStore::open(dir.path()).unwrap();
        first.put("a", Bytes::from_static(b"1")).await.unwrap();
        second.put_if_absent("b", Bytes::from_static(b"2")).await.unwrap();
        assert_eq!(second.get("a").await.unwrap(), Bytes::from_static(b"1"));
        assert!(!stale.exists(), "a crashed process's staging directory is cleared");

        // A store whose staging directory was cleared under it makes it again.
        fs::remove_dir_all(&first.tmp).unwrap();
        first.put("c", Bytes::from_static(b"3")).await.unwrap();
        assert_eq!(second.get("c").await.unwrap(), Bytes::from_static(b"3"));
    }
}
