//! Kafka transactions.
//!
//! - [`index`]: per partition, the open and aborted transactions its log holds (last stable
//!   offset, aborted lists for `read_committed` fetches).
//! - [`coordinator`]: the transaction coordinator and its state in `__transaction_state`.
//! - [`markers`]: writing commit/abort markers into a transaction's partitions.
//! - [`handlers`]: AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, DescribeTransactions,
//!   ListTransactions.

pub mod coordinator;
pub mod handlers;
pub mod index;
pub mod markers;

pub use coordinator::{TransactionCoordinator, TxnSettings, TXN_TOPIC};
