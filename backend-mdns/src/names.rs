//! DNS names: the service type (compared case-sensitively, as go-libp2p does),
//! random instance and host labels.

use hickory_proto::rr::domain::Label;
use hickory_proto::rr::Name;
use rand::Rng;

use crate::config::Flavour;

/// A service type such as `_p2p._udp.local.` or `CHORUS-peer-discovery.local.`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceName {
    /// The name as on the wire, with the final dot; compared byte for byte.
    pub text: String,
    /// The same as a DNS name.
    pub name: Name,
}

impl ServiceName {
    /// Checks a configured name; a missing final dot is added.
    pub fn parse(raw: &str, flavour: Flavour) -> Result<ServiceName, String> {
        let text = if raw.ends_with('.') {
            raw.to_owned()
        } else {
            format!("{raw}.")
        };
        let name =
            Name::from_ascii(&text).map_err(|e| format!("`{raw}` is not a DNS name: {e}"))?;
        let labels: Vec<String> = name
            .iter()
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect();
        if labels.last().map(String::as_str) != Some("local") || labels.len() < 2 {
            return Err(format!(
                "`{raw}` must end in `.local` (go-libp2p tag `X` is `X.local`)"
            ));
        }
        if flavour == Flavour::DnsSd {
            let ok = labels.len() == 3
                && labels[0].starts_with('_')
                && labels[0].len() > 1
                && (labels[1] == "_tcp" || labels[1] == "_udp");
            if !ok {
                return Err(format!(
                    "`{raw}`: a DNS-SD service type is `_name._tcp.local` or `_name._udp.local`"
                ));
            }
        }
        Ok(ServiceName { text, name })
    }

    /// `<instance>.<service>`.
    pub fn instance(&self, label: &str) -> Option<Name> {
        let label = Label::from_raw_bytes(label.as_bytes()).ok()?;
        Name::from_labels(
            std::iter::once(label).chain(
                self.name
                    .iter()
                    .filter_map(|l| Label::from_raw_bytes(l).ok()),
            ),
        )
        .ok()
        .map(|mut n| {
            n.set_fqdn(true);
            n
        })
    }
}

/// The exact wire text of a name (case kept, final dot included).
pub fn text(name: &Name) -> String {
    let mut s = name.to_ascii();
    if !s.ends_with('.') {
        s.push('.');
    }
    s
}

/// The first label of `name` when the rest is exactly `service` (case-sensitive).
pub fn instance_label(name: &Name, service: &ServiceName) -> Option<String> {
    let labels: Vec<&[u8]> = name.iter().collect();
    let svc: Vec<&[u8]> = service.name.iter().collect();
    if labels.len() != svc.len() + 1 || labels[1..] != svc[..] {
        return None;
    }
    String::from_utf8(labels[0].to_vec()).ok()
}

/// A random `[a-z0-9]{len}` label, as go-libp2p uses for instance and host names.
pub fn random_label(min: usize, max: usize) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let len = rng.random_range(min..=max);
    (0..len)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

/// `<label>.local.`
pub fn host(label: &str) -> Name {
    let mut n = Name::from_ascii(format!("{label}.local.")).unwrap_or_else(|_| Name::root());
    n.set_fqdn(true);
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_tag_rule_and_case() {
        let s = ServiceName::parse("CHORUS-peer-discovery.local", Flavour::Libp2p).unwrap();
        assert_eq!(s.text, "CHORUS-peer-discovery.local.");
        assert_eq!(text(&s.name), "CHORUS-peer-discovery.local.");
        let inst = s.instance("abc").unwrap();
        assert_eq!(text(&inst), "abc.CHORUS-peer-discovery.local.");
        assert_eq!(instance_label(&inst, &s).as_deref(), Some("abc"));
        let lower = Name::from_ascii("abc.chorus-peer-discovery.local.").unwrap();
        assert_eq!(instance_label(&lower, &s), None, "case-sensitive");
        assert!(ServiceName::parse("_p2p._udp.local", Flavour::Libp2p).is_ok());
        assert!(ServiceName::parse("_p2p._udp", Flavour::Libp2p).is_err());
        assert!(ServiceName::parse("CHORUS.local", Flavour::DnsSd).is_err());
        assert!(ServiceName::parse("_chorus._tcp.local", Flavour::DnsSd).is_ok());
    }

    #[test]
    fn random_labels_are_go_shaped() {
        for _ in 0..200 {
            let l = random_label(32, 63);
            assert!((32..=63).contains(&l.len()));
            assert!(l
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        }
    }
}
