//! The kernel-steered notice responder: the `sk_lookup` program hands a SYN from a sender inside a
//! `notice` window to a listening socket of the daemon instead of the MTA's, and this module speaks
//! just enough SMTP on it for the client to record why (`220`, `250` to EHLO/HELO, the stage's
//! `450 4.7.230`/`550 5.7.230` text from [`super::reply`] to MAIL FROM and anything after, `221` to
//! QUIT). Works for any MTA on the same host and network namespace; the MTA is never touched.

pub mod listener;
mod netns;
pub mod session;

use std::path::PathBuf;

/// Where the MTA's network namespace is when `notice.netns` is not given.
pub const DEFAULT_NETNS: &str = "/proc/1/ns/net";

/// What the kernel does with a SYN it would steer while no responder socket is registered (daemon
/// stopped or restarting).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fallback {
    /// Drop it: the sender is inside a refusal window (the client retries later).
    #[default]
    Drop,
    /// Let the MTA answer it.
    Pass,
}

impl std::str::FromStr for Fallback {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "drop" => Ok(Fallback::Drop),
            "pass" => Ok(Fallback::Pass),
            other => Err(format!(
                "`{other}` is not a fallback; use \"drop\" or \"pass\""
            )),
        }
    }
}

/// `[notice]` in the configuration file and `--notice-responder`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoticeSettings {
    /// Serve the responder and attach the `sk_lookup` program.
    pub responder: bool,
    /// The network namespace file of the MTA (`/proc/1/ns/net`, `/run/netns/NAME`).
    pub netns: PathBuf,
    pub fallback: Fallback,
}

impl Default for NoticeSettings {
    fn default() -> Self {
        NoticeSettings {
            responder: false,
            netns: PathBuf::from(DEFAULT_NETNS),
            fallback: Fallback::Drop,
        }
    }
}

/// `notice.netns`: an absolute path to a namespace file, or the name of a namespace made by
/// `ip netns add NAME` (`/run/netns/NAME`).
pub fn netns_path(spec: &str) -> Result<PathBuf, String> {
    let spec = spec.trim();
    if spec.starts_with('/') {
        return Ok(PathBuf::from(spec));
    }
    if spec.is_empty() || spec.contains('/') || spec == "." || spec == ".." {
        return Err(format!(
            "`{spec}` is neither an absolute path (/proc/1/ns/net) nor a namespace name (as in `ip netns list`)"
        ));
    }
    Ok(PathBuf::from("/run/netns").join(spec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse() {
        assert_eq!("drop".parse::<Fallback>(), Ok(Fallback::Drop));
        assert_eq!("pass".parse::<Fallback>(), Ok(Fallback::Pass));
        assert!("open".parse::<Fallback>().unwrap_err().contains("\"drop\""));
        assert_eq!(
            netns_path("/proc/1/ns/net").unwrap(),
            PathBuf::from("/proc/1/ns/net")
        );
        assert_eq!(netns_path("mta").unwrap(), PathBuf::from("/run/netns/mta"));
        for bad in ["", "a/b", ".."] {
            assert!(netns_path(bad).is_err(), "{bad}");
        }
        assert_eq!(
            NoticeSettings::default().netns,
            PathBuf::from(DEFAULT_NETNS)
        );
    }
}
