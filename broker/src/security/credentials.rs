//! SCRAM credentials in the cluster's metadata (key `scram/{mechanism}/{user}`, value the
//! [`Credential`] as JSON: salt, iterations, StoredKey, ServerKey; never a password), managed
//! with AlterUserScramCredentials and DescribeUserScramCredentials like Kafka's, so they
//! survive restarts and every broker sees the same users.

use std::collections::BTreeMap;
use std::sync::Arc;

use automq_storage::metadata::CatalogRecord;
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse, DescribeUserScramCredentialsRequest,
    DescribeUserScramCredentialsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::scram::{Credential, Mechanism, MAX_ITERATIONS, MIN_ITERATIONS};
use crate::broker::Broker;

/// Metadata keys of credentials.
pub const PREFIX: &str = "scram/";

fn key(mechanism: Mechanism, user: &str) -> String {
    format!("{PREFIX}{}/{user}", mechanism.name())
}

/// The credential of `user` for `mechanism`, if any.
pub fn lookup(broker: &Broker, user: &str, mechanism: Mechanism) -> Option<Credential> {
    let view = broker.cluster.view();
    let value = view.raw.get(&key(mechanism, user))?;
    serde_json::from_str(value).ok()
}

/// Every user with its credentials' mechanisms and iterations.
pub fn all(broker: &Broker) -> BTreeMap<String, Vec<(Mechanism, i32)>> {
    let view = broker.cluster.view();
    let mut out: BTreeMap<String, Vec<(Mechanism, i32)>> = BTreeMap::new();
    for (k, v) in view.raw.range(PREFIX.to_string()..).take_while(|(k, _)| k.starts_with(PREFIX)) {
        let Some((mechanism, user)) = k[PREFIX.len()..].split_once('/') else { continue };
        let (Some(mechanism), Ok(c)) = (Mechanism::from_name(mechanism), serde_json::from_str::<Credential>(v)) else {
            continue;
        };
        out.entry(user.to_string()).or_default().push((mechanism, c.iterations));
    }
    out
}

/// Stores credentials and deletions in one metadata write.
pub async fn apply(
    broker: &Broker,
    puts: Vec<(String, Credential)>,
    deletes: Vec<(String, Mechanism)>,
) -> Result<(), String> {
    let mut records = Vec::new();
    for (user, c) in puts {
        let value = serde_json::to_string(&c).map_err(|e| e.to_string())?;
        records.push(CatalogRecord::KvPut { key: key(c.mechanism, &user), value });
    }
    for (user, m) in deletes {
        records.push(CatalogRecord::KvDelete { key: key(m, &user) });
    }
    if records.is_empty() {
        return Ok(());
    }
    broker.cluster.catalog().submit(records).await.map(|_| ()).map_err(|e| e.to_string())
}

/// Creates the user named by `--sasl-bootstrap-user` (password from the environment) when it has
/// no credentials yet: the first user of a cluster, that can then create the others.
pub async fn bootstrap(broker: &Broker, user: &str, password: &str) -> Result<(), String> {
    let mut puts = Vec::new();
    for m in [Mechanism::Sha256, Mechanism::Sha512] {
        if lookup(broker, user, m).is_none() {
            let salt: [u8; 16] = rand::random();
            puts.push((user.to_string(), Credential::from_password(m, password, salt.to_vec(), MIN_ITERATIONS)));
        }
    }
    apply(broker, puts, Vec::new()).await
}

/// Makes the cluster's credentials of the users in `dir` match their passwords; returns how
/// many users changed. A credential that already verifies against the password is kept (no
/// write, no new salt), so every broker can run this at start without churn.
pub async fn sync_users_dir(broker: &Broker, dir: &std::path::Path) -> Result<usize, String> {
    let users = automq_common::users_dir::read(dir)?;
    let mut puts = Vec::new();
    let mut changed = std::collections::BTreeSet::new();
    for (user, password) in &users {
        for m in [Mechanism::Sha256, Mechanism::Sha512] {
            if lookup(broker, user, m).is_some_and(|c| c.matches_password(password)) {
                continue;
            }
            let salt: [u8; 16] = rand::random();
            puts.push((user.clone(), Credential::from_password(m, password, salt.to_vec(), MIN_ITERATIONS)));
            changed.insert(user.clone());
        }
    }
    apply(broker, puts, Vec::new()).await?;
    for user in &changed {
        tracing::info!(user, "SCRAM credentials set from the users directory");
    }
    Ok(changed.len())
}

fn msg(s: impl Into<String>) -> Option<StrBytes> {
    Some(StrBytes::from_string(s.into()))
}

