use super::*;
use crate::evidence::milter::codec::Family;
use bytes::Bytes;

fn connect(addr: &str, family: Family) -> Command {
    Command::Connect {
        hostname: Bytes::from_static(b"client"),
        family,
        port: 25,
        address: Bytes::copy_from_slice(addr.as_bytes()),
    }
}

fn header(n: &str, v: &str) -> Command {
    Command::Header {
        name: Bytes::copy_from_slice(n.as_bytes()),
        value: Bytes::copy_from_slice(v.as_bytes()),
    }
}

fn mail() -> Command {
    Command::Mail(vec![Bytes::from_static(b"<a@b>")])
}

fn never(_: IpAddr) -> Answer {
    panic!("no answer expected here")
}

fn cont(_: IpAddr) -> Answer {
    Answer::Continue
}

#[test]
fn negotiates_only_what_the_mta_offers() {
    let mut s = Session::new(false, DEFAULT_MAX_HEADER_BYTES);
    // Postfix 3.x offers every flag up to HDR_LEADSPC.
    let step = s.handle(
        Command::OptNeg {
            version: 6,
            actions: 0x1ff,
            protocol: 0x1fffff,
        },
        never,
    );
    assert_eq!(
        step.response,
        Some(Response::OptNeg {
            version: 6,
            actions: 0,
            protocol: proto::NOBODY
                | proto::NORCPT
                | proto::NODATA
                | proto::NOUNKNOWN
                | proto::NR_CONN
                | proto::NR_HELO
                | proto::NR_HDR
                | proto::NR_EOH,
        })
    );
    // No reply where no-reply was agreed.
    assert_eq!(
        s.handle(connect("10.200.0.2", Family::Inet), never)
            .response,
        None
    );
    assert_eq!(
        s.handle(Command::Helo(Bytes::from_static(b"x")), never)
            .response,
        None
    );
    // An older MTA without no-reply support gets a reply at every stage.
    let mut old = Session::new(false, DEFAULT_MAX_HEADER_BYTES);
    let step = old.handle(
        Command::OptNeg {
            version: 2,
            actions: 0x3f,
            protocol: 0x7f,
        },
        never,
    );
    assert_eq!(
        step.response,
        Some(Response::OptNeg {
            version: 2,
            actions: 0,
            protocol: proto::NOBODY | proto::NORCPT
        })
    );
    assert_eq!(
        old.handle(connect("10.200.0.2", Family::Inet), never)
            .response,
        Some(Response::Continue)
    );
    assert_eq!(
        old.handle(header("a", "b"), never).response,
        Some(Response::Continue)
    );
}

#[test]
fn refuses_at_mail_and_reports_headers_at_eoh() {
    let mut s = Session::new(false, DEFAULT_MAX_HEADER_BYTES);
    s.handle(connect("::ffff:10.200.0.2", Family::Inet6), never);
    s.handle(Command::Helo(Bytes::from_static(b"ex2013.example")), never);
    let step = s.handle(mail(), |ip| {
        assert_eq!(ip, "10.200.0.2".parse::<IpAddr>().unwrap());
        Answer::Tempfail("slow down".into())
    });
    assert_eq!(
        step.response,
        Some(Response::ReplyCode("450 4.7.230 slow down".into()))
    );
    assert_eq!(step.answered, Some(Answer::Tempfail("slow down".into())));
    // Next transaction on the same connection, outside a window: headers flow to a sighting.
    assert_eq!(s.handle(mail(), cont).response, Some(Response::Continue));
    s.handle(
        header(
            "Received",
            "from ex by mx with Microsoft SMTP Server id 15.0.1497.2",
        ),
        never,
    );
    s.handle(header("Subject", "hi"), never);
    let step = s.handle(Command::EndOfHeaders, never);
    assert_eq!(
        step.sighting,
        Some(Sighting {
            addr: "10.200.0.2".parse().unwrap(),
            helo: Some("ex2013.example".into()),
            headers: "Received: from ex by mx with Microsoft SMTP Server id 15.0.1497.2\r\nSubject: hi\r\n".into(),
        })
    );
    assert_eq!(
        s.handle(Command::EndOfMessage, never).response,
        Some(Response::Continue)
    );
    assert!(s.handle(Command::Quit, never).close);
}

#[test]
fn report_only_continues_but_says_what_it_would_do() {
    let mut s = Session::new(true, DEFAULT_MAX_HEADER_BYTES);
    s.handle(connect("10.200.0.2", Family::Inet), never);
    let step = s.handle(mail(), |_| Answer::Reject("go away".into()));
    assert_eq!(step.response, Some(Response::Continue));
    assert_eq!(
        step.answered.as_ref().and_then(Answer::would),
        Some("would_reject")
    );
}

#[test]
fn unix_peers_and_aborts_and_new_connections() {
    let mut s = Session::new(false, DEFAULT_MAX_HEADER_BYTES);
    s.handle(connect("/run/x", Family::Unix), never);
    // No address: never asked, never refused, no sighting.
    assert_eq!(s.handle(mail(), never).response, Some(Response::Continue));
    s.handle(header("Received", "x"), never);
    assert_eq!(s.handle(Command::EndOfHeaders, never).sighting, None);
    s.handle(connect("10.200.0.3", Family::Inet), never);
    s.handle(mail(), cont);
    s.handle(header("Received", "x"), never);
    assert_eq!(s.handle(Command::Abort, never).response, None);
    assert_eq!(s.header_bytes(), 0);
    // Headers of an aborted message never leak into the next one.
    s.handle(mail(), cont);
    s.handle(header("Received", "y"), never);
    let sighting = s.handle(Command::EndOfHeaders, never).sighting.unwrap();
    assert_eq!(sighting.headers, "Received: y\r\n");
    assert_eq!(s.handle(Command::QuitNewConnection, never).response, None);
    s.handle(mail(), never);
    assert!(s.handle(Command::Quit, never).response.is_none());
}

#[test]
fn header_memory_is_bounded() {
    let mut s = Session::new(false, 1000);
    s.handle(connect("10.200.0.2", Family::Inet), never);
    s.handle(mail(), cont);
    let big = "x".repeat(300);
    for _ in 0..100 {
        s.handle(header("X-Big", &big), never);
    }
    assert_eq!(s.header_bytes(), 100 * (5 + 300 + 4));
    let sighting = s.handle(Command::EndOfHeaders, never).sighting.unwrap();
    assert!(sighting.headers.len() <= 1000, "{}", sighting.headers.len());
}
