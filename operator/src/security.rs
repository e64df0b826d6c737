//! Listener TLS and users from Secrets (`spec.security` of both workloads), rendered into pods.
//!
//! Invariant: a certificate, key or password never leaves its Secret through the operator.
//! The pods get them as files of Secret volumes (never `subPath`, so the kubelet updates them
//! in place and the processes reload them); everything the operator writes elsewhere (the
//! ConfigMap, environment values, annotations, status, events, logs) holds only Secret names,
//! keys, file paths and user names. The operator reads a Secret only to learn which keys it
//! has ([`missing_secrets`]), and its values are discarded unparsed.
//!
//! Two volumes, both read-only, files mode 0440 (owner root, group the pods' fsGroup):
//! - `tls` at [`TLS_DIR`]: the TLS Secret's two keys as `tls.crt` and `tls.key`;
//! - `users` at [`USERS_DIR`]: a projected volume with, per declared user, the key of its
//!   password Secret as a file named after the user (the brokers' `--scram-users-dir`, the
//!   query nodes' `--users-dir`).
//!
//! Named Kafka listeners with their own certificate add one more like `tls` each
//! (`cluster/listeners.rs`).

use std::collections::{BTreeMap, BTreeSet};

use automq_crds::common::SecretKeyRef;
use automq_crds::listener::KafkaListener;
use automq_crds::security::{valid_secret_key, valid_user_name, ClusterSecurity, TlsSecret, User, WarehouseSecurity};
use automq_crds::warehouse::AnalyticsWarehouseSpec;
use k8s_openapi::api::core::v1::{
    KeyToPath, ProjectedVolumeSource, SecretProjection, SecretVolumeSource, Volume, VolumeMount, VolumeProjection,
};
use kube::api::GetParams;
use kube::Client;
use serde::de::IgnoredAny;

use crate::{Error, Result};

/// Where the TLS Secret is mounted.
pub const TLS_DIR: &str = "/etc/automq/tls";
/// Where the users' passwords are mounted, one file per user.
pub const USERS_DIR: &str = "/etc/automq/users";
const TLS_VOLUME: &str = "tls";
const USERS_VOLUME: &str = "users";
/// Readable by the owner (root) and the pods' fsGroup, by nobody else.
const SECRET_FILE_MODE: i32 = 0o440;

/// A TLS Secret's two keys as `tls.crt` and `tls.key`, in volume `name` (also the named
/// listeners' own certificates).
pub fn tls_secret_volume(name: &str, tls: &TlsSecret) -> Volume {
    let item = |key: &str, path: &str| KeyToPath { key: key.into(), path: path.into(), mode: None };
    Volume {
        name: name.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(tls.secret_name.clone()),
            items: Some(vec![item(tls.cert_key(), "tls.crt"), item(tls.key_key(), "tls.key")]),
            default_mode: Some(SECRET_FILE_MODE),
            optional: None,
        }),
        ..Volume::default()
    }
}

/// Every user's password key as a file named after the user, one projection per Secret
/// (sorted by Secret, then user, so reordering `users` changes nothing).
fn users_volume(users: &[User]) -> Option<Volume> {
    if users.is_empty() {
        return None;
    }
    let mut by_secret: BTreeMap<&str, Vec<KeyToPath>> = BTreeMap::new();
    for user in users {
        by_secret.entry(user.password_secret.name.as_str()).or_default().push(KeyToPath {
            key: user.password_secret.key.clone(),
            path: user.name.clone(),
            mode: None,
        });
    }
    let sources = by_secret
        .into_iter()
        .map(|(secret, mut items)| {
            items.sort_by(|a, b| a.path.cmp(&b.path));
            VolumeProjection {
                secret: Some(SecretProjection { name: secret.into(), items: Some(items), optional: None }),
                ..VolumeProjection::default()
            }
        })
        .collect();
    Some(Volume {
        name: USERS_VOLUME.into(),
        projected: Some(ProjectedVolumeSource { sources: Some(sources), default_mode: Some(SECRET_FILE_MODE) }),
        ..Volume::default()
    })
}

