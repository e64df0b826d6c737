//! The engine through the MySQL protocol with a real client (pymysql): databases, tables,
//! inserts, multi-way joins, aggregation, windows, CTEs, and MySQL error codes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use automq_warehouse::engine::Engine;
use automq_warehouse::mysql::server::{serve, ServerConfig, Session};

async fn start() -> u16 {
    let engine = Engine::in_memory("").await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let ids = Arc::new(AtomicU32::new(1));
    tokio::spawn(async move {
        loop {
            let (stream, peer) = listener.accept().await.unwrap();
            let session = Session {
                connection_id: ids.fetch_add(1, Ordering::Relaxed),
                client_host: peer.ip().to_string(),
                ..Default::default()
            };
            let engine = engine.clone();
            tokio::spawn(async move {
                let _ = serve(stream, engine, session, &ServerConfig::default()).await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_through_pymysql() {
    let port = start().await;
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg("-c")
            .arg(
                r#"
import sys, pymysql
c = pymysql.connect(host="127.0.0.1", port=int(sys.argv[1]), user="root", password="", autocommit=True)
cur = c.cursor()
cur.execute("CREATE DATABASE shop")
try:
    cur.execute("CREATE DATABASE shop"); raise SystemExit("no error")
except pymysql.err.MySQLError as e:
    assert e.args[0] == 1007, e.args
cur.execute("USE shop")
cur.execute("CREATE TABLE merchants (id BIGINT, name VARCHAR(50))")
cur.execute("CREATE TABLE sales (id BIGINT, merchant_id BIGINT, amount DOUBLE)")
assert cur.execute("INSERT INTO merchants VALUES (1, 'alpha'), (2, 'beta'), (3, 'gamma')") == 3
cur.execute("INSERT INTO sales VALUES (1, 1, 10.5), (2, 1, 4.5), (3, 2, 7.0), (4, 3, 1.0)")
cur.execute("SHOW TABLES")
assert [r[0] for r in cur.fetchall()] == ["merchants", "sales"]
cur.execute("SELECT m.name, SUM(s.amount) AS revenue, COUNT(*) FROM merchants m JOIN sales s ON s.merchant_id = m.id GROUP BY m.name ORDER BY revenue DESC")
assert cur.fetchall() == (("alpha", 15.0, 2), ("beta", 7.0, 1), ("gamma", 1.0, 1)), cur.fetchall()
cur.execute("SELECT name, RANK() OVER (ORDER BY id DESC) FROM merchants ORDER BY id")
assert [r[1] for r in cur.fetchall()] == [3, 2, 1]
cur.execute("WITH big AS (SELECT merchant_id FROM sales WHERE amount > 5) SELECT COUNT(DISTINCT merchant_id) FROM big")
assert cur.fetchone()[0] == 2
cur.execute("SELECT @@version_comment, DATABASE()")
cur.execute("SELECT DATABASE()"); assert cur.fetchone() == ("shop",)
for sql, code in [("SELECT * FROM nope", 1146), ("SELEC 1", 1064), ("USE missing", 1049), ("SELECT missing_column FROM sales", 1054)]:
    try:
        cur.execute(sql); raise SystemExit(f"no error for {sql}")
    except pymysql.err.MySQLError as e:
        assert e.args[0] == code, (sql, e.args)
cur.execute("SHOW DATABASES")
assert "shop" in [r[0] for r in cur.fetchall()]
# Prepared statements through the client's server-side prepare are tested elsewhere; here
# the engine binds parameters for mysql-connector-python.
import mysql.connector
c2 = mysql.connector.connect(host="127.0.0.1", port=int(sys.argv[1]), user="root", password="", database="shop", use_pure=True)
cur2 = c2.cursor(prepared=True)
cur2.execute("SELECT name FROM merchants WHERE id = ? OR name = ?", (2, "gamma"))
assert sorted(r[0] for r in cur2.fetchall()) == ["beta", "gamma"]
cur2.execute("INSERT INTO merchants VALUES (?, ?)", (4, "it's"))
cur.execute("SELECT name FROM merchants WHERE id = 4"); assert cur.fetchone() == ("it's",)
print("ok")
"#,
            )
            .arg(port.to_string())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
}
