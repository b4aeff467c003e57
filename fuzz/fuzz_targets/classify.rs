#![no_main]
//! The whole classifier over arbitrary mixed input: never panics and keeps its invariants.
use enforcer::classify::{classify_bytes, Status, SupportOverrides};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let as_of = time::Date::from_calendar_date(2025, time::Month::June, 1).expect("valid date");
    if let Ok(c) = classify_bytes(data, as_of, &SupportOverrides::new()) {
        assert!((0.0..=1.0).contains(&c.confidence));
        assert_eq!(
            c.persistently_vulnerable,
            matches!(c.status, Status::EndOfLife | Status::Outdated)
        );
    }
});
