//! Reading keys: types, string values in place (`StringDMA`), the number
//! of databases, and `SCAN` cursors over a database.

use super::*;

/// The number of databases (`databases`, fixed at start-up).
pub fn database_count() -> i64 {
    static COUNT: OnceLock<i64> = OnceLock::new();
    *COUNT.get_or_init(|| {
        config_get("databases")
            .and_then(|n| n.parse().ok())
            .unwrap_or(16)
    })
}

/// The bytes of a Redis string.
///
/// # Safety
/// `s` must be a live `RedisModuleString`.
pub(super) unsafe fn string_bytes<'a>(s: *const raw::RedisModuleString) -> &'a [u8] {
    let mut len = 0usize;
    let p = raw::RedisModule_StringPtrLen.unwrap()(s, &mut len);
    if p.is_null() {
        return &[];
    }
    std::slice::from_raw_parts(p.cast::<u8>(), len)
}

pub(super) fn key_type_of(raw_type: c_int) -> KeyType {
    match raw_type as isize {
        raw::REDISMODULE_KEYTYPE_STRING => KeyType::String,
        raw::REDISMODULE_KEYTYPE_LIST => KeyType::List,
        raw::REDISMODULE_KEYTYPE_HASH => KeyType::Hash,
        raw::REDISMODULE_KEYTYPE_SET => KeyType::Set,
        raw::REDISMODULE_KEYTYPE_ZSET => KeyType::Zset,
        raw::REDISMODULE_KEYTYPE_MODULE => KeyType::Module,
        raw::REDISMODULE_KEYTYPE_STREAM => KeyType::Stream,
        _ => KeyType::Empty,
    }
}

/// A key's type and, for a string, its value, read in place (no command
/// call): the record of a key event. Lock held.
pub fn key_type_and_string(ctx: LockedCtx, name: &[u8]) -> (KeyType, Option<Vec<u8>>) {
    read_key(ctx, name, true)
}

/// The type of key `name`. Lock held.
pub fn key_type(ctx: LockedCtx, name: &[u8]) -> KeyType {
    read_key(ctx, name, false).0
}

/// Opens `name` for reading: its type and, with `string`, a string key's
/// value.
pub(super) fn read_key(ctx: LockedCtx, name: &[u8], string: bool) -> (KeyType, Option<Vec<u8>>) {
    let s = LockedString::new(ctx, name);
    // SAFETY: lock held by the caller (a `LockedCtx` exists); the key is
    // opened for reading and closed here, after its value was copied out of
    // the DMA pointer (valid while the key is open and unmodified).
    unsafe {
        let k = raw::RedisModule_OpenKey.unwrap()(ctx.0, s.ptr(), raw::REDISMODULE_READ as i32);
        let mut out = (KeyType::Empty, None);
        if !k.is_null() {
            let ty = key_type_of(raw::RedisModule_KeyType.unwrap()(k.cast()));
            let mut value = None;
            if string && ty == KeyType::String {
                let mut len: usize = 0;
                let p = raw::RedisModule_StringDMA.unwrap()(
                    k.cast(),
                    &mut len,
                    raw::REDISMODULE_READ as i32,
                );
                if !p.is_null() {
                    value = Some(std::slice::from_raw_parts(p.cast::<u8>(), len).to_vec());
                }
            }
            out = (ty, value);
            raw::RedisModule_CloseKey.unwrap()(k.cast());
        }
        out
    }
}

/// A position in a scan of the keyspace.
pub struct ScanCursor(SendPtr<raw::RedisModuleScanCursor>);

impl Default for ScanCursor {
    fn default() -> Self {
        // SAFETY: creating a scan cursor has no preconditions.
        ScanCursor(SendPtr(unsafe {
            raw::RedisModule_ScanCursorCreate.unwrap()()
        }))
    }
}

impl Drop for ScanCursor {
    fn drop(&mut self) {
        // SAFETY: the cursor was created in `default` and is destroyed once.
        unsafe { raw::RedisModule_ScanCursorDestroy.unwrap()(self.0 .0) };
    }
}

/// What a scan step hands each key to: its name, its type and, when asked
/// for, a string key's value.
pub(super) struct KeyVisitor<'a> {
    strings: bool,
    visit: &'a mut VisitFn<'a>,
}

pub(super) type VisitFn<'a> = dyn FnMut(&[u8], KeyType, Option<&[u8]>) + 'a;

pub(super) extern "C" fn visit_key(
    _ctx: *mut raw::RedisModuleCtx,
    name: *mut raw::RedisModuleString,
    key: *mut raw::RedisModuleKey,
    privdata: *mut c_void,
) {
    // SAFETY: `privdata` is the `KeyVisitor` passed to RedisModule_Scan in
    // `ScanCursor::step`, alive for the whole call; `name` and `key` are
    // valid for this callback (the key opened for reading by the scan), and
    // a DMA pointer of it stays valid until the callback returns.
    unsafe {
        let v = &mut *privdata.cast::<KeyVisitor>();
        let ty = if key.is_null() {
            KeyType::Empty
        } else {
            key_type_of(raw::RedisModule_KeyType.unwrap()(key))
        };
        let mut value = None;
        if v.strings && ty == KeyType::String {
            let mut len: usize = 0;
            let p =
                raw::RedisModule_StringDMA.unwrap()(key, &mut len, raw::REDISMODULE_READ as i32);
            if !p.is_null() {
                value = Some(std::slice::from_raw_parts(p.cast::<u8>(), len));
            }
        }
        let name = string_bytes(name);
        // Never unwinds into Redis's scan.
        guard("key scan", || (v.visit)(name, ty, value));
    }
}

impl ScanCursor {
    /// Scans one step, calling `visit` with each key, its type and (with
    /// `strings`) a string key's value, read in place; `false` once the
    /// scan is complete. Lock held.
    pub fn step(
        &self,
        ctx: LockedCtx,
        strings: bool,
        mut visit: impl FnMut(&[u8], KeyType, Option<&[u8]>),
    ) -> bool {
        let mut visitor = KeyVisitor {
            strings,
            visit: &mut visit,
        };
        // SAFETY: lock held (a `LockedCtx` exists); `visitor` outlives the
        // call, and `visit_key` casts the pointer back to its type.
        let more = unsafe {
            raw::RedisModule_Scan.unwrap()(
                ctx.0,
                self.0 .0,
                Some(visit_key),
                (&mut visitor as *mut KeyVisitor).cast::<c_void>(),
            )
        };
        more != 0
    }
}
