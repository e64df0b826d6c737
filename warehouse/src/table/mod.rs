//! Tables on object storage: the catalog (databases, tables, their segments) lives in a
//! metadata log shared by every query node on the bucket; data lives in Parquet segments with
//! delete vectors (see [`segment`]).
//!
//! Every change to a table is one catalog record (the table's new metadata, plus the objects
//! it no longer references, queued for deletion) committed after its objects are written: an
//! acknowledged change is in the bucket, and a node restarted anywhere sees it. The metadata
//! log admits one linear history: a node whose view is stale loses the append, refreshes and
//! redoes its change on the new state. Within a node, changes to one table are serialised.
//!
//! Primary-key tables keep an in-memory index from key to the row holding it; an upsert marks
//! the old row in its segment's delete vector and appends the new one. Background compaction
//! merges small segments and drops deleted rows.

pub mod ddl;
mod disk_cache;
mod inline;
mod maintenance;
mod namespace;
pub mod provider;
mod scan;
pub mod segment;
pub mod types;
mod write;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_schema::{Field, Schema, SchemaRef};
use automq_storage::clock::SharedClock;
use automq_storage::metadata::catalog::{Catalog, CatalogConfig};
use automq_storage::metadata::log::MetadataLogConfig;
use automq_storage::metadata::state::{kv_digest, CatalogRecord};
use automq_storage::object_store::SharedStore;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};

pub use ddl::{ColumnDef, KeyModel, TableDef};
use disk_cache::DiskCache;
pub use disk_cache::DiskCacheUsage;
pub use inline::is_inline;
pub use inline::StateRef;
use segment::{SegmentCache, SegmentMeta};
use types::SqlType;
use write::TableWriter;
pub use write::{Attach, Write};

