//! The metadata log: a totally ordered log of entries in the object store, each written with a
//! conditional create at the next sequence number, plus snapshots and truncation.
//!
//! Keys: `{prefix}/log/{seq:020}` (entries, from 1) and `{prefix}/snapshot/{seq:020}` (the
//! state after applying every entry up to `seq`).
//!
//! Invariants:
//! - Exactly one writer wins each sequence number (conditional create). A writer that loses
//!   gets [`Error::Fenced`] and must [`MetadataLog::catch_up`] (re-read what others wrote)
//!   before it may append again. So every entry was written by someone who had read all the
//!   entries before it: one linear history.
//! - Truncation deletes only entries *below* a snapshot (the snapshot's own entry stays, so
//!   the newest entry always exists), and only once that snapshot is older than
//!   `truncate_grace`.
//! - A writer that has not confirmed its position for longer than `lease` (which must be well
//!   under `truncate_grace`) checks after a successful append that the previous entry still
//!   exists. Were it a zombie writing into a truncated range, the previous entry would be gone
//!   and it learns it is fenced rather than believing a write nobody will read.
//! - Such a zombie's entry stays in the truncated range, below some snapshot. So a reader that
//!   has not confirmed its position for longer than `lease` restarts from the newest snapshot
//!   at or past its position, if there is one, before reading entries: it never reads the
//!   truncated range, where a zombie's entry may sit in place of the real one.
//! - A corrupt (torn) entry is one whose writer crashed mid-write; it was never acknowledged.
//!   Readers skip it as void and go on.
//!
//! Only the current writer touches the bucket in steady state; LIST is used when opening and
//! truncating, never in a polling loop.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::clock::SharedClock;
use crate::object_store::SharedStore;
use crate::{Error, Result};

const MAGIC: &[u8; 4] = b"AQML";
const VERSION: u8 = 1;
const KIND_ENTRY: u8 = 1;
const KIND_SNAPSHOT: u8 = 2;
const HEADER_LEN: usize = 4 + 1 + 1 + 8 * 3 + 4;

#[derive(Debug, Clone)]
pub struct MetadataLogConfig {
    /// Key prefix, e.g. `meta` (brokers) or `warehouse/meta` (query nodes).
    pub prefix: String,
    /// See the module docs. Must be well under `truncate_grace`.
    pub lease: Duration,
    pub truncate_grace: Duration,
}

impl Default for MetadataLogConfig {
    fn default() -> Self {
        MetadataLogConfig {
            prefix: "meta".into(),
            lease: Duration::from_secs(10),
            truncate_grace: Duration::from_secs(120),
        }
    }
}

/// What opening the log found: the newest readable snapshot and every entry after it.
#[derive(Debug, Default)]
pub struct Recovered {
    pub snapshot: Option<(u64, Bytes)>,
    /// `(seq, payload)`, consecutive except for skipped void (torn) entries.
    pub entries: Vec<(u64, Bytes)>,
}

#[derive(Debug)]
pub struct MetadataLog {
    store: SharedStore,
    config: MetadataLogConfig,
    clock: SharedClock,
    writer: u64,
    next_seq: u64,
    /// Clock reading taken before the last operation that proved our position current.
    confirmed_ms: u64,
    fenced: bool,
    /// Snapshots we wrote: (seq, written at).
    snapshots: Vec<(u64, u64)>,
}

fn encode(kind: u8, writer: u64, seq: u64, created_ms: u64, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(HEADER_LEN + payload.len() + 4);
    out.put_slice(MAGIC);
    out.put_u8(VERSION);
    out.put_u8(kind);
    out.put_u64_le(writer);
    out.put_u64_le(seq);
    out.put_u64_le(created_ms);
    out.put_u32_le(payload.len() as u32);
    out.put_slice(payload);
    let crc = crc32c::crc32c(&out);
    out.put_u32_le(crc);
    out.freeze()
}

