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

/// Host names of Exchange Online / Microsoft 365 (including the EOP edge `*.protection.outlook.com`).
pub fn is_exchange_online_host(host: &[u8]) -> bool {
    let host = host.strip_suffix(b".").unwrap_or(host);
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
    while pos < text.len() && matches!(text[pos], b' ' | b'(' | b'V' | b'v' | b':' | b',') {
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

/// The first product the text names, if any.
pub fn scan(text: &[u8]) -> Option<Hit> {
    let mut i = 0;
    while i < text.len() {
        let b = text[i];
        // Word starts only, and not inside a host name (`zimbra.example.com`, `mx.postfix.org`).
        let host_char = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_' | b'@');
        if !b.is_ascii_alphabetic() || (i > 0 && host_char(text[i - 1])) {
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

/// Sendmail's `by` comment: `(8.15.2/8.15.2)`, `(8.14.4/8.14.4/Submit)`, `(8.17.1)`.
pub fn sendmail_by_comment(comment: &[u8]) -> Option<String> {
    let first = comment.split(|b| *b == b'/').next()?;
    let b = Build::parse(first)?;
    (b.len() == 3
        && b.major() == 8
        && comment
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'/')))
    .then(|| b.to_string())
}
