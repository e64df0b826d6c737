//! `automq demo`: the reference workload in small, against a running standalone (or any
//! Kafka-compatible cluster plus a MySQL-protocol query node).
//!
//! It creates one Debezium topic and one primary-key table per table of a booking platform,
//! a routine load from each topic into its table, then plays the platform's activity as
//! Debezium change events at a steady rate while it refreshes the merchant homepage (revenue
//! yesterday, appointments today, staff performance) and the payment log, showing how fresh
//! the dashboard is: the time from a payment's event being produced to the payment being
//! visible to SQL.

mod debezium;
mod display;
mod model;
mod queries;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use automq_warehouse::mysql::client::{Client as Mysql, ClientError, QueryResult};
use chrono::NaiveDate;
use parking_lot::Mutex;
use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client as Kafka, ClientBuilder};
use rskafka::record::Record;

use model::{Booking, TABLES};

#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Kafka bootstrap servers the generator produces to.
    #[arg(long, env = "AUTOMQ_BOOTSTRAP", default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// Kafka brokers as the query nodes reach them (for the routine loads); default: --bootstrap.
    #[arg(long)]
    load_from: Option<String>,
    /// MySQL-protocol address of a query node.
    #[arg(long, env = "AUTOMQ_MYSQL", default_value = "127.0.0.1:9030")]
    mysql: String,
    #[arg(long, default_value = "root")]
    user: String,
    #[arg(long, env = "AUTOMQ_MYSQL_PASSWORD", default_value = "", hide_env_values = true)]
    password: String,
    /// Database, and the Debezium server name (topics are `<database>.public.<table>`).
    #[arg(long, default_value = "booking")]
    database: String,
    /// Start over: stop the routine loads, drop the database and delete the topics of an
    /// earlier run with the same database name.
    #[arg(long)]
    reset: bool,
    /// Number of merchants.
    #[arg(long, default_value_t = 8)]
    merchants: usize,
    /// Change events per second.
    #[arg(long, default_value_t = 500)]
    rate: u32,
    /// Stop once this many change events are produced (0: run until Ctrl-C); the events of
    /// one step of activity go out together, so a few more may be.
    #[arg(long, default_value_t = 0)]
    events: u64,
    /// Seed of the generator (the same seed and day give the same events).
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// The day the dashboard is for (YYYY-MM-DD); default: today (UTC).
    #[arg(long)]
    today: Option<NaiveDate>,
    /// Merchant whose homepage is shown (1 is the busiest).
    #[arg(long, default_value_t = 1)]
    merchant: i64,
    /// Partitions of each topic.
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    /// Dashboard refresh period, milliseconds.
    #[arg(long, default_value_t = 1000)]
    refresh_ms: u64,
    /// No dashboard: one progress line per refresh (for logs and scripts).
    #[arg(long)]
    quiet: bool,
    /// Write a JSON summary here at the end: events, offsets, timings, query texts.
    #[arg(long)]
    summary: Option<PathBuf>,
    /// Print the dashboard's queries (JSON) for these settings and exit.
    #[arg(long)]
    print_queries: bool,
}

/// What the producer has done so far (shared with the dashboard and the freshness probe).
#[derive(Debug, Default)]
struct Progress {
    events: u64,
    messages: u64,
    /// Next offset per (topic, partition), after the last acknowledged produce.
    ends: BTreeMap<(String, i32), i64>,
    /// The newest payment produced and when its event was sent.
    last_payment: Option<(i64, Instant)>,
    last_ack: Option<Instant>,
    /// Event-to-SQL delays measured by the freshness probe.
    freshness: Vec<Duration>,
    done: bool,
    error: Option<String>,
}

