//! The module's data types and aux data: the `GEARS_TYPE` placeholder,
//! time events (`GEARS_TEV` keys: RDB, AOF rewrite, free) and the RDB aux
//! section the registrations and requirements are saved in. The bytes are
//! prepared by the module beforehand; nothing here locks at save time.

use super::*;

/// The data type that only carries the module's RDB aux data (no key is
/// ever of this type).
pub static GEARS_TYPE: redis_module::native_types::RedisType =
    redis_module::native_types::RedisType::new(
        "GEARS_REG",
        AUX_VERSION,
        raw::RedisModuleTypeMethods {
            aux_load: Some(aux_load),
            aux_save: Some(aux_save),
            aux_save_triggers: raw::REDISMODULE_AUX_BEFORE_RDB as i32,
            ..NO_METHODS
        },
    );

/// A data type's callbacks, none set.
pub(super) const NO_METHODS: raw::RedisModuleTypeMethods = raw::RedisModuleTypeMethods {
    version: raw::REDISMODULE_TYPE_METHOD_VERSION as u64,
    rdb_load: None,
    rdb_save: None,
    aof_rewrite: None,
    free: None,
    mem_usage: None,
    digest: None,
    aux_load: None,
    aux_save: None,
    aux_save2: None,
    aux_save_triggers: 0,
    free_effort: None,
    unlink: None,
    copy: None,
    defrag: None,
    copy2: None,
    free_effort2: None,
    mem_usage2: None,
    unlink2: None,
};

/// A time event: the value of a key of type [`TIME_EVENT_TYPE`]. Deleting
/// the key frees the value, which cancels the event.
pub struct TimeEvent {
    pub period_ms: u64,
    pub owner: Option<String>,
    /// The callback in the host language's saved form.
    pub payload: Vec<u8>,
    pub cancelled: std::sync::Arc<AtomicBool>,
}

impl TimeEvent {
    pub fn new(period_ms: u64, owner: Option<String>, payload: Vec<u8>) -> TimeEvent {
        TimeEvent {
            period_ms,
            owner,
            payload,
            cancelled: std::sync::Arc::new(AtomicBool::new(false)),
        }
    }
}

/// The type of keys that hold a time event (`registerTimeEvent`).
pub static TIME_EVENT_TYPE: redis_module::native_types::RedisType =
    redis_module::native_types::RedisType::new(
        "GEARS_TEV",
        1,
        raw::RedisModuleTypeMethods {
            rdb_load: Some(te_rdb_load),
            rdb_save: Some(te_rdb_save),
            aof_rewrite: Some(te_aof_rewrite),
            free: Some(te_free),
            ..NO_METHODS
        },
    );

pub(super) extern "C" fn te_rdb_save(rdb: *mut raw::RedisModuleIO, value: *mut c_void) {
    // SAFETY: Redis hands back a value this module set (a `TimeEvent`).
    let ev = unsafe { &*value.cast::<TimeEvent>() };
    guard("time event save", || {
        raw::save_unsigned(rdb, ev.period_ms);
        raw::save_slice(rdb, ev.owner.as_deref().unwrap_or("").as_bytes());
        raw::save_slice(rdb, &ev.payload);
    });
}

pub(super) extern "C" fn te_rdb_load(rdb: *mut raw::RedisModuleIO, encver: c_int) -> *mut c_void {
    // Only a load (RDB, full sync, DEBUG RELOAD) brings time events: a
    // RESTORE could hand any owner and any code to run.
    if !is_loading() {
        log("warning", "refused a time event outside a load (RESTORE)");
        return ptr::null_mut();
    }
    if encver != 1 {
        log(
            "warning",
            &format!("a time event of version {encver} can not be loaded"),
        );
        return ptr::null_mut();
    }
    let (Ok(period_ms), Ok(owner), Ok(payload)) = (
        raw::load_unsigned(rdb),
        raw::load_string_buffer(rdb),
        raw::load_string_buffer(rdb),
    ) else {
        return ptr::null_mut();
    };
    let owner = String::from_utf8_lossy(owner.as_ref()).into_owned();
    let ev = TimeEvent::new(
        period_ms,
        (!owner.is_empty()).then_some(owner),
        payload.as_ref().to_vec(),
    );
    if let Some(layer) = LAYER.get() {
        let started = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            (layer.callbacks.time_event)(&ev)
        }));
        if started.is_err() {
            log("warning", "starting a loaded time event panicked");
        }
    }
    Box::into_raw(Box::new(ev)).cast()
}

pub(super) extern "C" fn te_aof_rewrite(
    aof: *mut raw::RedisModuleIO,
    key: *mut raw::RedisModuleString,
    value: *mut c_void,
) {
    // SAFETY: a `TimeEvent` of ours; `key` is live for the call; the
    // strings passed are copied by Redis.
    unsafe {
        let ev = &*value.cast::<TimeEvent>();
        let period = ev.period_ms.to_string();
        let owner = ev.owner.as_deref().unwrap_or("");
        raw::RedisModule_EmitAOF.unwrap()(
            aof,
            c"RG.INNERTIMEEVENT".as_ptr(),
            c"sbbb".as_ptr(),
            key,
            period.as_ptr(),
            period.len(),
            owner.as_ptr(),
            owner.len(),
            ev.payload.as_ptr(),
            ev.payload.len(),
        );
    }
}

pub(super) extern "C" fn te_free(value: *mut c_void) {
    // SAFETY: a `TimeEvent` boxed by this module, freed once by Redis.
    let ev = unsafe { Box::from_raw(value.cast::<TimeEvent>()) };
    ev.cancelled.store(true, Ordering::SeqCst);
}

