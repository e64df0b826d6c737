//! Kafka transactions.
//!
//! - [`index`]: per partition, the open and aborted transactions its log holds (last stable
//!   offset, aborted lists for `read_committed` fetches).

pub mod index;
