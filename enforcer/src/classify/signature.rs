//! Product names in free text (greeting text, Received comments, reply text, X- headers), found in one
//! pass: at each word start the lower-cased first byte picks the few names worth comparing.

use super::build::Build;
use super::Product;

/// What Microsoft text says about the server behind it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsSignal {
    /// `Microsoft ESMTP MAIL Service ready at …` (Exchange 2007 and later; no version on the wire).
    Modern,
    /// `Microsoft ESMTP MAIL Service, Version: 6.0.3790.4675` / `Microsoft SMTPSVC(6.0.3790.4675)`: the IIS
    /// SMTP service of that Windows version (Exchange 2000/2003 ran on it). Not an Exchange build.
    Iis(Option<Build>),
    /// An Exchange build written by Exchange itself (`Microsoft Exchange Internet Mail Service
    /// 5.5.2653.13`, `Produced By Microsoft Exchange V6.5.7226.0`).
    ExchangeBuild(Build),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    pub product: Product,
    pub version: Option<String>,
    pub ms: Option<MsSignal>,
}

fn starts_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.len() >= needle.len() && hay[..needle.len()].eq_ignore_ascii_case(needle)
}

pub fn ends_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.len() >= needle.len() && hay[hay.len() - needle.len()..].eq_ignore_ascii_case(needle)
}

/// Whether `host` (without its root dot) ends the way a Microsoft service name can: every suffix
/// below ends in `m`, `n`, `s` or `l`. One byte test that turns away nearly every other name: the
/// suffix lists are consulted for every hop, several times.
fn may_be_microsoft(host: &[u8]) -> bool {
    host.last()
        .is_some_and(|b| matches!(b | 0x20, b'm' | b'n' | b's' | b'l'))
}

/// Host names of Exchange Online / Microsoft 365 (including the EOP edge `*.protection.outlook.com`).
pub fn is_exchange_online_host(host: &[u8]) -> bool {
    let host = host.strip_suffix(b".").unwrap_or(host);
    if !may_be_microsoft(host) {
        return false;
    }
    [
        &b".outlook.com"[..],
        b".exchangelabs.com",
        b".office365.com",
        b".outlook.cn",
        b".office365.us",
    ]
    .iter()
    .any(|s| ends_ci(host, s))
}

/// Host names of any Microsoft mail service: Exchange Online and EOP, and the consumer service
/// (Outlook.com, formerly Hotmail/MSN, whose front ends stamp `SMTPSVC`).
pub fn is_microsoft_host(host: &[u8]) -> bool {
    let host = host.strip_suffix(b".").unwrap_or(host);
    if !may_be_microsoft(host) {
        return false;
    }
    is_exchange_online_host(host)
        || [&b".hotmail.com"[..], b".msn.com", b".live.com", b".phx.gbl"]
            .iter()
            .any(|s| ends_ci(host, s))
}

/// The version right after a product name: `Exim 4.96`, `Haraka/3.0.3`, `Domino Release 12.0.2FP1`,
/// `MailEnable Service, Version: 10.44--`. Must start with a digit and contain a dot.
pub fn version_after(text: &[u8], mut pos: usize) -> Option<String> {
    for _ in 0..4 {
        while pos < text.len() && matches!(text[pos], b' ' | b'\t' | b'/' | b'(' | b':' | b',') {
            pos += 1;
        }
        let rest = &text[pos..];
        const SKIP: [&[u8]; 5] = [b"release", b"version", b"service", b"esmtp", b"v"];
        let skip = SKIP.iter().find(|w| {
            starts_ci(rest, w)
                && rest.get(w.len()).is_some_and(|b| !b.is_ascii_alphabetic())
                && (w.len() != 1 || rest.get(1).is_some_and(u8::is_ascii_digit))
        });
        match skip {
            Some(w) => pos += w.len(),
            None => break,
        }
    }
    let rest = text.get(pos..)?;
    if !rest.first()?.is_ascii_digit() {
        return None;
    }
    let n = rest
        .iter()
        .take(40)
        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'.')
        .count();
    let v = rest[..n].strip_suffix(b".").unwrap_or(&rest[..n]);
    let v = v.split(|b| *b == b'_').next().unwrap_or(v);
    v.contains(&b'.')
        .then(|| String::from_utf8_lossy(v).into_owned())
}

