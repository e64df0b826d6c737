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
pub mod provider;
pub mod segment;
pub mod types;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{Array, BooleanArray, RecordBatch, UInt32Array};
use arrow_schema::{Field, Schema, SchemaRef};
use automq_storage::clock::SharedClock;
use automq_storage::metadata::catalog::{Catalog, CatalogConfig};
use automq_storage::metadata::log::MetadataLogConfig;
use automq_storage::metadata::state::CatalogRecord;
use automq_storage::object_store::SharedStore;
use datafusion::arrow::compute::{concat_batches, take_record_batch};
use datafusion::arrow::row::{RowConverter, SortField};
use futures::{StreamExt, TryStreamExt};
use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};

pub use ddl::{ColumnDef, KeyModel, TableDef};
use segment::{SegmentCache, SegmentMeta};
use types::SqlType;

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
}

impl Default for WarehouseConfig {
    fn default() -> Self {
        WarehouseConfig {
            meta_prefix: "warehouse/meta".into(),
            data_prefix: "warehouse/data".into(),
            cache_bytes: 2 << 30,
            target_segment_rows: 1 << 20,
            compact_min_segments: 8,
            compact_deleted_ratio: 0.3,
            gc_grace: Duration::from_secs(600),
            refresh_interval: Duration::from_millis(200),
            maintenance_interval: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct DatabaseMeta {
    created_ms: u64,
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

fn db_key(db: &str) -> String {
    format!("wh/db/{db}")
}

fn table_key(db: &str, name: &str) -> String {
    format!("wh/table/{db}/{name}")
}

fn tables_prefix(db: &str) -> String {
    format!("wh/table/{db}/")
}

const GARBAGE_PREFIX: &str = "wh/garbage/";

fn check_name(kind: &str, name: &str) -> R<()> {
    if name.is_empty() || name.len() > 64 || name.contains('/') || name.chars().any(char::is_control) {
        return Err(WhError::Invalid(format!("Incorrect {kind} name '{name}'")));
    }
    Ok(())
}

fn random_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Primary-key index of one table: key bytes -> (segment ordinal, row).
#[derive(Debug, Default)]
struct PkIndex {
    /// The table version this index reflects (0: not built).
    version: u64,
    segments: Vec<String>,
    rows: HashMap<Box<[u8]>, (u32, u32)>,
}

impl PkIndex {
    fn ordinal(&mut self, key: &str) -> u32 {
        match self.segments.iter().position(|s| s == key) {
            Some(i) => i as u32,
            None => {
                self.segments.push(key.to_string());
                (self.segments.len() - 1) as u32
            }
        }
    }
}

/// Per-table writer state on this node.
#[derive(Debug, Default)]
struct TableWriter {
    index: PkIndex,
}

/// What a write does to a table.
pub enum Write<'a> {
    /// Append rows (upsert on primary-key tables).
    Insert(Vec<RecordBatch>),
    /// Delete the rows for which the mask is true.
    Delete(&'a (dyn Fn(&RecordBatch) -> R<BooleanArray> + Send + Sync)),
    /// Replace the rows for which the mask is true by what the function makes of them.
    Update(
        &'a (dyn Fn(&RecordBatch) -> R<BooleanArray> + Send + Sync),
        &'a (dyn Fn(&RecordBatch) -> R<RecordBatch> + Send + Sync),
    ),
    /// Delete every row.
    Truncate,
}

impl std::fmt::Debug for Write<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Write::Insert(_) => "Insert",
            Write::Delete(_) => "Delete",
            Write::Update(..) => "Update",
            Write::Truncate => "Truncate",
        })
    }
}

/// Counters exported as Prometheus metrics.
#[derive(Debug, Default)]
pub struct WarehouseStats {
    pub rows_written: std::sync::atomic::AtomicU64,
    pub segments_written: std::sync::atomic::AtomicU64,
    pub commits: std::sync::atomic::AtomicU64,
    pub commit_conflicts: std::sync::atomic::AtomicU64,
    pub compactions: std::sync::atomic::AtomicU64,
    pub objects_deleted: std::sync::atomic::AtomicU64,
    pub cache_hits: std::sync::atomic::AtomicU64,
    pub cache_misses: std::sync::atomic::AtomicU64,
}

