//! The decoder and batch validation properties the fuzz targets (broker/fuzz) explore, checked
//! on every test run with proptest: no input panics, and valid input survives the broker's
//! changes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use automq_broker::{batch, server};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use proptest::prelude::*;

/// A request header for `api` v`version` followed by arbitrary bytes.
fn framed(api: i16, version: i16, body: &[u8]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(api);
    b.put_i16(version);
    b.put_i32(7); // correlation id
    b.put_i16(-1); // null client id
    b.put_slice(body);
    b.freeze()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_frames_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = server::decode_request(Bytes::from(data));
    }

    #[test]
    fn every_api_with_arbitrary_bodies_never_panics(
        key in 0i16..80,
        version in 0i16..20,
        body in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let _ = server::decode_request(framed(key, version, &body));
    }

    #[test]
    fn arbitrary_record_payloads_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        let records = Bytes::from(data);
        if let Ok(batches) = batch::split(&records) {
            for (header, bytes) in batches {
                prop_assert_eq!(header.size, bytes.len());
            }
        }
    }
}

#[test]
fn a_truncated_valid_request_is_an_error_not_a_panic() {
    // ApiVersions v3 with client software name/version, cut at every length.
    let mut body = BytesMut::new();
    body.put_u8(0); // tagged fields of the header (v2 header)
    body.put_u8(2);
    body.put_slice(b"t");
    body.put_u8(2);
    body.put_slice(b"1");
    body.put_u8(0);
    let whole = framed(ApiKey::ApiVersions as i16, 3, &body);
    assert!(server::decode_request(whole.clone()).is_ok());
    for cut in 0..whole.len() {
        let _ = server::decode_request(whole.slice(..cut));
    }
}