/// A build right after `pos` (skipping spaces, `(`, `V`), e.g. `V6.5.7226.0` or `(6.0.3790.4675)`.
fn build_after(text: &[u8], mut pos: usize) -> Option<Build> {
    while pos < text.len() && matches!(text[pos], b' ' | b'(' | b':' | b',') {
        pos += 1;
    }
    // `Version 5.5.2653.13` (Exchange 5.5's IMS in a Received comment), `V6.5.7226.0`.
    if starts_ci(&text[pos..], b"Version ") {
        pos += 8;
    } else if text.get(pos).is_some_and(|b| matches!(b, b'V' | b'v'))
        && text.get(pos + 1).is_some_and(u8::is_ascii_digit)
    {
        pos += 1;
    }
    let rest = &text[pos..];
    let n = rest
        .iter()
        .take(40)
        .take_while(|b| b.is_ascii_digit() || **b == b'.')
        .count();
    Build::parse(rest[..n].strip_suffix(b".").unwrap_or(&rest[..n]))
}

fn simple(product: Product, text: &[u8], end: usize) -> Hit {
    Hit {
        product,
        version: version_after(text, end),
        ms: None,
    }
}

/// The bytes a product name [`scan`] knows can start with, either case: `p`ostfix, `e`xim, `s`endmail,
/// `q`mail, `o`pensmtpd, `d`omino, `m`daemon/`m`ailenable/`m`icrosoft, `h`mailserver/`h`araka, `z`imbra.
static NAME_START: [bool; 256] = {
    let mut t = [false; 256];
    let firsts = *b"pesqodmhz";
    let mut k = 0;
    while k < firsts.len() {
        t[firsts[k] as usize] = true;
        t[firsts[k].to_ascii_uppercase() as usize] = true;
        k += 1;
    }
    t
};

/// The first product the text names, if any.
pub fn scan(text: &[u8]) -> Option<Hit> {
    let mut i = 0;
    while i < text.len() {
        let b = text[i];
        // Word starts only, and not inside a host name (`zimbra.example.com`, `mx.postfix.org`).
        let host_char = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_' | b'@');
        // One table lookup turns away every byte that starts no product name (nearly all of them)
        // before the dearer word-start test.
        if !NAME_START[usize::from(b)] || (i > 0 && host_char(text[i - 1])) {
            i += 1;
            continue;
        }
        let rest = &text[i..];
        let hit = match b | 0x20 {
            b'p' if starts_ci(rest, b"postfix") => Some(simple(Product::Postfix, text, i + 7)),
            b'e' if starts_ci(rest, b"exim")
                && !rest.get(4).is_some_and(u8::is_ascii_alphabetic) =>
            {
                Some(simple(Product::Exim, text, i + 4))
            }
            b's' if starts_ci(rest, b"sendmail") => Some(simple(Product::Sendmail, text, i + 8)),
            b'q' if starts_ci(rest, b"qmail") => Some(Hit {
                product: Product::Qmail,
                version: None,
                ms: None,
            }),
            b'o' if starts_ci(rest, b"opensmtpd") => Some(simple(Product::Opensmtpd, text, i + 9)),
            b'd' if starts_ci(rest, b"domino") => Some(simple(Product::Domino, text, i + 6)),
            b'm' if starts_ci(rest, b"mdaemon") => Some(simple(Product::Mdaemon, text, i + 7)),
            b'm' if starts_ci(rest, b"mailenable") => {
                Some(simple(Product::Mailenable, text, i + 10))
            }
            b'm' if starts_ci(rest, b"microsoft") => microsoft(text, i + 9),
            b'h' if starts_ci(rest, b"hmailserver") => {
                Some(simple(Product::Hmailserver, text, i + 11))
            }
            b'h' if starts_ci(rest, b"haraka") => Some(simple(Product::Haraka, text, i + 6)),
            b'z' if starts_ci(rest, b"zimbra") => Some(simple(Product::Zimbra, text, i + 6)),
            _ => None,
        };
        if hit.is_some() {
            let token_len = text[i..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric())
                .count();
            let in_host = text
                .get(i + token_len)
                .is_some_and(|c| matches!(c, b'.' | b'-' | b'_' | b'@'))
                && text
                    .get(i + token_len + 1)
                    .is_some_and(u8::is_ascii_alphanumeric);
            if !in_host {
                return hit;
            }
        }
        i += 1;
    }
    None
}

