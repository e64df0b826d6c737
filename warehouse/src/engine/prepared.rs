//! Prepared statements: `?` placeholders counted and bound as SQL literals, and the privilege
//! check MySQL makes when a statement is prepared.

use crate::access::Privilege;
use crate::mysql::binary::Param;
use crate::mysql::error::MysqlError;
use crate::mysql::server::Session;

use super::{insert, Engine};

/// Counts `?` placeholders outside quotes and comments.
pub fn count_placeholders(sql: &str) -> usize {
    let mut n = 0;
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), '\\') if q != '`' => {
                chars.next();
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"' | '`') => quote = Some(c),
            (None, '?') => n += 1,
            _ => {}
        }
    }
    n
}

/// The SQL literal for a bound parameter.
fn literal(p: &Param) -> String {
    match p {
        Param::Null => "NULL".into(),
        Param::Int(v) => v.to_string(),
        Param::UInt(v) => v.to_string(),
        Param::Float(v) if v.is_finite() => format!("{v:?}"),
        Param::Float(_) => "NULL".into(),
        Param::Text(s) => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''")),
        Param::Bytes(b) => format!("'{}'", String::from_utf8_lossy(b).replace('\\', "\\\\").replace('\'', "''")),
    }
}

/// Replaces the `?` placeholders of `sql` with `params`, outside quotes.
pub fn bind(sql: &str, params: &[Param]) -> Result<String, MysqlError> {
    let mut out = String::with_capacity(sql.len() + params.len() * 8);
    let mut next = params.iter();
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), '\\') if q != '`' => {
                out.push(c);
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            (Some(q), c) if c == q => {
                quote = None;
                out.push(c);
            }
            (Some(_), c) => out.push(c),
            (None, '\'' | '"' | '`') => {
                quote = Some(c);
                out.push(c);
            }
            (None, '?') => {
                out.push_str(&literal(next.next().ok_or_else(|| MysqlError::wrong_arguments("too few parameters"))?))
            }
            (None, c) => out.push(c),
        }
    }
    if next.next().is_some() {
        return Err(MysqlError::wrong_arguments("too many parameters"));
    }
    Ok(out)
}

impl Engine {
    /// Refuses at prepare time a statement its user may not run, as MySQL does (execution
    /// checks again: grants may change in between). Only refusals count here: a statement
    /// that does not plan with NULL parameters is left for execution to judge.
    pub(super) async fn check_prepared(&self, session: &Session, probe: &str) -> Result<(), MysqlError> {
        let access = self.access(session);
        if access.is_root() {
            return Ok(());
        }
        if let Some(parsed) = insert::parse(probe) {
            if let Some(db) = parsed.database.clone().or_else(|| session.database.clone()) {
                access.require(Privilege::Insert, "INSERT", &db, &parsed.table)?;
            }
            return Ok(());
        }
        let ctx = self.session_context(session, &access);
        match self.checked_plan(&ctx, session, &access, probe).await {
            Err(e) if matches!(e.code, 1044 | 1142 | 1227) => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_outside_quotes_are_bound() {
        assert_eq!(count_placeholders("SELECT ?, '?', \"a?\", `b?`, ?"), 2);
        let sql = bind("SELECT ? + 1, '?', ?", &[Param::Int(41), Param::Text("it's \\ ok".into())]).unwrap();
        assert_eq!(sql, "SELECT 41 + 1, '?', 'it''s \\\\ ok'");
        assert!(bind("SELECT ?", &[]).is_err());
        assert!(bind("SELECT 1", &[Param::Null]).is_err());
    }
}
