//! The account statements, in MySQL's syntax:
//!
//! ```sql
//! CREATE USER [IF NOT EXISTS] 'alice'[@'%'] [IDENTIFIED [WITH plugin] BY 'password'];
//! ALTER USER [IF EXISTS] 'alice'[@'%'] IDENTIFIED [WITH plugin] BY 'password';
//! SET PASSWORD [FOR 'alice'[@'%']] = 'password';
//! DROP USER [IF EXISTS] 'alice'[@'%'] [, 'bob' ...];
//! GRANT priv [, priv] ON {*.* | * | db.* | db.table | table} TO 'alice'[@'%'];
//! REVOKE priv [, priv] ON ... FROM 'alice'[@'%'];
//! REVOKE ALL [PRIVILEGES], GRANT OPTION FROM 'alice'[@'%'];
//! SHOW GRANTS [FOR 'alice'[@'%'] | FOR CURRENT_USER[()]];
//! ```
//!
//! where priv is SELECT, INSERT or ALL \[PRIVILEGES\]. The host part, when given, must be `'%'`:
//! accounts are not tied to client addresses, and accepting another host would promise a
//! restriction that is not enforced.

use datafusion::sql::sqlparser::tokenizer::Token;

use super::{Privilege, Privileges, ANY_HOST};
use crate::mysql::auth;
use crate::table::ddl::{DdlError, Parser};

type R<T> = Result<T, DdlError>;

fn syntax<T>(msg: impl Into<String>) -> R<T> {
    Err(DdlError::Syntax(format!("You have an error in your SQL syntax: {}", msg.into())))
}

fn unsupported<T>(msg: impl Into<String>) -> R<T> {
    Err(DdlError::Unsupported(msg.into()))
}

/// `ON ...` of GRANT and REVOKE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    /// `*.*`
    Global,
    /// `*`: every table of the current database.
    CurrentDatabase,
    /// `db.*`
    Database(String),
    /// `db.table`, or `table` in the current database.
    Table(Option<String>, String),
}

/// A user named by a statement; `None` where the statement says `CURRENT_USER`.
pub type UserRef = Option<String>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountStatement {
    CreateUser {
        if_not_exists: bool,
        user: String,
        password: String,
    },
    AlterUser {
        if_exists: bool,
        user: UserRef,
        password: String,
    },
    SetPassword {
        user: UserRef,
        password: String,
    },
    DropUser {
        if_exists: bool,
        users: Vec<String>,
    },
    Grant {
        privileges: Privileges,
        on: Object,
        user: String,
    },
    Revoke {
        privileges: Privileges,
        on: Object,
        user: String,
    },
    /// `REVOKE ALL PRIVILEGES, GRANT OPTION FROM user`: every grant at every level.
    RevokeEverything {
        user: String,
    },
    ShowGrants {
        user: UserRef,
    },
    /// `FLUSH PRIVILEGES`: accepted, nothing to do (grants apply at once).
    FlushPrivileges,
}

