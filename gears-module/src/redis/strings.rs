//! Redis strings the module makes for one call: created with a locked
//! context and freed when dropped, inside the same lock scope (the
//! lifetime ties the string to the [`LockedCtx`] it was made with).

use super::*;

pub(super) struct LockedString<'a> {
    ctx: LockedCtx<'a>,
    ptr: *mut raw::RedisModuleString,
}

impl<'a> LockedString<'a> {
    pub(super) fn new(ctx: LockedCtx<'a>, bytes: &[u8]) -> LockedString<'a> {
        // SAFETY: the lock is held while `ctx` lives (a `LockedCtx` exists),
        // and Redis copies the bytes.
        let ptr = unsafe {
            raw::RedisModule_CreateString.unwrap()(
                ctx.0,
                bytes.as_ptr().cast::<c_char>(),
                bytes.len(),
            )
        };
        LockedString { ctx, ptr }
    }

    /// The string, for calls made while it lives.
    pub(super) fn ptr(&self) -> *mut raw::RedisModuleString {
        self.ptr
    }
}

impl Drop for LockedString<'_> {
    fn drop(&mut self) {
        // SAFETY: made in `new` with this context, freed once, and the lock
        // of that context is still held (the string can not outlive it).
        unsafe { raw::RedisModule_FreeString.unwrap()(self.ctx.0, self.ptr) };
    }
}
