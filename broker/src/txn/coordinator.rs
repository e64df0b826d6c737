//! The transaction coordinator: the state of every transactional id, kept in the internal
//! compacted topic `__transaction_state` and served by the leader of its partition (Java's
//! `abs(hashCode) % partitions` of the transactional id, like consumer groups), so it moves
//! with partition ownership and survives any broker's death.
//!
//! One record per change: key = the transactional id, value = [`TxnMeta`] as JSON (`v: 1`).
//! A change is applied in memory only once its record is durable. Ending a transaction:
//! `PrepareCommit`/`PrepareAbort` is stored first, then the markers are written to every
//! partition of the transaction (locally, or through the leader's internal API), then
//! `CompleteCommit`/`CompleteAbort` is stored. A coordinator that takes over a partition in a
//! prepared state finishes the job; one that finds an `Ongoing` transaction past its timeout
//! aborts it with a bumped epoch (fencing the producer).
//!
//! Requests for one transactional id are serialised by a per-id async lock, held across the
//! writes, so a producer's AddPartitionsToTxn waits for its previous EndTxn to complete rather
//! than getting CONCURRENT_TRANSACTIONS.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::records::{Compression, RecordBatchDecoder};
use kafka_protocol::ResponseError;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::markers;
use crate::batch::{self, Marker};
use crate::broker::{now_ms, Broker, OFFSETS_TOPIC};
use crate::error::{Error, Result};
use crate::groups::records::partition_for;
use crate::partition::Partition;

/// The internal topic holding transaction state.
pub const TXN_TOPIC: &str = "__transaction_state";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
}

impl TxnState {
    /// Kafka's name (DescribeTransactions, ListTransactions).
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
        }
    }
}

/// One transactional id's state, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnMeta {
    /// Format version of the stored value.
    pub v: u8,
    pub producer_id: i64,
    pub epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    /// Partitions of the current (or last) transaction.
    pub partitions: BTreeSet<(String, i32)>,
    /// When the current transaction began (its first AddPartitionsToTxn), ms since the epoch.
    pub started_ms: i64,
    pub updated_ms: i64,
}

/// Coordinator limits (Kafka's `transaction.*` broker settings).
#[derive(Debug, Clone)]
pub struct TxnSettings {
    /// `transaction.max.timeout.ms`.
    pub max_timeout_ms: i32,
    /// How often expired transactions are looked for.
    pub abort_check_interval: Duration,
}

impl Default for TxnSettings {
    fn default() -> Self {
        TxnSettings { max_timeout_ms: 900_000, abort_check_interval: Duration::from_millis(500) }
    }
}

#[derive(Debug, Default)]
pub struct TransactionCoordinator {
    /// Transactional ids of the `__transaction_state` partitions led here.
    txns: Mutex<HashMap<String, TxnMeta>>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    settings: Mutex<TxnSettings>,
}

/// A coordinator error for the client: a Kafka code and a message.
pub type TxnResult<T> = std::result::Result<T, Error>;

fn kafka(code: ResponseError, message: impl Into<String>) -> Error {
    Error::kafka(code, message)
}

impl TransactionCoordinator {
    pub fn new(settings: TxnSettings) -> Self {
        TransactionCoordinator { settings: Mutex::new(settings), ..Default::default() }
    }

    pub fn settings(&self) -> TxnSettings {
        self.settings.lock().clone()
    }

    /// The `__transaction_state` partition of `txn_id`, if this broker leads it.
    fn partition(broker: &Broker, txn_id: &str) -> TxnResult<Arc<Partition>> {
        let topic = broker
            .topic(TXN_TOPIC)
            .ok_or_else(|| kafka(ResponseError::CoordinatorNotAvailable, format!("{TXN_TOPIC} does not exist yet")))?;
        let index = partition_for(txn_id, topic.partition_count()) as i32;
        topic.led(index).map_err(|_| {
            if broker.moving.lock().contains(&(TXN_TOPIC.to_string(), index)) {
                kafka(ResponseError::CoordinatorLoadInProgress, format!("{TXN_TOPIC}-{index} is being opened here"))
            } else {
                kafka(ResponseError::NotCoordinator, format!("this broker does not coordinate {txn_id:?}"))
            }
        })
    }

    /// Whether this broker coordinates `txn_id`.
    pub fn coordinates(broker: &Broker, txn_id: &str) -> TxnResult<()> {
        Self::partition(broker, txn_id).map(|_| ())
    }

    fn lock_for(&self, txn_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks.lock().entry(txn_id.to_string()).or_default().clone()
    }

