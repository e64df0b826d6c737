//! Warehouse tables through SQL, on memory, a local directory and a real S3 server (SeaweedFS):
//! primary-key upserts and deletes against a reference model (before and after compaction and
//! restart), a second node on the same bucket, conflicting writers, DDL and its errors.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use automq_storage::object_store::SharedStore;
use automq_warehouse::engine::Engine;
use automq_warehouse::mysql::server::{QueryHandler, Response, Session};
use automq_warehouse::table::{Warehouse, WarehouseConfig};
use futures::TryStreamExt;
use rand::{Rng, SeedableRng};

automq_storage::store_tests!(
    primary_key_upserts_and_deletes_match_a_reference,
    primary_key_reference_with_every_write_an_object,
    primary_key_reference_with_inline_rows_spilling_to_objects,
    a_second_node_sees_commits_and_both_can_write,
    duplicate_tables_ddl_and_errors,
);

fn config() -> WarehouseConfig {
    WarehouseConfig {
        target_segment_rows: 200,
        compact_min_segments: 4,
        gc_grace: Duration::ZERO,
        refresh_interval: Duration::ZERO,
        ..WarehouseConfig::default()
    }
}

async fn node(store: &SharedStore) -> Arc<Engine> {
    node_with(store, config()).await
}

async fn node_with(store: &SharedStore, config: WarehouseConfig) -> Arc<Engine> {
    let warehouse = Warehouse::open(store.clone(), config, automq_storage::clock::system()).await.unwrap();
    Engine::new(warehouse, "")
}

fn count(c: &std::sync::atomic::AtomicU64) -> u64 {
    c.load(std::sync::atomic::Ordering::Relaxed)
}

/// Where a test's writes put their rows.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fresh {
    /// Inline in the catalog (the default for small writes).
    Inline,
    /// Always an object.
    Objects,
    /// Inline until the table's inline bytes reach a small cap, then objects.
    Spill,
}

fn config_for(fresh: Fresh) -> WarehouseConfig {
    match fresh {
        Fresh::Inline => config(),
        Fresh::Objects => WarehouseConfig { inline_max_bytes: 0, ..config() },
        Fresh::Spill => WarehouseConfig { inline_table_bytes: 6000, ..config() },
    }
}

async fn exec(engine: &Engine, s: &mut Session, sql: &str) -> u64 {
    match engine.query(s, sql).await {
        Ok(Response::Ok { affected_rows, .. }) => affected_rows,
        Ok(Response::Rows { .. }) => panic!("{sql}: expected OK, got rows"),
        Err(e) => panic!("{sql}: {e:?}"),
    }
}

async fn rows(engine: &Engine, s: &mut Session, sql: &str) -> Vec<Vec<String>> {
    let Response::Rows { batches, .. } = engine.query(s, sql).await.unwrap_or_else(|e| panic!("{sql}: {e:?}")) else {
        panic!("{sql}: expected rows")
    };
    let batches: Vec<_> = batches.try_collect().await.unwrap();
    let mut out = Vec::new();
    for b in &batches {
        for r in 0..b.num_rows() {
            out.push(
                (0..b.num_columns())
                    .map(|c| {
                        if b.column(c).is_null(r) {
                            "NULL".to_string()
                        } else {
                            arrow_cast::display::array_value_to_string(b.column(c), r).unwrap()
                        }
                    })
                    .collect(),
            );
        }
    }
    out
}

async fn error_code(engine: &Engine, s: &mut Session, sql: &str) -> u16 {
    match engine.query(s, sql).await {
        Err(e) => e.code,
        Ok(_) => panic!("{sql}: expected an error"),
    }
}

/// A session of the bootstrap superuser (these tests are about tables, not privileges).
fn root() -> Session {
    Session { user: "root".into(), ..Session::default() }
}

fn session(db: &str) -> Session {
    Session { database: Some(db.to_string()), ..root() }
}

type Model = BTreeMap<i64, (String, i64)>;

