//! `SHOW CREATE TABLE`, `DESCRIBE` and `SHOW [FULL] COLUMNS`, from a table's definition.

use crate::table::types::SqlType;
use crate::table::{KeyModel, TableMeta};

fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

fn quote_str(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The statement that recreates the table. MySQL's layout (so SQLAlchemy and other tools
/// reflect it: columns one per line, `PRIMARY KEY` inside the parentheses), followed by the
/// StarRocks clauses this product also accepts.
pub(super) fn create_table(meta: &TableMeta) -> String {
    let mut lines = Vec::new();
    for c in &meta.def.columns {
        let ty = SqlType::parse(&c.sql_type).map(|t| t.column_type()).unwrap_or_else(|_| c.sql_type.clone());
        let mut line = format!("  {} {ty}", quote_ident(&c.name));
        if !c.nullable {
            line.push_str(" NOT NULL");
        }
        match &c.default {
            Some(d) => line.push_str(&format!(" DEFAULT {d}")),
            None if c.nullable => line.push_str(" DEFAULT NULL"),
            None => {}
        }
        if !c.comment.is_empty() {
            line.push_str(&format!(" COMMENT {}", quote_str(&c.comment)));
        }
        lines.push(line);
    }
    let keys = meta.def.keys.iter().map(|k| quote_ident(k)).collect::<Vec<_>>().join(",");
    if meta.def.model == KeyModel::Primary {
        lines.push(format!("  PRIMARY KEY ({keys})"));
    }
    let mut out = format!("CREATE TABLE {} (\n{}\n) ENGINE=OLAP", quote_ident(&meta.name), lines.join(",\n"));
    if !meta.def.comment.is_empty() {
        out.push_str(&format!(" COMMENT={}", quote_str(&meta.def.comment)));
    }
    if meta.def.model == KeyModel::Duplicate && !meta.def.keys.is_empty() {
        out.push_str(&format!("\nDUPLICATE KEY({keys})"));
    }
    if let Some(d) = &meta.def.distribution {
        out.push('\n');
        out.push_str(d);
    }
    if !meta.def.properties.is_empty() {
        let props: Vec<String> = meta
            .def
            .properties
            .iter()
            .map(|(k, v)| format!("\"{}\" = \"{}\"", k.replace('"', "\\\""), v.replace('"', "\\\"")))
            .collect();
        out.push_str(&format!("\nPROPERTIES (\n{}\n)", props.join(",\n")));
    }
    out
}

/// `DESCRIBE` rows: Field, Type, Null, Key, Default, Extra (plus Collation, Privileges and
/// Comment for SHOW FULL COLUMNS).
pub(super) fn columns(meta: &TableMeta, full: bool) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let names = if full {
        vec!["Field", "Type", "Collation", "Null", "Key", "Default", "Extra", "Privileges", "Comment"]
    } else {
        vec!["Field", "Type", "Null", "Key", "Default", "Extra"]
    };
    let rows = meta
        .def
        .columns
        .iter()
        .map(|c| {
            let ty = SqlType::parse(&c.sql_type).ok();
            let key = if meta.def.keys.iter().any(|k| k == &c.name) {
                if meta.def.model == KeyModel::Primary {
                    "PRI"
                } else {
                    "DUP"
                }
            } else {
                ""
            };
            let null = if c.nullable { "YES" } else { "NO" }.to_string();
            let default = c.default.clone().unwrap_or_else(|| "NULL".into());
            let type_text = ty.as_ref().map(SqlType::column_type).unwrap_or_else(|| c.sql_type.clone());
            if full {
                let collation = match ty.as_ref().map(|t| t.arrow()) {
                    Some(Ok(arrow_schema::DataType::Utf8)) => "utf8mb4_general_ci".to_string(),
                    _ => "NULL".to_string(),
                };
                vec![
                    c.name.clone(),
                    type_text,
                    collation,
                    null,
                    key.into(),
                    default,
                    String::new(),
                    "select,insert,update".into(),
                    c.comment.clone(),
                ]
            } else {
                vec![c.name.clone(), type_text, null, key.into(), default, String::new()]
            }
        })
        .collect();
    (names, rows)
}
