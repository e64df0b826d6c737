//! The MySQL protocol layer against real clients (pymysql, mysql-connector-python, the mariadb
//! `mysql` CLI), with a small handler standing in for the SQL engine. The clients must be
//! installed (scripts/test.sh does it); a missing client fails the test.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use arrow_array::{Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use automq_warehouse::mysql::auth::StoredCredential;
use automq_warehouse::mysql::binary::Param;
use automq_warehouse::mysql::error::MysqlError;
use automq_warehouse::mysql::server::{serve, QueryHandler, Response, ServerConfig, Session};
use futures::stream;

struct Fake;

fn people() -> (SchemaRef, Vec<RecordBatch>) {
    let schema =
        Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false), Field::new("name", DataType::Utf8, true)]));
    let batches = (0..3)
        .map(|b| {
            let ids: Vec<i64> = (0..1000).map(|i| b * 1000 + i).collect();
            let names: Vec<Option<String>> =
                ids.iter().map(|i| if i % 10 == 0 { None } else { Some(format!("name-{i}")) }).collect();
            RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(Int64Array::from(ids)), Arc::new(StringArray::from(names))],
            )
            .unwrap()
        })
        .collect();
    (schema, batches)
}

#[async_trait]
impl QueryHandler for Fake {
    async fn credential(&self, user: &str) -> Option<StoredCredential> {
        (user == "app").then(|| StoredCredential::from_password("s3cret"))
    }

    async fn use_database(&self, session: &mut Session, database: &str) -> Result<(), MysqlError> {
        if database == "shop" {
            session.database = Some(database.to_string());
            Ok(())
        } else {
            Err(MysqlError::unknown_database(database))
        }
    }

    async fn query(&self, session: &mut Session, sql: &str) -> Result<Response, MysqlError> {
        match sql.trim().trim_end_matches(';') {
            "SELECT people" => {
                let (schema, batches) = people();
                Ok(Response::Rows {
                    schema,
                    table: "people".into(),
                    batches: Box::pin(stream::iter(batches.into_iter().map(Ok))),
                })
            }
            "SELECT DATABASE()" => {
                let schema = Arc::new(Schema::new(vec![Field::new("DATABASE()", DataType::Utf8, true)]));
                let batch = RecordBatch::try_new(
                    schema.clone(),
                    vec![Arc::new(StringArray::from(vec![session.database.clone()]))],
                )
                .unwrap();
                Ok(Response::Rows { schema, table: String::new(), batches: Box::pin(stream::iter([Ok(batch)])) })
            }
            "UPDATE t" => Ok(Response::Ok { affected_rows: 7, last_insert_id: 0, info: String::new() }),
            s if s.starts_with("SET ") || s.starts_with("set ") => Ok(Response::ok()),
            s if s.contains("@@") || s.to_ascii_uppercase().starts_with("SHOW") => {
                // Driver probes: an empty, well-formed answer.
                let schema = Arc::new(Schema::new(vec![Field::new("Value", DataType::Utf8, true)]));
                Ok(Response::Rows { schema, table: String::new(), batches: Box::pin(stream::empty()) })
            }
            other => Err(MysqlError::syntax(format!("You have an error in your SQL syntax near '{other}'"))),
        }
    }

    async fn field_list(&self, _session: &mut Session, _table: &str) -> Result<SchemaRef, MysqlError> {
        Ok(people().0)
    }

    async fn prepare(&self, _session: &mut Session, sql: &str) -> Result<usize, MysqlError> {
        if sql.starts_with("SELECT echo") || sql.starts_with("SELECT people") {
            Ok(sql.matches('?').count())
        } else {
            Err(MysqlError::syntax(format!("cannot prepare '{sql}'")))
        }
    }