/// What went wrong with a warehouse operation; the engine maps these to MySQL errors.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WhError {
    #[error("Unknown database '{0}'")]
    UnknownDatabase(String),
    #[error("Can't create database '{0}'; database exists")]
    DatabaseExists(String),
    #[error("Table '{0}.{1}' doesn't exist")]
    UnknownTable(String, String),
    #[error("Table '{0}' already exists")]
    TableExists(String),
    #[error("{0}")]
    Syntax(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Invalid(String),
    #[error("storage error: {0}")]
    Storage(String),
    /// A precondition of a change no longer holds (the caller re-reads and decides).
    #[error("{0}")]
    Conflict(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl WhError {
    pub fn internal(msg: impl Into<String>) -> Self {
        WhError::Internal(msg.into())
    }
}

impl From<automq_storage::Error> for WhError {
    fn from(e: automq_storage::Error) -> Self {
        WhError::Storage(e.to_string())
    }
}

impl From<ddl::DdlError> for WhError {
    fn from(e: ddl::DdlError) -> Self {
        match e {
            ddl::DdlError::Syntax(m) => WhError::Syntax(m),
            ddl::DdlError::Unsupported(m) => WhError::Unsupported(m),
        }
    }
}

type R<T> = Result<T, WhError>;

#[derive(Debug, Clone)]
pub struct WarehouseConfig {
    /// Metadata log prefix in the bucket.
    pub meta_prefix: String,
    /// Prefix of segment and delete-vector objects.
    pub data_prefix: String,
    /// Memory for decoded segments (the hot-segment cache).
    pub cache_bytes: usize,
    /// A local directory caching segment objects under the memory cache (none: no disk tier;
    /// pointless when the object store is itself a local directory).
    pub disk_cache_dir: Option<std::path::PathBuf>,
    /// ... holding at most this many bytes.
    pub disk_cache_bytes: u64,
    /// Compaction merges a table's segments smaller than this many rows...
    pub target_segment_rows: u64,
    /// ... once it has at least this many of them.
    pub compact_min_segments: usize,
    /// ... and rewrites a segment with at least this fraction of its rows deleted.
    pub compact_deleted_ratio: f64,
    /// Objects no longer referenced are deleted after this long (queries still reading them
    /// on other nodes finish first).
    pub gc_grace: Duration,
    /// How stale a node's view of other nodes' commits may get before a statement refreshes.
    pub refresh_interval: Duration,
    /// Background compaction and GC period.
    pub maintenance_interval: Duration,
    /// A write whose encoded rows (or delete vector) take at most this many bytes commits
    /// them inline, in its catalog record, instead of uploading an object (0: never).
    pub inline_max_bytes: usize,
    /// ... as long as the table's inline segments stay under this many bytes in all.
    pub inline_table_bytes: u64,
    /// Compaction flushes a table's inline segments into an object once they hold this many
    /// bytes...
    pub inline_flush_bytes: u64,
    /// ... or the oldest of them is this old.
    pub inline_flush_after: Duration,
    /// ... or there are this many of them; a write leaving a table with this many small
    /// segments (inline or not) wakes compaction at once (every commit rewrites the table's
    /// segment list: it must stay short).
    pub inline_flush_segments: usize,
}

impl Default for WarehouseConfig {
    fn default() -> Self {
        WarehouseConfig {
            meta_prefix: "warehouse/meta".into(),
            data_prefix: "warehouse/data".into(),
            cache_bytes: 2 << 30,
            disk_cache_dir: None,
            disk_cache_bytes: 2 << 30,
            target_segment_rows: 1 << 20,
            compact_min_segments: 8,
            compact_deleted_ratio: 0.3,
            gc_grace: Duration::from_secs(600),
            refresh_interval: Duration::from_millis(200),
            maintenance_interval: Duration::from_secs(2),
            inline_max_bytes: 256 << 10,
            inline_table_bytes: 16 << 20,
            inline_flush_bytes: 4 << 20,
            inline_flush_after: Duration::from_secs(10),
            inline_flush_segments: 32,
        }
    }
}

/// A table's committed metadata: definition and segments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableMeta {
    /// Unique across drops and re-creations: names the table's data prefix.
    pub id: String,
    pub database: String,
    pub name: String,
    pub def: TableDef,
    pub segments: Vec<SegmentMeta>,
    /// Bumped by every commit.
    pub version: u64,
    /// Random identity of the commit that wrote this version (resolves ambiguous appends).
    pub commit: String,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// Digest of the catalog value this was read from (empty for a table not yet committed):
    /// a change computed from this version commits only if the table is still at it.
    #[serde(skip)]
    pub read_digest: String,
    /// The catalog state this was read from: where inline segments are read.
    #[serde(skip)]
    pub source: StateRef,
}

impl TableMeta {
    pub fn schema(&self) -> SchemaRef {
        schema_of(&self.def)
    }

    pub fn live_rows(&self) -> u64 {
        self.segments.iter().map(SegmentMeta::live_rows).sum()
    }

    pub fn data_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// How many of its segments are held inline in the catalog.
    pub fn inline_segments(&self) -> usize {
        self.segments.iter().filter(|s| is_inline(&s.key)).count()
    }

    /// Bytes of the segments held inline in the catalog (fresh rows not flushed yet).
    pub fn inline_bytes(&self) -> u64 {
        self.segments.iter().filter(|s| is_inline(&s.key)).map(|s| s.bytes).sum()
    }
}

/// The Arrow schema of a table definition.
pub fn schema_of(def: &TableDef) -> SchemaRef {
    let fields: Vec<Field> = def
        .columns
        .iter()
        .map(|c| {
            let dt = SqlType::parse(&c.sql_type).and_then(|t| t.arrow()).unwrap_or(arrow_schema::DataType::Utf8);
            Field::new(&c.name, dt, c.nullable)
        })
        .collect();
    Arc::new(Schema::new(fields))
}

fn random_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Counters exported as Prometheus metrics.
#[derive(Debug, Default)]
pub struct WarehouseStats {
    pub rows_written: std::sync::atomic::AtomicU64,
    pub segments_written: std::sync::atomic::AtomicU64,
    /// Segments committed inline in the catalog (fresh rows), and flushes of them to objects.
    pub segments_inlined: std::sync::atomic::AtomicU64,
    pub inline_flushes: std::sync::atomic::AtomicU64,
    pub commits: std::sync::atomic::AtomicU64,
    pub commit_conflicts: std::sync::atomic::AtomicU64,
    pub compactions: std::sync::atomic::AtomicU64,
    pub objects_deleted: std::sync::atomic::AtomicU64,
    pub cache_hits: std::sync::atomic::AtomicU64,
    pub cache_misses: std::sync::atomic::AtomicU64,
    /// Memory-cache misses served by the local disk cache.
    pub disk_cache_hits: std::sync::atomic::AtomicU64,
}

fn bump(counter: &std::sync::atomic::AtomicU64, n: u64) {
    counter.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
}

/// The tables of a query node.
pub struct Warehouse {
    /// This warehouse, for work that must outlive the statement that started it.
    me: std::sync::Weak<Warehouse>,
    store: SharedStore,
    catalog: Arc<Catalog>,
    config: WarehouseConfig,
    clock: SharedClock,
    writers: parking_lot::Mutex<HashMap<String, Arc<tokio::sync::Mutex<TableWriter>>>>,
    /// Plain INSERTs waiting for their table's writer, by table id: whoever gets the writer
    /// commits all of them at once (see [`Warehouse::write_attached`]).
    insert_queue: parking_lot::Mutex<HashMap<String, Vec<write::QueuedInsert>>>,
    cache: SegmentCache,
    disk: Option<DiskCache>,
    dv_cache: parking_lot::Mutex<HashMap<String, Arc<RoaringBitmap>>>,
    /// Inline payloads written by this node and not committed yet: key -> base64 text.
    pending_inline: parking_lot::Mutex<HashMap<String, String>>,
    /// Wakes background maintenance before its interval (a table needs a flush).
    maintenance_wake: Arc<tokio::sync::Notify>,
    last_refresh: parking_lot::Mutex<Instant>,
    pub stats: WarehouseStats,
}

impl std::fmt::Debug for Warehouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Warehouse").field("config", &self.config).finish_non_exhaustive()
    }
}