/// Parses an account statement; `Ok(None)` if `sql` is not one.
pub fn parse(sql: &str) -> R<Option<AccountStatement>> {
    let mut p = Parser::new(sql)?;
    let statement = if p.eat_keywords(&["CREATE", "USER"]) {
        let if_not_exists = p.eat_keywords(&["IF", "NOT", "EXISTS"]);
        let user = user(&mut p)?;
        let password = if p.peek_keyword("IDENTIFIED") { identified(&mut p)? } else { String::new() };
        AccountStatement::CreateUser { if_not_exists, user, password }
    } else if p.eat_keywords(&["ALTER", "USER"]) {
        let if_exists = p.eat_keywords(&["IF", "EXISTS"]);
        let user = user_or_current(&mut p)?;
        if !p.peek_keyword("IDENTIFIED") {
            return unsupported("ALTER USER other than IDENTIFIED BY");
        }
        AccountStatement::AlterUser { if_exists, user, password: identified(&mut p)? }
    } else if p.eat_keywords(&["SET", "PASSWORD"]) {
        let user = if p.eat_keyword("FOR") { user_or_current(&mut p)? } else { None };
        if !p.eat(&Token::Eq) {
            return syntax(format!("expected '=' near {}", p.near()));
        }
        if p.peek_keyword("PASSWORD") {
            return unsupported("SET PASSWORD = PASSWORD('...'): write SET PASSWORD = '...'");
        }
        AccountStatement::SetPassword { user, password: p.string()? }
    } else if p.eat_keywords(&["DROP", "USER"]) {
        let if_exists = p.eat_keywords(&["IF", "EXISTS"]);
        let mut users = vec![user(&mut p)?];
        while p.eat(&Token::Comma) {
            users.push(user(&mut p)?);
        }
        AccountStatement::DropUser { if_exists, users }
    } else if p.eat_keyword("GRANT") {
        let privileges = privileges(&mut p)?;
        expect_keyword(&mut p, "ON")?;
        let on = object(&mut p)?;
        expect_keyword(&mut p, "TO")?;
        let user = user(&mut p)?;
        if p.peek_keyword("WITH") {
            return unsupported("WITH GRANT OPTION: users and grants are managed by root and users with ALL ON *.*");
        }
        AccountStatement::Grant { privileges, on, user }
    } else if p.eat_keyword("REVOKE") {
        let privileges = privileges(&mut p)?;
        if privileges.all && p.eat(&Token::Comma) {
            expect_keyword(&mut p, "GRANT")?;
            expect_keyword(&mut p, "OPTION")?;
            expect_keyword(&mut p, "FROM")?;
            AccountStatement::RevokeEverything { user: user(&mut p)? }
        } else {
            expect_keyword(&mut p, "ON")?;
            let on = object(&mut p)?;
            expect_keyword(&mut p, "FROM")?;
            AccountStatement::Revoke { privileges, on, user: user(&mut p)? }
        }
    } else if p.eat_keywords(&["SHOW", "GRANTS"]) {
        let user = if p.eat_keyword("FOR") { user_or_current(&mut p)? } else { None };
        if p.peek_keyword("USING") {
            return unsupported("SHOW GRANTS ... USING (there are no roles)");
        }
        AccountStatement::ShowGrants { user }
    } else if p.eat_keywords(&["FLUSH", "PRIVILEGES"]) {
        AccountStatement::FlushPrivileges
    } else {
        return Ok(None);
    };
    p.eat(&Token::SemiColon);
    if p.peek().is_some() {
        return unsupported(format!("the clause starting at {}", p.near()));
    }
    Ok(Some(statement))
}

fn expect_keyword(p: &mut Parser, kw: &str) -> R<()> {
    if p.eat_keyword(kw) {
        Ok(())
    } else {
        syntax(format!("expected {kw} near {}", p.near()))
    }
}

/// `'name'`, `"name"`, `` `name` `` or `name`, then an optional host part that must be `'%'`.
fn user(p: &mut Parser) -> R<String> {
    let (name, host) = match p.next() {
        Some(Token::SingleQuotedString(s) | Token::DoubleQuotedString(s)) => (s, host(p)?),
        // The MySQL tokenizer reads `alice@localhost` unquoted as one word.
        Some(Token::Word(w)) if w.quote_style.is_none() && w.value.contains('@') => {
            let (name, host) = w.value.split_once('@').unwrap_or_default();
            (name.to_string(), Some(host.to_string()))
        }
        Some(Token::Word(w)) => (w.value, host(p)?),
        _ => {
            p.pos = p.pos.saturating_sub(1);
            return syntax(format!("expected a user name near {}", p.near()));
        }
    };
    match host {
        Some(h) if h != ANY_HOST => unsupported(format!(
            "the host '{h}' in '{name}'@'{h}': accounts are not tied to client addresses; write '{name}'@'%' or '{name}'"
        )),
        _ => Ok(name),
    }
}

/// The `@host` after a user name, if any.
fn host(p: &mut Parser) -> R<Option<String>> {
    if p.eat(&Token::AtSign) {
        return match p.next() {
            Some(Token::SingleQuotedString(s) | Token::DoubleQuotedString(s)) => Ok(Some(s)),
            Some(Token::Word(w)) => Ok(Some(w.value)),
            Some(Token::Mod) => Ok(Some(ANY_HOST.to_string())),
            _ => {
                p.pos = p.pos.saturating_sub(1);
                syntax(format!("expected a host name near {}", p.near()))
            }
        };
    }
    // `'alice' @localhost`: the tokenizer reads `@localhost` as one word.
    match p.peek() {
        Some(Token::Word(w)) if w.quote_style.is_none() && w.value.starts_with('@') => {
            let host = w.value[1..].to_string();
            p.pos += 1;
            Ok(Some(host))
        }
        _ => Ok(None),
    }
}