fn bump(counter: &std::sync::atomic::AtomicU64, n: u64) {
    counter.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
}

/// The tables of a query node.
pub struct Warehouse {
    store: SharedStore,
    catalog: Arc<Catalog>,
    config: WarehouseConfig,
    clock: SharedClock,
    writers: parking_lot::Mutex<HashMap<String, Arc<tokio::sync::Mutex<TableWriter>>>>,
    cache: SegmentCache,
    dv_cache: parking_lot::Mutex<HashMap<String, Arc<RoaringBitmap>>>,
    last_refresh: parking_lot::Mutex<Instant>,
    pub stats: WarehouseStats,
}

impl std::fmt::Debug for Warehouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Warehouse").field("config", &self.config).finish_non_exhaustive()
    }
}

const MAX_ATTEMPTS: usize = 16;

impl Warehouse {
    pub async fn open(store: SharedStore, config: WarehouseConfig, clock: SharedClock) -> R<Arc<Self>> {
        let catalog_config = CatalogConfig {
            log: MetadataLogConfig { prefix: config.meta_prefix.clone(), ..MetadataLogConfig::default() },
            snapshot_every: 1000,
        };
        let catalog = Catalog::open(store.clone(), catalog_config, clock.clone()).await?;
        let cache = SegmentCache::new(config.cache_bytes);
        Ok(Arc::new(Warehouse {
            store,
            catalog,
            config,
            clock,
            writers: parking_lot::Mutex::new(HashMap::new()),
            cache,
            dv_cache: parking_lot::Mutex::new(HashMap::new()),
            last_refresh: parking_lot::Mutex::new(Instant::now()),
            stats: WarehouseStats::default(),
        }))
    }

    pub fn config(&self) -> &WarehouseConfig {
        &self.config
    }

    /// (entries, bytes) in the segment cache.
    pub fn cache_usage(&self) -> (usize, usize) {
        self.cache.usage()
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

    /// Picks up other nodes' commits now.
    pub async fn refresh(&self) -> R<()> {
        *self.last_refresh.lock() = Instant::now();
        self.catalog.refresh().await?;
        Ok(())
    }

    pub fn databases(&self) -> Vec<String> {
        let state = self.catalog.state();
        state
            .kv
            .range("wh/db/".to_string()..)
            .take_while(|(k, _)| k.starts_with("wh/db/"))
            .map(|(k, _)| k["wh/db/".len()..].to_string())
            .collect()
    }

    pub fn database_exists(&self, db: &str) -> bool {
        self.catalog.state().kv.contains_key(&db_key(db))
    }

    pub fn tables(&self, db: &str) -> R<Vec<String>> {
        let state = self.catalog.state();
        if !state.kv.contains_key(&db_key(db)) {
            return Err(WhError::UnknownDatabase(db.to_string()));
        }
        let prefix = tables_prefix(db);
        Ok(state
            .kv
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k[prefix.len()..].to_string())
            .collect())
    }

