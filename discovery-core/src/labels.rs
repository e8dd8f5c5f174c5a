//! A peer's labels: a small sorted list with a map's interface. Peers carry
//! a few labels each, and a `BTreeMap`'s first node is 540 bytes whatever
//! it holds: at 10k peers that was a seventh of the roster's memory.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Label key to value, sorted by key, each key once. Serialized as a map.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Labels(pub(crate) Vec<(String, String)>);

/// Iterates a [`Labels`] in key order.
pub type Iter<'a> = std::iter::Map<
    std::slice::Iter<'a, (String, String)>,
    fn(&'a (String, String)) -> (&'a String, &'a String),
>;

impl Labels {
    /// No labels.
    pub fn new() -> Self {
        Labels(Vec::new())
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&String> {
        self.find(key).ok().map(|i| &self.0[i].1)
    }

    /// Whether `key` has a value.
    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    /// Sets `key` to `value`; returns the value it replaced.
    pub fn insert(&mut self, key: String, value: String) -> Option<String> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (key, value));
                None
            }
        }
    }

    /// Removes `key`; returns its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.find(key).ok().map(|i| self.0.remove(i).1)
    }

    /// The labels in key order.
    pub fn iter(&self) -> Iter<'_> {
        fn pair((k, v): &(String, String)) -> (&String, &String) {
            (k, v)
        }
        self.0
            .iter()
            .map(pair as fn(&(String, String)) -> (&String, &String))
    }

    /// The keys in order.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.iter().map(|(k, _)| k)
    }

    /// How many labels.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Removes every label.
    pub fn clear(&mut self) {
        self.0.clear();
    }
}

impl FromIterator<(String, String)> for Labels {
    /// As a map collects: a later value of a key replaces an earlier one.
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        let mut v: Vec<(String, String)> = iter.into_iter().collect();
        // Stable: equal keys keep their order, and the last one is kept.
        v.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(String, String)> = Vec::with_capacity(v.len());
        for (k, val) in v {
            match out.last_mut() {
                Some(last) if last.0 == k => last.1 = val,
                _ => out.push((k, val)),
            }
        }
        Labels(out)
    }
}

impl Extend<(String, String)> for Labels {
    /// As a map extends: a value of a key already there replaces it.
    fn extend<I: IntoIterator<Item = (String, String)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

impl From<BTreeMap<String, String>> for Labels {
    fn from(m: BTreeMap<String, String>) -> Self {
        Labels(m.into_iter().collect())
    }
}

impl From<Labels> for BTreeMap<String, String> {
    fn from(l: Labels) -> Self {
        l.0.into_iter().collect()
    }
}

impl<const N: usize> From<[(String, String); N]> for Labels {
    fn from(a: [(String, String); N]) -> Self {
        a.into_iter().collect()
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = (&'a String, &'a String);
    type IntoIter = Iter<'a>;
    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl IntoIterator for Labels {
    type Item = (String, String);
    type IntoIter = std::vec::IntoIter<(String, String)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl std::ops::Index<&str> for Labels {
    type Output = String;
    /// Panics when `key` has no value, as a map's index does.
    fn index(&self, key: &str) -> &String {
        match self.get(key) {
            Some(v) => v,
            None => panic!("no label {key:?}"),
        }
    }
}

impl Serialize for Labels {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        BTreeMap::<String, String>::deserialize(d).map(Labels::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_a_map() {
        let pairs = [("b", "2"), ("a", "1"), ("c", "3"), ("a", "9")];
        let own = |(k, v): &(&str, &str)| (k.to_string(), v.to_string());
        let l: Labels = pairs.iter().map(own).collect();
        let m: BTreeMap<String, String> = pairs.iter().map(own).collect();
        assert_eq!(l.iter().collect::<Vec<_>>(), m.iter().collect::<Vec<_>>());
        assert_eq!(l.get("a").map(String::as_str), Some("9"));
        assert_eq!(&l["c"], "3");
        assert!(!l.contains_key("d"));
        assert_eq!(
            serde_json::to_string(&l).unwrap(),
            serde_json::to_string(&m).unwrap()
        );
        let back: Labels = serde_json::from_str(r#"{"z":"1","y":"2"}"#).unwrap();
        assert_eq!(back.keys().collect::<Vec<_>>(), ["y", "z"]);
        let mut l2 = Labels::new();
        assert_eq!(l2.insert("k".into(), "1".into()), None);
        assert_eq!(l2.insert("k".into(), "2".into()), Some("1".into()));
        assert_eq!(l2.remove("k"), Some("2".into()));
        assert!(l2.is_empty());
        assert_eq!(BTreeMap::from(l.clone()), m);
    }
}
