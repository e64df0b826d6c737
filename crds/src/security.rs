//! Security settings: listener TLS and users, with every certificate, key and password kept in
//! Secrets of the resource's namespace. The resources only *name* Secrets and keys; the
//! operator mounts them into the pods and never copies a value anywhere else.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::SecretKeyRef;

/// What a user name may be (the CEL rules spell it out literally: an attribute cannot name a
/// constant; `crds/tests` checks they agree): it is also a file name in the pods' users directory and a Kafka
/// principal (`User:{name}`), so no `/`, `;`, `,`, `=` or spaces, and no leading dot (the
/// kubelet keeps its own `..data` entries in a Secret volume).
pub const USER_NAME_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9._@-]*$";

/// A certificate and its private key in a Secret, e.g. a `kubernetes.io/tls` Secret that
/// cert-manager renews. Mounted as files: a renewal reaches the running processes without a
/// restart.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsSecret {
    /// Secret name (same namespace).
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
    /// Key holding the PEM certificate chain (the server's certificate first). Default:
    /// `tls.crt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub cert_key: Option<String>,
    /// Key holding the PEM private key (PKCS#8, PKCS#1 or SEC1). Default: `tls.key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key_key: Option<String>,
}

impl TlsSecret {
    pub fn cert_key(&self) -> &str {
        self.cert_key.as_deref().unwrap_or("tls.crt")
    }
    pub fn key_key(&self) -> &str {
        self.key_key.as_deref().unwrap_or("tls.key")
    }
}

/// A user whose password is one key of a Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// User name: letters, digits, `.`, `_`, `-` and `@`, starting with a letter or digit.
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9][A-Za-z0-9._@-]*$')")
        .message("a user name is letters, digits, '.', '_', '-' and '@', starting with a letter or digit"))]
    pub name: String,
    /// The Secret key holding the password (UTF-8; one trailing newline is dropped, so a file
    /// made with `echo` works).
    pub password_secret: SecretKeyRef,
}

// SASL mechanisms, as Kafka spells them (no doc comment: it would change TopicLink's schema).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    pub fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// SASL authentication on the Kafka listener.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Sasl {
    /// Mechanisms clients may use. Every user can use every one of them: PLAIN passwords are
    /// checked against the users' SCRAM credentials.
    #[schemars(length(min = 1, max = 3))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub mechanisms: Vec<SaslMechanism>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AuthorizationType {
    /// Kafka ACLs (CreateAcls, DescribeAcls, DeleteAcls), stored in the cluster's metadata.
    #[serde(rename = "acl")]
    Acl,
}

/// Who may do what: Kafka ACLs, super users besides.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Authorization {
    /// `acl`: Kafka ACLs (CreateAcls, DescribeAcls, DeleteAcls), kept in the cluster's metadata.
    #[serde(rename = "type")]
    pub type_: AuthorizationType,
    /// Users allowed everything whatever the ACLs say (user names, without `User:`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 64)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    #[x_kube(validation = Rule::new("self.all(u, u.matches('^[A-Za-z0-9][A-Za-z0-9._@-]*$'))")
        .message("superUsers are user names (without 'User:'): letters, digits, '.', '_', '-' and '@'"))]
    pub super_users: Option<Vec<String>>,
    /// Allow a request on a resource that has no ACL at all (Kafka's
    /// `allow.everyone.if.no.acl.found`). Default: false (denied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_everyone_if_no_acl_found: Option<bool>,
}

/// `AutoMQCluster.spec.security`: the Kafka listener's TLS, SASL, users and ACLs. (Its rules
/// that depend on the named listeners, `users` and `authorization` needing some
/// authentication, are on the spec.)
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSecurity {
    /// Serve the Kafka listener over TLS (SSL, or SASL_SSL with `sasl`). With named
    /// listeners: the certificate of those with `tls` and no `tlsSecret` of their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSecret>,
    /// Require SASL authentication (SASL_PLAINTEXT, or SASL_SSL with `tls`). Not with named
    /// listeners: their `authentication` replaces it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl: Option<Sasl>,
    /// SCRAM users (SCRAM-SHA-256 and SCRAM-SHA-512 credentials, PLAIN too) the brokers create
    /// and keep in step with their Secrets. Users made through Kafka's admin API are left
    /// alone; removing a user here does not delete it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 100))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub users: Option<Vec<User>>,
    /// Kafka ACLs. Without it, every authenticated user may do everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Authorization>,
}

/// `AnalyticsWarehouse.spec.security`: the MySQL listener's TLS and users.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.requireSecureTransport) || !self.requireSecureTransport || has(self.tls)")
    .message("requireSecureTransport needs tls"))]
pub struct WarehouseSecurity {
    /// Offer TLS on the MySQL port (clients upgrade with SSL requests, as with MySQL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSecret>,
    /// Refuse connections that do not upgrade to TLS (MySQL's `require_secure_transport`).
    /// Default: false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_secure_transport: Option<bool>,
    /// The `root` password. Default: empty (set one for anything but a sandbox).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_password_secret: Option<SecretKeyRef>,
    /// MySQL users besides `root`, created and kept in step with their Secrets by the query
    /// nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 100))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    #[x_kube(validation = Rule::new("self.all(u, u.name != 'root')")
        .message("root is not declared in users: set its password with rootPasswordSecret"))]
    #[x_kube(validation = Rule::new("self.all(u, size(u.name) <= 32)")
        .message("MySQL user names are at most 32 characters"))]
    pub users: Option<Vec<User>>,
}

/// Whether `name` is a valid user name (the schema's rule, for API servers that do not run it).
pub fn valid_user_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    first_ok && name.len() <= 64 && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
}

/// Whether `key` is a valid Secret key.
pub fn valid_secret_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_are_file_names_and_principals() {
        for ok in ["alice", "svc.orders-1", "a@example.com", "A_b", "0"] {
            assert!(valid_user_name(ok), "{ok}");
        }
        for bad in ["", ".hidden", "..data", "a/b", "User:alice", "a;b", "a b", "a,b", "a=b", &"x".repeat(65)] {
            assert!(!valid_user_name(bad), "{bad}");
        }
        assert!(valid_secret_key("tls.crt") && !valid_secret_key("a/b"));
    }
}
