//! The greeting probe (`[probe]`, off by default): the datapath reports sources it has not seen
//! before on a protected port (`enforcer_common::first_seen`); the daemon connects back to each new
//! source's port 25, reads its greeting, sends EHLO, reads the capabilities and quits. What it read
//! enters the engine as evidence for that sender (era-level: what the banner and EHLO keywords
//! tell, weaker than Received headers). `scope`, `limits` and `session` are pure; `listener` is
//! the tokio shell.

pub mod limits;
pub mod listener;
pub mod scope;
pub mod session;

#[cfg(test)]
mod tests;

use std::time::Duration;

/// `[probe]` in the configuration file.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeSettings {
    pub enabled: bool,
    /// Probe loopback, RFC 1918, CGNAT, link-local and unique-local addresses too.
    pub allow_private: bool,
    /// Name sent with EHLO; `None` = this host's name.
    pub ehlo_name: Option<String>,
    pub connect_timeout: Duration,
    /// For each read of the server's replies (the whole dialogue may take four times this).
    pub read_timeout: Duration,
    /// Probes running at once.
    pub concurrency: usize,
    /// Probes started per second.
    pub per_second: u32,
    /// Never probe one address twice within this.
    pub cache_ttl: Duration,
    /// Addresses the cache remembers at most.
    pub cache_size: usize,
    /// Port connected to on the new source.
    pub port: u16,
}

pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_CONCURRENCY: usize = 16;
pub const DEFAULT_PER_SECOND: u32 = 5;
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(7 * 86_400);
pub const DEFAULT_CACHE_SIZE: usize = 100_000;

impl Default for ProbeSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            allow_private: false,
            ehlo_name: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            read_timeout: DEFAULT_READ_TIMEOUT,
            concurrency: DEFAULT_CONCURRENCY,
            per_second: DEFAULT_PER_SECOND,
            cache_ttl: DEFAULT_CACHE_TTL,
            cache_size: DEFAULT_CACHE_SIZE,
            port: 25,
        }
    }
}

/// Checks `probe.ehlo_name`: a host name or an address literal, as EHLO takes.
pub fn check_ehlo_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_[]:".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a name to send with EHLO: 1-255 characters of A-Z a-z 0-9 . - (or an address literal like [192.0.2.1])"
        ))
    }
}

/// The host name sent with EHLO when `probe.ehlo_name` is not set.
pub fn default_ehlo_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).into_owned();
    if rc == 0 && check_ehlo_name(&name).is_ok() {
        name
    } else {
        "localhost".to_string()
    }
}
