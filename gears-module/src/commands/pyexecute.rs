//! RG.PYEXECUTE: runs a script body, then applies its registrations or
//! starts the execution its `run()` prepared.

use crate::cluster;
use crate::distributed;
use crate::errors::Error;
use crate::redis::{self, Blocked};
use crate::registry;
use crate::requirements;
use crate::response::{arity, err, guarded, ok, reply_when_done, spawn, text, Failure, Response};
use crate::state::Gears;
use gears_core::execution::Execution;
use gears_core::persist::encode_registration;
use gears_core::registration::Session;
use gears_core::{Identity, Reply};
use gears_python::ScriptScope;
use redis_module::{Context, RedisResult, RedisString};
use std::sync::Arc;

struct PyExecuteArgs {
    unblocking: bool,
    id: Option<String>,
    desc: Option<String>,
    upgrade: bool,
    replace_with: Option<String>,
    requirements: Vec<String>,
    force_reinstall: bool,
}

fn valid_session_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

fn parse_pyexecute(args: &[RedisString]) -> Result<PyExecuteArgs, Failure> {
    let mut out = PyExecuteArgs {
        unblocking: false,
        id: None,
        desc: None,
        upgrade: false,
        replace_with: None,
        requirements: Vec::new(),
        force_reinstall: false,
    };
    let mut i = 2;
    while i < args.len() {
        let tok = text(&args[i]);
        let mut value = |missing: Error| -> Result<String, Failure> {
            i += 1;
            args.get(i).map(text).ok_or_else(|| err(missing))
        };
        match tok.to_ascii_uppercase().as_str() {
            "UNBLOCKING" => out.unblocking = true,
            "ID" => {
                let id = value(Error::IdMissing)?;
                if !valid_session_id(&id) {
                    return Err(err(Error::BadSessionId));
                }
                out.id = Some(id);
            }
            "DESCRIPTION" => out.desc = Some(value(Error::DescriptionMissing)?),
            "REPLACE_WITH" => out.replace_with = Some(value(Error::ReplaceWithMissing)?),
            "UPGRADE" => out.upgrade = true,
            "FORCE_REINSTALL_REQUIREMENTS" => out.force_reinstall = true,
            "REQUIREMENTS" => {
                out.requirements = args[i + 1..].iter().map(text).collect();
                break;
            }
            _ => return Err(err(Error::UnknownArgument(tok.to_string()))),
        }
        i += 1;
    }
    Ok(out)
}

/// What a script leads to once it ran.
enum Done {
    /// This reply, now.
    Reply(Reply),
    /// A blocking `run()`: its results once it ends.
    Wait(Arc<Execution>),
    /// Registrations for every shard: the reply once they all answered
    /// (`OK`, or the errors of those that could not, in 1.2's per-shard
    /// shape). Waits: call it off the main thread.
    Shards(distributed::Answer),
}

/// The session the script registers in, and the one it replaces; fails as
/// 1.2 does for taken or missing sessions.
fn session_of(g: &Gears, opts: &PyExecuteArgs) -> Result<(String, Option<String>), Failure> {
    let regs = &g.engine.registrations;
    let session = opts.id.clone().unwrap_or_else(|| g.random_session_id());
    let exists = regs.session(&session).is_some();
    if exists && !opts.upgrade {
        return Err(err(Error::SessionExists(session.to_string())));
    }
    let mut replaced = (exists && opts.upgrade).then(|| session.clone());
    if let Some(old) = &opts.replace_with {
        if regs.session(old).is_none() {
            return Err(err(Error::NoSessionToReplace(old.to_string())));
        }
        if exists && old != &session {
            return Err(err(Error::CannotReplaceExisting {
                session: session.to_string(),
                old: old.to_string(),
            }));
        }
        replaced = Some(old.clone());
    }
    Ok((session, replaced))
}