fn decode(key: &str, kind: u8, seq: u64, data: &Bytes) -> Result<Bytes> {
    let corrupt = |reason: String| Error::corrupt(key, reason);
    if data.len() < HEADER_LEN + 4 {
        return Err(corrupt(format!("{} bytes is too short", data.len())));
    }
    let stored = (&data[data.len() - 4..]).get_u32_le();
    if crc32c::crc32c(&data[..data.len() - 4]) != stored {
        return Err(corrupt("checksum mismatch".into()));
    }
    let mut h = &data[..HEADER_LEN];
    if &h[..4] != MAGIC {
        return Err(corrupt("bad magic".into()));
    }
    h.advance(4);
    let (version, got_kind) = (h.get_u8(), h.get_u8());
    let (_writer, got_seq, _created) = (h.get_u64_le(), h.get_u64_le(), h.get_u64_le());
    let len = h.get_u32_le() as usize;
    if version > VERSION {
        // Intact, but from a newer release: never skip it as if it were torn.
        return Err(Error::Failed(format!(
            "{key} was written by a newer format version {version} (this build reads {VERSION}); upgrade this node"
        )));
    }
    if version != VERSION || got_kind != kind || got_seq != seq || HEADER_LEN + len + 4 != data.len() {
        return Err(corrupt(format!(
            "header mismatch: version {version}, kind {got_kind}, seq {got_seq}, length {len}"
        )));
    }
    Ok(data.slice(HEADER_LEN..HEADER_LEN + len))
}

fn parse_seq(key: &str, prefix: &str) -> Option<u64> {
    key.strip_prefix(prefix)?.parse().ok()
}

impl MetadataLog {
    fn log_prefix(&self) -> String {
        format!("{}/log/", self.config.prefix)
    }

    fn snapshot_prefix(&self) -> String {
        format!("{}/snapshot/", self.config.prefix)
    }

    fn entry_key(&self, seq: u64) -> String {
        format!("{}{seq:020}", self.log_prefix())
    }

    fn snapshot_key(&self, seq: u64) -> String {
        format!("{}{seq:020}", self.snapshot_prefix())
    }

    /// Opens the log and reads it: newest snapshot, then every entry after it. Writes nothing;
    /// the returned log appends after the last entry read.
    pub async fn open(store: SharedStore, config: MetadataLogConfig, clock: SharedClock) -> Result<(Self, Recovered)> {
        let now = clock.now_ms();
        let mut log = MetadataLog {
            store,
            config,
            clock,
            writer: rand::random(),
            next_seq: 1,
            confirmed_ms: now,
            fenced: false,
            snapshots: Vec::new(),
        };
        let recovered = log.read_from_newest_snapshot().await?;
        Ok((log, recovered))
    }

