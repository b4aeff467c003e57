use super::*;

fn frame(letter: u8, data: &[u8]) -> BytesMut {
    let mut b = BytesMut::new();
    b.put_u32(data.len() as u32 + 1);
    b.put_u8(letter);
    b.extend_from_slice(data);
    b
}

fn one(letter: u8, data: &[u8]) -> Result<Command, FrameError> {
    let mut b = frame(letter, data);
    let c = Decoder::default().decode(&mut b)?.expect("whole frame");
    assert!(b.is_empty());
    Ok(c)
}

#[test]
fn optneg_as_postfix_sends_it() {
    let mut d = Vec::new();
    d.extend_from_slice(&6u32.to_be_bytes());
    d.extend_from_slice(&0x1ffu32.to_be_bytes());
    d.extend_from_slice(&0x1fffffu32.to_be_bytes());
    assert_eq!(
        one(b'O', &d).unwrap(),
        Command::OptNeg {
            version: 6,
            actions: 0x1ff,
            protocol: 0x1fffff
        }
    );
    assert!(matches!(
        one(b'O', &d[..11]),
        Err(FrameError::Malformed {
            command: "optneg",
            ..
        })
    ));
}

#[test]
fn connect_families() {
    let c = one(b'C', b"mx.example.org\x004\x00\x19192.0.2.7\x00").unwrap();
    assert_eq!(c.peer_ip(), Some("192.0.2.7".parse().unwrap()));
    let Command::Connect { port, hostname, .. } = &c else {
        panic!()
    };
    assert_eq!((*port, &hostname[..]), (25, &b"mx.example.org"[..]));
    let c = one(
        b'C',
        b"[::ffff:10.200.0.2]\x006\x00\x19::ffff:10.200.0.2\x00",
    )
    .unwrap();
    assert_eq!(c.peer_ip(), Some("10.200.0.2".parse().unwrap()));
    let c = one(b'C', b"h\x006\x00\x19IPv6:fd00:200::2\x00").unwrap();
    assert_eq!(c.peer_ip(), Some("fd00:200::2".parse().unwrap()));
    let c = one(b'C', b"localhost\x00L\x00\x00/run/x.sock\x00").unwrap();
    assert_eq!(c.peer_ip(), None);
    let c = one(b'C', b"unknown\x00U").unwrap();
    assert_eq!(c.peer_ip(), None);
    assert!(one(b'C', b"h\x00X\x00\x19a\x00").is_err());
    assert!(one(b'C', b"h\x004\x00").is_err());
    assert!(one(b'C', b"no-nul").is_err());
}

#[test]
fn strings_commands() {
    assert_eq!(
        one(b'H', b"ex2013.example\0").unwrap(),
        Command::Helo(Bytes::from_static(b"ex2013.example"))
    );
    assert!(one(b'H', b"x").is_err());
    assert!(one(b'H', b"x\0y").is_err());
    assert_eq!(
        one(b'M', b"<a@b>\0SIZE=10\0").unwrap(),
        Command::Mail(vec![
            Bytes::from_static(b"<a@b>"),
            Bytes::from_static(b"SIZE=10")
        ])
    );
    assert!(one(b'R', b"").is_err());
    assert_eq!(
        one(b'L', b"Received\0from a by b\0").unwrap(),
        Command::Header {
            name: Bytes::from_static(b"Received"),
            value: Bytes::from_static(b"from a by b")
        }
    );
    assert!(one(b'L', b"Received\0").is_err());
    assert!(one(b'L', b"\0v\0").is_err());
    assert_eq!(
        one(b'U', b"XYZZY\0").unwrap(),
        Command::Unknown(Bytes::from_static(b"XYZZY"))
    );
    assert_eq!(
        one(b'B', b"body bytes").unwrap(),
        Command::Body(Bytes::from_static(b"body bytes"))
    );
}

#[test]
fn macros() {
    let c = one(b'D', b"Cj\0mx.local\0{daemon_name}\0smtpd\0").unwrap();
    let Command::Macros { stage, pairs } = c else {
        panic!()
    };
    assert_eq!(stage, b'C');
    assert_eq!(pairs.len(), 2);
    assert_eq!(&pairs[1].1[..], b"smtpd");
    assert!(matches!(one(b'D', b"C").unwrap(), Command::Macros { pairs, .. } if pairs.is_empty()));
    assert!(one(b'D', b"Cj\0").is_err());
    assert!(one(b'D', b"").is_err());
}

