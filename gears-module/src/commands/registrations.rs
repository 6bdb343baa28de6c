//! The commands that manage registrations: RG.DUMPREGISTRATIONS,
//! RG.UNREGISTER, RG.PAUSEREGISTRATIONS, RG.UNPAUSEREGISTRATIONS,
//! RG.CLEARREGISTRATIONSSTATS, and RG.TRIGGER / RG.TRIGGERONKEY.

use crate::distributed;
use crate::errors::Error;
use crate::hooks::words_record;
use crate::redis;
use crate::registry;
use crate::requirements;
use crate::response::{
    arity, err, fired_reply, guarded, ok, respond_fired, text, Failure, Response,
};
use crate::state::Gears;
use crate::streams;
use crate::timeevents;
use gears_core::execution::Execution;
use gears_core::persist::decode_registration;
use gears_core::registration::{ReaderArgs, Registration};
use gears_core::{Caller, Identity, Reply};
use redis_module::{Context, RedisResult, RedisString};

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
fn session_pd(g: &Gears, r: &Registration) -> Reply {
    let session = g.engine.registrations.session(&r.session);
    let (desc, list, reqs) = match session {
        Some(s) => (
            s.desc.map(|d| format!("'{d}'")).unwrap_or("None".into()),
            s.registrations,
            s.requirements,
        ),
        None => ("None".into(), vec![r.id.clone()], Vec::new()),
    };
    let list: Vec<String> = list.iter().map(|id| format!("'{id}'")).collect();
    // gears-cli reads each dependency's 'name'.
    let deps: Vec<String> = reqs
        .iter()
        .map(|name| {
            let known = g.requirements_if_any().and_then(|all| all.get(name));
            let (path, wheels) = known
                .map(|k| {
                    let wheels: Vec<String> = k.wheels.iter().map(|w| format!("'{w}'")).collect();
                    (k.dir.to_string_lossy().into_owned(), wheels.join(", "))
                })
                .unwrap_or_default();
            format!("{{'name':'{name}', 'basePath':'{path}', 'wheels':[{wheels}]}}")
        })
        .collect();
    Reply::bulk(format!(
        "{{'sessionName':'{}', 'sessionDescription':{}, 'refCount': {}, 'linkedTo': 'primary', 'dead': false, 'isInstallationNeeded':0, 'registrationsList':[{}], 'depsList':[{}]}}",
        r.session,
        desc,
        list.len(),
        list.join(", "),
        deps.join(", ")
    ))
}

/// A registration as RG.DUMPREGISTRATIONS shows it (with the session's
/// `PD`) or RG.PYDUMPSESSIONS VERBOSE (without).
fn registration_entry(g: &Gears, r: &Registration, with_pd: bool) -> Reply {
    let desc = r
        .desc
        .as_ref()
        .map(|d| Reply::bulk(d.as_bytes()))
        .unwrap_or(Reply::Null);
    let mut pairs = vec![
        ("id", Reply::bulk(r.id.as_bytes())),
        ("reader", Reply::bulk(r.reader_name())),
        ("desc", desc),
        ("RegistrationData", registration_data(r)),
    ];
    if with_pd {
        pairs.push(("PD", session_pd(g, r)));
    }
    pairs.push(("ExecutionThreadPool", Reply::bulk("DefaultPool")));
    Reply::map(pairs)
}

pub fn dump_registrations(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guarded(ctx, args, |g, _, args| {
        arity(args, |n| n == 1)?;
        let all = g.engine.registrations.snapshot();
        let entries = all.iter().map(|r| registration_entry(g, r, true));
        Ok(Reply::Array(entries.collect()).into())
    })
}

/// RG.PYDUMPSESSIONS [VERBOSE] [DEAD|TS] [SESSIONS s1 s2 ...]: the sessions
/// and their registrations (ids, or whole entries with VERBOSE). Sessions
/// are freed with their last registration, so none is ever dead.
pub fn dump_sessions(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guarded(ctx, args, |g, _, args| {
        let mut verbose = false;
        let mut wanted: Option<Vec<String>> = None;
        let mut i = 1;
        while i < args.len() {
            let tok = text(&args[i]);
            match tok.to_ascii_uppercase().as_str() {
                "VERBOSE" => verbose = true,
                "DEAD" | "TS" => {}
                "SESSIONS" => {
                    wanted = Some(args[i + 1..].iter().map(text).collect());
                    break;
                }
                _ => return Err(err(Error::UnknownOption(tok.to_string()))),
            }
            i += 1;
        }
        let regs = &g.engine.registrations;
        let session_entry = |s: &gears_core::registration::Session| {
            let registrations = s.registrations.iter().map(|id| match regs.get(id) {
                Some(r) if verbose => registration_entry(g, &r, false),
                _ => Reply::bulk(id.as_bytes()),
            });
            Reply::map([
                ("ID", Reply::bulk(s.id.as_bytes())),
                (
                    "sessionDescription",
                    s.desc
                        .as_ref()
                        .map(|d| Reply::bulk(d.as_bytes()))
                        .unwrap_or(Reply::Null),
                ),
                ("refCount", Reply::Int(s.registrations.len() as i64)),
                ("linked", Reply::bulk("primary")),
                ("dead", Reply::bulk("false")),
                ("requirementInstallationNeeded", Reply::Int(0)),
                (
                    "requirements",
                    Reply::Array(
                        s.requirements
                            .iter()
                            .map(|name| {
                                let known = g.requirements_if_any().and_then(|all| all.get(name));
                                match known {
                                    Some(r) if verbose => requirements::metadata(g, &r),
                                    _ => Reply::bulk(name.as_bytes()),
                                }
                            })
                            .collect(),
                    ),
                ),
                ("registrations", Reply::Array(registrations.collect())),
            ])
        };
        let entries: Vec<Reply> = match wanted {
            None => regs.sessions().iter().map(session_entry).collect(),
            Some(ids) => ids
                .iter()
                .map(|id| match regs.session(id) {
                    Some(s) => session_entry(&s),
                    None => Reply::bulk(Error::NoSuchSession(id.to_string()).to_string()),
                })
                .collect(),
        };
        Ok(Reply::Array(entries).into())
    })
}