/// Volume `name` mounted whole (never `subPath`, so the kubelet updates its files in place),
/// read-only, at `path`.
pub fn read_only_mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount { name: name.into(), mount_path: path.into(), read_only: Some(true), ..VolumeMount::default() }
}

/// The volumes and their mounts for a TLS Secret and users (either may be absent).
pub fn volumes(tls: Option<&TlsSecret>, users: &[User]) -> (Vec<Volume>, Vec<VolumeMount>) {
    let mount = read_only_mount;
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    if let Some(tls) = tls {
        volumes.push(tls_secret_volume(TLS_VOLUME, tls));
        mounts.push(mount(TLS_VOLUME, TLS_DIR));
    }
    if let Some(users) = users_volume(users) {
        volumes.push(users);
        mounts.push(mount(USERS_VOLUME, USERS_DIR));
    }
    (volumes, mounts)
}

/// The mounted pair under the variables `{prefix}_CERT` and `{prefix}_KEY`.
fn tls_settings(data: &mut BTreeMap<String, String>, prefix: &str) {
    data.insert(format!("{prefix}_CERT"), format!("{TLS_DIR}/tls.crt"));
    data.insert(format!("{prefix}_KEY"), format!("{TLS_DIR}/tls.key"));
}

/// The brokers' security flags (paths, mechanism and user names: nothing secret).
pub fn broker_settings(security: Option<&ClusterSecurity>) -> BTreeMap<String, String> {
    let mut data = BTreeMap::new();
    let Some(security) = security else { return data };
    if security.tls.is_some() {
        // The brokers' --tls-cert / --tls-key.
        tls_settings(&mut data, "AUTOMQ_TLS");
    }
    if let Some(sasl) = &security.sasl {
        let mechanisms: Vec<&str> = sasl.mechanisms.iter().map(|m| m.as_str()).collect();
        data.insert("AUTOMQ_SASL_MECHANISMS".into(), mechanisms.join(","));
    }
    if security.users.as_ref().is_some_and(|u| !u.is_empty()) {
        data.insert("AUTOMQ_SCRAM_USERS_DIR".into(), USERS_DIR.into());
    }
    if let Some(authorization) = &security.authorization {
        data.insert("AUTOMQ_AUTHORIZER".into(), "acl".into());
        let super_users: Vec<String> =
            authorization.super_users.iter().flatten().map(|u| format!("User:{u}")).collect();
        if !super_users.is_empty() {
            data.insert("AUTOMQ_SUPER_USERS".into(), super_users.join(";"));
        }
        data.insert(
            "AUTOMQ_ALLOW_EVERYONE_IF_NO_ACL_FOUND".into(),
            authorization.allow_everyone_if_no_acl_found.unwrap_or(false).to_string(),
        );
    }
    data
}

/// The query nodes' security flags. The root password is an environment variable from its
/// Secret (`secretKeyRef`), set with the pod's other variables.
pub fn query_node_settings(security: Option<&WarehouseSecurity>) -> BTreeMap<String, String> {
    let mut data = BTreeMap::new();
    let Some(security) = security else { return data };
    if security.tls.is_some() {
        // The query nodes' --tls-cert / --tls-key.
        tls_settings(&mut data, "AUTOMQ_MYSQL_TLS");
    }
    if security.require_secure_transport == Some(true) {
        data.insert("AUTOMQ_REQUIRE_SECURE_TRANSPORT".into(), "true".into());
    }
    if security.users.as_ref().is_some_and(|u| !u.is_empty()) {
        // --users-dir: the same one-file-per-user contract as the brokers' --scram-users-dir.
        data.insert("AUTOMQ_USERS_DIR".into(), USERS_DIR.into());
    }
    data
}

/// What Kafka clients set as `security.protocol` to reach the brokers.
pub fn security_protocol(security: Option<&ClusterSecurity>) -> &'static str {
    let tls = security.is_some_and(|s| s.tls.is_some());
    let sasl = security.is_some_and(|s| s.sasl.is_some());
    match (tls, sasl) {
        (false, false) => "PLAINTEXT",
        (true, false) => "SSL",
        (false, true) => "SASL_PLAINTEXT",
        (true, true) => "SASL_SSL",
    }
}

