//! `CREATE TABLE` in MySQL's and StarRocks's dialects: column definitions, `PRIMARY KEY`,
//! `DUPLICATE KEY(...)`, `DISTRIBUTED BY`, `PARTITION BY`, `PROPERTIES(...)`, `AS SELECT`.
//!
//! sqlparser knows MySQL's form but not StarRocks's clauses, so this is a small parser over
//! sqlparser's tokens. Clauses that only tune physical layout in StarRocks (buckets, partitions,
//! replication) are accepted and kept for `SHOW CREATE TABLE`; their effect here is nil.

use std::collections::BTreeMap;

use datafusion::sql::sqlparser::dialect::MySqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use serde::{Deserialize, Serialize};

use super::types::SqlType;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnDef {
    pub name: String,
    /// Normalised SQL type (see [`SqlType`]).
    pub sql_type: String,
    pub nullable: bool,
    /// The default as a SQL literal, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub comment: String,
}

/// How rows with equal keys behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyModel {
    /// Every row is kept (StarRocks `DUPLICATE KEY`, the default).
    Duplicate,
    /// One row per key; a newer row replaces the older (upsert); DELETE and UPDATE by key.
    Primary,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableDef {
    pub columns: Vec<ColumnDef>,
    pub model: KeyModel,
    pub keys: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub comment: String,
    /// `DISTRIBUTED BY ...` as written (kept for SHOW CREATE TABLE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distribution: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateTable {
    pub database: Option<String>,
    pub name: String,
    pub if_not_exists: bool,
    pub def: TableDef,
    /// `AS <query>`: the query text; columns come from its result when none were declared.
    pub as_query: Option<String>,
}

/// A DDL error, reported to the client as a syntax error (1064) or as not supported (1235).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DdlError {
    Syntax(String),
    Unsupported(String),
}

type R<T> = Result<T, DdlError>;

fn syntax<T>(msg: impl Into<String>) -> R<T> {
    Err(DdlError::Syntax(msg.into()))
}

pub(crate) struct Parser {
    pub(crate) tokens: Vec<(Token, usize)>,
    pub(crate) pos: usize,
    sql: String,
}

/// Byte offsets of the starts of lines (1-based line numbers index this minus one).
fn line_starts(sql: &str) -> Vec<usize> {
    std::iter::once(0).chain(sql.match_indices('\n').map(|(i, _)| i + 1)).collect()
}

impl Parser {
    pub(crate) fn new(sql: &str) -> R<Parser> {
        let dialect = MySqlDialect {};
        let tokens = Tokenizer::new(&dialect, sql)
            .tokenize_with_location()
            .map_err(|e| DdlError::Syntax(format!("You have an error in your SQL syntax: {e}")))?;
        let starts = line_starts(sql);
        let tokens = tokens
            .into_iter()
            .filter(|t| !matches!(t.token, Token::Whitespace(_)))
            .map(|t| {
                let line = (t.span.start.line as usize).saturating_sub(1);
                let col = (t.span.start.column as usize).saturating_sub(1);
                let line_start = starts.get(line).copied().unwrap_or(sql.len());
                // Columns count characters; convert to a byte offset within the line.
                let offset =
                    sql[line_start..].char_indices().nth(col).map(|(i, _)| line_start + i).unwrap_or(sql.len());
                (t.token, offset)
            })
            .collect();
        Ok(Parser { tokens, pos: 0, sql: sql.to_string() })
    }

