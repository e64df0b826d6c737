//! Table data on the object store: Parquet segments, their statistics, and delete vectors.
//!
//! A segment is an immutable Parquet object holding rows appended by one commit (or merged by
//! compaction). Rows later deleted or replaced are marked in the segment's delete vector, a
//! Roaring bitmap of row positions written as its own object and replaced (never modified) on
//! each change, so the segment itself is never rewritten until compaction.

use std::sync::Arc;

use arrow_array::{BooleanArray, RecordBatch};
use arrow_schema::{DataType, SchemaRef};
use bytes::Bytes;
use datafusion::common::ScalarValue;
use datafusion::functions_aggregate::min_max::{MaxAccumulator, MinAccumulator};
use datafusion::logical_expr::Accumulator;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};

use super::WhError;

/// Rows per Parquet row group and per decoded batch.
pub const BATCH_ROWS: usize = 8192;
/// Longer strings get no min/max (they would bloat the metadata for little pruning).
const MAX_STAT_LEN: usize = 256;

/// Min, max and null count of one column in one segment; min/max as text (absent if unknown).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnStats {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<String>,
    pub nulls: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentMeta {
    /// Object key of the Parquet data.
    pub key: String,
    pub rows: u64,
    pub bytes: u64,
    /// Rows marked deleted in the delete vector.
    #[serde(default)]
    pub deleted: u64,
    /// Object key of the current delete vector, if any rows are deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dv: Option<String>,
    /// One entry per table column, in column order.
    pub stats: Vec<ColumnStats>,
    /// When the segment was written (ms; 0 in metadata older than the field).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub written_ms: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl SegmentMeta {
    pub fn live_rows(&self) -> u64 {
        self.rows - self.deleted
    }
}

/// Encodes batches (all of the table's schema) as one Parquet object, with its statistics.
pub fn encode(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<(Bytes, Vec<ColumnStats>, u64), WhError> {
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).map_err(|e| WhError::internal(e.to_string()))?))
        .set_max_row_group_row_count(Some(BATCH_ROWS * 16))
        .build();
    let mut writer = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props))
        .map_err(|e| WhError::internal(format!("parquet writer: {e}")))?;
    let mut rows = 0u64;
    for batch in batches {
        writer.write(batch).map_err(|e| WhError::internal(format!("parquet write: {e}")))?;
        rows += batch.num_rows() as u64;
    }
    let data = writer.into_inner().map_err(|e| WhError::internal(format!("parquet close: {e}")))?;
    Ok((Bytes::from(data), stats(schema, batches)?, rows))
}

/// Decodes a Parquet segment.
pub fn decode(key: &str, data: Bytes) -> Result<Vec<RecordBatch>, WhError> {
    let corrupt = |e: String| WhError::Storage(format!("segment {key} is unreadable: {e}"));
    let reader = ParquetRecordBatchReaderBuilder::try_new(data)
        .map_err(|e| corrupt(e.to_string()))?
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| corrupt(e.to_string()))?;
    reader.collect::<Result<Vec<_>, _>>().map_err(|e| corrupt(e.to_string()))
}

