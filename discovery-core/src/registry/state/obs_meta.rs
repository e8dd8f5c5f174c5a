//! An observation's descriptive fields as the registry keeps them: labels
//! in one sorted slice instead of a map, whose first node alone is 540 bytes
//! (a Swarm task's labels were a seventh of the memory per peer).

use crate::model::Metadata;

#[derive(Debug, PartialEq, Eq)]
pub(super) struct ObsMeta {
    pub(super) name: Option<String>,
    pub(super) status: Option<String>,
    pub(super) version: Option<String>,
    pub(super) capabilities: Vec<String>,
    /// Sorted by key, keys unique (taken from a map).
    pub(super) labels: Box<[(String, String)]>,
}

impl From<Metadata> for ObsMeta {
    fn from(m: Metadata) -> Self {
        ObsMeta {
            name: m.name,
            status: m.status,
            version: m.version,
            capabilities: m.capabilities,
            labels: m.labels.into_iter().collect(),
        }
    }
}

impl ObsMeta {
    /// The fields of `m`, or `None` when it has none (most sightings).
    pub(super) fn of(m: Metadata) -> Option<Box<ObsMeta>> {
        (m != Metadata::default()).then(|| Box::new(m.into()))
    }

    /// Whether `m` holds exactly these fields.
    pub(super) fn same_as(&self, m: &Metadata) -> bool {
        self.name == m.name
            && self.status == m.status
            && self.version == m.version
            && self.capabilities == m.capabilities
            && self.labels.len() == m.labels.len()
            && self
                .labels
                .iter()
                .zip(&m.labels)
                .all(|((k, v), (mk, mv))| k == mk && v == mv)
    }
}