    /// `SELECT echo(?, ...)` returns its parameters as one row, typed as bound; `SELECT
    /// people` returns the people table (binary rows).
    async fn execute(&self, session: &mut Session, sql: &str, params: &[Param]) -> Result<Response, MysqlError> {
        if sql.starts_with("SELECT people") {
            return self.query(session, "SELECT people").await;
        }
        let mut fields = Vec::new();
        let mut columns: Vec<arrow_array::ArrayRef> = Vec::new();
        for (i, p) in params.iter().enumerate() {
            let name = format!("p{i}");
            match p {
                // Clients bind non-negative integers as unsigned.
                Param::UInt(v) => {
                    fields.push(Field::new(name, DataType::Int64, true));
                    columns.push(Arc::new(Int64Array::from(vec![*v as i64])));
                }
                Param::Int(v) => {
                    fields.push(Field::new(name, DataType::Int64, true));
                    columns.push(Arc::new(Int64Array::from(vec![*v])));
                }
                Param::Float(v) => {
                    fields.push(Field::new(name, DataType::Float64, true));
                    columns.push(Arc::new(arrow_array::Float64Array::from(vec![*v])));
                }
                Param::Text(v) => {
                    fields.push(Field::new(name, DataType::Utf8, true));
                    columns.push(Arc::new(StringArray::from(vec![v.clone()])));
                }
                other => {
                    fields.push(Field::new(name, DataType::Utf8, true));
                    let v = match other {
                        Param::Null => None,
                        Param::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
                        _ => unreachable!(),
                    };
                    columns.push(Arc::new(StringArray::from(vec![v])));
                }
            }
        }
        let schema = Arc::new(Schema::new(fields));
        let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
        Ok(Response::Rows { schema, table: String::new(), batches: Box::pin(stream::iter([Ok(batch)])) })
    }
}

async fn start() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let ids = Arc::new(AtomicU32::new(1));
    tokio::spawn(async move {
        loop {
            let (stream, peer) = listener.accept().await.unwrap();
            let session = Session {
                connection_id: ids.fetch_add(1, Ordering::Relaxed),
                client_host: peer.ip().to_string(),
                ..Default::default()
            };
            tokio::spawn(async move {
                let _ = serve(stream, Arc::new(Fake), session, &ServerConfig::default()).await;
            });
        }
    });
    addr
}

