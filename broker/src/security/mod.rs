//! Authentication and authorization for Kafka clients.
//!
//! - [`scram`]: SCRAM-SHA-256/512 credentials (salted and hashed) and the server side of the
//!   exchange.
//! - [`credentials`]: the credentials in cluster metadata, Alter/DescribeUserScramCredentials.
//! - [`sasl`]: SASL/PLAIN and SASL/SCRAM on a connection, failed attempts slowed down.
//! - [`tls`]: TLS on the listener, the certificate reloaded when its files change.
//! - [`listener`]: named listeners, each with its protocol, SASL mechanisms and certificate.
//! - [`acl`]: Kafka ACLs in cluster metadata, the authorizer's decision, Create/Describe/DeleteAcls.
//! - [`authz`] (and [`authz_groups`]): ACLs enforced on every request with Kafka's error codes.

pub mod acl;
pub mod authz;
pub mod authz_groups;
pub mod credentials;
pub mod listener;
pub mod sasl;
pub mod scram;
pub mod tls;
