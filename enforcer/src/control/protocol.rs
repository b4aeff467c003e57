//! The control protocol: one JSON object per line each way over the daemon's Unix socket.
//!
//! Request: `{"op":"senders"}`, `{"op":"sender","target":"192.0.2.7"}`,
//! `{"op":"evidence","target":"192.0.2.7","text":"220 mail.example.com Microsoft ESMTP ..."}`,
//! `{"op":"pause","target":"192.0.2.7","days":7}`, `{"op":"resume","target":...}`,
//! `{"op":"forget","target":...}`, `{"op":"put_rule","rule":{...}}`, `{"op":"remove_rule","prefix":"..."}`,
//! `{"op":"mta_evidence","addr":"192.0.2.7","helo":"ex01.example","headers":"Received: ...\r\n","source":"milter"}` (what
//! the milter and the policy service saw; HELO and headers are optional),
//! `{"op":"mta_evidence_batch","sightings":[{"addr":"192.0.2.7","helo":"ex01.example","headers":"","source":"milter"}]}`
//! (many of those in one engine turn),
//! `{"op":"import","verdict":{"action":"drop"},"expires_at":null,"reason":null,"list":"spamhaus-drop",
//! "entries":"192.0.2.0/24\n198.51.100.7\n"}`, `{"op":"remove_rules","entries":"...","list":null}`,
//! `{"op":"ping"}`, `{"op":"fleet_status"}`, `{"op":"list","after":"192.0.2.7/32","prefix":"192.0.2.0/24","source":"operator","limit":4096}`.
//! Reply: `{"ok":true,"result":...}` or `{"ok":false,"usage":true|false,"error":"..."}`; `usage` marks
//! bad input (the CLI exits 2) as opposed to a failure inside the daemon (exit 1).

use serde::{Deserialize, Serialize};

/// Longest evidence request (a transcript or header block) the CLI sends.
pub const MAX_LINE: usize = 4 << 20;
/// Longest request line the daemon reads: an `import` carries its whole list (about 16 bytes an
/// entry, so some four million entries), which is how a list is replaced in one step.
pub const MAX_REQUEST: usize = 64 << 20;

/// One sighting of an `mta_evidence_batch`: the fields of `mta_evidence`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MtaSighting {
    pub addr: std::net::IpAddr,
    #[serde(default)]
    pub helo: Option<String>,
    #[serde(default)]
    pub headers: String,
    #[serde(default)]
    pub source: crate::evidence::Channel,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Ping {},
    Senders,
    Sender {
        target: String,
    },
    Evidence {
        target: String,
        text: String,
    },
    /// Evidence the milter or the policy service saw from a connecting address.
    MtaEvidence {
        addr: std::net::IpAddr,
        #[serde(default)]
        helo: Option<String>,
        #[serde(default)]
        headers: String,
        /// Which listener saw it (`milter` or `policy`), for the evidence counters.
        #[serde(default)]
        source: crate::evidence::Channel,
    },
    /// Many sightings at once (what the MTA listeners hand over, one engine turn for them all).
    MtaEvidenceBatch {
        sightings: Vec<MtaSighting>,
    },
    /// What the greeting probe read from a new source (its banner and EHLO response).
    ProbeEvidence {
        addr: std::net::IpAddr,
        transcript: String,
    },
    Pause {
        target: String,
        days: u64,
    },
    Resume {
        target: String,
    },
    Forget {
        target: String,
    },
    /// Store an operator rule durably and apply it (a `crate::rule::Rule` as JSON).
    PutRule {
        rule: serde_json::Value,
    },
    /// Remove the operator rule for a prefix.
    RemoveRule {
        prefix: String,
    },
    /// Every rule the daemon keeps in the kernel: operator rules and engine entries.
    Rules {},
    /// Bulk import (`enforcer import`, `block --from`): one operator rule per prefix, all with the
    /// same verdict (a `crate::rule::Verdict` as JSON), expiry and reason, in one store
    /// transaction and batched map writes. The prefixes come either as `entries` (the list format
    /// of `crate::feed`, parsed by the daemon) or, as the CLI sends them, `packed`
    /// (`crate::feed::pack`: the list the CLI already parsed and checked, not parsed twice); not
    /// both. With `list`, the entries of that named list not among them are removed in the same
    /// step.
    Import {
        verdict: serde_json::Value,
        #[serde(default)]
        expires_at: Option<i64>,
        #[serde(default)]
        reason: Option<String>,
        #[serde(default)]
        list: Option<String>,
        #[serde(default)]
        entries: String,
        #[serde(default)]
        packed: Option<String>,
    },
    /// Bulk removal (`unset --from FILE`, `unset --list NAME`): the operator rules for the prefixes
    /// in `entries` or `packed` (as for `import`), or every rule of the named list.
    RemoveRules {
        #[serde(default)]
        entries: Option<String>,
        #[serde(default)]
        packed: Option<String>,
        #[serde(default)]
        list: Option<String>,
    },
    /// The fleet link's state (`enforcer fleet status`).
    FleetStatus {},
    /// One page of `enforcer list`: rows sorted by prefix, starting after `after`, at most `limit`
    /// (capped at [`crate::listing::PAGE`]). The reply is a [`crate::listing::PageHead`] followed
    /// by `rows` lines, one row's JSON each ([`Reply::with_lines`]).
    List {
        #[serde(default)]
        after: Option<crate::net::Prefix>,
        #[serde(default)]
        prefix: Option<crate::net::Prefix>,
        #[serde(default)]
        source: Option<crate::listing::Source>,
        #[serde(default)]
        limit: Option<u32>,
        /// Only the entries of this named list.
        #[serde(default)]
        list: Option<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub usage: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Lines sent after the reply's own line (each ending in `\n`), already encoded: a listing's
    /// rows go to the socket as the engine wrote them, and the CLI prints them as they come.
    #[serde(skip)]
    pub lines: Option<String>,
}

