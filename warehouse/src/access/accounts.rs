//! Users as stored in the warehouse catalog: one key per user, `wh/user/<name>`, holding the
//! [`Account`] as JSON (format in docs/security.md). Every change is a compare-and-set on that
//! key ([`Warehouse::kv_commit`] with the value it was computed from), so two nodes granting to
//! one user at once both land, one after the other.

use serde::{Deserialize, Serialize};

use super::{Grant, ANY_HOST, ROOT};
use crate::engine::wh_to_mysql;
use crate::mysql::auth::StoredCredential;
use crate::mysql::error::MysqlError;
use crate::table::{Warehouse, WhError};

const USER_PREFIX: &str = "wh/user/";
/// A change computed from a value another node changed meanwhile is recomputed this often.
const MAX_ATTEMPTS: usize = 8;
/// MySQL's limit on user names.
const MAX_USER_NAME: usize = 32;

pub fn user_key(name: &str) -> String {
    format!("{USER_PREFIX}{name}")
}

/// A stored user: the double hashes of its password and its grants. Never the password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// SHA1(SHA1(password)), hex; empty for an empty password (`mysql_native_password`).
    pub sha1_stage2: String,
    /// SHA256(SHA256(password)), hex; empty for an empty password (`caching_sha2_password`).
    pub sha256_stage2: String,
    pub created_ms: u64,
    #[serde(default)]
    pub grants: Vec<Grant>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

impl Account {
    pub fn new(credential: &StoredCredential, created_ms: u64) -> Self {
        let mut a =
            Account { sha1_stage2: String::new(), sha256_stage2: String::new(), created_ms, grants: Vec::new() };
        a.set_credential(credential);
        a
    }

    pub fn set_credential(&mut self, credential: &StoredCredential) {
        self.sha1_stage2 = hex(&credential.sha1_stage2);
        self.sha256_stage2 = hex(&credential.sha256_stage2);
    }

    /// `None` if the stored hashes are damaged (the user then cannot log in).
    pub fn credential(&self) -> Option<StoredCredential> {
        Some(StoredCredential { sha1_stage2: unhex(&self.sha1_stage2)?, sha256_stage2: unhex(&self.sha256_stage2)? })
    }
}

/// Refuses names that cannot be stored or that would be confused with root.
pub fn check_user_name(name: &str, operation: &str) -> Result<(), MysqlError> {
    if name == ROOT {
        return Err(MysqlError::cannot_user(operation, name, ANY_HOST));
    }
    if name.is_empty() || name.chars().count() > MAX_USER_NAME || name.chars().any(char::is_control) {
        return Err(MysqlError::wrong_arguments(format!(
            "user name '{name}' is not valid: 1 to {MAX_USER_NAME} characters, no control characters"
        )));
    }
    Ok(())
}

/// The stored user `name` (as this node's catalog view has it).
pub fn get(warehouse: &Warehouse, name: &str) -> Option<Account> {
    let value = warehouse.kv_get(&user_key(name))?;
    match serde_json::from_str(&value) {
        Ok(account) => Some(account),
        Err(e) => {
            tracing::error!(user = name, error = %e, "unreadable user record; the user cannot log in");
            None
        }
    }
}

/// Every stored user, by name.
pub fn list(warehouse: &Warehouse) -> Vec<String> {
    warehouse.kv_scan(USER_PREFIX).into_iter().map(|(k, _)| k[USER_PREFIX.len()..].to_string()).collect()
}

/// What [`modify`] should do with the user's record.
#[derive(Debug)]
pub enum Change {
    Put(Account),
    Delete,
    Keep,
}

/// Reads user `name`, lets `decide` compute the change (or refuse it), and commits it if the
/// record is still what `decide` saw; recomputes when another node got there first.
pub async fn modify(
    warehouse: &Warehouse,
    name: &str,
    mut decide: impl FnMut(Option<Account>) -> Result<Change, MysqlError>,
) -> Result<(), MysqlError> {
    let key = user_key(name);
    for _ in 0..MAX_ATTEMPTS {
        let seen = warehouse.kv_get(&key);
        let account =
            match &seen {
                Some(v) => Some(serde_json::from_str::<Account>(v).map_err(|e| {
                    MysqlError::internal(format!("the stored record of user '{name}' is unreadable: {e}"))
                })?),
                None => None,
            };
        let (puts, deletes) = match decide(account)? {
            Change::Keep => return Ok(()),
            Change::Delete => (Vec::new(), vec![key.clone()]),
            Change::Put(account) => {
                let value = serde_json::to_string(&account).map_err(|e| MysqlError::internal(e.to_string()))?;
                (vec![(key.clone(), value)], Vec::new())
            }
        };
        match warehouse.kv_commit(puts, deletes, vec![(key.clone(), seen)]).await {
            Ok(()) => return Ok(()),
            Err(WhError::Conflict(_)) => continue,
            Err(e) => return Err(wh_to_mysql(&e)),
        }
    }
    Err(MysqlError::internal(format!("user '{name}' keeps changing on other nodes; try again")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_round_trip_through_the_record() {
        let credential = StoredCredential::from_password("s3cret");
        let account = Account::new(&credential, 7);
        let json = serde_json::to_string(&account).unwrap();
        assert!(!json.contains("s3cret"));
        let back: Account = serde_json::from_str(&json).unwrap();
        assert_eq!(back.credential(), Some(credential));
        let empty = Account::new(&StoredCredential::from_password(""), 7);
        assert_eq!(empty.credential(), Some(StoredCredential::from_password("")));
        assert_eq!(unhex("0g"), None);
        assert_eq!(unhex("abc"), None);
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(check_user_name("root", "CREATE USER").unwrap_err().code, 1396);
        assert!(check_user_name("", "CREATE USER").is_err());
        assert!(check_user_name(&"x".repeat(33), "CREATE USER").is_err());
        assert!(check_user_name("alice", "CREATE USER").is_ok());
    }
}
