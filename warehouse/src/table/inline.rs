//! Fresh rows: small writes ride their own catalog commit instead of becoming objects.
//!
//! A write whose encoded segment (or delete vector) is small is not uploaded: its bytes go
//! into the catalog record that commits it, under a key of [`INLINE_PREFIX`], and every node
//! holds them in memory from there (the catalog state is the buffer of fresh rows). So an
//! INSERT costs one object-store write (the metadata log entry) instead of two, it is as
//! durable as any commit, and every node on the bucket sees it in the same order as every
//! other change. Background compaction ([`Warehouse::compact`]) flushes a table's inline
//! segments into a Parquet object once they are old or large enough, which keeps the
//! catalog (and its snapshots) small.
//!
//! Readers never lose an inline segment under their feet: a table's metadata carries the
//! catalog state it was read from ([`StateRef`]), and the payloads are read from that state,
//! so a statement planned before a flush still reads what it planned even though the flush
//! deleted the keys from the newer state at once.

use std::sync::Arc;

use automq_storage::metadata::state::CatalogState;
use base64::Engine;
use bytes::Bytes;

use super::WhError;

/// Catalog keys of inline segments and delete vectors.
pub(super) const INLINE_PREFIX: &str = "wh/inline/";

/// Whether an object key names an inline payload (a catalog key) rather than an object.
pub fn is_inline(key: &str) -> bool {
    key.starts_with(INLINE_PREFIX)
}

pub(super) fn encode(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

pub(super) fn decode(key: &str, text: &str) -> Result<Bytes, WhError> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map(Bytes::from)
        .map_err(|e| WhError::Storage(format!("inline data {key} is corrupt: {e}")))
}

/// The catalog state a table's metadata was read from (compares equal to any other: it is
/// where the metadata came from, not part of it).
#[derive(Clone, Default)]
pub struct StateRef(pub Option<Arc<CatalogState>>);

impl StateRef {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.as_ref()?.kv.get(key).map(|v| &**v)
    }
}

impl PartialEq for StateRef {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for StateRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(state) => write!(f, "StateRef(seq {})", state.applied_seq),
            None => f.write_str("StateRef(none)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_corruption_is_an_error() {
        let data = b"PAR1\x00\x01\x02 some bytes";
        assert_eq!(&decode("k", &encode(data)).unwrap()[..], data);
        let err = decode("wh/inline/t/1", "not base64 !!").unwrap_err();
        assert!(err.to_string().contains("wh/inline/t/1 is corrupt"), "{err}");
        assert!(is_inline("wh/inline/t/1.parquet"));
        assert!(!is_inline("warehouse/data/t/1.parquet"));
    }
}