    /// A table's committed metadata (None if absent). Names match exactly, then ignoring case.
    pub fn table(&self, db: &str, name: &str) -> Option<Arc<TableMeta>> {
        let state = self.catalog.state();
        let value = state.kv.get(&table_key(db, name)).or_else(|| {
            let prefix = tables_prefix(db);
            state
                .kv
                .range(prefix.clone()..)
                .take_while(|(k, _)| k.starts_with(&prefix))
                .find(|(k, _)| k[prefix.len()..].eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        })?;
        match serde_json::from_str::<TableMeta>(value) {
            Ok(meta) => Some(Arc::new(meta)),
            Err(e) => {
                tracing::error!(db, table = name, error = %e, "unreadable table metadata");
                None
            }
        }
    }

    fn require_table(&self, db: &str, name: &str) -> R<Arc<TableMeta>> {
        if !self.database_exists(db) {
            return Err(WhError::UnknownDatabase(db.to_string()));
        }
        self.table(db, name).ok_or_else(|| WhError::UnknownTable(db.to_string(), name.to_string()))
    }

    /// Submits records; on losing the append (or an ambiguous failure) refreshes and reports
    /// whether `landed` says the change is in anyway. `Ok(false)`: redo the change.
    async fn submit(&self, records: Vec<CatalogRecord>, landed: impl Fn(&Self) -> bool) -> R<bool> {
        match self.catalog.submit(records).await {
            Ok(_) => {
                bump(&self.stats.commits, 1);
                Ok(true)
            }
            Err(automq_storage::Error::InvalidMetadata(m)) => Err(WhError::internal(m)),
            Err(e) => {
                tracing::info!(error = %e, "catalog commit lost or failed; refreshing to retry");
                bump(&self.stats.commit_conflicts, 1);
                self.catalog.refresh().await?;
                Ok(landed(self))
            }
        }
    }

    pub async fn create_database(&self, db: &str, if_not_exists: bool) -> R<bool> {
        check_name("database", db)?;
        for _ in 0..MAX_ATTEMPTS {
            if self.database_exists(db) {
                return if if_not_exists { Ok(false) } else { Err(WhError::DatabaseExists(db.to_string())) };
            }
            let value = serde_json::to_string(&DatabaseMeta { created_ms: self.clock.now_ms() })
                .map_err(|e| WhError::internal(e.to_string()))?;
            let record = CatalogRecord::KvPut { key: db_key(db), value: value.clone() };
            if self.submit(vec![record], |w| w.catalog.state().kv.get(&db_key(db)) == Some(&value)).await? {
                return Ok(true);
            }
        }
        Err(WhError::Storage("too many conflicting catalog changes; try again".into()))
    }

    pub async fn drop_database(&self, db: &str, if_exists: bool) -> R<bool> {
        for _ in 0..MAX_ATTEMPTS {
            if !self.database_exists(db) {
                return if if_exists { Ok(false) } else { Err(WhError::UnknownDatabase(db.to_string())) };
            }
            let mut records = vec![CatalogRecord::KvDelete { key: db_key(db) }];
            for name in self.tables(db)? {
                if let Some(meta) = self.table(db, &name) {
                    records.push(CatalogRecord::KvDelete { key: table_key(db, &meta.name) });
                    records.extend(self.garbage_records(meta.segments.iter().flat_map(segment_objects)));
                }
            }
            if self.submit(records, |w| !w.database_exists(db)).await? {
                return Ok(true);
            }
        }
        Err(WhError::Storage("too many conflicting catalog changes; try again".into()))
    }

    fn garbage_records(&self, keys: impl IntoIterator<Item = String>) -> Vec<CatalogRecord> {
        let now = self.clock.now_ms().to_string();
        keys.into_iter()
            .map(|k| CatalogRecord::KvPut { key: format!("{GARBAGE_PREFIX}{k}"), value: now.clone() })
            .collect()
    }

    pub async fn create_table(&self, db: &str, name: &str, mut def: TableDef, if_not_exists: bool) -> R<bool> {
        check_name("table", name)?;
        ddl::validate(&mut def)?;
        for c in &def.columns {
            check_name("column", &c.name)?;
            SqlType::parse(&c.sql_type).map_err(WhError::Unsupported)?;
        }
        let now = self.clock.now_ms();
        let meta = TableMeta {
            id: format!("{}-{}", now, random_id()),
            database: db.to_string(),
            name: name.to_string(),
            def,
            segments: Vec::new(),
            version: 1,
            commit: random_id(),
            created_ms: now,
            updated_ms: now,
        };
        let value = serde_json::to_string(&meta).map_err(|e| WhError::internal(e.to_string()))?;
        for _ in 0..MAX_ATTEMPTS {
            if !self.database_exists(db) {
                return Err(WhError::UnknownDatabase(db.to_string()));
            }
            if self.table(db, name).is_some() {
                return if if_not_exists { Ok(false) } else { Err(WhError::TableExists(name.to_string())) };
            }
            let record = CatalogRecord::KvPut { key: table_key(db, name), value: value.clone() };
            if self.submit(vec![record], |w| w.table(db, name).is_some_and(|t| t.commit == meta.commit)).await? {
                return Ok(true);
            }
        }
        Err(WhError::Storage("too many conflicting catalog changes; try again".into()))
    }

    pub async fn drop_table(&self, db: &str, name: &str, if_exists: bool) -> R<bool> {
        for _ in 0..MAX_ATTEMPTS {
            let meta = match self.require_table(db, name) {
                Ok(m) => m,
                Err(WhError::UnknownTable(..)) if if_exists => return Ok(false),
                Err(e) => return Err(e),
            };
            let mut records = vec![CatalogRecord::KvDelete { key: table_key(db, &meta.name) }];
            records.extend(self.garbage_records(meta.segments.iter().flat_map(segment_objects)));
            if self.submit(records, |w| w.table(db, &meta.name).is_none_or(|t| t.id != meta.id)).await? {
                self.writers.lock().remove(&meta.id);
                return Ok(true);
            }
        }
        Err(WhError::Storage("too many conflicting catalog changes; try again".into()))
    }

    fn writer(&self, table_id: &str) -> Arc<tokio::sync::Mutex<TableWriter>> {
        self.writers.lock().entry(table_id.to_string()).or_default().clone()
    }

    /// A segment's rows as written (deleted ones included), from the cache or the bucket.
    pub async fn segment_rows(&self, seg: &SegmentMeta) -> R<Arc<Vec<RecordBatch>>> {
        if let Some(hit) = self.cache.get(&seg.key) {
            bump(&self.stats.cache_hits, 1);
            return Ok(hit);
        }
        bump(&self.stats.cache_misses, 1);
        let data = self.store.get(&seg.key).await?;
        let key = seg.key.clone();
        let batches = tokio::task::spawn_blocking(move || segment::decode(&key, data))
            .await
            .map_err(|e| WhError::internal(e.to_string()))??;
        let batches = Arc::new(batches);
        self.cache.insert(&seg.key, batches.clone());
        Ok(batches)
    }

    async fn delete_vector(&self, seg: &SegmentMeta) -> R<Arc<RoaringBitmap>> {
        let Some(key) = &seg.dv else { return Ok(Arc::new(RoaringBitmap::new())) };
        if let Some(hit) = self.dv_cache.lock().get(key) {
            return Ok(hit.clone());
        }
        let data = self.store.get(key).await?;
        let dv = Arc::new(segment::decode_dv(key, &data)?);
        self.dv_cache.lock().insert(key.clone(), dv.clone());
        Ok(dv)
    }

    /// The live rows of a segment.
    pub async fn live_rows(&self, seg: &SegmentMeta) -> R<Vec<RecordBatch>> {
        let rows = self.segment_rows(seg).await?;
        if seg.dv.is_none() {
            return Ok(rows.to_vec());
        }
        let dv = self.delete_vector(seg).await?;
        segment::live(&rows, &dv)
    }

    /// The live rows of many segments, fetched concurrently, in order.
    pub async fn live_rows_of(&self, segments: &[SegmentMeta]) -> R<Vec<Vec<RecordBatch>>> {
        futures::stream::iter(segments.to_vec())
            .map(|s| async move { self.live_rows(&s).await })
            .buffered(16)
            .try_collect()
            .await
    }

    async fn upload_segment(&self, meta: &TableMeta, batches: &[RecordBatch]) -> R<SegmentMeta> {
        let schema = meta.schema();
        let owned: Vec<RecordBatch> = batches.to_vec();
        let (data, stats, rows) = tokio::task::spawn_blocking(move || segment::encode(&schema, &owned))
            .await
            .map_err(|e| WhError::internal(e.to_string()))??;
        let key =
            format!("{}/{}/{:013}-{}.parquet", self.config.data_prefix, meta.id, self.clock.now_ms(), random_id());
        let bytes = data.len() as u64;
        self.store.put(&key, data).await?;
        bump(&self.stats.segments_written, 1);
        self.cache.insert(&key, Arc::new(batches.to_vec()));
        Ok(SegmentMeta { key, rows, bytes, deleted: 0, dv: None, stats })
    }

    /// Brings a primary-key index up to the table's committed version.
    async fn ensure_index(&self, index: &mut PkIndex, meta: &TableMeta) -> R<()> {
        if index.version == meta.version {
            return Ok(());
        }
        let started = Instant::now();
        let mut fresh = PkIndex { version: meta.version, ..PkIndex::default() };
        let converter = key_converter(meta)?;
        let key_cols = key_columns(meta)?;
        for seg in &meta.segments {
            let rows = self.segment_rows(seg).await?;
            let dv = self.delete_vector(seg).await?;
            let ordinal = fresh.ordinal(&seg.key);
            let mut base = 0u32;
            for batch in rows.iter() {
                let keys = row_keys(&converter, &key_cols, batch)?;
                for i in 0..batch.num_rows() {
                    let row = base + i as u32;
                    if !dv.contains(row) {
                        fresh.rows.insert(keys.row(i).data().into(), (ordinal, row));
                    }
                }
                base += batch.num_rows() as u32;
            }
        }
        tracing::debug!(table = %meta.name, keys = fresh.rows.len(), elapsed_ms = started.elapsed().as_millis() as u64, "primary-key index built");
        *index = fresh;
        Ok(())
    }

    /// Applies a write to a table and returns the number of rows it affected.
    pub async fn write(&self, db: &str, name: &str, write: Write<'_>) -> R<u64> {
        let meta = self.require_table(db, name)?;
        let writer = self.writer(&meta.id);
        let mut writer = writer.lock().await;
        let mut uploaded: Option<(SegmentMeta, Vec<RecordBatch>)> = None;
        let mut inserted: Option<Vec<RecordBatch>> = None;
        if let Write::Insert(batches) = &write {
            inserted = Some(prepare_insert(&meta, batches)?);
        }
        for _ in 0..MAX_ATTEMPTS {
            let meta = self.require_table(db, name)?;
            let primary = meta.def.model == KeyModel::Primary;
            if primary {
                self.ensure_index(&mut writer.index, &meta).await?;
            }
            // Rows to mark deleted per segment, rows to append, keys to drop from the index.
            let mut deletes: BTreeMap<usize, RoaringBitmap> = BTreeMap::new();
            let mut new_rows: Vec<RecordBatch> = Vec::new();
            let mut affected = 0u64;
            match &write {
                Write::Insert(_) => {
                    new_rows = inserted.clone().unwrap_or_default();
                    affected = new_rows.iter().map(|b| b.num_rows() as u64).sum();
                }
                Write::Truncate => {
                    for (i, seg) in meta.segments.iter().enumerate() {
                        affected += seg.live_rows();
                        deletes.insert(i, (0..seg.rows as u32).collect());
                    }
                }
                Write::Delete(mask) | Write::Update(mask, _) => {
                    for (i, seg) in meta.segments.iter().enumerate() {
                        let rows = self.segment_rows(seg).await?;
                        let dv = self.delete_vector(seg).await?;
                        let mut base = 0u32;
                        for batch in rows.iter() {
                            let m = mask(batch)?;
                            let mut hit = Vec::new();
                            for r in 0..batch.num_rows() {
                                let pos = base + r as u32;
                                if m.is_valid(r) && m.value(r) && !dv.contains(pos) {
                                    hit.push(r as u32);
                                    deletes.entry(i).or_default().insert(pos);
                                }
                            }
                            if !hit.is_empty() {
                                affected += hit.len() as u64;
                                if let Write::Update(_, assign) = &write {
                                    let picked = take_record_batch(batch, &UInt32Array::from(hit))
                                        .map_err(|e| WhError::internal(e.to_string()))?;
                                    new_rows.push(assign(&picked)?);
                                }
                            }
                            base += batch.num_rows() as u32;
                        }
                    }
                    if let Write::Update(..) = &write {
                        if !new_rows.is_empty() {
                            new_rows = prepare_insert(&meta, &new_rows)?;
                        }
                    }
                }
            }
            // Upserts: the rows currently holding the new rows' keys die.
            let converter = if primary { Some(key_converter(&meta)?) } else { None };
            let key_cols = if primary { key_columns(&meta)? } else { Vec::new() };
            let mut new_keys: Vec<Box<[u8]>> = Vec::new();
            if let Some(conv) = &converter {
                for batch in &new_rows {
                    let keys = row_keys(conv, &key_cols, batch)?;
                    for i in 0..batch.num_rows() {
                        let key: Box<[u8]> = keys.row(i).data().into();
                        if let Some(&(ord, row)) = writer.index.rows.get(&key) {
                            let seg_key = &writer.index.segments[ord as usize];
                            if let Some(pos) = meta.segments.iter().position(|s| &s.key == seg_key) {
                                deletes.entry(pos).or_default().insert(row);
                            }
                        }
                        new_keys.push(key);
                    }
                }
            }
            if affected == 0 && new_rows.is_empty() {
                return Ok(0);
            }
            // Write the objects, then commit the new metadata.
            let mut next = (*meta).clone();
            let mut garbage = Vec::new();
            let mut written: Vec<String> = Vec::new();
            let mut deleted_keys: Vec<Box<[u8]>> = Vec::new();
            for (&i, add) in &deletes {
                let seg = &meta.segments[i];
                if primary {
                    // Keys of rows that die without a replacement leave the index.
                    let rows = self.segment_rows(seg).await?;
                    if let Some(conv) = &converter {
                        let mut base = 0u32;
                        for batch in rows.iter() {
                            let n = batch.num_rows() as u32;
                            if add.range_cardinality(base..base + n) > 0 {
                                let keys = row_keys(conv, &key_cols, batch)?;
                                for r in add.range(base..base + n) {
                                    deleted_keys.push(keys.row((r - base) as usize).data().into());
                                }
                            }
                            base += n;
                        }
                    }
                }
                let old = self.delete_vector(seg).await?;
                let merged = &*old | add;
                if merged.len() >= seg.rows {
                    // Nothing left: the segment goes away below, no delete vector needed.
                    next.segments[i].deleted = seg.rows;
                    continue;
                }
                let key = format!("{}.{}.dv", seg.key.trim_end_matches(".parquet"), random_id());
                self.store.put(&key, segment::encode_dv(&merged)?).await?;
                written.push(key.clone());
                self.dv_cache.lock().insert(key.clone(), Arc::new(merged.clone()));
                let target = &mut next.segments[i];
                target.deleted = merged.len();
                if let Some(old_key) = target.dv.replace(key) {
                    garbage.push(old_key);
                }
            }
            // Segments with nothing left go away.
            let mut dead_segments = Vec::new();
            next.segments.retain(|s| {
                if s.deleted >= s.rows {
                    dead_segments.push(s.clone());
                    false
                } else {
                    true
                }
            });
            for s in &dead_segments {
                garbage.extend(segment_objects(s));
            }
            let mut new_segment = None;
            if !new_rows.is_empty() {
                let seg = match uploaded.take() {
                    Some((seg, rows)) if matches!(write, Write::Insert(_)) && rows == new_rows => seg,
                    Some((seg, _)) => {
                        self.discard(&[seg.key]).await;
                        self.upload_segment(&meta, &new_rows).await?
                    }
                    None => self.upload_segment(&meta, &new_rows).await?,
                };
                next.segments.push(seg.clone());
                new_segment = Some(seg);
            }
            next.version = meta.version + 1;
            next.commit = random_id();
            next.updated_ms = self.clock.now_ms();
            let value = serde_json::to_string(&next).map_err(|e| WhError::internal(e.to_string()))?;
            let mut records = vec![CatalogRecord::KvPut { key: table_key(db, &meta.name), value }];
            records.extend(self.garbage_records(garbage));
            let commit = next.commit.clone();
            let landed = self.submit(records, |w| w.table(db, &meta.name).is_some_and(|t| t.commit == commit)).await?;
            if landed {
                if primary {
                    let index = &mut writer.index;
                    for key in &deleted_keys {
                        index.rows.remove(key);
                    }
                    if let Some(seg) = &new_segment {
                        let ord = index.ordinal(&seg.key);
                        for (row, key) in new_keys.into_iter().enumerate() {
                            index.rows.insert(key, (ord, row as u32));
                        }
                    }
                    index.version = next.version;
                }
                bump(&self.stats.rows_written, new_rows.iter().map(|b| b.num_rows() as u64).sum());
                return Ok(affected);
            }
            // Lost to another node: drop what we wrote for this attempt (the new segment of an
            // insert is kept for the next one).
            self.discard(&written).await;
            if let Some(seg) = new_segment {
                uploaded = Some((seg, new_rows));
            }
        }
        if let Some((seg, _)) = uploaded {
            self.discard(&[seg.key]).await;
        }
        Err(WhError::Storage("too many conflicting changes to this table; try again".into()))
    }

    /// Deletes objects that were written but never committed.
    async fn discard(&self, keys: &[String]) {
        for key in keys {
            self.cache.remove(key);
            if let Err(e) = self.store.delete(key).await {
                tracing::warn!(key, error = %e, "could not delete an uncommitted object; it stays as garbage");
            }
        }
    }

    /// Merges small segments and rewrites segments with many deleted rows. Returns whether
    /// anything changed.
    pub async fn compact(&self, db: &str, name: &str, force: bool) -> R<bool> {
        let meta = self.require_table(db, name)?;
        let writer = self.writer(&meta.id);
        let mut writer = writer.lock().await;
        for _ in 0..MAX_ATTEMPTS {
            let meta = self.require_table(db, name)?;
            let picked: Vec<usize> = meta
                .segments
                .iter()
                .enumerate()
                .filter(|(_, s)| {
                    s.rows < self.config.target_segment_rows
                        || s.deleted as f64 >= s.rows as f64 * self.config.compact_deleted_ratio
                })
                .map(|(i, _)| i)
                .collect();
            let heavy = picked.iter().any(|&i| {
                let s = &meta.segments[i];
                s.deleted > 0 && s.deleted as f64 >= s.rows as f64 * self.config.compact_deleted_ratio
            });
            let enough = picked.len() >= self.config.compact_min_segments || (force && (picked.len() > 1 || heavy));
            if !(enough || heavy) || picked.is_empty() {
                return Ok(false);
            }
            let started = Instant::now();
            let inputs: Vec<SegmentMeta> = picked.iter().map(|&i| meta.segments[i].clone()).collect();
            let mut rows: Vec<RecordBatch> = self.live_rows_of(&inputs).await?.into_iter().flatten().collect();
            rows.retain(|b| b.num_rows() > 0);
            let schema = meta.schema();
            let mut outputs = Vec::new();
            let all = concat_batches(&schema, &rows).map_err(|e| WhError::internal(e.to_string()))?;
            let target = self.config.target_segment_rows as usize;
            let mut offset = 0;
            while offset < all.num_rows() {
                let len = target.min(all.num_rows() - offset);
                let chunk = all.slice(offset, len);
                let chunks: Vec<RecordBatch> = (0..len)
                    .step_by(segment::BATCH_ROWS)
                    .map(|o| chunk.slice(o, segment::BATCH_ROWS.min(len - o)))
                    .collect();
                outputs.push(self.upload_segment(&meta, &chunks).await?);
                offset += len;
            }
            let mut next = (*meta).clone();
            let mut garbage = Vec::new();
            let first = picked[0];
            let mut kept = Vec::new();
            for (i, s) in meta.segments.iter().enumerate() {
                if i == first {
                    kept.extend(outputs.iter().cloned());
                }
                if picked.contains(&i) {
                    garbage.extend(segment_objects(s));
                } else {
                    kept.push(s.clone());
                }
            }
            next.segments = kept;
            next.version = meta.version + 1;
            next.commit = random_id();
            next.updated_ms = self.clock.now_ms();
            let value = serde_json::to_string(&next).map_err(|e| WhError::internal(e.to_string()))?;
            let mut records = vec![CatalogRecord::KvPut { key: table_key(db, &meta.name), value }];
            records.extend(self.garbage_records(garbage));
            let commit = next.commit.clone();
            if self.submit(records, |w| w.table(db, &meta.name).is_some_and(|t| t.commit == commit)).await? {
                // Rows moved: the index is rebuilt on the next write.
                writer.index.version = 0;
                bump(&self.stats.compactions, 1);
                tracing::info!(
                    table = %format!("{db}.{}", meta.name),
                    inputs = inputs.len(),
                    outputs = outputs.len(),
                    rows = all.num_rows(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "compacted"
                );
                return Ok(true);
            }
            let keys: Vec<String> = outputs.iter().map(|s| s.key.clone()).collect();
            self.discard(&keys).await;
        }
        Err(WhError::Storage("too many conflicting changes to this table; try again".into()))
    }

    /// Deletes queued objects older than the grace period. Returns how many were deleted.
    pub async fn collect_garbage(&self) -> R<usize> {
        let now = self.clock.now_ms();
        let grace = self.config.gc_grace.as_millis() as u64;
        let due: Vec<String> = self
            .catalog
            .state()
            .kv
            .range(GARBAGE_PREFIX.to_string()..)
            .take_while(|(k, _)| k.starts_with(GARBAGE_PREFIX))
            .filter(|(_, v)| v.parse::<u64>().is_ok_and(|at| at + grace <= now))
            .map(|(k, _)| k[GARBAGE_PREFIX.len()..].to_string())
            .take(1000)
            .collect();
        if due.is_empty() {
            return Ok(0);
        }
        for key in &due {
            self.store.delete(key).await?;
            self.cache.remove(key);
            self.dv_cache.lock().remove(key);
        }
        let records = due.iter().map(|k| CatalogRecord::KvDelete { key: format!("{GARBAGE_PREFIX}{k}") }).collect();
        // Deleting twice is harmless; a lost race only means another node did it.
        self.submit(records, |_| true).await?;
        bump(&self.stats.objects_deleted, due.len() as u64);
        Ok(due.len())
    }

    /// One round of background work: refresh, compaction of every table, GC.
    pub async fn maintain_once(&self) -> R<()> {
        self.refresh().await?;
        for db in self.databases() {
            for name in self.tables(&db).unwrap_or_default() {
                if let Err(e) = self.compact(&db, &name, false).await {
                    tracing::warn!(db, table = name, error = %e, "compaction failed; will retry");
                }
            }
        }
        self.collect_garbage().await?;
        Ok(())
    }

    /// Runs [`Self::maintain_once`] every maintenance interval until the warehouse is dropped.
    pub fn spawn_maintenance(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        let interval = self.config.maintenance_interval;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(w) = weak.upgrade() else { return };
                if let Err(e) = w.maintain_once().await {
                    tracing::warn!(error = %e, "warehouse maintenance failed; will retry");
                }
            }
        })
    }
}

