//! The account statements (see [`crate::access::stmt`]) and the privileges of a session's
//! user, as the engine applies them.

use crate::access::accounts::{self, Account, Change};
use crate::access::stmt::{AccountStatement, Object};
use crate::access::{self, Access, Privileges, Scope, ANY_HOST, ROOT};
use crate::mysql::auth::StoredCredential;
use crate::mysql::error::MysqlError;
use crate::mysql::server::{Response, Session};

use super::{rows, wh, Engine};

/// Whether `sql` starts like an account statement (decided on its first words, so that other
/// statements are not tokenised twice). `SET PASSWORD` must be caught before the generic `SET`.
pub(super) fn is_account_statement(sql: &str) -> bool {
    let mut words = sql.split_whitespace().map(|w| w.trim_end_matches(';').to_ascii_lowercase());
    let first = words.next().unwrap_or_default();
    let second = words.next().unwrap_or_default();
    matches!(
        (first.as_str(), second.as_str()),
        ("create" | "alter" | "drop", "user") | ("set", "password") | ("grant" | "revoke", _) | ("show", "grants")
    ) || (first == "flush" && second == "privileges")
        || (first == "set" && second.starts_with("password="))
}

impl Engine {
    /// What the session's user may do: read from this node's catalog view at every statement,
    /// so grants and revokes apply from the next statement of open sessions. A dropped user
    /// keeps its session but may do nothing.
    pub(super) fn access(&self, session: &Session) -> Access {
        if session.user == ROOT {
            return Access::root();
        }
        let grants = accounts::get(&self.warehouse, &session.user).map(|a| a.grants).unwrap_or_default();
        Access::user(&session.user, grants)
    }

    /// The credential of `user`: root's from the command line, others' from the catalog.
    pub(super) async fn stored_credential(&self, user: &str) -> Option<StoredCredential> {
        if user == ROOT {
            return Some(self.root.clone());
        }
        // A user created or changed on another node is known here after a refresh. Refreshing
        // at most once per refresh interval bounds what unauthenticated clients can make us
        // read; a user unknown here waits for the next one (a user just created elsewhere).
        if let Err(e) = self.warehouse.refresh_if_stale().await {
            tracing::warn!(error = %e, "catalog refresh failed; checking the login against the current view");
        }
        if accounts::get(&self.warehouse, user).is_none() {
            if let Err(e) = self.warehouse.refresh_when_stale().await {
                tracing::warn!(error = %e, "catalog refresh failed; checking the login against the current view");
            }
        }
        accounts::get(&self.warehouse, user)?.credential()
    }

    pub(super) async fn account_statement(
        &self,
        session: &Session,
        access: &Access,
        sql: &str,
    ) -> Result<Response, MysqlError> {
        let Some(statement) = access::stmt::parse(sql).map_err(|e| wh(e.into()))? else {
            return Err(MysqlError::syntax(format!("You have an error in your SQL syntax near '{sql}'")));
        };
        match statement {
            AccountStatement::CreateUser { if_not_exists, user, password } => {
                access.require_admin("CREATE USER")?;
                accounts::check_user_name(&user, "CREATE USER")?;
                let credential = StoredCredential::from_password(&password);
                let now = self.warehouse.now_ms();
                accounts::modify(&self.warehouse, &user, |existing| match existing {
                    Some(_) if if_not_exists => Ok(Change::Keep),
                    Some(_) => Err(MysqlError::cannot_user("CREATE USER", &user, ANY_HOST)),
                    None => Ok(Change::Put(Account::new(&credential, now))),
                })
                .await?;
            }
            AccountStatement::AlterUser { if_exists, user, password } => {
                self.set_password(session, access, user, &password, if_exists, "ALTER USER").await?
            }
            AccountStatement::SetPassword { user, password } => {
                self.set_password(session, access, user, &password, false, "SET PASSWORD").await?
            }
            AccountStatement::DropUser { if_exists, users } => {
                access.require_admin("CREATE USER")?;
                let mut failed = Vec::new();
                for user in &users {
                    if user == ROOT {
                        failed.push(user.clone());
                        continue;
                    }
                    let mut missing = false;
                    accounts::modify(&self.warehouse, user, |existing| {
                        missing = existing.is_none();
                        Ok(if missing { Change::Keep } else { Change::Delete })
                    })
                    .await?;
                    if missing {
                        failed.push(user.clone());
                    }
                }
                // As MySQL: the users that exist are dropped, the others named in one error
                // (root always: it cannot be dropped, IF EXISTS or not).
                let root_named = failed.iter().any(|u| u == ROOT);
                if !failed.is_empty() && (!if_exists || root_named) {
                    let names: Vec<String> = failed.iter().map(|u| format!("'{u}'@'{ANY_HOST}'")).collect();
                    return Err(MysqlError::new(
                        1396,
                        "HY000",
                        format!("Operation DROP USER failed for {}", names.join(",")),
                    ));
                }
            }
            AccountStatement::Grant { privileges, on, user } => {
                access.require_admin("GRANT OPTION")?;
                refuse_root(&user, "GRANT")?;
                let scope = self.scope(session, &on, true)?;
                accounts::modify(&self.warehouse, &user, |existing| {
                    let Some(mut account) = existing else { return Err(MysqlError::grant_to_missing_user()) };
                    access::grant(&mut account.grants, scope.clone(), privileges);
                    Ok(Change::Put(account))
                })
                .await?;
            }
            AccountStatement::Revoke { privileges, on, user } => {
                access.require_admin("GRANT OPTION")?;
                refuse_root(&user, "REVOKE")?;
                let scope = self.scope(session, &on, false)?;
                accounts::modify(&self.warehouse, &user, |existing| {
                    let Some(mut account) = existing else { return Err(MysqlError::no_such_grant(&user, ANY_HOST)) };
                    if access::revoke(&mut account.grants, &scope, privileges) {
                        return Ok(Change::Put(account));
                    }
                    match &scope.table {
                        _ if scope.is_global() => Ok(Change::Keep),
                        None => Err(MysqlError::no_such_grant(&user, ANY_HOST)),
                        Some(t) => Err(MysqlError::no_such_table_grant(&user, ANY_HOST, t)),
                    }
                })
                .await?;
            }
            AccountStatement::RevokeEverything { user } => {
                access.require_admin("GRANT OPTION")?;
                refuse_root(&user, "REVOKE")?;
                accounts::modify(&self.warehouse, &user, |existing| {
                    let Some(mut account) = existing else { return Err(MysqlError::no_such_grant(&user, ANY_HOST)) };
                    account.grants.clear();
                    Ok(Change::Put(account))
                })
                .await?;
            }
            AccountStatement::ShowGrants { user } => return self.show_grants(session, access, user),
            AccountStatement::FlushPrivileges => {}
        }
        Ok(Response::ok())
    }

