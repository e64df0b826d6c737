//! Driver and tool probes answered outside the planner: `SELECT @@version`, `SET NAMES`,
//! `SHOW VARIABLES`, `SELECT DATABASE()`, `SHOW WARNINGS` ... what the mysql CLI, pymysql,
//! mysql-connector-python and SQLAlchemy send when they connect.

use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use futures::stream;

use crate::mysql::server::{Response, Session, SERVER_VERSION};

/// Server variables reported to clients.
pub fn variable(name: &str, session: &Session) -> Option<String> {
    let name =
        name.trim_start_matches("@@").trim_start_matches("session.").trim_start_matches("global.").to_ascii_lowercase();
    Some(match name.as_str() {
        "version" => SERVER_VERSION.to_string(),
        "version_comment" => "AutoMQ-rs query node".to_string(),
        "max_allowed_packet" => (64 << 20).to_string(),
        "character_set_client"
        | "character_set_connection"
        | "character_set_results"
        | "character_set_server"
        | "character_set_database" => "utf8mb4".to_string(),
        "collation_connection" | "collation_server" | "collation_database" => "utf8mb4_general_ci".to_string(),
        "sql_mode" => "ONLY_FULL_GROUP_BY,STRICT_TRANS_TABLES".to_string(),
        "autocommit" => "1".to_string(),
        "transaction_isolation" | "tx_isolation" => "REPEATABLE-READ".to_string(),
        "lower_case_table_names" => "0".to_string(),
        "time_zone" | "system_time_zone" => "UTC".to_string(),
        "wait_timeout" | "interactive_timeout" => "28800".to_string(),
        "net_write_timeout" => "60".to_string(),
        "license" => "Apache-2.0".to_string(),
        "init_connect" => String::new(),
        "performance_schema" => "0".to_string(),
        "tx_read_only" | "transaction_read_only" => "0".to_string(),
        "query_cache_size" | "query_cache_type" => "0".to_string(),
        "auto_increment_increment" => "1".to_string(),
        "default_storage_engine" => "OLAP".to_string(),
        "hostname" => "automq".to_string(),
        "port" => "9030".to_string(),
        "connection_id" => session.connection_id.to_string(),
        _ => return None,
    })
}

fn one_row(columns: Vec<(String, ArrayRef)>) -> Response {
    let fields: Vec<Field> = columns.iter().map(|(n, a)| Field::new(n, a.data_type().clone(), true)).collect();
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), columns.into_iter().map(|(_, a)| a).collect());
    match batch {
        Ok(batch) => Response::Rows { schema, table: String::new(), batches: Box::pin(stream::iter([Ok(batch)])) },
        Err(_) => Response::ok(),
    }
}

fn text_rows(names: &[&str], rows: Vec<Vec<String>>) -> Response {
    let fields: Vec<Field> = names.iter().map(|n| Field::new(*n, DataType::Utf8, true)).collect();
    let schema = Arc::new(Schema::new(fields));
    let columns: Vec<ArrayRef> = (0..names.len())
        .map(|c| Arc::new(StringArray::from(rows.iter().map(|r| r[c].clone()).collect::<Vec<_>>())) as ArrayRef)
        .collect();
    match RecordBatch::try_new(schema.clone(), columns) {
        Ok(batch) => Response::Rows { schema, table: String::new(), batches: Box::pin(stream::iter([Ok(batch)])) },
        Err(_) => Response::ok(),
    }
}

