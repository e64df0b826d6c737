//! Any frame body must decode to a request or an error, never a panic or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = automq_broker::server::decode_request(bytes::Bytes::copy_from_slice(data));
});
