//! Addresses of an observation: the policy drops unspecified (always),
//! loopback and link-local (by default) and counts each drop; the rest are
//! kept once each with their rank (preferred networks first).

use multiaddr::Multiaddr;

use super::sighting_text::{KeptAddrs, Refused};
use super::{ObsIdx, State};
use crate::addr::DropReason;

impl State {
    /// The addresses the policy keeps, or `None` when they are exactly those
    /// of observation `same_as`. Every drop is counted. The buffer goes
    /// back (`reuse`) once stored.
    pub(super) fn filter_addrs(
        &mut self,
        addrs: Vec<Multiaddr>,
        same_as: Option<ObsIdx>,
    ) -> Option<KeptAddrs> {
        let mut kept = std::mem::take(&mut self.kept_addrs);
        kept.clear();
        for a in &addrs {
            let refused = match self.policy.judge(a) {
                Ok(rank) => match kept.push_with(rank, |s| crate::addr_text::write_text(s, a)) {
                    Ok(()) | Err(Refused::Repeat) => continue,
                    Err(Refused::TooLong) => "oversize",
                },
                Err(reason) => drop_label(reason),
            };
            self.dropped_addrs += 1;
            metrics::counter!("rollcall_addresses_dropped_total", "reason" => refused).increment(1);
        }
        let same = same_as
            .and_then(|i| self.obs.get(i))
            .is_some_and(|e| e.text.addrs().eq(kept.iter()));
        if same {
            self.kept_addrs = kept;
            return None;
        }
        Some(kept)
    }

    /// Takes back `filter_addrs`'s buffer for the next observation.
    pub(super) fn reuse(&mut self, addrs: Option<KeptAddrs>) {
        if let Some(addrs) = addrs {
            self.kept_addrs = addrs;
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
