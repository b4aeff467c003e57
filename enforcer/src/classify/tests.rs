//! Classifier tests over real-world evidence forms, and across the whole catalog.

use super::*;
use proptest::prelude::*;

fn d(s: &str) -> Date {
    parse_iso(s).unwrap()
}

fn classify(input: &str, date: &str) -> Classification {
    classify_bytes(input.as_bytes(), d(date), &SupportOverrides::new()).unwrap()
}

/// Sender EX01 -> EX02 (Frontend Transport) -> our Postfix edge; MAPI submission at the bottom.
const EXCHANGE_2016_CHAIN: &str = "\
Received: from ex02.corp.example.com (ex02.corp.example.com [203.0.113.5])\r
\t(using TLSv1.2 with cipher ECDHE-RSA-AES256-GCM-SHA384 (256/256 bits))\r
\tby mx.receiver.example (Postfix) with ESMTPS id 4VtXyZ1abcz9sWR\r
\tfor <user@receiver.example>; Tue,  4 Jun 2024 10:11:14 +0000 (UTC)\r
Received: from EX01.corp.example.com (10.1.2.3) by EX02.corp.example.com\r
 (10.1.2.4) with Microsoft SMTP Server (version=TLS1_2,\r
 cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id 15.1.2507.39 via Frontend\r
 Transport; Tue, 4 Jun 2024 10:11:12 +0000\r
Received: from EX01.corp.example.com ([fe80::1]) by EX01.corp.example.com\r
 ([fe80::1%12]) with mapi id 15.01.2507.035; Tue, 4 Jun 2024 10:11:12 +0000\r
From: Alice <alice@example.com>\r
Subject: report\r
\r
";

#[test]
fn exchange_received_chain_attributes_the_outbound_hop() {
    let c = classify(EXCHANGE_2016_CHAIN, "2024-06-05");
    assert_eq!(c.product, Product::Exchange);
    assert_eq!(c.version.as_deref(), Some("2016"));
    assert_eq!(c.build.as_deref(), Some("15.1.2507.39"));
    assert_eq!(
        c.label.as_deref(),
        Some("Exchange Server 2016 CU23 Apr24HU")
    );
    assert_eq!(c.status, Status::Supported);
    assert!(!c.persistently_vulnerable);
    assert!(c.confidence >= 0.9, "{}", c.confidence);
    assert_eq!(c.evidence[0].kind, EvidenceKind::Received);
    assert!(
        c.evidence[0]
            .finding
            .contains("hand-off to mx.receiver.example"),
        "{:?}",
        c.evidence
    );
    assert!(c.evidence.iter().any(|e| e
        .finding
        .contains("internal hop by EX01.corp.example.com (build 15.1.2507.35)")));

    let c = classify(EXCHANGE_2016_CHAIN, "2024-11-27");
    assert_eq!(c.status, Status::Outdated);
    assert!(c.persistently_vulnerable);
    assert_eq!(
        c.upgrade_to.as_deref(),
        Some("15.1.2507.44 (Exchange Server 2016 CU23 Nov24SUv2)")
    );
    let c = classify(EXCHANGE_2016_CHAIN, "2025-10-15");
    assert_eq!(c.status, Status::EndOfLife);
    assert_eq!(
        c.upgrade_to.as_deref(),
        Some("15.2.2562.29 (Exchange Server SE RTM Oct25SU)")
    );
}

#[test]
fn zero_padded_mapi_build_is_normalised() {
    let h = "Received: from EX13.corp.example (10.0.0.5) by EX13.corp.example (10.0.0.5) with mapi id\r\n 15.00.1497.040; Mon, 5 Sep 2022 10:00:00 +0000\r\n\r\n";
    let c = classify(h, "2022-09-06");
    assert_eq!(c.build.as_deref(), Some("15.0.1497.40"));
    assert_eq!(
        c.label.as_deref(),
        Some("Exchange Server 2013 CU23 Aug22SU")
    );
    assert_eq!(c.version.as_deref(), Some("2013"));
    assert_eq!(c.status, Status::Supported);
    // A lone hop with no hand-off is still read, but with less confidence.
    assert!(c.confidence < 0.9);
    assert_eq!(classify(h, "2023-04-12").status, Status::EndOfLife);
}

#[test]
fn exchange_2007_and_pickup_forms() {
    let h = "Received: from localhost by Pickup with Microsoft SMTP Server id 8.3.298.1; Mon, 1 Jan 2018 10:00:00 +0000\n\
Received: from mail.old.example (192.0.2.20) by mx.receiver.example (Postfix) with ESMTP id ABC; Mon, 1 Jan 2018\n";
    // Newest first: put the edge hop on top.
    let lines: Vec<&str> = h.lines().collect();
    let h = format!("{}\n{}\n", lines[1], lines[0]);
    let c = classify(&h, "2018-01-02");
    assert_eq!(c.build.as_deref(), Some("8.3.298.1"));
    assert_eq!(c.version.as_deref(), Some("2007"));
    assert_eq!(c.status, Status::EndOfLife);
}

#[test]
fn exchange_online_is_not_on_prem_2016() {
    let h = "\
Received: from EUR05-AM6-obe.outbound.protection.outlook.com (mail-am6eur05on2070.outbound.protection.outlook.com [40.107.22.70])
\tby mx.receiver.example (Postfix) with ESMTPS id 4Vabc; Tue, 4 Jun 2024 10:11:14 +0000
Received: from AM0PR01MB1234.eurprd01.prod.exchangelabs.com (2603:10a6:208:1::1) by
 AM9PR01MB5678.eurprd01.prod.exchangelabs.com (2603:10a6:20b:2::2) with
 Microsoft SMTP Server (version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id
 15.20.7633.34; Tue, 4 Jun 2024 10:11:13 +0000
Received: from AM0PR01MB1234.eurprd01.prod.exchangelabs.com ([fe80::1]) by
 AM0PR01MB1234.eurprd01.prod.exchangelabs.com ([fe80::1%4]) with mapi id
 15.20.7633.033; Tue, 4 Jun 2024 10:11:12 +0000
";
    let c = classify(h, "2024-06-05");
    assert_eq!(c.product, Product::ExchangeOnline);
    assert_eq!(c.build.as_deref(), Some("15.20.7633.34"));
    assert_eq!(c.status, Status::Supported);
    assert!(!c.persistently_vulnerable);
    // 15.1 builds on prod.outlook.com hosts are Exchange Online too.
    let h = "Received: from a.namprd01.prod.outlook.com (2603::1) by b.namprd01.prod.outlook.com (2603::2) with Microsoft SMTP Server id 15.1.2507.9; Tue\n\
Received: from b.namprd01.prod.outlook.com by mx.receiver.example (Postfix); Tue\n";
    let lines: Vec<&str> = h.lines().collect();
    let c = classify(&format!("{}\n{}\n", lines[1], lines[0]), "2024-06-05");
    assert_eq!(c.product, Product::ExchangeOnline);
}

#[test]
fn hybrid_route_through_exchange_online() {
    let h = "\
Received: from mail-db8eur05on2100.outbound.protection.outlook.com (40.107.1.1) by mx.receiver.example (Postfix) with ESMTPS id Q; Tue
Received: from DB8PR01MB1.eurprd01.prod.exchangelabs.com (2603::1) by DB8PR01MB2.eurprd01.prod.exchangelabs.com (2603::2) with Microsoft SMTP Server id 15.20.7633.34; Tue
Received: from EX01.corp.example.com (203.0.113.9) by DB8PR01MB1.eurprd01.prod.exchangelabs.com (2603::1) with Microsoft SMTP Server id 15.20.7633.34; Tue
Received: from EX00.corp.example.com (10.0.0.1) by EX01.corp.example.com (10.0.0.2) with Microsoft SMTP Server id 15.1.2507.6; Tue
";
    let c = classify(h, "2024-06-05");
    assert_eq!(c.product, Product::ExchangeOnline);
    assert!(
        c.evidence[0]
            .finding
            .contains("EX01.corp.example.com (15.1.2507.6)"),
        "{:?}",
        c.evidence[0]
    );
}

#[test]
fn receiving_side_exchange_is_not_attributed() {
    let h = "\
Received: from mx.receiver.example (10.9.9.9) by EXR.receiver.example (10.9.9.10) with Microsoft SMTP Server id 15.2.1748.39; Tue
Received: from mail.sender.example (mail.sender.example [198.51.100.7]) by mx.receiver.example (Postfix) with ESMTPS id 4Vx; Tue
Received: from app.sender.example (app.sender.example [10.0.0.7]) by mail.sender.example (Postfix) with ESMTP id 4Vy; Tue
";
    let c = classify(h, "2025-11-01");
    assert_eq!(c.product, Product::Postfix);
    assert!(
        c.evidence
            .iter()
            .any(|e| e.finding.contains("receiving side")),
        "{:?}",
        c.evidence
    );
}

#[test]
fn non_exchange_received_products() {
    let exim = "Received: from mail.sender.example ([198.51.100.7]) by mx.receiver.example (Postfix) with ESMTPS id 4V; Tue\n\
Received: from [10.0.0.9] (helo=app) by mail.sender.example with esmtpsa (TLS1.3) tls TLS_AES_256_GCM_SHA384 (Exim 4.96) (envelope-from <a@sender.example>) id 1rXyZa-000Abc-2B; Tue\n";
    let c = classify(exim, "2024-06-05");
    assert_eq!(
        (c.product, c.version.as_deref()),
        (Product::Exim, Some("4.96"))
    );
    assert_eq!(c.status, Status::Unknown);
    let sendmail = "Received: from a.sender.example by mx.receiver.example (Postfix); Tue\n\
Received: from h.sender.example (h.sender.example [10.0.0.1]) by a.sender.example (8.15.2/8.15.2) with ESMTP id x4ABC; Tue\n";
    let c = classify(sendmail, "2024-06-05");
    assert_eq!(
        (c.product, c.version.as_deref()),
        (Product::Sendmail, Some("8.15.2"))
    );
    let qmail = "Received: from q.sender.example by mx.receiver.example (Postfix); Tue\n\
Received: (qmail 1234 invoked from network); 4 Jun 2024 10:11:12 -0000\n";
    assert_eq!(classify(qmail, "2024-06-05").product, Product::Qmail);
    let haraka = "Received: from h.sender.example by mx.receiver.example (Postfix); Tue\n\
Received: from app (app [10.0.0.2]) by h.sender.example (Haraka/3.0.3) with ESMTPSA id 5A; Tue\n";
    assert_eq!(
        classify(haraka, "2024-06-05").version.as_deref(),
        Some("3.0.3")
    );
}

#[test]
fn banners_of_every_product() {
    let cases: &[(&str, Product, Option<&str>)] = &[
        ("220 mail.example.com ESMTP Postfix (Debian/GNU)", Product::Postfix, None),
        ("220 mx.example.org ESMTP Exim 4.96 #2 Mon, 01 Jan 2024 10:00:00 +0000", Product::Exim, Some("4.96")),
        ("220 mx.example.com ESMTP Sendmail 8.15.2/8.15.2; Mon, 1 Jan 2024 10:00:00 GMT", Product::Sendmail, Some("8.15.2")),
        ("220 mx.example.com ESMTP OpenSMTPD", Product::Opensmtpd, None),
        ("220 mx.example.com ESMTP Service (Lotus Domino Release 8.5.3FP6) ready at Mon, 1 Jan 2024", Product::Domino, Some("8.5.3FP6")),
        ("220 mx.example.com ESMTP MDaemon 21.5.2; Mon, 01 Jan 2024 10:00:00 +0000", Product::Mdaemon, Some("21.5.2")),
        ("220 mx.example.com ESMTP hMailServer", Product::Hmailserver, None),
        ("220 mx.example.com ESMTP MailEnable Service, Version: 10.44-- ready at 01/01/24 10:00:00", Product::Mailenable, Some("10.44")),
        ("220 mx.example.com ESMTP Haraka 3.0.3 ready", Product::Haraka, Some("3.0.3")),
        ("220 zimbra.example.com ESMTP Zimbra 8.8.15", Product::Zimbra, Some("8.8.15")),
        ("220 smtp.example.com ESMTP mail server ready", Product::Unknown, None),
        ("220-mx.example.org ESMTP\r\n220-Exim 4.97.1 at your service\r\n220 no UCE", Product::Exim, Some("4.97.1")),
    ];
    for (banner, product, version) in cases {
        let c = classify(&format!("{banner}\r\n"), "2024-06-05");
        assert_eq!(
            (c.product, c.version.as_deref()),
            (*product, *version),
            "{banner}"
        );
        assert_eq!(c.status, Status::Unknown, "{banner}");
        assert!(!c.persistently_vulnerable);
    }
}

#[test]
fn exchange_2003_banner_and_keywords() {
    let t = "\
220 mail.example.com Microsoft ESMTP MAIL Service, Version: 6.0.3790.4675 ready at  Mon, 1 Jan 2024 10:00:00 +0100
EHLO probe.example.net
250-mail.example.com Hello [192.0.2.1]
250-TURN
250-SIZE
250-ETRN
250-PIPELINING
250-DSN
250-ENHANCEDSTATUSCODES
250-8bitmime
250-BINARYMIME
250-CHUNKING
250-VRFY
250-X-EXPS GSSAPI NTLM LOGIN
250-X-EXPS=LOGIN
250-AUTH GSSAPI NTLM LOGIN
250-AUTH=LOGIN
250-X-LINK2STATE
250-XEXCH50
250 OK
";
    let c = classify(t, "2024-06-05");
    assert_eq!(c.product, Product::Exchange);
    assert_eq!(c.version.as_deref(), Some("2003"));
    assert_eq!(c.build, None);
    assert_eq!(c.status, Status::EndOfLife);
    assert!(c.persistently_vulnerable);
    assert_eq!(
        c.upgrade_to.as_deref(),
        Some("15.2.1544.11 (Exchange Server 2019 CU14 Apr24HU)")
    );
    // The IIS SMTP service alone (no Exchange keywords) is IIS SMTP, not Exchange.
    let c = classify(
        "220 web01 Microsoft ESMTP MAIL Service, Version: 6.0.3790.4675 ready at  Mon\r\n",
        "2024-06-05",
    );
    assert_eq!(
        (c.product, c.version.as_deref(), c.status),
        (Product::IisSmtp, Some("6.0.3790.4675"), Status::EndOfLife)
    );
    let c = classify(
        "220 web01 Microsoft ESMTP MAIL Service, Version: 10.0.17763.1 ready at  Mon\r\n",
        "2024-06-05",
    );
    assert_eq!((c.product, c.status), (Product::IisSmtp, Status::Unknown));
}

#[test]
fn modern_exchange_banner_and_keywords_give_the_era_only() {
    let t = "\
S: 220 EX01.corp.example.com Microsoft ESMTP MAIL Service ready at Tue, 4 Jun 2024 10:11:12 +0000
C: EHLO probe.example.net
S: 250-EX01.corp.example.com Hello [192.0.2.1]
S: 250-SIZE 37748736
S: 250-PIPELINING
S: 250-DSN
S: 250-ENHANCEDSTATUSCODES
S: 250-STARTTLS
S: 250-X-ANONYMOUSTLS
S: 250-AUTH NTLM
S: 250-X-EXPS GSSAPI NTLM
S: 250-8BITMIME
S: 250-BINARYMIME
S: 250-CHUNKING
S: 250-XRDST
S: 250 XSHADOWREQUEST
";
    let c = classify(t, "2024-06-05");
    assert_eq!(c.product, Product::Exchange);
    assert_eq!((c.version, c.build), (None, None));
    assert_eq!(c.status, Status::Unknown);
    assert!(c
        .evidence
        .iter()
        .any(|e| e.finding.contains("2013, 2016, 2019 or SE")));
    // Everything 2013 or later is past end of support once SE would be the only one... not yet:
    // SE has no end date, so the era stays unknown even in 2030.
    assert_eq!(classify(t, "2030-01-01").status, Status::Unknown);
    // Received evidence that names a build beats keyword heuristics.
    let both = format!("{t}{EXCHANGE_2016_CHAIN}");
    let c = classify(&both, "2024-06-05");
    assert_eq!(c.build.as_deref(), Some("15.1.2507.39"));
    assert!(c.confidence >= 0.95);
    // Exchange 2010 keywords: end of life. XEXCH50 is advertised by 2013 and later too, but only
    // next to XRDST/XSHADOWREQUEST: XSHADOW and XEXCH50 without them is 2010.
    let t2010 = "250-mx Hello [1.2.3.4]\n250-X-ANONYMOUSTLS\n250-XEXCH50\n250 XSHADOW\n";
    let c = classify(t2010, "2024-06-05");
    assert_eq!(
        (c.version.as_deref(), c.status),
        (Some("2010"), Status::EndOfLife)
    );
    assert!(c.confidence < 0.8, "era-level evidence: {}", c.confidence);
    assert!(
        c.evidence
            .iter()
            .any(|e| e.finding.contains("without XRDST or XSHADOWREQUEST")
                && e.finding.ends_with("Exchange 2010")),
        "{:?}",
        c.evidence
    );
    // The same keywords next to XRDST: 2013 or later, status unknown without a build.
    let t2013 = "250-mx Hello [1.2.3.4]\n250-XEXCH50\n250-XSHADOW\n250 XRDST\n";
    let c = classify(t2013, "2024-06-05");
    assert_eq!(c.status, Status::Unknown);
    // XEXCH50 alone: 2007 or 2010 (or older), end of life.
    let c = classify(
        "250-mx Hello [1.2.3.4]\n250-X-ANONYMOUSTLS\n250 XEXCH50\n",
        "2024-06-05",
    );
    assert_eq!(c.status, Status::EndOfLife, "{:?}", c.evidence);
    // Keywords of 2000/2003 only: end of life.
    let t2003 = "250-mx Hello [1.2.3.4]\n250-X-LINK2STATE\n250 XEXCH50\n";
    let c = classify(t2003, "2024-06-05");
    assert_eq!(c.status, Status::EndOfLife);
}

#[test]
fn exchange_5_5_banner_and_mimeole_builds() {
    let c = classify(
        "220 mx ESMTP Server (Microsoft Exchange Internet Mail Service 5.5.2653.13) ready\r\n",
        "2010-01-01",
    );
    assert_eq!(c.build.as_deref(), Some("5.5.2653.13"));
    assert_eq!(c.label.as_deref(), Some("Exchange 5.5 SP4"));
    assert_eq!(c.status, Status::EndOfLife);
    let c = classify(
        "X-MimeOLE: Produced By Microsoft Exchange V6.5.7226.0\r\nSubject: x\r\n\r\n",
        "2010-01-01",
    );
    assert_eq!(
        (c.version.as_deref(), c.label.as_deref()),
        (Some("2003"), Some("Exchange 2003 SP1"))
    );
    assert_eq!(c.status, Status::Outdated); // SP2 (2005) and later updates exist
}

#[test]
fn exchange_online_banner_and_ehlo() {
    let c = classify("220 AM0PR01MB1234.eurprd01.prod.exchangelabs.com Microsoft ESMTP MAIL Service ready at Tue\r\n", "2024-06-05");
    assert_eq!(
        (c.product, c.status),
        (Product::ExchangeOnline, Status::Supported)
    );
    let c = classify(
        "EHLO EUR05-AM6-obe.outbound.protection.outlook.com\r\n",
        "2024-06-05",
    );
    assert_eq!(c.product, Product::ExchangeOnline);
}

#[test]
fn replies_hint_products() {
    let c = classify(
        "250 2.6.0 <a@b> [InternalId=123, Hostname=EX01.corp] Queued mail for delivery\r\n",
        "2024-06-05",
    );
    assert_eq!(c.product, Product::Exchange);
    let c = classify("250 2.0.0 Ok: queued as 4VtXyZ1abc\r\n", "2024-06-05");
    assert_eq!(c.product, Product::Postfix);
    // Throttle and block replies are read, but say nothing about the product.
    let c = classify(
        "450 4.7.230 Connection throttled: persistently vulnerable server\r\n",
        "2024-06-05",
    );
    assert_eq!(c.product, Product::Unknown);
}

#[test]
fn nothing_readable_is_an_error_and_headers_alone_are_unknown() {
    let e = classify_bytes(
        b"hello world\nthis is not smtp\n",
        d("2024-01-01"),
        &SupportOverrides::new(),
    )
    .unwrap_err();
    assert_eq!(e, ClassifyError::NoEvidence { lines: 2 });
    assert!(classify_bytes(b"", d("2024-01-01"), &SupportOverrides::new()).is_err());
    assert!(classify_bytes(
        b"\xff\xfe\x00\x01",
        d("2024-01-01"),
        &SupportOverrides::new()
    )
    .is_err());
    let c = classify("Subject: hi\nFrom: a@b\n\n", "2024-01-01");
    assert_eq!(
        (c.product, c.status, c.confidence),
        (Product::Unknown, Status::Unknown, 0.0)
    );
}

#[test]
fn json_fields_are_stable() {
    let c = classify(EXCHANGE_2016_CHAIN, "2025-10-15");
    let v: serde_json::Value = serde_json::to_value(&c).unwrap();
    for k in [
        "product",
        "version",
        "build",
        "label",
        "status",
        "persistently_vulnerable",
        "confidence",
        "evidence",
        "upgrade_to",
    ] {
        assert!(v.get(k).is_some(), "missing {k}");
    }
    assert_eq!(v["product"], "exchange");
    assert_eq!(v["status"], "end-of-life");
    assert_eq!(v["persistently_vulnerable"], true);
    assert_eq!(v["evidence"][0]["kind"], "received");
    assert!(
        v["evidence"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("from ex02")
            || v["evidence"][0]["text"]
                .as_str()
                .unwrap()
                .starts_with("from EX01")
    );
    let back: Classification = serde_json::from_value(v).unwrap();
    assert_eq!(back, c);
    let online = serde_json::to_value(Product::ExchangeOnline).unwrap();
    assert_eq!(online, "exchange-online");
    assert_eq!(serde_json::to_value(Product::IisSmtp).unwrap(), "iis-smtp");
}

/// Every build in the catalog, seen in a Received hop handed to a non-Exchange edge, classifies to its
/// own label, and its status on its own release day is supported unless its version had already ended.
#[test]
fn every_catalog_build_classifies_to_its_own_label() {
    let ov = SupportOverrides::new();
    let mut not_supported_on_release_day = Vec::new();
    for r in &Catalog::get().releases {
        let h = format!(
            "Received: from ex.sender.example (203.0.113.5) by mx.receiver.example (Postfix) with ESMTPS id 4V; Tue\r\n\
Received: from a.sender.example (10.0.0.1) by ex.sender.example (10.0.0.2) with Microsoft SMTP Server id {}; Tue\r\n\r\n",
            r.build
        );
        let as_of = r.released.unwrap_or(d("2026-09-01"));
        let c = classify_bytes(h.as_bytes(), as_of, &ov).unwrap();
        assert_eq!(c.product, Product::Exchange, "{}", r.describe());
        assert_eq!(c.build.as_deref(), Some(r.build.to_string().as_str()));
        assert_eq!(c.label.as_deref(), Some(r.label), "{}", r.build);
        assert_eq!(c.version.as_deref(), Some(r.version.id()));
        // On its release day a build of the newest update line of a supported version is supported.
        let newest_line = Catalog::get()
            .of_version(r.version)
            .iter()
            .filter(|x| x.kind != catalog::Kind::Preview && x.released_by(as_of))
            .map(|x| catalog::Line::of(x.build))
            .max();
        if r.released.is_some()
            && r.kind != catalog::Kind::Preview
            && newest_line == Some(catalog::Line::of(r.build))
            && !support::is_end_of_life(r.version, as_of, &ov)
            && c.status != Status::Supported
        {
            not_supported_on_release_day.push(format!(
                "{} on {as_of}: {}",
                r.describe(),
                c.evidence.last().unwrap().finding
            ));
        }
        if support::is_end_of_life(r.version, as_of, &ov) {
            assert_eq!(c.status, Status::EndOfLife, "{}", r.describe());
        }
        assert_eq!(
            c.persistently_vulnerable,
            matches!(c.status, Status::EndOfLife | Status::Outdated)
        );
    }
    assert!(
        not_supported_on_release_day.is_empty(),
        "{}",
        not_supported_on_release_day.join("\n")
    );
}

const LINES: &[&str] = &[
    "220 mx Microsoft ESMTP MAIL Service ready at Mon",
    "250-mx Hello [1.2.3.4]",
    "250-XRDST",
    "250-XEXCH50",
    "250 X-ANONYMOUSTLS",
    "EHLO a.b",
    "Received: from a (1.2.3.4) by b with Microsoft SMTP Server id 15.1.2507.39; Tue",
    " (folded) with mapi id 15.00.1497.040",
    "Received: from a by mx (Postfix) with ESMTPS id X; Tue",
    "Received: (qmail 1 invoked from network); Tue",
    "X-MimeOLE: Produced By Microsoft Exchange V6.5.7226.0",
    "550 5.7.230 blocked",
    "220 x ESMTP Exim 4.96",
    "Received: from a (b (c",
    "",
    "\u{ff}\u{fe}",
];

proptest! {
    #[test]
    fn never_panics_on_bytes(input in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = classify_bytes(&input, d("2025-01-01"), &SupportOverrides::new());
    }

    #[test]
    fn never_panics_on_mixed_real_lines(picks in proptest::collection::vec(0..LINES.len(), 0..30), crlf in any::<bool>()) {
        let eol = if crlf { "\r\n" } else { "\n" };
        let input: String = picks.iter().map(|i| format!("{}{eol}", LINES[*i])).collect();
        if let Ok(c) = classify_bytes(input.as_bytes(), d("2025-01-01"), &SupportOverrides::new()) {
            prop_assert!((0.0..=1.0).contains(&c.confidence));
            prop_assert_eq!(c.persistently_vulnerable, matches!(c.status, Status::EndOfLife | Status::Outdated));
        }
    }
}

#[test]
fn emergency_updates_for_unserviced_lines_stay_outdated() {
    // March 2021 (ProxyLogon): Microsoft shipped Mar21SU even for CUs long out of servicing. Installing
    // it fixed those CVEs but left the CU unserviced: still persistently vulnerable.
    let h = |b: &str| {
        format!("Received: from x by mx.receiver.example (Postfix); Tue\nReceived: from a by x with Microsoft SMTP Server id {b}; Tue\n")
    };
    let c = classify(&h("15.2.659.12"), "2021-03-02");
    assert_eq!(c.label.as_deref(), Some("Exchange Server 2019 CU6 Mar21SU"));
    assert_eq!(c.status, Status::Outdated);
    assert!(c
        .evidence
        .iter()
        .any(|e| e.finding.contains("no longer serviced")));
    assert_eq!(
        classify(&h("15.2.792.10"), "2021-03-02").status,
        Status::Supported
    ); // CU8 Mar21SU
    assert_eq!(
        classify(&h("15.2.721.13"), "2021-03-02").status,
        Status::Supported
    ); // CU7: N-1 until CU9
    assert_eq!(
        classify(&h("15.2.858.5"), "2021-03-16").status,
        Status::Supported
    ); // CU9 on its day
}

#[test]
fn folded_lines_that_lost_their_indentation_still_continue_received() {
    // As pasted from a web mail "show original" view that trimmed leading white space.
    let h = "Received: from mail.sender.example (mail.sender.example [203.0.113.5])
by mx.receiver.example (Postfix) with ESMTPS id 4VtX
for <u@receiver.example>; Tue, 4 Jun 2024 10:11:14 +0000 (UTC)
Received: from EX01.corp.sender.example (10.1.2.3) by mail.sender.example
(10.1.2.4) with Microsoft SMTP Server (version=TLS1_2,
cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id 15.1.2507.39 via Frontend
Transport; Tue, 4 Jun 2024 10:11:12 +0000
Subject: x
";
    let c = classify(h, "2024-06-05");
    assert_eq!(c.build.as_deref(), Some("15.1.2507.39"), "{:?}", c.evidence);
    assert!(c.evidence[0]
        .finding
        .contains("hand-off to mx.receiver.example"));
}

#[test]
fn exchange_to_exchange_across_organisations() {
    // The receiving organisation's own Exchange wrote the top hop; the sender's Exchange is below.
    let h = "\
Received: from EX01.sender.example (203.0.113.5) by EXR.receiver.example (10.9.9.9) with Microsoft SMTP Server (version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id 15.2.1748.39; Tue
Received: from EX02.sender.example (10.0.0.2) by EX01.sender.example (10.0.0.1) with Microsoft SMTP Server id 15.0.1497.2; Tue
";
    let c = classify(h, "2024-06-05");
    assert_eq!(c.build.as_deref(), Some("15.0.1497.2"), "{:?}", c.evidence);
    assert_eq!(c.status, Status::EndOfLife);
    assert!(c.evidence[0]
        .finding
        .contains("hand-off to EXR.receiver.example"));
    assert!(c
        .evidence
        .iter()
        .any(|e| e.finding.contains("receiving side")));
}

#[test]
fn organisation_domains() {
    use super::chain::org_domain;
    assert_eq!(org_domain("EX01.corp.example.com"), Some("example.com"));
    assert_eq!(org_domain("mx.example.co.uk"), Some("example.co.uk"));
    assert_eq!(org_domain("EX01"), None);
    assert_eq!(org_domain("[10.0.0.1]"), None);
    assert_eq!(org_domain("10.0.0.1"), None);
    assert_eq!(org_domain("example.com."), Some("example.com"));
}

#[test]
fn zimbra_headers_beat_its_postfix_stamp() {
    let h = "\
Received: from zimbra.sender.example (zimbra.sender.example [198.51.100.9]) by mx.receiver.example (Postfix) with ESMTPS id 4Vq; Tue
Received: from zimbra.sender.example (localhost [127.0.0.1]) by zimbra.sender.example (Postfix) with ESMTP id 7A1B2; Tue
X-Mailer: Zimbra 9.0.0_GA_4546 (ZimbraWebClient - GC120 (Win)/9.0.0_GA_4546)
Subject: hi

";
    let c = classify(h, "2024-06-05");
    assert_eq!(
        (c.product, c.version.as_deref()),
        (Product::Zimbra, Some("9.0.0"))
    );
    assert!(c.confidence > 0.6);
}

#[test]
fn exchange_2003_smtpsvc_hop_and_short_mimeole() {
    let h = "\
Received: from mail.sender.example ([203.0.113.5]) by mx.receiver.example (Postfix) with ESMTP id X1; Tue, 4 Jun 2024
Received: from EXCH03.sender.local ([10.0.0.3]) by mail.sender.example with Microsoft SMTPSVC(6.0.3790.4675);
\t Tue, 4 Jun 2024 12:11:13 +0200
X-MimeOLE: Produced By Microsoft Exchange V6.5
Subject: old

";
    let c = classify(h, "2024-06-05");
    assert_eq!(
        (c.product, c.version.as_deref(), c.build.as_deref()),
        (Product::Exchange, Some("2003"), None)
    );
    assert_eq!(c.status, Status::EndOfLife);
}

#[test]
fn received_fields_of_quoted_messages_are_not_the_route() {
    // A bounce or forward quotes another message's headers below the first header block.
    let m = "From alice@sender.example Tue Jun  4 10:11:15 2024
Received: from mail.sender.example ([203.0.113.5]) by mx.receiver.example (Postfix) with ESMTP id X1; Tue
Received: from EX01.sender.example (10.0.0.1) by mail.sender.example (10.0.0.2) with Microsoft SMTP Server id 15.1.2507.39; Tue
Subject: Fwd: old thread

---------- Forwarded message ----------
Received: from mx.other.example (192.0.2.9) by EXOLD.other.example (10.9.0.1) with Microsoft SMTP Server id 8.3.298.1; Mon
Received: from EXOLD2.other.example (10.9.0.2) by mx.other.example (10.9.0.3) with Microsoft SMTP Server id 8.3.298.1; Mon
";
    let c = classify(m, "2024-06-05");
    assert_eq!(c.build.as_deref(), Some("15.1.2507.39"), "{:?}", c.evidence);
    assert!(c.evidence.iter().all(|e| !e.text.contains("other.example")));
    // Headers, then a transcript after an empty line: both are read.
    let t = "Subject: x\n\n220 mx.example.org ESMTP Exim 4.96\n";
    assert_eq!(classify(t, "2024-06-05").product, Product::Exim);
}
