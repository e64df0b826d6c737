//! The routine-load statements in StarRocks's syntax:
//!
//! ```sql
//! CREATE ROUTINE LOAD [db.]job ON table
//!     [COLUMNS TERMINATED BY ',', COLUMNS (a, b, tmp, c = tmp * 2, __op), WHERE c > 0]
//!     [PROPERTIES ("format" = "json", ...)]
//!     FROM KAFKA ("kafka_broker_list" = "host:9092", "kafka_topic" = "t", ...);
//! ALTER ROUTINE LOAD FOR [db.]job [load clauses] [PROPERTIES (...)] [FROM KAFKA (...)];
//! PAUSE | RESUME | STOP ROUTINE LOAD FOR [db.]job;
//! SHOW [ALL] ROUTINE LOAD [FOR [db.]job] [FROM db];
//! ```

use std::collections::BTreeMap;

use datafusion::sql::sqlparser::tokenizer::Token;
use serde::{Deserialize, Serialize};

use crate::table::ddl::{DdlError, Parser};

type R<T> = Result<T, DdlError>;

fn syntax<T>(msg: impl Into<String>) -> R<T> {
    Err(DdlError::Syntax(format!("You have an error in your SQL syntax: {}", msg.into())))
}

/// One entry of `COLUMNS (...)`: a field of the source data, or a column computed from them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ColumnMapping {
    Source(String),
    Derived { name: String, expr: String },
}

