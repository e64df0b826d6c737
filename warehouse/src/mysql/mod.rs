//! The MySQL client/server protocol: framing ([`packet`]), the connection phase
//! ([`handshake`], [`tls`], [`auth`], [`login`]) and the command loop ([`server`]). The
//! connection handling depends only on a query-handler trait, never on the SQL engine.

pub mod auth;
pub mod binary;
pub mod client;
pub mod error;
mod flags;
pub mod handshake;
pub mod login;
pub mod packet;
pub mod resultset;
pub mod server;
pub mod tls;