#[test]
fn empty_commands() {
    for (l, c) in [
        (b'T', Command::Data),
        (b'N', Command::EndOfHeaders),
        (b'E', Command::EndOfMessage),
        (b'A', Command::Abort),
        (b'Q', Command::Quit),
        (b'K', Command::QuitNewConnection),
    ] {
        assert_eq!(one(l, b"").unwrap(), c);
    }
    assert!(one(b'Q', b"x").is_err());
    assert_eq!(one(b'z', b""), Err(FrameError::UnknownCommand { cmd: 'z' }));
}

#[test]
fn partial_frames_wait_and_limits_refuse_early() {
    let whole = frame(b'H', b"abc\0");
    let d = Decoder::default();
    for cut in 0..whole.len() {
        let mut b = BytesMut::from(&whole[..cut]);
        assert_eq!(d.decode(&mut b), Ok(None));
        assert_eq!(b.len(), cut, "nothing consumed while incomplete");
    }
    // Two frames back to back come out in order.
    let mut two = whole.clone();
    two.extend_from_slice(&frame(b'N', b""));
    assert!(matches!(d.decode(&mut two), Ok(Some(Command::Helo(_)))));
    assert_eq!(d.decode(&mut two), Ok(Some(Command::EndOfHeaders)));
    // The length alone is enough to refuse an oversized frame.
    let small = Decoder::new(1024);
    let mut b = BytesMut::from(&2000u32.to_be_bytes()[..]);
    assert_eq!(
        small.decode(&mut b),
        Err(FrameError::TooLong {
            len: 2000,
            max: 1024
        })
    );
    let mut b = BytesMut::from(&[0u8, 0, 0, 0][..]);
    assert_eq!(d.decode(&mut b), Err(FrameError::Empty));
}

#[test]
fn responses_round_trip() {
    for r in [
        Response::Continue,
        Response::Accept,
        Response::OptNeg {
            version: 6,
            actions: 0,
            protocol: proto::NOBODY | proto::NR_HDR,
        },
        Response::ReplyCode("450 4.7.230 out of date".into()),
    ] {
        let mut b = BytesMut::new();
        r.encode(&mut b);
        assert_eq!(decode_response(&mut b), Ok(Some(r)));
        assert!(b.is_empty());
    }
    // CR, LF and NUL inside a configured text never break the frame or the SMTP reply.
    let mut b = BytesMut::new();
    Response::ReplyCode("550 a\r\nb\0c".into()).encode(&mut b);
    assert_eq!(
        decode_response(&mut b),
        Ok(Some(Response::ReplyCode("550 a  b c".into())))
    );
}

#[test]
fn commands_round_trip() {
    let cmds = [
        Command::OptNeg {
            version: 6,
            actions: 1,
            protocol: 2,
        },
        Command::Macros {
            stage: b'M',
            pairs: vec![(Bytes::from_static(b"i"), Bytes::from_static(b"ABC"))],
        },
        Command::Connect {
            hostname: Bytes::from_static(b"h"),
            family: Family::Inet,
            port: 25,
            address: Bytes::from_static(b"10.200.0.2"),
        },
        Command::Connect {
            hostname: Bytes::from_static(b"h"),
            family: Family::Unknown,
            port: 0,
            address: Bytes::new(),
        },
        Command::Helo(Bytes::from_static(b"x")),
        Command::Rcpt(vec![Bytes::from_static(b"<r@x>")]),
        Command::Header {
            name: Bytes::from_static(b"Subject"),
            value: Bytes::new(),
        },
        Command::Unknown(Bytes::from_static(b"HELP")),
        Command::Quit,
    ];
    let mut buf = BytesMut::new();
    for c in &cmds {
        encode_command(c, &mut buf);
    }
    for c in &cmds {
        assert_eq!(
            Decoder::default().decode(&mut buf).unwrap().as_ref(),
            Some(c)
        );
    }
    assert!(buf.is_empty());
}
