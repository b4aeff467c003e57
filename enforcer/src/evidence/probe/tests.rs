use std::net::IpAddr;

use super::limits::{Cache, Rate};
use super::scope::{excluded, Excluded};
use super::session::{Session, SessionError, Step, Transcript, MAX_BYTES, MAX_LINES};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn private_ranges_are_skipped_unless_allowed() {
    for a in [
        "127.0.0.1",
        "10.200.0.2",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "100.64.0.1",
        "100.127.255.254",
        "169.254.1.1",
        "::1",
        "fc00::1",
        "fd00:200::2",
        "fe80::1",
        "::ffff:10.0.0.1",
        "::ffff:127.0.0.1",
    ] {
        assert_eq!(excluded(ip(a), false, &[]), Some(Excluded::Private), "{a}");
        assert_eq!(excluded(ip(a), true, &[]), None, "{a} with allow_private");
    }
}

#[test]
fn special_ranges_are_never_probed() {
    for a in [
        "0.0.0.0",
        "0.1.2.3",
        "255.255.255.255",
        "240.0.0.1",
        "224.0.0.1",
        "239.255.255.250",
        "192.0.2.7",
        "198.51.100.1",
        "203.0.113.9",
        "198.18.0.1",
        "192.0.0.8",
        "::",
        "2001:db8::1",
        "3fff::1",
        "ff02::1",
        "100::1",
        "2001::1",
        "2002:c000:0201::1",
        "64:ff9b::808:808",
        "::ffff:192.0.2.1",
        "::ffff:224.0.0.1",
        "::192.0.2.1",
        "fec0::1",
    ] {
        for allow in [false, true] {
            assert_eq!(excluded(ip(a), allow, &[]), Some(Excluded::Special), "{a}");
        }
    }
}

#[test]
fn public_addresses_are_probed() {
    for a in [
        "8.8.8.8",
        "1.1.1.1",
        "172.32.0.1",
        "100.128.0.1",
        "11.0.0.1",
        "2a00:1450::1",
        "::ffff:8.8.4.4",
    ] {
        assert_eq!(excluded(ip(a), false, &[]), None, "{a}");
    }
}

#[test]
fn own_addresses_are_never_probed() {
    let own = [ip("8.8.8.8"), ip("2a00:1450::1"), ip("10.200.0.1")];
    assert_eq!(excluded(ip("8.8.8.8"), false, &own), Some(Excluded::Own));
    assert_eq!(
        excluded(ip("::ffff:8.8.8.8"), false, &own),
        Some(Excluded::Own)
    );
    assert_eq!(
        excluded(ip("2a00:1450::1"), true, &own),
        Some(Excluded::Own)
    );
    assert_eq!(excluded(ip("10.200.0.1"), true, &own), Some(Excluded::Own));
    assert_eq!(excluded(ip("10.200.0.2"), true, &own), None);
}

#[test]
fn cache_admits_an_address_once_per_ttl() {
    let mut c = Cache::new(60.0, 100);
    let a = ip("192.0.2.1");
    assert!(c.admit(a, 0.0));
    assert!(!c.admit(a, 1.0));
    assert!(c.contains(a, 59.9));
    assert!(!c.admit(a, 59.9));
    assert!(!c.contains(a, 60.0));
    assert!(c.admit(a, 60.0));
    assert_eq!(c.len(), 1);
}

#[test]
fn cache_is_bounded_and_forgets_the_oldest() {
    let mut c = Cache::new(3600.0, 3);
    for i in 0..10u8 {
        assert!(c.admit(IpAddr::from([8, 8, 8, i]), f64::from(i)));
        assert!(c.len() <= 3);
    }
    assert!(c.contains(IpAddr::from([8, 8, 8, 9]), 10.0));
    assert!(!c.contains(IpAddr::from([8, 8, 8, 0]), 10.0));
}

#[test]
fn rate_allows_the_budget_per_second() {
    let mut r = Rate::new(5, 0.0);
    let burst = (0..20).filter(|_| r.take(0.0)).count();
    assert_eq!(burst, 5);
    assert!(!r.take(0.1));
    assert!(r.take(0.2)); // 0.2 s refills one token at 5/s
                          // Ten seconds at 100 attempts a second: about 5 per second get through, never more.
    let mut ok = 0;
    for i in 0..1000 {
        if r.take(1.0 + f64::from(i) * 0.01) {
            ok += 1;
        }
    }
    assert!((45..=55).contains(&ok), "{ok}");
    // A clock going backwards does not mint tokens.
    let mut r = Rate::new(1, 100.0);
    assert!(r.take(100.0));
    assert!(!r.take(50.0));
    assert!(!r.take(100.5));
}

fn run(session: &mut Session, input: &[u8]) -> Result<Vec<Step>, SessionError> {
    let mut out = Vec::new();
    let step = session.feed(input)?;
    out.push(step);
    Ok(out)
}

const EX2010_BANNER: &str =
    "220 mail.example.com Microsoft ESMTP MAIL Service ready at Tue, 1 Dec 2026 10:00:00 +0000\r\n";
const EX2010_EHLO: &str = "250-mail.example.com Hello [10.200.0.1]\r\n250-SIZE 10485760\r\n250-PIPELINING\r\n250-DSN\r\n250-ENHANCEDSTATUSCODES\r\n250-STARTTLS\r\n250-X-ANONYMOUSTLS\r\n250-AUTH NTLM\r\n250-X-EXPS GSSAPI NTLM\r\n250-8BITMIME\r\n250-BINARYMIME\r\n250-CHUNKING\r\n250-XEXCH50\r\n250 XSHADOW\r\n";