    /// ALTER USER / SET PASSWORD: anyone may change their own password, administrators
    /// anyone's; root's comes from the command line only.
    async fn set_password(
        &self,
        session: &Session,
        access: &Access,
        user: Option<String>,
        password: &str,
        if_exists: bool,
        operation: &str,
    ) -> Result<(), MysqlError> {
        let user = user.unwrap_or_else(|| session.user.clone());
        if user == ROOT {
            return Err(MysqlError::not_supported(
                "changing root's password with SQL: it is set by --root-password (AUTOMQ_ROOT_PASSWORD)",
            ));
        }
        if user != session.user {
            access.require_admin("CREATE USER")?;
        }
        let credential = StoredCredential::from_password(password);
        accounts::modify(&self.warehouse, &user, |existing| match existing {
            Some(mut account) => {
                account.set_credential(&credential);
                Ok(Change::Put(account))
            }
            None if if_exists => Ok(Change::Keep),
            None if operation == "SET PASSWORD" => {
                Err(MysqlError::new(1133, "42000", "Can't find any matching row in the user table"))
            }
            None => Err(MysqlError::cannot_user(operation, &user, ANY_HOST)),
        })
        .await
    }

    /// The scope of `ON ...`; a table-level grant needs the table to exist, as in MySQL.
    fn scope(&self, session: &Session, on: &Object, granting: bool) -> Result<Scope, MysqlError> {
        let current = || session.database.clone().ok_or_else(MysqlError::no_database_selected);
        Ok(match on {
            Object::Global => Scope::global(),
            Object::CurrentDatabase => Scope::database(&current()?),
            Object::Database(db) => Scope::database(db),
            Object::Table(db, table) => {
                let db = match db {
                    Some(db) => db.clone(),
                    None => current()?,
                };
                if granting {
                    let meta = self.table_meta(&db, table)?;
                    return Ok(Scope::table(&db, &meta.name));
                }
                Scope::table(&db, table)
            }
        })
    }

    fn show_grants(&self, session: &Session, access: &Access, user: Option<String>) -> Result<Response, MysqlError> {
        let user = user.unwrap_or_else(|| session.user.clone());
        if user != session.user && !access.is_admin() {
            return Err(MysqlError::database_access_denied(access.user_name(), ANY_HOST, "mysql"));
        }
        let to = format!("{}@{}", access::quote(&user), access::quote(ANY_HOST));
        let lines = if user == ROOT {
            vec![format!("GRANT ALL PRIVILEGES ON *.* TO {to} WITH GRANT OPTION")]
        } else {
            let account =
                accounts::get(&self.warehouse, &user).ok_or_else(|| MysqlError::no_such_grant(&user, ANY_HOST))?;
            let mut lines = Vec::new();
            if !account.grants.iter().any(|g| g.scope.is_global()) {
                lines.push(format!("GRANT {} ON *.* TO {to}", Privileges::default().names()));
            }
            for g in &account.grants {
                lines.push(format!("GRANT {} ON {} TO {to}", g.privileges.names(), g.scope.object()));
            }
            lines
        };
        let header = format!("Grants for {user}@{ANY_HOST}");
        Ok(rows(&[&header], lines.into_iter().map(|l| vec![l]).collect()))
    }
}

fn refuse_root(user: &str, operation: &str) -> Result<(), MysqlError> {
    if user == ROOT {
        return Err(MysqlError::cannot_user(operation, user, ANY_HOST));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_statements_are_recognised_by_their_first_words() {
        for sql in [
            "CREATE USER a",
            "alter user a identified by 'x'",
            "DROP USER a",
            "SET PASSWORD = 'x'",
            "set password='x'",
            "GRANT SELECT ON *.* TO a",
            "REVOKE ALL ON *.* FROM a",
            "SHOW GRANTS",
            "FLUSH PRIVILEGES;",
        ] {
            assert!(is_account_statement(sql), "{sql}");
        }
        for sql in ["CREATE TABLE user (a INT)", "SET NAMES utf8", "SHOW TABLES", "SELECT 'GRANT'"] {
            assert!(!is_account_statement(sql), "{sql}");
        }
    }
}
