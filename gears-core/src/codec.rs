//! The binary layout every saved or shipped form of the project uses
//! (registrations, requirements, messages between shards): numbers as
//! little-endian u64, byte strings as their u64 length then the bytes.
//! Reading stops at the first field that is not there (`None`); each
//! format says in its own words what was missing.

/// Appends fields.
#[derive(Default, Debug)]
pub struct Encoder(pub Vec<u8>);

impl Encoder {
    pub fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    pub fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        self.0.extend_from_slice(b);
    }

    pub fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
}

/// Reads fields from the front of a buffer.
#[derive(Debug)]
pub struct Decoder<'a>(pub &'a [u8]);

impl<'a> Decoder<'a> {
    /// The next `n` bytes as they are.
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    pub fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    /// A byte string (its length first).
    pub fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.u64()?).ok()?;
        self.take(n)
    }

    /// A byte string that must be UTF-8.
    pub fn text(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }

    /// What is left unread.
    pub fn rest(&self) -> &'a [u8] {
        self.0
    }
}

/// Reads from the front of `*input` with `f`, then moves `input` past what
/// was read (for decoders that pass a `&mut &[u8]` along).
pub fn read<'a, T>(
    input: &mut &'a [u8],
    f: impl FnOnce(&mut Decoder<'a>) -> Option<T>,
) -> Option<T> {
    let mut r = Decoder(input);
    let out = f(&mut r)?;
    *input = r.rest();
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_and_short_input_is_none() {
        let mut w = Encoder::default();
        w.u64(7);
        w.str("héllo");
        w.bytes(b"\0\xff");
        let mut r = Decoder(&w.0);
        assert_eq!(r.u64(), Some(7));
        assert_eq!(r.text().as_deref(), Some("héllo"));
        assert_eq!(r.bytes(), Some(&b"\0\xff"[..]));
        assert!(r.rest().is_empty());
        assert_eq!(r.u64(), None);
        let mut huge = Encoder::default();
        huge.u64(u64::MAX);
        assert_eq!(Decoder(&huge.0).bytes(), None);
        let mut bad = Encoder::default();
        bad.bytes(b"\xff\xfe");
        assert_eq!(Decoder(&bad.0).text(), None);
    }
}
