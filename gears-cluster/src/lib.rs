//! Hash slots, hash tags and the shard topology.
//!
//! [`key_slot`] is Redis Cluster's slot function (CRC16/XMODEM of the key, or
//! of its `{tag}`, modulo 16384). [`slot_tag`] gives, for each slot, a short
//! string that hashes to it: `hashtag()` in Python returns the tag of the
//! lowest slot the local shard serves, so that `{tag}` keys land locally.
//!
//! # Example
//!
//! ```rust
//! use gears_cluster::{crc16, key_slot, slot_tag, Topology};
//!
//! // CRC16/XMODEM's check value, and slots as CLUSTER KEYSLOT gives them.
//! assert_eq!(crc16(b"123456789"), 0x31C3);
//! assert_eq!(key_slot(b"foo"), 12182);
//! // Only the hash tag is hashed.
//! assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
//!
//! // A tag for a slot: keys that carry it as `{tag}` land in that slot.
//! let tag = slot_tag(12182);
//! assert_eq!(key_slot(tag.as_bytes()), 12182);
//! assert_eq!(key_slot(format!("{{{tag}}}:orders").as_bytes()), 12182);
//!
//! // Off-cluster, hashtag() is the tag of slot 0.
//! let local = Topology::default();
//! assert!(!local.is_cluster());
//! assert_eq!(key_slot(local.hashtag().as_bytes()), 0);
//! ```

#![forbid(unsafe_code)]

use once_cell::sync::Lazy;

pub const SLOTS: usize = 16384;

/// CRC16 (XMODEM polynomial 0x1021, initial value 0), as Redis Cluster uses.
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= (b as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The part of a key that is hashed: the text between the first `{` and the
/// next `}` when it is not empty, the whole key otherwise.
pub fn hashed_part(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&c| c == b'{') {
        if let Some(len) = key[open + 1..].iter().position(|&c| c == b'}') {
            if len > 0 {
                return &key[open + 1..open + 1 + len];
            }
        }
    }
    key
}

pub fn key_slot(key: &[u8]) -> u16 {
    crc16(hashed_part(key)) & 0x3FFF
}

static TAGS: Lazy<Vec<String>> = Lazy::new(|| {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut tags: Vec<Option<String>> = vec![None; SLOTS];
    let mut missing = SLOTS;
    // Shortest strings first, so each slot gets the shortest tag found.
    'outer: for len in 1..=4usize {
        let mut idx = vec![0usize; len];
        loop {
            let s: Vec<u8> = idx.iter().map(|&i| ALPHABET[i]).collect();
            let slot = key_slot(&s) as usize;
            if tags[slot].is_none() {
                tags[slot] = Some(String::from_utf8(s).expect("ascii"));
                missing -= 1;
                if missing == 0 {
                    break 'outer;
                }
            }
            // Next combination, odometer style.
            let mut pos = len;
            loop {
                if pos == 0 {
                    continue 'outer;
                }
                pos -= 1;
                idx[pos] += 1;
                if idx[pos] < ALPHABET.len() {
                    break;
                }
                idx[pos] = 0;
            }
        }
    }
    tags.into_iter()
        .map(|t| t.expect("every slot has a tag"))
        .collect()
});

/// A short string whose slot is `slot` (`slot < 16384`).
pub fn slot_tag(slot: u16) -> &'static str {
    &TAGS[slot as usize % SLOTS]
}

/// One shard of the cluster as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    pub id: String,
    pub host: String,
    pub port: u16,
    /// Slot ranges, inclusive.
    pub ranges: Vec<(u16, u16)>,
}

/// The cluster as this node sees it. Off-cluster it is empty and everything
/// is local.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topology {
    pub my_id: Option<String>,
    pub shards: Vec<Shard>,
}

impl Topology {
    pub fn is_cluster(&self) -> bool {
        self.my_id.is_some() && self.shards.len() > 1
    }

    /// The lowest slot served by this node (0 off-cluster).
    pub fn my_lowest_slot(&self) -> u16 {
        let Some(me) = &self.my_id else { return 0 };
        self.shards
            .iter()
            .filter(|s| &s.id == me)
            .flat_map(|s| s.ranges.iter().map(|r| r.0))
            .min()
            .unwrap_or(0)
    }

    /// Whether this node serves `slot` (every slot off-cluster).
    pub fn serves(&self, slot: u16) -> bool {
        if !self.is_cluster() {
            return true;
        }
        let me = self.my_id.as_deref();
        self.shards
            .iter()
            .filter(|s| Some(s.id.as_str()) == me)
            .any(|s| s.ranges.iter().any(|&(a, b)| a <= slot && slot <= b))
    }

    /// The tag `hashtag()` returns on this node.
    pub fn hashtag(&self) -> &'static str {
        slot_tag(self.my_lowest_slot())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis_cluster() {
        // Values from CLUSTER KEYSLOT on a real server.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"123456789"), 12739);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"foo{}{bar}"), key_slot(b"foo{}{bar}"));
        assert_eq!(hashed_part(b"foo{}{bar}"), b"foo{}{bar}");
        assert_eq!(hashed_part(b"foo{{bar}}zap"), b"{bar");
        assert_eq!(hashed_part(b"{a}{b}"), b"a");
    }

    #[test]
    fn every_slot_has_a_short_tag_that_hashes_to_it() {
        for slot in 0..SLOTS as u16 {
            let tag = slot_tag(slot);
            assert!(tag.len() <= 4, "slot {slot} tag {tag}");
            assert_eq!(key_slot(tag.as_bytes()), slot);
            assert_eq!(key_slot(format!("{{{tag}}}:x").as_bytes()), slot);
        }
    }

    #[test]
    fn off_cluster_hashtag_is_slot_zero() {
        let t = Topology::default();
        assert!(!t.is_cluster());
        assert_eq!(key_slot(t.hashtag().as_bytes()), 0);
        let t = Topology {
            my_id: Some("b".into()),
            shards: vec![
                Shard {
                    id: "a".into(),
                    host: "h".into(),
                    port: 1,
                    ranges: vec![(0, 99)],
                },
                Shard {
                    id: "b".into(),
                    host: "h".into(),
                    port: 2,
                    ranges: vec![(300, 400), (100, 199)],
                },
            ],
        };
        assert!(t.is_cluster());
        assert!(t.serves(150) && t.serves(400) && !t.serves(50) && !t.serves(250));
        assert!(Topology::default().serves(50));
        assert_eq!(t.my_lowest_slot(), 100);
        assert_eq!(key_slot(t.hashtag().as_bytes()), 100);
    }
}