fn python(script: &str, port: u16) -> String {
    let out = Command::new("python3").arg("-c").arg(script).arg(port.to_string()).output().expect("python3");
    assert!(
        out.status.success(),
        "client failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymysql_connects_queries_and_sees_errors() {
    let port = start().await.port();
    let out = tokio::task::spawn_blocking(move || {
        python(
            r#"
import sys, pymysql
c = pymysql.connect(host="127.0.0.1", port=int(sys.argv[1]), user="app", password="s3cret", database="shop")
cur = c.cursor()
cur.execute("SELECT people")
rows = cur.fetchall()
assert len(rows) == 3000, len(rows)
assert rows[1] == (1, "name-1") and rows[10] == (10, None), rows[:11]
assert [d[0] for d in cur.description] == ["id", "name"]
cur.execute("SELECT DATABASE()"); assert cur.fetchone() == ("shop",)
assert cur.execute("UPDATE t") == 7
try:
    cur.execute("SELEC nonsense"); raise SystemExit("no error")
except pymysql.err.ProgrammingError as e:
    assert e.args[0] == 1064, e.args
c.ping()
for bad in [dict(password="wrong"), dict(user="nobody")]:
    args = dict(host="127.0.0.1", port=int(sys.argv[1]), user="app", password="s3cret"); args.update(bad)
    try:
        pymysql.connect(**args); raise SystemExit("no error")
    except pymysql.err.OperationalError as e:
        assert e.args[0] == 1045, e.args
try:
    pymysql.connect(host="127.0.0.1", port=int(sys.argv[1]), user="app", password="s3cret", database="nope"); raise SystemExit("no error")
except pymysql.err.OperationalError as e:
    assert e.args[0] == 1049, e.args
print("ok")
"#,
            port,
        )
    })
    .await
    .unwrap();
    assert_eq!(out.trim(), "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_connector_authenticates_with_caching_sha2() {
    let port = start().await.port();
    let out = tokio::task::spawn_blocking(move || {
        python(
            r#"
import sys, mysql.connector
for plugin in ["caching_sha2_password", "mysql_native_password"]:
    c = mysql.connector.connect(host="127.0.0.1", port=int(sys.argv[1]), user="app", password="s3cret",
                                database="shop", auth_plugin=plugin, use_pure=True)
    cur = c.cursor()
    cur.execute("SELECT people")
    rows = cur.fetchall()
    assert len(rows) == 3000 and rows[2999] == (2999, "name-2999"), rows[-1]
    c.close()
try:
    mysql.connector.connect(host="127.0.0.1", port=int(sys.argv[1]), user="app", password="bad",
                            auth_plugin="caching_sha2_password", use_pure=True)
    raise SystemExit("no error")
except mysql.connector.Error as e:
    assert e.errno == 1045, e
print("ok")
"#,
            port,
        )
    })
    .await
    .unwrap();
    assert_eq!(out.trim(), "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mysql_cli_runs_a_query() {
    let port = start().await.port();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("mysql")
            .args([
                "-h",
                "127.0.0.1",
                "-P",
                &port.to_string(),
                "-u",
                "app",
                "-ps3cret",
                "--batch",
                "shop",
                "-e",
                "SELECT DATABASE()",
            ])
            .output()
            .expect("the mysql CLI (Debian package mariadb-client) must be installed")
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "DATABASE()\nshop\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_use_the_binary_protocol() {
    let port = start().await.port();
    let out = tokio::task::spawn_blocking(move || {
        python(
            r#"
import sys, datetime, mysql.connector
c = mysql.connector.connect(host="127.0.0.1", port=int(sys.argv[1]), user="app", password="s3cret", database="shop", use_pure=True)
cur = c.cursor(prepared=True)
cur.execute("SELECT echo(?, ?, ?, ?, ?)", (42, "héllo", None, 2.5, datetime.datetime(2024, 2, 29, 13, 14, 15)))
row = cur.fetchone()
assert row == (42, "héllo", None, 2.5, "2024-02-29 13:14:15"), row
cur.execute("SELECT echo(?, ?, ?, ?, ?)", (-7, "", None, -0.5, datetime.datetime(1999, 12, 31, 23, 59, 59)))
assert cur.fetchone() == (-7, "", None, -0.5, "1999-12-31 23:59:59")
cur.execute("SELECT people")
rows = cur.fetchall()
assert len(rows) == 3000 and rows[10] == (10, None) and rows[11] == (11, "name-11"), rows[:12]
try:
    cur.execute("DROP nonsense ?", (1,)); raise SystemExit("no error")
except mysql.connector.Error as e:
    assert e.errno == 1064, e
c.close()
print("ok")
"#,
            port,
        )
    })
    .await
    .unwrap();
    assert_eq!(out.trim(), "ok");
}

/// Our own client (used by `automq demo`): password authentication, result sets with NULLs,
/// OK packets, server errors, and a wrong password refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_authenticates_reads_rows_and_errors() {
    use automq_warehouse::mysql::client::{Client, ClientError, QueryResult};
    let addr = start().await.to_string();
    let mut c = Client::connect(&addr, "app", "s3cret", Some("shop")).await.unwrap();
    let QueryResult::Rows { columns, rows } = c.query("SELECT people").await.unwrap() else { panic!("no rows") };
    assert_eq!(columns, ["id", "name"]);
    assert_eq!(rows.len(), 3000);
    assert_eq!(rows[1], [Some("1".to_string()), Some("name-1".to_string())]);
    assert_eq!(rows[10], [Some("10".to_string()), None]);
    assert_eq!(c.query("SELECT DATABASE()").await.unwrap().rows(), [[Some("shop".to_string())]]);
    assert_eq!(c.query("UPDATE t").await.unwrap(), QueryResult::Ok { affected_rows: 7 });
    match c.query("SELEC nonsense").await {
        Err(ClientError::Server { code: 1064, .. }) => {}
        other => panic!("expected a syntax error, got {other:?}"),
    }
    assert_eq!(c.query("UPDATE t").await.unwrap(), QueryResult::Ok { affected_rows: 7 }, "usable after an error");
    c.quit().await;
    match Client::connect(&addr, "app", "wrong", None).await {
        Err(ClientError::Server { code: 1045, .. }) => {}
        other => panic!("expected access denied, got {other:?}"),
    }
}
