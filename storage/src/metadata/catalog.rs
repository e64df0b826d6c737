//! The catalog service: the one writer of a metadata log and the state it describes.
//!
//! Concurrent submissions are group-committed: whoever finds no commit in progress takes every
//! queued submission, validates each against the state as it would be after the ones before
//! it, writes all the accepted records as one log entry, and only then publishes the new state
//! and answers. Readers take an `Arc` of the published state and never wait on the bucket.
//!
//! If an append fails (fenced, or an error after which the entry may or may not exist), the
//! catalog stops accepting writes: its state can no longer be trusted to match the log, and
//! the owner must [`Catalog::refresh`] (or reopen) it.
//!
//! A catalog is either the log's **writer** or a **follower** of it (a broker that is not the
//! controller). A follower never touches the bucket in steady state: it forwards submissions
//! to the writer through a [`LogWriter`] (each tagged with a [`CatalogRecord::Submission`]
//! id, so a retry after an ambiguous failure applies once), and applies the entries the
//! writer committed ([`Catalog::feed`] on the writer, [`Catalog::apply_entries`] on the
//! follower). A follower answers a submission only once it has applied the entry holding it
//! (it reads its own writes). A follower becomes the writer with [`Catalog::become_writer`]
//! (it reads what it missed from the bucket first) and goes back with [`Catalog::follow`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{oneshot, watch};

use super::log::{MetadataLog, MetadataLogConfig, Recovered};
use super::state::{CatalogRecord, CatalogState};
use crate::clock::SharedClock;
use crate::object_store::SharedStore;
use crate::{Error, Result};

#[derive(Debug, Clone)]
pub struct CatalogConfig {
    pub log: MetadataLogConfig,
    /// Write a snapshot after this many log entries.
    pub snapshot_every: u64,
    /// Entries the writer keeps in memory for followers; one further behind gets the state.
    pub feed_entries: usize,
    /// ... and at most this many bytes of them (entries can be large: the warehouse commits
    /// fresh rows inline).
    pub feed_bytes: usize,
    /// How long a follower keeps retrying a submission the writer cannot be reached for.
    pub forward_timeout: Duration,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        CatalogConfig {
            log: MetadataLogConfig::default(),
            snapshot_every: 1000,
            feed_entries: 4096,
            feed_bytes: 64 << 20,
            forward_timeout: Duration::from_secs(30),
        }
    }
}

/// The log's writer, as a follower reaches it (the controller's RPC endpoint).
#[async_trait]
pub trait LogWriter: Send + Sync + std::fmt::Debug {
    /// Forwards one submission (its first record is its [`CatalogRecord::Submission`] id) and
    /// returns the sequence number of an entry at or after the one holding it (a duplicate
    /// answers with the writer's current position). [`Error::Unavailable`] means the outcome
    /// is unknown (the caller retries with the same id); any other error is the writer's
    /// definitive refusal.
    async fn forward(&self, records: &[CatalogRecord]) -> Result<u64>;
}

/// What a follower gets from [`Catalog::feed`].
#[derive(Debug, Clone)]
pub enum Feed {
    /// Entries after the follower's position, in order (none if nothing new arrived in time).
    Entries(Vec<(u64, Bytes)>),
    /// The whole state (JSON), when the follower is further behind than the writer remembers.
    State(Bytes),
}

#[derive(Debug, Clone)]
enum Role {
    Writer,
    Follower(Arc<dyn LogWriter>),
}

type Submission = (Vec<CatalogRecord>, oneshot::Sender<Result<u64>>);

#[derive(Debug)]
struct Writer {
    log: MetadataLog,
    entries_since_snapshot: u64,
}

#[derive(Debug)]
pub struct Catalog {
    config: CatalogConfig,
    clock: SharedClock,
    state: Mutex<Arc<CatalogState>>,
    /// The applied sequence number, for waiting on it (followers, feeds).
    applied: watch::Sender<u64>,
    queue: Mutex<Vec<Submission>>,
    writer: tokio::sync::Mutex<Writer>,
    failed: Mutex<Option<String>>,
    role: Mutex<Role>,
    /// The writer's newest committed entries, for followers.
    recent: Mutex<VecDeque<(u64, Bytes)>>,
    /// Ourselves, for the group-commit task.
    me: std::sync::Weak<Catalog>,
}