/// Stores `ev` under `key` (database selected); an error if the key
/// exists.
pub fn set_time_event(ctx: LockedCtx, key: &[u8], ev: TimeEvent) -> Result<(), String> {
    let name = LockedString::new(ctx, key);
    // SAFETY: lock held; the key is closed here; on success Redis owns the
    // boxed value (freed by `te_free`).
    unsafe {
        let k = raw::RedisModule_OpenKey.unwrap()(
            ctx.0,
            name.ptr(),
            (raw::REDISMODULE_READ | raw::REDISMODULE_WRITE) as i32,
        );
        drop(name);
        let out = if raw::RedisModule_KeyType.unwrap()(k) != raw::REDISMODULE_KEYTYPE_EMPTY as c_int
        {
            Err("key already exists".to_string())
        } else {
            let value = Box::into_raw(Box::new(ev));
            let set = raw::RedisModule_ModuleTypeSetValue.unwrap()(
                k,
                *TIME_EVENT_TYPE.raw_type.borrow(),
                value.cast(),
            );
            if set == raw::REDISMODULE_OK as c_int {
                Ok(())
            } else {
                drop(Box::from_raw(value));
                Err("could not store the time event".to_string())
            }
        };
        raw::RedisModule_CloseKey.unwrap()(k);
        out
    }
}

/// The encoding version of the aux data (each part carries its own format
/// version too). Version 1 had the registrations only; version 2 has the
/// id counters, the Python requirements and the registrations, in that
/// order (requirements are installed before the registrations that import
/// them are restored).
pub(super) const AUX_VERSION: i32 = 2;

/// The parts of the aux data that are encoded ahead of a save.
#[derive(Clone, Copy)]
pub enum AuxPart {
    Registrations = 0,
    Requirements = 1,
}

/// The aux data as it was loaded.
pub struct Aux<'a> {
    /// The id counters (`None` in version 1 data).
    pub counters: Option<&'a [u8]>,
    pub requirements: &'a [u8],
    pub registrations: &'a [u8],
}

/// The aux parts, encoded again (main thread) whenever what they hold
/// changes: a forked child (BGSAVE, full sync, AOF rewrite) writes them
/// without taking any lock that another thread may have held at the fork.
pub(super) static PREPARED: [std::sync::atomic::AtomicPtr<Vec<u8>>; 2] = [
    std::sync::atomic::AtomicPtr::new(ptr::null_mut()),
    std::sync::atomic::AtomicPtr::new(ptr::null_mut()),
];

/// Keeps `blob` as the aux data `part` to save (Redis lock held).
pub fn prepare_aux(part: AuxPart, blob: Vec<u8>) {
    let new = Box::into_raw(Box::new(blob));
    let old = PREPARED[part as usize].swap(new, Ordering::SeqCst);
    if !old.is_null() {
        // SAFETY: boxed here, swapped out once.
        drop(unsafe { Box::from_raw(old) });
    }
}

pub(super) extern "C" fn aux_save(rdb: *mut raw::RedisModuleIO, when: c_int) {
    if when != raw::REDISMODULE_AUX_BEFORE_RDB as c_int {
        return;
    }
    let Some(layer) = LAYER.get() else { return };
    // Counters are atomics: safe to read in a forked child.
    let counters = std::panic::catch_unwind(layer.callbacks.aux_counters).unwrap_or_default();
    raw::save_slice(rdb, &counters);
    for part in [AuxPart::Requirements, AuxPart::Registrations] {
        let prepared = PREPARED[part as usize].load(Ordering::SeqCst);
        if !prepared.is_null() {
            // SAFETY: replaced only under the Redis lock, which a save holds
            // (a forked child has its own copy).
            raw::save_slice(rdb, unsafe { &*prepared });
            continue;
        }
        let blob = match part {
            AuxPart::Requirements => Vec::new(),
            AuxPart::Registrations => std::panic::catch_unwind(layer.callbacks.aux_save)
                .unwrap_or_else(|_| {
                    log(
                        "warning",
                        "saving the registrations panicked; none are saved",
                    );
                    Vec::new()
                }),
        };
        raw::save_slice(rdb, &blob);
    }
}

pub(super) extern "C" fn aux_load(
    rdb: *mut raw::RedisModuleIO,
    encver: c_int,
    _when: c_int,
) -> c_int {
    let fail = |why: &str| {
        log(
            "warning",
            &format!("could not load the registrations: {why}"),
        );
        raw::REDISMODULE_ERR as c_int
    };
    if encver != 1 && encver != AUX_VERSION {
        return fail(&format!(
            "aux data of version {encver}, this module reads versions 1 and {AUX_VERSION}"
        ));
    }
    let Some(layer) = LAYER.get() else {
        return fail("the module is not initialized");
    };
    let parts = if encver == 1 { 1 } else { 3 };
    let mut bufs = Vec::with_capacity(parts);
    for _ in 0..parts {
        let Ok(buf) = raw::load_string_buffer(rdb) else {
            return fail("the RDB ended early");
        };
        bufs.push(buf.as_ref().to_vec());
    }
    let aux = match bufs.as_slice() {
        [registrations] => Aux {
            counters: None,
            requirements: &[],
            registrations,
        },
        [counters, requirements, registrations] => Aux {
            counters: Some(counters),
            requirements,
            registrations,
        },
        _ => return fail("unexpected aux layout"),
    };
    match std::panic::catch_unwind(|| (layer.callbacks.aux_load)(aux)) {
        Ok(Ok(())) => raw::REDISMODULE_OK as c_int,
        Ok(Err(e)) => fail(&e.to_string()),
        Err(_) => fail("loading them panicked"),
    }
}