/// A user, or `CURRENT_USER` / `CURRENT_USER()` (`None`).
fn user_or_current(p: &mut Parser) -> R<UserRef> {
    if p.eat_keyword("CURRENT_USER") {
        if p.eat(&Token::LParen) {
            p.expect(&Token::RParen)?;
        }
        return Ok(None);
    }
    user(p).map(Some)
}

/// `IDENTIFIED [WITH plugin] BY 'password'`: the password (both hashes are stored whatever the
/// plugin, so clients may use either).
fn identified(p: &mut Parser) -> R<String> {
    expect_keyword(p, "IDENTIFIED")?;
    if p.eat_keyword("WITH") {
        let plugin = match p.next() {
            Some(Token::SingleQuotedString(s) | Token::DoubleQuotedString(s)) => s,
            Some(Token::Word(w)) => w.value,
            _ => return syntax("expected an authentication plugin after IDENTIFIED WITH"),
        };
        if plugin != auth::NATIVE && plugin != auth::CACHING_SHA2 {
            return unsupported(format!(
                "authentication plugin '{plugin}' (use {} or {})",
                auth::NATIVE,
                auth::CACHING_SHA2
            ));
        }
        if p.peek_keyword("AS") {
            return unsupported("IDENTIFIED WITH ... AS 'hash': give the password with BY");
        }
    }
    expect_keyword(p, "BY")?;
    if p.peek_keyword("RANDOM") {
        return unsupported("IDENTIFIED BY RANDOM PASSWORD");
    }
    p.string()
}

/// `SELECT`, `INSERT`, `ALL [PRIVILEGES]`, comma-separated.
fn privileges(p: &mut Parser) -> R<Privileges> {
    let mut out = Privileges::default();
    loop {
        let Some(word) = p.keyword_at(p.pos) else {
            return syntax(format!("expected a privilege near {}", p.near()));
        };
        p.pos += 1;
        match word.as_str() {
            "SELECT" => out.add(Privileges::of(Privilege::Select)),
            "INSERT" => out.add(Privileges::of(Privilege::Insert)),
            "ALL" => {
                p.eat_keyword("PRIVILEGES");
                out.add(Privileges::ALL);
            }
            "USAGE" => {}
            other => {
                return unsupported(format!(
                    "the {other} privilege: the privileges are SELECT, INSERT and ALL (which allows everything else)"
                ))
            }
        }
        // `REVOKE ALL, GRANT OPTION FROM`: the list ends before that comma.
        let grant_option_next = p.peek() == Some(&Token::Comma) && p.keyword_at(p.pos + 1).as_deref() == Some("GRANT");
        if grant_option_next || !p.eat(&Token::Comma) {
            return Ok(out);
        }
    }
}

