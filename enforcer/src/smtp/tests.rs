//! Property tests over every decoder: never panic on any bytes, and decoding a rendered value gives it
//! back.

use proptest::prelude::*;

use super::*;

fn text() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(prop_oneof![0x20u8..0x7f, 0x80u8..=0xff, Just(b'\t')], 0..60)
}

fn token() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![
            b'a'..=b'z',
            b'A'..=b'Z',
            b'0'..=b'9',
            Just(b'.'),
            Just(b'-')
        ],
        1..20,
    )
}

proptest! {
    #[test]
    fn decoders_never_panic(input in proptest::collection::vec(any::<u8>(), 0..400)) {
        for r in [decode_reply(&input).map(|d| d.consumed), decode_greeting(&input).map(|d| d.consumed),
                  decode_ehlo_command(&input).map(|d| d.consumed), decode_ehlo_response(&input).map(|d| d.consumed),
                  decode_header_block(&input).map(|d| d.consumed)] {
            match r {
                Ok(n) => prop_assert!(n <= input.len()),
                Err(DecodeError::Malformed { offset, .. }) => prop_assert!(offset <= input.len()),
                Err(DecodeError::Incomplete(_)) => {}
            }
        }
        let _ = parse_received(&input);
    }

    #[test]
    fn every_prefix_of_a_reply_is_incomplete(lines in proptest::collection::vec(text(), 1..5), code in 200u16..600) {
        let r = Reply { code, enhanced: None, lines: lines.iter().map(|l| &l[..]).collect() };
        let wire = r.render();
        for cut in 0..wire.len() {
            prop_assert_eq!(decode_reply(&wire[..cut]), Err(DecodeError::Incomplete(Item::Reply)));
        }
    }

    #[test]
    fn reply_round_trips(lines in proptest::collection::vec(text(), 1..6), code in 100u16..600, lf in any::<bool>()) {
        let r = Reply { code, enhanced: None, lines: lines.iter().map(|l| &l[..]).collect() };
        let mut wire = r.render();
        if lf {
            let mut lf_only = Vec::with_capacity(wire.len());
            for (i, b) in wire.iter().enumerate() {
                if !(*b == b'\r' && wire.get(i + 1) == Some(&b'\n')) {
                    lf_only.push(*b);
                }
            }
            wire = lf_only;
        }
        let Ok(d) = decode_reply(&wire) else { return Err(TestCaseError::fail("rendered reply must decode")) };
        prop_assert_eq!(d.consumed, wire.len());
        prop_assert_eq!(d.value.code, code);
        prop_assert_eq!(d.value.lines.len(), lines.len());
        let rendered = d.value.render();
        let again = decode_reply(&rendered).unwrap();
        prop_assert_eq!(again.value, d.value);
    }

    #[test]
    fn ehlo_round_trips(domain in token(), greeting in text(), kws in proptest::collection::vec((token(), proptest::collection::vec(token(), 0..3)), 0..8)) {
        let greeting: Vec<u8> = greeting.trim_ascii().iter().copied().filter(|b| *b != b'\t').collect();
        let keywords = kws.iter().map(|(n, ps)| EhloKeyword { name: &n[..], params: ps.iter().map(|p| &p[..]).collect() }).collect();
        let r = EhloResponse { domain: &domain, greeting: &greeting, keywords };
        let wire = r.render();
        let d = decode_ehlo_response(&wire).unwrap();
        prop_assert_eq!(d.value, r);
        let c = HeloCommand { verb: HeloVerb::Ehlo, domain: &domain };
        let rendered = c.render();
        prop_assert_eq!(decode_ehlo_command(&rendered).unwrap().value, c);
    }

    #[test]
    fn header_block_round_trips(fields in proptest::collection::vec((token(), proptest::collection::vec(token(), 1..6), any::<bool>()), 1..8)) {
        let mut wire = Vec::new();
        let mut values = Vec::new();
        for (name, words, fold) in &fields {
            wire.extend_from_slice(name);
            wire.extend_from_slice(b": ");
            let sep: &[u8] = if *fold { b"\r\n " } else { b" " };
            wire.extend_from_slice(&words.join(sep));
            wire.extend_from_slice(b"\r\n");
            values.push(words.join(&b' '));
        }
        wire.extend_from_slice(b"\r\nbody");
        let d = decode_header_block(&wire).unwrap();
        prop_assert_eq!(d.consumed, wire.len() - 4);
        prop_assert_eq!(d.value.len(), fields.len());
        for (f, ((name, _, _), v)) in d.value.iter().zip(fields.iter().zip(&values)) {
            prop_assert_eq!(f.name, &name[..]);
            prop_assert_eq!(unfold(f.value), v.clone());
        }
    }

    #[test]
    fn received_round_trips(
        clauses in proptest::collection::vec((0usize..6, proptest::collection::vec(token(), 1..4), proptest::collection::vec(token(), 0..3)), 1..7),
        date in proptest::option::of(token()),
    ) {
        const KINDS: [ClauseKind; 6] = [ClauseKind::From, ClauseKind::By, ClauseKind::Via, ClauseKind::With, ClauseKind::Id, ClauseKind::For];
        let keywords = ["from", "by", "via", "with", "id", "for"];
        // Words that happen to be clause keywords would start a new clause: not valid input here.
        let clauses: Vec<Clause<'_>> = clauses.iter().map(|(k, ws, cs)| Clause {
            kind: KINDS[*k],
            words: ws.iter().filter(|w| !keywords.iter().any(|k| w.eq_ignore_ascii_case(k.as_bytes()))).map(|w| &w[..]).collect(),
            comments: cs.iter().map(|c| &c[..]).collect(),
        }).collect();
        let r = Received { preamble: Vec::new(), clauses, date: date.as_deref() };
        let wire = r.render();
        prop_assert_eq!(parse_received(&wire).unwrap(), r);
    }
}
