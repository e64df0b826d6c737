//! Named Kafka listeners of an `AutoMQCluster` (`spec.listeners.kafka[]`), Strimzi-style: each
//! has its own port, TLS and authentication, so an internal listener and an external one can
//! differ (say PLAINTEXT inside the cluster network, SASL_SSL with SCRAM for everyone else).
//!
//! The brokers' side is Kafka's: `--listeners`, `--advertised-listeners`,
//! `--listener-security-protocol-map` and `--listener-option` (docs/security.md, "Listeners").
//! Metadata answers each client with the brokers' addresses on the listener it came in through.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::security::{SaslMechanism, TlsSecret};

/// What a listener name may be (the schema's `pattern`): upper-case letters, digits and single
/// `_` between them, starting with a letter. Kafka upper-cases listener names anyway; the
/// rest makes `name` lower-cased with `_` as `-` a valid Kubernetes port name (a letter first,
/// no leading, trailing or doubled `-`), which the Services and the container use.
pub const LISTENER_NAME_PATTERN: &str = "^[A-Z](_?[A-Z0-9])*$";
/// Kubernetes port names are at most 15 characters (IANA service names).
pub const LISTENER_NAME_MAX: usize = 15;
/// Taken by the HTTP port (`http`) on the headless Service and the container.
pub const RESERVED_LISTENER_NAMES: [&str; 1] = ["HTTP"];

/// One Kafka listener: a port with its own TLS and SASL.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.tlsSecret) || (has(self.tls) && self.tls)")
    .message("tlsSecret needs tls: true"))]
pub struct KafkaListener {
    /// Listener name, as Kafka clients and the brokers' settings see it (`INTERNAL`,
    /// `EXTERNAL`...): upper-case letters, digits and single `_`, starting with a letter, at
    /// most 15 characters (the Services' and the container's port for it is named after it in
    /// lower case, `_` as `-`); not `HTTP`.
    #[schemars(length(min = 1, max = 15), regex(pattern = r"^[A-Z](_?[A-Z0-9])*$"))]
    #[x_kube(validation = Rule::new("self != 'HTTP'").message("HTTP is the name of the HTTP port"))]
    pub name: String,
    /// Port the brokers listen on for this listener, on every broker pod, the headless
    /// Service and the bootstrap Service. Not the HTTP port.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Serve TLS on this listener (SSL, or SASL_SSL with `authentication`). The certificate is
    /// `tlsSecret`, else `security.tls`. Default: false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<bool>,
    /// `none` (every client is `User:ANONYMOUS`), or the SASL mechanism clients must
    /// authenticate with, against the users of `security.users` (PLAIN passwords are checked
    /// against the same SCRAM credentials; use `plain` with `tls`). One mechanism per listener:
    /// declare another listener to offer another. Default: `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<ListenerAuthentication>,
    /// This listener's own certificate (a Secret mounted whole, renewals reach the brokers
    /// without a restart). Default: `security.tls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_secret: Option<TlsSecret>,
}

impl KafkaListener {
    pub fn tls(&self) -> bool {
        self.tls.unwrap_or(false)
    }

    /// The SASL mechanism clients must use, `None` without authentication.
    pub fn sasl_mechanism(&self) -> Option<SaslMechanism> {
        self.authentication.unwrap_or(ListenerAuthentication::None).mechanism()
    }

    /// What clients set as `security.protocol`.
    pub fn security_protocol(&self) -> &'static str {
        match (self.tls(), self.sasl_mechanism().is_some()) {
            (false, false) => "PLAINTEXT",
            (true, false) => "SSL",
            (false, true) => "SASL_PLAINTEXT",
            (true, true) => "SASL_SSL",
        }
    }

    /// The Kubernetes port name of this listener: its name in lower case, `_` as `-`.
    pub fn port_name(&self) -> String {
        self.name.to_ascii_lowercase().replace('_', "-")
    }
}

// How clients authenticate on a listener: none (every client is `User:ANONYMOUS`) or one SASL
// mechanism. (No doc comments: they would replace the field's description in the schema.)
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ListenerAuthentication {
    #[serde(rename = "none")]
    None,
    #[serde(rename = "plain")]
    Plain,
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
    #[serde(rename = "scram-sha-512")]
    ScramSha512,
}

impl ListenerAuthentication {
    pub fn mechanism(self) -> Option<SaslMechanism> {
        match self {
            ListenerAuthentication::None => None,
            ListenerAuthentication::Plain => Some(SaslMechanism::Plain),
            ListenerAuthentication::ScramSha256 => Some(SaslMechanism::ScramSha256),
            ListenerAuthentication::ScramSha512 => Some(SaslMechanism::ScramSha512),
        }
    }
}

/// Whether `name` is a valid listener name (the schema's rules, for API servers that do not
/// run them).
pub fn valid_listener_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let well_formed = bytes.first().is_some_and(u8::is_ascii_uppercase)
        && bytes.last().is_some_and(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        && bytes.iter().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_')
        && !name.contains("__");
    well_formed && name.len() <= LISTENER_NAME_MAX && !RESERVED_LISTENER_NAMES.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_names_are_kafka_names_and_kubernetes_port_names() {
        for ok in ["INTERNAL", "EXTERNAL", "A", "SASL_SSL", "TENANT_2", "ABCDEFGHIJKLMNO", "KAFKA"] {
            assert!(valid_listener_name(ok), "{ok}");
        }
        for bad in ["", "internal", "_A", "A_", "A__B", "1A", "A-B", "HTTP", "ABCDEFGHIJKLMNOP", "A B"] {
            assert!(!valid_listener_name(bad), "{bad}");
        }
        let l = |name: &str| KafkaListener {
            name: name.into(),
            port: 9092,
            tls: None,
            authentication: None,
            tls_secret: None,
        };
        assert_eq!(l("TENANT_2").port_name(), "tenant-2");
        assert_eq!(l("INTERNAL").security_protocol(), "PLAINTEXT");
        let secure = KafkaListener {
            tls: Some(true),
            authentication: Some(ListenerAuthentication::ScramSha512),
            ..l("EXTERNAL")
        };
        assert_eq!(
            (secure.security_protocol(), secure.sasl_mechanism()),
            ("SASL_SSL", Some(SaslMechanism::ScramSha512))
        );
    }
}
