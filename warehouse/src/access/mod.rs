//! Users and privileges of the query node, in MySQL's terms.
//!
//! - `root` is the bootstrap superuser: its password comes from `--root-password`, it is never
//!   stored and cannot be dropped.
//! - Every other user is an [`accounts::Account`] in the warehouse catalog, so that every query
//!   node on the bucket knows it (after its next catalog refresh) and it survives restarts. Only
//!   the double hashes of the password are kept (see [`crate::mysql::auth`]). Users are created
//!   with SQL, or from files ([`users_dir`]).
//! - Three privileges, at three levels (`*.*`, `db.*`, `db.table`): SELECT reads a table,
//!   INSERT adds rows, ALL allows everything else too (DDL, DELETE, UPDATE, TRUNCATE, routine
//!   loads). A user with ALL on `*.*` is an administrator: it manages users and grants as root
//!   does.
//! - Privileges add up across levels. Revoking SELECT or INSERT at a level that holds ALL leaves
//!   only the other of the two there (ALL is not split any finer).
//! - Database and table names compare without regard to ASCII case, as the warehouse resolves
//!   them.
//!
//! [`Access`] is what one statement may do: computed from the catalog at the start of every
//! statement, so a GRANT or REVOKE applies to open sessions from their next statement on.

pub mod accounts;
pub mod plan;
pub mod stmt;
pub mod users_dir;

use serde::{Deserialize, Serialize};

use crate::engine::INFORMATION_SCHEMA;
use crate::mysql::error::MysqlError;

/// The only host part accounts have: users may log in from anywhere.
pub const ANY_HOST: &str = "%";
/// The bootstrap superuser.
pub const ROOT: &str = "root";

/// A privilege a statement needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privilege {
    Select,
    Insert,
    All,
}

/// The privileges held at one level. Invariant: `all` implies `select` and `insert`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Privileges {
    #[serde(default)]
    pub select: bool,
    #[serde(default)]
    pub insert: bool,
    #[serde(default)]
    pub all: bool,
}

impl Privileges {
    pub const ALL: Privileges = Privileges { select: true, insert: true, all: true };

    pub fn of(p: Privilege) -> Self {
        match p {
            Privilege::Select => Privileges { select: true, ..Privileges::default() },
            Privilege::Insert => Privileges { insert: true, ..Privileges::default() },
            Privilege::All => Privileges::ALL,
        }
    }

    pub fn has(&self, p: Privilege) -> bool {
        match p {
            Privilege::Select => self.select,
            Privilege::Insert => self.insert,
            Privilege::All => self.all,
        }
    }

    pub fn is_empty(&self) -> bool {
        !(self.select || self.insert || self.all)
    }

    pub fn add(&mut self, other: Privileges) {
        if other.all {
            *self = Privileges::ALL;
        }
        self.select |= other.select;
        self.insert |= other.insert;
    }

    pub fn remove(&mut self, other: Privileges) {
        if other.all {
            *self = Privileges::default();
            return;
        }
        if other.select {
            self.select = false;
            self.all = false;
        }
        if other.insert {
            self.insert = false;
            self.all = false;
        }
    }

    /// As SHOW GRANTS writes them.
    pub fn names(&self) -> String {
        match (self.all, self.select, self.insert) {
            (true, ..) => "ALL PRIVILEGES".into(),
            (false, true, true) => "SELECT, INSERT".into(),
            (false, true, false) => "SELECT".into(),
            (false, false, true) => "INSERT".into(),
            (false, false, false) => "USAGE".into(),
        }
    }
}

/// Where a grant applies: `*.*` (both `None`), `db.*`, or `db.table`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Scope {
    #[serde(default)]
    pub db: Option<String>,
    #[serde(default)]
    pub table: Option<String>,
}

impl Scope {
    pub fn global() -> Self {
        Scope { db: None, table: None }
    }

    pub fn database(db: &str) -> Self {
        Scope { db: Some(db.to_string()), table: None }
    }

    pub fn table(db: &str, table: &str) -> Self {
        Scope { db: Some(db.to_string()), table: Some(table.to_string()) }
    }

    pub fn is_global(&self) -> bool {
        self.db.is_none()
    }

    fn same(&self, other: &Scope) -> bool {
        let eq = |a: &Option<String>, b: &Option<String>| match (a, b) {
            (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
            (None, None) => true,
            _ => false,
        };
        eq(&self.db, &other.db) && eq(&self.table, &other.table)
    }

    /// Whether a grant here applies to `db` (and `table`, if given).
    fn covers(&self, db: &str, table: Option<&str>) -> bool {
        match (&self.db, &self.table) {
            (None, _) => true,
            (Some(d), None) => d.eq_ignore_ascii_case(db),
            (Some(d), Some(t)) => d.eq_ignore_ascii_case(db) && table.is_some_and(|x| t.eq_ignore_ascii_case(x)),
        }
    }

    /// The object as SHOW GRANTS writes it: *.*, `db`.*, `db`.`table`.
    pub fn object(&self) -> String {
        match (&self.db, &self.table) {
            (None, _) => "*.*".into(),
            (Some(d), None) => format!("{}.*", quote(d)),
            (Some(d), Some(t)) => format!("{}.{}", quote(d), quote(t)),
        }
    }
}

/// A backquoted identifier.
pub fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Privileges held at one scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    #[serde(flatten)]
    pub scope: Scope,
    #[serde(flatten)]
    pub privileges: Privileges,
}