fn expected(model: &Model) -> Vec<Vec<String>> {
    model.iter().map(|(k, (name, qty))| vec![k.to_string(), name.clone(), qty.to_string()]).collect()
}

async fn primary_key_upserts_and_deletes_match_a_reference(store: SharedStore) {
    primary_key_reference(store, Fresh::Inline).await
}

async fn primary_key_reference_with_every_write_an_object(store: SharedStore) {
    primary_key_reference(store, Fresh::Objects).await
}

async fn primary_key_reference_with_inline_rows_spilling_to_objects(store: SharedStore) {
    primary_key_reference(store, Fresh::Spill).await
}

async fn primary_key_reference(store: SharedStore, fresh: Fresh) {
    let engine = node_with(&store, config_for(fresh)).await;
    let mut s = root();
    exec(&engine, &mut s, "CREATE DATABASE shop").await;
    let mut s = session("shop");
    exec(
        &engine,
        &mut s,
        "CREATE TABLE stock (id BIGINT NOT NULL, name VARCHAR(32), qty BIGINT) PRIMARY KEY(id) DISTRIBUTED BY HASH(id) BUCKETS 4 PROPERTIES(\"replication_num\" = \"1\")",
    )
    .await;
    let mut model = Model::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for round in 0..60 {
        match rng.random_range(0..10) {
            0..=5 => {
                // A multi-row upsert, keys possibly repeated within the statement (last wins).
                let values: Vec<String> = (0..rng.random_range(1..20))
                    .map(|_| {
                        let (k, q) = (rng.random_range(0..100i64), rng.random_range(-5..1000i64));
                        let name = format!("item-{k}-{round}");
                        model.insert(k, (name.clone(), q));
                        format!("({k}, '{name}', {q})")
                    })
                    .collect();
                let n = exec(&engine, &mut s, &format!("INSERT INTO stock VALUES {}", values.join(", "))).await;
                assert_eq!(n, values.len() as u64 - dupes(&values));
            }
            6..=7 => {
                let (lo, hi) = (rng.random_range(0..100i64), rng.random_range(0..10i64));
                let n =
                    exec(&engine, &mut s, &format!("DELETE FROM stock WHERE id >= {lo} AND id < {} ", lo + hi)).await;
                let before = model.len();
                model.retain(|k, _| !(*k >= lo && *k < lo + hi));
                assert_eq!(n, (before - model.len()) as u64, "rows deleted");
            }
            8 => {
                let cap = rng.random_range(0..1000i64);
                let n =
                    exec(&engine, &mut s, &format!("UPDATE stock SET qty = qty + 1, name = 'hot' WHERE qty > {cap}"))
                        .await;
                let mut hit = 0;
                for v in model.values_mut().filter(|v| v.1 > cap) {
                    *v = ("hot".into(), v.1 + 1);
                    hit += 1;
                }
                assert_eq!(n, hit, "rows updated");
            }
            _ => {
                exec(&engine, &mut s, "ALTER TABLE stock COMPACT").await;
            }
        }
        if round % 10 == 9 {
            assert_eq!(rows(&engine, &mut s, "SELECT id, name, qty FROM stock ORDER BY id").await, expected(&model));
        }
    }
    let want = expected(&model);
    assert_eq!(rows(&engine, &mut s, "SELECT id, name, qty FROM stock ORDER BY id").await, want);
    assert_eq!(rows(&engine, &mut s, "SELECT count(*) FROM stock").await, vec![vec![model.len().to_string()]]);
    // Pruning by segment statistics must not lose rows.
    let probe = *model.keys().nth(model.len() / 2).unwrap();
    assert_eq!(
        rows(&engine, &mut s, &format!("SELECT id FROM stock WHERE id = {probe}")).await,
        vec![vec![probe.to_string()]]
    );

    // The writes went where the configuration says.
    let stats = &engine.warehouse().stats;
    let (inlined, uploaded) = (count(&stats.segments_inlined), count(&stats.segments_written));
    match fresh {
        Fresh::Inline => assert!(inlined > 20, "{inlined} inline segments"),
        Fresh::Objects => assert_eq!(inlined, 0),
        Fresh::Spill => assert!(inlined > 0 && uploaded > 0, "{inlined} inline, {uploaded} uploaded"),
    }
    // Unflushed inline rows are acknowledged rows: a node started afresh has them.
    exec(&engine, &mut s, "INSERT INTO stock VALUES (1000, 'fresh', 1)").await;
    model.insert(1000, ("fresh".into(), 1));
    let want = expected(&model);
    if fresh != Fresh::Objects {
        assert!(engine.warehouse().inline_usage().0 > 0, "inline rows not flushed yet");
    }
    let other = node_with(&store, config_for(fresh)).await;
    assert_eq!(rows(&other, &mut session("shop"), "SELECT id, name, qty FROM stock ORDER BY id").await, want);
    drop(other);

    exec(&engine, &mut s, "ALTER TABLE stock COMPACT").await;
    assert_eq!(engine.warehouse().inline_usage(), (0, 0), "a forced compaction flushes every inline segment");
    assert_eq!(rows(&engine, &mut s, "SELECT id, name, qty FROM stock ORDER BY id").await, want, "after compaction");
    engine.warehouse().collect_garbage().await.unwrap();

    // A node started afresh on the same bucket (nothing local) has every acknowledged change.
    drop(engine);
    let engine = node(&store).await;
    let mut s = session("shop");
    assert_eq!(rows(&engine, &mut s, "SELECT id, name, qty FROM stock ORDER BY id").await, want, "after restart");
    // And goes on upserting correctly (its key index is rebuilt from the bucket).
    let k = *model.keys().next().unwrap();
    exec(&engine, &mut s, &format!("INSERT INTO stock VALUES ({k}, 'again', 1)")).await;
    model.insert(k, ("again".into(), 1));
    assert_eq!(rows(&engine, &mut s, "SELECT id, name, qty FROM stock ORDER BY id").await, expected(&model));
    // Key columns cannot change, and NULL keys are refused.
    assert_eq!(error_code(&engine, &mut s, "UPDATE stock SET id = 5 WHERE id = 1").await, 1235);
    let e = engine.query(&mut s, "INSERT INTO stock VALUES (NULL, 'x', 1)").await.err().unwrap();
    assert_eq!(e.code, 1048, "{e:?}");
}

