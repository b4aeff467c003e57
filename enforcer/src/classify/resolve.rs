//! Turns weighted candidates into one [`Classification`]: the heaviest candidate picks the product,
//! agreeing evidence raises confidence, disagreeing evidence lowers it, and for Exchange every era
//! constraint (EHLO keywords, greeting style, IIS version) narrows the possible versions.

use std::net::IpAddr;

use time::{Date, Month};

use super::build::Build;
use super::catalog::ExVersion;
use super::chain::Chain;
use super::scan::{era_text, era_versions, Candidate, Era, Scanned, ERA_2000_2003};
use super::support::{self, assess, end_of_support, upgrade_target, SupportOverrides};
use super::{chain, Classification, EvidenceItem, EvidenceKind, Product, Status};

/// `anchor`: the connecting server's address when it is known (see [`chain::attribute_connecting`]).
/// `chain`: the header block's Received hops (taken out of `scanned`, so that their buffers can be kept
/// for the next call).
pub(crate) fn resolve(
    scanned: Scanned,
    chain: &Chain,
    anchor: Option<IpAddr>,
    as_of: Date,
    ov: &SupportOverrides,
) -> Classification {
    let mut cands = scanned.candidates;
    let hops = chain.hops();
    let from_chain = match anchor {
        Some(ip) => chain::attribute_connecting(&hops, &scanned.org, ip),
        None => chain::attribute(&hops, &scanned.org),
    };
    // A build in X-MimeOLE was written by the author's own Exchange: it describes the sending server
    // only when the chain's sending server is Microsoft's too (or the chain names none and no address
    // anchors it); a mailing list or a gateway of another product relayed the message.
    let chain_product = from_chain
        .iter()
        .find(|c| c.weight > 0.0)
        .map(|c| c.product);
    let header_applies = match chain_product {
        Some(p) => matches!(
            p,
            Product::Exchange | Product::IisSmtp | Product::ExchangeOnline
        ),
        None => anchor.is_none(),
    };
    if !header_applies {
        for c in cands.iter_mut().filter(|c| {
            c.evidence.kind == EvidenceKind::Header
                && c.product == Product::Exchange
                && c.weight > 0.0
        }) {
            c.weight = 0.0;
            c.evidence
                .finding
                .push_str(" (written by the author's server, not the sending one: not attributed)");
        }
    }
    cands.extend(from_chain);
    // A total order, so that the verdict never depends on the order the evidence was given in.
    cands.sort_by(|a, b| {
        b.weight
            .total_cmp(&a.weight)
            .then_with(|| a.product.id().cmp(b.product.id()))
            .then_with(|| a.build.cmp(&b.build))
            .then_with(|| a.era.cmp(&b.era))
            .then_with(|| a.version.cmp(&b.version))
            .then_with(|| a.evidence.text.cmp(&b.evidence.text))
            .then_with(|| a.evidence.finding.cmp(&b.evidence.finding))
    });
    let voters: Vec<&Candidate> = cands.iter().filter(|c| c.weight > 0.0).collect();
    let Some(best) = voters.first() else {
        return unknown(cands.into_iter().map(|c| c.evidence).collect());
    };
    let mut product = best.product;
    // The IIS SMTP service plus Exchange-only evidence of the 2000/2003 era is Exchange 2000/2003.
    if product == Product::IisSmtp
        && voters.iter().any(|c| {
            c.product == Product::Exchange && c.era & ERA_2000_2003 != 0 && c.build.is_none()
        })
    {
        product = Product::Exchange;
    }
    let same = |c: &Candidate| {
        c.product == product
            || (product == Product::Exchange && c.product == Product::IisSmtp && c.era != 0)
            // Zimbra's MTA is Postfix.
            || (product == Product::Zimbra && c.product == Product::Postfix)
    };
    let agree = voters.iter().filter(|c| same(c)).count() - 1;
    let disagree = voters
        .iter()
        .filter(|c| !same(c) && c.weight >= 0.5)
        .count();
    let base = voters
        .iter()
        .find(|c| same(c))
        .map_or(best.weight, |c| c.weight);
    let confidence = (base + 0.04 * agree as f64 - 0.12 * disagree as f64).clamp(0.05, 0.99);
    let confidence = (confidence * 100.0).round() / 100.0;
    // Evidence: the deciding candidates first, then the rest (disagreeing ones and notes), then the
    // catalog's conclusion; moved out of the candidates once they are no longer read.
    let deciding: Vec<bool> = cands.iter().map(|c| c.weight > 0.0 && same(c)).collect();

    let mut out = Classification {
        product,
        version: None,
        build: None,
        label: None,
        status: Status::Unknown,
        persistently_vulnerable: false,
        confidence,
        evidence: Vec::new(),
        upgrade_to: None,
    };
    match product {
        Product::Exchange => exchange(&mut out, &voters, as_of, ov),
        Product::ExchangeOnline => {
            out.status = Status::Supported;
            out.build = voters
                .iter()
                .filter(|c| c.product == Product::ExchangeOnline)
                .find_map(|c| c.build)
                .map(|b| b.to_string());
            out.evidence.push(note(
                "Exchange Online",
                "operated and patched by Microsoft: supported",
            ));
        }
        Product::IisSmtp => {
            let v = voters
                .iter()
                .find(|c| c.product == Product::IisSmtp)
                .and_then(|c| c.build);
            out.version = v.map(|b| b.to_string());
            if let Some((windows, eos)) = v.and_then(windows_of_iis) {
                if as_of > eos {
                    out.status = Status::EndOfLife;
                    let text = format!("IIS SMTP {}", v.map(|b| b.to_string()).unwrap_or_default());
                    out.evidence.push(note(
                        &text,
                        &format!("ships with {windows}, out of support since {eos}"),
                    ));
                    out.upgrade_to =
                        Some("a supported mail server (the IIS SMTP service is deprecated)".into());
                }
            }
        }
        Product::Unknown => {}
        _ => {
            out.version = voters
                .iter()
                .filter(|c| same(c))
                .find_map(|c| c.version.clone());
        }
    }
    out.persistently_vulnerable = matches!(out.status, Status::EndOfLife | Status::Outdated);
    let conclusions = std::mem::take(&mut out.evidence);
    // Deciding candidates first, each group in its order: a stable partition.
    let mut ranked: Vec<(bool, Candidate)> = deciding.into_iter().zip(cands).collect();
    ranked.sort_by_key(|(deciding, _)| !*deciding);
    out.evidence = Vec::with_capacity(ranked.len() + conclusions.len());
    out.evidence
        .extend(ranked.into_iter().map(|(_, c)| c.evidence));
    out.evidence.extend(conclusions);
    out
}

