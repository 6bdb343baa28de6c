//! Calling Redis commands: as the module ([`call`]), as a user
//! ([`call_as`], ACL-checked), replayed from a master or the AOF, and
//! replication of what the module writes. Call replies become [`Reply`]
//! trees here.

use super::*;

/// Propagates `cmd args...` to the AOF and the replicas, as part of the
/// command being served (main thread).
pub fn replicate(cmd: &CStr, args: &[&[u8]]) {
    let ctx = if on_main_thread() {
        let serving = SERVING.with(|s| s.get());
        if serving.is_null() {
            main_ctx()
        } else {
            serving
        }
    } else {
        thread_ctx()
    };
    // SAFETY: main thread, lock held; the strings are freed after the call,
    // which copies them.
    unsafe {
        let strings: Vec<*mut raw::RedisModuleString> = args
            .iter()
            .map(|a| {
                raw::RedisModule_CreateString.unwrap()(ctx, a.as_ptr().cast::<c_char>(), a.len())
            })
            .collect();
        raw::RedisModule_Replicate.unwrap()(
            ctx,
            cmd.as_ptr(),
            c"v".as_ptr(),
            strings.as_ptr(),
            strings.len(),
        );
        for s in strings {
            raw::RedisModule_FreeString.unwrap()(ctx, s);
        }
    }
}

/// A call reply converted to a [`Reply`]; frees the raw reply.
///
/// # Safety
/// `r` must be a reply returned by `RedisModule_Call` (or an element of
/// one when `owned` is false), used with the Redis lock held.
pub(super) unsafe fn convert_call_reply(
    r: *mut raw::RedisModuleCallReply,
    owned: bool,
    depth: usize,
) -> Reply {
    if r.is_null() {
        return Reply::Null;
    }
    if depth > MAX_REPLY_DEPTH {
        if owned {
            raw::RedisModule_FreeCallReply.unwrap()(r);
        }
        return Reply::Error(too_deep());
    }
    let string = |r| {
        let mut len = 0usize;
        let p = raw::RedisModule_CallReplyStringPtr.unwrap()(r, &mut len);
        if p.is_null() {
            Vec::new()
        } else {
            std::slice::from_raw_parts(p.cast::<u8>(), len).to_vec()
        }
    };
    let out = match raw::RedisModule_CallReplyType.unwrap()(r) as isize {
        raw::REDISMODULE_REPLY_STRING => Reply::Bulk(string(r)),
        raw::REDISMODULE_REPLY_ERROR => {
            Reply::Error(String::from_utf8_lossy(&string(r)).into_owned())
        }
        raw::REDISMODULE_REPLY_INTEGER => Reply::Int(raw::RedisModule_CallReplyInteger.unwrap()(r)),
        raw::REDISMODULE_REPLY_ARRAY => {
            let n = raw::RedisModule_CallReplyLength.unwrap()(r);
            Reply::Array(
                (0..n)
                    .map(|i| {
                        convert_call_reply(
                            raw::RedisModule_CallReplyArrayElement.unwrap()(r, i),
                            false,
                            depth + 1,
                        )
                    })
                    .collect(),
            )
        }
        raw::REDISMODULE_REPLY_NULL => Reply::Null,
        _ => Reply::Bulk(string(r)),
    };
    if owned {
        raw::RedisModule_FreeCallReply.unwrap()(r);
    }
    out
}

/// Runs a command through `RedisModule_Call`, replicating its effects.
/// Takes the Redis lock if this thread does not hold it.
pub fn call(argv: &[Vec<u8>]) -> Reply {
    call_with(argv, c"!vE")
}

/// Like [`call`] with explicit `RedisModule_Call` flags.
pub fn call_with(argv: &[Vec<u8>], flags: &CStr) -> Reply {
    if argv.is_empty() {
        return Reply::Error("ERR empty command".into());
    }
    let Ok(cmd) = CString::new(argv[0].clone()) else {
        return Reply::Error("ERR the command name contains a NUL byte".into());
    };
    with_lock(|ctx| call_locked(ctx, &cmd, &argv[1..], flags))
}

/// Runs a command as `who`: in its database, with its user's permissions
/// (a command or key it may not use gets a `NOPERM` error), refused over
/// `maxmemory` when it would grow the data, and refused to write on a
/// read-only replica. Replicated when it writes.
pub fn call_as(who: &Identity, argv: &[Vec<u8>]) -> Reply {
    if argv.is_empty() {
        return Reply::Error("ERR empty command".into());
    }
    let Ok(cmd) = CString::new(argv[0].clone()) else {
        return Reply::Error("ERR the command name contains a NUL byte".into());
    };
    with_lock(|ctx| {
        let mut words = Words::new(ctx, argv);
        if let Some(user) = &who.user {
            if let Err(e) = permitted(ctx, user, &mut words) {
                return e;
            }
        }
        ctx.select_db(who.db);
        let flags = if ctx.read_only_replica() {
            c"!vEMW"
        } else {
            c"!vEM"
        };
        with_local(&CALLING_AS, Some(who.clone()), || {
            call_words(ctx, &cmd, &words.strings[1..], flags)
        })
    })
}