/// Answers `sql` if it is a probe; `None` otherwise.
pub fn answer(sql: &str, session: &Session) -> Option<Response> {
    let trimmed = sql.trim().trim_end_matches(';').trim();
    let lower = trimmed.to_ascii_lowercase();
    // SET of session variables and character sets: accepted (nothing depends on them yet).
    if lower.starts_with("set ") {
        return Some(Response::ok());
    }
    if lower == "select database()" || lower == "select schema()" {
        let db = session.database.clone();
        return Some(one_row(vec![("DATABASE()".into(), Arc::new(StringArray::from(vec![db])) as ArrayRef)]));
    }
    if lower == "select connection_id()" {
        return Some(one_row(vec![(
            "CONNECTION_ID()".into(),
            Arc::new(Int64Array::from(vec![session.connection_id as i64])) as ArrayRef,
        )]));
    }
    if lower == "select current_user()" || lower == "select user()" {
        let user = format!("{}@{}", session.user, session.client_host);
        return Some(one_row(vec![(trimmed[7..].to_string(), Arc::new(StringArray::from(vec![user])) as ArrayRef)]));
    }
    if lower == "select version()" {
        return Some(one_row(vec![(
            "VERSION()".into(),
            Arc::new(StringArray::from(vec![SERVER_VERSION])) as ArrayRef,
        )]));
    }
    // SELECT @@a, @@b AS x ... [LIMIT n] (only variables; the mysql CLI adds LIMIT 1)
    if let Some(rest) = lower.strip_prefix("select ") {
        let list = match rest.rfind(" limit ") {
            Some(i) if rest[i + 7..].trim().chars().all(|c| c.is_ascii_digit()) => &trimmed[7..7 + i],
            _ => &trimmed[7..],
        };
        let items: Vec<&str> = list.split(',').map(str::trim).collect();
        if !items.is_empty() && items.iter().all(|i| i.starts_with("@@")) && !rest.contains(" from ") {
            let mut columns = Vec::new();
            for item in items {
                let (expr, alias) = match item.to_ascii_lowercase().find(" as ") {
                    Some(i) => (&item[..i], item[i + 4..].trim().trim_matches('`').to_string()),
                    None => (item, item.to_string()),
                };
                let value = variable(expr, session);
                columns.push((alias, Arc::new(StringArray::from(vec![value])) as ArrayRef));
            }
            return Some(one_row(columns));
        }
    }
    if lower.starts_with("show variables")
        || lower.starts_with("show session variables")
        || lower.starts_with("show global variables")
    {
        let pattern = lower.split(" like ").nth(1).map(|p| p.trim().trim_matches('\'').trim_matches('"').to_string());
        let names = [
            "version",
            "version_comment",
            "max_allowed_packet",
            "character_set_client",
            "character_set_connection",
            "character_set_results",
            "character_set_server",
            "collation_connection",
            "collation_server",
            "sql_mode",
            "autocommit",
            "transaction_isolation",
            "lower_case_table_names",
            "time_zone",
            "system_time_zone",
            "wait_timeout",
            "interactive_timeout",
            "license",
            "init_connect",
            "performance_schema",
            "auto_increment_increment",
        ];
        let rows = names
            .iter()
            .filter(|n| pattern.as_deref().is_none_or(|p| like(n, p)))
            .map(|n| vec![n.to_string(), variable(n, session).unwrap_or_default()])
            .collect();
        return Some(text_rows(&["Variable_name", "Value"], rows));
    }
    if lower.starts_with("show status") || lower.starts_with("show session status") {
        // The status variables clients read to see whether their connection is encrypted.
        let pattern = lower.split(" like ").nth(1).map(|p| p.trim().trim_matches('\'').trim_matches('"').to_string());
        let tls = session.tls.as_ref();
        let rows = [
            ("Ssl_cipher", tls.map(|t| t.cipher.clone()).unwrap_or_default()),
            ("Ssl_version", tls.map(|t| t.version.clone()).unwrap_or_default()),
        ]
        .into_iter()
        .filter(|(name, _)| pattern.as_deref().is_none_or(|p| like(name, p)))
        .map(|(name, value)| vec![name.to_string(), value])
        .collect();
        return Some(text_rows(&["Variable_name", "Value"], rows));
    }
    if lower.starts_with("show warnings") || lower.starts_with("show errors") {
        return Some(text_rows(&["Level", "Code", "Message"], Vec::new()));
    }
    if lower.starts_with("show collation") {
        return Some(text_rows(
            &["Collation", "Charset", "Id", "Default", "Compiled", "Sortlen"],
            vec![vec![
                "utf8mb4_general_ci".into(),
                "utf8mb4".into(),
                "45".into(),
                "Yes".into(),
                "Yes".into(),
                "1".into(),
            ]],
        ));
    }
    if lower.starts_with("show character set") || lower.starts_with("show charset") {
        return Some(text_rows(
            &["Charset", "Description", "Default collation", "Maxlen"],
            vec![vec!["utf8mb4".into(), "UTF-8 Unicode".into(), "utf8mb4_general_ci".into(), "4".into()]],
        ));
    }
    if lower.starts_with("show engines") {
        return Some(text_rows(
            &["Engine", "Support", "Comment", "Transactions", "XA", "Savepoints"],
            vec![vec![
                "OLAP".into(),
                "DEFAULT".into(),
                "Columnar tables on object storage".into(),
                "NO".into(),
                "NO".into(),
                "NO".into(),
            ]],
        ));
    }
    // Transactions: statements are atomic on their own; explicit ones are accepted as no-ops.
    if matches!(lower.as_str(), "begin" | "start transaction" | "commit" | "rollback") {
        return Some(Response::ok());
    }
    None
}