impl Reply {
    pub fn ok(result: impl Serialize) -> Self {
        match serde_json::to_value(result) {
            Ok(v) => Reply {
                ok: true,
                result: Some(v),
                usage: false,
                error: None,
                lines: None,
            },
            Err(e) => Reply::internal(format!("cannot encode the reply: {e}")),
        }
    }

    /// The request was wrong: the message says what and how to fix it.
    pub fn usage(msg: impl Into<String>) -> Self {
        Reply {
            ok: false,
            result: None,
            usage: true,
            error: Some(msg.into()),
            lines: None,
        }
    }

    pub fn internal(msg: impl Into<String>) -> Self {
        Reply {
            ok: false,
            result: None,
            usage: false,
            error: Some(msg.into()),
            lines: None,
        }
    }

    /// A successful reply followed by pre-encoded `lines` (each ending in `\n`).
    pub fn with_lines(result: impl Serialize, lines: String) -> Self {
        let mut r = Reply::ok(result);
        if r.ok {
            r.lines = Some(lines);
        }
        r
    }

    /// What goes to the socket: the reply's line, then its [`Reply::lines`] if any.
    pub fn to_line(&self) -> String {
        let mut s = serde_json::to_string(self).unwrap_or_else(|e| {
            format!(r#"{{"ok":false,"error":"cannot encode the reply: {e}"}}"#)
        });
        s.push('\n');
        if let Some(lines) = &self.lines {
            s.push_str(lines);
        }
        s
    }
}

/// Decodes one request line; the error is the reply to send back.
pub fn decode_request(line: &[u8]) -> Result<Request, Reply> {
    let text = std::str::from_utf8(line)
        .map_err(|_| Reply::usage("the request is not UTF-8 JSON"))?
        .trim();
    if text.is_empty() {
        return Err(Reply::usage(
            "empty request; send one JSON object per line, e.g. {\"op\":\"ping\"}",
        ));
    }
    serde_json::from_str(text).map_err(|e| Reply::usage(format!("bad request: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_every_request() {
        let cases = [
            (r#"{"op":"ping"}"#, Request::Ping {}),
            (r#"{"op":"senders"}"#, Request::Senders),
            (
                r#"{"op":"sender","target":"192.0.2.7"}"#,
                Request::Sender {
                    target: "192.0.2.7".into(),
                },
            ),
            (
                r#"{"op":"pause","target":"::1","days":3}"#,
                Request::Pause {
                    target: "::1".into(),
                    days: 3,
                },
            ),
            (
                r#"{"op":"list","after":"192.0.2.7/32","prefix":"192.0.2.0/24","source":"engine","limit":10}"#,
                Request::List {
                    after: Some("192.0.2.7".parse().unwrap()),
                    prefix: Some("192.0.2.0/24".parse().unwrap()),
                    source: Some(crate::listing::Source::Engine),
                    limit: Some(10),
                    list: None,
                },
            ),
            (
                r#"{"op":"list"}"#,
                Request::List {
                    after: None,
                    prefix: None,
                    source: None,
                    limit: None,
                    list: None,
                },
            ),
            (
                r#" {"op":"forget","target":"x"} "#,
                Request::Forget { target: "x".into() },
            ),
        ];
        for (line, want) in cases {
            assert_eq!(decode_request(line.as_bytes()).unwrap(), want);
            let back = serde_json::to_string(&want).unwrap();
            assert_eq!(decode_request(back.as_bytes()).unwrap(), want);
        }
    }

    #[test]
    fn malformed_requests_get_usage_replies() {
        for bad in [
            &b""[..],
            b"   ",
            b"not json",
            b"{}",
            br#"{"op":"launch"}"#,
            br#"{"op":"pause","target":"1.2.3.4"}"#,
            br#"{"op":"pause","target":"1.2.3.4","days":-1}"#,
            br#"{"op":"ping","extra":1}"#,
            b"\xff\xfe",
            br#"[1,2,3]"#,
            br#"{"op":"list","prefix":"10.0.0.1/8"}"#,
            br#"{"op":"list","source":"kernel"}"#,
        ] {
            let r = decode_request(bad).unwrap_err();
            assert!(!r.ok && r.usage, "{bad:?}");
            assert!(r.error.as_deref().unwrap_or("").len() > 5);
            assert!(r.to_line().ends_with('\n'));
        }
    }
}
