//! `[fleet]` settings: checked when the configuration file is read (`config.rs`, with file and line),
//! resolved at start-up (password and CA files read, host name defaulted).

use super::codec::check_name;
use super::link::Target;
use crate::duration::Span;
use redis::IntoConnectionInfo as _;
use std::path::PathBuf;
use std::time::Duration;

pub const DEFAULT_NAMESPACE: &str = "enforcer";
/// Stream entries kept: a host away for fewer changes than this catches up from the log; one away
/// longer resyncs from the keyspace.
pub const DEFAULT_STREAM_MAX_LEN: usize = 100_000;
/// Forget/unset tombstones are kept this long (longer than any host should stay away).
pub const DEFAULT_TOMBSTONE_TTL: Duration = Duration::from_secs(30 * 86_400);

/// `[fleet]` as written in the file, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct FleetFile {
    /// One Redis URL, or Sentinel URLs when `sentinel_master` is set.
    pub redis: Vec<String>,
    pub sentinel_master: Option<String>,
    pub password_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub name: Option<String>,
    pub namespace: String,
    pub stream_max_len: usize,
    pub tombstone_ttl: Span,
}

/// Resolved settings for the daemon.
#[derive(Clone, Debug)]
pub struct FleetSettings {
    pub target: Target,
    /// Where Redis is, without secrets, for logs and `enforcer fleet status`.
    pub display: String,
    pub name: String,
    pub namespace: String,
    pub stream_max_len: usize,
    pub tombstone_ttl: Span,
}

pub fn check_url(url: &str) -> Result<(), String> {
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        return Err(format!(
            "`{}` is not a Redis URL; write redis://host:6379/0 (or rediss:// for TLS)",
            redact(url)
        ));
    }
    url.into_connection_info()
        .map(|_| ())
        .map_err(|e| format!("`{}` is not a usable Redis URL: {e}", redact(url)))
}

pub fn check_namespace(ns: &str) -> Result<(), String> {
    let ok = !ns.is_empty()
        && ns.len() <= 64
        && ns
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{ns}` is not a namespace: 1-64 characters of A-Z a-z 0-9 . _ -"
        ))
    }
}

pub fn check_host_name(name: &str) -> Result<(), String> {
    check_name(name).map_err(|_| {
        format!("`{name}` is not a host name for the fleet: 1-64 characters of A-Z a-z 0-9 . _ -")
    })
}

/// The URL without its password.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
        _ => url.to_string(),
    }
}

/// This host's short name (`gethostname`, up to the first dot).
pub(crate) fn host_name() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let full = String::from_utf8_lossy(&buf[..end]).into_owned();
    Some(full.split('.').next().unwrap_or("").to_string())
}

impl FleetSettings {
    /// Reads the password and CA files and picks the host name. Errors say what to fix.
    pub fn resolve(f: &FleetFile) -> Result<Self, String> {
        let name = match &f.name {
            Some(n) => n.clone(),
            None => host_name().filter(|n| check_name(n).is_ok()).ok_or_else(|| {
                "fleet.name is not set and the host name is not usable as one; set fleet.name = \"mx1\"".to_string()
            })?,
        };
        check_host_name(&name)?;
        let password = match &f.password_file {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| {
                    format!(
                        "fleet.password_file {}: {e}; create it (mode 0600) with the Redis password",
                        p.display()
                    )
                })?;
                let pw = text.trim_end_matches(['\r', '\n']).to_string();
                if pw.is_empty() {
                    return Err(format!("fleet.password_file {} is empty", p.display()));
                }
                Some(pw)
            }
            None => None,
        };
        let ca = match &f.ca_file {
            Some(p) => Some(std::fs::read(p).map_err(|e| {
                format!(
                    "fleet.ca_file {}: {e}; point it at the PEM CA that signed the Redis certificate",
                    p.display()
                )
            })?),
            None => None,
        };
        let mut infos = Vec::new();
        for url in &f.redis {
            check_url(url)?;
            let mut info = url
                .as_str()
                .into_connection_info()
                .map_err(|e| format!("`{}`: {e}", redact(url)))?;
            // With Sentinel the password is the master's (below), not the Sentinels'.
            if let (Some(pw), None) = (&password, &f.sentinel_master) {
                let rs = info.redis_settings().clone().set_password(pw);
                info = info.set_redis_settings(rs);
            }
            infos.push(info);
        }
        let display = f
            .redis
            .iter()
            .map(|u| redact(u))
            .collect::<Vec<_>>()
            .join(",");
        let target = match &f.sentinel_master {
            None => {
                if infos.len() != 1 {
                    return Err("fleet.redis lists several addresses; that is only for Sentinel: set fleet.sentinel_master too, or give one URL".into());
                }
                Target::Direct {
                    info: infos.remove(0),
                    ca,
                }
            }
            Some(master) => {
                let tls = f
                    .redis
                    .iter()
                    .filter(|u| u.starts_with("rediss://"))
                    .count();
                if tls != 0 && tls != f.redis.len() {
                    return Err("fleet.redis mixes redis:// and rediss:// Sentinel addresses; use rediss:// for all of them (TLS) or for none".into());
                }
                // With Sentinel the password file is the master's; a password in the Sentinel
                // URLs (redis://:secret@s1:26379) is the Sentinels' own.
                let sentinel_password = infos
                    .iter()
                    .find_map(|i| i.redis_settings().password().map(str::to_string));
                let mut data = redis::RedisConnectionInfo::default();
                data = data.set_db(infos[0].redis_settings().db());
                if let Some(pw) = &password {
                    data = data.set_password(pw);
                }
                Target::Sentinel {
                    sentinels: infos.iter().map(|i| i.addr().clone()).collect(),
                    sentinel_password,
                    master: master.clone(),
                    data,
                    tls: tls != 0,
                    ca,
                }
            }
        };
        Ok(FleetSettings {
            target,
            display: match &f.sentinel_master {
                Some(m) => format!("sentinel {display} master {m}"),
                None => display,
            },
            name,
            namespace: f.namespace.clone(),
            stream_max_len: f.stream_max_len,
            tombstone_ttl: f.tombstone_ttl,
        })
    }
}
