//! What one partition's log says about transactions, rebuilt from the log itself (on open, and
//! by brokers serving a partition's committed data from the bucket): the transactions still
//! open (each producer's first offset) and the aborted ones, which `read_committed` fetches
//! list so that clients drop their records.
//!
//! The last stable offset (LSO) is the first offset of the earliest open transaction, or the
//! high watermark when none is open: `read_committed` consumers read up to it.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::batch::{self, BatchHeader};

/// An aborted transaction in one partition: its producer, its first offset here, and the
/// offset of its abort marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
}

#[derive(Debug, Default, Clone)]
pub struct TxnIndex {
    /// Producer id -> first offset of its open transaction.
    open: BTreeMap<i64, i64>,
    /// In marker order.
    aborted: Vec<AbortedTxn>,
}

impl TxnIndex {
    /// Takes one batch appended at `base_offset` into account.
    pub fn observe(&mut self, h: &BatchHeader, bytes: &Bytes, base_offset: i64) {
        if !h.is_transactional() {
            return;
        }
        if h.is_control() {
            let Some(commit) = batch::marker_kind(bytes) else { return };
            if let Some(first_offset) = self.open.remove(&h.producer_id) {
                if !commit {
                    self.aborted.push(AbortedTxn {
                        producer_id: h.producer_id,
                        first_offset,
                        last_offset: base_offset,
                    });
                }
            }
        } else {
            self.open.entry(h.producer_id).or_insert(base_offset);
        }
    }

    /// The last stable offset, given the high watermark.
    pub fn last_stable_offset(&self, high_watermark: i64) -> i64 {
        self.open.values().min().map_or(high_watermark, |first| (*first).min(high_watermark))
    }

    /// Aborted transactions with records in `from..to`.
    pub fn aborted_between(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        self.aborted.iter().filter(|a| a.last_offset >= from && a.first_offset < to).copied().collect()
    }

    /// Open transactions: (producer id, first offset).
    pub fn open(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.open.iter().map(|(p, o)| (*p, *o))
    }

    /// Forgets aborted transactions wholly below the log start.
    pub fn trim(&mut self, start: i64) {
        self.aborted.retain(|a| a.last_offset >= start);
    }
}

/// Transaction indexes of partitions this broker serves from the bucket without leading them
/// (zone-local fetches): built from the committed data like a follower's, one scan per stream
/// kept up to date incrementally.
#[derive(Debug, Default)]
pub struct BucketTxns(parking_lot::Mutex<std::collections::HashMap<u64, (i64, TxnIndex)>>);

impl BucketTxns {
    /// The index of `stream` covering its committed data up to `end`.
    pub async fn index(
        &self,
        engine: &automq_storage::stream::StreamEngine,
        stream: u64,
        end: i64,
    ) -> crate::error::Result<TxnIndex> {
        let start = engine.catalog().state().streams.get(&stream).map_or(0, |s| s.start_offset as i64);
        let (mut upto, mut index) = self.0.lock().remove(&stream).unwrap_or((start, TxnIndex::default()));
        if upto < start {
            // Retention passed what was scanned: what is gone cannot be read anyway.
            (upto, index) = (start, TxnIndex::default());
        }
        while upto < end {
            let read = engine.fetch(stream, upto as u64, 8 << 20).await?;
            if read.batches.is_empty() {
                break;
            }
            for b in &read.batches {
                if let Ok(h) = batch::parse(&b.payload) {
                    index.observe(&h, &b.payload, b.base_offset as i64);
                }
                upto = b.end_offset as i64;
            }
        }
        index.trim(start);
        self.0.lock().insert(stream, (upto, index.clone()));
        Ok(index)
    }

    /// Forgets a stream (the partition is led here now, or deleted).
    pub fn forget(&self, stream: u64) {
        self.0.lock().remove(&stream);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{encode_marker, Marker};

    fn data(pid: i64, transactional: bool) -> (BatchHeader, Bytes) {
        let b = crate::batch::encode_plain(
            &[(None, Some(Bytes::from_static(b"v")))],
            0,
            kafka_protocol::records::Compression::None,
        )
        .unwrap();
        let mut h = crate::batch::parse(&b).unwrap();
        h.producer_id = pid;
        if transactional {
            h.attributes |= 0x10;
        }
        (h, b)
    }

    fn marker(pid: i64, commit: bool) -> (BatchHeader, Bytes) {
        let b =
            encode_marker(&Marker { producer_id: pid, producer_epoch: 0, commit, coordinator_epoch: 0 }, 0).unwrap();
        (crate::batch::parse(&b).unwrap(), b)
    }

    #[test]
    fn open_transactions_hold_the_stable_offset_and_aborts_are_listed() {
        let mut ix = TxnIndex::default();
        let (h, b) = data(-1, false);
        ix.observe(&h, &b, 0);
        assert_eq!(ix.last_stable_offset(1), 1);
        let (h, b) = data(7, true);
        ix.observe(&h, &b, 1);
        ix.observe(&h, &b, 2);
        let (h, b) = data(8, true);
        ix.observe(&h, &b, 3);
        assert_eq!(ix.last_stable_offset(4), 1, "held at producer 7's first offset");
        let (h, b) = marker(7, false);
        ix.observe(&h, &b, 4);
        assert_eq!(ix.last_stable_offset(5), 3, "now producer 8's");
        let (h, b) = marker(8, true);
        ix.observe(&h, &b, 5);
        assert_eq!(ix.last_stable_offset(6), 6);
        assert_eq!(ix.aborted_between(0, 6), vec![AbortedTxn { producer_id: 7, first_offset: 1, last_offset: 4 }]);
        assert!(ix.aborted_between(5, 6).is_empty(), "ends before the range");
        ix.trim(5);
        assert!(ix.aborted_between(0, 6).is_empty());
    }
}
