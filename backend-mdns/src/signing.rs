//! Signed announcements (`[sources.NAME.signing]`). Each packet an agent
//! sends is signed on its own, with a fresh sequence, over what a receiver
//! builds its observation from: the service, instance and host names, the SRV
//! port, the A/AAAA addresses, the instance's and the host's TXT strings in
//! that packet, and whether it is a goodbye.
//!
//! The signature rides in four more TXT strings: in the DNS-SD flavour in the
//! instance's TXT (`sig_key=`, `sig_seq=`, `sig_ts=`, `sig=`), in the libp2p
//! flavour in rollcall's TXT under the host name (`rollcall.sig_key=`...), so
//! the instance's TXT stays `dnsaddr=` strings only, as go-libp2p and
//! rust-libp2p require. A receiver removes them, rebuilds the same bytes and
//! asks the source's verifier; the signer's peer id must be the peer id the
//! packet claims (its `dnsaddr` strings, or DNS-SD's `peer_id=`).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use discovery_core::identity::Identity;
use discovery_core::signed::{
    decode_hex, encode_hex, sign, unix_millis, Canonical, Claims, Reason, Signature, Verified,
    Verifier,
};

use crate::config::Flavour;

/// The domain tag of mDNS signatures.
pub(crate) const DOMAIN: &str = "rollcall/mdns/v1";

const KEY: &str = "sig_key";
const SEQ: &str = "sig_seq";
const TS: &str = "sig_ts";
const SIG: &str = "sig";

/// What a signature covers, as the sender has it and the receiver reads it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Signed<'a> {
    pub flavour: Flavour,
    pub service: &'a str,
    pub instance: &'a str,
    /// The SRV target, as text.
    pub host: &'a str,
    pub port: u16,
    pub ips: &'a [IpAddr],
    pub goodbye: bool,
    /// Instance TXT strings (without the signature's).
    pub txt: &'a [String],
    /// Host TXT strings (without the signature's).
    pub host_txt: &'a [String],
}

fn canonical(s: &Signed<'_>, sequence: u64, timestamp: u64) -> Vec<u8> {
    let mut ips: Vec<String> = s.ips.iter().map(ToString::to_string).collect();
    ips.sort();
    let nonempty =
        |v: &'_ [String]| -> Vec<String> { v.iter().filter(|t| !t.is_empty()).cloned().collect() };
    let (txt, host_txt) = (nonempty(s.txt), nonempty(s.host_txt));
    Canonical::new(DOMAIN)
        .str(match s.flavour {
            Flavour::Libp2p => "libp2p",
            Flavour::DnsSd => "dns-sd",
        })
        .str(s.service)
        .str(s.instance)
        .str(s.host)
        .u64(u64::from(s.port))
        .strs(ips.iter().map(String::as_str))
        .u64(u64::from(s.goodbye))
        .strs(txt.iter().map(String::as_str))
        .strs(host_txt.iter().map(String::as_str))
        .u64(sequence)
        .u64(timestamp)
        .finish()
}

/// The prefix of the signature strings in a flavour.
fn prefix(flavour: Flavour) -> &'static str {
    match flavour {
        Flavour::Libp2p => crate::observe::LIBP2P_META_PREFIX,
        Flavour::DnsSd => "",
    }
}

/// The sending side: the identity, and a sequence that keeps rising across
/// restarts (it starts at the Unix time in milliseconds).
#[derive(Debug)]
pub(crate) struct Signer {
    identity: Arc<Identity>,
    sequence: AtomicU64,
}

impl Signer {
    pub(crate) fn new(identity: Arc<Identity>) -> Self {
        Signer {
            identity,
            sequence: AtomicU64::new(unix_millis()),
        }
    }

    /// The signer's peer id.
    pub(crate) fn peer_id(&self) -> String {
        self.identity.peer_id().to_string()
    }

    /// The four TXT strings that sign `s`.
    pub(crate) fn strings(&self, s: &Signed<'_>) -> Vec<String> {
        let seq = self.sequence.fetch_add(1, Ordering::Relaxed) + 1;
        let ts = unix_millis();
        let sig = sign(&self.identity, &canonical(s, seq, ts));
        let p = prefix(s.flavour);
        vec![
            format!("{p}{KEY}={}", encode_hex(&sig.key)),
            format!("{p}{SEQ}={seq}"),
            format!("{p}{TS}={ts}"),
            format!("{p}{SIG}={}", encode_hex(&sig.sig)),
        ]
    }
}

