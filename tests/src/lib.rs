//! Helpers shared by the privileged integration tests (root, BPF, network namespaces).
//! Every resource a helper creates is removed by a `Drop` guard, even when a test panics.

/// Polling a condition within a bound; the wall clock's phase in a period.
pub mod clock;
/// Presence filter bits for prefixes written straight into a loaded object's maps.
pub mod filter;
/// Fleet tests: Redis in a namespace and several hosts each running a daemon.
pub mod fleet;
/// Frame builders for BPF_PROG_TEST_RUN (Ethernet/VLAN/IPv4/IPv6/TCP).
pub mod frames;
/// The CPU and tool versions a benchmark reports.
pub mod machine;
/// A milter client (the MTA's side of the protocol) that can also misbehave.
pub mod milter;
/// Network namespace, veth and pin-directory guards with unique names.
pub mod netns;
/// A Postfix instance of its own in a namespace, and swaks.
pub mod postfix;
/// Spawning and killing `enforcer` processes for end-to-end tests.
pub mod process;
/// Whole frames into a veth through AF_PACKET (floods of crafted SYNs, packet-shape tests).
pub mod rawlink;
