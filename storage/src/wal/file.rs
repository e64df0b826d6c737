//! The file WAL: fixed-size, preallocated segment files with group commit and `fdatasync`.
//!
//! Positions are byte offsets in one logical log (LSNs); segment `{base:020}.wal` holds LSNs
//! `base..base + segment_bytes`. A frame never spans segments: when the next frame would not
//! leave room for a padding frame, a padding frame is written and the log continues at the
//! next segment's base. One writer thread takes every queued frame (up to `max_write_bytes`),
//! writes them with one `pwrite` per segment, `fdatasync`s, and only then acknowledges them.
//! Segment `i` (with its padding) is synced before anything is written to segment `i + 1`, so
//! valid data after an invalid frame means corruption, not a torn write.
//!
//! Trimmed segments are renamed `free-{old_base}.wal` and reused (renamed to their new base,
//! directory fsynced, before any data in them is acknowledged). Reused files keep stale frames,
//! which carry their old LSN and so never pass the position check. New files are zero-filled
//! (by a background thread, ahead of need) so that `fdatasync` only ever writes data blocks.
//!
//! Recovery scans from the oldest live segment, stops at the first invalid frame (a torn tail),
//! zeroes the rest of that segment and continues writing there.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use parking_lot::{Condvar, Mutex};
use tokio::sync::oneshot;

use super::record::{encode_padding, frame_len, PADDING_FRAME_LEN};
use super::{decode_frame, encode_frame, Decoded, PendingAppend, RecoveredRecord, Wal, WalPosition, WalRecord};
use crate::{Error, Result};

#[derive(Debug, Clone)]
pub struct FileWalConfig {
    pub dir: PathBuf,
    /// Size of each segment file.
    pub segment_bytes: u64,
    /// Segment files in all (live and free): the WAL's disk footprint. Appends wait for a
    /// trim when all are full.
    pub max_segments: usize,
    /// Upper bound on one group commit's write.
    pub max_write_bytes: usize,
}

impl FileWalConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FileWalConfig { dir: dir.into(), segment_bytes: 64 << 20, max_segments: 16, max_write_bytes: 4 << 20 }
    }
}

struct Item {
    lsn: u64,
    bytes: Bytes,
    ack: Option<oneshot::Sender<Result<()>>>,
}

#[derive(Debug)]
struct Appender {
    next_lsn: u64,
    tx: Option<mpsc::Sender<Item>>,
}

#[derive(Debug, Default)]
struct Segments {
    /// Live segment bases (files `{base:020}.wal`).
    live: BTreeMap<u64, ()>,
    /// Free files: trimmed segments (`free-{old_base}.wal`) and zero-filled spares
    /// (`spare-{random}.wal`).
    free: Vec<PathBuf>,
    /// Files being created by the preallocator.
    creating: usize,
    failed: Option<String>,
    closed: bool,
}

impl Segments {
    fn total(&self) -> usize {
        self.live.len() + self.free.len() + self.creating
    }
}

#[derive(Debug)]
struct Shared {
    config: FileWalConfig,
    segments: Mutex<Segments>,
    changed: Condvar,
    /// The directory lock. It lives here, shared with the writer thread, so that a WAL dropped
    /// without `close` keeps the directory locked until its writer has drained the queue:
    /// otherwise a new open would recover (and zero the tail of) segments still being written.
    _lock: File,
}

/// The file WAL. See the module docs.
#[derive(Debug)]
pub struct FileWal {
    shared: Arc<Shared>,
    appender: Mutex<Appender>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.wal"))
}

fn free_path(dir: &Path, old_base: u64) -> PathBuf {
    dir.join(format!("free-{old_base:020}.wal"))
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io(dir, e))
}

impl FileWal {
    /// Opens the WAL in `config.dir`, recovering what it holds. Returns the records found, in
    /// position order; the caller persists them elsewhere and then [`Wal::trim`]s.
    pub fn open(config: FileWalConfig) -> Result<(Self, Vec<RecoveredRecord>)> {
        let dir = config.dir.clone();
        if config.segment_bytes < 4096 || !config.segment_bytes.is_multiple_of(4096) {
            return Err(Error::InvalidMetadata(format!(
                "segment_bytes {} must be a multiple of 4096",
                config.segment_bytes
            )));
        }
        if config.max_segments < 2 {
            return Err(Error::InvalidMetadata("max_segments must be at least 2".into()));
        }
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io(&lock_path, e))?;
        lock.try_lock()
            .map_err(|_| Error::Fenced(format!("file WAL {} is locked by another process", dir.display())))?;

