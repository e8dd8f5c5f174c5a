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

/// The set fields of a sighting's metadata, in `Metadata`'s order; empty
/// capabilities and labels count as unset, as the merge treats them.
#[derive(Debug, Default)]
pub(super) struct StoredMeta(Box<[Field]>);

/// `m`'s set fields, in order.
fn fields(m: Metadata) -> impl Iterator<Item = Field> {
    let Metadata {
        name,
        status,
        capabilities,
        version,
        labels,
    } = m;
    [
        name.map(Field::Name),
        status.map(Field::Status),
        version.map(Field::Version),
        (!capabilities.is_empty()).then_some(Field::Capabilities(capabilities)),
        (!labels.is_empty()).then_some(Field::Labels(labels)),
    ]
    .into_iter()
    .flatten()
}

impl StoredMeta {
    pub(super) fn new(m: Metadata) -> Self {
        StoredMeta(fields(m).collect())
    }

    /// Replaces the fields with `m`'s, in place when `m` sets the same
    /// fields (a status change allocates nothing).
    pub(super) fn set(&mut self, m: Metadata) {
        let same_shape = {
            let slots = [
                m.name.is_some(),
                m.status.is_some(),
                m.version.is_some(),
                !m.capabilities.is_empty(),
                !m.labels.is_empty(),
            ];
            let mut set = slots
                .iter()
                .enumerate()
                .filter(|(_, s)| **s)
                .map(|(i, _)| i as u8);
            self.0.iter().all(|f| set.next() == Some(f.slot())) && set.next().is_none()
        };
        if !same_shape {
            *self = StoredMeta::new(m);
            return;
        }
        for (slot, field) in self.0.iter_mut().zip(fields(m)) {
            *slot = field;
        }
    }

    fn find(&self, slot: u8) -> Option<&Field> {
        self.0.iter().find(|f| f.slot() == slot)
    }

    pub(super) fn name(&self) -> Option<&String> {
        match self.find(0) {
            Some(Field::Name(v)) => Some(v),
            _ => None,
        }
    }

    pub(super) fn status(&self) -> Option<&String> {
        match self.find(1) {
            Some(Field::Status(v)) => Some(v),
            _ => None,
        }
    }

    pub(super) fn version(&self) -> Option<&String> {
        match self.find(2) {
            Some(Field::Version(v)) => Some(v),
            _ => None,
        }
    }

    pub(super) fn capabilities(&self) -> &[String] {
        match self.find(3) {
            Some(Field::Capabilities(v)) => v,
            _ => &[],
        }
    }

    pub(super) fn labels(&self) -> Option<&Labels> {
        match self.find(4) {
            Some(Field::Labels(v)) => Some(v),
            _ => None,
        }
    }

    /// Whether this holds exactly `m` (empty lists as unset).
    pub(super) fn same_as(&self, m: &Metadata) -> bool {
        self.name() == m.name.as_ref()
            && self.status() == m.status.as_ref()
            && self.version() == m.version.as_ref()
            && self.capabilities() == &m.capabilities[..]
            && match self.labels() {
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
            assert_eq!(s.name(), a.name.as_ref());
            assert_eq!(s.status(), a.status.as_ref());
            assert_eq!(s.capabilities(), &a.capabilities[..]);
            assert_eq!(s.labels().cloned().unwrap_or_default(), a.labels);
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
