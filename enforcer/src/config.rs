//! The configuration file (`enforcer run --config /etc/enforcer/enforcer.toml`). Every key is optional:
//! a missing key takes the command-line flag or the built-in default, and command-line flags override
//! the file. Everything is validated before anything is attached; the first problem is reported as one
//! line naming the file, the line and the key (exit status 2).
//!
//! `enforcer.example.toml` at the repository root documents every key.

use crate::datapath::Capacity;
use crate::duration::Span;
use crate::evidence::listen::Endpoint;
use crate::evidence::reply::check_template;
use crate::evidence::MtaSettings;
use crate::fleet::settings::FleetFile;
use crate::net::Prefix;
use crate::policy::{Action, Aggregation, Policy, Refusal, Schedule, ScheduleError, Stage};
use crate::rule::NoticeRate;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// Default location of the configuration file (read only when `--config` is given).
pub const DEFAULT_CONFIG: &str = "/etc/enforcer/enforcer.toml";
/// Default control socket (of the daemon using the default state directory).
pub const DEFAULT_SOCKET: &str = "/run/enforcer/enforcer.sock";

/// The control socket when none is given: [`DEFAULT_SOCKET`] for the default state directory, else
/// `<state-dir>/enforcer.sock`, so daemons with their own state directories (one daemon per state
/// directory) never fight over one socket and the CLI finds each one from `--state-dir`.
pub fn default_socket_for(state_dir: &Path) -> PathBuf {
    if state_dir == Path::new(crate::store::DEFAULT_STATE_DIR) {
        PathBuf::from(DEFAULT_SOCKET)
    } else {
        state_dir.join("enforcer.sock")
    }
}

/// A validated configuration file. `None` = not set in the file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FileConfig {
    pub interfaces: Option<Vec<String>>,
    pub ports: Option<Vec<u16>>,
    pub mode: Option<String>,
    pub report_only: Option<bool>,
    pub pin_dir: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub socket: Option<PathBuf>,
    pub metrics_addr: Option<SocketAddr>,
    /// Schedule, aggregation, allow-list and pause budget (defaults: Exchange Online's).
    pub policy: Policy,
    /// Per-product end of support overrides (classifier product id -> date), e.g. an ESU contract.
    pub end_of_support: BTreeMap<String, time::Date>,
    /// `[milter] listen`, `[policy] listen` and the `[replies]` texts.
    pub mta: MtaSettings,
    /// `[fleet]`: share senders and operator entries with other hosts through Redis.
    pub fleet: Option<FleetFile>,
    /// Kernel map sizes (`[capacity]`); defaults when not set.
    pub capacity: Capacity,
    /// `[probe]`: the greeting probe of first-seen sources (off by default).
    pub probe: crate::evidence::probe::ProbeSettings,
    /// `classifier.catalog`: an operator's build catalog laid over the built-in one (validated here).
    pub catalog: Option<PathBuf>,
    /// Whether the file lists its own `[[enforcement.stages]]` (else the built-in schedule applies,
    /// refusing with `notice` when a notice channel is configured).
    pub stages_given: bool,
    /// `enforcement.notice_rate`: the budget of `notice` stages that set none, and of the built-in
    /// schedule when it refuses with `notice`.
    pub notice_rate: NoticeRate,
    /// The error to report, pointing at the first `refusal = "notice"`, if no notice channel turns
    /// out to be configured (flags may still add one, so it is raised by [`FileConfig::policy_for`]).
    pub notice_needs_channel: Option<ConfigError>,
}

/// A configuration problem: file, line, key and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: `{key}`: {message}")]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub key: String,
    pub message: String,
}

