//! Authentication for Kafka clients (issue 12, in progress).
//!
//! - [`scram`]: SCRAM-SHA-256/512 credentials (salted and hashed) and the server side of the
//!   exchange; SASL/PLAIN passwords are checked against the same credentials.

pub mod scram;
