//! Idempotent producer state of one partition, with Kafka's rules: per producer id, the epoch
//! and the last five batches (first/last sequence and offset) so that a retried batch is
//! answered with its original offset instead of being appended again.

use std::collections::{HashMap, VecDeque};

use kafka_protocol::ResponseError;

use crate::batch::BatchHeader;

/// Batches remembered per producer, as Kafka (max.in.flight.requests.per.connection <= 5).
const REMEMBERED: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchMeta {
    first_seq: i32,
    last_seq: i32,
    base_offset: i64,
}

#[derive(Debug, Clone, Default)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchMeta>,
}

/// What to do with an incoming batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    Append,
    /// Already appended at this base offset: answer without appending.
    Duplicate {
        base_offset: i64,
    },
}

#[derive(Debug, Default)]
pub struct ProducerStates {
    producers: HashMap<i64, ProducerEntry>,
}

fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

impl ProducerStates {
    /// Checks a batch of an idempotent producer (producer id >= 0).
    pub fn check(&self, h: &BatchHeader) -> Result<SequenceCheck, (ResponseError, String)> {
        let Some(entry) = self.producers.get(&h.producer_id) else {
            // Unknown producer (new, or its state expired): any sequence starts it.
            return Ok(SequenceCheck::Append);
        };
        if h.producer_epoch < entry.epoch {
            return Err((
                ResponseError::InvalidProducerEpoch,
                format!("producer {} epoch {} is older than {}", h.producer_id, h.producer_epoch, entry.epoch),
            ));
        }
        if h.base_sequence < 0 {
            // No sequence (offsets a group coordinator writes for a transaction): nothing to
            // deduplicate, only the epoch to check.
            return Ok(SequenceCheck::Append);
        }
        if h.producer_epoch > entry.epoch {
            // A new epoch starts its sequence again at 0.
            return if h.base_sequence == 0 {
                Ok(SequenceCheck::Append)
            } else {
                Err((
                    ResponseError::OutOfOrderSequenceNumber,
                    format!(
                        "producer {} new epoch {} must start at sequence 0, not {}",
                        h.producer_id, h.producer_epoch, h.base_sequence
                    ),
                ))
            };
        }
        if let Some(b) =
            entry.batches.iter().find(|b| b.first_seq == h.base_sequence && b.last_seq == h.last_sequence())
        {
            return Ok(SequenceCheck::Duplicate { base_offset: b.base_offset });
        }
        let expected = entry.batches.back().map(|b| next_seq(b.last_seq)).unwrap_or(0);
        if h.base_sequence != expected {
            return Err((
                ResponseError::OutOfOrderSequenceNumber,
                format!("producer {} sent sequence {} where {} was expected", h.producer_id, h.base_sequence, expected),
            ));
        }
        Ok(SequenceCheck::Append)
    }

    /// Records an appended batch (also used to rebuild state when a partition opens).
    pub fn record(&mut self, h: &BatchHeader, base_offset: i64) {
        if h.producer_id < 0 {
            return;
        }
        let entry = self.producers.entry(h.producer_id).or_default();
        if h.is_control() || h.base_sequence < 0 {
            // A transaction marker, or a coordinator's write, carries no sequence; a newer
            // epoch in it fences the older.
            if h.producer_epoch > entry.epoch {
                entry.epoch = h.producer_epoch;
                entry.batches.clear();
            }
            return;
        }
        if h.producer_epoch != entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        entry.batches.push_back(BatchMeta { first_seq: h.base_sequence, last_seq: h.last_sequence(), base_offset });
        while entry.batches.len() > REMEMBERED {
            entry.batches.pop_front();
        }
    }

    /// The producer's current epoch, if this partition has seen it.
    pub fn epoch(&self, producer_id: i64) -> Option<i16> {
        self.producers.get(&producer_id).map(|e| e.epoch)
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pid: i64, epoch: i16, seq: i32, n: i32) -> BatchHeader {
        BatchHeader {
            base_offset: 0,
            partition_leader_epoch: 0,
            attributes: 0,
            last_offset_delta: n - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            records_count: n,
            size: 61,
        }
    }

    #[test]
    fn duplicates_are_answered_with_their_first_offset() {
        let mut s = ProducerStates::default();
        assert_eq!(s.check(&h(7, 0, 0, 3)), Ok(SequenceCheck::Append));
        s.record(&h(7, 0, 0, 3), 100);
        s.record(&h(7, 0, 3, 2), 103);
        assert_eq!(s.check(&h(7, 0, 0, 3)), Ok(SequenceCheck::Duplicate { base_offset: 100 }));
        assert_eq!(s.check(&h(7, 0, 5, 1)), Ok(SequenceCheck::Append));
        assert_eq!(s.check(&h(7, 0, 9, 1)).unwrap_err().0, ResponseError::OutOfOrderSequenceNumber);
    }

    #[test]
    fn epochs_fence_and_reset() {
        let mut s = ProducerStates::default();
        s.record(&h(7, 3, 0, 1), 0);
        assert_eq!(s.check(&h(7, 2, 1, 1)).unwrap_err().0, ResponseError::InvalidProducerEpoch);
        assert_eq!(s.check(&h(7, 4, 0, 1)), Ok(SequenceCheck::Append));
        assert_eq!(s.check(&h(7, 4, 5, 1)).unwrap_err().0, ResponseError::OutOfOrderSequenceNumber);
    }

    #[test]
    fn only_five_batches_are_remembered() {
        let mut s = ProducerStates::default();
        for i in 0..7 {
            s.record(&h(1, 0, i, 1), i as i64);
        }
        assert_eq!(s.check(&h(1, 0, 6, 1)), Ok(SequenceCheck::Duplicate { base_offset: 6 }));
        assert_eq!(s.check(&h(1, 0, 1, 1)).unwrap_err().0, ResponseError::OutOfOrderSequenceNumber);
    }
}
