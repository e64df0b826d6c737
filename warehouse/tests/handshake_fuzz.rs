//! The connection phase against hostile bytes, deterministically (seeded generators, no
//! cargo-fuzz): random streams, random packets, and mutations of a valid handshake response,
//! of an SSL request (followed by a garbage TLS handshake) and of an authentication switch
//! answer, plus random commands after a valid login; and proptest properties (fixed seed, so
//! a failure shrinks to a small input) over first packets, edited handshake responses and
//! what follows an SSL request. Each case runs the real server code over an in-memory duplex
//! stream; the server task must end (with or without an error) once the client hangs up, and
//! never panic. Valid logins, plaintext and over TLS, work afterwards.
//!
//! The TLS certificates come from the `openssl` command line tool.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod support;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use automq_storage::object_store::MemoryStore;
use automq_warehouse::engine::Engine;
use automq_warehouse::mysql::auth;
use automq_warehouse::mysql::login::{LoginOutcome, Logins};
use automq_warehouse::mysql::server::{serve, QueryHandler, ServerConfig, Session};
use automq_warehouse::mysql::tls::TlsFiles;
use automq_warehouse::table::{Warehouse, WarehouseConfig};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::RngSeed;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use support::{capabilities, frame, greeting, nonce, response, ssl_request, Outcome, CLIENT_SSL};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

struct Fixture {
    handler: Arc<Engine>,
    plain: ServerConfig,
    tls: ServerConfig,
    client_tls: tokio_rustls::TlsConnector,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    support::make_ca(dir.path(), "ca");
    support::issue(dir.path(), "ca", "server");
    // No refresh interval: a login of an unknown user (most mutated ones) would otherwise wait
    // for the next refresh, and the cases would take seconds instead of milliseconds.
    let config = WarehouseConfig { refresh_interval: Duration::ZERO, ..WarehouseConfig::default() };
    let warehouse =
        Warehouse::open(Arc::new(MemoryStore::new()), config, automq_storage::clock::system()).await.unwrap();
    let handler = Engine::new(warehouse, "rootpw");
    let mut root = Session { user: "root".into(), ..Session::default() };
    for sql in ["CREATE DATABASE shop", "CREATE USER alice IDENTIFIED BY 'alice-pw'", "GRANT ALL ON shop.* TO alice"] {
        handler.query(&mut root, sql).await.unwrap();
    }
    let logins = Arc::new(Logins::with_delays(Duration::ZERO, Duration::ZERO));
    let plain =
        ServerConfig { connect_timeout: Duration::from_secs(2), logins: logins.clone(), ..ServerConfig::default() };
    let files = TlsFiles::load(dir.path().join("server.pem"), dir.path().join("server.key")).unwrap();
    let tls = ServerConfig { tls: Some(Arc::new(files)), ..plain.clone() };
    let client_tls = support::connector(&dir.path().join("ca.pem"));
    Fixture { handler, plain, tls, client_tls, _dir: dir }
}

/// Starts the server on one end of a duplex stream; returns the other end and the task.
fn start(f: &Fixture, tls: bool) -> (DuplexStream, tokio::task::JoinHandle<()>) {
    let (client, server) = tokio::io::duplex(256 << 10);
    let handler = f.handler.clone();
    let config = if tls { f.tls.clone() } else { f.plain.clone() };
    let session = Session { connection_id: 7, client_host: "192.0.2.1".into(), ..Session::default() };
    let task = tokio::spawn(async move {
        // Ok or Err both fine: a hostile client may end the connection either way.
        let _ = serve(server, handler, session, &config).await;
    });
    (client, task)
}

fn mutate(rng: &mut StdRng, mut bytes: Vec<u8>) -> Vec<u8> {
    for _ in 0..rng.random_range(1..=4) {
        let len = bytes.len();
        match rng.random_range(0..6) {
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                bytes[i] ^= 1 << rng.random_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.random_range(0..len);
                bytes[i] = rng.random();
            }
            2 => bytes.truncate(rng.random_range(0..=len)),
            3 => {
                let at = rng.random_range(0..=len);
                let extra: Vec<u8> = (0..rng.random_range(1..40)).map(|_| rng.random()).collect();
                bytes.splice(at..at, extra);
            }
            4 if len > 0 => {
                // Lengths and terminators are where parsers go wrong: hit 0x00 and 0xfb..0xff.
                let i = rng.random_range(0..len);
                bytes[i] = [0x00, 0xfb, 0xfc, 0xfd, 0xfe, 0xff][rng.random_range(0..6)];
            }
            _ if len > 1 => {
                let (a, b) = (rng.random_range(0..len), rng.random_range(0..len));
                let chunk = bytes[a.min(b)..a.max(b)].to_vec();
                bytes.extend_from_slice(&chunk);
            }
            _ => {}
        }
    }
    bytes
}

