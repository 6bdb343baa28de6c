//! Redis-style glob matching (`*`, `?`, `[a-z]`, `[^...]`, `\x`), the
//! pattern language of `KEYS`/`SCAN MATCH` that KeysReader accepts.

/// A compiled pattern; literal prefixes (`user:*`) take a fast path.
#[derive(Debug, Clone)]
pub enum Glob {
    All,
    Prefix(Vec<u8>),
    Exact(Vec<u8>),
    Pattern(Vec<u8>),
}

impl Glob {
    pub fn new(pattern: &[u8]) -> Glob {
        let special = |c: &u8| matches!(c, b'*' | b'?' | b'[' | b'\\');
        if pattern == b"*" {
            Glob::All
        } else if !pattern.iter().any(special) {
            Glob::Exact(pattern.to_vec())
        } else if pattern.last() == Some(&b'*') && !pattern[..pattern.len() - 1].iter().any(special)
        {
            Glob::Prefix(pattern[..pattern.len() - 1].to_vec())
        } else {
            Glob::Pattern(pattern.to_vec())
        }
    }

    pub fn matches(&self, s: &[u8]) -> bool {
        match self {
            Glob::All => true,
            Glob::Prefix(p) => s.starts_with(p),
            Glob::Exact(p) => s == &p[..],
            Glob::Pattern(p) => glob_match(p, s),
        }
    }
}

/// Matches `s` against the glob `p`.
pub fn glob_match(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    // Backtracking point for the last `*`: (pattern index after it, string index).
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() {
            match p[pi] {
                b'*' => {
                    while pi < p.len() && p[pi] == b'*' {
                        pi += 1;
                    }
                    if pi == p.len() {
                        return true;
                    }
                    star = Some((pi, si));
                    continue;
                }
                b'?' => {
                    pi += 1;
                    si += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, next)) = class_match(p, pi, s[si]) {
                        if matched {
                            pi = next;
                            si += 1;
                            continue;
                        }
                    } else if s[si] == b'[' {
                        // An unterminated class matches a literal '['.
                        pi += 1;
                        si += 1;
                        continue;
                    }
                }
                b'\\' if pi + 1 < p.len() => {
                    if p[pi + 1] == s[si] {
                        pi += 2;
                        si += 1;
                        continue;
                    }
                }
                c => {
                    if c == s[si] {
                        pi += 1;
                        si += 1;
                        continue;
                    }
                }
            }
        }
        match star {
            Some((sp, ss)) => {
                pi = sp;
                si = ss + 1;
                star = Some((sp, ss + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Matches one byte against the class starting at `p[start] == b'['`.
/// Returns whether it matched and the index after the class, or `None` when
/// the class is not terminated.
fn class_match(p: &[u8], start: usize, c: u8) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = p.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let ch = *p.get(i)?;
        if ch == b']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if ch == b'\\' && i + 1 < p.len() {
            matched |= p[i + 1] == c;
            i += 2;
        } else if i + 2 < p.len() && p[i + 1] == b'-' && p[i + 2] != b']' {
            let (lo, hi) = if ch <= p[i + 2] {
                (ch, p[i + 2])
            } else {
                (p[i + 2], ch)
            };
            matched |= lo <= c && c <= hi;
            i += 3;
        } else {
            matched |= ch == c;
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, s: &str) -> bool {
        let g = Glob::new(p.as_bytes());
        let fast = g.matches(s.as_bytes());
        assert_eq!(fast, glob_match(p.as_bytes(), s.as_bytes()), "{p} vs {s}");
        fast
    }

    #[test]
    fn globs_behave_like_redis() {
        assert!(m("*", ""));
        assert!(m("*", "anything"));
        assert!(m("foo*", "foobar"));
        assert!(!m("foo*", "fo"));
        assert!(m("h?llo", "hello"));
        assert!(!m("h?llo", "hllo"));
        assert!(m("h*llo", "heeeello"));
        assert!(m("h[ae]llo", "hallo"));
        assert!(!m("h[ae]llo", "hillo"));
        assert!(m("h[^e]llo", "hallo"));
        assert!(!m("h[^e]llo", "hello"));
        assert!(m("h[a-b]llo", "hbllo"));
        assert!(m("h[b-a]llo", "hallo"));
        assert!(m("a\\*b", "a*b"));
        assert!(!m("a\\*b", "axb"));
        assert!(m("*a*b*", "xxaxxbxx"));
        assert!(!m("*a*b", "xxaxxbxxc"));
        assert!(m("exact", "exact"));
        assert!(!m("exact", "exactly"));
        assert!(m("[", "["));
    }
}
