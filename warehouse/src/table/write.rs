//! Changes to a table's rows: inserts (upserts on primary-key tables), deletes, updates and
//! truncation, each committed as one new table version.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use arrow_array::{Array, BooleanArray, RecordBatch, UInt32Array};
use automq_storage::metadata::state::CatalogRecord;
use datafusion::arrow::compute::{concat_batches, take_record_batch};
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use roaring::RoaringBitmap;

use super::segment::SegmentMeta;
use super::{bump, segment_objects, KeyModel, TableMeta, Warehouse, WhError, MAX_ATTEMPTS, R};

/// Primary-key index of one table: key bytes -> (segment ordinal, row).
#[derive(Debug, Default)]
pub(super) struct PkIndex {
    /// The table version this index reflects (0: not built).
    pub(super) version: u64,
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

/// Per-table writer state on this node (its lock serialises the node's writes to the table).
#[derive(Debug, Default)]
pub(super) struct TableWriter {
    pub(super) index: PkIndex,
}

type MaskFn<'a> = &'a (dyn Fn(&RecordBatch) -> R<BooleanArray> + Send + Sync);
type AssignFn<'a> = &'a (dyn Fn(&RecordBatch) -> R<RecordBatch> + Send + Sync);

/// A plain INSERT waiting to be committed with its group: its checked rows, their count, and
/// where its outcome goes.
pub(super) struct QueuedInsert {
    rows: Vec<RecordBatch>,
    count: u64,
    tx: tokio::sync::oneshot::Sender<R<u64>>,
}

/// What a write does to a table.
pub enum Write<'a> {
    /// Append rows (upsert on primary-key tables).
    Insert(Vec<RecordBatch>),
    /// Delete the rows for which the mask is true.
    Delete(MaskFn<'a>),
    /// Replace the rows for which the mask is true by what the function makes of them.
    Update(MaskFn<'a>, AssignFn<'a>),
    /// Delete every row.
    Truncate,
    /// A change feed applied in one commit (primary-key tables): upsert these rows and delete
    /// the rows holding these keys (batches with the table's schema; only key columns are read
    /// from `deletes`). A key must not be in both.
    Changes { upserts: Vec<RecordBatch>, deletes: Vec<RecordBatch> },
}

/// Catalog records committed atomically with a write (a loader's consumed offsets), and a
/// precondition checked against the catalog before every attempt: if it fails, the write is
/// abandoned with its error and nothing is committed. The check reads the keys `reads`; the
/// write commits only if they still hold the values the check saw.
pub struct Attach<'a> {
    pub records: Vec<(String, String)>,
    pub reads: Vec<String>,
    pub check: &'a (dyn Fn(&Warehouse) -> R<()> + Send + Sync),
}

impl Attach<'_> {
    /// Runs the check and returns the records to commit: the preconditions (the values of
    /// `reads` the check saw) and then `records`.
    fn checked(&self, w: &Warehouse) -> R<Vec<CatalogRecord>> {
        loop {
            let state = w.catalog.state();
            (self.check)(w)?;
            if !Arc::ptr_eq(&state, &w.catalog.state()) {
                continue; // the state moved while the check read it
            }
            let mut out: Vec<CatalogRecord> =
                self.reads.iter().map(|k| Warehouse::expect(k, state.kv.get(k).map(|v| &**v))).collect();
            out.extend(
                self.records.iter().map(|(key, value)| CatalogRecord::KvPut { key: key.clone(), value: value.clone() }),
            );
            return Ok(out);
        }
    }
}

impl std::fmt::Debug for Attach<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attach").field("records", &self.records).finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Write<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Write::Insert(_) => "Insert",
            Write::Delete(_) => "Delete",
            Write::Update(..) => "Update",
            Write::Truncate => "Truncate",
            Write::Changes { .. } => "Changes",
        })
    }
}