/// The handshake response that logs alice in for the nonce of `hello`.
fn valid_response(hello: &[u8], lenenc: bool) -> Vec<u8> {
    let scramble = auth::scramble(auth::NATIVE, "alice-pw", &nonce(hello));
    response("alice", &scramble, auth::NATIVE, Some("shop"), lenenc)
}

fn random_bytes(rng: &mut StdRng, max: usize) -> Vec<u8> {
    (0..rng.random_range(0..max)).map(|_| rng.random()).collect()
}

/// Sends `bytes` after the greeting, hangs up, drains what the server says; the server task
/// must then end without panicking.
async fn hostile(f: &Fixture, tls: bool, bytes: impl FnOnce(&[u8]) -> Vec<u8>, case: &str) {
    let (mut client, task) = start(f, tls);
    let hello = greeting(&mut client).await;
    assert_eq!(capabilities(&hello) & CLIENT_SSL != 0, tls, "CLIENT_SSL is offered exactly when TLS is configured");
    let bytes = bytes(&hello);
    // The server may hang up first (a malformed packet ends the connection): not a failure.
    let _ = client.write_all(&bytes).await;
    let _ = client.shutdown().await;
    let mut sink = Vec::new();
    let drained = tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut sink)).await;
    assert!(drained.is_ok(), "{case}: the server did not close the connection");
    match tokio::time::timeout(Duration::from_secs(10), task).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("{case}: the server task failed: {e} (bytes {bytes:02x?})"),
        Err(_) => panic!("{case}: the server task did not end"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_handshakes_close_the_connection_and_never_panic() {
    let f = fixture().await;
    let mut rng = StdRng::seed_from_u64(0x006d_7973_716c);
    let valid = valid_response;
    for i in 0..800 {
        let bytes = random_bytes(&mut rng, 300);
        hostile(&f, i % 2 == 0, |_| bytes, &format!("random stream {i}")).await;
    }
    for i in 0..500 {
        let seq = if rng.random_bool(0.7) { 1 } else { rng.random() };
        let payload = random_bytes(&mut rng, 200);
        hostile(&f, i % 2 == 0, |_| frame(seq, &payload), &format!("random packet {i}")).await;
    }
    for i in 0..1000 {
        let mut local = StdRng::seed_from_u64(rng.random());
        let lenenc = i % 3 == 0;
        let whole_frame = i % 2 == 0;
        hostile(
            &f,
            false,
            |hello| {
                let payload = valid(hello, lenenc);
                if whole_frame {
                    mutate(&mut local, frame(1, &payload))
                } else {
                    frame(1, &mutate(&mut local, payload))
                }
            },
            &format!("mutated handshake response {i}"),
        )
        .await;
    }
    let tls_failures = f.tls.logins.tls_handshakes_failed();
    for i in 0..400 {
        let mut local = StdRng::seed_from_u64(rng.random());
        hostile(
            &f,
            true,
            |_| {
                // A valid SSL request then a garbage "ClientHello", or a mutated SSL request.
                if i % 2 == 0 {
                    let mut b = frame(1, &ssl_request());
                    b.extend(random_bytes(&mut local, 400));
                    b
                } else {
                    mutate(&mut local, frame(1, &ssl_request()))
                }
            },
            &format!("SSL request {i}"),
        )
        .await;
    }
    assert!(
        f.tls.logins.tls_handshakes_failed() >= tls_failures + 200,
        "every garbage ClientHello after a valid SSL request failed the TLS handshake"
    );
    let denied = f.plain.logins.counted(LoginOutcome::Denied);
    for i in 0..400 {
        let mut local = StdRng::seed_from_u64(rng.random());
        hostile(
            &f,
            false,
            |hello| {
                // An unknown plugin makes the server switch the client to native; the answer
                // (sequence 3) is mutated.
                let mut b = frame(1, &response("alice", b"whatever", "dialog", None, false));
                let answer = auth::scramble(auth::NATIVE, "alice-pw", &nonce(hello));
                b.extend(mutate(&mut local, frame(3, &answer)));
                b
            },
            &format!("mutated auth switch answer {i}"),
        )
        .await;
    }
    assert!(f.plain.logins.counted(LoginOutcome::Denied) > denied, "mutated switch answers reached the check");
    let accepted = f.plain.logins.counted(LoginOutcome::Accepted);
    for i in 0..600 {
        let mut local = StdRng::seed_from_u64(rng.random());
        hostile(
            &f,
            false,
            |hello| {
                // Logged in (the OK is sequence 2), a statement prepared, then a random command:
                // COM_STMT_EXECUTE of statement 1 half of the time (binary parameter decoding).
                let mut b = frame(1, &valid(hello, false));
                b.extend(frame(0, b"\x16SELECT ?, ?"));
                let code = if i % 2 == 0 { 0x17 } else { local.random_range(0..0x20) };
                let mut command = vec![code];
                if code == 0x17 {
                    command.extend_from_slice(&1u32.to_le_bytes());
                }
                command.extend(random_bytes(&mut local, 64));
                b.extend(frame(0, &command));
                b
            },
            &format!("random command after login {i}"),
        )
        .await;
    }

    assert_eq!(f.plain.logins.counted(LoginOutcome::Accepted), accepted + 600, "every command case logged in");

    // The server still serves real clients.
    let before = f.plain.logins.counted(LoginOutcome::Accepted);
    login(&f, false, "alice", "alice-pw").await.expect("plaintext login after the fuzzing");
    login(&f, true, "alice", "alice-pw").await.expect("TLS login after the fuzzing");
    login(&f, true, "root", "rootpw").await.expect("root over TLS");
    assert_eq!(login(&f, true, "alice", "wrong").await, Err(1045));
    assert_eq!(f.plain.logins.counted(LoginOutcome::Accepted), before + 3);
}

/// Logs in (switching to TLS first if `tls`), pings, and reports the server's error code if any.
async fn login(f: &Fixture, tls: bool, user: &str, password: &str) -> Result<(), u16> {
    let (mut client, task) = start(f, tls);
    let connector = tls.then_some(&f.client_tls);
    let outcome = support::login(&mut client, connector, user, password, Some("shop")).await;
    tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap();
    match outcome {
        Outcome::LoggedIn(certificate) => {
            assert_eq!(certificate.is_some(), tls);
            Ok(())
        }
        Outcome::Refused(code) => Err(code),
        Outcome::TlsFailed(e) => panic!("TLS handshake failed: {e}"),
    }
}

/// One runtime and one server for every property case (each case is one connection).
fn shared() -> &'static (tokio::runtime::Runtime, Fixture) {
    static SHARED: OnceLock<(tokio::runtime::Runtime, Fixture)> = OnceLock::new();
    SHARED.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let f = rt.block_on(fixture());
        (rt, f)
    })
}