    pub(crate) fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos).map(|(t, _)| t)
    }

    pub(crate) fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).map(|(t, _)| t.clone());
        self.pos += 1;
        t
    }

    pub(crate) fn keyword_at(&self, pos: usize) -> Option<String> {
        match self.tokens.get(pos).map(|(t, _)| t) {
            Some(Token::Word(w)) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
            _ => None,
        }
    }

    pub(crate) fn peek_keyword(&self, kw: &str) -> bool {
        self.keyword_at(self.pos).as_deref() == Some(kw)
    }

    pub(crate) fn peek_keywords(&self, kws: &[&str]) -> bool {
        kws.iter().enumerate().all(|(i, kw)| self.keyword_at(self.pos + i).as_deref() == Some(*kw))
    }

    pub(crate) fn eat_keyword(&mut self, kw: &str) -> bool {
        if self.peek_keyword(kw) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    pub(crate) fn eat_keywords(&mut self, kws: &[&str]) -> bool {
        if self.peek_keywords(kws) {
            self.pos += kws.len();
            true
        } else {
            false
        }
    }

    pub(crate) fn eat(&mut self, token: &Token) -> bool {
        if self.peek() == Some(token) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    pub(crate) fn expect(&mut self, token: &Token) -> R<()> {
        if self.eat(token) {
            Ok(())
        } else {
            syntax(format!("You have an error in your SQL syntax: expected '{token}' near {}", self.near()))
        }
    }

    pub(crate) fn near(&self) -> String {
        match self.tokens.get(self.pos) {
            Some((_, offset)) => format!("'{}'", self.sql[*offset..].chars().take(40).collect::<String>()),
            None => "the end of the statement".into(),
        }
    }

    /// An identifier: unquoted ones are case-insensitive (lowercased), quoted ones kept.
    pub(crate) fn ident(&mut self) -> R<String> {
        match self.next() {
            Some(Token::Word(w)) if w.quote_style.is_some() => Ok(w.value),
            Some(Token::Word(w)) if w.keyword == Keyword::NoKeyword || !is_reserved(&w.value) => {
                Ok(w.value.to_ascii_lowercase())
            }
            _ => {
                self.pos = self.pos.saturating_sub(1);
                syntax(format!("You have an error in your SQL syntax: expected an identifier near {}", self.near()))
            }
        }
    }

    pub(crate) fn ident_list(&mut self) -> R<Vec<String>> {
        self.expect(&Token::LParen)?;
        let mut names = vec![self.ident()?];
        while self.eat(&Token::Comma) {
            names.push(self.ident()?);
        }
        self.expect(&Token::RParen)?;
        Ok(names)
    }

    pub(crate) fn string(&mut self) -> R<String> {
        match self.next() {
            Some(Token::SingleQuotedString(s) | Token::DoubleQuotedString(s)) => Ok(s),
            _ => {
                self.pos = self.pos.saturating_sub(1);
                syntax(format!("You have an error in your SQL syntax: expected a string near {}", self.near()))
            }
        }
    }

    /// The source text from the current token up to (not including) token `end`.
    pub(crate) fn text_until(&self, end: usize) -> String {
        let start = self.tokens.get(self.pos).map(|(_, o)| *o).unwrap_or(self.sql.len());
        let stop = self.tokens.get(end).map(|(_, o)| *o).unwrap_or(self.sql.len());
        self.sql[start..stop.max(start)].trim().to_string()
    }

    /// Skips one token, or a whole parenthesised group.
    pub(crate) fn skip_balanced(&mut self) {
        if self.eat(&Token::LParen) {
            let mut depth = 1;
            while depth > 0 {
                match self.next() {
                    Some(Token::LParen) => depth += 1,
                    Some(Token::RParen) => depth -= 1,
                    None => return,
                    _ => {}
                }
            }
        } else {
            self.pos += 1;
        }
    }
}

fn is_reserved(word: &str) -> bool {
    matches!(
        word.to_ascii_uppercase().as_str(),
        "PRIMARY" | "KEY" | "UNIQUE" | "INDEX" | "CONSTRAINT" | "NOT" | "NULL" | "DEFAULT" | "AS" | "SELECT"
    )
}

const TABLE_CLAUSES: &[&str] = &[
    "ENGINE",
    "DUPLICATE",
    "PRIMARY",
    "UNIQUE",
    "AGGREGATE",
    "COMMENT",
    "PARTITION",
    "DISTRIBUTED",
    "ORDER",
    "PROPERTIES",
    "AS",
    "DEFAULT",
    "CHARSET",
    "CHARACTER",
    "COLLATE",
];

/// Parses `CREATE TABLE ...`. Returns `None` if the statement is not a CREATE TABLE.
pub fn parse_create_table(sql: &str) -> R<Option<CreateTable>> {
    let mut p = Parser::new(sql)?;
    if !p.eat_keyword("CREATE") {
        return Ok(None);
    }
    if p.peek_keyword("EXTERNAL") || p.peek_keyword("TEMPORARY") {
        return Err(DdlError::Unsupported("only ordinary tables can be created".into()));
    }
    if !p.eat_keyword("TABLE") {
        return Ok(None);
    }
    let if_not_exists = p.eat_keywords(&["IF", "NOT", "EXISTS"]);
    let mut name = p.ident()?;
    let mut database = None;
    if p.eat(&Token::Period) {
        database = Some(name);
        name = p.ident()?;
    }
    let mut def = TableDef {
        columns: Vec::new(),
        model: KeyModel::Duplicate,
        keys: Vec::new(),
        comment: String::new(),
        distribution: None,
        properties: BTreeMap::new(),
    };
    let mut inline_primary: Option<Vec<String>> = None;
    if p.eat(&Token::LParen) {
        loop {
            parse_element(&mut p, &mut def, &mut inline_primary)?;
            if p.eat(&Token::Comma) {
                continue;
            }
            p.expect(&Token::RParen)?;
            break;
        }
    }
    let mut declared_model: Option<(KeyModel, Vec<String>)> = None;
    let mut as_query = None;
    while let Some(token) = p.peek().cloned() {
        if token == Token::SemiColon {
            p.pos += 1;
            continue;
        }
        if p.eat_keyword("ENGINE") {
            p.eat(&Token::Eq);
            p.ident()?;
        } else if p.eat_keywords(&["DUPLICATE", "KEY"]) {
            declared_model = Some((KeyModel::Duplicate, p.ident_list()?));
        } else if p.eat_keywords(&["PRIMARY", "KEY"]) || p.eat_keywords(&["UNIQUE", "KEY"]) {
            declared_model = Some((KeyModel::Primary, p.ident_list()?));
        } else if p.peek_keywords(&["AGGREGATE", "KEY"]) {
            return Err(DdlError::Unsupported(
                "AGGREGATE KEY tables are not supported; use DUPLICATE KEY or PRIMARY KEY".into(),
            ));
        } else if p.eat_keyword("COMMENT") {
            p.eat(&Token::Eq);
            def.comment = p.string()?;
        } else if p.eat_keywords(&["PARTITION", "BY"]) {
            // Partitioning only prunes in StarRocks; segment statistics do that here.
            while p.peek().is_some() && !TABLE_CLAUSES.iter().any(|kw| p.peek_keyword(kw)) {
                p.skip_balanced();
            }
        } else if p.peek_keywords(&["DISTRIBUTED", "BY"]) {
            let start = p.pos;
            p.pos += 2;
            while p.peek().is_some() && !TABLE_CLAUSES.iter().any(|kw| p.peek_keyword(kw)) {
                p.skip_balanced();
            }
            let end = p.pos;
            p.pos = start;
            def.distribution = Some(p.text_until(end));
            p.pos = end;
        } else if p.eat_keywords(&["ORDER", "BY"]) {
            p.ident_list()?;
        } else if p.eat_keyword("PROPERTIES") {
            p.expect(&Token::LParen)?;
            if !p.eat(&Token::RParen) {
                loop {
                    let key = p.string()?;
                    p.expect(&Token::Eq)?;
                    let value = p.string()?;
                    def.properties.insert(key, value);
                    if p.eat(&Token::Comma) {
                        continue;
                    }
                    p.expect(&Token::RParen)?;
                    break;
                }
            }
        } else if p.eat_keyword("DEFAULT")
            || p.peek_keyword("CHARSET")
            || p.peek_keyword("CHARACTER")
            || p.peek_keyword("COLLATE")
        {
            // MySQL table options: [DEFAULT] CHARSET|CHARACTER SET|COLLATE [=] name.
            if !p.eat_keyword("CHARSET") && !p.eat_keywords(&["CHARACTER", "SET"]) && !p.eat_keyword("COLLATE") {
                return syntax(format!("You have an error in your SQL syntax near {}", p.near()));
            }
            p.eat(&Token::Eq);
            p.next();
        } else if p.peek_keyword("AS") || p.peek_keyword("SELECT") || p.peek_keyword("WITH") {
            p.eat_keyword("AS");
            as_query = Some(p.text_until(p.tokens.len()).trim_end_matches(';').trim().to_string());
            break;
        } else {
            return syntax(format!("You have an error in your SQL syntax near {}", p.near()));
        }
    }
    match (declared_model, inline_primary) {
        (Some((model, keys)), _) => {
            def.model = model;
            def.keys = keys;
        }
        (None, Some(keys)) => {
            def.model = KeyModel::Primary;
            def.keys = keys;
        }
        (None, None) => {}
    }
    if def.columns.is_empty() && as_query.is_none() {
        return syntax("A table must have at least one column");
    }
    if !def.columns.is_empty() {
        validate(&mut def)?;
    }
    Ok(Some(CreateTable { database, name, if_not_exists, def, as_query }))
}

/// Checks keys name columns (and makes primary-key columns NOT NULL).
pub fn validate(def: &mut TableDef) -> R<()> {
    let mut seen = std::collections::HashSet::new();
    for c in &def.columns {
        if !seen.insert(c.name.to_ascii_lowercase()) {
            return Err(DdlError::Syntax(format!("Duplicate column name '{}'", c.name)));
        }
    }
    for key in &def.keys {
        let Some(column) = def.columns.iter_mut().find(|c| c.name.eq_ignore_ascii_case(key)) else {
            return Err(DdlError::Syntax(format!("Key column '{key}' doesn't exist in table")));
        };
        if def.model == KeyModel::Primary {
            column.nullable = false;
        }
    }
    if def.model == KeyModel::Primary && def.keys.is_empty() {
        return Err(DdlError::Syntax("A PRIMARY KEY table needs at least one key column".into()));
    }
    Ok(())
}

fn parse_element(p: &mut Parser, def: &mut TableDef, inline_primary: &mut Option<Vec<String>>) -> R<()> {
    if p.eat_keyword("CONSTRAINT") && !p.peek_keyword("PRIMARY") && !p.peek_keyword("UNIQUE") {
        p.ident()?;
    }
    if p.eat_keywords(&["PRIMARY", "KEY"]) {
        *inline_primary = Some(p.ident_list()?);
        return Ok(());
    }
    if p.peek_keyword("UNIQUE") || p.peek_keyword("KEY") || p.peek_keyword("INDEX") || p.peek_keyword("FOREIGN") {
        // Secondary indexes and constraints: accepted, not enforced (as in StarRocks).
        while p.peek().is_some() && p.peek() != Some(&Token::Comma) && p.peek() != Some(&Token::RParen) {
            p.skip_balanced();
        }
        return Ok(());
    }
    let name = p.ident()?;
    let base = match p.next() {
        Some(Token::Word(w)) => w.value.to_ascii_lowercase(),
        _ => return syntax(format!("You have an error in your SQL syntax: expected a type for column '{name}'")),
    };
    let mut args = Vec::new();
    if p.eat(&Token::LParen) {
        loop {
            match p.next() {
                Some(Token::Number(n, _)) => {
                    args.push(n.parse::<u32>().map_err(|_| DdlError::Syntax(format!("bad type argument {n}")))?)
                }
                _ => return syntax(format!("You have an error in your SQL syntax in the type of column '{name}'")),
            }
            if p.eat(&Token::Comma) {
                continue;
            }
            p.expect(&Token::RParen)?;
            break;
        }
    }
    let unsigned = p.eat_keyword("UNSIGNED");
    p.eat_keyword("SIGNED");
    // CHAR / VARCHAR without a length are fine; LARGEINT etc. checked by SqlType.
    let sql_type = SqlType { base, args, unsigned };
    if let Err(e) = sql_type.arrow() {
        return Err(DdlError::Unsupported(format!("{e} (column '{name}')")));
    }
    let mut column =
        ColumnDef { name, sql_type: sql_type.to_string(), nullable: true, default: None, comment: String::new() };
    loop {
        if p.eat_keywords(&["NOT", "NULL"]) {
            column.nullable = false;
        } else if p.eat_keyword("NULL") {
            column.nullable = true;
        } else if p.eat_keyword("DEFAULT") {
            let start = p.pos;
            p.skip_balanced();
            column.default = Some(p.tokens[start..p.pos].iter().map(|(t, _)| t.to_string()).collect::<String>());
        } else if p.eat_keywords(&["PRIMARY", "KEY"]) {
            *inline_primary = Some(vec![column.name.clone()]);
        } else if p.eat_keyword("KEY") || p.eat_keyword("UNIQUE") {
        } else if p.eat_keyword("COMMENT") {
            column.comment = p.string()?;
        } else if p.eat_keywords(&["CHARACTER", "SET"]) || p.eat_keyword("CHARSET") || p.eat_keyword("COLLATE") {
            p.next();
        } else if p.peek_keyword("AUTO_INCREMENT") {
            return Err(DdlError::Unsupported("AUTO_INCREMENT columns are not supported".into()));
        } else if ["SUM", "MAX", "MIN", "REPLACE", "REPLACE_IF_NOT_NULL", "HLL_UNION", "BITMAP_UNION"]
            .iter()
            .any(|kw| p.peek_keyword(kw))
        {
            return Err(DdlError::Unsupported(
                "aggregate columns (AGGREGATE KEY tables) are not supported; use DUPLICATE KEY or PRIMARY KEY".into(),
            ));
        } else {
            break;
        }
    }
    def.columns.push(column);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(sql: &str) -> CreateTable {
        parse_create_table(sql).unwrap().unwrap()
    }

    #[test]
    fn starrocks_primary_key_table() {
        let t = parse(
            "CREATE TABLE IF NOT EXISTS shop.orders (\n  id BIGINT NOT NULL COMMENT 'order id',\n  `Customer` VARCHAR(64),\n  amount DECIMAL(10, 2) DEFAULT '0',\n  ts DATETIME\n) ENGINE=OLAP PRIMARY KEY(id) COMMENT 'orders'\nPARTITION BY RANGE(ts) (PARTITION p1 VALUES LESS THAN ('2024-01-01'))\nDISTRIBUTED BY HASH(id) BUCKETS 8\nORDER BY (ts)\nPROPERTIES (\"replication_num\" = \"3\", \"enable_persistent_index\" = \"true\");",
        );
        assert_eq!((t.database.as_deref(), t.name.as_str(), t.if_not_exists), (Some("shop"), "orders", true));
        assert_eq!(t.def.model, KeyModel::Primary);
        assert_eq!(t.def.keys, ["id"]);
        let names: Vec<_> = t.def.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["id", "Customer", "amount", "ts"]);
        assert_eq!(t.def.columns[2].sql_type, "decimal(10,2)");
        assert_eq!(t.def.columns[2].default.as_deref(), Some("'0'"));
        assert_eq!(t.def.columns[0].comment, "order id");
        assert!(!t.def.columns[0].nullable);
        assert_eq!(t.def.comment, "orders");
        assert_eq!(t.def.distribution.as_deref(), Some("DISTRIBUTED BY HASH(id) BUCKETS 8"));
        assert_eq!(t.def.properties["replication_num"], "3");
    }

    #[test]
    fn mysql_forms_and_duplicate_key() {
        let t = parse("create table t (a int primary key, b text) engine=InnoDB default charset=utf8mb4");
        assert_eq!((t.def.model, t.def.keys.clone()), (KeyModel::Primary, vec!["a".to_string()]));
        let t = parse("CREATE TABLE t (a INT, b INT, PRIMARY KEY (a, b), KEY idx_b (b))");
        assert_eq!(t.def.keys, ["a", "b"]);
        let t = parse("CREATE TABLE t (k1 INT, v STRING) DUPLICATE KEY(k1) DISTRIBUTED BY RANDOM");
        assert_eq!((t.def.model, t.def.keys.clone()), (KeyModel::Duplicate, vec!["k1".to_string()]));
        let t = parse("CREATE TABLE t2 AS SELECT a, b FROM t WHERE a > 1");
        assert_eq!(t.as_query.as_deref(), Some("SELECT a, b FROM t WHERE a > 1"));
        assert!(t.def.columns.is_empty());
    }

    #[test]
    fn bad_definitions_are_refused_clearly() {
        assert!(
            matches!(parse_create_table("CREATE TABLE t (a INT) PRIMARY KEY(b)"), Err(DdlError::Syntax(m)) if m.contains("'b'"))
        );
        assert!(
            matches!(parse_create_table("CREATE TABLE t (a INT, a INT)"), Err(DdlError::Syntax(m)) if m.contains("Duplicate"))
        );
        assert!(matches!(parse_create_table("CREATE TABLE t (a INT SUM)"), Err(DdlError::Unsupported(_))));
        assert!(matches!(parse_create_table("CREATE TABLE t (a GEOMETRY)"), Err(DdlError::Unsupported(_))));
        assert!(matches!(parse_create_table("CREATE TABLE t (a INT"), Err(DdlError::Syntax(_))));
        assert!(matches!(parse_create_table("CREATE TABLE t (a INT) BOGUS"), Err(DdlError::Syntax(_))));
        assert_eq!(parse_create_table("CREATE VIEW v AS SELECT 1").unwrap(), None);
    }
}
