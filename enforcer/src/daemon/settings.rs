//! What `enforcer run` needs, resolved from the flags, then `--config FILE`, then the defaults, in
//! that order, and checked before anything is touched (bad input is a [`UsageError`], exit status 2).

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::config::FileConfig;
use crate::daemon::EngineSettings;
use crate::datapath::{sys, Mode};
use crate::error::{usage, UsageError};
use crate::evidence::reply::Board;
use crate::evidence::MtaSettings;
use crate::fleet::FleetSettings;
use crate::policy::Policy;
use enforcer_common::maps::DEFAULT_PORTS;

/// The daemon's options as given on the command line (`None` = not given: the config file or the
/// default decides).
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub config: Option<PathBuf>,
    pub ifaces: Vec<String>,
    pub ports: Option<String>,
    pub mode: Option<Mode>,
    pub report_only: bool,
    pub metrics_addr: Option<String>,
    pub pin_dir: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub socket: Option<PathBuf>,
    /// `--milter inet:HOST:PORT|unix:/PATH`.
    pub milter: Option<String>,
    /// `--policy inet:HOST:PORT|unix:/PATH`.
    pub policy: Option<String>,
    /// `--notice-responder`.
    pub notice_responder: bool,
    pub reset_state: bool,
}

/// Everything `run` needs, resolved and checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub ifaces: Vec<String>,
    pub ports: Vec<u16>,
    pub mode: Mode,
    pub report_only: bool,
    pub metrics_addr: SocketAddr,
    /// bpffs directory of the pinned maps and links.
    pub pin_dir: PathBuf,
    /// Directory of the state database.
    pub state_dir: PathBuf,
    /// Control socket.
    pub socket: PathBuf,
    /// Move the state database aside and start with an empty one.
    pub reset_state: bool,
    /// Schedule, aggregation, allow-list, pause budget, classifier overrides.
    pub engine: EngineSettings,
    /// Milter and policy service listeners and the reply texts.
    pub mta: MtaSettings,
    /// `[fleet]`: share senders and operator entries with other hosts through Redis.
    pub fleet: Option<FleetSettings>,
    /// Kernel map sizes (`[capacity]`).
    pub capacity: crate::datapath::Capacity,
    /// `[probe]`: the greeting probe of first-seen sources.
    pub probe: crate::evidence::probe::ProbeSettings,
    /// What these settings were resolved from: a reload (SIGHUP) resolves them again, re-reading the
    /// configuration file.
    pub options: Options,
    /// The configuration file that was read, if any.
    pub config: Option<PathBuf>,
}

/// Parses `--ports 25,465,587`.
pub fn parse_ports(s: &str) -> anyhow::Result<Vec<u16>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.parse::<u16>() {
            Ok(p) if p > 0 => {
                if !out.contains(&p) {
                    out.push(p)
                }
            }
            _ => {
                return usage(format!(
                    "--ports: `{part}` is not a TCP port (1-65535); write e.g. --ports 25,465,587"
                ))
            }
        }
    }
    if out.is_empty() {
        return usage("--ports needs at least one port, e.g. --ports 25,465,587");
    }
    out.sort_unstable();
    Ok(out)
}

/// The MTA channels (the file's `[milter]`/`[policy]`/`[notice]`, overridden by the channel flags
/// in `a`: `--milter`, `--policy`, `--notice-responder`) and the policy they allow: a `notice` refusal needs a channel, and the
/// built-in schedule refuses with `notice` when there is one. `enforcer run`, a reload and
/// `enforcer check-config` all resolve them here, so they accept and refuse the same things.
pub fn resolve_channels(file: &FileConfig, a: &Options) -> anyhow::Result<(MtaSettings, Policy)> {
    let mut mta = file.mta.clone();
    for (flag, given, slot) in [
        ("--milter", &a.milter, &mut mta.milter),
        ("--policy", &a.policy, &mut mta.policy),
    ] {
        if let Some(spec) = given {
            *slot = Some(
                spec.parse()
                    .map_err(|e| UsageError(format!("{flag}: {e}")))?,
            );
        }
    }
    if a.notice_responder {
        mta.notice.responder = true;
    }
    let policy = file
        .policy_for(&mta)
        .map_err(|e| UsageError(e.to_string()))?;
    Ok((mta, policy))
}