/// A signature read from TXT strings.
#[derive(Debug, Default)]
struct Found {
    key: Option<Vec<u8>>,
    seq: Option<u64>,
    ts: Option<u64>,
    sig: Option<Vec<u8>>,
    any: bool,
}

/// Splits the signature's strings off `strings`.
fn take(strings: &[String], flavour: Flavour) -> (Vec<String>, Found) {
    let p = prefix(flavour);
    let mut rest = Vec::with_capacity(strings.len());
    let mut f = Found::default();
    for s in strings {
        let field = s
            .strip_prefix(p)
            .and_then(|kv| kv.split_once('='))
            .filter(|(k, _)| [KEY, SEQ, TS, SIG].contains(k));
        match field {
            Some((k, v)) => {
                f.any = true;
                match k {
                    KEY => f.key = decode_hex(v),
                    SEQ => f.seq = v.parse().ok(),
                    TS => f.ts = v.parse().ok(),
                    _ => f.sig = decode_hex(v),
                }
            }
            None => rest.push(s.clone()),
        }
    }
    (rest, f)
}

/// Checks a received sighting. `s.txt` / `s.host_txt` are the strings as
/// received (signature included); `agent_id` and `peer_id` are what the
/// packet claims. An incomplete or garbled signature is a bad signature.
pub(crate) fn verify(
    v: &Verifier,
    s: &Signed<'_>,
    agent_id: &str,
    peer_id: Option<&str>,
) -> Result<Verified, Reason> {
    let (txt, host_txt, found) = match s.flavour {
        Flavour::Libp2p => {
            let (host_txt, f) = take(s.host_txt, s.flavour);
            (s.txt.to_vec(), host_txt, f)
        }
        Flavour::DnsSd => {
            let (txt, f) = take(s.txt, s.flavour);
            (txt, s.host_txt.to_vec(), f)
        }
    };
    let stripped = Signed {
        txt: &txt,
        host_txt: &host_txt,
        ..*s
    };
    let (seq, ts) = (found.seq.unwrap_or(0), found.ts.unwrap_or(0));
    let signature = found.any.then(|| Signature {
        key: found.key.clone().unwrap_or_default(),
        sig: found.sig.clone().unwrap_or_default(),
    });
    let canonical = canonical(&stripped, seq, ts);
    v.check(&Claims {
        agent_id,
        peer_id,
        sequence: seq,
        timestamp_ms: ts,
        canonical: &canonical,
        signature: signature.as_ref(),
    })
}

#[cfg(test)]
mod tests {
    use discovery_core::signed::SigningConfig;

    use super::*;

    fn strict() -> Verifier {
        Verifier::new(SigningConfig::strict(), Arc::from("t")).accepting_repeats()
    }