/// `*.*`, `*`, `db.*`, `db.table`, `table`, optionally after `TABLE`.
fn object(p: &mut Parser) -> R<Object> {
    p.eat_keyword("TABLE");
    if p.eat(&Token::Mul) {
        if p.eat(&Token::Period) {
            if !p.eat(&Token::Mul) {
                return syntax(format!("expected *.* near {}", p.near()));
            }
            return Ok(Object::Global);
        }
        return Ok(Object::CurrentDatabase);
    }
    let first = p.ident()?;
    if !p.eat(&Token::Period) {
        return Ok(Object::Table(None, first));
    }
    if p.eat(&Token::Mul) {
        return Ok(Object::Database(first));
    }
    Ok(Object::Table(Some(first), p.ident()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(sql: &str) -> AccountStatement {
        parse(sql).unwrap_or_else(|e| panic!("{sql}: {e:?}")).unwrap_or_else(|| panic!("{sql}: not recognised"))
    }

    #[test]
    fn users_are_created_altered_and_dropped() {
        assert_eq!(
            ok("CREATE USER 'alice'@'%' IDENTIFIED BY 'pw'"),
            AccountStatement::CreateUser { if_not_exists: false, user: "alice".into(), password: "pw".into() }
        );
        assert_eq!(
            ok("create user if not exists bob identified with caching_sha2_password by \"x y\";"),
            AccountStatement::CreateUser { if_not_exists: true, user: "bob".into(), password: "x y".into() }
        );
        assert_eq!(
            ok("CREATE USER `Carol`"),
            AccountStatement::CreateUser { if_not_exists: false, user: "Carol".into(), password: String::new() }
        );
        assert_eq!(
            ok("ALTER USER 'alice' IDENTIFIED BY 'pw2'"),
            AccountStatement::AlterUser { if_exists: false, user: Some("alice".into()), password: "pw2".into() }
        );
        assert_eq!(
            ok("ALTER USER IF EXISTS CURRENT_USER() IDENTIFIED BY 'pw2'"),
            AccountStatement::AlterUser { if_exists: true, user: None, password: "pw2".into() }
        );
        assert_eq!(
            ok("SET PASSWORD FOR 'alice'@'%' = 'pw3'"),
            AccountStatement::SetPassword { user: Some("alice".into()), password: "pw3".into() }
        );
        assert_eq!(ok("SET PASSWORD = 'pw4'"), AccountStatement::SetPassword { user: None, password: "pw4".into() });
        assert_eq!(
            ok("DROP USER IF EXISTS 'alice'@'%', bob"),
            AccountStatement::DropUser { if_exists: true, users: vec!["alice".into(), "bob".into()] }
        );
    }

    #[test]
    fn grants_and_revokes_name_privileges_objects_and_users() {
        let select_insert = Privileges { select: true, insert: true, all: false };
        assert_eq!(
            ok("GRANT SELECT, INSERT ON shop.* TO 'alice'@'%'"),
            AccountStatement::Grant {
                privileges: select_insert,
                on: Object::Database("shop".into()),
                user: "alice".into()
            }
        );
        assert_eq!(
            ok("GRANT ALL PRIVILEGES ON *.* TO alice"),
            AccountStatement::Grant { privileges: Privileges::ALL, on: Object::Global, user: "alice".into() }
        );
        assert_eq!(
            ok("GRANT ALL ON `Shop`.`Orders` TO 'alice'"),
            AccountStatement::Grant {
                privileges: Privileges::ALL,
                on: Object::Table(Some("Shop".into()), "Orders".into()),
                user: "alice".into()
            }
        );
        assert_eq!(
            ok("GRANT SELECT ON TABLE orders TO alice"),
            AccountStatement::Grant {
                privileges: Privileges::of(Privilege::Select),
                on: Object::Table(None, "orders".into()),
                user: "alice".into()
            }
        );
        assert_eq!(
            ok("REVOKE INSERT ON * FROM 'alice'@'%'"),
            AccountStatement::Revoke {
                privileges: Privileges::of(Privilege::Insert),
                on: Object::CurrentDatabase,
                user: "alice".into()
            }
        );
        assert_eq!(
            ok("REVOKE ALL PRIVILEGES, GRANT OPTION FROM 'alice'"),
            AccountStatement::RevokeEverything { user: "alice".into() }
        );
        assert_eq!(ok("SHOW GRANTS"), AccountStatement::ShowGrants { user: None });
        assert_eq!(ok("SHOW GRANTS FOR 'alice'@'%'"), AccountStatement::ShowGrants { user: Some("alice".into()) });
        assert_eq!(ok("SHOW GRANTS FOR CURRENT_USER"), AccountStatement::ShowGrants { user: None });
        assert_eq!(ok("FLUSH PRIVILEGES"), AccountStatement::FlushPrivileges);
    }

    #[test]
    fn what_is_not_supported_says_so() {
        for sql in [
            "CREATE USER 'alice'@'localhost' IDENTIFIED BY 'pw'",
            "CREATE USER alice@localhost",
            "GRANT UPDATE ON shop.* TO alice",
            "GRANT SELECT ON shop.* TO alice WITH GRANT OPTION",
            "CREATE USER alice IDENTIFIED WITH sha256_password BY 'x'",
            "CREATE USER alice IDENTIFIED BY 'x' PASSWORD EXPIRE",
        ] {
            assert!(matches!(parse(sql), Err(DdlError::Unsupported(_))), "{sql}: {:?}", parse(sql));
        }
        for sql in ["GRANT SELECT shop.* TO alice", "GRANT SELECT ON shop.* alice", "CREATE USER"] {
            assert!(matches!(parse(sql), Err(DdlError::Syntax(_))), "{sql}: {:?}", parse(sql));
        }
        assert_eq!(parse("SELECT 1").unwrap(), None);
        assert_eq!(parse("CREATE TABLE t (a INT)").unwrap(), None);
    }
}
