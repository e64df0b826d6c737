//! Users and privileges through SQL: users stored in the catalog reach other nodes and survive
//! restarts (memory, a local directory and S3), privileges are checked on every kind of
//! statement (joins, subqueries, CTEs, INSERT ... SELECT, DDL, prepared statements, the
//! mysql CLI's field list), and the account statements fail with MySQL's error codes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::sync::Arc;
use std::time::Duration;

use automq_storage::object_store::{MemoryStore, SharedStore};
use automq_warehouse::engine::Engine;
use automq_warehouse::mysql::auth::{self, StoredCredential};
use automq_warehouse::mysql::binary::Param;
use automq_warehouse::mysql::server::{QueryHandler, Response, Session};
use automq_warehouse::table::{Warehouse, WarehouseConfig};
use futures::TryStreamExt;

automq_storage::store_tests!(users_and_grants_reach_other_nodes_and_survive_restarts);

async fn node(store: &SharedStore) -> Arc<Engine> {
    let config = WarehouseConfig { refresh_interval: Duration::ZERO, ..WarehouseConfig::default() };
    let warehouse = Warehouse::open(store.clone(), config, automq_storage::clock::system()).await.unwrap();
    Engine::new(warehouse, "rootpw")
}

fn as_user(user: &str, db: Option<&str>) -> Session {
    Session { user: user.into(), database: db.map(str::to_string), ..Session::default() }
}

async fn exec(engine: &Engine, s: &mut Session, sql: &str) {
    if let Err(e) = engine.query(s, sql).await {
        panic!("{}: {sql}: {e}", s.user)
    }
}

async fn rows(engine: &Engine, s: &mut Session, sql: &str) -> Vec<Vec<String>> {
    let Response::Rows { batches, .. } = engine.query(s, sql).await.unwrap_or_else(|e| panic!("{sql}: {e}")) else {
        panic!("{sql}: expected rows")
    };
    let batches: Vec<_> = batches.try_collect().await.unwrap();
    let mut out = Vec::new();
    for b in &batches {
        for r in 0..b.num_rows() {
            out.push(
                (0..b.num_columns())
                    .map(|c| arrow_cast::display::array_value_to_string(b.column(c), r).unwrap())
                    .collect(),
            );
        }
    }
    out
}

/// The first column of every row.
async fn column(engine: &Engine, s: &mut Session, sql: &str) -> Vec<String> {
    rows(engine, s, sql).await.into_iter().map(|mut r| r.remove(0)).collect()
}

/// The error of `sql` as (code, message).
async fn refused(engine: &Engine, s: &mut Session, sql: &str) -> (u16, String) {
    match engine.query(s, sql).await {
        Err(e) => (e.code, e.message),
        Ok(_) => panic!("{}: {sql}: expected an error", s.user),
    }
}

/// Whether `password` logs `user` in on `engine` (both plugins must agree).
async fn logs_in(engine: &Engine, user: &str, password: &str) -> bool {
    let Some(stored) = engine.credential(user).await else { return false };
    let nonce = auth::nonce();
    let native = stored.verify(auth::NATIVE, &nonce, &auth::scramble(auth::NATIVE, password, &nonce));
    let sha2 = stored.verify(auth::CACHING_SHA2, &nonce, &auth::scramble(auth::CACHING_SHA2, password, &nonce));
    assert_eq!(native, sha2, "{user}: the two plugins disagree");
    native
}