fn check_users(users: &[User], max_len: usize) -> Result<(), String> {
    let mut seen = BTreeSet::new();
    for user in users {
        if !valid_user_name(&user.name) || user.name.len() > max_len {
            return Err(format!(
                "security.users: {:?} is not a valid user name (1-{max_len} letters, digits, '.', '_', '-' or '@', \
                 starting with a letter or digit)",
                user.name
            ));
        }
        if !seen.insert(user.name.as_str()) {
            return Err(format!("security.users: {:?} is declared twice", user.name));
        }
        check_ref(&user.password_secret, &format!("security.users {:?}: passwordSecret", user.name))?;
    }
    Ok(())
}

fn check_ref(r: &SecretKeyRef, at: &str) -> Result<(), String> {
    if r.name.is_empty() || !valid_secret_key(&r.key) {
        return Err(format!("{at}: needs a Secret name and a valid key (got {:?}, {:?})", r.name, r.key));
    }
    Ok(())
}

/// A TLS Secret reference's name and keys; `at` names the field for the message.
pub fn check_tls(tls: &TlsSecret, at: &str) -> Result<(), String> {
    if tls.secret_name.is_empty() {
        return Err(format!("{at}.secretName is empty"));
    }
    for key in [tls.cert_key(), tls.key_key()] {
        if !valid_secret_key(key) {
            return Err(format!("{at}: {key:?} is not a valid Secret key"));
        }
    }
    Ok(())
}

/// The schema's rules on `AutoMQCluster.spec.security`, for API servers that do not run them.
/// `listeners` are the named listeners, whose authentication counts as `sasl`'s (the rules
/// between the two are checked with the listeners: `cluster/listeners.rs`).
pub fn validate_cluster(security: Option<&ClusterSecurity>, listeners: Option<&[KafkaListener]>) -> Result<(), String> {
    let Some(security) = security else { return Ok(()) };
    let authenticated =
        security.sasl.is_some() || listeners.is_some_and(|l| l.iter().any(|l| l.sasl_mechanism().is_some()));
    if let Some(tls) = &security.tls {
        check_tls(tls, "security.tls")?;
    }
    if let Some(sasl) = &security.sasl {
        if sasl.mechanisms.is_empty() {
            return Err("security.sasl.mechanisms is empty: remove sasl to turn SASL off".into());
        }
    }
    let users = security.users.as_deref().unwrap_or_default();
    check_users(users, 64)?;
    if !users.is_empty() && !authenticated {
        return Err("security.users need security.sasl (or a kafka listener with authentication): without it nobody \
             authenticates"
            .into());
    }
    if let Some(authorization) = &security.authorization {
        if !authenticated {
            return Err("security.authorization needs security.sasl (or a kafka listener with authentication): \
                        without it every client is User:ANONYMOUS"
                .into());
        }
        if let Some(bad) = authorization.super_users.iter().flatten().find(|u| !valid_user_name(u)) {
            return Err(format!("security.authorization.superUsers: {bad:?} is not a user name (no 'User:' prefix)"));
        }
    }
    Ok(())
}

/// The schema's rules on `AnalyticsWarehouse` security, for API servers that do not run them.
pub fn validate_warehouse(spec: &AnalyticsWarehouseSpec) -> Result<(), String> {
    let security = spec.security.as_ref();
    if spec.root_password_secret.is_some() && security.is_some_and(|s| s.root_password_secret.is_some()) {
        return Err("set the root password in one place: security.rootPasswordSecret".into());
    }
    let Some(security) = security else { return Ok(()) };
    if let Some(tls) = &security.tls {
        check_tls(tls, "security.tls")?;
    }
    if security.require_secure_transport == Some(true) && security.tls.is_none() {
        return Err("security.requireSecureTransport needs security.tls".into());
    }
    if let Some(root) = &security.root_password_secret {
        check_ref(root, "security.rootPasswordSecret")?;
    }
    let users = security.users.as_deref().unwrap_or_default();
    if users.iter().any(|u| u.name == "root") {
        return Err("security.users: root is not declared here: set its password with rootPasswordSecret".into());
    }
    check_users(users, 32)
}