pub fn unregister_command(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guarded(ctx, args, |g, _, args| {
        arity(args, |n| n == 2 || n == 3)?;
        let abort_pending = args
            .get(2)
            .is_some_and(|a| text(a).eq_ignore_ascii_case("abortpending"));
        let id = text(&args[1]);
        if registry::unregister(g, &id, abort_pending, true) {
            distributed::share_unregister(g, &id, abort_pending);
            Ok(ok().into())
        } else {
            Err(err(Error::NotRegistered))
        }
    })
}

pub fn clear_stats(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guarded(ctx, args, |g, _, args| {
        arity(args, |n| n == 1)?;
        for r in g.engine.registrations.snapshot().iter() {
            r.clear_stats();
        }
        Ok(ok().into())
    })
}

fn pause_or_unpause(
    g: &'static Gears,
    ctx: &Context,
    args: &[RedisString],
    pause: bool,
) -> Result<Response, Failure> {
    let verb = if pause { "pause" } else { "unpause" };
    if args.len() < 2 {
        return Err(err(Error::NothingToPause));
    }
    arity(args, |n| n == 2)?;
    let id = text(&args[1]);
    let Some(reg) = g.engine.registrations.get(&id) else {
        return Err(err(Error::NoRegistrationOnShard {
            id: id.to_string(),
            shard: g.engine.node_id().to_owned(),
        }));
    };
    if !matches!(reg.args, ReaderArgs::Stream { .. }) {
        return Err(err(Error::ReaderCannot {
            reader: reg.reader_name().to_string(),
            verb,
        }));
    }
    let db = redis::identity_of(ctx).db;
    streams::set_paused(g, &reg, pause);
    distributed::share_pause(g, &id, pause, db);
    Ok(ok().into())
}

pub fn pause(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guarded(ctx, args, |g, ctx, args| {
        pause_or_unpause(g, ctx, args, true)
    })
}

pub fn unpause(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guarded(ctx, args, |g, ctx, args| {
        pause_or_unpause(g, ctx, args, false)
    })
}

/// RG.INNERREGISTER <saved registration>: how the AOF and the replicas get
/// a registration. Only replayed (from the master or the AOF), never from a
/// client.
pub fn inner_register(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guarded(ctx, args, |g, ctx, args| {
        if !redis::is_replayed(ctx) {
            return Err(err(Error::InternalCommand("RG.INNERREGISTER")));
        }
        redis::replicate_verbatim(ctx);
        arity(args, |n| n == 2)?;
        let blob = args[1].as_slice();
        if registry::holds(g, blob) {
            // Sent again at an AOF rewrite: already here, as it was.
            return Ok(ok().into());
        }
        let saved = decode_registration(blob).map_err(err)?;
        registry::restore(g, saved, true).map_err(err)?;
        Ok(ok().into())
    })
}

/// RG.INNERUNREGISTER <id> [abortpending]: the replayed form of
/// RG.UNREGISTER.
pub fn inner_unregister(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guarded(ctx, args, |g, ctx, args| {
        if !redis::is_replayed(ctx) {
            return Err(err(Error::InternalCommand("RG.INNERUNREGISTER")));
        }
        redis::replicate_verbatim(ctx);
        arity(args, |n| n == 2 || n == 3)?;
        registry::unregister(g, &text(&args[1]), args.len() == 3, false);
        Ok(ok().into())
    })
}

/// RG.INNERTIMEEVENT <key> <period ms> <owner> <callback>: the replayed
/// form of `registerTimeEvent`.
pub fn inner_time_event(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guarded(ctx, args, |g, ctx, args| {
        if !redis::is_replayed(ctx) {
            return Err(err(Error::InternalCommand("RG.INNERTIMEEVENT")));
        }
        redis::replicate_verbatim(ctx);
        arity(args, |n| n == 5)?;
        let period: u64 = text(&args[2]).parse().map_err(|_| err("bad period"))?;
        let owner = text(&args[3]);
        let who = Identity::new(
            (!owner.is_empty()).then_some(owner),
            redis::identity_of(ctx).db,
        );
        timeevents::create(
            g,
            &who,
            args[1].as_slice(),
            period,
            args[4].as_slice().to_vec(),
            false,
        )
        .map_err(err)?;
        Ok(ok().into())
    })
}

fn trigger_reply(e: &Execution) -> Reply {
    fired_reply(e, false)
}

fn trigger_impl(
    g: &'static Gears,
    ctx: &Context,
    args: &[RedisString],
) -> Result<Response, Failure> {
    arity(args, |n| n >= 2)?;
    let name = text(&args[1]);
    let Some(reg) = g.engine.registrations.trigger(&name) else {
        return Err(err(Error::NoSuchTrigger));
    };
    let reader = words_record(args[1..].iter().map(|a| a.as_slice()));
    let caller = Caller::Client {
        can_block: redis::can_block(ctx),
    };
    let fired = g
        .engine
        .fire(&reg, caller, redis::identity_of(ctx), reader, None);
    respond_fired(ctx, fired, trigger_reply)
}

pub fn trigger(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guarded(ctx, args, trigger_impl)
}