/// The load clauses shared by CREATE and ALTER.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadClauses {
    pub column_separator: Option<String>,
    pub row_delimiter: Option<String>,
    pub columns: Option<Vec<ColumnMapping>>,
    pub where_sql: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateLoad {
    pub db: Option<String>,
    pub name: String,
    pub table: String,
    pub clauses: LoadClauses,
    pub properties: BTreeMap<String, String>,
    pub source: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AlterLoad {
    pub db: Option<String>,
    pub name: String,
    pub clauses: LoadClauses,
    pub properties: BTreeMap<String, String>,
    pub source: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Pause,
    Resume,
    Stop,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LoadStatement {
    Create(CreateLoad),
    Alter(AlterLoad),
    Control { action: Control, db: Option<String>, name: String },
    Show { all: bool, db: Option<String>, name: Option<String> },
}

/// Parses a routine-load statement; `Ok(None)` if `sql` is not one.
pub fn parse(sql: &str) -> R<Option<LoadStatement>> {
    let mut p = Parser::new(sql)?;
    let statement = if p.eat_keywords(&["CREATE", "ROUTINE", "LOAD"]) {
        LoadStatement::Create(create(&mut p)?)
    } else if p.eat_keywords(&["ALTER", "ROUTINE", "LOAD", "FOR"]) {
        LoadStatement::Alter(alter(&mut p)?)
    } else if let Some(action) = control(&mut p) {
        if !p.eat_keywords(&["ROUTINE", "LOAD", "FOR"]) {
            return Ok(None);
        }
        let (db, name) = qualified(&mut p)?;
        LoadStatement::Control { action, db, name }
    } else if p.eat_keyword("SHOW") {
        let all = p.eat_keyword("ALL");
        if !p.eat_keywords(&["ROUTINE", "LOAD"]) {
            return Ok(None);
        }
        if p.peek_keyword("TASK") {
            return Err(DdlError::Unsupported(
                "SHOW ROUTINE LOAD TASK is not supported: SHOW ROUTINE LOAD shows the running batch".into(),
            ));
        }
        let (mut db, mut name) = (None, None);
        if p.eat_keyword("FOR") {
            let (d, n) = qualified(&mut p)?;
            db = d;
            name = Some(n);
        }
        if p.eat_keyword("FROM") || p.eat_keyword("IN") {
            db = Some(p.ident()?);
        }
        LoadStatement::Show { all, db, name }
    } else {
        return Ok(None);
    };
    p.eat(&Token::SemiColon);
    if p.peek().is_some() {
        return syntax(format!("unexpected text near {}", p.near()));
    }
    Ok(Some(statement))
}

fn control(p: &mut Parser) -> Option<Control> {
    let action = match p.keyword_at(p.pos)?.as_str() {
        "PAUSE" => Control::Pause,
        "RESUME" => Control::Resume,
        "STOP" => Control::Stop,
        _ => return None,
    };
    p.pos += 1;
    Some(action)
}

fn qualified(p: &mut Parser) -> R<(Option<String>, String)> {
    let first = p.ident()?;
    if p.eat(&Token::Period) {
        Ok((Some(first), p.ident()?))
    } else {
        Ok((None, first))
    }
}

fn create(p: &mut Parser) -> R<CreateLoad> {
    let (db, name) = qualified(p)?;
    if !p.eat_keyword("ON") {
        return syntax(format!("expected ON <table> near {}", p.near()));
    }
    let table = p.ident()?;
    let clauses = load_clauses(p)?;
    let properties = if p.eat_keyword("PROPERTIES") { property_list(p)? } else { BTreeMap::new() };
    if !p.eat_keywords(&["FROM", "KAFKA"]) {
        return syntax(format!("expected FROM KAFKA (...) near {}", p.near()));
    }
    let source = property_list(p)?;
    Ok(CreateLoad { db, name, table, clauses, properties, source })
}

fn alter(p: &mut Parser) -> R<AlterLoad> {
    let (db, name) = qualified(p)?;
    let clauses = load_clauses(p)?;
    let properties = if p.eat_keyword("PROPERTIES") { property_list(p)? } else { BTreeMap::new() };
    let source = if p.eat_keywords(&["FROM", "KAFKA"]) { property_list(p)? } else { BTreeMap::new() };
    Ok(AlterLoad { db, name, clauses, properties, source })
}

/// `COLUMNS TERMINATED BY`, `ROWS TERMINATED BY`, `COLUMNS (...)`, `WHERE ...`,
/// `PARTITION (...)` (accepted, no effect), separated by commas, in any order.
fn load_clauses(p: &mut Parser) -> R<LoadClauses> {
    let mut c = LoadClauses::default();
    loop {
        if p.eat_keywords(&["COLUMNS", "TERMINATED", "BY"]) {
            c.column_separator = Some(separator(p)?);
        } else if p.eat_keywords(&["ROWS", "TERMINATED", "BY"]) {
            c.row_delimiter = Some(separator(p)?);
        } else if p.eat_keyword("COLUMNS") {
            c.columns = Some(column_list(p)?);
        } else if p.eat_keyword("WHERE") {
            let end = clause_end(p);
            let text = p.text_until(end);
            if text.is_empty() {
                return syntax("WHERE needs a condition");
            }
            c.where_sql = Some(text);
            p.pos = end;
        } else if p.eat_keyword("PARTITION") || p.eat_keywords(&["TEMPORARY", "PARTITION"]) {
            p.skip_balanced();
        } else {
            return Ok(c);
        }
        if !p.eat(&Token::Comma) {
            return Ok(c);
        }
    }
}

/// A separator literal with `\t`, `\n` and `\x01`-style escapes resolved.
fn separator(p: &mut Parser) -> R<String> {
    let raw = p.string()?;
    let sep = unescape(&raw);
    if sep.is_empty() {
        return syntax("a separator cannot be empty");
    }
    Ok(sep)
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('x') => {
                let hex: String = chars.by_ref().take(2).collect();
                match u8::from_str_radix(&hex, 16) {
                    Ok(b) => out.push(b as char),
                    Err(_) => out.push_str(&format!("\\x{hex}")),
                }
            }
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// Position of the token ending a clause: a comma at depth 0, `PROPERTIES`, `FROM KAFKA`, or
/// the end.
fn clause_end(p: &Parser) -> usize {
    let mut depth = 0i32;
    let mut i = p.pos;
    while let Some((t, _)) = p.tokens.get(i) {
        match t {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            Token::Comma | Token::SemiColon if depth == 0 => return i,
            _ if depth == 0
                && (p.keyword_at(i).as_deref() == Some("PROPERTIES")
                    || (p.keyword_at(i).as_deref() == Some("FROM")
                        && p.keyword_at(i + 1).as_deref() == Some("KAFKA"))) =>
            {
                return i
            }
            _ => {}
        }
        i += 1;
    }
    i
}

fn column_list(p: &mut Parser) -> R<Vec<ColumnMapping>> {
    p.expect(&Token::LParen)?;
    let mut out = Vec::new();
    loop {
        let name = p.ident()?;
        if p.eat(&Token::Eq) {
            // The expression runs to the next comma (or the closing parenthesis) at depth 0.
            let mut depth = 0i32;
            let mut end = p.pos;
            while let Some((t, _)) = p.tokens.get(end) {
                match t {
                    Token::LParen => depth += 1,
                    Token::RParen if depth == 0 => break,
                    Token::RParen => depth -= 1,
                    Token::Comma if depth == 0 => break,
                    _ => {}
                }
                end += 1;
            }
            let expr = p.text_until(end);
            if expr.is_empty() {
                return syntax(format!("column {name} = needs an expression"));
            }
            p.pos = end;
            out.push(ColumnMapping::Derived { name, expr });
        } else {
            out.push(ColumnMapping::Source(name));
        }
        if p.eat(&Token::RParen) {
            break;
        }
        p.expect(&Token::Comma)?;
    }
    Ok(out)
}

/// `("key" = "value", ...)`; keys are lowercased.
fn property_list(p: &mut Parser) -> R<BTreeMap<String, String>> {
    p.expect(&Token::LParen)?;
    let mut out = BTreeMap::new();
    if p.eat(&Token::RParen) {
        return Ok(out);
    }
    loop {
        let key = p.string()?.trim().to_ascii_lowercase();
        p.expect(&Token::Eq)?;
        let value = match p.next() {
            Some(Token::SingleQuotedString(s) | Token::DoubleQuotedString(s)) => s,
            Some(Token::Number(n, _)) => n,
            _ => {
                p.pos -= 1;
                return syntax(format!("expected a quoted value for \"{key}\" near {}", p.near()));
            }
        };
        if out.insert(key.clone(), value).is_some() {
            return syntax(format!("property \"{key}\" is given twice"));
        }
        if p.eat(&Token::RParen) {
            return Ok(out);
        }
        p.expect(&Token::Comma)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starrocks_create_routine_load() {
        let sql = r#"CREATE ROUTINE LOAD shop.orders_load ON orders
            COLUMNS TERMINATED BY '\t',
            COLUMNS (id, amount_cents, amount = amount_cents / 100.0, ts, __op = if(deleted, 1, 0)),
            WHERE amount > 0 AND (ts IS NOT NULL)
            PROPERTIES ("format" = "csv", "max_batch_interval" = "0.2", "desired_concurrent_number" = 2)
            FROM KAFKA ("kafka_broker_list" = "127.0.0.1:9092", "kafka_topic" = "orders",
                        "property.group.id" = "g1");"#;
        let Some(LoadStatement::Create(c)) = parse(sql).unwrap() else { panic!() };
        assert_eq!((c.db.as_deref(), c.name.as_str(), c.table.as_str()), (Some("shop"), "orders_load", "orders"));
        assert_eq!(c.clauses.column_separator.as_deref(), Some("\t"));
        let cols = c.clauses.columns.unwrap();
        assert_eq!(cols.len(), 5);
        assert_eq!(cols[2], ColumnMapping::Derived { name: "amount".into(), expr: "amount_cents / 100.0".into() });
        assert_eq!(cols[4], ColumnMapping::Derived { name: "__op".into(), expr: "if(deleted, 1, 0)".into() });
        assert_eq!(c.clauses.where_sql.as_deref(), Some("amount > 0 AND (ts IS NOT NULL)"));
        assert_eq!(c.properties["max_batch_interval"], "0.2");
        assert_eq!(c.properties["desired_concurrent_number"], "2");
        assert_eq!(c.source["kafka_topic"], "orders");
        assert_eq!(c.source["property.group.id"], "g1");
    }

    #[test]
    fn control_show_and_alter() {
        assert_eq!(
            parse("PAUSE ROUTINE LOAD FOR db1.job1").unwrap(),
            Some(LoadStatement::Control { action: Control::Pause, db: Some("db1".into()), name: "job1".into() })
        );
        assert_eq!(
            parse("stop routine load for job1;").unwrap(),
            Some(LoadStatement::Control { action: Control::Stop, db: None, name: "job1".into() })
        );
        assert_eq!(
            parse("SHOW ALL ROUTINE LOAD FOR job1 FROM db2").unwrap(),
            Some(LoadStatement::Show { all: true, db: Some("db2".into()), name: Some("job1".into()) })
        );
        assert_eq!(parse("SHOW ROUTINE LOAD").unwrap(), Some(LoadStatement::Show { all: false, db: None, name: None }));
        let Some(LoadStatement::Alter(a)) =
            parse(r#"ALTER ROUTINE LOAD FOR j WHERE x > 1 PROPERTIES ("max_error_number" = "10")"#).unwrap()
        else {
            panic!()
        };
        assert_eq!(a.clauses.where_sql.as_deref(), Some("x > 1"));
        assert_eq!(a.properties["max_error_number"], "10");
        assert!(a.source.is_empty());
        assert_eq!(parse("SELECT 1").unwrap(), None);
        assert_eq!(parse("SHOW TABLES").unwrap(), None);
    }

    #[test]
    fn mistakes_are_syntax_errors() {
        for sql in [
            "CREATE ROUTINE LOAD j orders FROM KAFKA ()",
            "CREATE ROUTINE LOAD j ON orders PROPERTIES (\"a\" = \"1\")",
            "CREATE ROUTINE LOAD j ON orders FROM KAFKA (\"a\" = \"1\", \"a\" = \"2\")",
            "CREATE ROUTINE LOAD j ON orders COLUMNS (a = ) FROM KAFKA ()",
            "CREATE ROUTINE LOAD j ON orders FROM KAFKA (kafka_topic = \"t\")",
            "PAUSE ROUTINE LOAD FOR j extra",
        ] {
            assert!(matches!(parse(sql), Err(DdlError::Syntax(_))), "{sql}");
        }
    }
}
