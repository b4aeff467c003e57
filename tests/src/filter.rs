//! Prefix presence filter bits for tests and benchmarks that write prefixes straight into the maps
//! of an object they loaded themselves (the daemon's writes go through `PolicyMaps`, which keeps
//! the filters itself): the same writer code, on that object's arrays.

use std::net::IpAddr;
use std::os::fd::AsFd as _;

use aya::{maps::Map, Ebpf};
use enforcer::{datapath::filter::Filter, net::Prefix};
use enforcer_common::maps;

/// Maps one family's filter and length-mask arrays of `ebpf`.
pub fn of(ebpf: &Ebpf, v4: bool) -> Filter {
    let (bits, lengths) = if v4 {
        (maps::PREFIX_FILTER_V4, maps::PREFIX_LENGTHS_V4)
    } else {
        (maps::PREFIX_FILTER_V6, maps::PREFIX_LENGTHS_V6)
    };
    let (Some(Map::Array(b)), Some(Map::Array(l))) = (ebpf.map(bits), ebpf.map(lengths)) else {
        panic!("{bits} and {lengths} are arrays in the object");
    };
    Filter::map(b.fd().as_fd(), l.fd().as_fd(), v4).expect("mmap the filter arrays")
}

/// Sets the filter and length bits of `addr/len`, as a writer must before inserting the entry.
pub fn mark(ebpf: &Ebpf, addr: IpAddr, len: u32) {
    let p = Prefix::containing(addr, len as u8);
    of(ebpf, p.is_ipv4()).add([&p]);
}
