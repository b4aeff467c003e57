//! Global settings the kernel reads on every decision.

/// Element 0 of [`crate::maps::CONFIG`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GlobalConfig {
    /// `CONFIG_FLAG_*` bits.
    pub flags: u32,
    pub _pad: u32,
}

/// Compute and count every verdict, but let every packet pass.
pub const CONFIG_FLAG_REPORT_ONLY: u32 = 1 << 0;
/// `notice.fallback = "pass"`: while no responder socket is registered, a SYN the `sk_lookup`
/// program would steer goes to the MTA; without the flag it is dropped.
pub const CONFIG_FLAG_NOTICE_FALLBACK_PASS: u32 = 1 << 1;

/// Report sources not seen before on a protected port through `FIRST_SEEN_EVENTS` (set while the
/// daemon's greeting probe runs).
pub const CONFIG_FLAG_FIRST_SEEN: u32 = 1 << 2;

const _: () = assert!(core::mem::size_of::<GlobalConfig>() == 8);

#[cfg(feature = "user")]
unsafe impl aya::Pod for GlobalConfig {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        assert_eq!(core::mem::size_of::<GlobalConfig>(), 8);
        assert_eq!(core::mem::align_of::<GlobalConfig>(), 4);
        assert_eq!(GlobalConfig::default().flags & CONFIG_FLAG_REPORT_ONLY, 0);
        let flags = [
            CONFIG_FLAG_REPORT_ONLY,
            CONFIG_FLAG_NOTICE_FALLBACK_PASS,
            CONFIG_FLAG_FIRST_SEEN,
        ];
        for (i, a) in flags.iter().enumerate() {
            assert!(a.is_power_of_two());
            for b in &flags[i + 1..] {
                assert_eq!(a & b, 0, "two flags share a bit");
            }
        }
    }
}