/// Adds `privileges` at `scope` to `grants`.
pub fn grant(grants: &mut Vec<Grant>, scope: Scope, privileges: Privileges) {
    match grants.iter_mut().find(|g| g.scope.same(&scope)) {
        Some(g) => g.privileges.add(privileges),
        None => grants.push(Grant { scope, privileges }),
    }
    grants.sort_by(|a, b| a.scope.cmp(&b.scope));
}

/// Removes `privileges` at `scope`; `false` if nothing was granted at that scope.
pub fn revoke(grants: &mut Vec<Grant>, scope: &Scope, privileges: Privileges) -> bool {
    let Some(at) = grants.iter().position(|g| g.scope.same(scope)) else { return false };
    grants[at].privileges.remove(privileges);
    if grants[at].privileges.is_empty() {
        grants.remove(at);
    }
    true
}

/// What the user of one statement may do.
#[derive(Debug, Clone)]
pub struct Access {
    user: String,
    /// `None` for root, who may do anything.
    grants: Option<Vec<Grant>>,
}

impl Access {
    pub fn root() -> Self {
        Access { user: ROOT.into(), grants: None }
    }

    /// A stored user's grants (an unknown or dropped user has none).
    pub fn user(name: &str, grants: Vec<Grant>) -> Self {
        Access { user: name.to_string(), grants: Some(grants) }
    }

    pub fn user_name(&self) -> &str {
        &self.user
    }

    pub fn is_root(&self) -> bool {
        self.grants.is_none()
    }

    /// Root, or a user with ALL on `*.*`: may manage users and grants.
    pub fn is_admin(&self) -> bool {
        self.holding(Privilege::All, None, None)
    }

    /// Whether a grant at or above (`db`, `table`) holds `p`; `db` `None` asks for `*.*`.
    fn holding(&self, p: Privilege, db: Option<&str>, table: Option<&str>) -> bool {
        let Some(grants) = &self.grants else { return true };
        grants.iter().any(|g| {
            g.privileges.has(p)
                && match db {
                    None => g.scope.is_global(),
                    Some(db) => g.scope.covers(db, table),
                }
        })
    }

    pub fn may(&self, p: Privilege, db: &str, table: &str) -> bool {
        self.holding(p, Some(db), Some(table))
    }

    /// `p` on the whole database (granted on `*.*` or `db.*`).
    pub fn may_on_database(&self, p: Privilege, db: &str) -> bool {
        self.holding(p, Some(db), None)
    }

    /// Any privilege on `db` or on a table in it: the user may `USE` it and see it listed.
    pub fn sees_database(&self, db: &str) -> bool {
        let Some(grants) = &self.grants else { return true };
        db.eq_ignore_ascii_case(INFORMATION_SCHEMA)
            || grants
                .iter()
                .any(|g| !g.privileges.is_empty() && g.scope.db.as_deref().is_none_or(|d| d.eq_ignore_ascii_case(db)))
    }

    /// Any privilege on the table: the user may see it listed and described.
    pub fn sees_table(&self, db: &str, table: &str) -> bool {
        let Some(grants) = &self.grants else { return true };
        db.eq_ignore_ascii_case(INFORMATION_SCHEMA)
            || grants.iter().any(|g| !g.privileges.is_empty() && g.scope.covers(db, Some(table)))
    }

    /// 1142 unless `p` is held on `db.table`; `command` names the statement in the error
    /// (SELECT, INSERT, DROP, ...).
    pub fn require(&self, p: Privilege, command: &str, db: &str, table: &str) -> Result<(), MysqlError> {
        if db.eq_ignore_ascii_case(INFORMATION_SCHEMA) && p == Privilege::Select || self.may(p, db, table) {
            return Ok(());
        }
        Err(MysqlError::table_access_denied(command, &self.user, ANY_HOST, table))
    }

    /// 1044 unless `p` is held on the whole of `db`.
    pub fn require_database(&self, p: Privilege, db: &str) -> Result<(), MysqlError> {
        if self.may_on_database(p, db) {
            return Ok(());
        }
        Err(MysqlError::database_access_denied(&self.user, ANY_HOST, db))
    }

    /// 1044 unless the user holds some privilege in `db`.
    pub fn require_sees_database(&self, db: &str) -> Result<(), MysqlError> {
        if self.sees_database(db) {
            return Ok(());
        }
        Err(MysqlError::database_access_denied(&self.user, ANY_HOST, db))
    }