pub async fn alter(broker: &Arc<Broker>, r: AlterUserScramCredentialsRequest) -> AlterUserScramCredentialsResponse {
    // Per user: the first error wins; a user named twice for one mechanism is refused whole.
    let mut errors: BTreeMap<String, (ResponseError, String)> = BTreeMap::new();
    let mut seen: BTreeMap<(String, i8), usize> = BTreeMap::new();
    for (user, m) in
        r.deletions.iter().map(|d| (&d.name, d.mechanism)).chain(r.upsertions.iter().map(|u| (&u.name, u.mechanism)))
    {
        *seen.entry((user.to_string(), m)).or_default() += 1;
    }
    let mut fail = |user: &str, code: ResponseError, why: String| {
        errors.entry(user.to_string()).or_insert((code, why));
    };
    for ((user, m), n) in &seen {
        if user.is_empty() {
            fail(user, ResponseError::UnacceptableCredential, "the user name is empty".into());
        } else if Mechanism::from_code(*m).is_none() {
            fail(user, ResponseError::UnsupportedSaslMechanism, format!("unknown SCRAM mechanism {m}"));
        } else if *n > 1 {
            fail(user, ResponseError::DuplicateResource, "a user and mechanism appear more than once".into());
        }
    }
    let mut puts = Vec::new();
    for u in &r.upsertions {
        let Some(m) = Mechanism::from_code(u.mechanism) else { continue };
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&u.iterations) {
            fail(
                &u.name,
                ResponseError::UnacceptableCredential,
                format!("iterations must be {MIN_ITERATIONS}..={MAX_ITERATIONS}"),
            );
            continue;
        }
        if u.salt.is_empty() || u.salted_password.is_empty() {
            fail(
                &u.name,
                ResponseError::UnacceptableCredential,
                "the salt and salted password may not be empty".into(),
            );
            continue;
        }
        puts.push((
            u.name.to_string(),
            Credential::from_salted_password(m, u.salt.to_vec(), u.iterations, &u.salted_password),
        ));
    }
    let mut deletes = Vec::new();
    for d in &r.deletions {
        let Some(m) = Mechanism::from_code(d.mechanism) else { continue };
        if lookup(broker, &d.name, m).is_none() {
            fail(&d.name, ResponseError::ResourceNotFound, format!("no {} credential for this user", m.name()));
            continue;
        }
        deletes.push((d.name.to_string(), m));
    }
    puts.retain(|(user, _)| !errors.contains_key(user));
    deletes.retain(|(user, _)| !errors.contains_key(user));
    let written = apply(broker, puts, deletes).await;
    let users: Vec<String> =
        seen.keys().map(|(u, _)| u.clone()).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    let results = users
        .into_iter()
        .map(|user| {
            let result = AlterUserScramCredentialsResult::default().with_user(StrBytes::from_string(user.clone()));
            match (errors.get(&user), &written) {
                (Some((code, why)), _) => {
                    broker.metrics.error("AlterUserScramCredentials", *code);
                    result.with_error_code(code.code()).with_error_message(msg(why.clone()))
                }
                (None, Err(e)) => result
                    .with_error_code(ResponseError::UnknownServerError.code())
                    .with_error_message(msg(format!("cannot store the credentials: {e}"))),
                (None, Ok(())) => {
                    tracing::info!(user = %user, "SCRAM credentials changed");
                    result
                }
            }
        })
        .collect();
    AlterUserScramCredentialsResponse::default().with_results(results)
}

pub fn describe(broker: &Arc<Broker>, r: DescribeUserScramCredentialsRequest) -> DescribeUserScramCredentialsResponse {
    let all = all(broker);
    let infos = |list: &[(Mechanism, i32)]| -> Vec<CredentialInfo> {
        list.iter().map(|(m, i)| CredentialInfo::default().with_mechanism(m.code()).with_iterations(*i)).collect()
    };
    let results = match r.users.filter(|u| !u.is_empty()) {
        None => all
            .iter()
            .map(|(user, list)| {
                DescribeUserScramCredentialsResult::default()
                    .with_user(StrBytes::from_string(user.clone()))
                    .with_credential_infos(infos(list))
            })
            .collect(),
        Some(users) => users
            .iter()
            .map(|u| {
                let result = DescribeUserScramCredentialsResult::default().with_user(u.name.clone());
                match all.get(u.name.as_str()) {
                    Some(list) => result.with_credential_infos(infos(list)),
                    None => result
                        .with_error_code(ResponseError::ResourceNotFound.code())
                        .with_error_message(msg("attempt to describe a user credential that does not exist")),
                }
            })
            .collect(),
    };
    DescribeUserScramCredentialsResponse::default().with_results(results)
}
