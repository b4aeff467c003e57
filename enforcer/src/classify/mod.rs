//! Sending-server classifier: reads any mix of SMTP evidence (greetings, EHLO commands and responses,
//! replies, header blocks with Received chains), decides which product and version the sending server
//! runs, and, for on-premises Exchange, its support status as of a date (see [`support`] for the rule).
//!
//! Pure and clock-injected: the date is an argument. Evidence precedence, strongest first: an Exchange
//! build in the sending organisation's outbound Received hop; a build Exchange printed elsewhere
//! (X-MimeOLE, the Exchange 5.5 banner); a product named with its version in a greeting; a product named
//! without version; EHLO keywords (which only tell the Exchange era); the `Microsoft ESMTP MAIL Service
//! ready at` greeting (Exchange 2007 or later); product hints in replies and in non-Exchange hops.

mod build;
mod catalog;
pub mod catalog_file;
mod chain;
mod resolve;
mod scan;
mod signature;
pub mod support;

use serde::{Deserialize, Serialize};
use time::Date;

pub use build::Build;
pub use catalog::{Catalog, ExVersion, Release};
pub use support::{assess, parse_iso, Assessment, SupportOverrides};

/// The sending server's software. Serialises as the lowercase ids of `enforcer classify --json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Product {
    Exchange,
    ExchangeOnline,
    IisSmtp,
    Postfix,
    Exim,
    Sendmail,
    Qmail,
    Opensmtpd,
    Domino,
    Mdaemon,
    Hmailserver,
    Zimbra,
    Mailenable,
    Haraka,
    Unknown,
}

impl Product {
    pub fn id(self) -> &'static str {
        match self {
            Product::Exchange => "exchange",
            Product::ExchangeOnline => "exchange-online",
            Product::IisSmtp => "iis-smtp",
            Product::Postfix => "postfix",
            Product::Exim => "exim",
            Product::Sendmail => "sendmail",
            Product::Qmail => "qmail",
            Product::Opensmtpd => "opensmtpd",
            Product::Domino => "domino",
            Product::Mdaemon => "mdaemon",
            Product::Hmailserver => "hmailserver",
            Product::Zimbra => "zimbra",
            Product::Mailenable => "mailenable",
            Product::Haraka => "haraka",
            Product::Unknown => "unknown",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Product::Exchange => "Microsoft Exchange Server",
            Product::ExchangeOnline => "Exchange Online",
            Product::IisSmtp => "IIS SMTP service",
            Product::Postfix => "Postfix",
            Product::Exim => "Exim",
            Product::Sendmail => "Sendmail",
            Product::Qmail => "qmail",
            Product::Opensmtpd => "OpenSMTPD",
            Product::Domino => "HCL/IBM Lotus Domino",
            Product::Mdaemon => "MDaemon",
            Product::Hmailserver => "hMailServer",
            Product::Zimbra => "Zimbra",
            Product::Mailenable => "MailEnable",
            Product::Haraka => "Haraka",
            Product::Unknown => "unknown",
        }
    }
}

/// Support status as of the classification date.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Supported,
    Outdated,
    EndOfLife,
    Unknown,
}

impl Status {
    pub fn id(self) -> &'static str {
        match self {
            Status::Supported => "supported",
            Status::Outdated => "outdated",
            Status::EndOfLife => "end-of-life",
            Status::Unknown => "unknown",
        }
    }
}

/// Where a piece of evidence came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EvidenceKind {
    /// The server greeting (`220 …`).
    Banner,
    /// A client `EHLO`/`HELO` command.
    Ehlo,
    /// The server's `250` EHLO response and its keywords.
    EhloResponse,
    /// Any other SMTP reply.
    Reply,
    /// A `Received:` header field.
    Received,
    /// Another header field (`X-MimeOLE`, `X-Mailer`).
    Header,
    /// The conclusion drawn from the build catalog and the support rule; `text` names the build or the
    /// versions the evidence allows.
    Catalog,
}

/// One line of input that mattered, and what it told.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceItem {
    pub kind: EvidenceKind,
    /// The evidence as read (unfolded; cut at 400 characters).
    pub text: String,
    pub finding: String,
}

/// What the classifier concluded about the sending server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Classification {
    pub product: Product,
    /// Product version: `"2016"`, `"SE"`, `"4.96"`; null when the evidence does not tell.
    pub version: Option<String>,
    /// Exchange build, dotted and normalised (`15.0.1497.40`); null when not seen.
    pub build: Option<String>,
    /// The catalog label of the build (`Exchange Server 2016 CU23 Apr24HU`); null when not catalogued.
    pub label: Option<String>,
    pub status: Status,
    /// End of life or outdated (Exchange Online's "persistently vulnerable").
    pub persistently_vulnerable: bool,
    /// 0..1: how sure the product/version call is.
    pub confidence: f64,
    /// The evidence that decided, strongest first.
    pub evidence: Vec<EvidenceItem>,
    /// What to upgrade to when not supported: `15.2.2562.46 (Exchange Server SE RTM Aug26SU)`.
    pub upgrade_to: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClassifyError {
    #[error(
        "no SMTP evidence in the input ({lines} lines read): expected server greetings (`220 …`), EHLO/HELO \
         lines, replies (`250-…`) or mail header fields (`Received: …`)"
    )]
    NoEvidence { lines: usize },
}

