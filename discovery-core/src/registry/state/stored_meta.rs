//! A sighting's metadata as kept: only the fields it has, in one
//! allocation (none when it has none). `Metadata` is 120 bytes, of which a
//! sighting uses one or two fields (swarm: labels; nats: status and
//! capabilities): kept whole, it was a tenth of the registry's memory.

use crate::labels::Labels;
use crate::model::Metadata;

/// One field that is set, in `Metadata`'s order.
#[derive(Debug, PartialEq, Eq)]
enum Field {
    Name(String),
    Status(String),
    Version(String),
    Capabilities(Vec<String>),
    Labels(Labels),
}

impl Field {
    /// Its place in `Metadata`'s order (the fields are kept sorted by it).
    fn slot(&self) -> u8 {
        match self {
            Field::Name(_) => 0,
            Field::Status(_) => 1,
            Field::Version(_) => 2,
            Field::Capabilities(_) => 3,
            Field::Labels(_) => 4,
        }
    }
}

/// A sighting's metadata fields, borrowed (unset: `None` or empty).
pub(super) struct MetaRef<'a> {
    pub(super) name: Option<&'a String>,
    pub(super) status: Option<&'a String>,
    pub(super) version: Option<&'a String>,
    pub(super) capabilities: &'a [String],
    pub(super) labels: Option<&'a Labels>,
}

/// The set fields of a sighting's metadata, in `Metadata`'s order; empty
/// capabilities and labels count as unset, as the merge treats them.
#[derive(Debug, Default)]
pub(super) struct StoredMeta(Box<[Field]>);

/// Moves `m`'s set fields, in order, into `put`.
fn fields(m: Metadata, mut put: impl FnMut(Field)) {
    let Metadata {
        name,
        status,
        capabilities,
        version,
        labels,
    } = m;
    if let Some(v) = name {
        put(Field::Name(v));
    }
    if let Some(v) = status {
        put(Field::Status(v));
    }
    if let Some(v) = version {
        put(Field::Version(v));
    }
    if !capabilities.is_empty() {
        put(Field::Capabilities(capabilities));
    }
    if !labels.is_empty() {
        put(Field::Labels(labels));
    }
}

/// Which fields `m` sets, as the bits of their slots.
fn shape(m: &Metadata) -> u8 {
    u8::from(m.name.is_some())
        | u8::from(m.status.is_some()) << 1
        | u8::from(m.version.is_some()) << 2
        | u8::from(!m.capabilities.is_empty()) << 3
        | u8::from(!m.labels.is_empty()) << 4
}

impl StoredMeta {
    pub(super) fn new(m: Metadata) -> Self {
        let n = shape(&m).count_ones() as usize;
        if n == 0 {
            return StoredMeta::default();
        }
        let mut v = Vec::with_capacity(n);
        fields(m, |f| v.push(f));
        StoredMeta(v.into_boxed_slice())
    }

    /// Replaces the fields with `m`'s, in place when `m` sets the same
    /// fields (a status change allocates nothing).
    pub(super) fn set(&mut self, m: Metadata) {
        let ours = self.0.iter().fold(0u8, |bits, f| bits | 1 << f.slot());
        if ours != shape(&m) {
            *self = StoredMeta::new(m);
            return;
        }
        let mut slots = self.0.iter_mut();
        fields(m, |f| {
            if let Some(slot) = slots.next() {
                *slot = f;
            }
        });
    }

    /// The fields, read in one pass.
    pub(super) fn read(&self) -> MetaRef<'_> {
        let mut r = MetaRef {
            name: None,
            status: None,
            version: None,
            capabilities: &[],
            labels: None,
        };
        for f in self.0.iter() {
            match f {
                Field::Name(v) => r.name = Some(v),
                Field::Status(v) => r.status = Some(v),
                Field::Version(v) => r.version = Some(v),
                Field::Capabilities(v) => r.capabilities = v,
                Field::Labels(v) => r.labels = Some(v),
            }
        }
        r
    }

    /// Whether this holds exactly `m` (empty lists as unset).
    pub(super) fn same_as(&self, m: &Metadata) -> bool {
        let r = self.read();
        r.name == m.name.as_ref()
            && r.status == m.status.as_ref()
            && r.version == m.version.as_ref()
            && r.capabilities == &m.capabilities[..]
            && match r.labels {
                Some(l) => *l == m.labels,
                None => m.labels.is_empty(),
            }
    }
}

#[cfg(test)]
mod tests {
    use super::StoredMeta;
    use crate::model::Metadata;

    fn meta(
        name: Option<&str>,
        status: Option<&str>,
        caps: &[&str],
        labels: &[(&str, &str)],
    ) -> Metadata {
        Metadata {
            name: name.map(Into::into),
            status: status.map(Into::into),
            capabilities: caps.iter().map(|c| c.to_string()).collect(),
            version: None,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<std::collections::BTreeMap<_, _>>()
                .into(),
        }
    }

    /// Every field reads back as given, `set` in place or reshaped, and
    /// `same_as` tells equal from different.
    #[test]
    fn keeps_exactly_the_set_fields() {
        let shapes = [
            meta(None, None, &[], &[]),
            meta(Some("seven"), None, &[], &[]),
            meta(None, Some("idle"), &["go"], &[]),
            meta(None, Some("working"), &["go"], &[]),
            meta(Some(""), Some("idle"), &["go", "rust"], &[("k", "v")]),
            meta(None, None, &[], &[("service", "chorus")]),
        ];
        for a in &shapes {
            let mut s = StoredMeta::new(a.clone());
            let r = s.read();
            assert_eq!(r.name, a.name.as_ref());
            assert_eq!(r.status, a.status.as_ref());
            assert_eq!(r.version, a.version.as_ref());
            assert_eq!(r.capabilities, &a.capabilities[..]);
            assert_eq!(r.labels.cloned().unwrap_or_default(), a.labels);
            for b in &shapes {
                assert_eq!(s.same_as(b), a == b, "{a:?} vs {b:?}");
            }
            for b in &shapes {
                s.set(b.clone());
                assert!(s.same_as(b), "set {b:?}");
            }
        }
        assert_eq!(std::mem::size_of::<StoredMeta>(), 16);
    }
}
