//! Addresses of an observation: the policy drops unspecified (always),
//! loopback and link-local (by default) and counts each drop; the rest are
//! kept once each with their rank (preferred networks first).

use multiaddr::Multiaddr;

use super::{ObsIdx, State};
use crate::addr::DropReason;

/// An address kept by the policy, with its text and rank computed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RankedAddr {
    pub(super) rank: u32,
    pub(super) text: Box<str>,
}

impl State {
    /// The addresses the policy keeps, or `None` when they are exactly those
    /// of observation `same_as` (then nothing is allocated). Every drop is counted.
    pub(super) fn filter_addrs(
        &mut self,
        addrs: Vec<Multiaddr>,
        same_as: Option<ObsIdx>,
    ) -> Option<Box<[RankedAddr]>> {
        let stored: Option<&[RankedAddr]> = same_as
            .and_then(|i| self.obs.get(i))
            .map(|e| &*e.addrs);
        // While `kept` is empty, the first `matched` kept addresses are `stored`'s.
        let mut kept: Vec<RankedAddr> = Vec::new();
        let mut matched = 0;
        let mut diverged = stored.is_none();
        for a in &addrs {
            let rank = match self.policy.judge(a) {
                Ok(rank) => rank as u32,
                Err(reason) => {
                    self.dropped_addrs += 1;
                    metrics::counter!("rollcall_addresses_dropped_total", "reason" => drop_label(reason))
                        .increment(1);
                    continue;
                }
            };
            let text = &mut self.addr_text;
            text.clear();
            crate::addr_text::write_text(text, a);
            if let (false, Some(st)) = (diverged, stored) {
                if st[..matched].iter().any(|k| *k.text == **text) {
                    continue; // a repeat
                }
                if st
                    .get(matched)
                    .is_some_and(|k| *k.text == **text && k.rank == rank)
                {
                    matched += 1;
                    continue;
                }
                diverged = true;
                kept.reserve_exact(addrs.len());
                kept.extend_from_slice(&st[..matched]);
            }
            if !kept.iter().any(|k| *k.text == **text) {
                if kept.capacity() == 0 {
                    kept.reserve_exact(addrs.len());
                }
                kept.push(RankedAddr {
                    rank,
                    text: text.as_str().into(),
                });
            }
        }
        match stored {
            Some(st) if !diverged && matched == st.len() => None,
            Some(st) if !diverged => Some(st[..matched].into()),
            _ => Some(kept.into_boxed_slice()),
        }
    }
}

fn drop_label(reason: DropReason) -> &'static str {
    match reason {
        DropReason::Unspecified => "unspecified",
        DropReason::Excluded(crate::addr::AddressClass::Loopback) => "loopback",
        DropReason::Excluded(crate::addr::AddressClass::LinkLocal) => "link_local",
        DropReason::Excluded(crate::addr::AddressClass::Private) => "private",
        DropReason::Excluded(_) => "excluded",
    }
}