pub(crate) async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let today = args.today.unwrap_or_else(|| chrono::Utc::now().date_naive());
    let db = args.database.clone();
    if !db.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || db.is_empty() {
        bail!("--database must be letters, digits and underscores");
    }
    if args.print_queries {
        println!("{}", serde_json::to_string_pretty(&queries::homepage(&db, args.merchant, today))?);
        return Ok(());
    }
    let mut sql = connect_mysql(&args).await?;
    let kafka = ClientBuilder::new(vec![args.bootstrap.clone()])
        .client_id("automq-demo")
        .build()
        .await
        .with_context(|| format!("cannot reach Kafka at {}", args.bootstrap))?;
    set_up(&args, &mut sql, &kafka).await?;

    let started = Instant::now();
    let progress = Arc::new(Mutex::new(Progress::default()));
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let producer = tokio::spawn(produce(
        Booking::new(args.seed, today, args.merchants),
        kafka,
        args.database.clone(),
        args.partitions,
        args.rate.max(1),
        args.events,
        progress.clone(),
        stop.clone(),
    ));
    let probe = tokio::spawn(freshness_probe(connect_mysql(&args).await?, db.clone(), progress.clone(), stop.clone()));
    let ctrl_c = tokio::spawn(async move {
        automq_common::shutdown_signal().await;
        let _ = stop_tx.send(true);
    });

    let queries = queries::homepage(&db, args.merchant, today);
    let mut dash = display::Dashboard::new(args.quiet, queries.clone());
    let refresh = Duration::from_millis(args.refresh_ms.max(50));
    loop {
        let done = progress.lock().done;
        let answers = run_queries(&mut sql, &queries, &mut dash).await;
        let loaded = loaded_rows(&mut sql, &db).await;
        dash.render(&progress_line(&progress, started, &loaded), &answers);
        if done || *stop.borrow() {
            break;
        }
        // Wake early when the producer is done, so the catch-up time below is measured.
        let next = Instant::now() + refresh;
        while Instant::now() < next && !progress.lock().done && !*stop.borrow() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    producer.await.context("the producer task failed")?;
    if let Some(e) = progress.lock().error.clone() {
        bail!("producing change events failed: {e}");
    }
    // Everything is produced: wait until the routine loads have consumed all of it.
    let ends = progress.lock().ends.clone();
    let last_ack = progress.lock().last_ack.unwrap_or_else(Instant::now);
    let caught_up = wait_caught_up(&mut sql, &db, &ends, Duration::from_secs(60)).await?;
    let after = caught_up.saturating_duration_since(last_ack);
    let answers = run_queries(&mut sql, &queries, &mut dash).await;
    let loaded = loaded_rows(&mut sql, &db).await;
    dash.render(&progress_line(&progress, started, &loaded), &answers);
    println!("all change events loaded {} ms after the last one was acknowledged", after.as_millis());
    ctrl_c.abort();
    probe.abort();
    if let Some(path) = &args.summary {
        let p = progress.lock();
        let unix = |t: Instant| {
            let now_ms = chrono::Utc::now().timestamp_millis();
            now_ms - Instant::now().saturating_duration_since(t).as_millis() as i64
        };
        let summary = serde_json::json!({
            "database": db,
            "today": today.to_string(),
            "merchant": args.merchant,
            "events": p.events,
            "messages": p.messages,
            "last_event_unix_ms": unix(last_ack),
            "caught_up_unix_ms": unix(caught_up),
            "caught_up_after_ms": after.as_millis() as u64,
            "end_offsets": p.ends.iter().map(|((t, part), end)| serde_json::json!({"topic": t, "partition": part, "end": end})).collect::<Vec<_>>(),
            "freshness_ms": display::summary(&p.freshness),
            "query_ms": dash.latency_summary(),
            "queries": queries,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&summary)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    sql.quit().await;
    Ok(())
}

async fn connect_mysql(args: &DemoArgs) -> anyhow::Result<Mysql> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match Mysql::connect(&args.mysql, &args.user, &args.password, None).await {
            Ok(c) => return Ok(c),
            Err(e @ ClientError::Connect { .. }) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "query node not reachable yet");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e).with_context(|| format!("cannot connect to the query node at {}", args.mysql)),
        }
    }
}

async fn exec(sql: &mut Mysql, statement: &str) -> anyhow::Result<QueryResult> {
    sql.query(statement).await.with_context(|| format!("statement failed: {statement}"))
}

