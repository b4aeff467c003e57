#![no_main]
//! Any SMTP reply: never panics, consumes no more than it was given, and a decoded reply re-renders
//! to bytes that decode to the same reply.
use enforcer::smtp::{decode_reply, DecodeError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match decode_reply(data) {
        Ok(d) => {
            assert!(d.consumed <= data.len());
            let rendered = d.value.render();
            let again = decode_reply(&rendered).expect("a rendered reply decodes");
            assert_eq!(again.value, d.value);
        }
        Err(DecodeError::Malformed { offset, .. }) => assert!(offset <= data.len()),
        Err(DecodeError::Incomplete(_)) => {}
    }
});