/// A write worked out against one committed version: rows to mark deleted (per segment
/// position) and rows to append.
#[derive(Default)]
struct Plan {
    deletes: BTreeMap<usize, RoaringBitmap>,
    new_rows: Vec<RecordBatch>,
    affected: u64,
}

/// Encodes a table's key columns as comparable bytes.
struct KeyEncoder {
    converter: RowConverter,
    columns: Vec<usize>,
}

impl KeyEncoder {
    fn new(meta: &TableMeta) -> R<Self> {
        let schema = meta.schema();
        let columns = meta
            .def
            .keys
            .iter()
            .map(|k| schema.index_of(k).map_err(|_| WhError::internal(format!("key column {k} missing"))))
            .collect::<R<Vec<usize>>>()?;
        let fields = columns.iter().map(|&i| SortField::new(schema.field(i).data_type().clone())).collect();
        let converter = RowConverter::new(fields).map_err(|e| WhError::internal(e.to_string()))?;
        Ok(KeyEncoder { converter, columns })
    }

    fn keys(&self, batch: &RecordBatch) -> R<Rows> {
        let arrays: Vec<_> = self.columns.iter().map(|&i| batch.column(i).clone()).collect();
        self.converter.convert_columns(&arrays).map_err(|e| WhError::internal(e.to_string()))
    }
}

impl Warehouse {
    /// Brings a primary-key index up to the table's committed version.
    async fn ensure_index(&self, index: &mut PkIndex, meta: &TableMeta, keys: &KeyEncoder) -> R<()> {
        if index.version == meta.version {
            return Ok(());
        }
        let started = Instant::now();
        let mut fresh = PkIndex { version: meta.version, ..PkIndex::default() };
        for seg in &meta.segments {
            let rows = self.segment_rows(meta, seg).await?;
            let dv = self.delete_vector(meta, seg).await?;
            let ordinal = fresh.ordinal(&seg.key);
            let mut base = 0u32;
            for batch in rows.iter() {
                let encoded = keys.keys(batch)?;
                for i in 0..batch.num_rows() {
                    let row = base + i as u32;
                    if !dv.contains(row) {
                        fresh.rows.insert(encoded.row(i).data().into(), (ordinal, row));
                    }
                }
                base += batch.num_rows() as u32;
            }
        }
        tracing::debug!(table = %meta.name, keys = fresh.rows.len(), elapsed_ms = started.elapsed().as_millis() as u64, "primary-key index built");
        *index = fresh;
        Ok(())
    }

    /// The live rows matching `mask`, marked for deletion, and (for an update) their new values.
    async fn matching(&self, meta: &TableMeta, mask: MaskFn<'_>, assign: Option<AssignFn<'_>>) -> R<Plan> {
        let mut plan = Plan::default();
        for (i, seg) in meta.segments.iter().enumerate() {
            let rows = self.segment_rows(meta, seg).await?;
            let dv = self.delete_vector(meta, seg).await?;
            let mut base = 0u32;
            for batch in rows.iter() {
                let m = mask(batch)?;
                let hit: Vec<u32> = (0..batch.num_rows() as u32)
                    .filter(|&r| m.is_valid(r as usize) && m.value(r as usize) && !dv.contains(base + r))
                    .collect();
                if !hit.is_empty() {
                    plan.affected += hit.len() as u64;
                    plan.deletes.entry(i).or_default().extend(hit.iter().map(|r| base + r));
                    if let Some(assign) = assign {
                        let picked = take_record_batch(batch, &UInt32Array::from(hit))
                            .map_err(|e| WhError::internal(e.to_string()))?;
                        plan.new_rows.push(assign(&picked)?);
                    }
                }
                base += batch.num_rows() as u32;
            }
        }
        if !plan.new_rows.is_empty() {
            plan.new_rows = prepare_insert(meta, &plan.new_rows)?;
        }
        Ok(plan)
    }

