#![no_main]
//! EHLO/HELO command lines: never panics; a decoded command re-renders to the same command.
use enforcer::smtp::{decode_ehlo_command, DecodeError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match decode_ehlo_command(data) {
        Ok(d) => {
            assert!(d.consumed <= data.len());
            assert!(!d.value.domain.is_empty());
            let rendered = d.value.render();
            let again = decode_ehlo_command(&rendered).expect("a rendered command decodes");
            assert_eq!(again.value, d.value);
        }
        Err(DecodeError::Malformed { offset, .. }) => assert!(offset <= data.len()),
        Err(DecodeError::Incomplete(_)) => {}
    }
});