/// Replaces `@@variables` and session functions (`DATABASE()`, `USER()`, `VERSION()`, ...)
/// outside quotes with string literals, so statements mixing them with anything else plan.
pub fn substitute_session_values(sql: &str, session: &Session) -> String {
    let functions: [(&str, String); 7] = [
        ("database()", session.database.clone().map(|d| quote(&d)).unwrap_or_else(|| "NULL".into())),
        ("schema()", session.database.clone().map(|d| quote(&d)).unwrap_or_else(|| "NULL".into())),
        ("version()", quote(SERVER_VERSION)),
        ("connection_id()", session.connection_id.to_string()),
        ("current_user()", quote(&format!("{}@{}", session.user, session.client_host))),
        ("session_user()", quote(&format!("{}@{}", session.user, session.client_host))),
        ("user()", quote(&format!("{}@{}", session.user, session.client_host))),
    ];
    let bytes = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let mut i = 0;
    let mut quote_char: Option<u8> = None;
    while i < bytes.len() {
        let c = bytes[i];
        if let Some(q) = quote_char {
            out.push(c as char);
            if c == q {
                quote_char = None;
            }
            i += 1;
            continue;
        }
        if matches!(c, b'\'' | b'"' | b'`') {
            quote_char = Some(c);
            out.push(c as char);
            i += 1;
            continue;
        }
        if c == b'@' && bytes.get(i + 1) == Some(&b'@') {
            let end = (i + 2..bytes.len())
                .find(|&j| !(bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_' || bytes[j] == b'.'))
                .unwrap_or(bytes.len());
            let name = &sql[i..end];
            out.push_str(&variable(name, session).map(|v| quote(&v)).unwrap_or_else(|| "NULL".into()));
            i = end;
            continue;
        }
        let rest = sql[i..].to_ascii_lowercase();
        let boundary = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if boundary {
            if let Some((f, v)) = functions.iter().find(|(f, _)| rest.starts_with(f)) {
                out.push_str(v);
                i += f.len();
                continue;
            }
        }
        // Copy one whole character (multi-byte safe).
        let ch = sql[i..].chars().next().unwrap_or(' ');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// SQL LIKE with `%` and `_` (case-insensitive).
pub fn like(value: &str, pattern: &str) -> bool {
    fn go(v: &[u8], p: &[u8]) -> bool {
        match p.split_first() {
            None => v.is_empty(),
            Some((b'%', rest)) => (0..=v.len()).any(|i| go(&v[i..], rest)),
            Some((b'_', rest)) => !v.is_empty() && go(&v[1..], rest),
            Some((c, rest)) => v.first().is_some_and(|x| x.eq_ignore_ascii_case(c)) && go(&v[1..], rest),
        }
    }
    go(value.as_bytes(), pattern.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_values_are_substituted_outside_quotes() {
        let s = Session { database: Some("shop".into()), connection_id: 7, ..Default::default() };
        assert_eq!(
            substitute_session_values("SELECT @@version_comment, DATABASE(), 'DATABASE()'", &s),
            "SELECT 'AutoMQ-rs query node', 'shop', 'DATABASE()'"
        );
        assert_eq!(substitute_session_values("select connection_id(), mydatabase()", &s), "select 7, mydatabase()");
        assert!(answer("select @@version_comment limit 1", &s).is_some());
    }

    #[tokio::test]
    async fn ssl_status_tells_whether_the_connection_is_encrypted() {
        use futures::TryStreamExt;
        let status = |s: &Session| {
            let Some(Response::Rows { batches, .. }) = answer("SHOW SESSION STATUS LIKE 'Ssl_cipher'", s) else {
                panic!("SHOW STATUS is answered")
            };
            batches
        };
        let tls =
            crate::mysql::server::TlsSession { version: "TLSv1.3".into(), cipher: "TLS13_AES_128_GCM_SHA256".into() };
        let s = Session { tls: Some(tls), ..Default::default() };
        let batches: Vec<RecordBatch> = status(&s).try_collect().await.unwrap();
        let value = batches[0].column(1).as_any().downcast_ref::<StringArray>().unwrap().value(0).to_string();
        assert_eq!(value, "TLS13_AES_128_GCM_SHA256");
        let batches: Vec<RecordBatch> = status(&Session::default()).try_collect().await.unwrap();
        let value = batches[0].column(1).as_any().downcast_ref::<StringArray>().unwrap().value(0).to_string();
        assert_eq!(value, "", "plaintext: empty, as in MySQL");
    }

    #[test]
    fn like_matches_sql_patterns() {
        assert!(like("character_set_client", "character_set_%"));
        assert!(like("sql_mode", "SQL_MOD_"));
        assert!(!like("version", "ver"));
    }
}