const MAX_ATTEMPTS: usize = 16;
/// Delete vectors up to this size are committed inline.
const INLINE_DV_MAX: usize = 64 << 10;
/// Decoded delete vectors kept in memory before the cache starts over.
const DV_CACHE_ENTRIES: usize = 100_000;
impl Warehouse {
    pub async fn open(store: SharedStore, config: WarehouseConfig, clock: SharedClock) -> R<Arc<Self>> {
        let catalog_config = CatalogConfig {
            log: MetadataLogConfig { prefix: config.meta_prefix.clone(), ..MetadataLogConfig::default() },
            ..CatalogConfig::default()
        };
        let catalog = Catalog::open(store.clone(), catalog_config, clock.clone()).await?;
        let cache = SegmentCache::new(config.cache_bytes);
        let disk = match &config.disk_cache_dir {
            Some(dir) if config.disk_cache_bytes > 0 => Some(
                DiskCache::open(dir, config.disk_cache_bytes)
                    .map_err(|e| WhError::Storage(format!("segment disk cache {}: {e}", dir.display())))?,
            ),
            _ => None,
        };
        Ok(Arc::new_cyclic(|me| Warehouse {
            me: me.clone(),
            store,
            catalog,
            config,
            clock,
            writers: parking_lot::Mutex::new(HashMap::new()),
            insert_queue: parking_lot::Mutex::new(HashMap::new()),
            cache,
            disk,
            dv_cache: parking_lot::Mutex::new(HashMap::new()),
            pending_inline: parking_lot::Mutex::new(HashMap::new()),
            maintenance_wake: Arc::new(tokio::sync::Notify::new()),
            last_refresh: parking_lot::Mutex::new(Instant::now()),
            stats: WarehouseStats::default(),
        }))
    }