/// Topics, database, tables and routine loads.
async fn set_up(args: &DemoArgs, sql: &mut Mysql, kafka: &Kafka) -> anyhow::Result<()> {
    let db = &args.database;
    let brokers = args.load_from.clone().unwrap_or_else(|| args.bootstrap.clone());
    let controller = kafka.controller_client().context("no Kafka controller")?;
    let databases = exec(sql, "SHOW DATABASES").await?;
    let exists = databases.rows().iter().any(|r| r.first().and_then(|v| v.as_deref()) == Some(db.as_str()));
    if exists && !args.reset {
        bail!("database '{db}' exists (an earlier demo?): pass --reset to start over, or --database NAME");
    }
    if args.reset {
        for table in TABLES {
            // Jobs of an earlier run; not finding one is fine.
            let _ = sql.query(&format!("STOP ROUTINE LOAD FOR {db}.{table}_cdc")).await;
        }
        exec(sql, &format!("DROP DATABASE IF EXISTS {db}")).await?;
        for table in TABLES {
            let _ = controller.delete_topic(queries::topic(db, table), 10_000).await;
        }
    }
    for table in TABLES {
        let topic = queries::topic(db, table);
        controller
            .create_topic(&topic, args.partitions.max(1), 1, 10_000)
            .await
            .with_context(|| format!("cannot create topic {topic}"))?;
    }
    exec(sql, &format!("CREATE DATABASE {db}")).await?;
    for (table, columns) in queries::tables() {
        exec(sql, &queries::create_table(db, table, columns)).await?;
    }
    for table in TABLES {
        exec(sql, &queries::create_routine_load(db, table, &queries::topic(db, table), &brokers)).await?;
    }
    Ok(())
}

/// Plays the platform at `rate` change events per second until `limit` events (0: no limit)
/// or until stopped. Each tick's events are produced concurrently per partition and
/// acknowledged before the next tick, so each row's changes stay in order.
#[allow(clippy::too_many_arguments)]
async fn produce(
    mut booking: Booking,
    kafka: Kafka,
    server: String,
    partitions: i32,
    rate: u32,
    limit: u64,
    progress: Arc<Mutex<Progress>>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let result = produce_inner(&mut booking, &kafka, &server, partitions, rate, limit, &progress, stop).await;
    let mut p = progress.lock();
    if let Err(e) = result {
        p.error = Some(format!("{e:#}"));
    }
    p.done = true;
}

#[allow(clippy::too_many_arguments)]
async fn produce_inner(
    booking: &mut Booking,
    kafka: &Kafka,
    server: &str,
    partitions: i32,
    rate: u32,
    limit: u64,
    progress: &Mutex<Progress>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut clients: BTreeMap<(String, i32), Arc<PartitionClient>> = BTreeMap::new();
    let started = Instant::now();
    let mut events = 0u64;
    let mut lsn = 0u64;
    let mut initial = booking.take(); // merchants, staff, customers: sent first, at once
    loop {
        if *stop.borrow() || (limit > 0 && events >= limit) {
            return Ok(());
        }
        let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
        let mut batch = std::mem::take(&mut initial);
        while (events + batch.len() as u64) < due.max(1) && (limit == 0 || events + (batch.len() as u64) < limit) {
            booking.step();
            batch.extend(booking.take());
        }
        if batch.is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        let now_ms = chrono::Utc::now().timestamp_millis();
        let mut records: BTreeMap<(String, i32), Vec<Record>> = BTreeMap::new();
        for event in &batch {
            let topic = queries::topic(server, event.table);
            let partition = (event.id.rem_euclid(partitions as i64)) as i32;
            for (key, value) in debezium::messages(server, event, now_ms, lsn) {
                lsn += 1;
                records.entry((topic.clone(), partition)).or_default().push(Record {
                    key: Some(key),
                    value,
                    headers: BTreeMap::new(),
                    timestamp: chrono::Utc::now(),
                });
            }
        }
        let sent_at = Instant::now();
        let newest_payment = booking.last_payment();
        let mut sends = Vec::new();
        for ((topic, partition), recs) in records {
            let key = (topic.clone(), partition);
            let client = match clients.get(&key) {
                Some(c) => c.clone(),
                None => {
                    let c = Arc::new(
                        kafka
                            .partition_client(topic.clone(), partition, UnknownTopicHandling::Retry)
                            .await
                            .with_context(|| format!("{topic}/{partition}"))?,
                    );
                    clients.insert(key.clone(), c.clone());
                    c
                }
            };
            let n = recs.len() as u64;
            sends.push(async move {
                let offsets = client
                    .produce(recs, Compression::NoCompression)
                    .await
                    .with_context(|| format!("producing to {}/{}", key.0, key.1))?;
                anyhow::Ok((key, offsets.last().copied().unwrap_or(-1) + 1, n))
            });
        }
        let acked = futures::future::try_join_all(sends).await?;
        events += batch.len() as u64;
        let mut p = progress.lock();
        for (key, end, n) in acked {
            p.ends.insert(key, end);
            p.messages += n;
        }
        p.events = events;
        p.last_ack = Some(Instant::now());
        if let Some(id) = newest_payment {
            if p.last_payment.is_none_or(|(old, _)| old != id) {
                p.last_payment = Some((id, sent_at));
            }
        }
    }
}

