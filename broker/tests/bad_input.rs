//! Hostile and broken input: garbage, truncated, oversized and malformed frames close the
//! offending connection (as Kafka does) and never stop the broker serving other clients.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::Duration;

use automq_broker::config::BrokerConfig;
use automq_broker::RunningBroker;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn start() -> (RunningBroker, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let any = "127.0.0.1:0".parse().unwrap();
    let mut config = BrokerConfig::embedded(dir.path(), any, any);
    config.max_request_bytes = 1 << 20;
    config.connections_max_idle_ms = 1_000;
    (RunningBroker::start(config).await.unwrap(), dir)
}

fn api_versions_frame(version: i16, correlation_id: i32) -> Bytes {
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::ApiVersions as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("bad-input-test")));
    let mut body = BytesMut::new();
    header.encode(&mut body, ApiKey::ApiVersions.request_header_version(version.min(3))).unwrap();
    if version <= 3 {
        ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("t"))
            .with_client_software_version(StrBytes::from_static_str("1"))
            .encode(&mut body, version)
            .unwrap();
    }
    let mut frame = BytesMut::new();
    frame.put_i32(body.len() as i32);
    frame.put(body);
    frame.freeze()
}

/// Sends a well-formed ApiVersions v`version` request and returns the decoded response.
async fn api_versions(addr: std::net::SocketAddr, version: i16) -> (i32, ApiVersionsResponse) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&api_versions_frame(version, 42)).await.unwrap();
    let size = s.read_i32().await.unwrap();
    let mut buf = vec![0u8; size as usize];
    s.read_exact(&mut buf).await.unwrap();
    let mut buf = Bytes::from(buf);
    // ApiVersions responses always use header v0.
    let header = ResponseHeader::decode(&mut buf, 0).unwrap();
    let reply_version = if version <= 3 { version } else { 0 };
    let response = ApiVersionsResponse::decode(&mut buf, reply_version).unwrap();
    assert!(!buf.has_remaining(), "trailing bytes in the response");
    (header.correlation_id, response)
}

/// True when the broker closed the connection (EOF) within a few seconds.
async fn closed_by_broker(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await, Ok(Ok(0)) | Ok(Err(_)))
}

#[tokio::test]
async fn well_formed_requests_are_answered() {
    let (broker, _dir) = start().await;
    let (correlation_id, r) = api_versions(broker.kafka_addr, 3).await;
    assert_eq!((correlation_id, r.error_code), (42, 0));
    assert!(r.api_keys.iter().any(|k| k.api_key == ApiKey::Produce as i16));
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_unknown_api_versions_version_gets_the_supported_list_in_v0() {
    let (broker, _dir) = start().await;
    let (correlation_id, r) = api_versions(broker.kafka_addr, 99).await;
    assert_eq!(correlation_id, 42);
    assert_eq!(r.error_code, 35, "UNSUPPORTED_VERSION");
    assert!(r.api_keys.iter().any(|k| k.api_key == ApiKey::Fetch as i16), "the answer lists what is supported");
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_frames_close_only_their_connection() {
    let (broker, _dir) = start().await;
    let addr = broker.kafka_addr;
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("negative size", (-5i32).to_be_bytes().to_vec()),
        ("oversized", (512i32 << 20).to_be_bytes().to_vec()),
        ("shorter than a header", [4i32.to_be_bytes().to_vec(), vec![0, 18, 0, 3]].concat()),
        ("unknown api key", {
            let mut f = api_versions_frame(3, 1).to_vec();
            f[4..6].copy_from_slice(&999i16.to_be_bytes());
            f
        }),
        ("unsupported produce version", {
            let mut f = api_versions_frame(3, 1).to_vec();
            f[4..6].copy_from_slice(&(ApiKey::Produce as i16).to_be_bytes());
            f[6..8].copy_from_slice(&1i16.to_be_bytes());
            f
        }),
        ("malformed body", {
            // A Metadata v12 header followed by a body that ends mid-field.
            let mut f = api_versions_frame(3, 1).to_vec();
            f[4..6].copy_from_slice(&(ApiKey::Metadata as i16).to_be_bytes());
            f[6..8].copy_from_slice(&12i16.to_be_bytes());
            f.extend_from_slice(&[0xff, 0xff, 0xff]);
            let size = (f.len() - 4) as i32;
            f[..4].copy_from_slice(&size.to_be_bytes());
            f
        }),
    ];
    // kafka-protocol pre-allocates arrays from the wire length: a Metadata v0 request
    // claiming 2^31-1 topics in a dozen bytes must not abort the broker (see src/alloc.rs).
    let mut forged = Vec::new();
    for part in [
        &3i16.to_be_bytes()[..],
        &0i16.to_be_bytes(),
        &9i32.to_be_bytes(),
        &(-1i16).to_be_bytes(),
        &i32::MAX.to_be_bytes(),
    ] {
        forged.extend_from_slice(part);
    }
    cases.push(("forged array length", [(forged.len() as i32).to_be_bytes().to_vec(), forged].concat()));
    // Random bytes, with a plausible size prefix.
    let noise: Vec<u8> = (0..300u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    cases.push(("random body", [296i32.to_be_bytes().to_vec(), noise[..296].to_vec()].concat()));
    for (name, bytes) in cases {
        let mut bad = TcpStream::connect(addr).await.unwrap();
        bad.write_all(&bytes).await.unwrap();
        assert!(closed_by_broker(&mut bad).await, "{name}: the connection should be closed");
        // Meanwhile another client is served normally.
        let (_, r) = api_versions(addr, 3).await;
        assert_eq!(r.error_code, 0, "{name}: the broker still serves others");
    }
    // A frame that never completes holds only its own connection.
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled.write_all(&100i32.to_be_bytes()).await.unwrap();
    stalled.write_all(&[0, 18, 0]).await.unwrap();
    let (_, r) = api_versions(addr, 3).await;
    assert_eq!(r.error_code, 0);
    drop(stalled);
    let metrics = reqwest_free_get(broker.http_addr, "/metrics").await;
    let rejected: f64 = metrics
        .lines()
        .find(|l| l.starts_with("automq_broker_rejected_frames_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(rejected >= 8.0, "rejected frames are counted: {rejected}");
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn many_bad_clients_at_once_do_not_starve_a_good_one() {
    let (broker, _dir) = start().await;
    let addr = broker.kafka_addr;
    let mut bad = Vec::new();
    for i in 0..50 {
        bad.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let _ = s.write_all(&[(i % 256) as u8; 7]).await;
            closed_by_broker(&mut s).await
        }));
    }
    let (_, r) = api_versions(addr, 2).await;
    assert_eq!(r.error_code, 0);
    for b in bad {
        // 7 bytes: a size prefix and a partial header, then nothing. The broker waits for the
        // rest only until connections.max.idle.ms (short here), then closes.
        assert!(b.await.unwrap(), "a stalled connection is closed after the idle limit");
    }
    broker.shutdown().await.unwrap();
}

/// A tiny HTTP/1.1 GET (no client library needed for one request).
async fn reqwest_free_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}