/// One Secret key the pods need, and which field of the spec names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretUse {
    pub secret: String,
    pub key: String,
    pub field: String,
}

fn tls_uses(tls: &TlsSecret) -> Vec<SecretUse> {
    [tls.cert_key(), tls.key_key()]
        .into_iter()
        .map(|key| SecretUse { secret: tls.secret_name.clone(), key: key.into(), field: "security.tls".into() })
        .collect()
}

fn user_uses(users: &[User]) -> Vec<SecretUse> {
    users
        .iter()
        .map(|u| SecretUse {
            secret: u.password_secret.name.clone(),
            key: u.password_secret.key.clone(),
            field: format!("security.users[{}]", u.name),
        })
        .collect()
}

/// The Secret keys a cluster's brokers need for `spec.security` and the named listeners' own
/// certificates.
pub fn cluster_secrets(security: Option<&ClusterSecurity>, listeners: Option<&[KafkaListener]>) -> Vec<SecretUse> {
    let mut uses = Vec::new();
    if let Some(security) = security {
        uses.extend(security.tls.as_ref().map(tls_uses).unwrap_or_default());
        uses.extend(user_uses(security.users.as_deref().unwrap_or_default()));
    }
    for listener in listeners.unwrap_or_default() {
        let Some(tls) = &listener.tls_secret else { continue };
        let field = format!("listeners.kafka[{}].tlsSecret", listener.name);
        uses.extend([tls.cert_key(), tls.key_key()].into_iter().map(|key| SecretUse {
            secret: tls.secret_name.clone(),
            key: key.into(),
            field: field.clone(),
        }));
    }
    uses
}

/// The Secret keys a warehouse's query nodes need for `spec.security`. (The older top-level
/// `rootPasswordSecret` is not checked, as before `security` existed.)
pub fn warehouse_secrets(security: Option<&WarehouseSecurity>) -> Vec<SecretUse> {
    let Some(security) = security else { return Vec::new() };
    let mut uses = security.tls.as_ref().map(tls_uses).unwrap_or_default();
    if let Some(root) = &security.root_password_secret {
        uses.push(SecretUse {
            secret: root.name.clone(),
            key: root.key.clone(),
            field: "security.rootPasswordSecret".into(),
        });
    }
    uses.extend(user_uses(security.users.as_deref().unwrap_or_default()));
    uses
}

/// A Secret as the operator reads it: the key names only. Values are skipped unparsed.
#[derive(serde::Deserialize)]
struct SecretKeys {
    #[serde(default)]
    data: Option<BTreeMap<String, IgnoredAny>>,
}