/// Runs a command replayed from the master or the AOF, as it was: in
/// database `db`, unchecked and not propagated again (a replica proxies its
/// master's stream to its own replicas).
pub fn call_replayed(ctx: &Context, argv: &[Vec<u8>]) -> Reply {
    let Some((cmd, args)) = argv.split_first() else {
        return Reply::Error("ERR empty command".into());
    };
    let Ok(cmd) = CString::new(cmd.clone()) else {
        return Reply::Error("ERR the command name contains a NUL byte".into());
    };
    // On the replayed command's own context (the master's client, or the
    // AOF's): its database, its slots, and `!` reaches this server's own
    // AOF (replicas of a replica get the master's stream as it is).
    let locked = LockedCtx(ctx.ctx, std::marker::PhantomData);
    call_locked(locked, &cmd, args, c"!vE")
}

/// Propagates a replayed module command as it came (to this server's AOF).
pub fn replicate_verbatim(ctx: &Context) {
    // SAFETY: a live command context on the main thread.
    unsafe { raw::RedisModule_ReplicateVerbatim.unwrap()(ctx.ctx) };
}

/// A command's words as Redis strings, freed on drop.
pub(super) struct Words {
    pub(super) ctx: *mut raw::RedisModuleCtx,
    pub(super) strings: Vec<*mut raw::RedisModuleString>,
}

impl Words {
    pub(super) fn new(ctx: LockedCtx, argv: &[Vec<u8>]) -> Words {
        let strings = argv
            .iter()
            .map(|a| {
                // SAFETY: lock held (a `LockedCtx` exists); freed by `Drop`.
                unsafe {
                    raw::RedisModule_CreateString.unwrap()(
                        ctx.0,
                        a.as_ptr().cast::<c_char>(),
                        a.len(),
                    )
                }
            })
            .collect();
        Words {
            ctx: ctx.0,
            strings,
        }
    }

    pub(super) fn first(&self) -> &[u8] {
        match self.strings.first() {
            // SAFETY: a live string of ours.
            Some(s) => unsafe { string_bytes(*s) },
            None => &[],
        }
    }
}

impl Drop for Words {
    fn drop(&mut self) {
        for s in self.strings.drain(..) {
            // SAFETY: created in `Words::new` with this context, freed once,
            // still under the lock of the `LockedCtx` that made them.
            unsafe { raw::RedisModule_FreeString.unwrap()(self.ctx, s) };
        }
    }
}

/// Like [`call`] but with the lock already held and explicit flags.
pub fn call_locked(ctx: LockedCtx, cmd: &CStr, args: &[Vec<u8>], flags: &CStr) -> Reply {
    let words = Words::new(ctx, args);
    call_words(ctx, cmd, &words.strings, flags)
}

/// `RedisModule_Call` of `cmd` with `args` (live strings), converted.
pub(super) fn call_words(
    ctx: LockedCtx,
    cmd: &CStr,
    args: &[*mut raw::RedisModuleString],
    flags: &CStr,
) -> Reply {
    // SAFETY: the caller holds the Redis lock (a `LockedCtx` exists) and
    // `args` are live strings; `RedisModule_Call` only reads the array (the
    // pointer is cast to mutable for the C signature); the reply is freed by
    // the conversion.
    unsafe {
        let r = raw::RedisModule_Call.unwrap()(
            ctx.0,
            cmd.as_ptr(),
            flags.as_ptr(),
            args.as_ptr().cast_mut(),
            args.len(),
        );
        if r.is_null() {
            Reply::Error(format!(
                "ERR command failed ({})",
                std::io::Error::last_os_error()
            ))
        } else {
            convert_call_reply(r, true, 0)
        }
    }
}

pub(super) fn clean(s: &str) -> CString {
    // Error and status replies are single lines without NUL.
    let s: String = s
        .chars()
        .map(|c| {
            if c == '\r' || c == '\n' || c == '\0' {
                ' '
            } else {
                c
            }
        })
        .collect();
    CString::new(s).expect("NULs were replaced")
}

/// The bulk strings of an array reply.
pub fn bulk_list(r: Reply) -> Vec<Vec<u8>> {
    match r {
        Reply::Array(items) => items
            .into_iter()
            .filter_map(|i| match i {
                Reply::Bulk(b) => Some(b),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}