    pub fn config(&self) -> &WarehouseConfig {
        &self.config
    }

    /// The warehouse clock's time (injected: tests control it).
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// (entries, bytes) in the segment cache.
    pub fn cache_usage(&self) -> (usize, usize) {
        self.cache.usage()
    }

    /// What the local disk cache holds (none without one).
    pub fn disk_cache_usage(&self) -> Option<DiskCacheUsage> {
        self.disk.as_ref().map(DiskCache::usage)
    }

    /// (entries, bytes) of inline payloads in the catalog: fresh rows not flushed yet.
    pub fn inline_usage(&self) -> (usize, usize) {
        let state = self.catalog.state();
        state
            .kv
            .range(inline::INLINE_PREFIX.to_string()..)
            .take_while(|(k, _)| k.starts_with(inline::INLINE_PREFIX))
            .fold((0, 0), |(n, bytes), (_, v)| (n + 1, bytes + v.len()))
    }

    /// Picks up other nodes' commits if our view is older than the refresh interval.
    pub async fn refresh_if_stale(&self) -> R<()> {
        {
            let mut last = self.last_refresh.lock();
            if last.elapsed() < self.config.refresh_interval {
                return Ok(());
            }
            *last = Instant::now();
        }
        self.catalog.refresh().await?;
        Ok(())
    }

    /// Picks up other nodes' commits, waiting first until the view is a refresh interval old if
    /// it is fresher: for lookups that must see another node's recent commit (a login of a user
    /// just created there) without refreshing more often than the interval, whoever asks.
    pub async fn refresh_when_stale(&self) -> R<()> {
        let wait = self.config.refresh_interval.saturating_sub(self.last_refresh.lock().elapsed());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        self.refresh_if_stale().await
    }

    /// Picks up other nodes' commits now.
    pub async fn refresh(&self) -> R<()> {
        *self.last_refresh.lock() = Instant::now();
        self.catalog.refresh().await?;
        Ok(())
    }

    /// Submits records; on losing the append (or an ambiguous failure) refreshes and reports
    /// whether `landed` says the change is in anyway. `Ok(false)`: redo the change.
    ///
    /// Records computed from values read earlier must carry their [`expect`](Self::expect)
    /// preconditions: this node may have learnt of other nodes' commits between the read and
    /// the append, and then the append itself would not conflict.
    async fn submit(&self, records: Vec<CatalogRecord>, landed: impl Fn(&Self) -> bool) -> R<bool> {
        match self.catalog.submit(records).await {
            Ok(_) => {
                bump(&self.stats.commits, 1);
                Ok(true)
            }
            Err(automq_storage::Error::InvalidMetadata(m)) => Err(WhError::internal(m)),
            Err(automq_storage::Error::PreconditionFailed(m)) => {
                // Our view already holds a newer value than the change was computed from.
                tracing::debug!(reason = %m, "catalog change computed from a stale read; redoing it");
                bump(&self.stats.commit_conflicts, 1);
                Ok(false)
            }
            Err(e) => {
                tracing::info!(error = %e, "catalog commit lost or failed; refreshing to retry");
                bump(&self.stats.commit_conflicts, 1);
                self.catalog.refresh().await?;
                Ok(landed(self))
            }
        }
    }

    /// A value of the catalog's key-value namespace (other layers' records, e.g. routine loads).
    pub fn kv_get(&self, key: &str) -> Option<String> {
        self.catalog.state().kv.get(key).map(|v| v.to_string())
    }

    /// Every key and value under a prefix.
    pub fn kv_scan(&self, prefix: &str) -> Vec<(String, String)> {
        let state = self.catalog.state();
        state
            .kv
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect()
    }

    /// A precondition record: `key` still holds `value` (`None`: is absent) when the change
    /// carrying it commits.
    pub fn expect(key: &str, value: Option<&str>) -> CatalogRecord {
        CatalogRecord::KvExpect { key: key.to_string(), digest: value.map(kv_digest) }
    }