/// The keys of Secret `name`, `None` when it does not exist. Goes around `Api<Secret>`, which
/// would keep the values in a typed object and, on a response it cannot parse, log the body.
async fn secret_keys(client: &Client, namespace: &str, name: &str) -> Result<Option<BTreeSet<String>>> {
    let request = kube::core::Request::new(format!("/api/v1/namespaces/{namespace}/secrets"))
        .get(name, &GetParams::default())
        .map_err(kube::Error::BuildRequest)?;
    let text = match client.request_text(request).await {
        Ok(text) => text,
        Err(kube::Error::Api(status)) if status.is_not_found() => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    // Whatever the parser says about the body stays out of the error: it could quote a value.
    let keys: SecretKeys = serde_json::from_str(&text).map_err(|_| Error::Secret(name.to_string()))?;
    Ok(Some(keys.data.unwrap_or_default().into_keys().collect()))
}

/// What is missing among `uses` (Secrets, or keys of them), for a status message; `None` when
/// every Secret and key exists. Each Secret is read once.
pub async fn missing_secrets(client: &Client, namespace: &str, uses: &[SecretUse]) -> Result<Option<String>> {
    let mut keys: BTreeMap<&str, Option<BTreeSet<String>>> = BTreeMap::new();
    for u in uses {
        if !keys.contains_key(u.secret.as_str()) {
            keys.insert(&u.secret, secret_keys(client, namespace, &u.secret).await?);
        }
    }
    // One entry per problem, with every field it breaks: (what is missing, fields).
    let mut problems: Vec<(String, Vec<&str>)> = Vec::new();
    for u in uses {
        let problem = match &keys[u.secret.as_str()] {
            None => format!("Secret {:?} not found", u.secret),
            Some(present) if !present.contains(&u.key) => format!("Secret {:?} has no key {:?}", u.secret, u.key),
            Some(_) => continue,
        };
        match problems.iter_mut().find(|(p, _)| *p == problem) {
            Some((_, fields)) if !fields.contains(&u.field.as_str()) => fields.push(&u.field),
            Some(_) => {}
            None => problems.push((problem, vec![&u.field])),
        }
    }
    let message: Vec<String> = problems.iter().map(|(p, fields)| format!("{p} ({})", fields.join(", "))).collect();
    Ok((!message.is_empty()).then(|| message.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use automq_crds::security::{Authorization, AuthorizationType, Sasl, SaslMechanism};

    fn user(name: &str, secret: &str, key: &str) -> User {
        User { name: name.into(), password_secret: SecretKeyRef { name: secret.into(), key: key.into() } }
    }

    #[test]
    fn users_are_one_projection_per_secret_in_a_stable_order() {
        let a = [user("zoe", "team-b", "z"), user("alice", "team-a", "alice"), user("bob", "team-a", "bob-pw")];
        let b = [user("bob", "team-a", "bob-pw"), user("zoe", "team-b", "z"), user("alice", "team-a", "alice")];
        let (va, ma) = volumes(None, &a);
        assert_eq!((va.clone(), ma), volumes(None, &b), "reordering users changes nothing");
        let sources = va[0].projected.as_ref().unwrap().sources.clone().unwrap();
        let flat: Vec<(String, String, String)> = sources
            .iter()
            .flat_map(|s| {
                let s = s.secret.as_ref().unwrap();
                s.items.iter().flatten().map(|i| (s.name.clone(), i.key.clone(), i.path.clone())).collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(
            flat,
            [("team-a", "alice", "alice"), ("team-a", "bob-pw", "bob"), ("team-b", "z", "zoe")].map(|(s, k, p)| (
                s.to_string(),
                k.to_string(),
                p.to_string()
            ))
        );
        assert!(volumes(None, &[]).0.is_empty());
    }

    #[test]
    fn broker_flags_and_protocol_follow_the_spec() {
        let security = ClusterSecurity {
            tls: Some(TlsSecret { secret_name: "t".into(), cert_key: None, key_key: None }),
            sasl: Some(Sasl { mechanisms: vec![SaslMechanism::ScramSha512, SaslMechanism::Plain] }),
            users: Some(vec![user("admin", "u", "admin")]),
            authorization: Some(Authorization {
                type_: AuthorizationType::Acl,
                super_users: Some(vec!["admin".into(), "ops".into()]),
                allow_everyone_if_no_acl_found: None,
            }),
        };
        let data = broker_settings(Some(&security));
        assert_eq!(data["AUTOMQ_TLS_CERT"], "/etc/automq/tls/tls.crt");
        assert_eq!(data["AUTOMQ_SASL_MECHANISMS"], "SCRAM-SHA-512,PLAIN");
        assert_eq!(data["AUTOMQ_SCRAM_USERS_DIR"], "/etc/automq/users");
        assert_eq!(data["AUTOMQ_SUPER_USERS"], "User:admin;User:ops");
        assert_eq!(data["AUTOMQ_ALLOW_EVERYONE_IF_NO_ACL_FOUND"], "false");
        assert_eq!(security_protocol(Some(&security)), "SASL_SSL");
        assert_eq!(security_protocol(None), "PLAINTEXT");
        assert!(broker_settings(None).is_empty());
        assert!(validate_cluster(Some(&security), None).is_ok());
        let no_sasl = ClusterSecurity { sasl: None, ..security.clone() };
        assert!(validate_cluster(Some(&no_sasl), None).unwrap_err().contains("need security.sasl"));
        let twice = ClusterSecurity { users: Some(vec![user("a", "u", "a"), user("a", "u", "b")]), ..security };
        assert!(validate_cluster(Some(&twice), None).unwrap_err().contains("declared twice"));
    }
}
