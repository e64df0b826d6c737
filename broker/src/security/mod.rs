//! Authentication for Kafka clients (issue 12, in progress).
//!
//! - [`scram`]: SCRAM-SHA-256/512 credentials (salted and hashed) and the server side of the
//!   exchange.
//! - [`credentials`]: the credentials in cluster metadata, Alter/DescribeUserScramCredentials.
//! - [`sasl`]: SASL/PLAIN and SASL/SCRAM on a connection, failed attempts slowed down.
//! - [`tls`]: TLS on the listener, the certificate reloaded when its files change.

pub mod credentials;
pub mod sasl;
pub mod scram;
pub mod tls;
