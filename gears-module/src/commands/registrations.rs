//! Registrations on the Redis side: checking and applying what a script
//! registered, sessions, and the commands that manage registrations
//! (RG.DUMPREGISTRATIONS, RG.UNREGISTER, RG.TRIGGER, pause...).

use crate::commands::{arity, can_block, err, guarded, ok, reply_when_done, text, NO_ASYNC_HERE};
use gears_core::execution::Execution;
use gears_core::registration::{Mode, ReaderArgs, Registration, StreamStatus};
use gears_core::Reply;
use gears_python::PendingRegistration;
use redis_module::{Context, RedisResult, RedisString};
use std::cell::RefCell;
use std::sync::Arc;

thread_local! {
    /// The session an RG.PYEXECUTE in progress replaces (UPGRADE or
    /// REPLACE_WITH): its registrations are about to go away.
    static REPLACING: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs `f` (a script body) knowing that `replacing`'s registrations will be
/// removed if it succeeds.
pub fn while_replacing<R>(replacing: Option<String>, f: impl FnOnce() -> R) -> R {
    REPLACING.with(|r| *r.borrow_mut() = replacing);
    let out = f();
    REPLACING.with(|r| *r.borrow_mut() = None);
    out
}

/// Whether `reg` still counts for the checks of a script of `session`.
fn stays(reg: &Registration, session: &str) -> bool {
    reg.session != session && REPLACING.with(|r| r.borrow().as_deref() != Some(&reg.session))
}

/// The checks 1.2 makes when `register()` is called.
pub fn check(args: &ReaderArgs, session: &str) -> Result<(), String> {
    let regs = &crate::engine().registrations;
    match args {
        ReaderArgs::Trigger { name, .. }
            if regs.trigger(name).is_some_and(|r| stays(&r, session)) =>
        {
            return Err("trigger already registered".into());
        }
        ReaderArgs::Hook {
            command, keyprefix, ..
        } => {
            crate::hooks::check_hookable(command, keyprefix.is_some(), "override")?;
            if let Some(newest) = regs.hooks(command).first() {
                if newest.mode != Mode::Sync {
                    return Err(if newest.session == session {
                        "Can not override a none sync registration which already created on this session".into()
                    } else {
                        "Can not override a none sync registration".into()
                    });
                }
            }
        }
        ReaderArgs::Keys {
            commands: Some(commands),
            prefix,
            ..
        } => {
            for c in commands {
                crate::hooks::check_hookable(c, prefix.as_slice() != b"*", "hook")?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Applies the registrations of a script that succeeded, after removing
/// those of the session it replaces.
pub fn apply(
    session: &str,
    desc: Option<String>,
    replaced: Option<&str>,
    pending: Vec<PendingRegistration>,
) {
    let regs = &crate::engine().registrations;
    if let Some(old) = replaced {
        if let Some(s) = regs.session(old) {
            for id in s.registrations {
                unregister(&id, true);
            }
        }
    }
    regs.open_session(session, desc);
    for p in &pending {
        regs.add(p.reg.clone());
    }
    crate::events::refresh();
    for p in &pending {
        if matches!(p.reg.args, ReaderArgs::Stream { .. }) {
            crate::streams::scan_existing(&p.reg);
        }
        p.on_registered();
    }
}

/// Removes a registration; `false` if there is none with that id.
pub fn unregister(id: &str, abort_pending: bool) -> bool {
    let engine = crate::engine();
    let Some(reg) = engine.registrations.remove(id) else {
        return false;
    };
    if abort_pending {
        for e in reg.pending_executions() {
            e.abort();
        }
    }
    crate::streams::forget(&reg);
    crate::events::refresh();
    true
}

/// A fresh session id: 40 hex characters.
pub fn random_session_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut out = String::with_capacity(40);
    while out.len() < 40 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out.truncate(40);
    out
}

fn names(v: &Option<Vec<String>>) -> Reply {
    match v {
        Some(v) => Reply::Array(v.iter().map(|x| Reply::bulk(x.as_bytes())).collect()),
        None => Reply::Null,
    }
}

fn double(f: f64) -> Reply {
    Reply::bulk(format!("{f}"))
}

fn registration_data(r: &Registration) -> Reply {
    let s = r.stats();
    let mut pairs: Vec<(&str, Reply)> = vec![
        ("mode", Reply::bulk(r.mode.name())),
        ("numTriggered", Reply::Int(s.triggered as i64)),
        ("numSuccess", Reply::Int(s.success as i64)),
        ("numFailures", Reply::Int(s.failures as i64)),
        ("numAborted", Reply::Int(s.aborted as i64)),
        ("lastRunDurationMS", Reply::Int(s.last_run_ms as i64)),
        ("totalRunDurationMS", Reply::Int(s.total_run_ms as i64)),
        ("avgRunDurationMS", double(s.avg_run_ms())),
    ];
    if matches!(r.args, ReaderArgs::Stream { .. }) {
        pairs.push(("lastEstimatedLagMS", Reply::Int(s.last_lag_ms as i64)));
        pairs.push(("avgEstimatedLagMS", double(s.avg_lag_ms())));
    }
    pairs.push((
        "lastError",
        s.last_error
            .map(|e| Reply::bulk(e.into_bytes()))
            .unwrap_or(Reply::Null),
    ));
    let args = match &r.args {
        ReaderArgs::Keys {
            prefix,
            event_types,
            key_types,
            commands,
            ..
        } => Reply::map([
            ("regex", Reply::bulk(prefix.clone())),
            ("eventTypes", names(event_types)),
            ("keyTypes", names(key_types)),
            ("hookCommands", names(commands)),
        ]),
        ReaderArgs::Stream {
            prefix,
            batch,
            duration_ms,
            on_failed,
            retry_interval_s,
            trim,
        } => Reply::map([
            ("batchSize", Reply::Int(*batch as i64)),
            ("durationMS", Reply::Int(*duration_ms as i64)),
            ("stream", Reply::bulk(prefix.clone())),
            ("trimStream", Reply::Int(*trim as i64)),
            ("onFailedPolicy", Reply::bulk(on_failed.name())),
            ("retryInterval", Reply::Int(*retry_interval_s as i64)),
        ]),
        ReaderArgs::Trigger { name, inorder } => Reply::map([
            ("trigger", Reply::bulk(name.as_bytes())),
            ("inorder", Reply::Int(*inorder as i64)),
        ]),
        ReaderArgs::Hook {
            command,
            keyprefix,
            inorder,
        } => Reply::map([
            ("hook", Reply::bulk(command.as_bytes())),
            (
                "keyprefix",
                keyprefix.clone().map(Reply::bulk).unwrap_or(Reply::Null),
            ),
            ("inorder", Reply::Int(*inorder as i64)),
        ]),
    };
    pairs.push(("args", args));
    if matches!(r.args, ReaderArgs::Stream { .. }) {
        pairs.push(("status", Reply::bulk(r.stream_status().name())));
    }
    Reply::map(pairs)
}

/// The private data 1.2 shows: the registering session.
fn session_pd(r: &Registration) -> Reply {
    let session = crate::engine().registrations.session(&r.session);
    let (desc, list) = match session {
        Some(s) => (
            s.desc.map(|d| format!("'{d}'")).unwrap_or("None".into()),
            s.registrations,
        ),
        None => ("None".into(), vec![r.id.clone()]),
    };
    let list: Vec<String> = list.iter().map(|id| format!("'{id}'")).collect();
    Reply::bulk(format!(
        "{{'sessionName':'{}', 'sessionDescription':{}, 'refCount': {}, 'linkedTo': 'primary', 'dead': false, 'isInstallationNeeded':0, 'registrationsList':[{}], 'depsList':[]}}",
        r.session,
        desc,
        list.len(),
        list.join(", ")
    ))
}

pub fn dump_registrations(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guarded(ctx, args, |_, args| {
        arity(args, |n| n == 1)?;
        let all = crate::engine().registrations.snapshot();
        Ok(Reply::Array(
            all.iter()
                .map(|r| {
                    Reply::map([
                        ("id", Reply::bulk(r.id.as_bytes())),
                        ("reader", Reply::bulk(r.reader_name())),
                        (
                            "desc",
                            r.desc
                                .as_ref()
                                .map(|d| Reply::bulk(d.as_bytes()))
                                .unwrap_or(Reply::Null),
                        ),
                        ("RegistrationData", registration_data(r)),
                        ("PD", session_pd(r)),
                        ("ExecutionThreadPool", Reply::bulk("DefaultPool")),
                    ])
                })
                .collect(),
        ))
    })
}

pub fn unregister_command(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guarded(ctx, args, |_, args| {
        arity(args, |n| n == 2 || n == 3)?;
        let abort_pending = args
            .get(2)
            .is_some_and(|a| text(a).eq_ignore_ascii_case("abortpending"));
        if unregister(&text(&args[1]), abort_pending) {
            Ok(ok())
        } else {
            Err(err("execution is not registered"))
        }
    })
}

pub fn clear_stats(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guarded(ctx, args, |_, args| {
        arity(args, |n| n == 1)?;
        for r in crate::engine().registrations.snapshot().iter() {
            r.clear_stats();
        }
        Ok(ok())
    })
}

fn pause_or_unpause(args: &[RedisString], pause: bool) -> Result<Reply, Reply> {
    let verb = if pause { "pause" } else { "unpause" };
    if args.len() < 2 {
        return Err(err("ERR no registration to pause"));
    }
    arity(args, |n| n == 2)?;
    let id = text(&args[1]);
    let engine = crate::engine();
    let Some(reg) = engine.registrations.get(&id) else {
        return Err(err(format!(
            "Execution {id} does not exists on shard {}",
            engine.node_id
        )));
    };
    if !matches!(reg.args, ReaderArgs::Stream { .. }) {
        return Err(err(format!(
            "Reader {} does not support {verb}",
            reg.reader_name()
        )));
    }
    if pause {
        reg.set_stream_status(StreamStatus::Paused);
    } else if reg.stream_status() != StreamStatus::Ok {
        reg.set_stream_status(StreamStatus::Ok);
        crate::streams::scan_existing(&reg);
    }
    Ok(ok())
}

pub fn pause(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guarded(ctx, args, |_, args| pause_or_unpause(args, true))
}

pub fn unpause(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guarded(ctx, args, |_, args| pause_or_unpause(args, false))
}

/// A trigger's reply: its results, or its first error.
fn trigger_reply(e: &Execution) -> Reply {
    match e.first_error() {
        Some(err) => Reply::Error(err),
        None => Reply::Array(e.results()),
    }
}

fn trigger_impl(ctx: &Context, args: &[RedisString]) -> Result<Reply, Reply> {
    arity(args, |n| n >= 2)?;
    let name = text(&args[1]);
    let Some(reg) = crate::engine().registrations.trigger(&name) else {
        return Err(err("ERR subcommand not found"));
    };
    let reader = crate::hooks::words_record(args[1..].iter().map(|a| a.as_slice()));
    if reg.mode == Mode::Sync {
        let exec = gears_python::run_inline(&reg, reader, None);
        return Ok(trigger_reply(&exec));
    }
    if !can_block(ctx) {
        return Err(err(NO_ASYNC_HERE));
    }
    let exec: Arc<Execution> = gears_python::run_queued(&reg, reader, None);
    Ok(reply_when_done(ctx, &exec, trigger_reply))
}

pub fn trigger(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guarded(ctx, args, trigger_impl)
}
