//! The query node: MySQL protocol, SQL on Apache DataFusion, columnar tables in object storage.
//!
//! - [`mysql`]: the MySQL wire protocol, depending only on a query-handler trait.
//! - [`engine`]: the SQL engine (DataFusion) behind that trait.
//! - [`table`]: tables on object storage (catalog in a metadata log, Parquet segments).
//! - [`load`]: routine loads, continuous exactly-once ingestion from Kafka topics.
//! - [`access`]: users (stored in the catalog) and their privileges.

pub mod access;
pub mod engine;
pub mod load;
pub mod mysql;
pub mod node;
pub mod table;