        let mut segments = Segments::default();
        let mut high_water = 0u64;
        for entry in fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let entry = entry.map_err(|e| Error::io(&dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name.ends_with(".tmp") {
                fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
                continue;
            }
            let Some(stem) = name.strip_suffix(".wal") else { continue };
            let len = entry.metadata().map_err(|e| Error::io(&path, e))?.len();
            if len != config.segment_bytes {
                return Err(Error::corrupt(
                    path.display().to_string(),
                    format!("segment is {len} bytes but the WAL is configured for {}", config.segment_bytes),
                ));
            }
            if stem.starts_with("spare-") {
                segments.free.push(path);
            } else if let Some(base) = stem.strip_prefix("free-").and_then(|n| n.parse::<u64>().ok()) {
                high_water = high_water.max(base + config.segment_bytes);
                segments.free.push(path);
            } else if let Ok(base) = stem.parse::<u64>() {
                high_water = high_water.max(base + config.segment_bytes);
                segments.live.insert(base, ());
            }
        }

        let (records, end_lsn) = recover(&config, &mut segments, high_water)?;
        let shared = Arc::new(Shared {
            config: config.clone(),
            segments: Mutex::new(segments),
            changed: Condvar::new(),
            _lock: lock,
        });
        let (tx, rx) = mpsc::channel();
        let mut threads = Vec::new();
        let writer_shared = shared.clone();
        threads.push(
            std::thread::Builder::new()
                .name("file-wal-writer".into())
                .spawn(move || writer_loop(writer_shared, rx))
                .map_err(|e| Error::io(&dir, e))?,
        );
        let prealloc_shared = shared.clone();
        threads.push(
            std::thread::Builder::new()
                .name("file-wal-prealloc".into())
                .spawn(move || preallocate_loop(prealloc_shared))
                .map_err(|e| Error::io(&dir, e))?,
        );
        tracing::info!(dir = %dir.display(), records = records.len(), end_lsn, "file WAL opened");
        let wal = FileWal {
            shared,
            appender: Mutex::new(Appender { next_lsn: end_lsn, tx: Some(tx) }),
            threads: Mutex::new(threads),
        };
        Ok((wal, records))
    }

    fn failed(&self) -> Option<Error> {
        let s = self.shared.segments.lock();
        s.failed.as_ref().map(|m| Error::Failed(m.clone())).or(if s.closed { Some(Error::Closed) } else { None })
    }
}

/// Scans the live segments; returns the valid records and the LSN where writing resumes.
fn recover(config: &FileWalConfig, segments: &mut Segments, high_water: u64) -> Result<(Vec<RecoveredRecord>, u64)> {
    let dir = &config.dir;
    let seg = config.segment_bytes;
    let bases: Vec<u64> = segments.live.keys().copied().collect();
    let Some(&first) = bases.first() else { return Ok((Vec::new(), high_water)) };
    let mut records = Vec::new();
    let mut base = first;
    // (segment base, offset inside it) where writing resumes.
    let (end_base, end_off) = loop {
        if !segments.live.contains_key(&base) {
            // The previous segment ended with padding and this one was never written.
            break (base, 0);
        }
        let path = segment_path(dir, base);
        let data = Bytes::from(fs::read(&path).map_err(|e| Error::io(&path, e))?);
        let mut off = 0usize;
        let mut padded = false;
        while (off as u64) < seg {
            match decode_frame(&data.slice(off..), Some(base + off as u64)) {
                Decoded::Record { position, record, len } => {
                    records.push(RecoveredRecord { position, record });
                    off += len;
                }
                Decoded::Padding { .. } => {
                    padded = true;
                    break;
                }
                Decoded::Invalid { reason } => {
                    if off > 0 || base != first {
                        tracing::info!(segment = %path.display(), offset = off, %reason, "file WAL ends here (torn or unwritten tail cut)");
                    }
                    break;
                }
            }
        }
        if padded {
            base += seg;
            continue;
        }
        break (base, off as u64);
    };
    // Any live segment past the end must hold nothing valid; otherwise acknowledged records
    // follow a corrupt frame and cutting there would lose them.
    for &later in bases.iter().filter(|b| **b > end_base) {
        let path = segment_path(dir, later);
        let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
        let mut head = vec![0u8; (seg as usize).min(1 << 20)];
        file.read_exact_at(&mut head, 0).map_err(|e| Error::io(&path, e))?;
        if let Decoded::Record { .. } = decode_frame(&Bytes::from(head), Some(later)) {
            return Err(Error::corrupt(
                path.display().to_string(),
                format!(
                    "valid records follow an invalid frame at LSN {}; refusing to cut acknowledged data",
                    end_base + end_off
                ),
            ));
        }
        // Deleted rather than recycled: a file reused at this same base would hold frames
        // with exactly the positions a reader expects.
        segments.live.remove(&later);
        fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
    }
    if segments.live.contains_key(&end_base) && end_off < seg {
        // Zero the cut tail so a stale frame can never line up with a later write.
        let path = segment_path(dir, end_base);
        let file = OpenOptions::new().write(true).open(&path).map_err(|e| Error::io(&path, e))?;
        let zeroes = vec![0u8; 1 << 20];
        let mut at = end_off;
        while at < seg {
            let n = (seg - at).min(zeroes.len() as u64) as usize;
            file.write_all_at(&zeroes[..n], at).map_err(|e| Error::io(&path, e))?;
            at += n as u64;
        }
        file.sync_data().map_err(|e| Error::io(&path, e))?;
    }
    sync_dir(dir)?;
    Ok((records, end_base + end_off))
}

