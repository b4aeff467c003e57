#![no_main]
//! Server greetings: never panics; a decoded greeting has code 220 or 554.
use enforcer::smtp::{decode_greeting, DecodeError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match decode_greeting(data) {
        Ok(d) => {
            assert!(d.consumed <= data.len());
            assert!(d.value.code == 220 || d.value.code == 554);
        }
        Err(DecodeError::Malformed { offset, .. }) => assert!(offset <= data.len()),
        Err(DecodeError::Incomplete(_)) => {}
    }
});