impl Settings {
    /// Checks the options and the configuration file before anything is touched.
    pub fn resolve(a: Options) -> anyhow::Result<Self> {
        let options = a.clone();
        // Without --config, the default file is read when it exists (as a packaged install has it).
        let config = a.config.clone().or_else(|| {
            let default = PathBuf::from(crate::config::DEFAULT_CONFIG);
            default.exists().then_some(default)
        });
        let file = match &config {
            Some(path) => FileConfig::load(path).map_err(|e| UsageError(e.to_string()))?,
            None => FileConfig::default(),
        };
        if let Some(path) = &file.catalog {
            crate::classify::install_operator_catalog(path)
                .map_err(|e| UsageError(format!("classifier.catalog: {e}")))?;
        }
        let (mta, policy) = resolve_channels(&file, &a)?;
        let ports = match (&a.ports, &file.ports) {
            (Some(p), _) => parse_ports(p)?,
            (None, Some(p)) => {
                parse_ports(&p.iter().map(u16::to_string).collect::<Vec<_>>().join(","))?
            }
            (None, None) => DEFAULT_PORTS.to_vec(),
        };
        let mode = match (a.mode, &file.mode) {
            (Some(m), _) => m,
            (None, Some(m)) => <Mode as clap::ValueEnum>::from_str(m, false)
                .map_err(|e| UsageError(format!("config `mode`: {e}")))?,
            (None, None) => Mode::Auto,
        };
        let metrics_addr: SocketAddr = match (&a.metrics_addr, file.metrics_addr) {
            (Some(s), _) => match s.parse() {
                Ok(s) => s,
                Err(_) => {
                    return usage(format!(
                        "--metrics-addr `{s}` is not an address:port like 127.0.0.1:9925"
                    ))
                }
            },
            (None, Some(addr)) => addr,
            (None, None) => crate::metrics::DEFAULT_ADDR.parse()?,
        };
        let requested = if a.ifaces.is_empty() {
            file.interfaces.clone().unwrap_or_default()
        } else {
            a.ifaces
        };
        if requested.is_empty() {
            return usage("no interface to protect: pass --iface IFACE (or set `interfaces` in the config file)");
        }
        let mut ifaces = Vec::new();
        for i in requested {
            if sys::ifindex(&i).is_none() {
                return usage(format!(
                    "unknown interface `{i}`: pass an existing one (see `ip link`)"
                ));
            }
            if !ifaces.contains(&i) {
                ifaces.push(i);
            }
        }
        let state_dir: PathBuf = a
            .state_dir
            .or(file.state_dir.clone())
            .unwrap_or_else(|| crate::store::DEFAULT_STATE_DIR.into());
        let socket = a
            .socket
            .or(file.socket.clone())
            .unwrap_or_else(|| crate::config::default_socket_for(&state_dir));
        let pin_dir = a
            .pin_dir
            .or(file.pin_dir.clone())
            .unwrap_or_else(|| crate::datapath::DEFAULT_PIN_DIR.into());
        let report_only = a.report_only || file.report_only.unwrap_or(false);
        let fleet = match &file.fleet {
            Some(f) => Some(FleetSettings::resolve(f).map_err(UsageError)?),
            None => None,
        };
        let engine = EngineSettings {
            overrides: file.support_overrides().map_err(UsageError)?,
            board: {
                let b = Board::default();
                b.set_replies(mta.texts.clone(), report_only);
                b
            },
            policy,
            report_only,
            state_dir: Some(state_dir.clone()),
            datapath: Default::default(),
            notice_channel: mta.has_notice_channel(),
        };
        Ok(Self {
            ifaces,
            ports,
            mode,
            report_only,
            metrics_addr,
            pin_dir,
            state_dir,
            socket,
            reset_state: a.reset_state,
            engine,
            mta,
            fleet,
            capacity: file.capacity,
            probe: file.probe.clone(),
            options,
            config,
        })
    }

    /// What a reload cannot change without detaching or moving state: the names of the settings that
    /// differ between `self` and `new`.
    pub fn restart_only_changes(&self, new: &Settings) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.ifaces != new.ifaces {
            out.push("interfaces");
        }
        if self.mode != new.mode {
            out.push("mode");
        }
        if self.pin_dir != new.pin_dir {
            out.push("pin_dir");
        }
        if self.state_dir != new.state_dir {
            out.push("state_dir");
        }
        if format!("{:?}", self.capacity) != format!("{:?}", new.capacity) {
            out.push("capacity");
        }
        if format!("{:?}", self.fleet) != format!("{:?}", new.fleet) {
            out.push("fleet");
        }
        if self.probe != new.probe {
            out.push("probe");
        }
        if self.mta.notice != new.mta.notice {
            out.push("notice");
        }
        out
    }

    /// Whether the listeners must be bound again (an address changed). Reply texts and the
    /// report-only flag reach running MTA listeners through the board instead.
    pub fn listeners_changed(&self, new: &Settings) -> bool {
        self.metrics_addr != new.metrics_addr
            || self.socket != new.socket
            || self.mta.milter != new.mta.milter
            || self.mta.policy != new.mta.policy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_parse() {
        assert_eq!(parse_ports("25,465,587").unwrap(), vec![25, 465, 587]);
        assert_eq!(parse_ports("587, 25,25").unwrap(), vec![25, 587]);
        for bad in ["", "0", "70000", "25,smtp", ","] {
            assert!(parse_ports(bad).is_err(), "{bad}");
        }
    }
}