#[async_trait]
impl Wal for FileWal {
    fn append(&self, record: WalRecord) -> Result<PendingAppend> {
        let seg = self.shared.config.segment_bytes;
        let len = frame_len(record.payload.len()) as u64;
        if len + PADDING_FRAME_LEN as u64 > seg {
            return Err(Error::RecordTooLarge {
                stream_id: record.stream_id,
                bytes: len,
                limit: seg - PADDING_FRAME_LEN as u64,
            });
        }
        if let Some(e) = self.failed() {
            return Err(e);
        }
        let mut appender = self.appender.lock();
        let next = appender.next_lsn;
        let Some(tx) = appender.tx.clone() else { return Err(Error::Closed) };
        let segment_end = (next / seg + 1) * seg;
        let mut lsn = next;
        if lsn + len + PADDING_FRAME_LEN as u64 > segment_end {
            let mut pad = BytesMut::new();
            encode_padding(&mut pad, lsn);
            tx.send(Item { lsn, bytes: pad.freeze(), ack: None }).map_err(|_| Error::Closed)?;
            lsn = segment_end;
        }
        let mut buf = BytesMut::with_capacity(len as usize);
        encode_frame(&mut buf, lsn, &record);
        let (pending, ack) = PendingAppend::new(lsn);
        tx.send(Item { lsn, bytes: buf.freeze(), ack: Some(ack) }).map_err(|_| Error::Closed)?;
        appender.next_lsn = lsn + len;
        Ok(pending)
    }

    async fn trim(&self, position: WalPosition) -> Result<()> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || trim_segments(&shared, position))
            .await
            .map_err(|e| Error::Failed(format!("trim task panicked: {e}")))?
    }

    async fn close(&self) -> Result<()> {
        self.appender.lock().tx = None;
        let threads: Vec<_> = std::mem::take(&mut *self.threads.lock());
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let mut threads = threads.into_iter();
            // The writer drains the queue and exits once every sender is gone.
            if let Some(writer) = threads.next() {
                let _ = writer.join();
            }
            shared.segments.lock().closed = true;
            shared.changed.notify_all();
            for t in threads {
                let _ = t.join();
            }
        })
        .await
        .map_err(|e| Error::Failed(format!("close task panicked: {e}")))?;
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "file"
    }
}

impl Drop for FileWal {
    fn drop(&mut self) {
        self.appender.lock().tx = None;
        let mut s = self.shared.segments.lock();
        s.closed = true;
        drop(s);
        self.shared.changed.notify_all();
    }
}

fn trim_segments(shared: &Shared, position: WalPosition) -> Result<()> {
    let dir = &shared.config.dir;
    let seg = shared.config.segment_bytes;
    let mut s = shared.segments.lock();
    let trimmable: Vec<u64> = s.live.keys().copied().take_while(|base| base + seg - 1 <= position).collect();
    for base in trimmable {
        let from = segment_path(dir, base);
        let free = free_path(dir, base);
        fs::rename(&from, &free).map_err(|e| Error::io(&from, e))?;
        // Each rename is made durable before the next, so a crash leaves the live segments a
        // contiguous run.
        sync_dir(dir)?;
        s.live.remove(&base);
        s.free.push(free);
    }
    drop(s);
    shared.changed.notify_all();
    Ok(())
}

/// Makes `{base}.wal` exist as a live segment: reuses a free file, or creates one when the
/// budget allows, or waits for a trim.
fn obtain_segment(shared: &Shared, base: u64) -> Result<File> {
    let dir = &shared.config.dir;
    let path = segment_path(dir, base);
    let mut s = shared.segments.lock();
    loop {
        if let Some(msg) = &s.failed {
            return Err(Error::Failed(msg.clone()));
        }
        if s.live.contains_key(&base) {
            break;
        }
        if let Some(from) = s.free.pop() {
            fs::rename(&from, &path).map_err(|e| Error::io(&from, e))?;
            sync_dir(dir)?;
            s.live.insert(base, ());
            shared.changed.notify_all();
            break;
        }
        if s.total() < shared.config.max_segments {
            s.creating += 1;
            drop(s);
            let created = create_zeroed(&shared.config, &path);
            s = shared.segments.lock();
            s.creating -= 1;
            created?;
            s.live.insert(base, ());
            break;
        }
        if s.closed {
            // Dropped without `close`: nobody will trim, and waiting would keep the directory
            // locked for good.
            return Err(Error::Closed);
        }
        tracing::warn!(dir = %dir.display(), "file WAL is full; appends wait for uploads to trim it");
        shared.changed.wait(&mut s);
    }
    drop(s);
    OpenOptions::new().read(true).write(true).open(&path).map_err(|e| Error::io(&path, e))
}

