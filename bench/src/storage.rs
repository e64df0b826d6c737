//! Storage benchmark: both WALs against the machine's own limits, measured side by side.
//!
//! 1. `fio` on the benchmark directory: sequential writes with `fdatasync` after each write,
//!    1 MiB blocks (the disk's fsync bandwidth) and 4 KiB / 64 KiB blocks (its fsync latency).
//! 2. The file WAL on the same directory: throughput with many concurrent appenders, and
//!    acknowledgement latency of one appender at 4 KiB and 64 KiB.
//! 3. The S3 WAL against a local SeaweedFS: throughput, acknowledgement latency, and object
//!    store requests per MiB and per batch, for 1, 10 and 100 streams.
//!
//! Prints a table with the ratios the targets are stated in. Run via `bench/storage.sh`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use automq_storage::clock;
use automq_storage::object_store::{MetricsStore, ObjectStoreMetrics, S3Store, SharedStore};
use automq_storage::testing::{s3_config_at, SeaweedFs};
use automq_storage::wal::{FileWal, FileWalConfig, S3Wal, S3WalConfig, Wal, WalRecord};
use bytes::Bytes;
use parking_lot::Mutex;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct Args {
    dir: PathBuf,
    /// Bytes written in each throughput run.
    volume: u64,
}

fn parse_args() -> Result<Args, BoxError> {
    let mut dir = None;
    let mut volume = 1u64 << 30;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--dir" => dir = args.next().map(PathBuf::from),
            "--quick" => volume = 256 << 20,
            "--help" | "-h" => {
                println!("storage-bench [--dir DIR] [--quick]\n  --dir    directory on the disk to measure (default: a temporary directory under ./target)\n  --quick  write 256 MiB per throughput run instead of 1 GiB");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)").into()),
        }
    }
    let dir = match dir {
        Some(d) => d,
        None => std::env::current_dir()?.join("target").join("bench-storage"),
    };
    std::fs::create_dir_all(&dir)?;
    Ok(Args { dir, volume })
}

/// Latency percentiles of a sample, in milliseconds.
fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort_unstable();
    let at = |q: f64| samples.get(((samples.len() as f64 - 1.0) * q).round() as usize).map(|d| d.as_secs_f64() * 1e3);
    (at(0.50).unwrap_or(f64::NAN), at(0.99).unwrap_or(f64::NAN))
}

struct FioResult {
    mib_per_s: f64,
    sync_p50_ms: f64,
    sync_p99_ms: f64,
}

