//! The S3 WAL: one object per group commit, per-node epochs, conditional creates for fencing.
//!
//! Keys, under `{prefix}/{node_id}/`:
//! - `{epoch:010}/start`: claims an epoch for one writer incarnation (conditional create; of
//!   two processes opening the same node's WAL at once, one loses and is fenced).
//! - `{epoch:010}/{seq:020}`: a data object holding every record of one group commit, or a
//!   fence. Sequence numbers start at 0 per epoch and are strictly sequential, each written
//!   with a conditional create.
//!
//! Fencing: to take over a node's WAL (its own restart, or a peer after a crash), a recoverer
//! lists the node's objects and, in every older epoch, reads the data objects in order up to
//! the first sequence number that did not exist, and claims that number with a fence object.
//! The old writer acknowledges in order, so everything it acknowledged lies below its first
//! failed sequence, and its next write, the fenced number, fails: a paused writer that wakes
//! up cannot acknowledge anything more. Objects that land above a fence were never
//! acknowledged and are ignored.
//!
//! Reading starts at an epoch's lowest listed sequence number, which is only right if every
//! number below it was acknowledged and then trimmed, never lost. So an epoch's first object is
//! uploaded alone (pipelining starts once it is acknowledged), and nothing is uploaded after an
//! upload failed: a lost object never has a later one of its epoch in the bucket, except above
//! a kept, acknowledged one, where reading stops at the gap.
//!
//! Positions increase across incarnations: a new epoch starts after the last record found and
//! after the position recorded in every `start` marker, which stays in the bucket as long as
//! its epoch is the newest, even when all data objects were trimmed.
//!
//! Trimming deletes data objects in ascending order, one at a time, and always keeps the
//! newest one of the live epoch, so the live epoch's sequence space stays a contiguous run
//! whose end a recoverer can find. LIST is only used when opening.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::stream::{FuturesOrdered, StreamExt};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{decode_frame, encode_frame, Decoded, PendingAppend, RecoveredRecord, Wal, WalPosition, WalRecord};
use crate::clock::SharedClock;
use crate::object_store::SharedStore;
use crate::{Error, Result};

const MAGIC: &[u8; 4] = b"AQWL";
const VERSION: u8 = 1;
const HEADER_LEN: usize = 4 + 1 + 1 + 8 * 6 + 4;
const KIND_DATA: u8 = 0;
const KIND_START: u8 = 1;
const KIND_FENCE: u8 = 2;

#[derive(Debug, Clone)]
pub struct S3WalConfig {
    pub node_id: u64,
    /// Key prefix of all WALs in the bucket.
    pub prefix: String,
    /// A group commit is sealed as soon as no upload is in flight; while uploads are in flight
    /// it grows until it holds this many bytes...
    pub max_batch_bytes: usize,
    /// ...or its first record has waited this long (and an upload slot is free).
    pub max_batch_delay: Duration,
    /// Group commits uploading at once (acknowledged in order).
    pub max_inflight: usize,
    /// Seal a batch as soon as no upload is in flight (group commit: lowest latency). When
    /// false, batches are sealed only by size or delay (fewer, larger objects at low load).
    pub seal_when_idle: bool,
    /// How long the fence of a dead epoch is kept before that epoch's leftovers are deleted.
    pub fence_retention: Duration,
}

impl S3WalConfig {
    pub fn new(node_id: u64) -> Self {
        S3WalConfig {
            node_id,
            prefix: "wal".to_string(),
            max_batch_bytes: 8 << 20,
            max_batch_delay: Duration::from_millis(100),
            max_inflight: 4,
            seal_when_idle: true,
            fence_retention: Duration::from_secs(24 * 3600),
        }
    }

    fn node_prefix(&self) -> String {
        format!("{}/{}/", self.prefix, self.node_id)
    }

    fn data_key(&self, epoch: u64, seq: u64) -> String {
        format!("{}{epoch:010}/{seq:020}", self.node_prefix())
    }

    fn start_key(&self, epoch: u64) -> String {
        format!("{}{epoch:010}/start", self.node_prefix())
    }
}

/// The fixed header of every WAL object. `writer` is a random identity of the incarnation
/// that wrote it, so a retried conditional create can recognise its own object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    kind: u8,
    node_id: u64,
    epoch: u64,
    seq: u64,
    created_ms: u64,
    writer: u64,
    /// Data: position of the first record. Start/fence: the next position the writer uses.
    position: u64,
    records: u32,
}

