//! The registrations each event source looks at, rebuilt whenever one is
//! added or removed, so that the hot paths only clone an `Arc`.

use crate::redis::{KeySpec, Notification};
use gears_core::prefix::PrefixIndex;
use gears_core::registration::{prefix_matches, ReaderArgs, Registration};
use std::collections::HashMap;
use std::sync::Arc;

/// How a registration filters the keys of a hooked command.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyFilter {
    Any,
    /// A hook's `keyprefix`: some key starts with it.
    StartsWith(Vec<u8>),
    /// A KeysReader prefix (1.2's rule: trailing `*` or exact).
    KeysPrefix(Vec<u8>),
}

impl KeyFilter {
    pub fn of(reg: &Registration) -> KeyFilter {
        match &reg.args {
            ReaderArgs::Hook {
                keyprefix: Some(p), ..
            } => KeyFilter::StartsWith(p.clone()),
            ReaderArgs::Keys { prefix, .. } if prefix.as_slice() != b"*" => {
                KeyFilter::KeysPrefix(prefix.clone())
            }
            _ => KeyFilter::Any,
        }
    }

    /// Whether a command of `argc` words, whose word `i` is `arg(i)`,
    /// passes the filter.
    pub fn accepts(&self, spec: KeySpec, argc: usize, arg: &dyn Fn(usize) -> Vec<u8>) -> bool {
        match self {
            KeyFilter::Any => true,
            KeyFilter::StartsWith(p) => spec.positions(argc).any(|i| arg(i).starts_with(p)),
            KeyFilter::KeysPrefix(p) => spec.positions(argc).any(|i| prefix_matches(p, &arg(i))),
        }
    }
}

/// A command that hooks or `commands=[...]` registrations watch.
pub struct Hooked {
    pub spec: KeySpec,
    /// Whether the command writes (its keys need write permission).
    pub writes: bool,
    pub filters: Vec<KeyFilter>,
}

#[derive(Default)]
pub struct Tables {
    /// KeysReader registrations, by prefix.
    pub keys: PrefixIndex<Arc<Registration>>,
    /// StreamReader registrations, by prefix.
    pub streams: PrefixIndex<Arc<Registration>>,
    /// Commands the command filter sends to RG.INNERHOOK, by lower-case name.
    pub hooked: HashMap<String, Hooked>,
}

impl Tables {
    /// The tables of `all`; `spec_of` gives a command's key positions and
    /// whether it writes (`None`: no such command).
    pub fn build(
        all: &[Arc<Registration>],
        spec_of: impl Fn(&str) -> Option<(KeySpec, bool)>,
    ) -> Tables {
        let mut t = Tables::default();
        for reg in all {
            let commands: Vec<String> = match &reg.args {
                ReaderArgs::Keys {
                    commands, prefix, ..
                } => {
                    t.keys.insert(prefix, reg.clone());
                    commands.clone().unwrap_or_default()
                }
                ReaderArgs::Stream { prefix, .. } => {
                    t.streams.insert(prefix, reg.clone());
                    continue;
                }
                ReaderArgs::Hook { command, .. } => vec![command.clone()],
                ReaderArgs::Trigger { .. } => continue,
            };
            for c in commands {
                if !t.hooked.contains_key(&c) {
                    let Some((spec, writes)) = spec_of(&c) else {
                        continue;
                    };
                    t.hooked.insert(
                        c.clone(),
                        Hooked {
                            spec,
                            writes,
                            filters: Vec::new(),
                        },
                    );
                }
                if let Some(h) = t.hooked.get_mut(&c) {
                    h.filters.push(KeyFilter::of(reg));
                }
            }
        }
        t
    }

    /// The key positions of a hooked command.
    pub fn spec(&self, command: &str) -> Option<KeySpec> {
        self.hooked.get(command).map(|h| h.spec)
    }

    /// The StreamReader registrations an event on `n.key` concerns, in
    /// registration order.
    pub fn streams_for(&self, n: &Notification<'_>) -> Vec<Arc<Registration>> {
        self.streams.matches(n.key)
    }

    /// The KeysReader registrations whose prefix matches `key`, in
    /// registration order.
    pub fn keys_for(&self, key: &[u8]) -> Vec<Arc<Registration>> {
        self.keys.matches(key)
    }
}