fn stats(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<ColumnStats>, WhError> {
    let df = |e: datafusion::error::DataFusionError| WhError::internal(e.to_string());
    let mut out = Vec::with_capacity(schema.fields().len());
    for (i, field) in schema.fields().iter().enumerate() {
        let nulls = batches.iter().map(|b| b.column(i).null_count() as u64).sum();
        let dt = field.data_type();
        if matches!(dt, DataType::Binary | DataType::LargeBinary | DataType::BinaryView) {
            out.push(ColumnStats { min: None, max: None, nulls });
            continue;
        }
        let mut min = MinAccumulator::try_new(dt).map_err(df)?;
        let mut max = MaxAccumulator::try_new(dt).map_err(df)?;
        for b in batches {
            min.update_batch(&[b.column(i).clone()]).map_err(df)?;
            max.update_batch(&[b.column(i).clone()]).map_err(df)?;
        }
        let text = |v: ScalarValue| (!v.is_null()).then(|| v.to_string()).filter(|s| s.len() <= MAX_STAT_LEN);
        out.push(ColumnStats { min: text(min.evaluate().map_err(df)?), max: text(max.evaluate().map_err(df)?), nulls });
    }
    Ok(out)
}

/// A statistic back as a value of the column's type.
pub fn stat_value(text: Option<&str>, dt: &DataType) -> ScalarValue {
    text.and_then(|t| ScalarValue::try_from_string(t.to_string(), dt).ok())
        .unwrap_or_else(|| ScalarValue::try_from(dt).unwrap_or(ScalarValue::Null))
}

const DV_MAGIC: &[u8; 4] = b"AQDV";

pub fn encode_dv(bitmap: &RoaringBitmap) -> Result<Bytes, WhError> {
    let mut out = Vec::with_capacity(8 + bitmap.serialized_size());
    out.extend_from_slice(DV_MAGIC);
    bitmap.serialize_into(&mut out).map_err(|e| WhError::internal(e.to_string()))?;
    let crc = crc32c::crc32c(&out[4..]);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(Bytes::from(out))
}

pub fn decode_dv(key: &str, data: &[u8]) -> Result<RoaringBitmap, WhError> {
    let corrupt = |why: &str| WhError::Storage(format!("delete vector {key} is corrupt: {why}"));
    if data.len() < 8 || &data[..4] != DV_MAGIC {
        return Err(corrupt("bad header"));
    }
    let (body, crc) = data[4..].split_at(data.len() - 8);
    if crc32c::crc32c(body).to_le_bytes() != crc {
        return Err(corrupt("checksum mismatch"));
    }
    RoaringBitmap::deserialize_from(body).map_err(|e| corrupt(&e.to_string()))
}

/// The rows of `batches` not in `deleted` (positions count across the batches).
pub fn live(batches: &[RecordBatch], deleted: &RoaringBitmap) -> Result<Vec<RecordBatch>, WhError> {
    if deleted.is_empty() {
        return Ok(batches.to_vec());
    }
    let mut out = Vec::with_capacity(batches.len());
    let mut base = 0u32;
    for batch in batches {
        let n = batch.num_rows() as u32;
        let dead = deleted.range_cardinality(base..base + n);
        if dead == 0 {
            out.push(batch.clone());
        } else if dead < n as u64 {
            let mask: BooleanArray = (base..base + n).map(|r| Some(!deleted.contains(r))).collect();
            out.push(arrow_select_filter(batch, &mask)?);
        }
        base += n;
    }
    Ok(out)
}

fn arrow_select_filter(batch: &RecordBatch, mask: &BooleanArray) -> Result<RecordBatch, WhError> {
    datafusion::arrow::compute::filter_record_batch(batch, mask).map_err(|e| WhError::internal(e.to_string()))
}

/// Decoded segments in memory, least recently used evicted past a byte limit.
#[derive(Debug)]
pub struct SegmentCache {
    limit: usize,
    inner: parking_lot::Mutex<CacheInner>,
}

#[derive(Debug, Default)]
struct CacheInner {
    entries: std::collections::HashMap<String, (Arc<Vec<RecordBatch>>, usize, u64)>,
    bytes: usize,
    tick: u64,
}

impl SegmentCache {
    pub fn new(limit: usize) -> Self {
        SegmentCache { limit, inner: parking_lot::Mutex::new(CacheInner::default()) }
    }

    pub fn get(&self, key: &str) -> Option<Arc<Vec<RecordBatch>>> {
        let mut inner = self.inner.lock();
        inner.tick += 1;
        let tick = inner.tick;
        let entry = inner.entries.get_mut(key)?;
        entry.2 = tick;
        Some(entry.0.clone())
    }

    pub fn insert(&self, key: &str, batches: Arc<Vec<RecordBatch>>) {
        let size: usize = batches.iter().map(RecordBatch::get_array_memory_size).sum();
        let mut inner = self.inner.lock();
        inner.tick += 1;
        let tick = inner.tick;
        if let Some(old) = inner.entries.insert(key.to_string(), (batches, size, tick)) {
            inner.bytes -= old.1;
        }
        inner.bytes += size;
        while inner.bytes > self.limit && inner.entries.len() > 1 {
            let Some(oldest) = inner.entries.iter().min_by_key(|(_, e)| e.2).map(|(k, _)| k.clone()) else { break };
            if let Some(e) = inner.entries.remove(&oldest) {
                inner.bytes -= e.1;
            }
        }
    }

    pub fn remove(&self, key: &str) {
        let mut inner = self.inner.lock();
        if let Some(e) = inner.entries.remove(key) {
            inner.bytes -= e.1;
        }
    }

    /// (entries, bytes) held.
    pub fn usage(&self) -> (usize, usize) {
        let inner = self.inner.lock();
        (inner.entries.len(), inner.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int64Array, StringArray};
    use arrow_schema::{Field, Schema};

    #[test]
    fn segments_and_delete_vectors_round_trip() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![3, 1, 2])),
                Arc::new(StringArray::from(vec![Some("c"), None, Some("a")])),
            ],
        )
        .unwrap();
        let (data, stats, rows) = encode(&schema, std::slice::from_ref(&batch)).unwrap();
        assert_eq!(rows, 3);
        assert_eq!(stats[0], ColumnStats { min: Some("1".into()), max: Some("3".into()), nulls: 0 });
        assert_eq!(stats[1], ColumnStats { min: Some("a".into()), max: Some("c".into()), nulls: 1 });
        assert_eq!(stat_value(stats[0].max.as_deref(), &DataType::Int64), ScalarValue::Int64(Some(3)));
        assert_eq!(decode("k", data.clone()).unwrap(), vec![batch.clone()]);
        assert!(decode("k", data.slice(0..data.len() - 3)).is_err());

        let dv: RoaringBitmap = [0u32, 2].into_iter().collect();
        let bytes = encode_dv(&dv).unwrap();
        assert_eq!(decode_dv("d", &bytes).unwrap(), dv);
        let mut bad = bytes.to_vec();
        bad[6] ^= 1;
        assert!(decode_dv("d", &bad).is_err());
        let kept = live(&[batch], &dv).unwrap();
        assert_eq!(kept[0].num_rows(), 1);
        assert_eq!(kept[0].column(0).as_any().downcast_ref::<Int64Array>().unwrap().value(0), 1);
    }
}