/// After `Microsoft`: which Microsoft SMTP stack wrote this.
fn microsoft(text: &[u8], end: usize) -> Option<Hit> {
    let rest = text[end..].trim_ascii_start();
    let at = text.len() - rest.len();
    let ex = |ms| {
        Some(Hit {
            product: Product::Exchange,
            version: None,
            ms: Some(ms),
        })
    };
    if starts_ci(rest, b"ESMTP MAIL Service, Version:") {
        let v = build_after(text, at + 28);
        return Some(Hit {
            product: Product::IisSmtp,
            version: v.map(|b| b.to_string()),
            ms: Some(MsSignal::Iis(v)),
        });
    }
    if starts_ci(rest, b"ESMTP MAIL Service")
        || starts_ci(rest, b"SMTP MAIL ready")
        || starts_ci(rest, b"SMTP Server")
    {
        return ex(MsSignal::Modern);
    }
    if starts_ci(rest, b"SMTPSVC") {
        let v = build_after(text, at + 7);
        return Some(Hit {
            product: Product::IisSmtp,
            version: v.map(|b| b.to_string()),
            ms: Some(MsSignal::Iis(v)),
        });
    }
    if starts_ci(rest, b"Exchange Internet Mail Service") {
        return build_after(text, at + 30)
            .map(MsSignal::ExchangeBuild)
            .and_then(ex)
            .or_else(|| ex(MsSignal::Modern).map(|h| Hit { ms: None, ..h }));
    }
    if starts_ci(rest, b"Exchange") {
        if let Some(b) = build_after(text, at + 8) {
            return ex(MsSignal::ExchangeBuild(b));
        }
    }
    None
}

