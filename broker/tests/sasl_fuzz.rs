//! The SASL exchange under hostile input, on a real listener: seeded random and mutated
//! SaslHandshake / SaslAuthenticate traffic (garbage frames, random tokens, client-first and
//! client-final messages with bytes flipped, cut or duplicated, requests out of order). Every
//! case must end with the broker closing the connection without ever treating the client as
//! authenticated (a request sent afterwards is never answered), and a real SCRAM login must
//! keep working throughout (the process neither panics nor stops serving). The pure parsers
//! are also a cargo-fuzz target (broker/fuzz, `sasl_exchange`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::Duration;

use automq_broker::config::BrokerConfig;
use automq_broker::security::scram::{Mechanism, ScramClient};
use automq_broker::RunningBroker;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, MetadataRequest, RequestHeader, ResponseHeader, SaslAuthenticateRequest, SaslAuthenticateResponse,
    SaslHandshakeRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const USER: &str = "admin";
const PASSWORD: &str = "fuzz-secret";

async fn start() -> (RunningBroker, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let any = "127.0.0.1:0".parse().unwrap();
    let mut config = BrokerConfig::embedded(dir.path(), any, any);
    config.sasl_mechanisms = vec!["PLAIN".into(), "SCRAM-SHA-256".into(), "SCRAM-SHA-512".into()];
    config.sasl_bootstrap_user = Some(USER.into());
    config.sasl_bootstrap_password = Some(PASSWORD.into());
    config.connections_max_idle_ms = 1_000;
    (RunningBroker::start(config).await.unwrap(), dir)
}

fn frame<R: Encodable>(key: ApiKey, version: i16, correlation_id: i32, body: &R) -> Bytes {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("sasl-fuzz")));
    let mut b = BytesMut::new();
    header.encode(&mut b, key.request_header_version(version)).unwrap();
    body.encode(&mut b, version).unwrap();
    let mut f = BytesMut::new();
    f.put_i32(b.len() as i32);
    f.put(b);
    f.freeze()
}

fn handshake(mechanism: &str, correlation_id: i32) -> Bytes {
    let r = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_string(mechanism.to_string()));
    frame(ApiKey::SaslHandshake, 1, correlation_id, &r)
}

fn authenticate(token: Vec<u8>, correlation_id: i32) -> Bytes {
    frame(
        ApiKey::SaslAuthenticate,
        2,
        correlation_id,
        &SaslAuthenticateRequest::default().with_auth_bytes(token.into()),
    )
}

/// The next response frame: (correlation id, body), or None at EOF / error / timeout.
async fn read_frame(s: &mut TcpStream) -> Option<(i32, Bytes)> {
    let read = async {
        let size = s.read_i32().await.ok()?;
        let mut buf = vec![0u8; usize::try_from(size).ok()?];
        s.read_exact(&mut buf).await.ok()?;
        Some(Bytes::from(buf))
    };
    let mut buf = tokio::time::timeout(Duration::from_secs(10), read).await.ok()??;
    let header = ResponseHeader::decode(&mut buf, 1).ok()?; // SaslAuthenticate v2: flexible header
    Some((header.correlation_id, buf))
}

/// A real SCRAM login; panics if it fails.
async fn login(addr: std::net::SocketAddr, mechanism: Mechanism) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&handshake(mechanism.name(), 1)).await.unwrap();
    read_frame(&mut s).await.expect("handshake answered");
    let mut client = ScramClient::new(mechanism, USER, PASSWORD);
    s.write_all(&authenticate(client.first().into_bytes(), 2)).await.unwrap();
    let (_, mut b) = read_frame(&mut s).await.expect("client-first answered");
    let r = SaslAuthenticateResponse::decode(&mut b, 2).unwrap();
    assert_eq!(r.error_code, 0, "a valid client-first was refused: {:?}", r.error_message);
    let last = client.last(std::str::from_utf8(&r.auth_bytes).unwrap()).unwrap();
    s.write_all(&authenticate(last.into_bytes(), 3)).await.unwrap();
    let (_, mut b) = read_frame(&mut s).await.expect("client-final answered");
    let r = SaslAuthenticateResponse::decode(&mut b, 2).unwrap();
    assert_eq!(r.error_code, 0, "a valid login was refused: {:?}", r.error_message);
    client.verify(std::str::from_utf8(&r.auth_bytes).unwrap()).unwrap();
}

fn mutate(rng: &mut StdRng, mut data: Vec<u8>) -> Vec<u8> {
    for _ in 0..rng.random_range(1..4) {
        match rng.random_range(0..5) {
            0 if !data.is_empty() => {
                let i = rng.random_range(0..data.len());
                data[i] ^= 1 << rng.random_range(0..8);
            }
            1 if !data.is_empty() => data.truncate(rng.random_range(0..data.len())),
            2 => {
                let i = rng.random_range(0..=data.len());
                let junk: Vec<u8> = (0..rng.random_range(1..16)).map(|_| rng.random()).collect();
                data.splice(i..i, junk);
            }
            3 if !data.is_empty() => {
                let i = rng.random_range(0..data.len());
                let j = rng.random_range(i..data.len());
                let copy = data[i..=j].to_vec();
                data.extend(copy);
            }
            _ => data.insert(0, b','),
        }
    }
    data
}