fn note(text: &str, finding: &str) -> EvidenceItem {
    EvidenceItem {
        kind: super::EvidenceKind::Catalog,
        text: text.to_string(),
        finding: finding.to_string(),
    }
}

fn unknown(evidence: Vec<EvidenceItem>) -> Classification {
    Classification {
        product: Product::Unknown,
        version: None,
        build: None,
        label: None,
        status: Status::Unknown,
        persistently_vulnerable: false,
        confidence: 0.0,
        evidence,
        upgrade_to: None,
    }
}

fn exchange(out: &mut Classification, voters: &[&Candidate], as_of: Date, ov: &SupportOverrides) {
    let exch: Vec<&&Candidate> = voters
        .iter()
        .filter(|c| matches!(c.product, Product::Exchange | Product::IisSmtp))
        .collect();
    // A build Exchange itself wrote wins (the heaviest one); IIS versions are Windows builds.
    if let Some(b) = exch
        .iter()
        .filter(|c| c.product == Product::Exchange)
        .find_map(|c| c.build)
    {
        set_build(out, b, as_of, ov);
        return;
    }
    // Every constraint at once (so their order never matters); when they cannot all hold, the versions
    // any of them allows are kept and the conflict is said.
    let constraints: Vec<Era> = exch.iter().map(|c| c.era).filter(|e| *e != 0).collect();
    let all = constraints.iter().fold(Era::MAX, |a, e| a & e);
    let era = if constraints.is_empty() {
        0
    } else if all != 0 {
        all
    } else {
        let any = constraints.iter().fold(0, |a, e| a | e);
        out.evidence.push(note(
            &format!("Exchange {}", era_text(any)),
            &format!(
                "the era evidence conflicts ({}): no single version fits all of it, so every version any of it allows is kept",
                constraints.iter().map(|e| era_text(*e)).collect::<Vec<_>>().join("; ")
            ),
        ));
        any
    };
    if era == 0 {
        return;
    }
    let versions = era_versions(era);
    if let [one] = versions[..] {
        out.version = Some(one.id().to_string());
    }
    let eol: Vec<bool> = versions
        .iter()
        .map(|v| support::is_end_of_life(*v, as_of, ov))
        .collect();
    if !eol.is_empty() && eol.iter().all(|x| *x) {
        out.status = Status::EndOfLife;
        let ends: Vec<String> = versions
            .iter()
            .filter_map(|v| end_of_support(*v, ov).map(|(d, _)| format!("{} {d}", v.id())))
            .collect();
        out.evidence.push(note(&format!("Exchange {}", era_text(era)), &format!(
            "no build seen, but every version the evidence allows (Exchange {}) is past end of support as of {as_of} ({})",
            era_text(era),
            ends.join(", ")
        )));
        out.upgrade_to = upgrade_target(None, None, false, as_of, ov);
    } else {
        out.evidence.push(note(&format!("Exchange {}", era_text(era)), &format!(
            "no build seen: the evidence allows Exchange {}; status needs a build (a Received header from this server names it)",
            era_text(era)
        )));
    }
}

fn set_build(out: &mut Classification, b: Build, as_of: Date, ov: &SupportOverrides) {
    out.build = Some(b.to_string());
    out.version = ExVersion::of_build(b).map(|v| v.id().to_string());
    let a = assess(b, as_of, ov);
    out.label = a.label;
    out.status = a.status;
    out.upgrade_to = a.upgrade_to;
    out.evidence.push(note(&b.to_string(), &a.finding));
}

/// Windows release of an IIS SMTP service version, and that release's end of extended support.
fn windows_of_iis(v: Build) -> Option<(&'static str, Date)> {
    let d = |y, m, day| Date::from_calendar_date(y, m, day).ok();
    let (name, eos) = match (v.major(), v.minor(), v.part(2)) {
        (5, 0, _) => ("Windows 2000", d(2010, Month::July, 13)),
        (6, 0, _) => ("Windows Server 2003", d(2015, Month::July, 14)),
        (7, 0, _) => ("Windows Server 2008", d(2020, Month::January, 14)),
        (7, 5, _) => ("Windows Server 2008 R2", d(2020, Month::January, 14)),
        (8, 0, _) => ("Windows Server 2012", d(2023, Month::October, 10)),
        (8, 5, _) => ("Windows Server 2012 R2", d(2023, Month::October, 10)),
        _ => return None,
    };
    Some((name, eos?))
}
