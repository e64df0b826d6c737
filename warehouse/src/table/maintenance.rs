//! Background work on tables: compaction and deletion of objects no longer referenced.

use std::sync::Arc;
use std::time::Instant;

use arrow_array::RecordBatch;
use automq_storage::metadata::state::CatalogRecord;
use datafusion::arrow::compute::concat_batches;

use super::namespace::GARBAGE_PREFIX;
use super::segment::{self, SegmentMeta};
use super::{bump, is_inline, segment_objects, Warehouse, WhError, MAX_ATTEMPTS, R};

impl Warehouse {
    /// Merges small segments and rewrites segments with many deleted rows. Returns whether
    /// anything changed.
    pub async fn compact(&self, db: &str, name: &str, force: bool) -> R<bool> {
        let meta = self.require_table(db, name)?;
        let writer = self.writer(&meta.id);
        let mut writer = writer.lock().await;
        for _ in 0..MAX_ATTEMPTS {
            let meta = self.require_table(db, name)?;
            let small = |s: &SegmentMeta| {
                s.rows < self.config.target_segment_rows
                    || s.deleted as f64 >= s.rows as f64 * self.config.compact_deleted_ratio
                    || is_inline(&s.key)
            };
            let picked: Vec<usize> =
                meta.segments.iter().enumerate().filter(|(_, s)| small(s)).map(|(i, _)| i).collect();
            let heavy = picked.iter().any(|&i| {
                let s = &meta.segments[i];
                s.deleted > 0 && s.deleted as f64 >= s.rows as f64 * self.config.compact_deleted_ratio
            });
            // Fresh rows held inline in the catalog are flushed once large or old enough.
            let oldest_inline = meta.segments.iter().filter(|s| is_inline(&s.key)).map(|s| s.written_ms).min();
            let flush = oldest_inline.is_some_and(|oldest| {
                force
                    || meta.inline_bytes() >= self.config.inline_flush_bytes
                    || meta.inline_segments() >= self.config.inline_flush_segments
                    || oldest + self.config.inline_flush_after.as_millis() as u64 <= self.clock.now_ms()
            });
            let enough = picked.len() >= self.config.compact_min_segments || (force && (picked.len() > 1 || heavy));
            if !(enough || heavy || flush) || picked.is_empty() {
                return Ok(false);
            }
            // A flush alone writes only the fresh rows (merging them with every other small
            // segment each time would rewrite those again and again during a bulk load).
            let picked: Vec<usize> = match enough || heavy {
                true => picked,
                false => picked.into_iter().filter(|&i| is_inline(&meta.segments[i].key)).collect(),
            };
            let started = Instant::now();
            let inputs: Vec<SegmentMeta> = picked.iter().map(|&i| meta.segments[i].clone()).collect();
            let mut rows: Vec<RecordBatch> = self.live_rows_of(&meta, &inputs).await?.into_iter().flatten().collect();
            rows.retain(|b| b.num_rows() > 0);
            let schema = meta.schema();
            let (mut outputs, mut output_rows) = (Vec::new(), Vec::new());
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
                outputs.push(self.upload_segment(&meta, &chunks, false).await?);
                output_rows.push(chunk);
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
            if self.commit_table(&mut next, garbage, Vec::new()).await? {
                // Rows moved: point their keys at the outputs if the index was current, else
                // it is rebuilt on the next write.
                let moved = writer.index.version == meta.version
                    && super::write::repoint(&mut writer.index, &meta, &outputs, &output_rows).is_ok();
                writer.index.version = if moved { next.version } else { 0 };
                bump(&self.stats.compactions, 1);
                if oldest_inline.is_some() {
                    bump(&self.stats.inline_flushes, 1);
                }
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
            if let Some(disk) = &self.disk {
                disk.remove(key);
            }
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
        let wake = self.maintenance_wake.clone();
        tokio::spawn(async move {
            loop {
                // Every interval, or at once when a write left a table with many inline segments.
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = wake.notified() => {}
                }
                let Some(w) = weak.upgrade() else { return };
                if let Err(e) = w.maintain_once().await {
                    tracing::warn!(error = %e, "warehouse maintenance failed; will retry");
                }
            }
        })
    }
}