/// Writes a zero-filled segment to a temporary name, syncs it, and renames it into place.
fn create_zeroed(config: &FileWalConfig, path: &Path) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file =
        OpenOptions::new().write(true).create(true).truncate(true).open(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let zeroes = vec![0u8; 1 << 20];
    let mut left = config.segment_bytes;
    while left > 0 {
        let n = left.min(zeroes.len() as u64) as usize;
        file.write_all(&zeroes[..n]).map_err(|e| Error::io(&tmp, e))?;
        left -= n as u64;
    }
    file.sync_all().map_err(|e| Error::io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| Error::io(&tmp, e))?;
    sync_dir(&config.dir)
}

/// Keeps one zero-filled free segment ready so that rolling never waits on a 64 MiB write.
fn preallocate_loop(shared: Arc<Shared>) {
    let mut s = shared.segments.lock();
    loop {
        if s.closed || s.failed.is_some() {
            return;
        }
        if s.free.is_empty() && s.total() < shared.config.max_segments {
            s.creating += 1;
            drop(s);
            let spare = shared.config.dir.join(format!("spare-{:016x}.wal", rand::random::<u64>()));
            let result = create_zeroed(&shared.config, &spare);
            s = shared.segments.lock();
            s.creating -= 1;
            match result {
                Ok(()) => {
                    s.free.push(spare);
                    shared.changed.notify_all();
                }
                Err(e) => tracing::warn!(error = %e, "file WAL segment preallocation failed; will create on demand"),
            }
            continue;
        }
        shared.changed.wait(&mut s);
    }
}

fn writer_loop(shared: Arc<Shared>, rx: mpsc::Receiver<Item>) {
    let mut current: Option<(u64, File)> = None;
    while let Ok(first) = rx.recv() {
        let mut items = vec![first];
        let mut bytes = items[0].bytes.len();
        while bytes < shared.config.max_write_bytes {
            match rx.try_recv() {
                Ok(item) => {
                    bytes += item.bytes.len();
                    items.push(item);
                }
                Err(_) => break,
            }
        }
        let failed = shared.segments.lock().failed.clone();
        let result = match failed {
            Some(msg) => Err(Error::Failed(msg)),
            None => write_group(&shared, &mut current, &items),
        };
        if let Err(e) = &result {
            let mut s = shared.segments.lock();
            if s.failed.is_none() {
                if !matches!(e, Error::Closed) {
                    tracing::error!(error = %e, "file WAL write failed; the WAL refuses further appends until reopened");
                }
                s.failed = Some(format!("file WAL write failed: {e}"));
            }
            drop(s);
            shared.changed.notify_all();
        }
        for item in items {
            if let Some(ack) = item.ack {
                let _ = ack.send(result.clone());
            }
        }
    }
}

/// Writes `items` (in LSN order) and syncs; a segment is synced before the next is touched.
fn write_group(shared: &Shared, current: &mut Option<(u64, File)>, items: &[Item]) -> Result<()> {
    let seg = shared.config.segment_bytes;
    let mut buf: Vec<u8> = Vec::with_capacity(items.iter().map(|i| i.bytes.len()).sum());
    let mut buf_lsn = items.first().map(|i| i.lsn).unwrap_or(0);
    for item in items {
        let base = item.lsn / seg * seg;
        let same_segment = current.as_ref().is_some_and(|(b, _)| *b == base);
        if !same_segment || item.lsn != buf_lsn + buf.len() as u64 {
            flush(shared, current, buf_lsn, &buf)?;
            buf.clear();
            buf_lsn = item.lsn;
            if !same_segment {
                *current = Some((base, obtain_segment(shared, base)?));
            }
        }
        buf.extend_from_slice(&item.bytes);
    }
    flush(shared, current, buf_lsn, &buf)
}

fn flush(shared: &Shared, current: &Option<(u64, File)>, lsn: u64, buf: &[u8]) -> Result<()> {
    let Some((base, file)) = current else { return Ok(()) };
    if buf.is_empty() {
        return Ok(());
    }
    let path = segment_path(&shared.config.dir, *base);
    file.write_all_at(buf, lsn - base).map_err(|e| Error::io(&path, e))?;
    file.sync_data().map_err(|e| Error::io(&path, e))
}
