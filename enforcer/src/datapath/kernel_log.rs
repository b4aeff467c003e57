//! Log records from the kernel programs (aya-log), for the rare events only: the `sk_lookup`
//! program's steering decisions and a missing notice responder; the XDP/TC per-packet path never
//! logs. The level is written into the object when it is loaded (`AYA_LOG_LEVEL`): off unless
//! `ENFORCER_KERNEL_LOG` names one, so a disabled call costs the program one load and a branch.

use std::os::fd::AsRawFd as _;

use aya_log::EbpfLogger;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// The environment variable that sets the level (`off`, `error`, `warn`, `info`, `debug`, `trace`).
pub const ENV: &str = "ENFORCER_KERNEL_LOG";

/// The level as aya-log numbers it (0 = off, 1 = error … 5 = trace).
pub fn parse_level(s: &str) -> Result<u8, String> {
    Ok(match s.trim().to_ascii_lowercase().as_str() {
        "" | "off" => 0,
        "error" => 1,
        "warn" => 2,
        "info" => 3,
        "debug" => 4,
        "trace" => 5,
        other => {
            return Err(format!(
                "{ENV}=`{other}` is not a level; use off, error, warn, info, debug or trace"
            ))
        }
    })
}

/// The level the environment asks for; a bad value is logged and leaves kernel logging off.
pub fn level_from_env() -> u8 {
    match std::env::var(ENV) {
        Ok(v) => parse_level(&v).unwrap_or_else(|e| {
            log::warn!("{e}; kernel logging stays off");
            0
        }),
        Err(_) => 0,
    }
}

/// Forwards the kernel's records to the daemon's logger as they arrive (a task of its own; the
/// ring buffer wakes it, there is no polling).
pub fn spawn_drain(logger: EbpfLogger<&'static dyn log::Log>) {
    let fd = logger.as_raw_fd();
    // SAFETY: the logger owns its ring buffer's map fd, which stays open and the same until the
    // logger (moved into the AsyncFd) is dropped.
    let registered = unsafe { AsyncFd::register_with_interest(logger, Interest::READABLE) };
    let mut afd = match registered {
        Ok(a) => a,
        Err(e) => {
            log::warn!("kernel log records (fd {fd}) cannot be read: {e}");
            return;
        }
    };
    tokio::spawn(async move {
        loop {
            let Ok(mut guard) = afd.readable_mut().await else {
                return;
            };
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        assert_eq!(parse_level("off"), Ok(0));
        assert_eq!(parse_level(""), Ok(0));
        assert_eq!(parse_level("INFO"), Ok(3));
        assert_eq!(parse_level("trace"), Ok(5));
        assert!(parse_level("loud").unwrap_err().contains("use off, error"));
    }
}