    /// The keys of the rows `deletes` marks (they leave the index unless re-inserted).
    async fn keys_of(
        &self,
        meta: &TableMeta,
        deletes: &BTreeMap<usize, RoaringBitmap>,
        keys: &KeyEncoder,
    ) -> R<Vec<Box<[u8]>>> {
        let mut out = Vec::new();
        for (&i, marked) in deletes {
            let rows = self.segment_rows(meta, &meta.segments[i]).await?;
            let mut base = 0u32;
            for batch in rows.iter() {
                let n = batch.num_rows() as u32;
                if marked.range_cardinality(base..base + n) > 0 {
                    let encoded = keys.keys(batch)?;
                    out.extend(marked.range(base..base + n).map(|r| encoded.row((r - base) as usize).data().into()));
                }
                base += n;
            }
        }
        Ok(out)
    }

    /// Writes the merged delete vectors into `next` (segments left empty are dropped), and
    /// returns the objects written and the ones no longer referenced.
    async fn apply_deletes(
        &self,
        meta: &TableMeta,
        deletes: &BTreeMap<usize, RoaringBitmap>,
        next: &mut TableMeta,
    ) -> R<(Vec<String>, Vec<String>)> {
        let (mut written, mut garbage) = (Vec::new(), Vec::new());
        for (&i, add) in deletes {
            let seg = &meta.segments[i];
            let merged = &*self.delete_vector(meta, seg).await? | add;
            if merged.len() >= seg.rows {
                // Nothing left: the segment goes away below, no delete vector needed.
                next.segments[i].deleted = seg.rows;
                continue;
            }
            next.segments[i].deleted = merged.len();
            let key = self.upload_dv(meta, seg, merged).await?;
            written.push(key.clone());
            garbage.extend(next.segments[i].dv.replace(key));
        }
        next.segments.retain(|s| {
            let dead = s.deleted >= s.rows;
            if dead {
                garbage.extend(segment_objects(s));
            }
            !dead
        });
        Ok((written, garbage))
    }

    /// Applies a write to a table and returns the number of rows it affected.
    pub async fn write(&self, db: &str, name: &str, write: Write<'_>) -> R<u64> {
        self.write_attached(db, name, write, None).await
    }

    /// Applies a write to a table together with `attach` (committed in the same catalog
    /// record, or not at all) and returns the number of rows it affected.
    ///
    /// Plain INSERTs are committed in groups: concurrent INSERTs into one table wait for its
    /// writer together, and whoever gets it commits all of them in one catalog record (one
    /// object-store write for the group), each told its own row count. The group commits on
    /// its own task, so a statement abandoned meanwhile cannot abandon the others.
    pub async fn write_attached(&self, db: &str, name: &str, write: Write<'_>, attach: Option<&Attach<'_>>) -> R<u64> {
        let first = self.require_table(db, name)?;
        if let Some(attach) = attach {
            (attach.check)(self)?;
        }
        if let (Write::Insert(batches), None) = (&write, attach) {
            return self.insert_grouped(db, name, &first, batches).await;
        }
        let writer = self.writer(&first.id);
        let mut writer = writer.lock().await;
        self.write_locked(db, name, &first, write, attach, &mut writer).await
    }

    async fn insert_grouped(&self, db: &str, name: &str, first: &TableMeta, batches: &[RecordBatch]) -> R<u64> {
        // Checked alone first: one bad statement must not fail the others of its group.
        let rows = prepare_insert(first, batches)?;
        let count: u64 = rows.iter().map(|b| b.num_rows() as u64).sum();
        if count == 0 {
            return Ok(0);
        }
        let Some(me) = self.me.upgrade() else { return Err(WhError::internal("the warehouse is closing")) };
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.insert_queue.lock().entry(first.id.clone()).or_default().push(QueuedInsert { rows, count, tx });
        let writer = self.writer(&first.id);
        let (db, name, first) = (db.to_string(), name.to_string(), first.clone());
        tokio::spawn(async move {
            let mut writer = writer.lock_owned().await;
            let group = me.insert_queue.lock().remove(&first.id).unwrap_or_default();
            if group.is_empty() {
                return; // an earlier holder of the writer committed ours
            }
            let all: Vec<RecordBatch> = group.iter().flat_map(|q| q.rows.iter().cloned()).collect();
            let result = me.write_locked(&db, &name, &first, Write::Insert(all), None, &mut writer).await;
            for q in group {
                let _ = q.tx.send(result.clone().map(|_| q.count));
            }
        });
        rx.await.unwrap_or_else(|_| Err(WhError::internal("the insert's group commit was lost")))
    }

