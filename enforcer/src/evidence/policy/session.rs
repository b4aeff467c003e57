//! One policy request as a pure function: the client address and HELO name in, the action and the
//! HELO evidence out. The caller supplies the answer for a sender and does the I/O.

use std::net::IpAddr;

use super::codec::Request;
use crate::evidence::milter::session::Sighting;
use crate::evidence::reply::Answer;

/// What one request produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// `DUNNO`, `450 4.7.230 …` or `550 5.7.230 …`.
    pub action: String,
    /// The answer given (or, in report-only mode, the one that would have been given).
    pub answered: Option<Answer>,
    /// HELO-level evidence for the engine (the policy service sees no headers).
    pub sighting: Option<Sighting>,
}

/// Why a request gets no verdict. The connection stays open and the answer is `DUNNO`: Postfix then
/// goes on with its other restrictions (fail open).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unanswerable {
    #[error("`request={0}` is not `smtpd_access_policy`")]
    WrongRequest(String),
    #[error("the request has no `client_address`")]
    NoClient,
    #[error("`client_address={0}` is not an IP address")]
    BadClient(String),
}

/// Answers one request. Requests without an address Postfix knows (`client_address=unknown` or a
/// local submission) get `DUNNO`.
pub fn answer(
    req: &Request,
    report_only: bool,
    decide: impl FnOnce(IpAddr) -> Answer,
) -> Result<Outcome, Unanswerable> {
    match req.get("request") {
        Some("smtpd_access_policy") | None => {}
        Some(other) => return Err(Unanswerable::WrongRequest(other.to_owned())),
    }
    let client = req.get("client_address").ok_or(Unanswerable::NoClient)?;
    let addr: IpAddr = client
        .trim()
        .parse()
        .map_err(|_| Unanswerable::BadClient(client.to_owned()))?;
    let addr = match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    };
    let answer = decide(addr);
    let action = match answer.smtp() {
        Some(reply) if !report_only => reply,
        _ => "DUNNO".to_owned(),
    };
    let helo = req
        .get("helo_name")
        .filter(|h| !h.trim().is_empty())
        .map(|h| crate::classify::evidence_text(h.as_bytes()));
    Ok(Outcome {
        action,
        answered: (answer != Answer::Continue).then_some(answer),
        sighting: helo.map(|helo| Sighting {
            addr,
            helo: Some(helo),
            headers: String::new(),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(pairs: &[(&str, &str)]) -> Request {
        Request::new(
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        )
    }

    #[test]
    fn answers_per_stage_and_reports_the_helo() {
        let r = req(&[
            ("request", "smtpd_access_policy"),
            ("protocol_state", "RCPT"),
            ("client_address", "10.200.0.2"),
            ("helo_name", "ex2013.example"),
        ]);
        let o = answer(&r, false, |ip| {
            assert_eq!(ip.to_string(), "10.200.0.2");
            Answer::Tempfail("wait".into())
        })
        .unwrap();
        assert_eq!(o.action, "450 4.7.230 wait");
        assert_eq!(o.sighting.unwrap().helo.as_deref(), Some("ex2013.example"));
        let o = answer(&r, false, |_| Answer::Reject("no".into())).unwrap();
        assert_eq!(o.action, "550 5.7.230 no");
        let o = answer(&r, false, |_| Answer::Continue).unwrap();
        assert_eq!((o.action.as_str(), o.answered), ("DUNNO", None));
        // Report-only: DUNNO, but what would have been answered is known.
        let o = answer(&r, true, |_| Answer::Reject("no".into())).unwrap();
        assert_eq!(o.action, "DUNNO");
        assert_eq!(o.answered.unwrap().would(), Some("would_reject"));
    }

    #[test]
    fn mapped_addresses_and_unanswerable_requests() {
        let r = req(&[("client_address", "::ffff:10.200.0.2"), ("helo_name", "")]);
        let o = answer(&r, false, |ip| {
            assert_eq!(ip.to_string(), "10.200.0.2");
            Answer::Continue
        })
        .unwrap();
        assert_eq!(o.sighting, None);
        assert_eq!(
            answer(&req(&[("client_address", "unknown")]), false, |_| {
                Answer::Continue
            }),
            Err(Unanswerable::BadClient("unknown".into()))
        );
        assert_eq!(
            answer(&req(&[("helo_name", "x")]), false, |_| Answer::Continue),
            Err(Unanswerable::NoClient)
        );
        assert_eq!(
            answer(
                &req(&[("request", "junk"), ("client_address", "10.0.0.1")]),
                false,
                |_| Answer::Continue
            ),
            Err(Unanswerable::WrongRequest("junk".into()))
        );
    }
}