fn property_config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        rng_seed: RngSeed::Fixed(0x7072_6f70),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(property_config())]

    #[test]
    fn any_first_packet_ends_the_connection(seq in any::<u8>(), payload in vec(any::<u8>(), 0..400), tls in any::<bool>()) {
        let (rt, f) = shared();
        rt.block_on(hostile(f, tls, |_| frame(seq, &payload), "first packet"));
    }

    #[test]
    fn edited_handshake_responses_end_the_connection(
        edits in vec((any::<Index>(), any::<u8>()), 1..6),
        cut in proptest::option::of(any::<Index>()),
        lenenc in any::<bool>(),
    ) {
        let (rt, f) = shared();
        let edit = |hello: &[u8]| {
            let mut payload = valid_response(hello, lenenc);
            for (at, byte) in &edits {
                let i = at.index(payload.len());
                payload[i] = *byte;
            }
            if let Some(cut) = &cut {
                payload.truncate(cut.index(payload.len() + 1));
            }
            frame(1, &payload)
        };
        rt.block_on(hostile(f, false, edit, "edited handshake response"));
    }

    #[test]
    fn anything_after_an_ssl_request_ends_the_connection(garbage in vec(any::<u8>(), 0..600)) {
        let (rt, f) = shared();
        let bytes = |_: &[u8]| [frame(1, &ssl_request()), garbage.clone()].concat();
        rt.block_on(hostile(f, true, bytes, "garbage after an SSL request"));
    }
}
