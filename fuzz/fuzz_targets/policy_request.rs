#![no_main]
//! Any byte stream from a policy client: the request decoder never panics, stays within its limit and
//! a decoded request re-encodes to bytes that decode to the same request.
use bytes::BytesMut;
use enforcer::evidence::policy::codec::Decoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dec = Decoder::new(1024);
    let mut buf = BytesMut::from(data);
    for _ in 0..data.len() + 1 {
        let before = buf.len();
        match dec.decode(&mut buf) {
            Ok(Some(req)) => {
                assert!(buf.len() < before);
                let mut again = BytesMut::new();
                req.encode(&mut again);
                let round = Decoder::new(usize::MAX).decode(&mut again).unwrap().unwrap();
                assert_eq!(round, req);
            }
            Ok(None) | Err(_) => break,
        }
    }
});