/// Runs the script body (Redis lock held), applies its registrations and
/// starts the execution its `run()` prepared.
fn run_script(
    g: &'static Gears,
    opts: &PyExecuteArgs,
    script: &str,
    identity: Identity,
) -> Result<Done, Failure> {
    let (session, replaced) = session_of(g, opts)?;
    let db = identity.db;
    let scope = ScriptScope {
        session: session.clone(),
        replacing: replaced.clone(),
        identity,
    };
    let outcome = gears_python::exec_script(script, scope).map_err(err)?;
    let registered = !outcome.registrations.is_empty();
    if registered {
        // Their saved form, for the other shards of a cluster.
        let session_now = Session {
            id: session.clone(),
            desc: opts.desc.clone(),
            registrations: outcome
                .registrations
                .iter()
                .map(|p| p.reg.id.clone())
                .collect(),
            requirements: opts.requirements.clone(),
        };
        let saved = outcome
            .registrations
            .iter()
            .map(|p| encode_registration(&p.reg, Some(&session_now)))
            .collect();
        let (desc, requirements) = (opts.desc.clone(), opts.requirements.clone());
        let (this_session, this_replaced) = (session.clone(), replaced.clone());
        let pending = outcome.registrations;
        let apply_here: distributed::Work = Box::new(move || {
            redis::with_lock(|_| {
                registry::apply(
                    g,
                    db,
                    &this_session,
                    desc,
                    requirements,
                    this_replaced.as_deref(),
                    pending,
                );
            })
        });
        // In a cluster every shard applies them, or none does.
        match distributed::register_everywhere(
            g,
            opts.requirements.clone(),
            replaced.clone(),
            saved,
            apply_here,
        ) {
            Ok(answers) => {
                if let Some(run) = outcome.run {
                    gears_python::submit(run).map_err(err)?;
                }
                return Ok(Done::Shards(answers));
            }
            Err(apply_here) => apply_here(),
        }
    }
    let Some(run) = outcome.run else {
        return Ok(Done::Reply(ok()));
    };
    let exec = run.execution.clone();
    if run.shipped().is_some() {
        distributed::start(g, run).map_err(err)?;
    } else {
        gears_python::submit(run).map_err(err)?;
    }
    if registered {
        return Ok(Done::Reply(ok()));
    }
    if opts.unblocking {
        return Ok(Done::Reply(Reply::bulk(exec.id.as_bytes())));
    }
    Ok(Done::Wait(exec))
}

/// The reply of a blocking run, which is dropped once done, before its
/// client sees the reply.
fn blocking_reply(g: &Gears, e: &Execution) -> Reply {
    g.engine.executions.forget(&e.id);
    e.results_reply()
}

fn pyexecute_impl(
    g: &'static Gears,
    ctx: &Context,
    args: &[RedisString],
) -> Result<Response, Failure> {
    if !redis::can_block(ctx) {
        return Err(err(Error::PyexecuteNotHere));
    }
    arity(args, |n| n >= 2)?;
    let opts = parse_pyexecute(args)?;
    let script = args[1]
        .try_as_str()
        .map_err(|_| err(Error::ScriptNotUtf8))?
        .to_owned();
    session_of(g, &opts)?;
    if g.net().is_some() {
        // A run or registration spans the shards the cluster has now, not
        // the ones of the last periodic read.
        cluster::refresh(g).map_err(err)?;
    }
    let identity = redis::identity_of(ctx);
    let missing = if opts.requirements.is_empty() {
        Vec::new()
    } else {
        let reqs = g.requirements().map_err(|e| {
            redis::log("warning", &format!("REQUIREMENTS: {e}"));
            err(Error::RequirementsFailed)
        })?;
        reqs.to_install(&opts.requirements, opts.force_reinstall)
    };
    if missing.is_empty() {
        return Ok(match run_script(g, &opts, &script, identity)? {
            Done::Reply(r) => r.into(),
            Done::Wait(exec) => reply_when_done(ctx, &exec, move |e| blocking_reply(g, e)),
            Done::Shards(answers) => {
                // The other shards answer through messages: wait off the
                // main thread.
                let blocked = Blocked::new(ctx);
                spawn("gears-shards", move || blocked.reply(&answers()));
                Response::Later
            }
        });
    }
    // pip runs on a thread of its own; the client waits, the server does
    // not. The script runs once the requirements are there.
    let blocked = Blocked::new(ctx);
    spawn("gears-pip", move || {
        let done = requirements::install(g, &missing, Error::RequirementsFailed)
            .map_err(|e| Reply::Error(e.to_string()))
            .and_then(|()| redis::with_lock(|_| run_script(g, &opts, &script, identity)));
        match done {
            Ok(Done::Reply(r)) | Err(r) => blocked.reply(&r),
            Ok(Done::Wait(exec)) => {
                exec.on_finish(Box::new(move |e| blocked.reply(&blocking_reply(g, e))))
            }
            Ok(Done::Shards(answers)) => blocked.reply(&answers()),
        }
    });
    Ok(Response::Later)
}

pub fn pyexecute(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guarded(ctx, args, pyexecute_impl)
}