pub const MODES: [&str; 4] = ["auto", "xdp", "xdp-skb", "tc"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    interfaces: Option<Spanned<Vec<String>>>,
    ports: Option<Spanned<Vec<Spanned<i64>>>>,
    mode: Option<Spanned<String>>,
    report_only: Option<bool>,
    pin_dir: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    socket: Option<PathBuf>,
    metrics_addr: Option<Spanned<String>>,
    enforcement: Option<RawEnforcement>,
    classifier: Option<RawClassifier>,
    milter: Option<RawListener>,
    policy: Option<RawListener>,
    replies: Option<RawReplies>,
    notice: Option<RawNotice>,
    fleet: Option<Spanned<RawFleet>>,
    capacity: Option<RawCapacity>,
    probe: Option<RawProbe>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProbe {
    enabled: Option<bool>,
    allow_private: Option<bool>,
    ehlo_name: Option<Spanned<String>>,
    connect_timeout: Option<Spanned<Span>>,
    read_timeout: Option<Spanned<Span>>,
    concurrency: Option<Spanned<i64>>,
    per_second: Option<Spanned<i64>>,
    cache_ttl: Option<Spanned<Span>>,
    cache_size: Option<Spanned<i64>>,
    port: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListener {
    listen: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNotice {
    responder: Option<bool>,
    netns: Option<Spanned<String>>,
    fallback: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReplies {
    throttle: Option<Spanned<String>>,
    block: Option<Spanned<String>>,
    info_url: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFleet {
    redis: Option<Spanned<OneOrMany>>,
    sentinel_master: Option<Spanned<String>>,
    password_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    name: Option<Spanned<String>>,
    namespace: Option<Spanned<String>>,
    stream_max_len: Option<Spanned<i64>>,
    tombstone_ttl: Option<Spanned<Span>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCapacity {
    v4_hosts: Option<Spanned<i64>>,
    v6_hosts: Option<Spanned<i64>>,
    v4_prefixes: Option<Spanned<i64>>,
    v6_prefixes: Option<Spanned<i64>>,
    rate_state: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnforcement {
    aggregation: Option<RawAggregation>,
    allow: Option<Vec<Spanned<Prefix>>>,
    pause_budget: Option<Spanned<Span>>,
    min_confidence: Option<Spanned<f64>>,
    notice_rate: Option<Spanned<String>>,
    stages: Option<Spanned<Vec<Spanned<RawStage>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAggregation {
    v4: Option<Spanned<i64>>,
    v6: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStage {
    after: Spanned<Span>,
    action: Option<Spanned<String>>,
    period: Option<Spanned<Span>>,
    throttle: Option<Spanned<Span>>,
    block: Option<Spanned<Span>>,
    block_at: Option<Spanned<Span>>,
    refusal: Option<Spanned<String>>,
    notice_rate: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClassifier {
    end_of_support: Option<BTreeMap<String, Spanned<String>>>,
    catalog: Option<Spanned<PathBuf>>,
}

impl FileConfig {
    /// The policy once the notice channels are known (this file's `[milter]`/`[policy]` plus the
    /// `--milter`/`--policy` flags): a stage with `refusal = "notice"` needs one, and the built-in
    /// schedule refuses with `notice` when there is one, with `drop` otherwise.
    pub fn policy_for(&self, mta: &MtaSettings) -> Result<Policy, ConfigError> {
        let mut policy = self.policy.clone();
        if mta.has_notice_channel() {
            if !self.stages_given {
                policy.schedule = Schedule::exchange_online(Refusal::Notice(self.notice_rate));
            }
        } else if let Some(e) = &self.notice_needs_channel {
            return Err(e.clone());
        }
        Ok(policy)
    }

    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let src =
            read::read_bounded(path, read::MAX_CONFIG_BYTES).map_err(|message| ConfigError {
                file: path.display().to_string(),
                line: 0,
                key: "(file)".into(),
                message,
            })?;
        Self::parse(&path.display().to_string(), &src)
    }

    /// Parses and validates configuration text; `file` names it in errors.
    pub fn parse(file: &str, src: &str) -> Result<Self, ConfigError> {
        let ctx = Ctx { file, src };
        let raw: Raw = toml::from_str(src).map_err(|e| ctx.toml_error(&e))?;
        let mut cfg = FileConfig {
            interfaces: None,
            ports: None,
            mode: None,
            report_only: raw.report_only,
            pin_dir: raw.pin_dir,
            state_dir: raw.state_dir,
            socket: raw.socket,
            metrics_addr: None,
            policy: Policy::default(),
            end_of_support: BTreeMap::new(),
            mta: MtaSettings::default(),
            fleet: None,
            capacity: Capacity::default(),
            probe: Default::default(),
            catalog: None,
            stages_given: false,
            notice_rate: NoticeRate::DEFAULT,
            notice_needs_channel: None,
        };
        for (table, raw_listener, slot) in [
            ("milter", raw.milter, &mut cfg.mta.milter),
            ("policy", raw.policy, &mut cfg.mta.policy),
        ] {
            if let Some(l) = raw_listener.and_then(|l| l.listen) {
                let ep: Endpoint = l
                    .get_ref()
                    .parse()
                    .map_err(|e| ctx.err(l.span(), &format!("{table}.listen"), e))?;
                *slot = Some(ep);
            }
        }
        if let Some(n) = raw.notice {
            let notice = &mut cfg.mta.notice;
            if let Some(on) = n.responder {
                notice.responder = on;
            }
            if let Some(ns) = n.netns {
                notice.netns = crate::evidence::responder::netns_path(ns.get_ref())
                    .map_err(|e| ctx.err(ns.span(), "notice.netns", e))?;
            }
            if let Some(f) = n.fallback {
                notice.fallback = f
                    .get_ref()
                    .parse()
                    .map_err(|e| ctx.err(f.span(), "notice.fallback", e))?;
            }
        }
        if let Some(r) = raw.replies {
            for (key, text, slot) in [
                ("replies.throttle", r.throttle, &mut cfg.mta.texts.throttle),
                ("replies.block", r.block, &mut cfg.mta.texts.block),
            ] {
                if let Some(t) = text {
                    check_template(t.get_ref()).map_err(|e| ctx.err(t.span(), key, e))?;
                    if t.get_ref().trim().is_empty() {
                        return Err(ctx.err(t.span(), key, "the text is empty; write the reason the sender should read, or leave the key out for the default"));
                    }
                    *slot = t.into_inner();
                }
            }
            if let Some(u) = r.info_url {
                cfg.mta.texts.info_url = u.into_inner();
            }
        }
        if let Some(ifaces) = raw.interfaces {
            let span = ifaces.span();
            let list = ifaces.into_inner();
            if let Some(bad) = list
                .iter()
                .find(|i| i.is_empty() || i.len() > 15 || i.contains(['/', ' ']))
            {
                return Err(ctx.err(span, "interfaces", format!("`{bad}` is not a valid interface name (at most 15 characters, no `/` or spaces)")));
            }
            cfg.interfaces = Some(list);
        }
        if let Some(ports) = raw.ports {
            let mut out = Vec::new();
            for p in ports.into_inner() {
                let v = *p.get_ref();
                if !(1..=65535).contains(&v) {
                    return Err(ctx.err(
                        p.span(),
                        "ports",
                        format!("{v} is not a TCP port (1-65535)"),
                    ));
                }
                out.push(v as u16);
            }
            cfg.ports = Some(out);
        }
        if let Some(mode) = raw.mode {
            if !MODES.contains(&mode.get_ref().as_str()) {
                return Err(ctx.err(
                    mode.span(),
                    "mode",
                    format!(
                        "`{}` is not a mode; use one of {}",
                        mode.get_ref(),
                        MODES.join(", ")
                    ),
                ));
            }
            cfg.mode = Some(mode.into_inner());
        }
        if let Some(addr) = raw.metrics_addr {
            let parsed = addr.get_ref().parse().map_err(|_| {
                ctx.err(
                    addr.span(),
                    "metrics_addr",
                    format!(
                        "`{}` is not an address:port (example: 127.0.0.1:9925)",
                        addr.get_ref()
                    ),
                )
            })?;
            cfg.metrics_addr = Some(parsed);
        }
        if let Some(e) = raw.enforcement {
            ctx.enforcement(e, &mut cfg)?;
        }
        if let Some(f) = raw.fleet {
            cfg.fleet = Some(ctx.fleet(f)?);
        }
        if let Some(p) = raw.probe {
            cfg.probe = ctx.probe(p)?;
        }
        if let Some(c) = raw.capacity {
            let cap = &mut cfg.capacity;
            for (key, raw, slot) in [
                ("v4_hosts", c.v4_hosts, &mut cap.v4_hosts),
                ("v6_hosts", c.v6_hosts, &mut cap.v6_hosts),
                ("v4_prefixes", c.v4_prefixes, &mut cap.v4_prefixes),
                ("v6_prefixes", c.v6_prefixes, &mut cap.v6_prefixes),
                ("rate_state", c.rate_state, &mut cap.rate_state),
            ] {
                if let Some(v) = raw {
                    *slot = Capacity::check(key, *v.get_ref())
                        .map_err(|m| ctx.err(v.span(), &format!("capacity.{key}"), m))?;
                }
            }
        }
        if let Some(c) = raw.classifier {
            if let Some(path) = c.catalog {
                // Checked now, so a broken catalog stops the start with its own file:line.
                if let Err(e) = crate::classify::catalog_file::load(path.get_ref()) {
                    return Err(ctx.err(
                        path.span(),
                        "classifier.catalog",
                        format!("{e}; check it with `enforcer catalog check FILE`")
                            .replace('\n', "; "),
                    ));
                }
                cfg.catalog = Some(path.into_inner());
            }
            for (product, date) in c.end_of_support.unwrap_or_default() {
                let fmt = time::macros::format_description!("[year]-[month]-[day]");
                let d = time::Date::parse(date.get_ref(), fmt).map_err(|_| {
                    ctx.err(
                        date.span(),
                        &format!("classifier.end_of_support.{product}"),
                        format!("`{}` is not a date; write YYYY-MM-DD", date.get_ref()),
                    )
                })?;
                if let Err(e) = crate::classify::SupportOverrides::new().set(&product, d) {
                    return Err(ctx.err(
                        date.span(),
                        &format!("classifier.end_of_support.{product}"),
                        e,
                    ));
                }
                cfg.end_of_support.insert(product, d);
            }
        }
        Ok(cfg)
    }
}

impl FileConfig {
    /// The classifier's support overrides (keys were checked when the file was parsed).
    pub fn support_overrides(&self) -> Result<crate::classify::SupportOverrides, String> {
        let mut o = crate::classify::SupportOverrides::new();
        for (version, date) in &self.end_of_support {
            o.set(version, *date)?;
        }
        Ok(o)
    }
}

struct Ctx<'a> {
    file: &'a str,
    src: &'a str,
}

impl Ctx<'_> {
    fn line(&self, offset: usize) -> usize {
        self.src[..offset.min(self.src.len())].matches('\n').count() + 1
    }

    fn err(&self, span: Range<usize>, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_string(),
            line: self.line(span.start),
            key: key.to_string(),
            message: message.into(),
        }
    }

    /// A serde/TOML error: the key is the one written on the offending line (qualified by its table).
    fn toml_error(&self, e: &toml::de::Error) -> ConfigError {
        let offset = e.span().map(|s| s.start).unwrap_or(0);
        let line = self.line(offset);
        ConfigError {
            file: self.file.to_string(),
            line,
            key: self.key_on_line(line),
            message: e.message().trim().replace('\n', "; "),
        }
    }

    fn key_on_line(&self, line: usize) -> String {
        let lines: Vec<&str> = self.src.lines().collect();
        let above = &lines[..line.saturating_sub(1).min(lines.len())];
        // An array of tables (`[[enforcement.stages]]`) is named with the 1-based index of the
        // element, as the validation errors do: `enforcement.stages[2].after`.
        let table = above
            .iter()
            .rposition(|l| l.trim().starts_with('['))
            .map(|i| {
                let header = above[i].trim();
                let name = header.trim_matches(['[', ']']).trim().to_string();
                if header.starts_with("[[") {
                    let n = above[..=i].iter().filter(|l| l.trim() == header).count();
                    format!("{name}[{n}]")
                } else {
                    name
                }
            });
        let text = lines
            .get(line.saturating_sub(1))
            .map(|l| l.trim())
            .unwrap_or("");
        if text.starts_with('[') {
            return text.trim_matches(['[', ']']).trim().to_string();
        }
        let key = text
            .split('=')
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches('"');
        match (table, key.is_empty()) {
            (Some(t), false) => format!("{t}.{key}"),
            (Some(t), true) => t,
            (None, false) => key.to_string(),
            (None, true) => "(document)".into(),
        }
    }

    fn probe(&self, p: RawProbe) -> Result<crate::evidence::probe::ProbeSettings, ConfigError> {
        let mut out = crate::evidence::probe::ProbeSettings {
            enabled: p.enabled.unwrap_or(false),
            allow_private: p.allow_private.unwrap_or(false),
            ..Default::default()
        };
        if let Some(n) = p.ehlo_name {
            crate::evidence::probe::check_ehlo_name(n.get_ref())
                .map_err(|m| self.err(n.span(), "probe.ehlo_name", m))?;
            out.ehlo_name = Some(n.into_inner());
        }
        for (key, raw, slot, min, max) in [
            (
                "connect_timeout",
                p.connect_timeout,
                &mut out.connect_timeout,
                1,
                300,
            ),
            (
                "read_timeout",
                p.read_timeout,
                &mut out.read_timeout,
                1,
                300,
            ),
            (
                "cache_ttl",
                p.cache_ttl,
                &mut out.cache_ttl,
                60,
                365 * 86_400,
            ),
        ] {
            if let Some(v) = raw {
                let secs = v.get_ref().secs();
                if !(min..=max).contains(&secs) {
                    return Err(self.err(
                        v.span(),
                        &format!("probe.{key}"),
                        format!(
                            "{} is out of range: give {} to {}",
                            v.get_ref(),
                            Span(std::time::Duration::from_secs(min)),
                            Span(std::time::Duration::from_secs(max))
                        ),
                    ));
                }
                *slot = v.get_ref().0;
            }
        }
        let count = |key: &str, raw: Option<Spanned<i64>>, min: i64, max: i64, what: &str| match raw
        {
            None => Ok(None),
            Some(v) if (min..=max).contains(v.get_ref()) => Ok(Some(*v.get_ref())),
            Some(v) => Err(self.err(
                v.span(),
                &format!("probe.{key}"),
                format!("{} is not {what} ({min}-{max})", v.get_ref()),
            )),
        };
        if let Some(n) = count(
            "concurrency",
            p.concurrency,
            1,
            1024,
            "a number of probes at once",
        )? {
            out.concurrency = n as usize;
        }
        if let Some(n) = count(
            "per_second",
            p.per_second,
            1,
            1000,
            "a number of probes per second",
        )? {
            out.per_second = n as u32;
        }
        if let Some(n) = count(
            "cache_size",
            p.cache_size,
            1,
            10_000_000,
            "a number of addresses",
        )? {
            out.cache_size = n as usize;
        }
        if let Some(n) = count("port", p.port, 1, 65535, "a TCP port")? {
            out.port = n as u16;
        }
        Ok(out)
    }

    fn fleet(&self, f: Spanned<RawFleet>) -> Result<FleetFile, ConfigError> {
        use crate::fleet::settings as fs;
        let table = f.span();
        let f = f.into_inner();
        let Some(redis) = f.redis else {
            return Err(self.err(
                table,
                "fleet.redis",
                "the fleet needs Redis: redis = \"redis://host:6379/0\"",
            ));
        };
        let span = redis.span();
        let urls = match redis.into_inner() {
            OneOrMany::One(u) => vec![u],
            OneOrMany::Many(v) => v,
        };
        if urls.is_empty() {
            return Err(self.err(span, "fleet.redis", "give at least one Redis URL"));
        }
        for u in &urls {
            fs::check_url(u).map_err(|m| self.err(span.clone(), "fleet.redis", m))?;
        }
        if urls.len() > 1 && f.sentinel_master.is_none() {
            return Err(self.err(span, "fleet.redis", "several addresses are only for Sentinel: set sentinel_master = \"mymaster\", or give one URL"));
        }
        let name = match f.name {
            Some(n) => {
                fs::check_host_name(n.get_ref())
                    .map_err(|m| self.err(n.span(), "fleet.name", m))?;
                Some(n.into_inner())
            }
            None => None,
        };
        let namespace = match f.namespace {
            Some(n) => {
                fs::check_namespace(n.get_ref())
                    .map_err(|m| self.err(n.span(), "fleet.namespace", m))?;
                n.into_inner()
            }
            None => fs::DEFAULT_NAMESPACE.to_string(),
        };
        let stream_max_len = match f.stream_max_len {
            Some(n) if (1..=100_000_000).contains(n.get_ref()) => *n.get_ref() as usize,
            Some(n) => {
                return Err(self.err(
                    n.span(),
                    "fleet.stream_max_len",
                    format!("{} is not an entry count (1-100000000)", n.get_ref()),
                ))
            }
            None => fs::DEFAULT_STREAM_MAX_LEN,
        };
        let tombstone_ttl = match f.tombstone_ttl {
            Some(t) if t.get_ref().secs() >= 60 => t.into_inner(),
            Some(t) => {
                return Err(self.err(
                    t.span(),
                    "fleet.tombstone_ttl",
                    "keep tombstones at least 1m (longer than any host stays away)",
                ))
            }
            None => Span(fs::DEFAULT_TOMBSTONE_TTL),
        };
        let sentinel_master = match f.sentinel_master {
            Some(m) if m.get_ref().is_empty() => {
                return Err(self.err(
                    m.span(),
                    "fleet.sentinel_master",
                    "name the master the Sentinels monitor, e.g. \"mymaster\"",
                ))
            }
            m => m.map(Spanned::into_inner),
        };
        Ok(FleetFile {
            redis: urls,
            sentinel_master,
            password_file: f.password_file,
            ca_file: f.ca_file,
            name,
            namespace,
            stream_max_len,
            tombstone_ttl,
        })
    }

    fn enforcement(&self, e: RawEnforcement, cfg: &mut FileConfig) -> Result<(), ConfigError> {
        if let Some(r) = &e.notice_rate {
            cfg.notice_rate = r
                .get_ref()
                .parse()
                .map_err(|m| self.err(r.span(), "enforcement.notice_rate", m))?;
        }
        let policy = &mut cfg.policy;
        if let Some(a) = e.aggregation {
            let mut agg = Aggregation::default();
            if let Some(v4) = a.v4 {
                agg.v4 = match *v4.get_ref() {
                    n @ (24 | 32) => n as u8,
                    n => {
                        return Err(self.err(
                            v4.span(),
                            "enforcement.aggregation.v4",
                            format!("{n} is not supported; use 32 (per host) or 24 (per /24)"),
                        ))
                    }
                };
            }
            if let Some(v6) = a.v6 {
                agg.v6 = match *v6.get_ref() {
                    n @ (64 | 128) => n as u8,
                    n => {
                        return Err(self.err(
                            v6.span(),
                            "enforcement.aggregation.v6",
                            format!("{n} is not supported; use 128 (per host) or 64 (per /64)"),
                        ))
                    }
                };
            }
            policy.aggregation = agg;
        }
        if let Some(c) = e.min_confidence {
            let v = *c.get_ref();
            if !(0.0..=1.0).contains(&v) {
                return Err(self.err(
                    c.span(),
                    "enforcement.min_confidence",
                    format!(
                        "{v} is not a confidence; write a number from 0.0 to 1.0 (default {})",
                        crate::policy::DEFAULT_MIN_CONFIDENCE
                    ),
                ));
            }
            policy.min_confidence = v;
        }
        if let Some(allow) = e.allow {
            policy.allow = allow.into_iter().map(Spanned::into_inner).collect();
        }
        if let Some(b) = e.pause_budget {
            if b.get_ref().secs() > 366 * 86_400 {
                return Err(self.err(
                    b.span(),
                    "enforcement.pause_budget",
                    format!("{} is more than a calendar year", b.get_ref()),
                ));
            }
            policy.pause_budget = b.into_inner();
        }
        if let Some(stages) = e.stages {
            let list_span = stages.span();
            let raw = stages.into_inner();
            let mut built = Vec::new();
            for (i, st) in raw.iter().enumerate() {
                let stage = self.stage(i + 1, st, cfg.notice_rate)?;
                if let (Refusal::Notice(_), None) = (stage.refusal, &cfg.notice_needs_channel) {
                    let at = st
                        .get_ref()
                        .refusal
                        .as_ref()
                        .map_or(st.span(), |r| r.span());
                    cfg.notice_needs_channel = Some(self.err(
                        at,
                        &format!("enforcement.stages[{}].refusal", i + 1),
                        "`notice` needs a channel that tells the refused sender why, and none is configured: set `milter.listen`, `policy.listen` or `notice.responder = true` (or pass --milter/--policy/--notice-responder to `enforcer run`), or use refusal = \"drop\"",
                    ));
                }
                built.push(stage);
            }
            cfg.stages_given = true;
            cfg.policy.schedule =
                Schedule::new(built).map_err(|err| self.schedule_err(list_span, &raw, err))?;
        }
        Ok(())
    }

    fn stage(
        &self,
        n: usize,
        st: &Spanned<RawStage>,
        notice_rate: NoticeRate,
    ) -> Result<Stage, ConfigError> {
        let key = |k: &str| format!("enforcement.stages[{n}].{k}");
        let s = st.get_ref();
        let windows =
            s.period.is_some() || s.throttle.is_some() || s.block.is_some() || s.block_at.is_some();
        let action = match s.action.as_ref().map(|a| (a.get_ref().as_str(), a.span())) {
            Some(("report", _)) | Some(("block", _)) if windows => {
                return Err(self.err(st.span(), &key("action"), "period/throttle/block/block_at only apply to `action = \"windows\"`; remove them or change the action"));
            }
            Some(("report", _)) => Action::Report,
            Some(("block", _)) => Action::Block,
            Some(("windows", _)) | None if windows => {
                let Some(period) = &s.period else {
                    return Err(self.err(
                        st.span(),
                        &key("period"),
                        "a windows stage needs `period` (e.g. \"1h\")",
                    ));
                };
                let zero = Span::default();
                let throttle = s.throttle.as_ref().map(|t| *t.get_ref()).unwrap_or(zero);
                Action::Windows {
                    period: *period.get_ref(),
                    throttle,
                    block_at: s
                        .block_at
                        .as_ref()
                        .map(|b| *b.get_ref())
                        .unwrap_or(throttle),
                    block: s.block.as_ref().map(|b| *b.get_ref()).unwrap_or(zero),
                }
            }
            Some(("windows", _)) | None => {
                return Err(self.err(st.span(), &key("action"), "say what the stage does: action = \"report\", \"block\", or \"windows\" with period, throttle and/or block"));
            }
            Some((other, span)) => {
                return Err(self.err(
                    span,
                    &key("action"),
                    format!("`{other}` is not an action; use report, windows or block"),
                ));
            }
        };
        let refusal = match s.refusal.as_ref().map(|r| (r.get_ref().as_str(), r.span())) {
            None | Some(("drop", _)) => Refusal::Drop,
            Some(("reject", _)) => Refusal::Reject,
            Some(("notice", _)) => Refusal::Notice(match &s.notice_rate {
                Some(r) => r
                    .get_ref()
                    .parse()
                    .map_err(|m| self.err(r.span(), &key("notice_rate"), m))?,
                None => notice_rate,
            }),
            Some((other, span)) => {
                return Err(self.err(
                    span,
                    &key("refusal"),
                    format!("`{other}` is not a refusal; use drop (silent), reject (TCP RST) or notice (a few connects reach the MTA, which tells the sender why)"),
                ));
            }
        };
        if let (Some(r), false) = (&s.notice_rate, matches!(refusal, Refusal::Notice(_))) {
            return Err(self.err(
                r.span(),
                &key("notice_rate"),
                "notice_rate only applies to refusal = \"notice\"; add that or remove notice_rate",
            ));
        }
        Ok(Stage {
            after: *s.after.get_ref(),
            action,
            refusal,
        })
    }

    /// Points a schedule error at the key that causes it.
    fn schedule_err(
        &self,
        list: Range<usize>,
        raw: &[Spanned<RawStage>],
        err: ScheduleError,
    ) -> ConfigError {
        use ScheduleError::*;
        let stage = match &err {
            Empty => return self.err(list, "enforcement.stages", err.to_string()),
            FirstNotZero(_) => 1,
            NotIncreasing { stage, .. }
            | ZeroPeriod { stage }
            | ThrottleLongerThanPeriod { stage, .. }
            | BlockBeyondPeriod { stage, .. }
            | Overlap { stage, .. }
            | EmptyWindows { stage }
            | FullPeriod { stage }
            | TooLong { stage } => *stage,
        };
        let Some(st) = raw.get(stage - 1) else {
            return self.err(list, "enforcement.stages", err.to_string());
        };
        let s = st.get_ref();
        let pick = |k: &'static str, f: &Option<Spanned<Span>>| f.as_ref().map(|v| (k, v.span()));
        let (k, span) = match &err {
            FirstNotZero(_) | NotIncreasing { .. } => Some(("after", s.after.span())),
            ZeroPeriod { .. } => pick("period", &s.period),
            ThrottleLongerThanPeriod { .. } => pick("throttle", &s.throttle),
            BlockBeyondPeriod { .. } => pick("block", &s.block),
            Overlap { .. } => pick("block_at", &s.block_at),
            _ => None,
        }
        .unwrap_or(("", st.span()));
        let key = if k.is_empty() {
            format!("enforcement.stages[{stage}]")
        } else {
            format!("enforcement.stages[{stage}].{k}")
        };
        self.err(span, &key, err.to_string())
    }
}

mod read;

#[cfg(test)]
mod tests;
