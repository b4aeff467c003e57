#![no_main]
//! EHLO responses: never panics; a decoded response re-renders to the same response.
use enforcer::smtp::{decode_ehlo_response, DecodeError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match decode_ehlo_response(data) {
        Ok(d) => {
            assert!(d.consumed <= data.len());
            let rendered = d.value.render();
            let again = decode_ehlo_response(&rendered).expect("a rendered EHLO response decodes");
            assert_eq!(again.value, d.value);
        }
        Err(DecodeError::Malformed { offset, .. }) => assert!(offset <= data.len()),
        Err(DecodeError::Incomplete(_)) => {}
    }
});
