//! The shapes of real mail flow the single Received rule must get right, the connecting-server anchor,
//! the fingerprints added for real-world input, and order independence.

use super::*;
use proptest::prelude::*;

fn d(s: &str) -> Date {
    parse_iso(s).unwrap()
}

fn classify(input: &str, date: &str) -> Classification {
    classify_bytes(input.as_bytes(), d(date), &SupportOverrides::new()).unwrap()
}

fn connecting(input: &str, ip: &str, date: &str) -> Classification {
    classify_connecting(
        input.as_bytes(),
        ip.parse().unwrap(),
        d(date),
        &SupportOverrides::new(),
    )
    .unwrap()
}

fn verdict(c: &Classification) -> (Product, Option<&str>, Status) {
    (c.product, c.build.as_deref(), c.status)
}

/// Centralised mail transport: the mailbox is in Exchange Online, the mail leaves through the
/// organisation's on-premises Exchange 2016 (and, in the second form, its Postfix gateway).
const CENTRALISED: &str = "\
Received: from mail.contoso.example (mail.contoso.example [198.51.100.20])
\tby mx.receiver.example (Postfix) with ESMTPS id 4VtXyZ; Tue,  4 Jun 2024 10:11:14 +0000 (UTC)
Received: from NAM10-DM6-obe.outbound.protection.outlook.com (40.107.1.2) by
 mail.contoso.example (198.51.100.20) with Microsoft SMTP Server
 (version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id 15.1.2507.6;
 Tue, 4 Jun 2024 10:11:13 +0000
Received: from DM6PR01MB1234.namprd01.prod.outlook.com (2603:10b6:5:1::1) by
 DM6PR01MB5678.namprd01.prod.outlook.com (2603:10b6:5:2::2) with Microsoft SMTP
 Server (version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id
 15.20.7633.34; Tue, 4 Jun 2024 10:11:12 +0000
Received: from DM6PR01MB1234.namprd01.prod.outlook.com ([fe80::1]) by
 DM6PR01MB1234.namprd01.prod.outlook.com ([fe80::1%4]) with mapi id
 15.20.7633.033; Tue, 4 Jun 2024 10:11:12 +0000
X-OriginatorOrg: contoso.example
Subject: quarterly report

";

#[test]
fn centralised_mail_transport_reports_the_on_premises_exchange() {
    let c = classify(CENTRALISED, "2024-11-27");
    assert_eq!(
        verdict(&c),
        (Product::Exchange, Some("15.1.2507.6"), Status::Outdated),
        "{:#?}",
        c.evidence
    );
    assert_eq!(c.version.as_deref(), Some("2016"));
    assert!(c.evidence[0]
        .finding
        .contains("mail.contoso.example runs Exchange build 15.1.2507.6"));
    // Through the organisation's own gateway: the organisation's Exchange is still what is rated, and
    // the gateway is named.
    let gw = CENTRALISED.replacen(
        "Received: from NAM10",
        "Received: from mail.contoso.example (10.0.0.20) by gw.contoso.example (Postfix)\n\twith ESMTP id 7A1B2; Tue, 4 Jun 2024 10:11:13 +0000\nReceived: from NAM10",
        1,
    );
    let gw = gw.replacen(
        "from mail.contoso.example (mail.contoso.example [198.51.100.20])",
        "from gw.contoso.example (gw.contoso.example [198.51.100.21])",
        1,
    );
    let c = classify(&gw, "2024-11-27");
    assert_eq!(
        verdict(&c),
        (Product::Exchange, Some("15.1.2507.6"), Status::Outdated)
    );
    assert!(
        c.evidence[0]
            .finding
            .contains("relays it out through gw.contoso.example (Postfix)"),
        "{}",
        c.evidence[0].finding
    );
    // Anchored to the gateway's address, only what the gateway wrote is attributed to it.
    let c = connecting(&gw, "198.51.100.21", "2024-11-27");
    assert_eq!(
        verdict(&c),
        (Product::Postfix, None, Status::Unknown),
        "{:#?}",
        c.evidence
    );
    assert!(c.evidence.iter().any(|e| e
        .finding
        .contains("was written before the message reached the connecting server 198.51.100.21")));
}

#[test]
fn one_organisation_under_several_names() {
    // A copy from the sender's side (no receiving edge): two Exchange servers of one organisation under
    // two registrable domains, with public addresses. Exchange's own stamps tie the names together.
    let block = "\
Received: from EX01.contoso-hq.example (203.0.113.5) by EX02.contoso.example
 (203.0.113.6) with Microsoft SMTP Server (version=TLS1_2,
 cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id 15.2.1544.4; Tue, 4 Jun 2024 10:11:13 +0000
Received: from EX01.contoso-hq.example ([fe80::1]) by EX01.contoso-hq.example
 ([fe80::1%12]) with mapi id 15.1.2507.6; Tue, 4 Jun 2024 10:11:12 +0000
X-MS-Exchange-Organization-AuthAs: Internal
X-MS-Exchange-Organization-AuthSource: EX01.contoso-hq.example
X-OriginatorOrg: contoso.example

";
    let c = classify(block, "2024-06-05");
    assert_eq!(
        verdict(&c),
        (Product::Exchange, Some("15.2.1544.4"), Status::Supported),
        "{:#?}",
        c.evidence
    );
    // Without the stamps, the domain change with public addresses reads as a hand-off, and the hop
    // below it is taken as the sender's.
    let bare: String = block
        .lines()
        .filter(|l| !l.starts_with("X-"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        classify(&bare, "2024-06-05").build.as_deref(),
        Some("15.1.2507.6")
    );
    // Private addresses between the names are enough on their own.
    let private = bare.replace("203.0.113.5", "10.1.0.5");
    assert_eq!(
        classify(&private, "2024-06-05").build.as_deref(),
        Some("15.2.1544.4")
    );
    // Hybrid: on-premises hands the mail to its own tenant, which sends it out.
    let hybrid = "\
Received: from mail-db8eur05on2100.outbound.protection.outlook.com (40.107.1.1) by mx.receiver.example (Postfix) with ESMTPS id Q; Tue
Received: from DB8PR01MB1.eurprd01.prod.exchangelabs.com (2603::1) by DB8PR01MB2.eurprd01.prod.exchangelabs.com (2603::2) with Microsoft SMTP Server id 15.20.7633.34; Tue
Received: from EX01.corp-routing.example (203.0.113.9) by DB8PR01MB1.eurprd01.prod.exchangelabs.com (2603::1) with Microsoft SMTP Server id 15.20.7633.34; Tue
Received: from EX00.corp.example (10.0.0.1) by EX01.corp-routing.example (10.0.0.2) with Microsoft SMTP Server id 15.1.2507.6; Tue
X-MS-Exchange-CrossTenant-FromEntityHeader: HybridOnPrem

";
    let c = classify(hybrid, "2024-06-05");
    assert_eq!(c.product, Product::ExchangeOnline);
    assert!(c.evidence[0]
        .finding
        .contains("EX01.corp-routing.example (15.1.2507.6)"));
}

#[test]
fn microsofts_recipient_side_is_never_the_sender() {
    // An Exchange Online recipient: HTTPS and mapi hops and the EOP front end are the receiving side.
    let eop = "\
Received: from BY2NAM03HT158.eop-NAM03.prod.protection.outlook.com (2603:1096:100:19::20) by
 SLXP216MB0381.KORP216.PROD.OUTLOOK.COM with HTTPS via SL2P216CA0058.KORP216.PROD.OUTLOOK.COM;
 Wed, 17 Apr 2019 05:39:02 +0000
Received: from BY2NAM03FT015.eop-NAM03.prod.protection.outlook.com (10.152.84.59) by
 BY2NAM03HT158.eop-NAM03.prod.protection.outlook.com (10.152.85.21) with Microsoft SMTP
 Server (version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384) id 15.20.1771.16;
 Wed, 17 Apr 2019 05:39:02 +0000
Received: from mx.sender.example (198.51.100.7) by BY2NAM03FT015.mail.protection.outlook.com
 (10.152.84.212) with Microsoft SMTP Server (version=TLS1_2,
 cipher=TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384) id 15.20.1771.16 via Frontend Transport;
 Wed, 17 Apr 2019 05:39:01 +0000
Received: from [10.0.0.9] (helo=app) by mx.sender.example with esmtpsa (TLS1.3)
 tls TLS_AES_256_GCM_SHA384 (Exim 4.92) (envelope-from <a@sender.example>) id 1rXyZa-000Abc-2B;
 Wed, 17 Apr 2019 05:39:00 +0000

";
    let c = classify(eop, "2019-04-18");
    assert_eq!(
        (c.product, c.version.as_deref()),
        (Product::Exim, Some("4.92")),
        "{:#?}",
        c.evidence
    );
    assert!(c
        .evidence
        .iter()
        .any(|e| e.finding.contains("belongs to the receiving side")));
    // A Hotmail front end stamping SMTPSVC for the recipient is not the sender's IIS.
    let hotmail_rcpt = "\
Received: from mail.sender.example ([198.51.100.7]) by BLU0-MC1-F12.Blu0.hotmail.com with Microsoft SMTPSVC(6.0.3790.4900);
\t Mon, 3 Jan 2011 10:00:00 -0800
Received: by mail.sender.example (Postfix, from userid 1000) id 3B1C2; Mon,  3 Jan 2011 19:00:00 +0100 (CET)

";
    let c = classify(hotmail_rcpt, "2024-06-05");
    assert_eq!(c.product, Product::Postfix, "{:#?}", c.evidence);
    // Hotmail as the sender is Microsoft's service, never an end-of-life IIS server.
    let hotmail_sender = "\
Received: from blu004-omc1s10.hotmail.com (blu004-omc1s10.hotmail.com [65.55.116.21])
\tby mx.receiver.example (Postfix) with ESMTP id 4F1; Mon,  3 Jan 2011 19:00:01 +0100 (CET)
Received: from BLU184-W1 ([65.55.116.7]) by blu004-omc1s10.hotmail.com with Microsoft SMTPSVC(6.0.3790.4675);
\t Mon, 3 Jan 2011 10:00:00 -0800

";
    let c = classify(hotmail_sender, "2024-06-05");
    assert_eq!(
        (c.product, c.status),
        (Product::ExchangeOnline, Status::Supported),
        "{:#?}",
        c.evidence
    );
    assert!(!c.persistently_vulnerable);
}

/// A mailing list copy: the list server (Postfix) took the message from the author's Exchange 2013.
const LIST_OVER_EXCHANGE: &str = "\
Received: from lists.example.org (lists.example.org [192.0.2.50])
\tby mx.receiver.example (Postfix) with ESMTP id 4Vq; Tue,  4 Jun 2024 10:11:15 +0000 (UTC)
Received: from EX01.author.example (author.example [203.0.113.5])
\tby lists.example.org (Postfix) with ESMTPS id 9F2A1; Tue,  4 Jun 2024 10:11:14 +0000 (UTC)
Received: from EX02.author.example (10.0.0.2) by EX01.author.example (10.0.0.1) with Microsoft SMTP
 Server id 15.0.1497.2; Tue, 4 Jun 2024 10:11:12 +0000
X-MimeOLE: Produced By Microsoft Exchange V6.5.7226.0
List-Id: <dev.lists.example.org>

";

#[test]
fn one_rule_for_every_product_mailing_lists_are_the_list_server() {
    let c = classify(LIST_OVER_EXCHANGE, "2024-06-05");
    assert_eq!(
        verdict(&c),
        (Product::Postfix, None, Status::Unknown),
        "{:#?}",
        c.evidence
    );
    assert!(c
        .evidence
        .iter()
        .any(|e| e.finding.contains("below the sending organisation")));
    assert!(c
        .evidence
        .iter()
        .any(|e| e.finding.contains("not the sending one")));
    // The same list relaying an author's Postfix: still the list server (here Exim), same rule.
    let over_postfix = "\
Received: from lists.example.org (lists.example.org [192.0.2.50])
\tby mx.receiver.example (Postfix) with ESMTP id 4Vq; Tue,  4 Jun 2024 10:11:15 +0000 (UTC)
Received: from mail.author.example ([203.0.113.5]) by lists.example.org with esmtps (Exim 4.96)
\t(envelope-from <a@author.example>) id 1rXyZa-000Abc-2B; Tue, 04 Jun 2024 10:11:14 +0000
Received: by mail.author.example (Postfix, from userid 1000) id 3B1C2; Tue,  4 Jun 2024 10:11:12 +0000 (UTC)

";
    let c = classify(over_postfix, "2024-06-05");
    assert_eq!(
        (c.product, c.version.as_deref()),
        (Product::Exim, Some("4.96")),
        "{:#?}",
        c.evidence
    );
}

#[test]
fn connecting_anchor_attributes_only_the_connecting_servers_own_fields() {
    // As a milter sees it: Postfix's own field (naming the client address) on top.
    let ex2013 = "\
Received: from EX01.sender.example (EX01.sender.example [192.0.2.7])
\tby mx.receiver.example (Postfix) with ESMTPS id 4VtXy; Tue,  4 Jun 2024 10:11:14 +0000 (UTC)
Received: from EX01.sender.example (10.0.0.1) by EX01.sender.example (10.0.0.1) with Microsoft
 SMTP Server (version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id 15.0.1497.2 via
 Frontend Transport; Tue, 4 Jun 2024 10:11:13 +0000
Received: from EX01.sender.example ([fe80::1]) by EX01.sender.example ([fe80::1%12]) with mapi id
 15.00.1497.002; Tue, 4 Jun 2024 10:11:12 +0000

";
    let c = connecting(ex2013, "192.0.2.7", "2024-06-05");
    assert_eq!(
        verdict(&c),
        (Product::Exchange, Some("15.0.1497.2"), Status::EndOfLife)
    );
    assert!(c.evidence[0]
        .finding
        .contains("written by the connecting server 192.0.2.7"));
    // Without the MTA's own field (the message as it arrived), the newest field is the connecting
    // server's; an IPv4-mapped address is the same address.
    let arrived: String = ex2013.lines().skip(2).map(|l| format!("{l}\n")).collect();
    let c = connecting(&arrived, "::ffff:192.0.2.7", "2024-06-05");
    assert_eq!(c.build.as_deref(), Some("15.0.1497.2"));
    // Exchange only below a non-Exchange connecting hop: nothing is attributed to the connecting
    // address but what it wrote.
    let below = "\
Received: from relay.sender.example (relay.sender.example [192.0.2.8])
\tby mx.receiver.example (Postfix) with ESMTPS id 4VtXz; Tue,  4 Jun 2024 10:11:15 +0000 (UTC)
Received: from EX01.sender.example (EX01.sender.example [10.0.0.1])
\tby relay.sender.example (Postfix) with ESMTP id 7A1B2; Tue,  4 Jun 2024 10:11:14 +0000 (UTC)
Received: from EX02.sender.example (10.0.0.2) by EX01.sender.example (10.0.0.1) with Microsoft SMTP
 Server id 15.0.1497.2; Tue, 4 Jun 2024 10:11:12 +0000
X-MimeOLE: Produced By Microsoft Exchange V6.5.7226.0

";
    let c = connecting(below, "192.0.2.8", "2024-06-05");
    assert_eq!(
        verdict(&c),
        (Product::Postfix, None, Status::Unknown),
        "{:#?}",
        c.evidence
    );
    assert!(c.build.is_none() && !c.persistently_vulnerable);
    // A field naming another address is not the MTA's stamp of this client: the newest field is then
    // the connecting server's own (here our Postfix's, which names no Exchange).
    let c = connecting(below, "198.51.100.99", "2024-06-05");
    assert_ne!(c.product, Product::Exchange);
    // The same API reads transcripts too.
    let c = connecting(
        "220 mx.sender.example ESMTP Exim 4.96 Tue, 04 Jun 2024 10:11:12 +0000\r\n",
        "192.0.2.9",
        "2024-06-05",
    );
    assert_eq!(c.product, Product::Exim);
}

#[test]
fn exchange_5_5_internet_mail_service() {
    let h = "\
Received: from mail1.example.com (mail1.example.com [192.0.2.229])
\tby oss.example.org (8.12.3/8.12.3) with SMTP id g3HA2G8d014907; Wed, 17 Apr 2002 03:02:17 -0700
Received: by mail1.example.com with Internet Mail Service (5.5.2653.19)
\tid <D4M0V4ZH>; Wed, 17 Apr 2002 12:03:20 +0200
X-Mailer: Internet Mail Service (5.5.2653.19)

";
    let c = classify(h, "2024-06-05");
    assert_eq!(
        verdict(&c),
        (Product::Exchange, Some("5.5.2653.19"), Status::EndOfLife)
    );
    assert_eq!(c.version.as_deref(), Some("5.5"));
    // The IMS as the receiving side of an SMTP hop names its build in a comment.
    let h = "\
Received: from gw.example.com ([192.0.2.1]) by mx.receiver.example (Postfix) with ESMTP id 1; Wed
Received: from a.example.com ([10.0.0.3]) by gw.example.com with SMTP (Microsoft Exchange Internet Mail Service Version 5.5.2653.13)
\tid JBQJ7RPG; Wed, 17 Apr 2002 12:03:13 +0200

";
    assert_eq!(
        classify(h, "2024-06-05").build.as_deref(),
        Some("5.5.2653.13")
    );
}

#[test]
fn sendmail_and_opensmtpd_stamps() {
    let wrap = |hop: &str| {
        format!("Received: from a.sender.example (a.sender.example [198.51.100.3]) by mx.receiver.example (Postfix) with ESMTP id 1; Tue\n{hop}\n\n")
    };
    for (hop, p, v) in [
        ("Received: from h (h [10.0.0.1]) by a.sender.example (8.15.2/8.15.2/Debian-10) with ESMTP id x4ABC; Tue", Product::Sendmail, Some("8.15.2")),
        ("Received: (from root@localhost) by a.sender.example (8.14.4/8.14.4/Submit) id x4ABD; Tue", Product::Sendmail, Some("8.14.4")),
        ("Received: from localhost (a.sender.example [local]) by a.sender.example (OpenSMTPD) with ESMTPA id d44b4f97; Thu", Product::Opensmtpd, None),
    ] {
        let c = classify(&wrap(hop), "2024-06-05");
        assert_eq!((c.product, c.version.as_deref()), (p, v), "{hop}");
    }
}

#[test]
fn ehlo_responses_alone_name_postfix_exim_sendmail_opensmtpd_with_lower_confidence() {
    let cases: [(&str, Product); 6] = [
        ("250-mail.example.com\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n250-ETRN\r\n250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n", Product::Postfix),
        ("250-mail.example.com\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-XFORWARD NAME ADDR PROTO HELO\r\n250 8BITMIME\r\n", Product::Postfix),
        ("250-mx.example.org Hello client.example.net [192.0.2.1]\r\n250-SIZE 52428800\r\n250-8BITMIME\r\n250-PIPELINING\r\n250-CHUNKING\r\n250-STARTTLS\r\n250-PRDR\r\n250 HELP\r\n", Product::Exim),
        ("250-mx.example.org Hello client.example.net [192.0.2.1]\r\n250-SIZE 52428800\r\n250-PIPELINING\r\n250-PIPE_CONNECT\r\n250 HELP\r\n", Product::Exim),
        ("250-mx.example.com Hello client.example.net [192.0.2.1], pleased to meet you\r\n250-ENHANCEDSTATUSCODES\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE\r\n250-DSN\r\n250-ETRN\r\n250-DELIVERBY\r\n250 HELP\r\n", Product::Sendmail),
        ("250-mx.example.org Hello client.example.net [192.0.2.1], pleased to meet you\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250-SIZE 36700160\r\n250-DSN\r\n250 HELP\r\n", Product::Opensmtpd),
    ];
    for (resp, p) in cases {
        let c = classify(resp, "2024-06-05");
        assert_eq!(c.product, p, "{resp}");
        assert!(c.confidence <= 0.6, "{resp}: {}", c.confidence);
        assert!(c.evidence[0].finding.contains("fingerprint"));
        // The same keywords in any order give the same verdict.
        let mut lines: Vec<&str> = resp.trim_end().split("\r\n").collect();
        let first = lines.remove(0);
        lines.reverse();
        let n = lines.len();
        let shuffled: String = std::iter::once(first.to_string())
            .chain(lines.iter().enumerate().map(|(i, l)| {
                let k = &l[4..];
                if i + 1 == n {
                    format!("250 {k}")
                } else {
                    format!("250-{k}")
                }
            }))
            .map(|l| format!("{l}\r\n"))
            .collect();
        assert_eq!(classify(&shuffled, "2024-06-05").product, p, "{shuffled}");
    }
    // A named product in the greeting outweighs a fingerprint.
    let t = format!(
        "220 mx.example.com ESMTP Sendmail 8.15.2/8.15.2; Tue\r\n{}",
        cases_postfix()
    );
    assert_eq!(classify(&t, "2024-06-05").product, Product::Sendmail);
}

fn cases_postfix() -> &'static str {
    "250-mail.example.com\r\n250-PIPELINING\r\n250-ETRN\r\n250 DSN\r\n"
}

#[test]
fn multi_line_greeting_cut_after_its_first_line_is_classified() {
    for input in [
        "220-mx.example.org ESMTP Exim 4.97.1 Tue, 04 Jun 2024 10:11:12 +0000\r\n",
        "220-mx.example.org ESMTP Exim 4.97.1 Tue, 04 Jun 2024 10:11:12 +0000",
        "S: 220-mx.example.org ESMTP Exim 4.97.1\nC: QUIT\n",
    ] {
        let c = classify_bytes(input.as_bytes(), d("2024-06-05"), &SupportOverrides::new())
            .unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert_eq!(
            (c.product, c.version.as_deref()),
            (Product::Exim, Some("4.97.1")),
            "{input:?}"
        );
    }
}

#[test]
fn xexch50_era_and_keyword_order() {
    let keys = ["X-ANONYMOUSTLS", "XEXCH50", "XRDST"];
    let mut verdicts = Vec::new();
    for order in [
        [0, 1, 2],
        [2, 1, 0],
        [1, 0, 2],
        [1, 2, 0],
        [0, 2, 1],
        [2, 0, 1],
    ] {
        let t = format!(
            "250-mx Hello [192.0.2.1]\n250-{}\n250-{}\n250 {}\n",
            keys[order[0]], keys[order[1]], keys[order[2]]
        );
        let c = classify(&t, "2024-06-05");
        assert!(
            c.evidence[0]
                .finding
                .contains("Exchange 2013, 2016, 2019 or SE"),
            "{t}: {:?}",
            c.evidence
        );
        verdicts.push((
            c.product,
            c.version,
            c.status,
            c.evidence[0].finding.clone(),
        ));
    }
    assert!(verdicts.windows(2).all(|w| w[0] == w[1]), "{verdicts:#?}");
    // Contradicting keywords are explained, never silently dropped, whatever their order.
    for t in [
        "250-mx Hello [192.0.2.1]\n250-X-LINK2STATE\n250 XRDST\n",
        "250-mx Hello [192.0.2.1]\n250-XRDST\n250 X-LINK2STATE\n",
    ] {
        let c = classify(t, "2024-06-05");
        assert_eq!(c.status, Status::Unknown);
        assert!(
            c.evidence[0].finding.contains("conflict"),
            "{:?}",
            c.evidence
        );
        assert!(c.evidence[0]
            .finding
            .contains("2000, 2003, 2013, 2016, 2019 or SE"));
    }
}

#[test]
fn transcripts_and_logs_as_people_paste_them() {
    let cases: &[(&str, Product)] = &[
        ("[*] 10.0.0.1:25        - 10.0.0.1:25 SMTP 220 mx.example.org ESMTP Exim 4.96 Tue, 04 Jun 2024\n", Product::Exim),
        ("[S] 220 mx.example.org ESMTP Postfix (Debian/GNU)\n[C] EHLO probe\n", Product::Postfix),
        (" Out: 220 mx.example.org ESMTP Exim 4.96\n In:  EHLO probe\n", Product::Exim),
        ("\tuser@host:~$ telnet mx.example.org 25\n\t\t220 mx.example.org ESMTP Postfix\n", Product::Postfix),
        ("S 220 mx.example.org ESMTP Postfix\nC EHLO probe\n", Product::Postfix),
        ("2024-06-04T10:11:12.345Z\t192.0.2.1\tS\t220 mx.example.org ESMTP Sendmail 8.15.2/8.15.2; Tue\n", Product::Sendmail),
        ("10:11:12.345 <<< 220 mx.example.org Microsoft ESMTP MAIL Service ready at Tue, 4 Jun 2024\n", Product::Exchange),
        ("Jun  4 10:11:12 probe smtp-check[123]: S: 220 mx.example.org ESMTP OpenSMTPD\n", Product::Opensmtpd),
        ("Jun  4 10:11:12 mx postfix/smtp[123]: 4VtX: to=<a@example.org>, relay=mx.example.org[192.0.2.1]:25, status=deferred (host mx.example.org[192.0.2.1] said: 450 4.7.1 Queued mail for delivery (in reply to end of DATA command))\n", Product::Exchange),
        ("220 mx.example.org ESMTP Haraka 3.0.3 ready\r250-mx.example.org Hello\r250 PIPELINING\r", Product::Haraka),
        ("Received: from a.sender.example (a.sender.example [198.51.100.3])\r\tby mx.receiver.example (Postfix) with ESMTP id 1; Tue\rReceived: from h (h [10.0.0.1]) by a.sender.example (8.15.2/8.15.2) with ESMTP id x; Tue\r\r", Product::Sendmail),
        ("Received: from a.sender.example (a.sender.example [198.51.100.3])\r\n\tby mx.receiver.example (Postfix) with ESMTP id 1; Tue\rReceived: from h (h [10.0.0.1]) by a.sender.example\n (8.15.2/8.15.2) with ESMTP id x; Tue\r\n\r\n", Product::Sendmail),
    ];
    for (input, p) in cases {
        let c = classify_bytes(input.as_bytes(), d("2024-06-05"), &SupportOverrides::new())
            .unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert_eq!(c.product, *p, "{input:?}: {:#?}", c.evidence);
    }
    // Prose with numbers in it is still not SMTP.
    for input in [
        "I have 250 apples and 220 pears\n",
        "On Tue, 4 Jun 2024 at 10:11, Bob wrote:\n",
    ] {
        assert!(
            classify_bytes(input.as_bytes(), d("2024-06-05"), &SupportOverrides::new()).is_err(),
            "{input}"
        );
    }
}

/// Units of evidence whose order carries no meaning: a greeting, an EHLO response (whose keyword lines
/// are shuffled too), replies, and one header block.
fn units() -> Vec<(Vec<String>, bool)> {
    let ehlo = |keys: &[&str]| {
        let mut v = vec!["250-mx.example.com Hello [192.0.2.1]".to_string()];
        v.extend(keys.iter().map(|k| k.to_string()));
        (v, true)
    };
    vec![
        (vec!["220 mx.example.com Microsoft ESMTP MAIL Service ready at Tue, 4 Jun 2024".into()], false),
        ehlo(&["SIZE 37748736", "PIPELINING", "X-ANONYMOUSTLS", "XEXCH50", "XRDST", "AUTH NTLM", "XSHADOWREQUEST", "CHUNKING"]),
        (vec!["250 2.6.0 <a@b> [InternalId=123, Hostname=EX01] Queued mail for delivery".into()], false),
        (vec!["EHLO probe.example.net".into()], false),
        (
            vec![
                "Received: from ex02.corp.example.com (ex02.corp.example.com [203.0.113.5]) by mx.receiver.example (Postfix) with ESMTPS id 4V; Tue".into(),
                "Received: from EX01.corp.example.com (10.1.2.3) by EX02.corp.example.com (10.1.2.4) with Microsoft SMTP Server id 15.1.2507.39; Tue".into(),
                "Subject: x".into(),
                "".into(),
            ],
            false,
        ),
    ]
}

fn render(units: &[(Vec<String>, bool)]) -> String {
    let mut out = String::new();
    for (lines, ehlo) in units {
        if *ehlo {
            out.push_str(&lines[0]);
            out.push('\n');
            for (i, k) in lines[1..].iter().enumerate() {
                let sep = if i + 2 == lines.len() { ' ' } else { '-' };
                out.push_str(&format!("250{sep}{k}\n"));
            }
        } else {
            for l in lines {
                out.push_str(l);
                out.push('\n');
            }
        }
    }
    out
}

proptest! {
    #[test]
    fn shuffling_evidence_never_changes_the_verdict(
        order in Just((0..5usize).collect::<Vec<_>>()).prop_shuffle(),
        keys in Just((0..8usize).collect::<Vec<_>>()).prop_shuffle(),
        pick in proptest::collection::vec(any::<bool>(), 5),
        date in prop_oneof![Just("2024-06-05"), Just("2025-11-01")],
    ) {
        let all = units();
        let chosen: Vec<usize> = (0..5).filter(|i| pick[*i]).collect();
        prop_assume!(!chosen.is_empty());
        let base: Vec<(Vec<String>, bool)> = chosen.iter().map(|i| all[*i].clone()).collect();
        let mut shuffled: Vec<(Vec<String>, bool)> = order
            .iter()
            .filter(|i| pick[**i])
            .map(|i| all[*i].clone())
            .collect();
        for (lines, ehlo) in &mut shuffled {
            if *ehlo {
                let ks: Vec<String> = keys.iter().map(|k| lines[1 + k].clone()).collect();
                lines.truncate(1);
                lines.extend(ks);
            }
        }
        let a = classify(&render(&base), date);
        let b = classify(&render(&shuffled), date);
        prop_assert_eq!(
            (a.product, a.version.clone(), a.build.clone(), a.status),
            (b.product, b.version.clone(), b.build.clone(), b.status),
            "{}\n---\n{}", render(&base), render(&shuffled)
        );
    }
}