/// One hostile exchange; returns after the broker closed the connection, having checked that
/// a Metadata request sent at the end was never answered.
async fn hostile(addr: std::net::SocketAddr, rng: &mut StdRng, case: u32) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut out: Vec<Bytes> = Vec::new();
    let mechanism = [Mechanism::Sha256, Mechanism::Sha512][rng.random_range(0..2)];
    match case % 7 {
        // Garbage instead of a request.
        0 => {
            let mut junk = vec![0u8; rng.random_range(0..200)];
            rng.fill_bytes(&mut junk);
            let mut f = BytesMut::new();
            f.put_i32(junk.len() as i32);
            f.put_slice(&junk);
            out.push(f.freeze());
        }
        // A valid handshake, then a random token.
        1 => {
            out.push(handshake(if rng.random() { "PLAIN" } else { mechanism.name() }, 1));
            let mut token = vec![0u8; rng.random_range(0..300)];
            rng.fill_bytes(&mut token);
            out.push(authenticate(token, 2));
        }
        // A mutated client-first.
        2 => {
            out.push(handshake(mechanism.name(), 1));
            let first = ScramClient::new(mechanism, USER, PASSWORD).first().into_bytes();
            out.push(authenticate(mutate(rng, first), 2));
            out.push(authenticate(b"c=biws,r=x,p=AAAA".to_vec(), 3));
        }
        // A valid client-first answered with a mutated client-final (needs the server-first).
        3 => {
            s.write_all(&handshake(mechanism.name(), 1)).await.unwrap();
            read_frame(&mut s).await.expect("handshake answered");
            let mut client = ScramClient::new(mechanism, USER, PASSWORD);
            s.write_all(&authenticate(client.first().into_bytes(), 2)).await.unwrap();
            let (_, mut b) = read_frame(&mut s).await.expect("client-first answered");
            let r = SaslAuthenticateResponse::decode(&mut b, 2).unwrap();
            let last = client.last(std::str::from_utf8(&r.auth_bytes).unwrap()).unwrap();
            let mutated = mutate(rng, last.clone().into_bytes());
            if mutated == last.as_bytes() {
                s.write_all(&authenticate(b"c=biws".to_vec(), 3)).await.unwrap();
            } else {
                out.push(authenticate(mutated, 3));
            }
        }
        // A mutated PLAIN token (a wrong password at best).
        4 => {
            out.push(handshake("PLAIN", 1));
            out.push(authenticate(mutate(rng, format!("\0{USER}\0{PASSWORD}").into_bytes()), 2));
        }
        // Out of order: authenticate first, or a second handshake, or an unknown mechanism.
        5 => match rng.random_range(0..3) {
            0 => out.push(authenticate(b"\0admin\0x".to_vec(), 1)),
            1 => {
                out.push(handshake(mechanism.name(), 1));
                out.push(handshake(mechanism.name(), 2));
            }
            _ => {
                let name: String = (0..rng.random_range(0..20)).map(|_| rng.random_range(b' '..b'~') as char).collect();
                out.push(handshake(&name, 1));
            }
        },
        // A cut frame: the broker waits for the rest, then the idle limit closes it.
        _ => {
            let f = handshake(mechanism.name(), 1);
            out.push(f.slice(..rng.random_range(1..f.len())));
        }
    }
    for f in &out {
        if s.write_all(f).await.is_err() {
            break;
        }
    }
    // Whatever happened, this must never be answered.
    let _ = s.write_all(&frame(ApiKey::Metadata, 1, 99, &MetadataRequest::default().with_topics(Some(vec![])))).await;
    // Handshake and authenticate answers are fine; a Metadata answer is not.
    while let Some((correlation_id, _)) = read_frame(&mut s).await {
        assert_ne!(correlation_id, 99, "case {case}: a request was answered without authentication");
    }
    let mut rest = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(10), s.read(&mut rest)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "case {case}: the broker left the connection open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_sasl_exchanges_are_closed_and_never_authenticate() {
    let (broker, _dir) = start().await;
    let addr = broker.kafka_addr;
    let seed = std::env::var("SASL_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5a51_u64);
    println!("seed {seed} (SASL_FUZZ_SEED to repeat)");
    let mut rng = StdRng::seed_from_u64(seed);
    login(addr, Mechanism::Sha512).await;
    for case in 0..84u32 {
        hostile(addr, &mut rng, case).await;
        // A valid login resets the per-address slow-down, and proves the broker still serves.
        if case % 3 == 2 {
            login(addr, if case % 2 == 0 { Mechanism::Sha256 } else { Mechanism::Sha512 }).await;
        }
    }
    login(addr, Mechanism::Sha256).await;
    broker.shutdown().await.unwrap();
}