    /// 1142 (naming `command`) unless the user holds some privilege on the table.
    pub fn require_sees_table(&self, command: &str, db: &str, table: &str) -> Result<(), MysqlError> {
        if self.sees_table(db, table) {
            return Ok(());
        }
        Err(MysqlError::table_access_denied(command, &self.user, ANY_HOST, table))
    }

    /// 1227 unless the user is an administrator; `privilege` names what MySQL would need.
    pub fn require_admin(&self, privilege: &str) -> Result<(), MysqlError> {
        if self.is_admin() {
            return Ok(());
        }
        Err(MysqlError::specific_access_denied(privilege))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice(grants: &[(Scope, Privilege)]) -> Access {
        let mut g = Vec::new();
        for (scope, p) in grants {
            grant(&mut g, scope.clone(), Privileges::of(*p));
        }
        Access::user("alice", g)
    }

    #[test]
    fn levels_add_up_and_names_ignore_case() {
        let a =
            alice(&[(Scope::database("shop"), Privilege::Select), (Scope::table("crm", "leads"), Privilege::Insert)]);
        assert!(a.may(Privilege::Select, "shop", "orders"));
        assert!(a.may(Privilege::Select, "SHOP", "Orders"));
        assert!(!a.may(Privilege::Insert, "shop", "orders"));
        assert!(a.may(Privilege::Insert, "crm", "leads"));
        assert!(!a.may(Privilege::Select, "crm", "leads"));
        assert!(!a.may(Privilege::Insert, "crm", "other"));
        assert!(a.sees_database("crm") && a.sees_database("shop") && !a.sees_database("hr"));
        assert!(a.sees_table("crm", "leads") && !a.sees_table("crm", "other"));
        assert!(a.sees_database(INFORMATION_SCHEMA));
        assert!(!a.is_admin());
        assert!(a.may_on_database(Privilege::Select, "shop") && !a.may_on_database(Privilege::Insert, "crm"));
    }

    #[test]
    fn all_implies_select_and_insert_and_on_star_star_makes_an_admin() {
        let a = alice(&[(Scope::table("shop", "orders"), Privilege::All)]);
        assert!(a.may(Privilege::Select, "shop", "orders") && a.may(Privilege::Insert, "shop", "orders"));
        assert!(!a.is_admin());
        assert!(alice(&[(Scope::global(), Privilege::All)]).is_admin());
        assert!(!alice(&[(Scope::global(), Privilege::Select)]).is_admin());
        assert!(Access::root().is_admin() && Access::root().may(Privilege::All, "x", "y"));
    }

    #[test]
    fn revoking_part_of_all_leaves_the_other_part() {
        let mut g = Vec::new();
        grant(&mut g, Scope::database("shop"), Privileges::ALL);
        assert!(revoke(&mut g, &Scope::database("SHOP"), Privileges::of(Privilege::Select)));
        assert_eq!(g[0].privileges, Privileges::of(Privilege::Insert));
        assert_eq!(g[0].privileges.names(), "INSERT");
        assert!(revoke(&mut g, &Scope::database("shop"), Privileges::of(Privilege::Insert)));
        assert!(g.is_empty(), "a level without privileges is dropped");
        assert!(!revoke(&mut g, &Scope::database("shop"), Privileges::ALL), "nothing granted there");
    }

    #[test]
    fn grants_merge_per_scope_and_sort_global_first() {
        let mut g = Vec::new();
        grant(&mut g, Scope::table("shop", "orders"), Privileges::of(Privilege::Select));
        grant(&mut g, Scope::database("shop"), Privileges::of(Privilege::Select));
        grant(&mut g, Scope::global(), Privileges::of(Privilege::Insert));
        grant(&mut g, Scope::table("shop", "ORDERS"), Privileges::of(Privilege::Insert));
        let shown: Vec<String> = g.iter().map(|g| format!("{} {}", g.privileges.names(), g.scope.object())).collect();
        assert_eq!(shown, ["INSERT *.*", "SELECT `shop`.*", "SELECT, INSERT `shop`.`orders`"]);
    }

    #[test]
    fn denials_carry_mysql_codes_and_messages() {
        let a = alice(&[]);
        let e = a.require(Privilege::Select, "SELECT", "shop", "orders").unwrap_err();
        assert_eq!((e.code, e.sqlstate), (1142, "42000"));
        assert_eq!(e.message, "SELECT command denied to user 'alice'@'%' for table 'orders'");
        let e = a.require_sees_database("shop").unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (1044, "Access denied for user 'alice'@'%' to database 'shop'"));
        assert_eq!(a.require_admin("CREATE USER").unwrap_err().code, 1227);
        assert!(a.require(Privilege::Select, "SELECT", INFORMATION_SCHEMA, "tables").is_ok());
    }
}
