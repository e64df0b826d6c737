//! `--users-dir`: users whose passwords come from files (on Kubernetes, a projected volume of
//! Secrets the operator renders). Each file's name is a user, its content (one trailing newline
//! dropped) the password: the same contract as the brokers' `--scram-users-dir`.
//!
//! At start and whenever the files change, each user is created or its password updated in the
//! catalog; its grants are left as they are (GRANT them with SQL), and users not in the
//! directory are left alone. A user whose stored hashes already match its password is not
//! written, so every node of a warehouse can sync the same directory without churn.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::accounts::{self, Account, Change};
use super::ROOT;
use crate::mysql::auth::StoredCredential;
use crate::table::Warehouse;

/// The users of `dir` (the shared contract of `automq_common::users_dir`), checked as MySQL
/// user names; `root` cannot be among them.
pub fn read(dir: &Path) -> Result<BTreeMap<String, String>, String> {
    let users = automq_common::users_dir::read(dir)?;
    if users.contains_key(ROOT) {
        return Err("root cannot be in the users directory: its password is --root-password".into());
    }
    for name in users.keys() {
        accounts::check_user_name(name, "CREATE USER").map_err(|e| e.message)?;
    }
    Ok(users)
}

/// Creates the users of `dir` or updates their passwords; returns how many changed.
pub async fn sync(warehouse: &Warehouse, dir: &Path) -> Result<usize, String> {
    let users = read(dir)?;
    let mut changed = 0;
    for (user, password) in &users {
        let credential = StoredCredential::from_password(password);
        let now = warehouse.now_ms();
        let mut wrote = false;
        accounts::modify(warehouse, user, |existing| {
            let change = match existing {
                None => Change::Put(Account::new(&credential, now)),
                Some(account) if account.credential().as_ref() == Some(&credential) => Change::Keep,
                Some(mut account) => {
                    account.set_credential(&credential);
                    Change::Put(account)
                }
            };
            wrote = !matches!(change, Change::Keep);
            Ok(change)
        })
        .await
        .map_err(|e| format!("cannot store user {user:?}: {}", e.message))?;
        if wrote {
            tracing::info!(user, "MySQL user's password set from the users directory");
            changed += 1;
        }
    }
    Ok(changed)
}

/// Syncs `dir` again whenever what it holds changes (looked at every `every`) until `stop`.
pub async fn watch(warehouse: Arc<Warehouse>, dir: PathBuf, every: Duration, stop: tokio::sync::watch::Receiver<bool>) {
    let d = dir.clone();
    let apply = move || {
        let (w, d) = (warehouse.clone(), d.clone());
        async move { sync(&w, &d).await }
    };
    automq_common::users_dir::watch(dir, every, stop, apply).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn files_become_users_and_keep_their_grants() {
        let warehouse = Warehouse::open(
            Arc::new(automq_storage::object_store::MemoryStore::new()),
            crate::table::WarehouseConfig::default(),
            automq_storage::clock::system(),
        )
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("alice"), "first\n").unwrap();
        std::fs::create_dir(dir.path().join("..2026_12_02")).unwrap();
        std::fs::write(dir.path().join("..data"), "ignored").unwrap();
        assert_eq!(sync(&warehouse, dir.path()).await.unwrap(), 1);
        assert_eq!(sync(&warehouse, dir.path()).await.unwrap(), 0, "unchanged: nothing written");
        let verifies = |password: &str| {
            let stored = accounts::get(&warehouse, "alice").and_then(|a| a.credential());
            stored == Some(StoredCredential::from_password(password))
        };
        assert!(verifies("first"));

        accounts::modify(&warehouse, "alice", |a| {
            let mut a = a.unwrap();
            crate::access::grant(&mut a.grants, crate::access::Scope::global(), crate::access::Privileges::ALL);
            Ok(Change::Put(a))
        })
        .await
        .unwrap();
        std::fs::write(dir.path().join("alice"), "second\r\n").unwrap();
        assert_eq!(sync(&warehouse, dir.path()).await.unwrap(), 1);
        assert!(verifies("second"));
        assert_eq!(accounts::get(&warehouse, "alice").unwrap().grants.len(), 1, "grants are kept");

        std::fs::write(dir.path().join("bob"), "").unwrap();
        assert!(sync(&warehouse, dir.path()).await.unwrap_err().contains("empty"));
        std::fs::remove_file(dir.path().join("bob")).unwrap();
        std::fs::write(dir.path().join("root"), "x").unwrap();
        assert!(read(dir.path()).unwrap_err().contains("root"));
    }
}