fn replay(recovered: Recovered) -> Result<CatalogState> {
    replay_onto(CatalogState::default(), recovered)
}

/// Applies what the log returned to `base` (the state at the reader's old position), or to the
/// snapshot it returned if that is newer. Entries `base` already holds are skipped.
fn replay_onto(base: CatalogState, recovered: Recovered) -> Result<CatalogState> {
    let mut state = match recovered.snapshot {
        Some((seq, bytes)) if seq > base.applied_seq => {
            let mut s: CatalogState = serde_json::from_slice(&bytes)
                .map_err(|e| Error::corrupt(format!("metadata snapshot {seq}"), e.to_string()))?;
            s.applied_seq = seq;
            s
        }
        _ => base,
    };
    for (seq, payload) in recovered.entries {
        // Sequence numbers may skip: a torn entry (a writer crashed mid-write) is void.
        if seq <= state.applied_seq {
            continue;
        }
        let records: Vec<CatalogRecord> = serde_json::from_slice(&payload)
            .map_err(|e| Error::corrupt(format!("metadata log entry {seq}"), e.to_string()))?;
        for record in &records {
            // The writer validated these; a failure here means the log is not what it wrote.
            state
                .check(record)
                .map_err(|e| Error::corrupt(format!("metadata log entry {seq}"), format!("{record:?}: {e}")))?;
            state.apply(record);
        }
        state.applied_seq = seq;
    }
    Ok(state)
}

impl Catalog {
    /// Opens the catalog: reads the newest snapshot and the log after it.
    /// The catalog opens as the log's writer; see [`Self::follow`].
    pub async fn open(store: SharedStore, config: CatalogConfig, clock: SharedClock) -> Result<Arc<Self>> {
        let (log, recovered) = MetadataLog::open(store, config.log.clone(), clock.clone()).await?;
        let entries = recovered.entries.len() as u64;
        let state = replay(recovered)?;
        tracing::info!(
            applied_seq = state.applied_seq,
            streams = state.streams.len(),
            objects = state.objects.len(),
            "catalog opened"
        );
        let (applied, _) = watch::channel(state.applied_seq);
        Ok(Arc::new_cyclic(|me| Catalog {
            config,
            clock,
            state: Mutex::new(Arc::new(state)),
            applied,
            queue: Mutex::new(Vec::new()),
            writer: tokio::sync::Mutex::new(Writer { log, entries_since_snapshot: entries }),
            failed: Mutex::new(None),
            role: Mutex::new(Role::Writer),
            recent: Mutex::new(VecDeque::new()),
            me: me.clone(),
        }))
    }

    fn publish(&self, state: Arc<CatalogState>) {
        let seq = state.applied_seq;
        *self.state.lock() = state;
        self.applied.send_replace(seq);
    }

    /// The applied sequence number, as a watch (changes whenever the state does).
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// Whether an append failed and the catalog refuses writes until [`Self::refresh`].
    pub fn submit_failed(&self) -> bool {
        self.failed.lock().is_some()
    }

    /// Whether this catalog is the log's writer.
    pub fn is_writer(&self) -> bool {
        matches!(*self.role.lock(), Role::Writer)
    }

    /// The current committed state.
    pub fn state(&self) -> Arc<CatalogState> {
        self.state.lock().clone()
    }

    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Commits `records` atomically (all or none), returning the log sequence they landed in
    /// (on a follower: forwarded to the writer; the state holds them when this returns).
    ///
    /// Every submission is tagged with an id the state remembers, so a failure that leaves
    /// the outcome unknown (an append that timed out, another writer taking the log, a lost
    /// answer from the writer) is retried for up to `forward_timeout` and applies once: the
    /// writer catches up with the log before retrying. Refusals (the records do not apply to
    /// the state) are returned at once.
    pub async fn submit(&self, records: Vec<CatalogRecord>) -> Result<u64> {
        let mut tagged = vec![CatalogRecord::Submission { id: format!("{:032x}", rand::random::<u128>()) }];
        tagged.extend(records);
        self.forward(tagged).await
    }

