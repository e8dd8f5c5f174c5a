//! Addresses of an observation: the policy drops unspecified (always),
//! loopback and link-local (by default) and counts each drop; the rest are
//! kept once each with their rank (preferred networks first).

use multiaddr::Multiaddr;

use super::State;
use crate::addr::DropReason;

/// An address kept by the policy, with its text and rank computed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RankedAddr {
    pub(super) rank: u32,
    pub(super) text: Box<str>,
}

impl State {
    pub(super) fn filter_addrs(&mut self, addrs: Vec<Multiaddr>) -> Box<[RankedAddr]> {
        let mut kept: Vec<RankedAddr> = Vec::with_capacity(addrs.len());
        for a in addrs {
            match self.policy.check(&a) {
                None => {
                    let text: Box<str> = crate::addr_text::text(&a).into();
                    if !kept.iter().any(|k| k.text == text) {
                        kept.push(RankedAddr {
                            rank: self.policy.rank(&a) as u32,
                            text,
                        });
                    }
                }
                Some(reason) => {
                    self.dropped_addrs += 1;
                    let why = match reason {
                        DropReason::Unspecified => "unspecified",
                        DropReason::Excluded(crate::addr::AddressClass::Loopback) => "loopback",
                        DropReason::Excluded(crate::addr::AddressClass::LinkLocal) => "link_local",
                        DropReason::Excluded(crate::addr::AddressClass::Private) => "private",
                        DropReason::Excluded(_) => "excluded",
                    };
                    metrics::counter!("rollcall_addresses_dropped_total", "reason" => why)
                        .increment(1);
                }
            }
        }
        kept.into_boxed_slice()
    }
}
