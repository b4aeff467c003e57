#![no_main]
//! Header blocks: never panics; every field's name and value lie inside the consumed input.
use enforcer::smtp::{decode_header_block, unfold, DecodeError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match decode_header_block(data) {
        Ok(d) => {
            assert!(d.consumed <= data.len());
            for f in &d.value {
                assert!(!f.name.is_empty());
                assert!(f.value.len() < d.consumed);
                let u = unfold(f.value);
                assert!(!u.contains(&b'\n'));
            }
        }
        Err(DecodeError::Malformed { offset, .. }) => assert!(offset <= data.len()),
        Err(DecodeError::Incomplete(_)) => {}
    }
});
