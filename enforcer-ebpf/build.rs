//! Rebuild when bpf-linker changes, and set the codegen features: alu32, with which LLVM emits the
//! 64-bit compare-and-swap the rate limiter needs, and allows-misaligned-mem-access, so a key read
//! out of the packet (IPv4/IPv6 source, LPM key) is one load instead of one per byte. The verifier
//! allows misaligned packet and map-value access on x86-64 and arm64 (both handle it natively) and
//! never misaligned stack access, so the load tests would catch LLVM emitting one.
//! `-Z build-std` rustc already passes `--cpu`, so `--cpu` can't be repeated here: the CPU (v3)
//! comes in through `enforcer/build.rs`.
fn main() {
    if let Ok(linker) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
    println!("cargo:rustc-link-arg=--cpu-features=+alu32,+allows-misaligned-mem-access");
}