/// Sendmail's version stamp in a `by` comment: `(8.15.2/8.15.2)`, `(8.14.4/8.14.4/Submit)`,
/// `(8.15.2/8.15.2/Debian-10)`, `(8.17.1)`: the binary's version, then the configuration's.
pub fn sendmail_by_comment(comment: &[u8]) -> Option<String> {
    // A build starts with a digit: most comments are turned away here, before the split.
    if !comment.first().is_some_and(u8::is_ascii_digit) {
        return None;
    }
    let first = comment.split(|b| *b == b'/').next()?;
    let b = Build::parse(first)?;
    (b.len() == 3
        && b.major() == 8
        && comment.len() <= 80
        && comment
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'/' | b'-' | b'_' | b'+')))
    .then(|| b.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The suffix lists without the one-byte prefilter: what the host checks must keep answering.
    fn ends_with_any(host: &[u8], suffixes: &[&[u8]]) -> bool {
        let host = host.strip_suffix(b".").unwrap_or(host);
        suffixes.iter().any(|s| ends_ci(host, s))
    }

    proptest! {
        #[test]
        fn host_checks_agree_with_the_plain_suffix_lists(
            name in "([a-zA-Z0-9-]{0,6}\\.){0,3}",
            tail in prop::sample::select(vec![
                "outlook.com", "OUTLOOK.COM", "exchangelabs.com", "office365.com", "outlook.cn",
                "office365.us", "hotmail.com", "msn.com", "live.com", "phx.gbl", "example.com",
                "example", "outlook.com.evil.example", "outlook.co", "gbl", "",
            ]),
            root in prop::bool::ANY,
        ) {
            let host = format!("{name}{tail}{}", if root { "." } else { "" });
            let online: [&[u8]; 5] = [b".outlook.com", b".exchangelabs.com", b".office365.com", b".outlook.cn", b".office365.us"];
            let consumer: [&[u8]; 4] = [b".hotmail.com", b".msn.com", b".live.com", b".phx.gbl"];
            let is_online = ends_with_any(host.as_bytes(), &online);
            prop_assert_eq!(is_exchange_online_host(host.as_bytes()), is_online);
            prop_assert_eq!(
                is_microsoft_host(host.as_bytes()),
                is_online || ends_with_any(host.as_bytes(), &consumer)
            );
        }

        #[test]
        fn sendmail_comment_prefilter_turns_away_no_stamp(c in prop_oneof![
            "[0-9a-zA-Z./_+ -]{0,24}",
            "[ 0a]?8\\.[0-9]{1,2}\\.[0-9]{1,2}(/[0-9a-zA-Z. -]{0,8})?",
        ]) {
            // The slow reading, without the first-byte test.
            let slow = c.as_bytes().split(|b| *b == b'/').next().and_then(Build::parse).filter(|b| {
                b.len() == 3
                    && b.major() == 8
                    && c.len() <= 80
                    && c.bytes().all(|x| x.is_ascii_alphanumeric() || matches!(x, b'.' | b'/' | b'-' | b'_' | b'+'))
            }).map(|b| b.to_string());
            prop_assert_eq!(sendmail_by_comment(c.as_bytes()), slow);
        }
    }

    fn hit(t: &str) -> Option<(Product, Option<String>)> {
        scan(t.as_bytes()).map(|h| (h.product, h.version))
    }

    #[test]
    fn banners() {
        let s = |p, v: Option<&str>| Some((p, v.map(str::to_string)));
        assert_eq!(
            hit("mail.example.com ESMTP Postfix (Debian/GNU)"),
            s(Product::Postfix, None)
        );
        assert_eq!(
            hit("mx.example.org ESMTP Exim 4.96 #2 Mon, 01 Jan 2024 10:00:00 +0000"),
            s(Product::Exim, Some("4.96"))
        );
        assert_eq!(
            hit("mx.example.com ESMTP Sendmail 8.15.2/8.15.2; Mon, 1 Jan 2024"),
            s(Product::Sendmail, Some("8.15.2"))
        );
        assert_eq!(
            hit("mx.example.com ESMTP OpenSMTPD"),
            s(Product::Opensmtpd, None)
        );
        assert_eq!(
            hit("mx ESMTP Service (Lotus Domino Release 8.5.3FP6) ready at Mon"),
            s(Product::Domino, Some("8.5.3FP6"))
        );
        assert_eq!(
            hit("mx ESMTP Service (HCL Domino Release 12.0.2) ready"),
            s(Product::Domino, Some("12.0.2"))
        );
        assert_eq!(
            hit("mx.example.com ESMTP MDaemon 21.5.2; Mon, 01 Jan 2024"),
            s(Product::Mdaemon, Some("21.5.2"))
        );
        assert_eq!(
            hit("mx ESMTP MailEnable Service, Version: 10.44-- ready at 01/01/24"),
            s(Product::Mailenable, Some("10.44"))
        );
        assert_eq!(
            hit("mx ESMTP Haraka 3.0.3 ready"),
            s(Product::Haraka, Some("3.0.3"))
        );
        assert_eq!(
            hit("by mx (Haraka/3.0.3) with ESMTPS"),
            s(Product::Haraka, Some("3.0.3"))
        );
        assert_eq!(hit("Welcome to hMailServer"), s(Product::Hmailserver, None));
        assert_eq!(
            hit("Zimbra 8.8.15_GA_4484 (ZimbraWebClient)"),
            s(Product::Zimbra, Some("8.8.15"))
        );
        assert_eq!(
            hit("ESMTP Postfix; Mon, 1 Jan 2024"),
            s(Product::Postfix, None)
        );
        assert_eq!(hit("maximum message size exceeded"), None);
        assert_eq!(
            hit("qmail 1234 invoked from network"),
            s(Product::Qmail, None)
        );
    }

    #[test]
    fn microsoft_forms() {
        let h = scan(b"mail.example.com Microsoft ESMTP MAIL Service ready at Mon, 1 Jan 2024 10:00:00 +0000").unwrap();
        assert_eq!(
            (h.product, h.ms),
            (Product::Exchange, Some(MsSignal::Modern))
        );
        let h = scan(
            b"mail.example.com Microsoft ESMTP MAIL Service, Version: 6.0.3790.4675 ready at  Mon",
        )
        .unwrap();
        assert_eq!(h.product, Product::IisSmtp);
        assert_eq!(h.ms, Some(MsSignal::Iis(Build::parse(b"6.0.3790.4675"))));
        let h = scan(b"Microsoft SMTPSVC(6.0.3790.3959)").unwrap();
        assert_eq!(h.ms, Some(MsSignal::Iis(Build::parse(b"6.0.3790.3959"))));
        let h = scan(b"ESMTP Server (Microsoft Exchange Internet Mail Service 5.5.2653.13) ready")
            .unwrap();
        assert_eq!(
            h.ms,
            Some(MsSignal::ExchangeBuild(Build::new(5, 5, 2653, 13)))
        );
        let h = scan(b"Produced By Microsoft Exchange V6.5.7226.0").unwrap();
        assert_eq!(
            h.ms,
            Some(MsSignal::ExchangeBuild(Build::new(6, 5, 7226, 0)))
        );
        assert_eq!(scan(b"Microsoft Outlook 16.0"), None);
    }

    #[test]
    fn sendmail_and_hosts() {
        assert_eq!(
            sendmail_by_comment(b"8.15.2/8.15.2").as_deref(),
            Some("8.15.2")
        );
        assert_eq!(
            sendmail_by_comment(b"8.14.4/8.14.4/Submit").as_deref(),
            Some("8.14.4")
        );
        assert_eq!(sendmail_by_comment(b"10.1.2.4"), None);
        assert_eq!(
            sendmail_by_comment(b"8.15.2/8.15.2/Debian-10").as_deref(),
            Some("8.15.2")
        );
        let h =
            scan(b"SMTP (Microsoft Exchange Internet Mail Service Version 5.5.2653.13)").unwrap();
        assert_eq!(
            h.ms,
            Some(MsSignal::ExchangeBuild(Build::new(5, 5, 2653, 13)))
        );
        assert!(is_exchange_online_host(
            b"AM0PR01MB1234.eurprd01.prod.exchangelabs.com"
        ));
        assert!(is_exchange_online_host(
            b"mail-am6eur05on2070.outbound.protection.outlook.com"
        ));
        assert!(!is_exchange_online_host(b"outlook.com.evil.example"));
    }
}