/// Every object a segment references.
fn segment_objects(s: &SegmentMeta) -> Vec<String> {
    std::iter::once(s.key.clone()).chain(s.dv.clone()).collect()
}

fn key_columns(meta: &TableMeta) -> R<Vec<usize>> {
    let schema = meta.schema();
    meta.def
        .keys
        .iter()
        .map(|k| schema.index_of(k).map_err(|_| WhError::internal(format!("key column {k} missing"))))
        .collect()
}

fn key_converter(meta: &TableMeta) -> R<RowConverter> {
    let schema = meta.schema();
    let fields = key_columns(meta)?.into_iter().map(|i| SortField::new(schema.field(i).data_type().clone())).collect();
    RowConverter::new(fields).map_err(|e| WhError::internal(e.to_string()))
}

fn row_keys(conv: &RowConverter, cols: &[usize], batch: &RecordBatch) -> R<datafusion::arrow::row::Rows> {
    let arrays: Vec<_> = cols.iter().map(|&i| batch.column(i).clone()).collect();
    conv.convert_columns(&arrays).map_err(|e| WhError::internal(e.to_string()))
}

/// Checks rows to insert (schema, NOT NULL) and, for primary-key tables, keeps the last row
/// of each key.
fn prepare_insert(meta: &TableMeta, batches: &[RecordBatch]) -> R<Vec<RecordBatch>> {
    let schema = meta.schema();
    let batches: Vec<RecordBatch> = batches
        .iter()
        .filter(|b| b.num_rows() > 0)
        .map(|b| {
            RecordBatch::try_new(schema.clone(), b.columns().to_vec()).map_err(|e| {
                WhError::Invalid(if e.to_string().contains("non-nullable") {
                    format!("Column cannot be null: {e}")
                } else {
                    e.to_string()
                })
            })
        })
        .collect::<R<_>>()?;
    if meta.def.model != KeyModel::Primary || batches.is_empty() {
        return Ok(batches);
    }
    let all = concat_batches(&schema, &batches).map_err(|e| WhError::internal(e.to_string()))?;
    let conv = key_converter(meta)?;
    let keys = row_keys(&conv, &key_columns(meta)?, &all)?;
    let mut last: HashMap<&[u8], u32> = HashMap::with_capacity(all.num_rows());
    for i in 0..all.num_rows() {
        last.insert(keys.row(i).data(), i as u32);
    }
    if last.len() == all.num_rows() {
        return Ok(vec![all]);
    }
    let mut keep: Vec<u32> = last.into_values().collect();
    keep.sort_unstable();
    let deduped = take_record_batch(&all, &UInt32Array::from(keep)).map_err(|e| WhError::internal(e.to_string()))?;
    Ok(vec![deduped])
}