    async fn write_locked(
        &self,
        db: &str,
        name: &str,
        first: &TableMeta,
        write: Write<'_>,
        attach: Option<&Attach<'_>>,
        writer: &mut TableWriter,
    ) -> R<u64> {
        // Inserted rows do not depend on the table's state: upload them once.
        let mut inserted: Option<(Vec<RecordBatch>, SegmentMeta)> = None;
        let to_insert = match &write {
            Write::Insert(batches) => Some(batches),
            Write::Changes { upserts, deletes } => {
                if !deletes.is_empty() && first.def.model != KeyModel::Primary {
                    return Err(WhError::Invalid(format!(
                        "table '{}' has no primary key: rows cannot be deleted by key",
                        first.name
                    )));
                }
                Some(upserts)
            }
            _ => None,
        };
        if let Some(batches) = to_insert {
            let rows = prepare_insert(first, batches)?;
            if !rows.is_empty() {
                let seg = self.upload_segment(first, &rows, true).await?;
                inserted = Some((rows, seg));
            } else if matches!(write, Write::Insert(_)) && attach.is_none() {
                return Ok(0);
            }
        }
        for _ in 0..MAX_ATTEMPTS {
            let meta = self.require_table(db, name)?;
            if meta.id != first.id {
                break; // dropped and re-created under us
            }
            let extra = match attach.map(|a| a.checked(self)).transpose() {
                Ok(extra) => extra.unwrap_or_default(),
                Err(e) => {
                    if let Some((_, seg)) = inserted {
                        self.discard(&[seg.key]).await;
                    }
                    return Err(e);
                }
            };
            let keys = match meta.def.model {
                KeyModel::Primary => Some(KeyEncoder::new(&meta)?),
                KeyModel::Duplicate => None,
            };
            if let Some(keys) = &keys {
                self.ensure_index(&mut writer.index, &meta, keys).await?;
            }
            let mut plan = match &write {
                Write::Insert(_) | Write::Changes { .. } => {
                    let rows = inserted.as_ref().map(|(rows, _)| rows.clone()).unwrap_or_default();
                    Plan { affected: rows.iter().map(|b| b.num_rows() as u64).sum(), new_rows: rows, ..Plan::default() }
                }
                Write::Truncate => Plan {
                    affected: meta.segments.iter().map(SegmentMeta::live_rows).sum(),
                    deletes: (0..meta.segments.len())
                        .map(|i| (i, (0..meta.segments[i].rows as u32).collect()))
                        .collect(),
                    ..Plan::default()
                },
                Write::Delete(mask) => self.matching(&meta, *mask, None).await?,
                Write::Update(mask, assign) => self.matching(&meta, *mask, Some(*assign)).await?,
            };
            if let (Write::Changes { deletes, .. }, Some(keys)) = (&write, &keys) {
                for batch in deletes {
                    let encoded = keys.keys(batch)?;
                    for i in 0..batch.num_rows() {
                        if let Some(&(ord, row)) = writer.index.rows.get(encoded.row(i).data()) {
                            let seg_key = &writer.index.segments[ord as usize];
                            if let Some(pos) = meta.segments.iter().position(|s| &s.key == seg_key) {
                                if plan.deletes.entry(pos).or_default().insert(row) {
                                    plan.affected += 1;
                                }
                            }
                        }
                    }
                }
            }
            if plan.affected == 0 && plan.new_rows.is_empty() {
                match attach {
                    None => return Ok(0),
                    Some(attach) => {
                        // Nothing changes in the table; the attached records still commit.
                        let expect = &attach.records;
                        let landed = |w: &Warehouse| expect.iter().all(|(k, v)| w.kv_get(k).as_ref() == Some(v));
                        if self.submit(extra, landed).await? {
                            return Ok(0);
                        }
                        continue;
                    }
                }
            }
            // Upserts: the rows currently holding the new rows' keys die.
            let mut new_keys: Vec<Box<[u8]>> = Vec::new();
            if let Some(keys) = &keys {
                for batch in &plan.new_rows {
                    let encoded = keys.keys(batch)?;
                    for i in 0..batch.num_rows() {
                        let key: Box<[u8]> = encoded.row(i).data().into();
                        if let Some(&(ord, row)) = writer.index.rows.get(&key) {
                            let seg_key = &writer.index.segments[ord as usize];
                            if let Some(pos) = meta.segments.iter().position(|s| &s.key == seg_key) {
                                plan.deletes.entry(pos).or_default().insert(row);
                            }
                        }
                        new_keys.push(key);
                    }
                }
            }
            let dying_keys = match &keys {
                Some(keys) => self.keys_of(&meta, &plan.deletes, keys).await?,
                None => Vec::new(),
            };
            // Write the objects, then commit the new metadata.
            let mut next = (*meta).clone();
            let (mut written, garbage) = self.apply_deletes(&meta, &plan.deletes, &mut next).await?;
            let new_segment = match (&write, &inserted) {
                (_, _) if plan.new_rows.is_empty() => None,
                (Write::Insert(_), Some((_, seg))) => Some(seg.clone()),
                _ => {
                    let seg = self.upload_segment(&meta, &plan.new_rows, true).await?;
                    written.push(seg.key.clone());
                    Some(seg)
                }
            };
            next.segments.extend(new_segment.clone());
            if self.commit_table(&mut next, garbage, extra).await? {
                if keys.is_some() {
                    let index = &mut writer.index;
                    for key in &dying_keys {
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
                bump(&self.stats.rows_written, plan.new_rows.iter().map(|b| b.num_rows() as u64).sum());
                return Ok(plan.affected);
            }
            // Lost to another node: drop what this attempt wrote (an insert's segment stays
            // for the next attempt).
            self.discard(&written).await;
        }
        if let Some((_, seg)) = inserted {
            self.discard(&[seg.key]).await;
        }
        if self.table(db, name).is_none_or(|t| t.id != first.id) {
            return Err(WhError::UnknownTable(db.to_string(), name.to_string()));
        }
        Err(WhError::Storage("too many conflicting changes to this table; try again".into()))
    }
}

/// Points the keys of compaction's output rows at their new places (each output holds the live
/// rows of its inputs, so every key that lived in an input lives in exactly one output).
pub(super) fn repoint(index: &mut PkIndex, meta: &TableMeta, outputs: &[SegmentMeta], rows: &[RecordBatch]) -> R<()> {
    if meta.def.model != KeyModel::Primary {
        return Ok(());
    }
    let keys = KeyEncoder::new(meta)?;
    // Ordinals of segments no longer in the table stay behind; start over once they dominate.
    if index.segments.len() > 4 * (meta.segments.len() + outputs.len()) + 64 {
        return Err(WhError::internal("index segment list outgrown; rebuild"));
    }
    for (seg, batch) in outputs.iter().zip(rows) {
        let ord = index.ordinal(&seg.key);
        let encoded = keys.keys(batch)?;
        for i in 0..batch.num_rows() {
            index.rows.insert(encoded.row(i).data().into(), (ord, i as u32));
        }
    }
    Ok(())
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
    let keys = KeyEncoder::new(meta)?.keys(&all)?;
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