    async fn newest_snapshot(&self, at_least: u64) -> Result<Option<(u64, Bytes)>> {
        let prefix = self.snapshot_prefix();
        let mut seqs: Vec<u64> =
            self.store.list(&prefix).await?.iter().filter_map(|m| parse_seq(&m.key, &prefix)).collect();
        seqs.sort_unstable();
        // An older snapshot is a safe fallback: truncation deletes the entries after a
        // snapshot only together with that snapshot. But when snapshots exist and none can be
        // read, the entries below them may be gone, and replaying from further back would
        // silently build a wrong state.
        let mut unreadable = Vec::new();
        for seq in seqs.into_iter().rev().filter(|s| *s >= at_least) {
            let key = self.snapshot_key(seq);
            match self.store.get(&key).await {
                Ok(data) => match decode(&key, KIND_SNAPSHOT, seq, &data) {
                    Ok(payload) => return Ok(Some((seq, payload))),
                    Err(e @ Error::Failed(_)) => return Err(e),
                    Err(e) => {
                        tracing::warn!(error = %e, "skipping unreadable metadata snapshot");
                        unreadable.push(seq);
                    }
                },
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        if !unreadable.is_empty() {
            return Err(Error::corrupt(
                self.snapshot_prefix(),
                format!("metadata snapshots {unreadable:?} are unreadable and no older snapshot exists; refusing to rebuild state from a truncated log"),
            ));
        }
        Ok(None)
    }

    async fn read_from_newest_snapshot(&mut self) -> Result<Recovered> {
        let snapshot = self.newest_snapshot(0).await?;
        let seq = snapshot.as_ref().map(|(s, _)| s + 1).unwrap_or(1);
        self.read_forward(seq, Recovered { snapshot, entries: Vec::new() }).await
    }

    /// Reads entries others appended since our position (after [`Error::Fenced`], or to
    /// follow a writer). If the log was truncated past us, returns the snapshot to restart
    /// from.
    pub async fn catch_up(&mut self) -> Result<Recovered> {
        let mut recovered = Recovered::default();
        let mut seq = self.next_seq;
        // Within the lease nothing at or past our position can have been truncated. Past it
        // (always so for a writer just fenced as a zombie), the entry at our position may be a
        // zombie's (our own rejected one, say), followed by real entries, so reading on would
        // splice it into the history.
        let idle = self.clock.now_ms().saturating_sub(self.confirmed_ms);
        if idle > self.config.lease.as_millis() as u64 {
            if let Some(snapshot) = self.newest_snapshot(seq).await? {
                seq = snapshot.0 + 1;
                recovered.snapshot = Some(snapshot);
            }
        }
        self.read_forward(seq, recovered).await
    }

    /// Reads entries from `seq` until the first missing one. A missing entry is either the end
    /// of the log or one truncated under us after a newer snapshot was written; in that case
    /// reading restarts from that snapshot.
    async fn read_forward(&mut self, mut seq: u64, mut recovered: Recovered) -> Result<Recovered> {
        loop {
            let key = self.entry_key(seq);
            let started = self.clock.now_ms();
            match self.store.get(&key).await {
                Ok(data) => {
                    match decode(&key, KIND_ENTRY, seq, &data) {
                        Ok(payload) => recovered.entries.push((seq, payload)),
                        Err(e @ Error::Failed(_)) => return Err(e),
                        Err(e) => {
                            tracing::warn!(error = %e, seq, "skipping void metadata log entry (torn write, never acknowledged)")
                        }
                    }
                    self.confirmed_ms = started;
                    seq += 1;
                }
                Err(Error::NotFound { .. }) => match self.newest_snapshot(seq).await? {
                    Some(snapshot) => {
                        seq = snapshot.0 + 1;
                        recovered = Recovered { snapshot: Some(snapshot), entries: Vec::new() };
                    }
                    None => {
                        // The end of the log as of `started`: our position is confirmed.
                        self.confirmed_ms = self.confirmed_ms.max(started);
                        break;
                    }
                },
                Err(e) => return Err(e),
            }
        }
        self.next_seq = seq;
        self.fenced = false;
        Ok(recovered)
    }

    /// Whether another writer may have appended since our position: true if the entry at our
    /// position exists, or if we have not confirmed our position within the lease (then only
    /// [`Self::catch_up`] can tell). One HEAD; an absent entry confirms our position.
    pub async fn poll_new(&mut self) -> Result<bool> {
        let started = self.clock.now_ms();
        if self.fenced || started.saturating_sub(self.confirmed_ms) > self.config.lease.as_millis() as u64 {
            return Ok(true);
        }
        if self.store.head(&self.entry_key(self.next_seq)).await?.is_some() {
            return Ok(true);
        }
        // Nothing at our position now, so no snapshot past it can be truncated for a grace.
        self.confirmed_ms = started;
        Ok(false)
    }

    /// Moves our position forward to `next_seq` (entries before it were learnt from the
    /// writer, not read here), so that [`Self::catch_up`] reads only what follows them.
    pub fn advance_to(&mut self, next_seq: u64) {
        self.next_seq = self.next_seq.max(next_seq);
    }

    /// The sequence number the next append will claim.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// This writer's random identity (in every entry it writes).
    pub fn writer_id(&self) -> u64 {
        self.writer
    }

    /// Appends one entry at the next sequence number. [`Error::Fenced`] if another writer
    /// claimed it (or this writer turns out to have been a zombie); then [`Self::catch_up`]
    /// before trying again.
    pub async fn append(&mut self, payload: &[u8]) -> Result<u64> {
        if self.fenced {
            return Err(Error::Fenced("metadata log writer was fenced; catch up before appending".into()));
        }
        let seq = self.next_seq;
        let started = self.clock.now_ms();
        let data = encode(KIND_ENTRY, self.writer, seq, started, payload);
        match self.store.put_if_absent(&self.entry_key(seq), data).await {
            Ok(()) => {}
            Err(Error::AlreadyExists { .. }) => {
                self.fenced = true;
                return Err(Error::Fenced(format!("metadata log sequence {seq} was written by another writer")));
            }
            Err(e) => return Err(e),
        }
        let idle = self.clock.now_ms().saturating_sub(self.confirmed_ms);
        if idle > self.config.lease.as_millis() as u64 && !self.predecessor_exists(seq).await? {
            self.fenced = true;
            return Err(Error::Fenced(format!(
                "metadata log entry {seq} landed in a truncated range after {idle} ms without confirmation; another writer took over"
            )));
        }
        self.confirmed_ms = started;
        self.next_seq = seq + 1;
        Ok(seq)
    }

    async fn predecessor_exists(&self, seq: u64) -> Result<bool> {
        if seq > 1 {
            return Ok(self.store.head(&self.entry_key(seq - 1)).await?.is_some());
        }
        // The first entry has no predecessor: it is genuine only if nobody has snapshotted.
        Ok(self.newest_snapshot(1).await?.is_none())
    }

    /// Writes a snapshot of the state after entry `seq` (which this writer has applied).
    pub async fn write_snapshot(&mut self, seq: u64, state: &[u8]) -> Result<()> {
        let now = self.clock.now_ms();
        self.store.put(&self.snapshot_key(seq), encode(KIND_SNAPSHOT, self.writer, seq, now, state)).await?;
        self.snapshots.push((seq, now));
        Ok(())
    }

    /// Deletes entries below the newest snapshot this writer wrote at least `truncate_grace`
    /// ago, and snapshots older than that one. Returns how many objects were deleted.
    pub async fn truncate(&mut self) -> Result<usize> {
        let now = self.clock.now_ms();
        let grace = self.config.truncate_grace.as_millis() as u64;
        let Some(&(upto, _)) = self.snapshots.iter().rev().find(|(_, at)| at + grace <= now) else { return Ok(0) };
        let mut deleted = 0;
        let log_prefix = self.log_prefix();
        for meta in self.store.list(&log_prefix).await? {
            match parse_seq(&meta.key, &log_prefix) {
                // Ascending order: a crash leaves a contiguous tail.
                Some(seq) if seq < upto => {
                    self.store.delete(&meta.key).await?;
                    deleted += 1;
                }
                _ => {}
            }
        }
        let snap_prefix = self.snapshot_prefix();
        for meta in self.store.list(&snap_prefix).await? {
            if parse_seq(&meta.key, &snap_prefix).is_some_and(|seq| seq < upto) {
                self.store.delete(&meta.key).await?;
                deleted += 1;
            }
        }
        self.snapshots.retain(|(seq, _)| *seq >= upto);
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_from_a_newer_version_are_an_error_not_a_void() {
        let mut data = encode(KIND_ENTRY, 1, 7, 0, b"payload").to_vec();
        data[4] = VERSION + 1;
        let n = data.len();
        let crc = crc32c::crc32c(&data[..n - 4]);
        data[n - 4..].copy_from_slice(&crc.to_le_bytes());
        let err = decode("k", KIND_ENTRY, 7, &Bytes::from(data)).unwrap_err();
        assert!(matches!(err, Error::Failed(ref m) if m.contains("newer format version")), "{err}");
        let torn = encode(KIND_ENTRY, 1, 7, 0, b"payload").slice(..20);
        assert!(matches!(decode("k", KIND_ENTRY, 7, &torn), Err(Error::Corrupt { .. })));
    }
}