fn dupes(values: &[String]) -> u64 {
    let keys: Vec<&str> = values.iter().map(|v| v[1..].split(',').next().unwrap()).collect();
    let unique: std::collections::HashSet<_> = keys.iter().collect();
    (keys.len() - unique.len()) as u64
}

async fn a_second_node_sees_commits_and_both_can_write(store: SharedStore) {
    let a = node(&store).await;
    let b = node(&store).await;
    let mut sa = root();
    exec(&a, &mut sa, "CREATE DATABASE d").await;
    let mut sa = session("d");
    exec(&a, &mut sa, "CREATE TABLE t (k INT PRIMARY KEY, v VARCHAR(10))").await;
    exec(&a, &mut sa, "INSERT INTO t VALUES (1, 'a1'), (2, 'a2')").await;

    let mut sb = root();
    exec(&b, &mut sb, "USE d").await;
    assert_eq!(rows(&b, &mut sb, "SELECT k, v FROM t ORDER BY k").await, [["1", "a1"], ["2", "a2"]]);
    // B was behind when A wrote; its write lands on top, and A sees it.
    exec(&b, &mut sb, "INSERT INTO t VALUES (2, 'b2'), (3, 'b3')").await;
    exec(&a, &mut sa, "INSERT INTO t VALUES (4, 'a4')").await;
    assert_eq!(
        rows(&a, &mut sa, "SELECT k, v FROM t ORDER BY k").await,
        [["1", "a1"], ["2", "b2"], ["3", "b3"], ["4", "a4"]]
    );

    // Concurrent writers on both nodes: every acknowledged row is there once.
    let mut tasks = Vec::new();
    for (i, engine) in [a.clone(), b.clone(), a.clone(), b.clone()].into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut s = session("d");
            for j in 0..5 {
                let k = 100 + i * 10 + j;
                exec(&engine, &mut s, &format!("INSERT INTO t VALUES ({k}, 'w{i}')")).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    b.warehouse().refresh().await.unwrap();
    let got = rows(&b, &mut sb, "SELECT count(*), count(DISTINCT k) FROM t WHERE k >= 100").await;
    assert_eq!(got, [["20", "20"]]);
    let fresh = node(&store).await;
    let mut s = session("d");
    assert_eq!(rows(&fresh, &mut s, "SELECT count(*) FROM t").await, [["24"]]);
}

async fn duplicate_tables_ddl_and_errors(store: SharedStore) {
    let engine = node(&store).await;
    let mut s = root();
    assert_eq!(error_code(&engine, &mut s, "CREATE TABLE t (a INT)").await, 1046);
    exec(&engine, &mut s, "CREATE DATABASE IF NOT EXISTS d").await;
    assert_eq!(error_code(&engine, &mut s, "CREATE DATABASE d").await, 1007);
    assert_eq!(error_code(&engine, &mut s, "USE nope").await, 1049);
    let mut s = session("d");
    exec(
        &engine,
        &mut s,
        "CREATE TABLE ev (ts DATETIME, kind VARCHAR(8), amount DECIMAL(10,2) DEFAULT '1.50') DUPLICATE KEY(ts)",
    )
    .await;
    assert_eq!(error_code(&engine, &mut s, "CREATE TABLE ev (a INT)").await, 1050);
    exec(&engine, &mut s, "CREATE TABLE IF NOT EXISTS ev (a INT)").await;
    assert_eq!(error_code(&engine, &mut s, "CREATE TABLE bad (a INT) AGGREGATE KEY(a)").await, 1235);
    assert_eq!(error_code(&engine, &mut s, "CREATE TABLE bad (a INT,").await, 1064);
    exec(
        &engine,
        &mut s,
        "INSERT INTO ev VALUES ('2024-05-01 10:00:00', 'sale', 10.25), ('2024-05-01 10:00:00', 'sale', 10.25)",
    )
    .await;
    exec(&engine, &mut s, "INSERT INTO ev (ts, kind) VALUES ('2024-05-02 09:30:00', 'refund')").await;
    assert_eq!(
        rows(&engine, &mut s, "SELECT kind, count(*), sum(amount) FROM ev GROUP BY kind ORDER BY kind").await,
        [["refund", "1", "1.50"], ["sale", "2", "20.50"]],
        "duplicate rows are kept; defaults apply"
    );
    assert_eq!(exec(&engine, &mut s, "DELETE FROM ev WHERE kind = 'sale'").await, 2);
    assert_eq!(error_code(&engine, &mut s, "UPDATE ev SET kind = 'x'").await, 1235);
    assert_eq!(error_code(&engine, &mut s, "SELECT * FROM missing").await, 1146);
    assert_eq!(error_code(&engine, &mut s, "INSERT INTO ev VALUES (1, 2, 3, 4)").await, 1136);
    assert_eq!(error_code(&engine, &mut s, "INSERT INTO ev (ts, nope) VALUES (1, 2)").await, 1054);
    assert_eq!(error_code(&engine, &mut s, "INSERT INTO ev (ts, amount) VALUES ('not a time', 1)").await, 1366);

    let create = rows(&engine, &mut s, "SHOW CREATE TABLE ev").await;
    assert!(create[0][1].contains("`amount` decimal(10,2) DEFAULT '1.50'"), "{}", create[0][1]);
    assert!(create[0][1].contains("DUPLICATE KEY(`ts`)"), "{}", create[0][1]);
    let desc = rows(&engine, &mut s, "DESCRIBE ev").await;
    assert_eq!(desc[0][..4], ["ts".to_string(), "datetime".into(), "YES".into(), "DUP".into()]);
    assert_eq!(
        rows(&engine, &mut s, "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'ev' ORDER BY ordinal_position").await,
        [["ts", "datetime"], ["kind", "varchar"], ["amount", "decimal"]]
    );
    exec(&engine, &mut s, "CREATE TABLE ev2 AS SELECT kind, amount * 2 AS double_amount FROM ev").await;
    assert_eq!(rows(&engine, &mut s, "SELECT kind, double_amount FROM ev2").await, [["refund", "3.00"]]);
    assert_eq!(rows(&engine, &mut s, "SHOW TABLES").await, [["ev"], ["ev2"]]);
    exec(&engine, &mut s, "TRUNCATE TABLE ev").await;
    assert_eq!(rows(&engine, &mut s, "SELECT count(*) FROM ev").await, [["0"]]);
    exec(&engine, &mut s, "DROP TABLE ev, ev2").await;
    assert_eq!(error_code(&engine, &mut s, "DROP TABLE ev").await, 1051);
    exec(&engine, &mut s, "DROP TABLE IF EXISTS ev").await;
    engine.warehouse().collect_garbage().await.unwrap();
    exec(&engine, &mut s, "DROP DATABASE d").await;
    assert_eq!(error_code(&engine, &mut s, "DROP DATABASE d").await, 1008);
    let leftover = store.list("warehouse/data/").await.unwrap();
    assert!(leftover.is_empty(), "dropped tables leave no data behind: {leftover:?}");
}

/// A node that learns of another node's commit while its own change is in flight must not
/// commit that change over it (the append itself no longer conflicts then): the change is
/// recomputed on the new version. This lost rows about once in five runs of the concurrent
/// test above on S3 before table commits carried their version as a precondition.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_change_computed_before_a_refresh_does_not_overwrite_what_the_refresh_brought() {
    use automq_storage::object_store::{Fault, FaultInjector, FaultRule, MemoryStore, Op, Trigger};
    let store: SharedStore = Arc::new(MemoryStore::new());
    let slow = Arc::new(FaultInjector::new(store.clone(), 1));
    // Segments and delete vectors as objects: A's delete uploads before it commits.
    let a = node_with(&(slow.clone() as SharedStore), config_for(Fresh::Objects)).await;
    let b = node(&store).await;
    let mut sa = root();
    exec(&a, &mut sa, "CREATE DATABASE d").await;
    let mut sa = session("d");
    exec(&a, &mut sa, "CREATE TABLE t (k INT, v VARCHAR(10)) DUPLICATE KEY(k)").await;
    exec(&a, &mut sa, "INSERT INTO t VALUES (1, 'a'), (2, 'a')").await;

    // A's DELETE writes a delete vector (slowly) between reading the table and committing.
    slow.add_rule(FaultRule::new(Fault::Latency(Duration::from_millis(800)), Trigger::Always).on(Op::Put));
    let deleting = {
        let a = a.clone();
        tokio::spawn(async move { exec(&a, &mut session("d"), "DELETE FROM t WHERE k = 1").await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    exec(&b, &mut session("d"), "INSERT INTO t VALUES (3, 'b')").await;
    a.warehouse().refresh().await.unwrap();
    assert_eq!(deleting.await.unwrap(), 1);
    slow.clear_rules();

    let expected = [["2", "a"], ["3", "b"]];
    assert_eq!(rows(&a, &mut sa, "SELECT k, v FROM t ORDER BY k").await, expected);
    b.warehouse().refresh().await.unwrap();
    assert_eq!(rows(&b, &mut session("d"), "SELECT k, v FROM t ORDER BY k").await, expected);
}

/// A statement planned before a flush reads the inline rows it planned, though the flush
/// deleted them from the catalog meanwhile; the flushed table reads the same.
#[tokio::test]
async fn a_statement_planned_before_a_flush_still_reads_its_inline_rows() {
    let store: SharedStore = Arc::new(automq_storage::object_store::MemoryStore::new());
    let (a, b) = (node(&store).await, node(&store).await);
    exec(&a, &mut root(), "CREATE DATABASE d").await;
    let mut s = session("d");
    exec(&a, &mut s, "CREATE TABLE t (k INT, v VARCHAR(10)) DUPLICATE KEY(k)").await;
    for i in 0..3 {
        exec(&a, &mut s, &format!("INSERT INTO t VALUES ({i}, 'v{i}')")).await;
    }
    assert_eq!(count(&a.warehouse().stats.segments_written), 0, "small inserts upload nothing");
    assert_eq!(a.warehouse().inline_usage().0, 3);

    b.warehouse().refresh().await.unwrap();
    let planned = b.warehouse().table("d", "t").unwrap();
    assert_eq!(planned.segments.len(), 3);
    assert!(a.warehouse().compact("d", "t", true).await.unwrap());
    b.warehouse().refresh().await.unwrap();
    assert_eq!(b.warehouse().inline_usage(), (0, 0), "the flush deleted the inline rows from the catalog");
    let old: usize = b
        .warehouse()
        .live_rows_of(&planned, &planned.segments)
        .await
        .unwrap()
        .iter()
        .flatten()
        .map(|batch| batch.num_rows())
        .sum();
    assert_eq!(old, 3, "read from the state the statement was planned on");
    let flushed = b.warehouse().table("d", "t").unwrap();
    assert_eq!(flushed.segments.len(), 1);
    assert!(!automq_warehouse::table::is_inline(&flushed.segments[0].key));
    let expected = [["0", "v0"], ["1", "v1"], ["2", "v2"]];
    assert_eq!(rows(&b, &mut session("d"), "SELECT k, v FROM t ORDER BY k").await, expected);
}

/// Background maintenance flushes inline rows once they are large or old enough, and not
/// before.
#[tokio::test]
async fn maintenance_flushes_inline_rows_by_size_and_by_age() {
    let store: SharedStore = Arc::new(automq_storage::object_store::MemoryStore::new());
    let patient = WarehouseConfig {
        inline_flush_bytes: u64::MAX,
        inline_flush_after: Duration::from_secs(3600),
        inline_flush_segments: usize::MAX,
        compact_min_segments: 1000,
        ..config()
    };
    let a = node_with(&store, patient.clone()).await;
    exec(&a, &mut root(), "CREATE DATABASE d").await;
    let mut s = session("d");
    exec(&a, &mut s, "CREATE TABLE t (k INT, v VARCHAR(10)) DUPLICATE KEY(k)").await;
    exec(&a, &mut s, "INSERT INTO t VALUES (1, 'a'), (2, 'b')").await;
    a.warehouse().maintain_once().await.unwrap();
    assert_eq!(a.warehouse().inline_usage().0, 1, "young and small: stays inline");

    let by_size = node_with(&store, WarehouseConfig { inline_flush_bytes: 1, ..patient.clone() }).await;
    by_size.warehouse().maintain_once().await.unwrap();
    assert_eq!(by_size.warehouse().inline_usage(), (0, 0), "flushed by size");
    assert_eq!(count(&by_size.warehouse().stats.inline_flushes), 1);

    exec(&a, &mut s, "INSERT INTO t VALUES (3, 'c')").await;
    exec(&a, &mut s, "INSERT INTO t VALUES (4, 'd')").await;
    a.warehouse().maintain_once().await.unwrap();
    assert_eq!(a.warehouse().inline_usage().0, 2);
    let by_count = node_with(&store, WarehouseConfig { inline_flush_segments: 2, ..patient.clone() }).await;
    by_count.warehouse().maintain_once().await.unwrap();
    assert_eq!(by_count.warehouse().inline_usage(), (0, 0), "flushed by count");

    exec(&a, &mut s, "INSERT INTO t VALUES (5, 'e')").await;
    let by_age = node_with(&store, WarehouseConfig { inline_flush_after: Duration::ZERO, ..patient }).await;
    by_age.warehouse().maintain_once().await.unwrap();
    assert_eq!(by_age.warehouse().inline_usage(), (0, 0), "flushed by age");
    assert_eq!(
        rows(&by_age, &mut session("d"), "SELECT k, v FROM t ORDER BY k").await,
        [["1", "a"], ["2", "b"], ["3", "c"], ["4", "d"], ["5", "e"]]
    );
}

/// Segment objects read from the bucket land in the local disk cache; a node restarted on the
/// same directory serves them from there, and a damaged cached copy is read again from the
/// bucket instead of failing the query.
#[tokio::test]
async fn a_restarted_node_reads_segments_from_its_disk_cache_and_survives_damaged_copies() {
    let store: SharedStore = Arc::new(automq_storage::object_store::MemoryStore::new());
    let dir = tempfile::tempdir().unwrap();
    let cached = || WarehouseConfig {
        disk_cache_dir: Some(dir.path().to_path_buf()),
        disk_cache_bytes: 64 << 20,
        ..config_for(Fresh::Objects)
    };
    let a = node_with(&store, cached()).await;
    exec(&a, &mut root(), "CREATE DATABASE d").await;
    let mut s = session("d");
    exec(&a, &mut s, "CREATE TABLE t (k INT, v VARCHAR(10)) DUPLICATE KEY(k)").await;
    for i in 0..4 {
        exec(&a, &mut s, &format!("INSERT INTO t VALUES ({i}, 'v{i}'), ({}, 'x')", 10 + i)).await;
    }
    exec(&a, &mut s, "DELETE FROM t WHERE k >= 10").await;
    assert_eq!(
        a.warehouse().disk_cache_usage().unwrap().entries,
        8,
        "uploads (4 segments, 4 delete vectors) are cached as written"
    );
    drop(a);

    let expected = [["0", "v0"], ["1", "v1"], ["2", "v2"], ["3", "v3"]];
    let b = node_with(&store, cached()).await;
    assert_eq!(rows(&b, &mut session("d"), "SELECT k, v FROM t ORDER BY k").await, expected);
    assert_eq!(count(&b.warehouse().stats.disk_cache_hits), 8, "served from the disk cache after a restart");
    drop(b);

    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let mut bytes = std::fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        bytes.truncate(bytes.len() - 3);
        std::fs::write(&path, bytes).unwrap();
    }
    let c = node_with(&store, cached()).await;
    assert_eq!(rows(&c, &mut session("d"), "SELECT k, v FROM t ORDER BY k").await, expected, "damaged copies");
    let d = node_with(&store, cached()).await;
    assert_eq!(rows(&d, &mut session("d"), "SELECT k, v FROM t ORDER BY k").await, expected);
    assert_eq!(count(&d.warehouse().stats.disk_cache_hits), 8, "the damaged copies were replaced");
    assert_eq!(count(&c.warehouse().stats.disk_cache_hits), 0, "a damaged copy is not a hit");
}

/// A hash join's dynamic filter (the keys of its built side) reaches the scan of the other
/// side, which applies it; results stay exact, NULL keys included.
#[tokio::test]
async fn join_dynamic_filters_are_applied_by_the_table_scan() {
    let store: SharedStore = Arc::new(automq_storage::object_store::MemoryStore::new());
    let engine = node(&store).await;
    exec(&engine, &mut root(), "CREATE DATABASE d").await;
    let mut s = session("d");
    exec(&engine, &mut s, "CREATE TABLE fact (k INT, dim INT, v INT) DUPLICATE KEY(k)").await;
    exec(&engine, &mut s, "CREATE TABLE dim (id INT, name VARCHAR(10)) DUPLICATE KEY(id)").await;
    let facts: Vec<String> = (0..2000)
        .map(|k| match k % 97 {
            0 => format!("({k}, NULL, {k})"),
            _ => format!("({k}, {}, {k})", k % 50),
        })
        .collect();
    exec(&engine, &mut s, &format!("INSERT INTO fact VALUES {}", facts.join(", "))).await;
    let dims: Vec<String> = (0..50).map(|i| format!("({i}, '{}')", if i % 10 == 3 { "hot" } else { "cold" })).collect();
    exec(&engine, &mut s, &format!("INSERT INTO dim VALUES {}", dims.join(", "))).await;

    let query = "SELECT count(*), sum(v) FROM fact, dim WHERE fact.dim = dim.id AND dim.name = 'hot'";
    let (mut n, mut sum) = (0u64, 0u64);
    for k in (0..2000u64).filter(|k| k % 97 != 0 && (k % 50) % 10 == 3) {
        n += 1;
        sum += k;
    }
    assert_eq!(rows(&engine, &mut s, query).await, [[n.to_string(), sum.to_string()]]);
    let plan = rows(&engine, &mut s, &format!("EXPLAIN ANALYZE {query}")).await.concat().join("\n");
    assert!(plan.contains("filters=[DynamicFilter"), "the fact scan applies the join's dynamic filter:\n{plan}");
}

/// Concurrent INSERTs into one table commit in groups: while one commit is in flight, the
/// INSERTs arriving meanwhile wait and then commit together; each statement is told its own
/// row count and every row is there once. A bad statement fails alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_inserts_into_one_table_commit_in_groups() {
    use automq_storage::object_store::{Fault, FaultInjector, FaultRule, MemoryStore, Op, Trigger};
    let store: SharedStore = Arc::new(MemoryStore::new());
    let slow = Arc::new(FaultInjector::new(store.clone(), 1));
    let engine = node(&(slow.clone() as SharedStore)).await;
    exec(&engine, &mut root(), "CREATE DATABASE d").await;
    let mut s = session("d");
    exec(&engine, &mut s, "CREATE TABLE t (k INT NOT NULL, v VARCHAR(10)) PRIMARY KEY(k)").await;
    exec(&engine, &mut s, "INSERT INTO t VALUES (0, 'first')").await;

    // Every metadata-log append takes 300 ms: the first INSERT's commit is in flight while the
    // others arrive.
    slow.add_rule(FaultRule::new(Fault::Latency(Duration::from_millis(300)), Trigger::Always).on(Op::PutIfAbsent));
    let commits = || count(&engine.warehouse().stats.commits);
    let before = commits();
    let mut tasks = Vec::new();
    for i in 1..=12 {
        let engine = engine.clone();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(if i == 1 { 0 } else { 100 })).await;
            let sql = match i {
                7 => "INSERT INTO t VALUES (NULL, 'bad')".to_string(),
                2 => "INSERT INTO t VALUES (1, 'again'), (20, 'x'), (21, 'y')".to_string(),
                _ => format!("INSERT INTO t VALUES ({i}, 'v{i}')"),
            };
            (i, engine.query(&mut session("d"), &sql).await)
        }));
    }
    for task in tasks {
        let (i, outcome) = task.await.unwrap();
        match (i, outcome) {
            (7, Err(e)) => assert_eq!(e.code, 1048, "{e:?}"),
            (7, Ok(_)) => panic!("a NULL key must be refused"),
            (2, Ok(Response::Ok { affected_rows, .. })) => assert_eq!(affected_rows, 3),
            (_, Ok(Response::Ok { affected_rows, .. })) => assert_eq!(affected_rows, 1),
            (i, other) => panic!("insert {i}: {other:?}"),
        }
    }
    slow.clear_rules();
    let grouped = commits() - before;
    assert!(grouped <= 3, "11 INSERTs arriving during one commit took {grouped} commits");
    let got = rows(&engine, &mut s, "SELECT count(*), count(DISTINCT k) FROM t").await;
    assert_eq!(got, [["13", "13"]]);
    assert_eq!(rows(&engine, &mut s, "SELECT v FROM t WHERE k = 1").await.concat().len(), 1);
}