/// Measures event-to-SQL freshness: polls for the newest produced payment until a query
/// sees it, then takes the next newest.
async fn freshness_probe(
    mut sql: Mysql,
    db: String,
    progress: Arc<Mutex<Progress>>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut seen = None;
    while !*stop.borrow() {
        let target = progress.lock().last_payment;
        let Some((id, sent_at)) = target.filter(|(id, _)| Some(*id) != seen) else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        loop {
            match sql.query(&format!("SELECT count(*) FROM {db}.payments WHERE id = {id}")).await {
                Ok(r) if r.rows().first().and_then(|row| row[0].as_deref()) == Some("1") => {
                    progress.lock().freshness.push(sent_at.elapsed());
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "freshness probe query failed");
                    return;
                }
            }
            if sent_at.elapsed() > Duration::from_secs(60) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        seen = Some(id);
    }
}

async fn run_queries(
    sql: &mut Mysql,
    queries: &[queries::Query],
    dash: &mut display::Dashboard,
) -> Vec<Result<QueryResult, String>> {
    let mut out = Vec::new();
    for q in queries {
        let started = Instant::now();
        let r = sql.query(&q.sql).await.map_err(|e| e.to_string());
        dash.record_latency(q.name, started.elapsed());
        out.push(r);
    }
    out
}

/// Loaded rows per routine load job, and each job's consumed offsets.
#[derive(Debug, Default)]
struct Loaded {
    rows: u64,
    next: BTreeMap<(String, i32), i64>,
    problems: Vec<String>,
}

async fn loaded_rows(sql: &mut Mysql, db: &str) -> Loaded {
    let mut out = Loaded::default();
    let Ok(QueryResult::Rows { columns, rows }) = sql.query(&format!("SHOW ROUTINE LOAD FROM {db}")).await else {
        out.problems.push("SHOW ROUTINE LOAD failed".into());
        return out;
    };
    let col = |name: &str| columns.iter().position(|c| c == name);
    let (Some(name_i), Some(state_i), Some(stat_i), Some(progress_i), Some(reason_i)) =
        (col("Name"), col("State"), col("Statistic"), col("Progress"), col("ReasonOfStateChanged"))
    else {
        out.problems.push("SHOW ROUTINE LOAD lacks expected columns".into());
        return out;
    };
    for row in rows {
        let get = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
        let name = get(name_i);
        let table = name.trim_end_matches("_cdc");
        let state = get(state_i);
        if state != "RUNNING" && state != "NEED_SCHEDULE" {
            out.problems.push(format!("{name} is {state}: {}", get(reason_i)));
        }
        if let Ok(stat) = serde_json::from_str::<serde_json::Value>(&get(stat_i)) {
            out.rows += stat["loadedRows"].as_u64().unwrap_or(0);
        }
        if let Ok(serde_json::Value::Object(parts)) = serde_json::from_str::<serde_json::Value>(&get(progress_i)) {
            for (p, last) in parts {
                let next = last.as_str().and_then(|s| s.parse::<i64>().ok()).map_or(0, |l| l + 1);
                if let Ok(p) = p.parse::<i32>() {
                    out.next.insert((queries::topic(db, table), p), next);
                }
            }
        }
    }
    out
}

async fn wait_caught_up(
    sql: &mut Mysql,
    db: &str,
    ends: &BTreeMap<(String, i32), i64>,
    timeout: Duration,
) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + timeout;
    loop {
        let loaded = loaded_rows(sql, db).await;
        if ends.iter().all(|(k, end)| loaded.next.get(k).copied().unwrap_or(0) >= *end) {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            bail!("the routine loads did not catch up within {timeout:?}: {}", loaded.problems.join("; "));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn progress_line(progress: &Mutex<Progress>, started: Instant, loaded: &Loaded) -> String {
    let p = progress.lock();
    let secs = started.elapsed().as_secs_f64().max(0.001);
    let mut line = format!(
        "{} change events ({:.0}/s), {} messages, {} rows loaded; freshness {}",
        p.events,
        p.events as f64 / secs,
        p.messages,
        loaded.rows,
        display::percentiles(&p.freshness)
    );
    for problem in &loaded.problems {
        line.push_str(&format!("\n  ! {problem}"));
    }
    line
}