    pub fn get(&self, txn_id: &str) -> Option<TxnMeta> {
        self.txns.lock().get(txn_id).cloned()
    }

    /// Every transactional id coordinated here.
    pub fn all(&self) -> Vec<(String, TxnMeta)> {
        self.txns.lock().iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Stores `meta` for `txn_id` and applies it once durable.
    async fn store(&self, broker: &Broker, txn_id: &str, meta: TxnMeta) -> TxnResult<TxnMeta> {
        let partition = Self::partition(broker, txn_id)?;
        let topic = broker.topic(TXN_TOPIC).ok_or_else(|| kafka(ResponseError::CoordinatorNotAvailable, "gone"))?;
        let value = serde_json::to_vec(&meta)
            .map_err(|e| kafka(ResponseError::UnknownServerError, format!("cannot encode transaction state: {e}")))?;
        let now = now_ms();
        let records = batch::encode_plain(
            &[(Some(Bytes::from(txn_id.to_string())), Some(Bytes::from(value)))],
            now,
            Compression::None,
        )
        .map_err(|e| kafka(ResponseError::UnknownServerError, format!("cannot encode transaction state: {e}")))?;
        partition.append(&broker.engine, records, &topic.config, now).await?;
        self.txns.lock().insert(txn_id.to_string(), meta.clone());
        Ok(meta)
    }

    /// Replays one `__transaction_state` partition just opened here, then finishes what its
    /// previous coordinator left prepared.
    pub async fn load_partition(&self, broker: &Arc<Broker>, partition: &Partition) -> Result<()> {
        let mut loaded: HashMap<String, Option<TxnMeta>> = HashMap::new();
        partition
            .replay(&broker.engine, |header, bytes| {
                let mut buf = bytes;
                let Ok(sets) = RecordBatchDecoder::decode_all(&mut buf) else {
                    tracing::warn!(partition = partition.index, offset = header.base_offset, "undecodable batch in {TXN_TOPIC}; skipping it");
                    return;
                };
                for record in sets.into_iter().flat_map(|s| s.records) {
                    let Some(key) = record.key.and_then(|k| String::from_utf8(k.to_vec()).ok()) else { continue };
                    match record.value.map(|v| serde_json::from_slice::<TxnMeta>(&v)) {
                        None => {
                            loaded.insert(key, None);
                        }
                        Some(Ok(meta)) => {
                            loaded.insert(key, Some(meta));
                        }
                        Some(Err(e)) => {
                            tracing::warn!(partition = partition.index, offset = record.offset, error = %e, "unreadable transaction state; skipping it")
                        }
                    }
                }
            })
            .await?;
        let n = broker.topic(TXN_TOPIC).map_or(0, |t| t.partition_count());
        let mut prepared = Vec::new();
        {
            let mut txns = self.txns.lock();
            txns.retain(|id, _| partition_for(id, n) as i32 != partition.index);
            for (id, meta) in loaded {
                let Some(meta) = meta else { continue };
                if matches!(meta.state, TxnState::PrepareCommit | TxnState::PrepareAbort) {
                    prepared.push(id.clone());
                }
                txns.insert(id, meta);
            }
        }
        tracing::info!(partition = partition.index, prepared = prepared.len(), "transaction state loaded");
        for id in prepared {
            let broker = broker.clone();
            tokio::spawn(async move {
                let coordinator = &broker.txns;
                let lock = coordinator.lock_for(&id);
                let _guard = lock.lock().await;
                if let Some(meta) = coordinator.get(&id) {
                    if let Err(e) = coordinator.complete(&broker, &id, meta).await {
                        tracing::warn!(transactional_id = %id, error = %e, "cannot complete a prepared transaction; the next request retries");
                    }
                }
            });
        }
        Ok(())
    }

    /// Forgets the transactional ids of a partition no longer led here.
    pub fn unload_partition(&self, broker: &Broker, index: i32) {
        let n = broker.topic(TXN_TOPIC).map_or(0, |t| t.partition_count());
        self.txns.lock().retain(|id, _| partition_for(id, n) as i32 != index);
    }

    /// Writes the markers of a prepared transaction and stores it complete.
    async fn complete(&self, broker: &Broker, txn_id: &str, meta: TxnMeta) -> TxnResult<TxnMeta> {
        let commit = match meta.state {
            TxnState::PrepareCommit => true,
            TxnState::PrepareAbort => false,
            _ => return Ok(meta),
        };
        let marker = Marker { producer_id: meta.producer_id, producer_epoch: meta.epoch, commit, coordinator_epoch: 0 };
        markers::write_all(broker, &meta.partitions, marker).await?;
        let done = TxnMeta {
            state: if commit { TxnState::CompleteCommit } else { TxnState::CompleteAbort },
            updated_ms: now_ms(),
            ..meta
        };
        self.store(broker, txn_id, done).await
    }

    /// Ends the current transaction of `meta` (prepare, markers, complete) with `epoch`.
    async fn end(&self, broker: &Broker, txn_id: &str, meta: TxnMeta, commit: bool, epoch: i16) -> TxnResult<TxnMeta> {
        let prepared = TxnMeta {
            state: if commit { TxnState::PrepareCommit } else { TxnState::PrepareAbort },
            epoch,
            updated_ms: now_ms(),
            ..meta
        };
        let prepared = self.store(broker, txn_id, prepared).await?;
        self.complete(broker, txn_id, prepared).await
    }

    /// InitProducerId with a transactional id: a producer id and a new epoch for it, after
    /// aborting (or completing) whatever its previous instance left open.
    pub async fn init_producer(
        &self,
        broker: &Broker,
        txn_id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
    ) -> TxnResult<(i64, i16)> {
        let max = self.settings().max_timeout_ms;
        if timeout_ms <= 0 || timeout_ms > max {
            return Err(kafka(
                ResponseError::InvalidTransactionTimeout,
                format!("transaction.timeout.ms {timeout_ms} is outside 1..={max} (transaction.max.timeout.ms)"),
            ));
        }
        Self::coordinates(broker, txn_id)?;
        let lock = self.lock_for(txn_id);
        let _guard = lock.lock().await;
        let now = now_ms();
        let Some(mut meta) = self.get(txn_id) else {
            let producer_id = broker.next_producer_id().await?;
            let meta = TxnMeta {
                v: 1,
                producer_id,
                epoch: 0,
                timeout_ms,
                state: TxnState::Empty,
                partitions: BTreeSet::new(),
                started_ms: now,
                updated_ms: now,
            };
            let meta = self.store(broker, txn_id, meta).await?;
            return Ok((meta.producer_id, meta.epoch));
        };
        if let Some((pid, epoch)) = expected {
            // KIP-360: a producer resuming its own id after an error.
            if pid != meta.producer_id || epoch != meta.epoch {
                return Err(kafka(
                    ResponseError::ProducerFenced,
                    format!("producer {pid} epoch {epoch} is not the current instance of {txn_id:?}"),
                ));
            }
        }
        // Finish what the previous instance (or coordinator) left. Aborting an open transaction
        // bumps the epoch in its markers, which fences the old instance in every partition;
        // the new instance takes that epoch.
        let mut bumped = false;
        meta = match meta.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => self.complete(broker, txn_id, meta).await?,
            TxnState::Ongoing => {
                let fence = meta.epoch.saturating_add(1);
                tracing::info!(transactional_id = %txn_id, producer_id = meta.producer_id, epoch = fence, "a new producer instance aborts the open transaction");
                bumped = true;
                self.end(broker, txn_id, meta, false, fence).await?
            }
            _ => meta,
        };
        let (producer_id, epoch) = if meta.epoch >= i16::MAX - 1 {
            (broker.next_producer_id().await?, 0)
        } else if bumped {
            (meta.producer_id, meta.epoch)
        } else {
            (meta.producer_id, meta.epoch + 1)
        };
        let meta = TxnMeta {
            producer_id,
            epoch,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            updated_ms: now_ms(),
            ..meta
        };
        let meta = self.store(broker, txn_id, meta).await?;
        Ok((meta.producer_id, meta.epoch))
    }

