//! Metadata in the object store: the fencing [`log::MetadataLog`] and the stream/object
//! [`catalog::Catalog`] built on it.

pub mod catalog;
pub mod log;
pub mod state;

pub use catalog::{Catalog, CatalogConfig};
pub use log::{MetadataLog, MetadataLogConfig, Recovered};
pub use state::{
    CatalogRecord, CatalogState, DataObject, Deleting, NodeId, ObjectId, ObjectKind, ObjectRange, StreamEnd, StreamId,
    StreamMeta, StreamRange,
};
