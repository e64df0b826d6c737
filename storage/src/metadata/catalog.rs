//! The catalog service: the one writer of a metadata log and the state it describes.
//!
//! Concurrent submissions are group-committed: whoever finds no commit in progress takes every
//! queued submission, validates each against the state as it would be after the ones before
//! it, writes all the accepted records as one log entry, and only then publishes the new state
//! and answers. Readers take an `Arc` of the published state and never wait on the bucket.
//!
//! If an append fails (fenced, or an error after which the entry may or may not exist), the
//! catalog stops accepting writes: its state can no longer be trusted to match the log, and
//! the owner must reopen it.

use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::oneshot;

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
}

impl Default for CatalogConfig {
    fn default() -> Self {
        CatalogConfig { log: MetadataLogConfig::default(), snapshot_every: 1000 }
    }
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
    queue: Mutex<Vec<Submission>>,
    writer: tokio::sync::Mutex<Writer>,
    failed: Mutex<Option<String>>,
    /// Ourselves, for the group-commit task.
    me: std::sync::Weak<Catalog>,
}

fn replay(recovered: Recovered) -> Result<CatalogState> {
    replay_onto(CatalogState::default(), recovered)
}

/// Applies what the log returned to `base` (the state at the reader's old position), or to the
/// snapshot it returned.
fn replay_onto(base: CatalogState, recovered: Recovered) -> Result<CatalogState> {
    let mut state = match recovered.snapshot {
        Some((seq, bytes)) => {
            let mut s: CatalogState = serde_json::from_slice(&bytes)
                .map_err(|e| Error::corrupt(format!("metadata snapshot {seq}"), e.to_string()))?;
            s.applied_seq = seq;
            s
        }
        None => base,
    };
    for (seq, payload) in recovered.entries {
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
        Ok(Arc::new_cyclic(|me| Catalog {
            config,
            clock,
            state: Mutex::new(Arc::new(state)),
            queue: Mutex::new(Vec::new()),
            writer: tokio::sync::Mutex::new(Writer { log, entries_since_snapshot: entries }),
            failed: Mutex::new(None),
            me: me.clone(),
        }))
    }

    /// The current committed state.
    pub fn state(&self) -> Arc<CatalogState> {
        self.state.lock().clone()
    }

    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Commits `records` atomically (all or none), returning the log sequence they landed in.
    pub async fn submit(&self, records: Vec<CatalogRecord>) -> Result<u64> {
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
        match writer.log.append(&payload).await {
            Ok(seq) => {
                next.applied_seq = seq;
                let next = Arc::new(next);
                *self.state.lock() = next.clone();
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
    pub async fn refresh(&self) -> Result<bool> {
        let mut writer = self.writer.lock().await;
        let failed = self.failed.lock().is_some();
        if !failed && !writer.log.poll_new().await? {
            return Ok(false);
        }
        let recovered = writer.log.catch_up().await?;
        let changed = recovered.snapshot.is_some() || !recovered.entries.is_empty();
        writer.entries_since_snapshot += recovered.entries.len() as u64;
        let state = replay_onto((*self.state()).clone(), recovered)?;
        *self.state.lock() = Arc::new(state);
        *self.failed.lock() = None;
        Ok(changed || failed)
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