async fn users_and_grants_reach_other_nodes_and_survive_restarts(store: SharedStore) {
    let a = node(&store).await;
    let b = node(&store).await;
    let mut root = as_user("root", None);
    for sql in [
        "CREATE DATABASE shop",
        "CREATE TABLE shop.orders (id BIGINT, amount DOUBLE)",
        "INSERT INTO shop.orders VALUES (1, 2.5)",
        "CREATE USER 'alice'@'%' IDENTIFIED BY 'first-pw'",
        "GRANT SELECT ON shop.* TO 'alice'@'%'",
    ] {
        exec(&a, &mut root, sql).await;
    }
    assert!(logs_in(&b, "alice", "first-pw").await, "a user created on node A logs in on node B");
    assert!(!logs_in(&b, "alice", "wrong").await);
    assert!(logs_in(&b, "root", "rootpw").await && !logs_in(&b, "root", "").await);
    let mut alice = as_user("alice", Some("shop"));
    assert_eq!(column(&b, &mut alice, "SELECT id FROM orders").await, ["1"]);
    assert_eq!(refused(&b, &mut alice, "INSERT INTO orders VALUES (2, 1.0)").await.0, 1142);

    exec(&a, &mut root, "ALTER USER 'alice' IDENTIFIED BY 'second-pw'").await;
    exec(&a, &mut root, "GRANT INSERT ON shop.orders TO alice").await;
    assert!(logs_in(&b, "alice", "second-pw").await && !logs_in(&b, "alice", "first-pw").await);
    exec(&b, &mut alice, "INSERT INTO orders VALUES (2, 1.0)").await;

    // Only the double hashes are stored.
    let stored = a.warehouse().kv_get("wh/user/alice").expect("alice is in the catalog");
    assert!(!stored.contains("second-pw") && !stored.contains("first-pw"), "{stored}");
    assert!(stored.contains(&hex(&StoredCredential::from_password("second-pw").sha256_stage2)), "{stored}");

    drop((a, b));
    let c = node(&store).await;
    assert!(logs_in(&c, "alice", "second-pw").await, "users survive a restart");
    let mut root = as_user("root", None);
    assert_eq!(
        column(&c, &mut root, "SHOW GRANTS FOR alice").await,
        [
            "GRANT USAGE ON *.* TO `alice`@`%`",
            "GRANT SELECT ON `shop`.* TO `alice`@`%`",
            "GRANT INSERT ON `shop`.`orders` TO `alice`@`%`",
        ]
    );
    assert_eq!(column(&c, &mut alice, "SELECT id FROM orders ORDER BY id").await, ["1", "2"]);
    exec(&c, &mut root, "DROP USER alice").await;
    assert!(!logs_in(&c, "alice", "second-pw").await);
    let (code, _) = refused(&c, &mut alice, "SELECT id FROM orders").await;
    assert_eq!(code, 1142, "an open session of a dropped user may do nothing");
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

async fn shop() -> (Arc<Engine>, Session) {
    let warehouse =
        Warehouse::open(Arc::new(MemoryStore::new()), WarehouseConfig::default(), automq_storage::clock::system())
            .await
            .unwrap();
    let engine = Engine::new(warehouse, "");
    let mut root = as_user("root", None);
    for sql in [
        "CREATE DATABASE shop",
        "CREATE DATABASE crm",
        "CREATE TABLE shop.orders (id BIGINT NOT NULL, customer_id BIGINT, amount DOUBLE) PRIMARY KEY (id)",
        "CREATE TABLE shop.customers (id BIGINT NOT NULL, name VARCHAR(20)) PRIMARY KEY (id)",
        "CREATE TABLE crm.leads (id BIGINT)",
        "INSERT INTO shop.orders VALUES (1, 10, 5.0), (2, 11, 7.5)",
        "INSERT INTO shop.customers VALUES (10, 'ada'), (11, 'bob')",
        "CREATE USER alice IDENTIFIED BY 'pw'",
    ] {
        exec(&engine, &mut root, sql).await;
    }
    (engine, root)
}

#[tokio::test]
async fn reads_need_select_on_every_table_a_query_touches() {
    let (engine, mut root) = shop().await;
    let mut alice = as_user("alice", None);
    assert_eq!(
        refused(&engine, &mut alice, "USE shop").await,
        (1044, "Access denied for user 'alice'@'%' to database 'shop'".into())
    );
    assert_eq!(refused(&engine, &mut alice, "USE nonexistent").await.0, 1044, "existence is not told");
    assert_eq!(column(&engine, &mut alice, "SHOW DATABASES").await, ["information_schema"]);
    assert_eq!(
        refused(&engine, &mut alice, "SELECT * FROM shop.orders").await,
        (1142, "SELECT command denied to user 'alice'@'%' for table 'orders'".into())
    );

    exec(&engine, &mut root, "GRANT SELECT ON shop.orders TO alice").await;
    // The same session: grants apply from its next statement.
    exec(&engine, &mut alice, "USE shop").await;
    assert_eq!(column(&engine, &mut alice, "SHOW DATABASES").await, ["information_schema", "shop"]);
    assert_eq!(column(&engine, &mut alice, "SHOW TABLES").await, ["orders"]);
    assert_eq!(column(&engine, &mut alice, "SELECT id FROM orders ORDER BY id").await, ["1", "2"]);
    assert_eq!(
        column(&engine, &mut alice, "SELECT table_name FROM information_schema.tables ORDER BY table_name").await,
        ["orders"]
    );
    assert_eq!(
        column(&engine, &mut alice, "SELECT schema_name FROM information_schema.schemata ORDER BY schema_name").await,
        ["information_schema", "shop"]
    );
    for sql in [
        "SELECT o.id, c.name FROM orders o JOIN customers c ON o.customer_id = c.id",
        "SELECT id FROM orders WHERE customer_id IN (SELECT id FROM customers)",
        "SELECT id, (SELECT max(name) FROM shop.customers) FROM orders",
        "SELECT id FROM orders WHERE EXISTS (SELECT 1 FROM customers c WHERE c.id = orders.customer_id)",
        "WITH c AS (SELECT id FROM customers) SELECT * FROM c",
        "SELECT id FROM orders UNION ALL SELECT id FROM customers",
        "SELECT * FROM (SELECT * FROM customers) AS t",
        "EXPLAIN SELECT * FROM customers",
    ] {
        assert_eq!(
            refused(&engine, &mut alice, sql).await,
            (1142, "SELECT command denied to user 'alice'@'%' for table 'customers'".into()),
            "{sql}"
        );
    }
    assert_eq!(refused(&engine, &mut alice, "SELECT * FROM crm.leads").await.0, 1142);
    assert_eq!(
        refused(&engine, &mut alice, "SELECT * FROM crm.nope").await.0,
        1142,
        "a missing table the user could not see anyway is denied, not reported missing"
    );
    assert_eq!(
        refused(&engine, &mut alice, "SELECT * FROM orders JOIN nope ON true").await.0,
        1142,
        "nothing granted on shop.nope"
    );
    assert_eq!(refused(&engine, &mut alice, "SHOW TABLES FROM crm").await.0, 1044);
    assert_eq!(refused(&engine, &mut alice, "DESCRIBE customers").await.0, 1142);
    assert_eq!(
        refused(&engine, &mut alice, "SHOW CREATE TABLE customers").await.1,
        "SHOW command denied to user 'alice'@'%' for table 'customers'"
    );
    assert_eq!(engine.field_list(&mut alice, "customers").await.unwrap_err().code, 1142, "COM_FIELD_LIST");
    assert!(engine.field_list(&mut alice, "orders").await.is_ok());

    // Prepared statements are refused at prepare time and again at execution.
    let e = engine.prepare(&mut alice, "SELECT name FROM customers WHERE id = ?").await.unwrap_err();
    assert_eq!(e.code, 1142);
    let sql = "SELECT amount FROM orders WHERE id = ?";
    assert_eq!(engine.prepare(&mut alice, sql).await.unwrap(), 1);
    exec(&engine, &mut root, "REVOKE SELECT ON shop.orders FROM alice").await;
    let e = engine.execute(&mut alice, sql, &[Param::Int(1)]).await.unwrap_err();
    assert_eq!(e.code, 1142, "revoked between prepare and execute");

    exec(&engine, &mut root, "GRANT SELECT ON shop.* TO alice").await;
    assert_eq!(refused(&engine, &mut alice, "SELECT * FROM nope").await.0, 1146, "visible to alice: missing");

    // Root and users with ALL on *.* see everything.
    exec(&engine, &mut root, "GRANT ALL ON *.* TO alice").await;
    assert_eq!(column(&engine, &mut alice, "SHOW DATABASES").await, ["crm", "information_schema", "shop"]);
    assert_eq!(rows(&engine, &mut alice, "SELECT count(*) FROM orders JOIN customers ON true").await, [["4"]]);
}

#[tokio::test]
async fn writes_need_insert_and_everything_else_needs_all() {
    let (engine, mut root) = shop().await;
    exec(&engine, &mut root, "GRANT SELECT ON shop.orders TO alice").await;
    let mut alice = as_user("alice", Some("shop"));
    let denied = |command: &str, table: &str| {
        (1142u16, format!("{command} command denied to user 'alice'@'%' for table '{table}'"))
    };
    assert_eq!(
        refused(&engine, &mut alice, "INSERT INTO orders VALUES (3, 10, 1.0)").await,
        denied("INSERT", "orders")
    );
    assert_eq!(
        refused(&engine, &mut alice, "INSERT INTO orders SELECT id + 10, customer_id, amount FROM orders").await,
        denied("INSERT", "orders")
    );

    exec(&engine, &mut root, "GRANT INSERT ON shop.* TO alice").await;
    exec(&engine, &mut alice, "INSERT INTO orders VALUES (3, 10, 1.0)").await;
    exec(&engine, &mut alice, "INSERT INTO orders SELECT id + 10, customer_id, amount FROM orders").await;
    assert_eq!(
        refused(&engine, &mut alice, "INSERT INTO orders SELECT id + 100, id, 0.0 FROM customers").await,
        denied("SELECT", "customers"),
        "INSERT ... SELECT needs SELECT on its sources"
    );
    // INSERT on shop.* covers every table of shop.
    exec(&engine, &mut alice, "INSERT INTO customers VALUES (12, 'eve')").await;
    for (sql, command, table) in [
        ("DELETE FROM orders WHERE id = 1", "DELETE", "orders"),
        ("UPDATE orders SET amount = 0 WHERE id = 1", "UPDATE", "orders"),
        ("TRUNCATE TABLE orders", "DROP", "orders"),
        ("DROP TABLE orders", "DROP", "orders"),
        ("CREATE TABLE t2 (id BIGINT)", "CREATE", "t2"),
        ("CREATE TABLE t3 AS SELECT * FROM orders", "CREATE", "t3"),
        ("ALTER TABLE orders COMPACT", "ALTER", "orders"),
        (
            "CREATE ROUTINE LOAD shop.job ON orders PROPERTIES (\"format\" = \"json\") \
             FROM KAFKA (\"kafka_broker_list\" = \"127.0.0.1:1\", \"kafka_topic\" = \"t\")",
            "CREATE ROUTINE LOAD",
            "orders",
        ),
    ] {
        assert_eq!(refused(&engine, &mut alice, sql).await, denied(command, table), "{sql}");
    }
    assert_eq!(refused(&engine, &mut alice, "CREATE DATABASE mine").await.0, 1044);
    assert_eq!(refused(&engine, &mut alice, "DROP DATABASE shop").await.0, 1044);
    assert_eq!(refused(&engine, &mut alice, "COPY orders TO '/tmp/x.csv'").await.0, 1227, "writes server files");

    exec(&engine, &mut root, "GRANT ALL PRIVILEGES ON shop.orders TO alice").await;
    exec(&engine, &mut alice, "DELETE FROM orders WHERE id = 1").await;
    exec(&engine, &mut alice, "UPDATE orders SET amount = 0 WHERE id = 2").await;
    exec(&engine, &mut alice, "ALTER TABLE orders COMPACT").await;
    exec(&engine, &mut alice, "TRUNCATE TABLE orders").await;
    assert_eq!(rows(&engine, &mut alice, "SELECT count(*) FROM orders").await, [["0"]]);
    assert_eq!(refused(&engine, &mut alice, "DROP TABLE customers").await, denied("DROP", "customers"));
    exec(&engine, &mut root, "GRANT ALL ON shop.* TO alice").await;
    exec(&engine, &mut alice, "CREATE TABLE t2 (id BIGINT)").await;
    exec(&engine, &mut alice, "DROP TABLE t2").await;
}

#[tokio::test]
async fn only_administrators_manage_users_and_grants() {
    let (engine, mut root) = shop().await;
    let mut alice = as_user("alice", None);
    let need = |privilege: &str| {
        (1227u16, format!("Access denied; you need (at least one of) the {privilege} privilege(s) for this operation"))
    };
    assert_eq!(refused(&engine, &mut alice, "CREATE USER bob IDENTIFIED BY 'x'").await, need("CREATE USER"));
    assert_eq!(refused(&engine, &mut alice, "DROP USER alice").await, need("CREATE USER"));
    assert_eq!(refused(&engine, &mut alice, "GRANT ALL ON *.* TO alice").await, need("GRANT OPTION"));
    assert_eq!(refused(&engine, &mut alice, "REVOKE SELECT ON *.* FROM alice").await, need("GRANT OPTION"));
    assert_eq!(refused(&engine, &mut alice, "SHOW GRANTS FOR root").await.0, 1044);
    assert_eq!(column(&engine, &mut alice, "SHOW GRANTS").await, ["GRANT USAGE ON *.* TO `alice`@`%`"]);
    assert_eq!(
        rows(&engine, &mut alice, "SHOW GRANTS").await.len(),
        1,
        "a user sees its own grants without any privilege"
    );
    // Anyone may change their own password; root's comes from the command line.
    exec(&engine, &mut alice, "SET PASSWORD = 'new-pw'").await;
    assert_eq!(refused(&engine, &mut alice, "ALTER USER root IDENTIFIED BY 'x'").await.0, 1235);

    exec(&engine, &mut root, "GRANT ALL ON *.* TO alice").await;
    exec(&engine, &mut alice, "CREATE USER bob IDENTIFIED BY 'x'").await;
    exec(&engine, &mut alice, "GRANT SELECT, INSERT ON crm.* TO bob").await;
    assert_eq!(
        column(&engine, &mut alice, "SHOW GRANTS FOR 'bob'@'%'").await,
        ["GRANT USAGE ON *.* TO `bob`@`%`", "GRANT SELECT, INSERT ON `crm`.* TO `bob`@`%`"]
    );
    assert_eq!(
        column(&engine, &mut root, "SHOW GRANTS").await,
        ["GRANT ALL PRIVILEGES ON *.* TO `root`@`%` WITH GRANT OPTION"]
    );
    exec(&engine, &mut root, "REVOKE ALL PRIVILEGES, GRANT OPTION FROM alice").await;
    assert_eq!(refused(&engine, &mut alice, "DROP USER bob").await.0, 1227, "no longer an administrator");
}

#[tokio::test]
async fn account_statements_fail_as_in_mysql() {
    let (engine, mut root) = shop().await;
    let cases: &[(&str, u16, &str)] = &[
        ("CREATE USER alice IDENTIFIED BY 'x'", 1396, "Operation CREATE USER failed for 'alice'@'%'"),
        ("CREATE USER root", 1396, "Operation CREATE USER failed for 'root'@'%'"),
        ("DROP USER nobody", 1396, "Operation DROP USER failed for 'nobody'@'%'"),
        ("DROP USER root", 1396, "Operation DROP USER failed for 'root'@'%'"),
        ("DROP USER IF EXISTS root", 1396, "Operation DROP USER failed for 'root'@'%'"),
        ("ALTER USER nobody IDENTIFIED BY 'x'", 1396, "Operation ALTER USER failed for 'nobody'@'%'"),
        ("GRANT SELECT ON shop.* TO nobody", 1410, "You are not allowed to create a user with GRANT"),
        ("REVOKE SELECT ON shop.* FROM nobody", 1141, "There is no such grant defined for user 'nobody' on host '%'"),
        ("REVOKE SELECT ON shop.* FROM alice", 1141, "There is no such grant defined for user 'alice' on host '%'"),
        (
            "REVOKE SELECT ON shop.orders FROM alice",
            1147,
            "There is no such grant defined for user 'alice' on host '%' on table 'orders'",
        ),
        ("GRANT SELECT ON shop.nope TO alice", 1146, "Table 'shop.nope' doesn't exist"),
        ("GRANT SELECT ON orders TO alice", 1046, "No database selected"),
        ("SHOW GRANTS FOR nobody", 1141, "There is no such grant defined for user 'nobody' on host '%'"),
        ("GRANT DELETE ON shop.* TO alice", 1235, ""),
        ("CREATE USER 'carol'@'localhost'", 1235, ""),
        ("GRANT SELECT ON shop.* TO alice WITH GRANT OPTION", 1235, ""),
        ("GRANT SELECT shop.* TO alice", 1064, ""),
    ];
    for (sql, code, message) in cases {
        let (got_code, got_message) = refused(&engine, &mut root, sql).await;
        assert_eq!(got_code, *code, "{sql}: {got_message}");
        if !message.is_empty() {
            assert_eq!(got_message, *message, "{sql}");
        }
    }
    exec(&engine, &mut root, "CREATE USER IF NOT EXISTS alice IDENTIFIED BY 'other'").await;
    assert!(logs_in(&engine, "alice", "pw").await, "IF NOT EXISTS leaves an existing user alone");
    exec(&engine, &mut root, "DROP USER IF EXISTS nobody, alice").await;
    assert!(!logs_in(&engine, "alice", "pw").await);
    assert_eq!(refused(&engine, &mut root, "REVOKE SELECT ON *.* FROM root").await.0, 1396, "root keeps everything");
    exec(&engine, &mut root, "FLUSH PRIVILEGES").await;
}

#[tokio::test]
async fn a_user_created_elsewhere_logs_in_at_once_despite_the_refresh_interval() {
    let store: SharedStore = Arc::new(MemoryStore::new());
    let config = WarehouseConfig { refresh_interval: Duration::from_millis(300), ..WarehouseConfig::default() };
    let open = || Warehouse::open(store.clone(), config.clone(), automq_storage::clock::system());
    let (a, b) = (Engine::new(open().await.unwrap(), ""), Engine::new(open().await.unwrap(), ""));
    b.warehouse().refresh().await.unwrap(); // b's view is fresh: no refresh for 300 ms
    exec(&a, &mut as_user("root", None), "CREATE USER carol IDENTIFIED BY 'pw'").await;
    let started = std::time::Instant::now();
    assert!(logs_in(&b, "carol", "pw").await, "an unknown user waits for the next refresh");
    assert!(started.elapsed() < Duration::from_secs(2));
    let started = std::time::Instant::now();
    assert!(logs_in(&b, "carol", "pw").await);
    assert!(started.elapsed() < Duration::from_millis(100), "a known user does not wait");
}