#[test]
fn session_reads_banner_and_ehlo_then_quits() {
    let mut s = Session::new("probe.example.net");
    // The banner split across reads.
    assert_eq!(s.feed(&EX2010_BANNER.as_bytes()[..10]).unwrap(), Step::Read);
    assert_eq!(
        s.feed(&EX2010_BANNER.as_bytes()[10..]).unwrap(),
        Step::Send(b"EHLO probe.example.net\r\n".to_vec())
    );
    let Step::Done(quit, t) = s.feed(EX2010_EHLO.as_bytes()).unwrap() else {
        panic!("no transcript")
    };
    assert_eq!(quit, b"QUIT\r\n");
    assert_eq!(t.banner.len(), 1);
    assert_eq!(t.ehlo.len(), 14);
    assert!(t.text().contains("250 XSHADOW\n"));
}

#[test]
fn a_multiline_banner_and_a_refused_ehlo_keep_the_banner() {
    let mut s = Session::new("p");
    assert_eq!(s.feed(b"220-mx.example ESMTP\r\n").unwrap(), Step::Read);
    assert!(matches!(s.feed(b"220 welcome\r\n").unwrap(), Step::Send(_)));
    let Step::Done(_, t) = s.feed(b"502 5.5.1 no EHLO here\r\n").unwrap() else {
        panic!()
    };
    assert_eq!(t.banner, vec!["220-mx.example ESMTP", "220 welcome"]);
    assert!(t.ehlo.is_empty());
}

/// An input and the error it must produce.
type Case = (Vec<u8>, fn(&SessionError) -> bool);

#[test]
fn session_rejects_garbage_and_oversized_input() {
    let cases: Vec<Case> = vec![
        (b"HTTP/1.1 400 Bad Request\r\n".to_vec(), |e| {
            matches!(e, SessionError::NotSmtp(_))
        }),
        (b"22 short\r\n".to_vec(), |e| {
            matches!(e, SessionError::NotSmtp(_))
        }),
        (b"220xno separator\r\n".to_vec(), |e| {
            matches!(e, SessionError::NotSmtp(_))
        }),
        (b"220-a\r\n250 b\r\n".to_vec(), |e| {
            matches!(e, SessionError::NotSmtp(_))
        }),
        (b"554 5.7.1 go away\r\n".to_vec(), |e| {
            matches!(e, SessionError::Refused(_))
        }),
        (vec![b'2'; 5000], |e| matches!(e, SessionError::LineTooLong)),
        ([b"220 ", &[b'x'; 2000][..], b"\r\n"].concat(), |e| {
            matches!(e, SessionError::LineTooLong)
        }),
        (b"220-x\r\n".repeat(MAX_LINES + 1), |e| {
            matches!(e, SessionError::TooManyLines)
        }),
        ([&[0xff; 100][..], b"\r\n"].concat(), |e| {
            matches!(e, SessionError::NotSmtp(_))
        }),
        (Vec::new(), |e| matches!(e, SessionError::Closed)),
    ];
    for (input, want) in cases {
        let mut s = Session::new("p");
        let got = run(&mut s, &input);
        match got {
            Err(e) => assert!(want(&e), "{:?}: {e:?}", String::from_utf8_lossy(&input)),
            Ok(steps) => assert!(
                matches!(steps.as_slice(), [Step::Read]) && input.len() <= 1024,
                "{:?} was accepted: {steps:?}",
                String::from_utf8_lossy(&input)
            ),
        }
    }
    // Valid long lines stop at the session's byte budget.
    let mut s = Session::new("p");
    let line = [b"220-", &[b'x'; 994][..], b"\r\n"].concat();
    let mut fed = 0;
    let err = loop {
        match s.feed(&line) {
            Ok(Step::Read) => fed += line.len(),
            Ok(other) => panic!("{other:?}"),
            Err(e) => break e,
        }
        assert!(fed <= MAX_BYTES);
    };
    assert_eq!(err, SessionError::TooMuch);
}

#[test]
fn the_classifier_reads_a_probe_transcript_as_end_of_life_exchange() {
    use crate::classify::{classify_connecting, Status};
    let t = Transcript {
        banner: vec![EX2010_BANNER.trim_end().to_string()],
        ehlo: EX2010_EHLO
            .lines()
            .map(|l| l.trim_end().to_string())
            .collect(),
    };
    let date = time::macros::date!(2026 - 12 - 01);
    let c = classify_connecting(
        t.text().as_bytes(),
        ip("10.200.0.2"),
        date,
        &Default::default(),
    )
    .unwrap();
    assert_eq!(c.product.id(), "exchange", "{c:?}");
    assert_eq!(c.status, Status::EndOfLife, "{c:?}");
    let postfix = Transcript {
        banner: vec!["220 mx.example.org ESMTP Postfix (Debian/GNU)".into()],
        ehlo: vec![
            "250-mx.example.org".into(),
            "250-PIPELINING".into(),
            "250-SIZE 10240000".into(),
            "250-ETRN".into(),
            "250-ENHANCEDSTATUSCODES".into(),
            "250-8BITMIME".into(),
            "250-DSN".into(),
            "250 CHUNKING".into(),
        ],
    };
    let c = classify_connecting(
        postfix.text().as_bytes(),
        ip("10.200.0.3"),
        date,
        &Default::default(),
    )
    .unwrap();
    assert_ne!(c.product.id(), "exchange", "{c:?}");
}