fn encode_object(header: &Header, frames: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(HEADER_LEN + frames.len() + 4);
    out.put_slice(MAGIC);
    out.put_u8(VERSION);
    out.put_u8(header.kind);
    for v in [header.node_id, header.epoch, header.seq, header.created_ms, header.writer, header.position] {
        out.put_u64_le(v);
    }
    out.put_u32_le(header.records);
    out.put_slice(frames);
    let crc = crc32c::crc32c(&out);
    out.put_u32_le(crc);
    out.freeze()
}

/// Decodes and checks a whole WAL object: header, trailer CRC, every frame and position.
fn decode_object(key: &str, data: &Bytes) -> Result<(Header, Vec<RecoveredRecord>)> {
    let corrupt = |reason: String| Error::corrupt(key, reason);
    if data.len() < HEADER_LEN + 4 {
        return Err(corrupt(format!("{} bytes is shorter than a WAL object", data.len())));
    }
    let body = &data[..data.len() - 4];
    let stored = (&data[data.len() - 4..]).get_u32_le();
    if crc32c::crc32c(body) != stored {
        return Err(corrupt("object checksum mismatch (torn or damaged write)".into()));
    }
    let mut h = &body[..HEADER_LEN];
    if &h[..4] != MAGIC {
        return Err(corrupt("bad magic".into()));
    }
    h.advance(4);
    let version = h.get_u8();
    if version != VERSION {
        return Err(corrupt(format!("unsupported WAL object version {version}")));
    }
    let header = Header {
        kind: h.get_u8(),
        node_id: h.get_u64_le(),
        epoch: h.get_u64_le(),
        seq: h.get_u64_le(),
        created_ms: h.get_u64_le(),
        writer: h.get_u64_le(),
        position: h.get_u64_le(),
        records: h.get_u32_le(),
    };
    let mut records = Vec::with_capacity(header.records as usize);
    let mut frames = data.slice(HEADER_LEN..data.len() - 4);
    for i in 0..header.records as u64 {
        match decode_frame(&frames, Some(header.position + i)) {
            Decoded::Record { position, record, len } => {
                records.push(RecoveredRecord { position, record });
                frames.advance(len);
            }
            other => return Err(corrupt(format!("record {i}: {other:?}"))),
        }
    }
    if !frames.is_empty() {
        return Err(corrupt(format!("{} trailing bytes after {} records", frames.len(), header.records)));
    }
    Ok((header, records))
}

struct Item {
    frame: Bytes,
    ack: oneshot::Sender<Result<()>>,
}

#[derive(Debug, Default)]
struct WalState {
    failed: Option<String>,
    /// Data objects not yet trimmed: (epoch, seq) -> last position they hold.
    objects: BTreeMap<(u64, u64), u64>,
    /// Older epochs' start markers, deleted once their data is gone.
    old_starts: Vec<u64>,
}

#[derive(Debug)]
struct Shared {
    store: SharedStore,
    config: S3WalConfig,
    clock: SharedClock,
    epoch: u64,
    writer: u64,
    state: Mutex<WalState>,
    trim_lock: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
struct Appender {
    next_position: u64,
    tx: Option<mpsc::UnboundedSender<(u64, Item)>>,
}

/// The S3 WAL. See the module docs.
#[derive(Debug)]
pub struct S3Wal {
    shared: Arc<Shared>,
    appender: Mutex<Appender>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Item").field("frame_len", &self.frame.len()).finish()
    }
}

/// What fencing a node's older epochs found.
#[derive(Debug, Default)]
pub(crate) struct FencedWal {
    pub(crate) records: Vec<RecoveredRecord>,
    objects: BTreeMap<(u64, u64), u64>,
    max_epoch: u64,
    next_position: u64,
    old_starts: Vec<u64>,
    expired: Vec<String>,
}

