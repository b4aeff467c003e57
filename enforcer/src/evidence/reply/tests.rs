use super::*;
use crate::daemon::engine_rule;
use crate::policy::{Action, Desired, Refusal};
use std::time::Duration;

const NS: i128 = 1_000_000_000;

fn span(s: u64) -> Span {
    Span(Duration::from_secs(s))
}

fn notice(action: Action) -> Notice {
    notice_with(action, Refusal::Drop)
}

fn notice_with(action: Action, refusal: Refusal) -> Notice {
    let prefix: Prefix = "10.200.0.2/32".parse().unwrap();
    let d = Desired {
        prefix,
        stage: 5,
        action,
        refusal,
        reason: "test".into(),
        since: 0,
    };
    Notice {
        rule: engine_rule(&d),
        stage: 5,
        build: Some("15.0.1497.2".into()),
        upgrade_to: Some("15.2.2562.46".into()),
    }
}

/// Exchange Online's stage 5: throttle minutes 0-30, block minutes 30-35 of every hour.
fn stage5() -> Notice {
    notice(Action::Windows {
        period: span(3600),
        throttle: span(1800),
        block_at: span(1800),
        block: span(300),
    })
}

/// A clock at `secs` past a wall-clock hour, with an unrelated boot clock (as on a real host).
fn at(secs: i128) -> Clock {
    let unix = (1_700_000_000 / 3600 * 3600 + secs) * NS;
    Clock::fixed(unix, 987_654_321_000)
}

#[test]
fn windows_follow_the_kernel_maths() {
    let n = stage5();
    let host: IpAddr = "10.200.0.2".parse().unwrap();
    let t = Texts::default();
    let a = answer(Some(&n), host, &at(10), &t);
    let Answer::Tempfail(text) = &a else {
        panic!("{a:?}")
    };
    assert_eq!(
        text,
        "Connecting server 10.200.0.2 runs an out-of-date version (15.0.1497.2); connection to this server throttled by enforcer for 30 mins/hr (stage 5). Upgrade to 15.2.2562.46. For more information see https://aka.ms/BlockUnsafeExchange"
    );
    assert!(a
        .smtp()
        .unwrap()
        .starts_with("450 4.7.230 Connecting server 10.200.0.2"));
    assert_eq!(a.would(), Some("would_tempfail"));
    assert!(matches!(
        answer(Some(&n), host, &at(1799), &t),
        Answer::Tempfail(_)
    ));
    let b = answer(Some(&n), host, &at(1800), &t);
    assert!(b.smtp().unwrap().starts_with("550 5.7.230 "), "{b:?}");
    assert!(b
        .smtp()
        .unwrap()
        .contains("blocked by enforcer for 5 mins/hr"));
    assert!(matches!(
        answer(Some(&n), host, &at(2099), &t),
        Answer::Reject(_)
    ));
    assert_eq!(answer(Some(&n), host, &at(2100), &t), Answer::Continue);
    assert_eq!(answer(Some(&n), host, &at(3599), &t), Answer::Continue);
    assert!(matches!(
        answer(Some(&n), host, &at(3600), &t),
        Answer::Tempfail(_)
    ));
    assert_eq!(answer(None, host, &at(10), &t), Answer::Continue);
}

#[test]
fn agrees_with_window_at_on_every_second_of_a_compressed_period() {
    // A 60 s period: throttle 0-20 s, block 20-30 s; the answer changes exactly where the kernel's does.
    let n = notice(Action::Windows {
        period: span(60),
        throttle: span(20),
        block_at: span(20),
        block: span(10),
    });
    let host: IpAddr = "10.200.0.2".parse().unwrap();
    for s in 0..180 {
        let c = at(s);
        let want = n.rule.to_kernel(&c).window_at(c.boot_ns());
        let got = answer(Some(&n), host, &c, &Texts::default());
        match want {
            Window::Outside => assert_eq!(got, Answer::Continue, "second {s}"),
            Window::Throttle => assert!(matches!(got, Answer::Tempfail(_)), "second {s}"),
            Window::Block => assert!(matches!(got, Answer::Reject(_)), "second {s}"),
        }
    }
    let t = answer(Some(&n), host, &at(5), &Texts::default());
    assert!(t.smtp().unwrap().contains("for 1 mins/1m"), "{t:?}");
}

#[test]
fn full_block_and_custom_texts() {
    let n = notice(Action::Block);
    let host: IpAddr = "fd00:200::2".parse().unwrap();
    let t = Texts {
        throttle: "slow down {host}".into(),
        block:
            "{host} stage {stage} build {build} to {upgrade_to} see {info_url} {minutes}/{period}"
                .into(),
        info_url: "https://mx.example/why".into(),
    };
    assert_eq!(
        answer(Some(&n), host, &at(2500), &t).smtp().unwrap(),
        "550 5.7.230 fd00:200::2 stage 5 build 15.0.1497.2 to 15.2.2562.46 see https://mx.example/why 60/hr"
    );
    let mut bare = n.clone();
    bare.build = None;
    bare.upgrade_to = Some("a\r\nb".into());
    let s = answer(Some(&bare), host, &at(0), &t).smtp().unwrap();
    assert!(s.contains("build unknown build to a  b"), "{s}");
}