    /// Checks a request's producer against the stored instance.
    fn check_producer(
        meta: &TxnMeta,
        txn_id: &str,
        producer_id: i64,
        epoch: i16,
        fenced: ResponseError,
    ) -> TxnResult<()> {
        if producer_id != meta.producer_id {
            return Err(kafka(
                ResponseError::InvalidProducerIdMapping,
                format!("producer {producer_id} is not {txn_id:?}'s (it is {})", meta.producer_id),
            ));
        }
        if epoch != meta.epoch {
            return Err(kafka(
                fenced,
                format!("producer epoch {epoch} of {txn_id:?} is fenced by epoch {}", meta.epoch),
            ));
        }
        Ok(())
    }

    /// Serialises on `txn_id` and checks the request's producer against the stored instance:
    /// the guard (held for the whole change) and the state.
    async fn lock_producer(
        &self,
        broker: &Broker,
        txn_id: &str,
        producer_id: i64,
        epoch: i16,
        fenced: ResponseError,
    ) -> TxnResult<(tokio::sync::OwnedMutexGuard<()>, TxnMeta)> {
        Self::coordinates(broker, txn_id)?;
        let guard = self.lock_for(txn_id).lock_owned().await;
        let meta = self
            .get(txn_id)
            .ok_or_else(|| kafka(ResponseError::InvalidProducerIdMapping, format!("no producer for {txn_id:?}")))?;
        Self::check_producer(&meta, txn_id, producer_id, epoch, fenced)?;
        Ok((guard, meta))
    }

