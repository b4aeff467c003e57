//! A snapshot of "now" on both clocks the datapath cares about: the wall clock (operators, the store,
//! throttle windows aligned to UTC hours) and `CLOCK_BOOTTIME` (what the kernel reads with
//! `bpf_ktime_get_boot_ns`). Policy code takes a `Clock` instead of reading time, so tests fix it.

/// Wall-clock and boot-clock readings taken at the same instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    unix_ns: i128,
    boot_ns: u64,
}

impl Clock {
    /// Reads both clocks now.
    pub fn now() -> Self {
        // Read boottime between two wall-clock reads and take the midpoint, so a preemption between
        // the reads skews the offset by at most half of it.
        let w1 = read(libc::CLOCK_REALTIME);
        let b = read(libc::CLOCK_BOOTTIME);
        let w2 = read(libc::CLOCK_REALTIME);
        Self {
            unix_ns: (w1 + w2) / 2,
            boot_ns: b.max(0) as u64,
        }
    }

    /// A fixed reading, for tests and replays.
    pub fn fixed(unix_ns: i128, boot_ns: u64) -> Self {
        Self { unix_ns, boot_ns }
    }

    pub fn unix_ns(&self) -> i128 {
        self.unix_ns
    }

    pub fn unix_secs(&self) -> i64 {
        self.unix_ns.div_euclid(1_000_000_000) as i64
    }

    pub fn boot_ns(&self) -> u64 {
        self.boot_ns
    }

    /// Boot-clock ns of a wall-clock instant; 0 if it lies before boot.
    pub fn boot_ns_at_unix(&self, unix_ns: i128) -> u64 {
        let b = unix_ns - self.unix_ns + self.boot_ns as i128;
        b.clamp(0, u64::MAX as i128) as u64
    }

    /// Wall-clock ns of a boot-clock instant.
    pub fn unix_ns_at_boot(&self, boot_ns: u64) -> i128 {
        boot_ns as i128 - self.boot_ns as i128 + self.unix_ns
    }
}

/// Nanoseconds on `clock` (any `CLOCK_*` id).
pub fn read(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec; both clock ids exist on every Linux this runs on.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_round_trip() {
        let c = Clock::fixed(1_700_000_000_000_000_000, 50_000_000_000);
        assert_eq!(c.boot_ns_at_unix(1_700_000_010_000_000_000), 60_000_000_000);
        assert_eq!(c.unix_ns_at_boot(60_000_000_000), 1_700_000_010_000_000_000);
        assert_eq!(c.boot_ns_at_unix(0), 0);
        assert_eq!(c.unix_secs(), 1_700_000_000);
    }

    #[test]
    fn real_clocks_are_sane() {
        let c = Clock::now();
        assert!(c.unix_secs() > 1_600_000_000);
        assert!(c.boot_ns() > 0);
        let later = Clock::now();
        assert!(later.boot_ns() >= c.boot_ns());
    }
}
