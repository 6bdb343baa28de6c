//! Registrations by key prefix, found in a few hash lookups per key
//! whatever their number: the keyspace and stream events of a server with
//! a thousand registrations cost what they cost with one.
//!
//! The rule is 1.2's ([`crate::registration::prefix_matches`]): a prefix
//! ending in `*` matches every key starting with the rest, anything else
//! only the key equal to it. A key is looked up once as a whole and once per
//! distinct length of the `*` prefixes.

use std::collections::HashMap;

/// Items (registrations) by 1.2 key prefix; [`PrefixIndex::matches`] gives
/// them in the order they were inserted.
#[derive(Debug, Clone)]
pub struct PrefixIndex<T> {
    /// By whole key (prefixes without a trailing `*`).
    exact: HashMap<Vec<u8>, Vec<(usize, T)>>,
    /// By the part before a trailing `*` (the empty string for `*`).
    heads: HashMap<Vec<u8>, Vec<(usize, T)>>,
    /// The distinct lengths of `heads`' keys, ascending.
    lengths: Vec<usize>,
    count: usize,
}

impl<T> Default for PrefixIndex<T> {
    fn default() -> Self {
        PrefixIndex {
            exact: HashMap::new(),
            heads: HashMap::new(),
            lengths: Vec::new(),
            count: 0,
        }
    }
}

impl<T: Clone> PrefixIndex<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `item` under `prefix`.
    pub fn insert(&mut self, prefix: &[u8], item: T) {
        let n = self.count;
        self.count += 1;
        match prefix.split_last() {
            Some((b'*', head)) => {
                if !self.lengths.contains(&head.len()) {
                    self.lengths.push(head.len());
                    self.lengths.sort_unstable();
                }
                self.heads.entry(head.to_vec()).or_default().push((n, item));
            }
            _ => self
                .exact
                .entry(prefix.to_vec())
                .or_default()
                .push((n, item)),
        }
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The items whose prefix matches `key`, in insertion order. Allocates
    /// nothing when none does.
    pub fn matches(&self, key: &[u8]) -> Vec<T> {
        let mut found: Vec<&(usize, T)> = Vec::new();
        if let Some(items) = self.exact.get(key) {
            found.extend(items);
        }
        for &len in &self.lengths {
            if len > key.len() {
                break;
            }
            if let Some(items) = self.heads.get(&key[..len]) {
                found.extend(items);
            }
        }
        found.sort_unstable_by_key(|(n, _)| *n);
        found.into_iter().map(|(_, t)| t.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registration::prefix_matches;

    /// The rule the index stands for, applied to every prefix.
    fn matches_by_scan<'a, T>(all: &'a [(Vec<u8>, T)], key: &[u8]) -> Vec<&'a T> {
        all.iter()
            .filter(|(p, _)| prefix_matches(p, key))
            .map(|(_, t)| t)
            .collect()
    }

    #[test]
    fn follows_the_prefix_rule_in_insertion_order() {
        let prefixes: Vec<(Vec<u8>, usize)> = [
            "user:*", "*", "user:1", "user:1*", "u*", "order:*", "a*b*", "a*b", "", "user:",
        ]
        .iter()
        .enumerate()
        .map(|(i, p)| (p.as_bytes().to_vec(), i))
        .collect();
        let mut index = PrefixIndex::new();
        for (p, i) in &prefixes {
            index.insert(p, *i);
        }
        assert_eq!(index.len(), prefixes.len());
        for key in [
            "user:1", "user:10", "user:", "u", "order:7", "a*b", "a*bc", "ab", "", "x", "user",
        ] {
            let expected: Vec<usize> = matches_by_scan(&prefixes, key.as_bytes())
                .into_iter()
                .copied()
                .collect();
            assert_eq!(index.matches(key.as_bytes()), expected, "{key}");
        }
    }

    #[test]
    fn many_prefixes_of_few_lengths() {
        let mut index = PrefixIndex::new();
        for i in 0..1000 {
            index.insert(format!("other{i:04}:*").as_bytes(), i);
        }
        index.insert(b"mine:*", 1000);
        assert_eq!(index.matches(b"mine:1"), vec![1000]);
        assert_eq!(index.matches(b"other0042:x"), vec![42]);
        assert!(index.matches(b"nobody").is_empty());
        assert_eq!(index.lengths.len(), 2);
    }
}
