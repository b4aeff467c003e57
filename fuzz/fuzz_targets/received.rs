#![no_main]
//! Received field values: never panics; a parsed value re-renders to one that parses the same.
use enforcer::smtp::{parse_received, DecodeError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse_received(data) {
        Ok(r) => {
            let rendered = r.render();
            if !rendered.trim_ascii().is_empty() {
                let again = parse_received(&rendered).expect("a rendered Received value parses");
                assert_eq!(again, r);
            }
        }
        Err(DecodeError::Malformed { offset, .. }) => assert!(offset <= data.len()),
        Err(DecodeError::Incomplete(_)) => panic!("parse_received works on complete values"),
    }
});
