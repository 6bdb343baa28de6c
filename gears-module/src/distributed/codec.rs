//! Reading the fields of a message between shards (gears-core's codec
//! layout: length-prefixed fields). Every receiver parses through here, so
//! a malformed message is an error value, never a panic.

use super::*;

/// The next field of a message ([`codec`] layout).
pub(super) fn take<'a>(input: &mut &'a [u8]) -> Result<&'a [u8], String> {
    let mut r = Decoder(input);
    let field = r.bytes().ok_or("bad message")?;
    *input = r.rest();
    Ok(field)
}

pub(super) fn text(input: &mut &[u8]) -> Result<String, String> {
    String::from_utf8(take(input)?.to_vec()).map_err(|_| "bad message".into())
}