    /// Commits key-value puts and deletes as one record if every key of `expect` still holds
    /// the value given (`None`: is absent), atomically: `WhError::Conflict` names the first key
    /// that changed.
    pub async fn kv_commit(
        &self,
        puts: Vec<(String, String)>,
        deletes: Vec<String>,
        expect: Vec<(String, Option<String>)>,
    ) -> R<()> {
        for _ in 0..MAX_ATTEMPTS {
            if let Some((key, _)) = expect.iter().find(|(k, v)| self.kv_get(k) != *v) {
                return Err(WhError::Conflict(format!("catalog key {key} changed concurrently")));
            }
            let mut records: Vec<CatalogRecord> =
                expect.iter().map(|(key, value)| Self::expect(key, value.as_deref())).collect();
            records.extend(
                puts.iter().map(|(key, value)| CatalogRecord::KvPut { key: key.clone(), value: value.clone() }),
            );
            records.extend(deletes.iter().map(|key| CatalogRecord::KvDelete { key: key.clone() }));
            let landed = |w: &Warehouse| {
                puts.iter().all(|(k, v)| w.kv_get(k).as_ref() == Some(v))
                    && deletes.iter().all(|k| w.kv_get(k).is_none())
            };
            if self.submit(records, landed).await? {
                return Ok(());
            }
        }
        Err(WhError::Storage("too many conflicting catalog changes; try again".into()))
    }

    /// The bytes behind a segment or delete-vector key, and whether they came from the disk
    /// cache: an object, or an inline payload read from the catalog state `meta` came from
    /// (or this node's uncommitted write).
    async fn fetch(&self, meta: &TableMeta, key: &str) -> R<(Bytes, bool)> {
        if !is_inline(key) {
            if let Some(data) = match &self.disk {
                Some(disk) => disk.get(key).await,
                None => None,
            } {
                return Ok((data, true));
            }
            return Ok((self.fetch_object(key).await?, false));
        }
        let text = meta
            .source
            .get(key)
            .map(str::to_string)
            .or_else(|| self.pending_inline.lock().get(key).cloned())
            .or_else(|| self.catalog.state().kv.get(key).map(|v| v.to_string()))
            .ok_or_else(|| WhError::Storage(format!("inline data {key} is gone: the table changed; try again")))?;
        Ok((inline::decode(key, &text)?, false))
    }

    /// An object from the bucket, kept in the disk cache.
    async fn fetch_object(&self, key: &str) -> R<Bytes> {
        let data = self.store.get(key).await?;
        if let Some(disk) = &self.disk {
            disk.put(key, &data).await;
        }
        Ok(data)
    }

