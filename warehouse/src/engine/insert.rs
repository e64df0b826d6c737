//! A fast path for `INSERT INTO t [(cols)] VALUES (...), ...` with literal values, the shape
//! bulk loaders and drivers send: the values become Arrow arrays directly (text cast to each
//! column's type) instead of going through the SQL planner, whose cost grows with the number
//! of expressions. Anything else (expressions, `INSERT ... SELECT`) returns `None` and takes
//! the general path.

use std::sync::Arc;

use arrow_array::{new_null_array, ArrayRef, RecordBatch, StringArray};
use arrow_schema::DataType;
use datafusion::arrow::compute::{cast_with_options, CastOptions};
use datafusion::sql::sqlparser::dialect::MySqlDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use crate::table::TableMeta;

/// A parsed literal INSERT.
#[derive(Debug)]
pub(super) struct LiteralInsert {
    pub(super) database: Option<String>,
    pub(super) table: String,
    pub(super) columns: Option<Vec<String>>,
    pub(super) rows: Vec<Vec<Option<String>>>,
}

fn word(t: &Token) -> Option<(String, bool)> {
    match t {
        Token::Word(w) => Some((w.value.clone(), w.quote_style.is_some())),
        _ => None,
    }
}

fn ident(t: &Token) -> Option<String> {
    word(t).map(|(v, quoted)| if quoted { v } else { v.to_ascii_lowercase() })
}

/// Parses `sql` if it is a literal INSERT; `None` otherwise.
pub(super) fn parse(sql: &str) -> Option<LiteralInsert> {
    let tokens: Vec<Token> = Tokenizer::new(&MySqlDialect {}, sql)
        .tokenize()
        .ok()?
        .into_iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect();
    let mut i = 0;
    let kw = |t: Option<&Token>, k: &str| matches!(t.and_then(word), Some((v, false)) if v.eq_ignore_ascii_case(k));
    if !kw(tokens.first(), "insert") || !kw(tokens.get(1), "into") {
        return None;
    }
    i += 2;
    let mut table = ident(tokens.get(i)?)?;
    let mut database = None;
    i += 1;
    if tokens.get(i) == Some(&Token::Period) {
        database = Some(table);
        table = ident(tokens.get(i + 1)?)?;
        i += 2;
    }
    let mut columns = None;
    if tokens.get(i) == Some(&Token::LParen) {
        let mut cols = Vec::new();
        i += 1;
        loop {
            cols.push(ident(tokens.get(i)?)?);
            i += 1;
            match tokens.get(i)? {
                Token::Comma => i += 1,
                Token::RParen => {
                    i += 1;
                    break;
                }
                _ => return None,
            }
        }
        columns = Some(cols);
    }
    if !(kw(tokens.get(i), "values") || kw(tokens.get(i), "value")) {
        return None;
    }
    i += 1;
    let mut rows = Vec::new();
    loop {
        if tokens.get(i) != Some(&Token::LParen) {
            return None;
        }
        i += 1;
        let mut row = Vec::new();
        loop {
            let mut negative = false;
            if tokens.get(i) == Some(&Token::Minus) {
                negative = true;
                i += 1;
            }
            // DATE '...' / TIMESTAMP '...' typed literals.
            if kw(tokens.get(i), "date") || kw(tokens.get(i), "timestamp") || kw(tokens.get(i), "datetime") {
                if let Some(Token::SingleQuotedString(_)) = tokens.get(i + 1) {
                    i += 1;
                }
            }
            let value = match tokens.get(i)? {
                Token::Number(n, _) => Some(if negative { format!("-{n}") } else { n.clone() }),
                Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) if !negative => Some(s.clone()),
                t if !negative && kw(Some(t), "null") => None,
                t if !negative && kw(Some(t), "true") => Some("true".into()),
                t if !negative && kw(Some(t), "false") => Some("false".into()),
                _ => return None,
            };
            row.push(value);
            i += 1;
            match tokens.get(i)? {
                Token::Comma => i += 1,
                Token::RParen => {
                    i += 1;
                    break;
                }
                _ => return None,
            }
        }
        rows.push(row);
        match tokens.get(i) {
            Some(Token::Comma) => i += 1,
            None | Some(Token::SemiColon) if tokens.len() <= i + 1 => break,
            _ => return None,
        }
    }
    Some(LiteralInsert { database, table, columns, rows })
}

/// A user-facing error: (MySQL code, message).
pub(super) type InsertError = (u16, String);

/// The rows as a batch of the table's schema (defaults and NULLs for unlisted columns).
pub(super) fn to_batch(insert: &LiteralInsert, meta: &TableMeta) -> Result<RecordBatch, InsertError> {
    let schema = meta.schema();
    let names: Vec<String> = match &insert.columns {
        Some(c) => c.clone(),
        None => meta.def.columns.iter().map(|c| c.name.clone()).collect(),
    };
    let mut positions = Vec::with_capacity(names.len());
    for name in &names {
        let Some(i) = meta.def.columns.iter().position(|c| c.name.eq_ignore_ascii_case(name)) else {
            return Err((1054, format!("Unknown column '{name}' in 'field list'")));
        };
        positions.push(i);
    }
    if let Some(bad) = insert.rows.iter().position(|r| r.len() != names.len()) {
        return Err((1136, format!("Column count doesn't match value count at row {}", bad + 1)));
    }
    let n = insert.rows.len();
    let options = CastOptions { safe: false, ..CastOptions::default() };
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for (i, field) in schema.fields().iter().enumerate() {
        let texts: StringArray = match positions.iter().position(|&p| p == i) {
            Some(k) => insert.rows.iter().map(|r| r[k].as_deref()).collect(),
            None => match meta.def.columns[i].default.as_deref() {
                Some(d) if !d.eq_ignore_ascii_case("null") && !d.to_ascii_lowercase().contains("current_timestamp") => {
                    let d = d.trim_matches('\'');
                    std::iter::repeat_n(Some(d), n).collect()
                }
                _ => {
                    columns.push(new_null_array(field.data_type(), n));
                    continue;
                }
            },
        };
        let array: ArrayRef = Arc::new(texts);
        let cast = if field.data_type() == &DataType::Utf8 {
            array
        } else {
            cast_with_options(&array, field.data_type(), &options).map_err(|e| {
                (1366, format!("Incorrect {} value for column '{}': {e}", field.data_type(), field.name()))
            })?
        };
        if !field.is_nullable() && cast.null_count() > 0 {
            return Err((1048, format!("Column '{}' cannot be null", field.name())));
        }
        columns.push(cast);
    }
    RecordBatch::try_new(schema, columns).map_err(|e| (1105, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_inserts_parse_and_others_do_not() {
        let p = parse("INSERT INTO db.t (a, `B`) VALUES (1, 'x'), (-2.5, NULL), (DATE '2024-01-01', \"q\");").unwrap();
        assert_eq!((p.database.as_deref(), p.table.as_str()), (Some("db"), "t"));
        assert_eq!(p.columns.unwrap(), ["a", "B"]);
        assert_eq!(p.rows[1], [Some("-2.5".to_string()), None]);
        assert_eq!(p.rows[2][0].as_deref(), Some("2024-01-01"));
        assert!(parse("INSERT INTO t VALUES (1 + 1)").is_none());
        assert!(parse("INSERT INTO t SELECT * FROM u").is_none());
        assert!(parse("INSERT INTO t VALUES (now())").is_none());
        assert!(parse("INSERT INTO t VALUES (1) ON DUPLICATE KEY UPDATE a = 2").is_none());
    }
}
