//! Reading the fields of a message between shards (gears-core's codec
//! layout: length-prefixed fields). Every receiver parses through here, so
//! a malformed message is an error value, never a panic.

use super::*;
use crate::errors::Error;

/// The next field of a message ([`codec`] layout).
pub(super) fn take<'a>(input: &mut &'a [u8]) -> Result<&'a [u8], Error> {
    let mut r = Decoder(input);
    let field = r.bytes().ok_or(Error::BadMessage)?;
    *input = r.rest();
    Ok(field)
}

pub(super) fn text(input: &mut &[u8]) -> Result<String, Error> {
    String::from_utf8(take(input)?.to_vec()).map_err(|_| Error::BadMessage)
}
