#![no_main]
//! The greeting probe's SMTP dialogue fed any bytes, split at any points: never panics, never reads
//! past its byte budget, sends EHLO only after a complete 2xx greeting and QUIT only once.
use enforcer::evidence::probe::session::{Session, Step, MAX_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the read size, so the same text arrives split in many ways.
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(split % 64) + 1;
    let mut s = Session::new("probe.example.net");
    let (mut fed, mut ehlo, mut done) = (0usize, 0, 0);
    for piece in rest.chunks(chunk) {
        fed += piece.len();
        match s.feed(piece) {
            Ok(Step::Read) => {}
            Ok(Step::Send(bytes)) => {
                assert_eq!(bytes, b"EHLO probe.example.net\r\n");
                ehlo += 1;
            }
            Ok(Step::Done(quit, t)) => {
                assert_eq!(quit, b"QUIT\r\n");
                assert!(!t.banner.is_empty() && t.banner[0].starts_with('2'));
                assert!(t.text().len() <= MAX_BYTES + t.banner.len() + t.ehlo.len());
                done += 1;
            }
            Err(_) => {
                assert!(fed <= MAX_BYTES + chunk);
                return;
            }
        }
    }
    assert!(ehlo <= 1 && done <= 1 && done <= ehlo);
});
