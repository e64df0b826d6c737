//! Any produce payload must split into validated batches or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let records = bytes::Bytes::copy_from_slice(data);
    if let Ok(batches) = automq_broker::batch::split(&records) {
        for (header, bytes) in batches {
            assert_eq!(header.size, bytes.len());
            let moved = automq_broker::batch::assign(&bytes, 1 << 40, 3);
            assert!(automq_broker::batch::parse(&moved).is_ok(), "assigning offsets must keep a batch valid");
        }
    }
});