    /// AddPartitionsToTxn (and AddOffsetsToTxn, with the group's offsets partition).
    pub async fn add_partitions(
        &self,
        broker: &Broker,
        txn_id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
        fenced: ResponseError,
    ) -> TxnResult<()> {
        let (_guard, meta) = self.lock_producer(broker, txn_id, producer_id, epoch, fenced).await?;
        let now = now_ms();
        let mut next = match meta.state {
            TxnState::Ongoing => meta.clone(),
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                TxnMeta { state: TxnState::Ongoing, partitions: BTreeSet::new(), started_ms: now, ..meta.clone() }
            }
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                return Err(kafka(ResponseError::ConcurrentTransactions, "the previous transaction is completing"))
            }
        };
        let before = next.partitions.len();
        next.partitions.extend(partitions.iter().cloned());
        if next.partitions.len() == before && meta.state == TxnState::Ongoing {
            return Ok(()); // nothing new: no write
        }
        next.updated_ms = now;
        self.store(broker, txn_id, next).await?;
        Ok(())
    }

    /// EndTxn: commits or aborts the producer's transaction; returns once every marker is
    /// written.
    pub async fn end_txn(
        &self,
        broker: &Broker,
        txn_id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        fenced: ResponseError,
    ) -> TxnResult<()> {
        let (_guard, meta) = self.lock_producer(broker, txn_id, producer_id, epoch, fenced).await?;
        match (meta.state, commit) {
            (TxnState::Ongoing, _) => {
                self.end(broker, txn_id, meta, commit, epoch).await?;
                Ok(())
            }
            // A retry of the same request: done already.
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => Ok(()),
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                self.complete(broker, txn_id, meta).await?;
                Ok(())
            }
            // Aborting with nothing open is allowed (the producer had no partition yet).
            (TxnState::Empty, false) => Ok(()),
            (state, _) => Err(kafka(
                ResponseError::InvalidTxnState,
                format!("cannot {} {txn_id:?}: it is {}", if commit { "commit" } else { "abort" }, state.name()),
            )),
        }
    }

    /// Aborts, with a bumped epoch, every transaction coordinated here that outlived its
    /// timeout.
    pub async fn abort_expired(&self, broker: &Arc<Broker>) {
        let now = now_ms();
        let expired: Vec<String> = self
            .txns
            .lock()
            .iter()
            .filter(|(_, m)| m.state == TxnState::Ongoing && now - m.started_ms > m.timeout_ms as i64)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            let lock = self.lock_for(&id);
            let _guard = lock.lock().await;
            let Some(meta) = self.get(&id) else { continue };
            if meta.state != TxnState::Ongoing || now_ms() - meta.started_ms <= meta.timeout_ms as i64 {
                continue;
            }
            let fence = meta.epoch.saturating_add(1);
            tracing::info!(transactional_id = %id, producer_id = meta.producer_id, timeout_ms = meta.timeout_ms, "aborting a transaction that timed out");
            broker.metrics.txn_timeouts.inc();
            if let Err(e) = self.end(broker, &id, meta, false, fence).await {
                tracing::warn!(transactional_id = %id, error = %e, "cannot abort a timed-out transaction yet");
            }
        }
    }

    /// Runs [`Self::abort_expired`] periodically until shutdown.
    pub fn spawn_expiry(
        broker: Arc<Broker>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                let every = broker.txns.settings().abort_check_interval;
                tokio::select! {
                    _ = tokio::time::sleep(every) => broker.txns.abort_expired(&broker).await,
                    _ = shutdown.changed() => return,
                }
            }
        })
    }

    /// The `__consumer_offsets` partition of `group` (AddOffsetsToTxn).
    pub fn offsets_partition(broker: &Broker, group: &str) -> TxnResult<(String, i32)> {
        let topic = broker
            .topic(OFFSETS_TOPIC)
            .ok_or_else(|| kafka(ResponseError::CoordinatorNotAvailable, format!("{OFFSETS_TOPIC} does not exist")))?;
        Ok((OFFSETS_TOPIC.to_string(), partition_for(group, topic.partition_count()) as i32))
    }
}