    const IPS: &[IpAddr] = &[IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 7))];

    fn signed<'a>(flavour: Flavour, txt: &'a [String], host_txt: &'a [String]) -> Signed<'a> {
        Signed {
            flavour,
            service: "_rollcall._tcp.local.",
            instance: "agent-7",
            host: "h1.local.",
            port: 8081,
            ips: IPS,
            goodbye: false,
            txt,
            host_txt,
        }
    }

    #[test]
    fn a_signed_dns_sd_txt_verifies_and_any_change_does_not() {
        let id = Arc::new(Identity::ephemeral());
        let signer = Signer::new(id.clone());
        let pid = id.peer_id().to_string();
        let mut txt = vec!["id=agent-7".to_string(), format!("peer_id={pid}")];
        let sig = signer.strings(&signed(Flavour::DnsSd, &txt, &[]));
        txt.extend(sig);
        let v = strict();
        let got = verify(
            &v,
            &signed(Flavour::DnsSd, &txt, &[]),
            "agent-7",
            Some(&pid),
        );
        assert_eq!(got.unwrap().peer_id, Some(id.peer_id()));
        // The same packet again (IPv4 and IPv6): a repeat, accepted.
        assert!(verify(
            &v,
            &signed(Flavour::DnsSd, &txt, &[]),
            "agent-7",
            Some(&pid)
        )
        .is_ok());
        // Another port, a goodbye made of a signed announcement, an extra string.
        let mut other = signed(Flavour::DnsSd, &txt, &[]);
        other.port = 22;
        assert_eq!(
            verify(&v, &other, "agent-7", Some(&pid)),
            Err(Reason::BadSignature)
        );
        let mut bye = signed(Flavour::DnsSd, &txt, &[]);
        bye.goodbye = true;
        assert_eq!(
            verify(&v, &bye, "agent-7", Some(&pid)),
            Err(Reason::BadSignature)
        );
        let mut more = txt.clone();
        more.insert(0, "status=evil".into());
        assert_eq!(
            verify(
                &v,
                &signed(Flavour::DnsSd, &more, &[]),
                "agent-7",
                Some(&pid)
            ),
            Err(Reason::BadSignature)
        );
        // Half a signature.
        let half: Vec<String> = txt
            .iter()
            .filter(|s| !s.starts_with("sig="))
            .cloned()
            .collect();
        assert_eq!(
            verify(
                &v,
                &signed(Flavour::DnsSd, &half, &[]),
                "agent-7",
                Some(&pid)
            ),
            Err(Reason::BadSignature)
        );
        // Signed by its own key, claiming another peer id.
        let other_pid = Identity::ephemeral().peer_id().to_string();
        assert_eq!(
            verify(
                &v,
                &signed(Flavour::DnsSd, &txt, &[]),
                "agent-7",
                Some(&other_pid)
            ),
            Err(Reason::KeyMismatch)
        );
    }

    #[test]
    fn libp2p_flavour_signs_in_the_host_txt_and_leaves_dnsaddr_alone() {
        let id = Arc::new(Identity::ephemeral());
        let signer = Signer::new(id.clone());
        let pid = id.peer_id().to_string();
        let txt = vec![format!("dnsaddr=/ip4/10.0.0.7/tcp/4001/p2p/{pid}")];
        let mut host_txt = vec!["rollcall.id=agent-7".to_string()];
        let sig = signer.strings(&signed(Flavour::Libp2p, &txt, &host_txt));
        assert!(sig.iter().all(|s| s.starts_with("rollcall.sig")));
        host_txt.extend(sig);
        let v = strict();
        assert!(verify(
            &v,
            &signed(Flavour::Libp2p, &txt, &host_txt),
            "agent-7",
            Some(&pid)
        )
        .is_ok());
        // Another address in the instance's TXT is not what was signed.
        let moved = vec![format!("dnsaddr=/ip4/6.6.6.6/tcp/4001/p2p/{pid}")];
        assert_eq!(
            verify(
                &v,
                &signed(Flavour::Libp2p, &moved, &host_txt),
                "agent-7",
                Some(&pid)
            ),
            Err(Reason::BadSignature)
        );
        // Unsigned (go-libp2p, rust-libp2p) while signatures are required.
        assert_eq!(
            verify(&v, &signed(Flavour::Libp2p, &txt, &[]), "x", Some(&pid)),
            Err(Reason::Unsigned)
        );
    }

    #[test]
    fn an_older_packet_after_a_newer_one_is_a_replay() {
        let id = Arc::new(Identity::ephemeral());
        let signer = Signer::new(id.clone());
        let pid = id.peer_id().to_string();
        let base = vec!["id=agent-7".to_string()];
        let mut first = base.clone();
        first.extend(signer.strings(&signed(Flavour::DnsSd, &base, &[])));
        let mut second = base.clone();
        second.extend(signer.strings(&signed(Flavour::DnsSd, &base, &[])));
        let v = strict();
        assert!(verify(
            &v,
            &signed(Flavour::DnsSd, &second, &[]),
            "agent-7",
            Some(&pid)
        )
        .is_ok());
        assert_eq!(
            verify(
                &v,
                &signed(Flavour::DnsSd, &first, &[]),
                "agent-7",
                Some(&pid)
            ),
            Err(Reason::Replayed)
        );
    }
}
