//! The server side of a SCRAM exchange and the PLAIN token format on arbitrary client
//! messages: never a panic, and never a success without the password's proof.
#![no_main]

use automq_broker::security::scram::{Credential, Mechanism, ScramServer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Split the input into a client-first and a client-final message.
    let cut = data.first().map_or(0, |b| *b as usize).min(data.len().saturating_sub(1));
    let (first, last) = data.split_at(cut.min(data.len()));
    let (Ok(first), Ok(last)) = (std::str::from_utf8(first), std::str::from_utf8(last)) else { return };
    let _ = ScramServer::user_of(first);
    for mechanism in [Mechanism::Sha256, Mechanism::Sha512] {
        let credential = Credential::from_password(mechanism, "password", b"salt".to_vec(), 4096);
        let mut server = ScramServer::new(mechanism);
        if server.first(first, Some(credential), "server-nonce").is_ok() {
            // Random bytes cannot carry a valid proof.
            assert!(server.last(last).is_err(), "an exchange succeeded without the password");
        }
    }
});
