//! The query node: MySQL protocol, SQL on Apache DataFusion, columnar tables in object storage.
//!
//! - [`mysql`]: the MySQL wire protocol, depending only on a query-handler trait.
//! - [`engine`]: the SQL engine (DataFusion) behind that trait.
//! - [`table`]: tables on object storage (catalog in a metadata log, Parquet segments).

pub mod engine;
pub mod mysql;
pub mod node;
pub mod table;
