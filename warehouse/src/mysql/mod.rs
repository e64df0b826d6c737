//! The MySQL client/server protocol: framing ([`packet`]) and authentication ([`auth`]). The
//! connection handling depends only on a query-handler trait, never on the SQL engine.

pub mod auth;
pub mod binary;
pub mod client;
pub mod error;
mod flags;
pub mod packet;
pub mod resultset;
pub mod server;
