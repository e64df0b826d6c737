//! A users directory (`--scram-users-dir` on brokers, `--users-dir` on query nodes): each file's
//! name is a user, its content (one trailing newline dropped) the password. On Kubernetes it is
//! a projected volume of the users' Secrets, whose hidden entries (`..data` and timestamped
//! directories) are skipped.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The users of `dir`: name → password.
pub fn read(dir: &Path) -> Result<BTreeMap<String, String>, String> {
    let mut users = BTreeMap::new();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with('.') || !entry.path().is_file() {
            continue;
        }
        let text =
            std::fs::read_to_string(entry.path()).map_err(|e| format!("cannot read the password of {name:?}: {e}"))?;
        let password = text.strip_suffix('\n').unwrap_or(&text);
        let password = password.strip_suffix('\r').unwrap_or(password);
        if password.is_empty() {
            return Err(format!("the password of {name:?} is empty"));
        }
        users.insert(name, password.to_string());
    }
    Ok(users)
}

/// Calls `apply` again whenever what `dir` holds changes (looked at every `every`) until `stop`;
/// a failed `apply` is retried at the next look.
pub async fn watch<F, Fut>(dir: PathBuf, every: Duration, mut stop: tokio::sync::watch::Receiver<bool>, mut apply: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<usize, String>>,
{
    let mut applied = read(&dir).ok();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        match read(&dir) {
            Ok(users) if applied.as_ref() != Some(&users) => match apply().await {
                Ok(_) => applied = Some(users),
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot apply the users directory; retrying")
                }
            },
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read the users directory"),
        }
    }
}