    /// Decodes what [`Self::fetch`] returned; a copy from the disk cache that does not decode is
    /// dropped and read again from the bucket.
    async fn decoded<T: Send + 'static>(
        &self,
        key: &str,
        (data, cached): (Bytes, bool),
        decode: fn(&str, Bytes) -> R<T>,
    ) -> R<T> {
        let run = |data: Bytes| {
            let key = key.to_string();
            async move {
                tokio::task::spawn_blocking(move || decode(&key, data))
                    .await
                    .map_err(|e| WhError::internal(e.to_string()))?
            }
        };
        match run(data).await {
            Err(e) if cached => {
                tracing::warn!(key, error = %e, "damaged copy in the segment disk cache; reading the object store");
                if let Some(disk) = &self.disk {
                    disk.remove(key);
                }
                run(self.fetch_object(key).await?).await
            }
            Ok(value) => {
                if cached {
                    bump(&self.stats.disk_cache_hits, 1);
                }
                Ok(value)
            }
            Err(e) => Err(e),
        }
    }

    /// A segment's rows as written (deleted ones included), from the caches or the bucket.
    pub async fn segment_rows(&self, meta: &TableMeta, seg: &SegmentMeta) -> R<Arc<Vec<RecordBatch>>> {
        if let Some(hit) = self.cache.get(&seg.key) {
            bump(&self.stats.cache_hits, 1);
            return Ok(hit);
        }
        bump(&self.stats.cache_misses, 1);
        let fetched = self.fetch(meta, &seg.key).await?;
        let batches = Arc::new(self.decoded(&seg.key, fetched, segment::decode).await?);
        self.cache.insert(&seg.key, batches.clone());
        Ok(batches)
    }

    async fn delete_vector(&self, meta: &TableMeta, seg: &SegmentMeta) -> R<Arc<RoaringBitmap>> {
        let Some(key) = &seg.dv else { return Ok(Arc::new(RoaringBitmap::new())) };
        if let Some(hit) = self.dv_cache.lock().get(key) {
            return Ok(hit.clone());
        }
        let fetched = self.fetch(meta, key).await?;
        let dv = Arc::new(self.decoded(key, fetched, |key, data| segment::decode_dv(key, &data)).await?);
        self.cache_dv(key, dv.clone());
        Ok(dv)
    }

    fn cache_dv(&self, key: &str, dv: Arc<RoaringBitmap>) {
        let mut cache = self.dv_cache.lock();
        // Delete vectors are replaced on every change and the old ones are only dropped here
        // when this node commits or collects them: bound what other nodes' changes leave.
        if cache.len() >= DV_CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(key.to_string(), dv);
    }

    /// The live rows of a segment of `meta`.
    pub async fn live_rows(&self, meta: &TableMeta, seg: &SegmentMeta) -> R<Vec<RecordBatch>> {
        let rows = self.segment_rows(meta, seg).await?;
        if seg.dv.is_none() {
            return Ok(rows.to_vec());
        }
        let dv = self.delete_vector(meta, seg).await?;
        segment::live(&rows, &dv)
    }

    /// The live rows of many segments of `meta`, fetched concurrently, in order.
    pub async fn live_rows_of(&self, meta: &TableMeta, segments: &[SegmentMeta]) -> R<Vec<Vec<RecordBatch>>> {
        futures::stream::iter(segments.to_vec())
            .map(|s| async move { self.live_rows(meta, &s).await })
            .buffered(16)
            .try_collect()
            .await
    }

    /// Writes rows as a new segment of `meta`'s table: inline (committed with the change that
    /// references it, see [`inline`]) if `allow_inline` and small enough, else as an object.
    async fn upload_segment(&self, meta: &TableMeta, batches: &[RecordBatch], allow_inline: bool) -> R<SegmentMeta> {
        let schema = meta.schema();
        let owned: Vec<RecordBatch> = batches.to_vec();
        let (data, stats, rows) = tokio::task::spawn_blocking(move || segment::encode(&schema, &owned))
            .await
            .map_err(|e| WhError::internal(e.to_string()))??;
        let bytes = data.len() as u64;
        let name = format!("{:013}-{}.parquet", self.clock.now_ms(), random_id());
        let inline = allow_inline
            && data.len() <= self.config.inline_max_bytes
            && meta.inline_bytes() + bytes <= self.config.inline_table_bytes;
        let key = if inline {
            let key = format!("{}{}/{name}", inline::INLINE_PREFIX, meta.id);
            self.pending_inline.lock().insert(key.clone(), inline::encode(&data));
            bump(&self.stats.segments_inlined, 1);
            key
        } else {
            let key = format!("{}/{}/{name}", self.config.data_prefix, meta.id);
            self.store.put(&key, data.clone()).await?;
            if let Some(disk) = &self.disk {
                disk.put(&key, &data).await;
            }
            bump(&self.stats.segments_written, 1);
            key
        };
        self.cache.insert(&key, Arc::new(batches.to_vec()));
        Ok(SegmentMeta { key, rows, bytes, deleted: 0, dv: None, stats, written_ms: self.clock.now_ms() })
    }

    /// Writes a delete vector for a segment of `meta`'s table (inline if small) and returns
    /// its key.
    async fn upload_dv(&self, meta: &TableMeta, seg: &SegmentMeta, dv: RoaringBitmap) -> R<String> {
        let data = segment::encode_dv(&dv)?;
        let key = if data.len() <= self.config.inline_max_bytes.min(INLINE_DV_MAX) {
            let key = format!("{}{}/{}.dv", inline::INLINE_PREFIX, meta.id, random_id());
            self.pending_inline.lock().insert(key.clone(), inline::encode(&data));
            key
        } else {
            let key = format!("{}.{}.dv", seg.key.trim_end_matches(".parquet"), random_id());
            self.store.put(&key, data.clone()).await?;
            if let Some(disk) = &self.disk {
                disk.put(&key, &data).await;
            }
            key
        };
        self.cache_dv(&key, Arc::new(dv));
        Ok(key)
    }

    /// Deletes objects that were written but never committed.
    async fn discard(&self, keys: &[String]) {
        for key in keys {
            self.cache.remove(key);
            self.dv_cache.lock().remove(key);
            if is_inline(key) {
                self.pending_inline.lock().remove(key);
                continue;
            }
            if let Some(disk) = &self.disk {
                disk.remove(key);
            }
            if let Err(e) = self.store.delete(key).await {
                tracing::warn!(key, error = %e, "could not delete an uncommitted object; it stays as garbage");
            }
        }
    }

    fn writer(&self, table_id: &str) -> Arc<tokio::sync::Mutex<TableWriter>> {
        self.writers.lock().entry(table_id.to_string()).or_default().clone()
    }

    /// Commits `next` as the table's new version (and queues `garbage` for deletion). Returns
    /// whether it landed; `Ok(false)`: another node changed the catalog first, redo the change.
    /// `extra`: records committed with it (a loader's progress and its preconditions).
    async fn commit_table(&self, next: &mut TableMeta, garbage: Vec<String>, extra: Vec<CatalogRecord>) -> R<bool> {
        next.version += 1;
        next.commit = random_id();
        next.updated_ms = self.clock.now_ms();
        let value = serde_json::to_string(&*next).map_err(|e| WhError::internal(e.to_string()))?;
        let key = namespace::table_key(&next.database, &next.name);
        let mut records = vec![
            CatalogRecord::KvExpect { key: key.clone(), digest: Some(next.read_digest.clone()) },
            CatalogRecord::KvPut { key, value },
        ];
        // Inline payloads of this node's uncommitted writes that the new version references.
        let inline_keys: Vec<String> =
            next.segments.iter().flat_map(segment_objects).filter(|k| is_inline(k)).collect();
        {
            let pending = self.pending_inline.lock();
            records.extend(inline_keys.iter().filter_map(|key| {
                pending.get(key).map(|value| CatalogRecord::KvPut { key: key.clone(), value: value.clone() })
            }));
        }
        let dropped: Vec<String> = garbage.iter().filter(|k| is_inline(k)).cloned().collect();
        records.extend(self.garbage_records(garbage));
        records.extend(extra);
        let (db, name, commit) = (next.database.clone(), next.name.clone(), next.commit.clone());
        let landed = self.submit(records, |w| w.table(&db, &name).is_some_and(|t| t.commit == commit)).await?;
        // Many small segments (inline or not) make every commit and scan heavier: compact
        // now rather than at the next interval.
        let small = next.segments.iter().filter(|s| is_inline(&s.key) || s.rows < self.config.target_segment_rows);
        if landed && small.count() >= self.config.inline_flush_segments {
            self.maintenance_wake.notify_one();
        }
        if landed {
            let mut pending = self.pending_inline.lock();
            for key in &inline_keys {
                pending.remove(key);
            }
            drop(pending);
            for key in &dropped {
                self.cache.remove(key);
                self.dv_cache.lock().remove(key);
            }
        }
        Ok(landed)
    }
}

/// Every object a segment references.
fn segment_objects(s: &SegmentMeta) -> Vec<String> {
    std::iter::once(s.key.clone()).chain(s.dv.clone()).collect()
}