/// Sequential writes of `bs` bytes, each followed by fdatasync, over a laid-out file.
fn fio(dir: &Path, bs: &str, size: &str) -> Result<FioResult, BoxError> {
    let file = dir.join("fio.dat");
    let out = Command::new("fio")
        .args(["--name=wal", "--rw=write", "--ioengine=psync", "--fdatasync=1", "--direct=0", "--output-format=json"])
        .arg(format!("--bs={bs}"))
        .arg(format!("--size={size}"))
        .arg(format!("--filename={}", file.display()))
        .output()
        .map_err(|e| format!("cannot run fio ({e}); bench/storage.sh installs it"))?;
    if !out.status.success() {
        return Err(format!("fio failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let _ = std::fs::remove_file(&file);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let job = &json["jobs"][0];
    let pct = |p: &str| job["sync"]["lat_ns"]["percentile"][p].as_f64().unwrap_or(f64::NAN) / 1e6;
    Ok(FioResult {
        mib_per_s: job["write"]["bw_bytes"].as_f64().unwrap_or(f64::NAN) / (1024.0 * 1024.0),
        sync_p50_ms: pct("50.000000"),
        sync_p99_ms: pct("99.000000"),
    })
}

struct WalRun {
    mib_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// `appenders` tasks append `record` bytes each, round robin over `streams` streams, until
/// `volume` bytes were acknowledged; a trimmer keeps the WAL trimmed behind the oldest
/// record still waiting, as the stream engine's uploads would.
async fn drive(
    wal: Arc<dyn Wal>,
    appenders: usize,
    streams: u64,
    record: usize,
    volume: u64,
    trim: bool,
) -> Result<WalRun, BoxError> {
    let pending: Arc<Mutex<BTreeSet<u64>>> = Arc::default();
    let last: Arc<Mutex<u64>> = Arc::default();
    let payload = Bytes::from(vec![0xA5u8; record]);
    let per_task = volume / record as u64 / appenders as u64;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let trimmer = {
        let (wal, pending, last, stop) = (wal.clone(), pending.clone(), last.clone(), stop.clone());
        tokio::spawn(async move {
            while trim && !stop.load(std::sync::atomic::Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let point = match pending.lock().first() {
                    Some(0) => continue,
                    Some(p) => p - 1,
                    None => *last.lock(),
                };
                let _ = wal.trim(point).await;
            }
        })
    };
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..appenders {
        let (wal, pending, last, payload) = (wal.clone(), pending.clone(), last.clone(), payload.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_task as usize);
            for i in 0..per_task {
                let stream_id = (t as u64 * per_task + i) % streams;
                let record =
                    WalRecord { stream_id, epoch: 1, base_offset: i, end_offset: i + 1, payload: payload.clone() };
                let begun = Instant::now();
                let append = {
                    let mut p = pending.lock();
                    let append = wal.append(record)?;
                    p.insert(append.position);
                    append
                };
                let position = append.position;
                append.durable().await?;
                latencies.push(begun.elapsed());
                pending.lock().remove(&position);
                let mut l = last.lock();
                *l = (*l).max(position);
            }
            Ok::<_, automq_storage::Error>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await??);
    }
    let elapsed = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    trimmer.await?;
    let bytes = latencies.len() as f64 * record as f64;
    let (p50_ms, p99_ms) = percentiles(latencies);
    Ok(WalRun { mib_per_s: bytes / (1024.0 * 1024.0) / elapsed.as_secs_f64(), p50_ms, p99_ms })
}

fn file_wal(dir: &Path) -> Result<Arc<dyn Wal>, BoxError> {
    let _ = std::fs::remove_dir_all(dir);
    let (wal, recovered) = FileWal::open(FileWalConfig { max_segments: 8, ..FileWalConfig::new(dir) })?;
    assert!(recovered.is_empty());
    Ok(Arc::new(wal))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = parse_args()?;
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!("storage benchmark in {} ({:.0} MiB per throughput run)\n", args.dir.display(), mib(args.volume));

    // 1 + 2. Bandwidth: fio and the file WAL alternately, three rounds, medians (the disk is
    //        shared and noisy; alternating keeps each pair close in time). 4 MiB is the file
    //        WAL's largest group commit; 1 MiB is also tried and the better fio figure is the
    //        anchor. A first WAL pass lays out the segment files, as fio lays out its file.
    eprintln!("[1/4] fio + file WAL bandwidth: 3 rounds of fio (4 MiB, 1 MiB fdatasync) and 64 appenders x 64 KiB");
    let wal_dir = args.dir.join("file-wal");
    let wal = file_wal(&wal_dir)?;
    drive(wal.clone(), 64, 16, 64 << 10, 512 << 20, true).await?;
    let size = format!("{}", args.volume.min(1 << 30));
    let (mut fio_best, mut wal_bw, mut wal_p50, mut wal_p99) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..3 {
        let f4 = fio(&args.dir, "4m", &size)?.mib_per_s;
        let f1 = fio(&args.dir, "1m", &size)?.mib_per_s;
        fio_best.push(f4.max(f1));
        let run = drive(wal.clone(), 64, 16, 64 << 10, args.volume, true).await?;
        wal_bw.push(run.mib_per_s);
        wal_p50.push(run.p50_ms);
        wal_p99.push(run.p99_ms);
    }
    wal.close().await?;
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let fio_bw = median(fio_best);
    let file_tp = WalRun { mib_per_s: median(wal_bw), p50_ms: median(wal_p50), p99_ms: median(wal_p99) };

    eprintln!("[2/4] fio: fdatasync latency at 64 KiB and 4 KiB");
    let fio_64k = fio(&args.dir, "64k", "128m")?;
    let fio_4k = fio(&args.dir, "4k", "16m")?;

    // 3. File WAL latency: one appender at a time, as fio does.
    eprintln!("[3/4] file WAL: acknowledgement latency, one appender, 64 KiB and 4 KiB");
    let wal = file_wal(&wal_dir)?;
    drive(wal.clone(), 1, 1, 64 << 10, 64 << 20, true).await?;
    let file_64k = drive(wal.clone(), 1, 1, 64 << 10, 128 << 20, true).await?;
    let file_4k = drive(wal.clone(), 1, 1, 4 << 10, 16 << 20, true).await?;
    wal.close().await?;
    let _ = std::fs::remove_dir_all(&wal_dir);

    // 4. S3 WAL against SeaweedFS on loopback.
    eprintln!("[4/4] S3 WAL on SeaweedFS: 1, 10 and 100 streams, 1024 appenders x 16 KiB records");
    let seaweed = match std::env::var("AUTOMQ_TEST_S3_ENDPOINT") {
        Ok(endpoint) => (None, endpoint),
        Err(_) => {
            let server = SeaweedFs::start()?;
            let endpoint = server.endpoint.clone();
            (Some(server), endpoint)
        }
    };
    let mut s3_rows = Vec::new();
    for streams in [1u64, 10, 100] {
        let raw = S3Store::connect(s3_config_at(&seaweed.1, "bench")).await;
        // The server takes a moment to accept its first request.
        let mut tries = 0;
        while let Err(e) = raw.ensure_bucket().await {
            tries += 1;
            if tries > 100 {
                return Err(e.into());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let metrics = ObjectStoreMetrics::unregistered();
        let store: SharedStore = Arc::new(MetricsStore::new(Arc::new(raw), metrics.clone()));
        let (wal, _) = S3Wal::open(store.clone(), S3WalConfig::new(1), clock::system()).await?;
        let wal: Arc<dyn Wal> = Arc::new(wal);
        let ops = ["put", "put_if_absent", "get", "get_range", "head", "delete", "list"];
        let requests = |m: &ObjectStoreMetrics| ops.iter().map(|op| m.request_count(op)).sum::<u64>();
        let (puts_before, requests_before) = (metrics.request_count("put_if_absent"), requests(&metrics));
        let volume = args.volume / 4;
        // Not trimmed, so every group commit is still there to count afterwards.
        let run = drive(wal.clone(), 1024, streams, 16 << 10, volume, false).await?;
        wal.close().await?;
        let puts = metrics.request_count("put_if_absent") - puts_before;
        let total_requests = requests(&metrics) - requests_before;
        let batches = store.list("wal/1/").await?.iter().filter(|o| !o.key.ends_with("/start")).count() as u64;
        s3_rows.push((streams, run, puts, batches, total_requests, mib(volume)));
    }
    drop(seaweed);

    println!("{:<44} {:>12} {:>10} {:>10}", "", "MiB/s", "p50 ms", "p99 ms");
    println!("{:<44} {:>12.1} {:>10} {:>10}", "fio seq write + fdatasync, best of 4/1 MiB", fio_bw, "-", "-");
    println!(
        "{:<44} {:>12.1} {:>10.3} {:>10.3}",
        "fio seq write + fdatasync, 64 KiB", fio_64k.mib_per_s, fio_64k.sync_p50_ms, fio_64k.sync_p99_ms
    );
    println!(
        "{:<44} {:>12.1} {:>10.3} {:>10.3}",
        "fio seq write + fdatasync, 4 KiB", fio_4k.mib_per_s, fio_4k.sync_p50_ms, fio_4k.sync_p99_ms
    );
    println!(
        "{:<44} {:>12.1} {:>10.3} {:>10.3}",
        "file WAL, 64 appenders x 64 KiB (median of 3)", file_tp.mib_per_s, file_tp.p50_ms, file_tp.p99_ms
    );
    println!(
        "{:<44} {:>12.1} {:>10.3} {:>10.3}",
        "file WAL, 1 appender x 64 KiB", file_64k.mib_per_s, file_64k.p50_ms, file_64k.p99_ms
    );
    println!(
        "{:<44} {:>12.1} {:>10.3} {:>10.3}",
        "file WAL, 1 appender x 4 KiB", file_4k.mib_per_s, file_4k.p50_ms, file_4k.p99_ms
    );
    for (streams, run, _, _, _, _) in &s3_rows {
        println!(
            "{:<44} {:>12.1} {:>10.3} {:>10.3}",
            format!("S3 WAL (SeaweedFS), {streams} streams"),
            run.mib_per_s,
            run.p50_ms,
            run.p99_ms
        );
    }
    println!();
    println!("ratios (targets in brackets)");
    println!("  file WAL throughput / fio fdatasync bandwidth (medians) {:.2}  [>= 0.70]", file_tp.mib_per_s / fio_bw);
    println!(
        "  file WAL p99 / fio fdatasync p99, 64 KiB              {:.2}  [<= 2.00]",
        file_64k.p99_ms / fio_64k.sync_p99_ms
    );
    println!(
        "  file WAL p99 / fio fdatasync p99, 4 KiB               {:.2}  [<= 2.00]",
        file_4k.p99_ms / fio_4k.sync_p99_ms
    );
    for (streams, _, puts, batches, requests, written) in &s3_rows {
        // The epoch's start marker was written before counting began: every PUT counted is
        // a group commit (or a retry of one).
        let data_puts = *puts;
        println!(
            "  S3 WAL, {streams:>3} streams: PUTs per batch {:.2} [<= 1.00]; requests per MiB {:.3} ({requests} requests, {batches} batches, {written:.0} MiB)",
            data_puts as f64 / (*batches).max(1) as f64,
            *requests as f64 / written.max(f64::MIN_POSITIVE),
        );
    }
    Ok(())
}