#[test]
fn templates_are_checked() {
    assert!(check_template(DEFAULT_THROTTLE_TEXT).is_ok());
    assert!(check_template(DEFAULT_BLOCK_TEXT).is_ok());
    assert!(check_template("no placeholders").is_ok());
    assert!(check_template("bad {hots}").unwrap_err().contains("{hots}"));
    assert!(check_template("open {host").is_err());
}

/// `n` as the board hands it out for the record at `prefix`.
fn on(n: &Notice, prefix: &str) -> Option<Notice> {
    let mut n = n.clone();
    n.rule.prefix = prefix.parse().unwrap();
    Some(n)
}

#[test]
fn board_looks_up_by_aggregate() {
    let b = Board::default();
    let n = stage5();
    b.set(
        "10.200.0.0/24".parse().unwrap(),
        Some(std::sync::Arc::new(n.clone())),
    );
    assert_eq!(
        b.lookup("10.200.0.77".parse().unwrap()),
        on(&n, "10.200.0.0/24")
    );
    assert_eq!(b.lookup("10.200.1.1".parse().unwrap()), None);
    assert_eq!(b.lookup("fd00:200::1".parse().unwrap()), None);
    // Records of two aggregations (a reload changed it): the most specific one answers.
    let mut host = stage5();
    host.stage = 3;
    b.set(
        "10.200.0.9/32".parse().unwrap(),
        Some(std::sync::Arc::new(host.clone())),
    );
    b.set(
        "fd00:200::/64".parse().unwrap(),
        Some(std::sync::Arc::new(n.clone())),
    );
    assert_eq!(
        b.lookup("10.200.0.9".parse().unwrap()),
        on(&host, "10.200.0.9/32")
    );
    assert_eq!(
        b.lookup("10.200.0.8".parse().unwrap()),
        on(&n, "10.200.0.0/24")
    );
    assert_eq!(
        b.lookup("fd00:200::7".parse().unwrap()),
        on(&n, "fd00:200::/64")
    );
    // Setting a notice again does not count it twice; clearing it clears its length.
    b.set(
        "10.200.0.0/24".parse().unwrap(),
        Some(std::sync::Arc::new(n)),
    );
    b.set("10.200.0.0/24".parse().unwrap(), None);
    assert_eq!(b.lookup("10.200.0.8".parse().unwrap()), None);
    b.set("10.200.0.9/32".parse().unwrap(), None);
    b.set("fd00:200::/64".parse().unwrap(), None);
    assert!(b.is_empty());
    assert_eq!(b.lookup("10.200.0.9".parse().unwrap()), None);
    // A bulk replacement (start-up, reload) counts the lengths as the single sets do.
    let shared = std::sync::Arc::new(stage5());
    b.replace_all(vec![
        ("10.200.0.0/24".parse().unwrap(), shared.clone()),
        ("10.200.0.9/32".parse().unwrap(), shared),
    ]);
    assert_eq!(b.len(), 2);
    assert_eq!(
        b.lookup("10.200.0.9".parse().unwrap()),
        on(&stage5(), "10.200.0.9/32")
    );
    assert_eq!(
        b.lookup("10.200.0.1".parse().unwrap()),
        on(&stage5(), "10.200.0.0/24")
    );
    b.replace_all(Vec::new());
    assert_eq!(b.lookup("10.200.0.9".parse().unwrap()), None);
}

#[test]
fn notice_stages_answer_where_the_kernel_admits_the_budget() {
    let budget = crate::rule::NoticeRate {
        count: 2,
        period: span(600),
    };
    let host: IpAddr = "10.200.0.2".parse().unwrap();
    // Windows: the entry is a notice throttle, and the answers follow its windows second by second.
    let n = notice_with(
        Action::Windows {
            period: span(60),
            throttle: span(20),
            block_at: span(20),
            block: span(10),
        },
        Refusal::Notice(budget),
    );
    for s in 0..120 {
        let c = at(s);
        let e = n.rule.to_kernel(&c);
        assert!(e.is_notice());
        assert_eq!((e.notice_count, e.notice_period_secs), (2, 600));
        let got = answer(Some(&n), host, &c, &Texts::default());
        match e.window_at(c.boot_ns()) {
            Window::Outside => assert_eq!(got, Answer::Continue, "second {s}"),
            Window::Throttle => assert!(matches!(got, Answer::Tempfail(_)), "second {s}"),
            Window::Block => assert!(matches!(got, Answer::Reject(_)), "second {s}"),
        }
    }
    // A full block refusing with notice: a block window over the whole period, so the kernel admits
    // the budget at every instant and the sender reads 550 with "60 mins/hr".
    let n = notice_with(Action::Block, Refusal::Notice(budget));
    for s in [0, 1, 1799, 3599, 3600, 7000] {
        let c = at(s);
        let e = n.rule.to_kernel(&c);
        assert!(e.is_notice() && e.flags & enforcer_common::policy::ENTRY_FLAG_RST == 0);
        assert_eq!(e.window_at(c.boot_ns()), Window::Block, "second {s}");
        let a = answer(Some(&n), host, &c, &Texts::default());
        assert!(
            a.smtp().unwrap().starts_with("550 5.7.230 ")
                && a.smtp()
                    .unwrap()
                    .contains("blocked by enforcer for 60 mins/hr"),
            "{a:?}"
        );
    }
    n.rule.validate().expect("a notice block validates");
}