    /// Forwards a tagged submission to the writer until it answers (or this catalog becomes
    /// the writer), then waits until the state holds it.
    async fn forward(&self, records: Vec<CatalogRecord>) -> Result<u64> {
        let deadline = Instant::now() + self.config.forward_timeout;
        let mut backoff = Duration::from_millis(20);
        let mut writer_retries = 0;
        loop {
            let role = self.role.lock().clone();
            let outcome = match role {
                Role::Writer => match self.accept_forwarded(records.clone()).await {
                    Err(Error::Unavailable(m)) => {
                        // Another writer appended (we were fenced), or our append's outcome is
                        // unknown: catch up with the log, then retry (recognised if it landed).
                        // If the log cannot even be read, the store is down: give up.
                        writer_retries += 1;
                        if writer_retries > 8 {
                            return Err(Error::Unavailable(m));
                        }
                        self.refresh().await?;
                        continue;
                    }
                    other => other,
                },
                Role::Follower(writer) => writer.forward(&records).await,
            };
            match outcome {
                Ok(seq) => {
                    self.wait_applied(seq, deadline).await?;
                    return Ok(seq);
                }
                Err(Error::Unavailable(msg)) if Instant::now() < deadline => {
                    tracing::debug!(reason = %msg, "metadata writer unreachable; retrying the submission");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// On the writer: a follower's forwarded submission (see [`LogWriter::forward`] for what
    /// the answers mean).
    pub async fn accept_forwarded(&self, records: Vec<CatalogRecord>) -> Result<u64> {
        if !self.is_writer() {
            return Err(Error::Unavailable("this node is not the metadata log writer".into()));
        }
        match self.submit_local(records).await {
            Err(Error::DuplicateSubmission(_)) => Ok(self.state().applied_seq),
            Err(e @ (Error::Fenced(_) | Error::Failed(_) | Error::Io { .. })) => Err(Error::Unavailable(e.to_string())),
            Err(e @ Error::ObjectStore { .. }) => Err(Error::Unavailable(e.to_string())),
            other => other,
        }
    }

    /// Waits until the state has applied entry `seq`.
    async fn wait_applied(&self, seq: u64, deadline: Instant) -> Result<()> {
        let mut applied = self.applied.subscribe();
        let outcome =
            tokio::time::timeout_at(deadline.into(), applied.wait_for(|a| *a >= seq)).await.map(|r| r.is_ok());
        match outcome {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::Closed),
            Err(_) => {
                Err(Error::Unavailable(format!("metadata entry {seq} was committed but has not reached this node yet")))
            }
        }
    }

    async fn submit_local(&self, records: Vec<CatalogRecord>) -> Result<u64> {
        if let Some(msg) = self.failed.lock().clone() {
            return Err(Error::Failed(msg));
        }
        let (tx, rx) = oneshot::channel();
        self.queue.lock().push((records, tx));
        // Whoever gets the writer drains the queue; later arrivals join the next group. The
        // group commit runs on its own task, so a caller that gives up (its future dropped)
        // cannot abandon the other submissions of its group half-way through an append.
        let Some(catalog) = self.me.upgrade() else { return Err(Error::Closed) };
        let group = tokio::spawn(async move {
            let mut writer = catalog.writer.lock().await;
            let batch: Vec<Submission> = std::mem::take(&mut *catalog.queue.lock());
            if !batch.is_empty() {
                catalog.commit_group(&mut writer, batch).await;
            }
        });
        drop(group);
        rx.await.unwrap_or(Err(Error::Closed))
    }

    async fn commit_group(&self, writer: &mut Writer, batch: Vec<Submission>) {
        if let Some(msg) = self.failed.lock().clone() {
            for (_, tx) in batch {
                let _ = tx.send(Err(Error::Failed(msg.clone())));
            }
            return;
        }
        let mut next = (*self.state()).clone();
        let mut accepted: Vec<CatalogRecord> = Vec::new();
        let mut waiting = Vec::new();
        for (records, tx) in batch {
            let checkpoint = (records.len() > 1).then(|| next.clone());
            let mut outcome = Ok(());
            for record in &records {
                if let Err(e) = next.check(record) {
                    outcome = Err(e);
                    break;
                }
                next.apply(record);
            }
            match outcome {
                Ok(()) => {
                    accepted.extend(records);
                    waiting.push(tx);
                }
                Err(e) => {
                    if let Some(saved) = checkpoint {
                        next = saved;
                    }
                    let _ = tx.send(Err(e));
                }
            }
        }
        if waiting.is_empty() {
            return;
        }
        let payload = match serde_json::to_vec(&accepted) {
            Ok(p) => p,
            Err(e) => {
                for tx in waiting {
                    let _ = tx.send(Err(Error::Failed(format!("cannot encode catalog records: {e}"))));
                }
                return;
            }
        };
        if !self.is_writer() {
            for tx in waiting {
                let _ = tx.send(Err(Error::Unavailable("this node stopped writing the metadata log".into())));
            }
            return;
        }
        match writer.log.append(&payload).await {
            Ok(seq) => {
                next.applied_seq = seq;
                let next = Arc::new(next);
                {
                    let mut recent = self.recent.lock();
                    recent.push_back((seq, Bytes::from(payload)));
                    let mut bytes: usize = recent.iter().map(|(_, p)| p.len()).sum();
                    while recent.len() > 1
                        && (recent.len() > self.config.feed_entries || bytes > self.config.feed_bytes)
                    {
                        bytes -= recent.pop_front().map_or(0, |(_, p)| p.len());
                    }
                }
                self.publish(next.clone());
                for tx in waiting {
                    let _ = tx.send(Ok(seq));
                }
                writer.entries_since_snapshot += 1;
                if writer.entries_since_snapshot >= self.config.snapshot_every {
                    self.snapshot(writer, &next).await;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "catalog append failed; refusing further writes until reopened");
                *self.failed.lock() = Some(format!("metadata log append failed: {e}"));
                for tx in waiting {
                    let _ = tx.send(Err(e.clone()));
                }
            }
        }
    }

    async fn snapshot(&self, writer: &mut Writer, state: &CatalogState) {
        let bytes = match serde_json::to_vec(state) {
            Ok(b) => b,
            Err(e) => return tracing::warn!(error = %e, "cannot encode catalog snapshot"),
        };
        match writer.log.write_snapshot(state.applied_seq, &bytes).await {
            Ok(()) => {
                writer.entries_since_snapshot = 0;
                match writer.log.truncate().await {
                    Ok(n) if n > 0 => tracing::debug!(deleted = n, "metadata log truncated"),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "metadata log truncation failed; will retry after the next snapshot")
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "catalog snapshot failed; will retry"),
        }
    }

    /// Follows other writers of the same log: reads the entries they appended since our
    /// position and publishes the state after them. Costs one HEAD when there is nothing new.
    /// Also recovers from a failed append (fenced, or ambiguous): the state is re-read from the
    /// log, so it matches the log again and writes are accepted. Returns whether anything
    /// changed.
    /// A follower learns from its writer instead, and does nothing here.
    pub async fn refresh(&self) -> Result<bool> {
        if !self.is_writer() {
            return Ok(false);
        }
        let mut writer = self.writer.lock().await;
        let failed = self.failed.lock().is_some();
        if !failed && !writer.log.poll_new().await? {
            return Ok(false);
        }
        self.catch_up(&mut writer).await?;
        Ok(true)
    }

    async fn catch_up(&self, writer: &mut Writer) -> Result<()> {
        let recovered = writer.log.catch_up().await?;
        writer.entries_since_snapshot += recovered.entries.len() as u64;
        let state = replay_onto((*self.state()).clone(), recovered)?;
        self.recent.lock().clear();
        self.publish(Arc::new(state));
        *self.failed.lock() = None;
        Ok(())
    }

    /// Makes this catalog the log's writer: reads from the bucket what it has not applied yet
    /// (it may have followed a writer that is gone), then accepts submissions itself. Whether
    /// it really is the writer is settled by its next append (see `MetadataLog`).
    pub async fn become_writer(&self) -> Result<()> {
        let mut writer = self.writer.lock().await;
        writer.log.advance_to(self.state().applied_seq + 1);
        self.catch_up(&mut writer).await?;
        *self.role.lock() = Role::Writer;
        tracing::info!(applied_seq = self.state().applied_seq, "catalog is the metadata log writer");
        Ok(())
    }

    /// Makes this catalog a follower of `writer`: submissions are forwarded to it, and the
    /// state changes only through [`Self::apply_entries`] / [`Self::apply_state`].
    pub fn follow(&self, writer: Arc<dyn LogWriter>) {
        *self.role.lock() = Role::Follower(writer);
        self.recent.lock().clear();
    }

    /// On the writer: what a follower at `after` is missing, waiting up to `wait` for news.
    pub async fn feed(&self, after: u64, wait: Duration) -> Result<Feed> {
        if !self.is_writer() {
            return Err(Error::Unavailable("this node is not the metadata log writer".into()));
        }
        let mut applied = self.applied.subscribe();
        let _ = tokio::time::timeout(wait, applied.wait_for(|a| *a > after)).await;
        let current = self.state();
        if current.applied_seq <= after {
            return Ok(Feed::Entries(Vec::new()));
        }
        {
            let recent = self.recent.lock();
            if recent.front().is_some_and(|(first, _)| *first <= after + 1) {
                return Ok(Feed::Entries(recent.iter().filter(|(seq, _)| *seq > after).cloned().collect()));
            }
        }
        let json =
            serde_json::to_vec(&*current).map_err(|e| Error::Failed(format!("cannot encode the catalog: {e}")))?;
        Ok(Feed::State(Bytes::from(json)))
    }

    /// On a follower: applies entries the writer committed (from [`Self::feed`], which sends
    /// every entry after the follower's position). Entries already applied are skipped.
    pub fn apply_entries(&self, entries: Vec<(u64, Bytes)>) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let recovered = Recovered { snapshot: None, entries };
        let state = replay_onto((*self.state()).clone(), recovered)?;
        self.publish(Arc::new(state));
        Ok(())
    }

    /// On a follower: replaces the state with the writer's (from [`Self::feed`]), if newer.
    pub fn apply_state(&self, json: &[u8]) -> Result<()> {
        let state: CatalogState =
            serde_json::from_slice(json).map_err(|e| Error::corrupt("catalog state from the writer", e.to_string()))?;
        if state.applied_seq > self.state().applied_seq {
            self.publish(Arc::new(state));
        }
        Ok(())
    }

    /// Writes a snapshot now (tests, shutdown).
    pub async fn snapshot_now(&self) -> Result<()> {
        let mut writer = self.writer.lock().await;
        let state = self.state();
        let bytes = serde_json::to_vec(&*state).map_err(|e| Error::Failed(format!("cannot encode snapshot: {e}")))?;
        writer.log.write_snapshot(state.applied_seq, &bytes).await?;
        writer.entries_since_snapshot = 0;
        writer.log.truncate().await?;
        Ok(())
    }

    /// Allocates the next stream id and creates the stream.
    pub async fn create_stream(&self) -> Result<u64> {
        loop {
            let id = self.state().next_stream_id.max(1);
            match self.submit(vec![CatalogRecord::CreateStream { stream_id: id }]).await {
                // Another creation in the same group took the id; try the next one.
                Err(Error::InvalidMetadata(_)) if self.state().next_stream_id.max(1) != id => continue,
                Err(e) => return Err(e),
                Ok(_) => return Ok(id),
            }
        }
    }
}
