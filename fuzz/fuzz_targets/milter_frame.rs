#![no_main]
//! Any byte stream from a milter peer: the frame decoder never panics, never consumes bytes while
//! waiting for more, never yields a frame beyond its limit, and every decoded command re-encodes to a
//! frame that decodes to the same command.
use enforcer::evidence::milter::codec::{encode_command, Decoder, FrameError};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dec = Decoder::new(4096);
    let mut buf = BytesMut::from(data);
    // Every decoded frame consumes at least 5 bytes, so this ends.
    loop {
        let before = buf.len();
        match dec.decode(&mut buf) {
            Ok(Some(cmd)) => {
                assert!(buf.len() + 5 <= before);
                let mut again = BytesMut::new();
                encode_command(&cmd, &mut again);
                let round = Decoder::new(usize::MAX)
                    .decode(&mut again)
                    .expect("a re-encoded command decodes")
                    .expect("a re-encoded command is whole");
                assert_eq!(round, cmd);
                assert!(again.is_empty());
            }
            Ok(None) => {
                assert_eq!(buf.len(), before, "nothing consumed while incomplete");
                break;
            }
            Err(FrameError::TooLong { len, max }) => {
                assert!(len > max);
                break;
            }
            Err(_) => break,
        }
    }
});