/// Classifies the sending server from `input` (a transcript, a header block, or any mix of them),
/// evaluating support status as of `as_of`. Fails only when the input contains nothing readable as SMTP.
///
/// A header block read on its own is attributed by the single rule of the README's "Which Received
/// hop": the newest hop of the sending organisation, below the receiving side's hand-off.
pub fn classify_bytes(
    input: &[u8],
    as_of: Date,
    overrides: &SupportOverrides,
) -> Result<Classification, ClassifyError> {
    classify_anchored(input, None, as_of, overrides)
}

/// Classifies the server that connected from `connecting` (the address the MTA saw: the milter's
/// connect callback, `enforcer evidence IP`, `enforcer classify --connecting-ip IP`) from `input`, the
/// message's header block as it arrived (or any mix of evidence, as for [`classify_bytes`]).
///
/// The Received field(s) attributed are the newest ones written by the connecting server: if a field
/// records receiving the message from `connecting` (the MTA's own stamp, `from … [addr]`), the fields
/// above it and it are the receiving side's and the ones below are the connecting server's; otherwise
/// the newest field is the connecting server's. Its consecutive fields with the same `by` machine are
/// read together (Exchange writes a transport and a mailbox hop); their `with Microsoft SMTP Server … id
/// <build>` (or the product their `by` comments name) is attributed to `connecting`. Nothing older is:
/// an Exchange build below a connecting Postfix gateway or mailing list stays in the evidence as a
/// note, never as the verdict; an `X-MimeOLE` build counts only when the connecting server's own
/// fields are Microsoft's. IPv4-mapped IPv6 addresses are compared as IPv4.
/// Fails only when the input contains nothing readable as SMTP.
pub fn classify_connecting(
    input: &[u8],
    connecting: std::net::IpAddr,
    as_of: Date,
    overrides: &SupportOverrides,
) -> Result<Classification, ClassifyError> {
    classify_anchored(input, Some(connecting), as_of, overrides)
}

fn classify_anchored(
    input: &[u8],
    anchor: Option<std::net::IpAddr>,
    as_of: Date,
    overrides: &SupportOverrides,
) -> Result<Classification, ClassifyError> {
    let mut scanned = scan::scan(input);
    let chain = std::mem::take(&mut scanned.chain);
    let out = if scanned.items == 0 {
        Err(ClassifyError::NoEvidence {
            lines: scanned.lines,
        })
    } else {
        Ok(resolve::resolve(scanned, &chain, anchor, as_of, overrides))
    };
    scan::recycle(chain);
    out
}

/// Loads the operator's catalog at `path` (validated; problems as `file:line: …`) and lays it over the
/// built-in one for the rest of the process. Call once at start, before anything is classified.
/// Returns how many rows it added and how many built-in rows they replace.
pub fn install_operator_catalog(path: &std::path::Path) -> Result<(usize, usize), String> {
    let f = catalog_file::load(path).map_err(|e| e.to_string())?;
    let counts = (f.rows.len() - f.replacing, f.replacing);
    Catalog::install(f.rows)?;
    Ok(counts)
}

/// `text` as evidence: lossy UTF-8, control characters shown as spaces, cut at 400 characters.
pub(crate) fn evidence_text(text: &[u8]) -> String {
    const MAX: usize = 400;
    // Fast path: printable ASCII (nearly all real evidence) is copied as is.
    if text.len() <= MAX && text.is_ascii() {
        // Copied, then fixed up in place without a branch per byte (the loop vectorises).
        let mut bytes = text.to_vec();
        for b in &mut bytes {
            *b = if *b < 0x20 || *b == 0x7f { b' ' } else { *b };
        }
        // SAFETY: every byte is ASCII (checked above), and ASCII is valid UTF-8; this runs for every
        // piece of evidence, so the second validation pass is worth skipping.
        return unsafe { String::from_utf8_unchecked(bytes) };
    }
    let s = String::from_utf8_lossy(&text[..text.len().min(MAX * 4)]);
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX)
        .collect();
    if s.chars().nth(MAX).is_some() || text.len() > MAX * 4 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod shapes_tests;
#[cfg(test)]
mod tests;

#[cfg(test)]
mod text_tests {
    #[test]
    fn evidence_text_is_printable_and_bounded() {
        assert_eq!(super::evidence_text(b"a\tb\r\nc"), "a b  c");
        assert_eq!(
            super::evidence_text(b"caf\xc3\xa9 \xff"),
            "caf\u{e9} \u{fffd}"
        );
        let long = super::evidence_text(&[b'x'; 1000]);
        assert_eq!(long.chars().count(), 401);
        assert!(long.ends_with('…'));
    }
}