/// Fences every epoch of `config.node_id`'s WAL (up to `up_to_epoch`, when given: a peer
/// taking over one dead incarnation leaves a newer one alone) and reads back every record
/// that may have been acknowledged. Used by [`S3Wal::open`] and by a peer taking over a
/// crashed node ([`take_over`]).
pub(crate) async fn fence_node(
    store: &SharedStore,
    config: &S3WalConfig,
    clock: &SharedClock,
    writer: u64,
    up_to_epoch: Option<u64>,
) -> Result<FencedWal> {
    let prefix = config.node_prefix();
    let mut epochs: BTreeMap<u64, (bool, Vec<u64>)> = BTreeMap::new();
    for meta in store.list(&prefix).await? {
        let rest = &meta.key[prefix.len()..];
        let parsed = rest.split_once('/').and_then(|(e, s)| Some((e.parse::<u64>().ok()?, s)));
        match parsed {
            Some((epoch, "start")) => epochs.entry(epoch).or_default().0 = true,
            Some((epoch, seq)) => match seq.parse::<u64>() {
                Ok(seq) => epochs.entry(epoch).or_default().1.push(seq),
                Err(_) => tracing::warn!(key = %meta.key, "ignoring unexpected object in the WAL prefix"),
            },
            None => tracing::warn!(key = %meta.key, "ignoring unexpected object in the WAL prefix"),
        }
    }
    if let Some(up_to) = up_to_epoch {
        epochs.retain(|e, _| *e <= up_to);
    }
    let mut out = FencedWal { max_epoch: epochs.keys().next_back().copied().unwrap_or(0), ..Default::default() };
    let now = clock.now_ms();
    for (&epoch, (has_start, seqs)) in &epochs {
        if *has_start {
            out.next_position = out.next_position.max(start_position(store, config, epoch).await?);
        }
        let listed: std::collections::BTreeSet<u64> = seqs.iter().copied().collect();
        let mut seq = listed.first().copied().unwrap_or(0);
        loop {
            let key = config.data_key(epoch, seq);
            let data = if listed.contains(&seq) {
                match store.get(&key).await {
                    Ok(data) => data,
                    // Deleted since the listing: trimming runs in ascending order, so
                    // everything below is gone as well and was already persisted.
                    Err(Error::NotFound { .. }) => {
                        seq += 1;
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            } else {
                let fence = Header {
                    kind: KIND_FENCE,
                    node_id: config.node_id,
                    epoch,
                    seq,
                    created_ms: now,
                    writer,
                    position: 0,
                    records: 0,
                };
                match store.put_if_absent(&key, encode_object(&fence, &[])).await {
                    Ok(()) => {
                        tracing::info!(node = config.node_id, epoch, seq, "fenced WAL epoch");
                        break;
                    }
                    // The old writer's object landed after our listing: read it.
                    Err(Error::AlreadyExists { .. }) => store.get(&key).await?,
                    Err(e) => return Err(e),
                }
            };
            // The header must be the one written at this key: a misplaced or unknown object is
            // treated like a torn one.
            let decoded = decode_object(&key, &data).and_then(|(h, records)| {
                let placed = h.node_id == config.node_id && h.epoch == epoch && h.seq == seq;
                if placed && (h.kind == KIND_DATA || h.kind == KIND_FENCE) {
                    Ok((h, records))
                } else {
                    Err(Error::corrupt(
                        &key,
                        format!("header names node {} epoch {} seq {} kind {}", h.node_id, h.epoch, h.seq, h.kind),
                    ))
                }
            });
            match decoded {
                Ok((header, _)) if header.kind == KIND_FENCE => {
                    // A long-dead epoch's leftovers go once nothing below its fence still waits
                    // to be persisted (that is the trim's job, after the caller commits it):
                    // its start marker, its fence and whatever landed above the fence.
                    let unsaved = out.objects.keys().any(|(e, _)| *e == epoch);
                    let expired = header.created_ms + config.fence_retention.as_millis() as u64 <= now;
                    if epoch < out.max_epoch && expired && !unsaved {
                        out.expired.push(key.clone());
                        if *has_start {
                            out.expired.push(config.start_key(epoch));
                        }
                        out.expired.extend(listed.iter().filter(|s| **s > seq).map(|s| config.data_key(epoch, *s)));
                    }
                    break;
                }
                Ok((header, records)) => {
                    if let Some(last) = records.last() {
                        out.next_position = out.next_position.max(last.position + 1);
                        out.objects.insert((epoch, seq), last.position);
                    }
                    out.next_position = out.next_position.max(header.position);
                    out.records.extend(records);
                }
                Err(e) => {
                    // A torn object is a write that was never acknowledged, and nothing after
                    // it was either: stop reading this epoch and fence above what exists.
                    tracing::warn!(error = %e, "WAL object is corrupt; records from here on in this epoch were never acknowledged");
                    seq = listed.iter().copied().filter(|s| *s > seq).max().unwrap_or(seq) + 1;
                    continue;
                }
            }
            seq += 1;
        }
        if *has_start {
            out.old_starts.push(epoch);
        }
    }
    out.records.sort_by_key(|r| r.position);
    Ok(out)
}

/// A dead node's WAL, taken over by a peer: its records, and the objects to delete once they
/// are persisted elsewhere.
#[derive(Debug)]
pub struct TakenOver {
    pub records: Vec<RecoveredRecord>,
    objects: Vec<String>,
}

/// Takes over `config.node_id`'s WAL up to epoch `up_to_epoch` (the dead incarnation's):
/// fences it, so that process can never acknowledge anything again, and returns every record
/// it may have acknowledged. Persist them, then [`TakenOver::discard`] the objects.
pub async fn take_over(
    store: &SharedStore,
    config: &S3WalConfig,
    clock: &SharedClock,
    up_to_epoch: u64,
) -> Result<TakenOver> {
    let fenced = fence_node(store, config, clock, rand::random(), Some(up_to_epoch)).await?;
    let objects = fenced.objects.keys().map(|(e, s)| config.data_key(*e, *s)).collect();
    tracing::info!(
        node = config.node_id,
        up_to_epoch,
        records = fenced.records.len(),
        "took over a dead node's S3 WAL"
    );
    Ok(TakenOver { records: fenced.records, objects })
}

impl TakenOver {
    /// Deletes the data objects read (ascending, as trimming does; the fences stay, so a
    /// reader finds where each epoch ended).
    pub async fn discard(self, store: &SharedStore) -> Result<()> {
        for key in self.objects {
            store.delete(&key).await?;
        }
        Ok(())
    }
}

/// The position `epoch`'s writer started at, from its start marker; 0 when the marker is gone
/// (deleted since the listing) or torn (its writer never opened, so it wrote nothing).
async fn start_position(store: &SharedStore, config: &S3WalConfig, epoch: u64) -> Result<u64> {
    let key = config.start_key(epoch);
    let data = match store.get(&key).await {
        Ok(data) => data,
        Err(Error::NotFound { .. }) => return Ok(0),
        Err(e) => return Err(e),
    };
    match decode_object(&key, &data) {
        Ok((header, _)) => Ok(header.position),
        Err(e) => {
            tracing::warn!(error = %e, "WAL start marker is corrupt; its epoch never wrote");
            Ok(0)
        }
    }
}

impl S3Wal {
    /// Opens node `config.node_id`'s WAL: fences every earlier epoch, returns the records they
    /// hold (the caller persists them and then trims), and starts a new epoch.
    pub async fn open(
        store: SharedStore,
        config: S3WalConfig,
        clock: SharedClock,
    ) -> Result<(Self, Vec<RecoveredRecord>)> {
        let writer = rand::random::<u64>();
        let fenced = fence_node(&store, &config, &clock, writer, None).await?;
        let epoch = fenced.max_epoch + 1;
        let start = Header {
            kind: KIND_START,
            node_id: config.node_id,
            epoch,
            seq: 0,
            created_ms: clock.now_ms(),
            writer,
            position: fenced.next_position,
            records: 0,
        };
        match store.put_if_absent(&config.start_key(epoch), encode_object(&start, &[])).await {
            Ok(()) => {}
            Err(Error::AlreadyExists { .. }) => {
                return Err(Error::Fenced(format!(
                    "another process opened node {}'s S3 WAL at epoch {epoch} concurrently",
                    config.node_id
                )))
            }
            Err(e) => return Err(e),
        }
        for key in &fenced.expired {
            store.delete(key).await?;
        }
        tracing::info!(node = config.node_id, epoch, recovered = fenced.records.len(), "S3 WAL opened");
        let shared = Arc::new(Shared {
            store,
            config,
            clock,
            epoch,
            writer,
            state: Mutex::new(WalState { failed: None, objects: fenced.objects, old_starts: fenced.old_starts }),
            trim_lock: tokio::sync::Mutex::new(()),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(writer_task(shared.clone(), rx));
        let wal = S3Wal {
            shared,
            appender: Mutex::new(Appender { next_position: fenced.next_position, tx: Some(tx) }),
            task: Mutex::new(Some(task)),
        };
        Ok((wal, fenced.records))
    }

    /// The epoch this incarnation writes in.
    pub fn epoch(&self) -> u64 {
        self.shared.epoch
    }
}

#[async_trait]
impl Wal for S3Wal {
    fn append(&self, record: WalRecord) -> Result<PendingAppend> {
        if let Some(msg) = &self.shared.state.lock().failed {
            return Err(Error::Failed(msg.clone()));
        }
        let mut appender = self.appender.lock();
        let Some(tx) = appender.tx.clone() else { return Err(Error::Closed) };
        let position = appender.next_position;
        let mut frame = BytesMut::new();
        encode_frame(&mut frame, position, &record);
        let (pending, ack) = PendingAppend::new(position);
        tx.send((position, Item { frame: frame.freeze(), ack })).map_err(|_| Error::Closed)?;
        appender.next_position += 1;
        Ok(pending)
    }

    async fn trim(&self, position: WalPosition) -> Result<()> {
        let shared = &self.shared;
        let _one_at_a_time = shared.trim_lock.lock().await;
        let doomed: Vec<(u64, u64)> = {
            let state = shared.state.lock();
            let newest_live = state.objects.keys().rfind(|(e, _)| *e == shared.epoch).copied();
            state
                .objects
                .iter()
                .take_while(|(_, last)| **last <= position)
                .map(|(k, _)| *k)
                .filter(|k| Some(*k) != newest_live)
                .collect()
        };
        for (epoch, seq) in doomed {
            shared.store.delete(&shared.config.data_key(epoch, seq)).await?;
            shared.state.lock().objects.remove(&(epoch, seq));
        }
        let finished: Vec<u64> = {
            let state = shared.state.lock();
            state.old_starts.iter().copied().filter(|e| !state.objects.keys().any(|(oe, _)| oe == e)).collect()
        };
        for epoch in finished {
            shared.store.delete(&shared.config.start_key(epoch)).await?;
            shared.state.lock().old_starts.retain(|e| *e != epoch);
        }
        Ok(())
    }

    async fn close(&self) -> Result<()> {
        self.appender.lock().tx = None;
        let task = self.task.lock().take();
        if let Some(task) = task {
            let _ = task.await;
        }
        match &self.shared.state.lock().failed {
            Some(msg) => Err(Error::Failed(msg.clone())),
            None => Ok(()),
        }
    }

    fn kind(&self) -> &'static str {
        "s3"
    }
}

type Upload = futures::future::BoxFuture<'static, (u64, u64, Result<()>, Vec<oneshot::Sender<Result<()>>>)>;

async fn writer_task(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<(u64, Item)>) {
    let config = shared.config.clone();
    let mut next_seq = 0u64;
    let mut batch: Vec<(u64, Item)> = Vec::new();
    let mut batch_bytes = 0usize;
    let mut deadline: Option<tokio::time::Instant> = None;
    let mut inflight: FuturesOrdered<Upload> = FuturesOrdered::new();
    let mut open = true;
    // The epoch's first object goes alone (see the module docs).
    let mut first_acknowledged = false;
    loop {
        // Take everything already queued before deciding: appends that arrived together share
        // an object.
        while open && batch_bytes < config.max_batch_bytes {
            match rx.try_recv() {
                Ok(item) => {
                    if let Some(msg) = &shared.state.lock().failed {
                        let _ = item.1.ack.send(Err(Error::Failed(msg.clone())));
                        continue;
                    }
                    if batch.is_empty() {
                        deadline = Some(tokio::time::Instant::now() + config.max_batch_delay);
                    }
                    batch_bytes += item.1.frame.len();
                    batch.push(item);
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        let can_seal = inflight.len() < if first_acknowledged { config.max_inflight } else { 1 };
        // Group commit: with no upload in flight a batch goes at once (latency is one PUT);
        // while uploads are in flight it grows until full, a slot frees, or the delay bound.
        let idle = config.seal_when_idle && inflight.is_empty();
        if !batch.is_empty() && can_seal && (batch_bytes >= config.max_batch_bytes || !open || idle) {
            inflight.push_back(seal(&shared, next_seq, std::mem::take(&mut batch)));
            next_seq += 1;
            batch_bytes = 0;
            deadline = None;
            continue;
        }
        if !open && batch.is_empty() && inflight.is_empty() {
            return;
        }
        let sleep_until = deadline.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            biased;
            Some((seq, last, result, acks)) = inflight.next(), if !inflight.is_empty() => {
                let outcome = {
                    let mut state = shared.state.lock();
                    match (&state.failed, result) {
                        (Some(msg), _) => Err(Error::Failed(msg.clone())),
                        (None, Ok(())) => {
                            state.objects.insert((shared.epoch, seq), last);
                            first_acknowledged = true;
                            Ok(())
                        }
                        (None, Err(e)) => {
                            tracing::error!(error = %e, epoch = shared.epoch, seq, "S3 WAL upload failed; the WAL refuses further appends until reopened");
                            state.failed = Some(format!("S3 WAL object {seq} of epoch {} failed: {e}", shared.epoch));
                            Err(e)
                        }
                    }
                };
                for ack in acks {
                    let _ = ack.send(outcome.clone());
                }
            }
            _ = tokio::time::sleep_until(sleep_until), if deadline.is_some() && can_seal => {
                inflight.push_back(seal(&shared, next_seq, std::mem::take(&mut batch)));
                next_seq += 1;
                batch_bytes = 0;
                deadline = None;
            }
            item = rx.recv(), if open && batch_bytes < config.max_batch_bytes => match item {
                Some(item) => {
                    if let Some(msg) = &shared.state.lock().failed {
                        let _ = item.1.ack.send(Err(Error::Failed(msg.clone())));
                        continue;
                    }
                    if batch.is_empty() {
                        deadline = Some(tokio::time::Instant::now() + config.max_batch_delay);
                    }
                    batch_bytes += item.1.frame.len();
                    batch.push(item);
                }
                None => open = false,
            },
        }
    }
}

/// Builds the object for one group commit and starts its conditional upload; once the WAL has
/// failed, fails the batch instead (an object landing after a lost one could be read back).
fn seal(shared: &Arc<Shared>, seq: u64, batch: Vec<(u64, Item)>) -> Upload {
    let first = batch.first().map(|(p, _)| *p).unwrap_or(0);
    let last = batch.last().map(|(p, _)| *p).unwrap_or(0);
    if let Some(msg) = shared.state.lock().failed.clone() {
        let acks = batch.into_iter().map(|(_, item)| item.ack).collect();
        return Box::pin(futures::future::ready((seq, last, Err(Error::Failed(msg)), acks)));
    }
    let mut frames = BytesMut::with_capacity(batch.iter().map(|(_, i)| i.frame.len()).sum());
    let mut acks = Vec::with_capacity(batch.len());
    for (_, item) in batch {
        frames.put_slice(&item.frame);
        acks.push(item.ack);
    }
    let header = Header {
        kind: KIND_DATA,
        node_id: shared.config.node_id,
        epoch: shared.epoch,
        seq,
        created_ms: shared.clock.now_ms(),
        writer: shared.writer,
        position: first,
        records: acks.len() as u32,
    };
    let object = encode_object(&header, &frames);
    let key = shared.config.data_key(shared.epoch, seq);
    let store = shared.store.clone();
    let node = shared.config.node_id;
    Box::pin(async move {
        let result = match store.put_if_absent(&key, object).await {
            Err(Error::AlreadyExists { .. }) => {
                Err(Error::Fenced(format!("node {node}'s S3 WAL object {key} was claimed by another process (fenced)")))
            }
            other => other,
        };
        (seq, last, result, acks)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_roundtrip_and_detect_damage() {
        let mut frames = BytesMut::new();
        let rec =
            WalRecord { stream_id: 1, epoch: 2, base_offset: 3, end_offset: 4, payload: Bytes::from_static(b"abc") };
        encode_frame(&mut frames, 10, &rec);
        encode_frame(&mut frames, 11, &rec);
        let h = Header {
            kind: KIND_DATA,
            node_id: 1,
            epoch: 5,
            seq: 6,
            created_ms: 7,
            writer: 8,
            position: 10,
            records: 2,
        };
        let obj = encode_object(&h, &frames);
        let (h2, recs) = decode_object("k", &obj).unwrap();
        assert_eq!(h2, h);
        assert_eq!(recs.iter().map(|r| r.position).collect::<Vec<_>>(), vec![10, 11]);
        for cut in [0, 10, obj.len() - 1] {
            assert!(decode_object("k", &obj.slice(..cut)).is_err(), "cut at {cut} accepted");
        }
        let mut flipped = obj.to_vec();
        flipped[HEADER_LEN + 5] ^= 0x40;
        assert!(decode_object("k", &Bytes::from(flipped)).is_err());
    }
}
