//! What the shared decision code needs from a program context, implemented for XDP and TC so both
//! programs run the very same parse/decide/reject code.

use aya_ebpf::{
    bindings::{xdp_action, TC_ACT_OK, TC_ACT_SHOT},
    helpers::{bpf_redirect, bpf_skb_change_tail, bpf_xdp_adjust_tail},
    programs::{TcContext, XdpContext},
    EbpfContext,
};

/// The final fate of a packet.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Drop,
    /// The packet was rewritten into a reply: send it back out of the interface it came in on.
    Reply,
}

pub trait Packet {
    fn data(&self) -> usize;
    fn data_end(&self) -> usize;
    /// Cuts the packet to `len` bytes from the start. Invalidates every packet pointer.
    fn truncate(&self, len: usize) -> Result<(), ()>;
    /// The program's return code for an outcome (may call a helper, e.g. redirect).
    fn outcome(&self, outcome: Outcome) -> u32;
    /// The interface the packet arrived on.
    fn ifindex(&self) -> u32;
}

impl Packet for XdpContext {
    #[inline(always)]
    fn data(&self) -> usize {
        XdpContext::data(self)
    }

    #[inline(always)]
    fn data_end(&self) -> usize {
        XdpContext::data_end(self)
    }

    #[inline(always)]
    fn truncate(&self, len: usize) -> Result<(), ()> {
        let cur = self.data_end() - self.data();
        if cur == len {
            return Ok(());
        }
        let delta = len as i32 - cur as i32;
        match unsafe { bpf_xdp_adjust_tail(self.as_ptr().cast(), delta) } {
            0 => Ok(()),
            _ => Err(()),
        }
    }

    #[inline(always)]
    fn outcome(&self, outcome: Outcome) -> u32 {
        match outcome {
            Outcome::Pass => xdp_action::XDP_PASS,
            Outcome::Drop => xdp_action::XDP_DROP,
            Outcome::Reply => xdp_action::XDP_TX,
        }
    }

    #[inline(always)]
    fn ifindex(&self) -> u32 {
        unsafe { (*self.ctx).ingress_ifindex }
    }
}

impl Packet for TcContext {
    #[inline(always)]
    fn data(&self) -> usize {
        TcContext::data(self)
    }

    #[inline(always)]
    fn data_end(&self) -> usize {
        TcContext::data_end(self)
    }

    #[inline(always)]
    fn truncate(&self, len: usize) -> Result<(), ()> {
        if self.len() as usize == len {
            return Ok(());
        }
        match unsafe { bpf_skb_change_tail(self.skb.skb, len as u32, 0) } {
            0 => Ok(()),
            _ => Err(()),
        }
    }

    #[inline(always)]
    fn outcome(&self, outcome: Outcome) -> u32 {
        match outcome {
            Outcome::Pass => TC_ACT_OK as u32,
            Outcome::Drop => TC_ACT_SHOT as u32,
            // At TC ingress `data` starts at the Ethernet header, so redirecting to the egress of the
            // same device sends our rewritten frame back to the peer (returns TC_ACT_REDIRECT).
            Outcome::Reply => {
                let ifindex = unsafe { (*self.skb.skb).ifindex };
                unsafe { bpf_redirect(ifindex, 0) as u32 }
            }
        }
    }

    #[inline(always)]
    fn ifindex(&self) -> u32 {
        unsafe { (*self.skb.skb).ifindex }
    }
}
