//! RG.PYEXECUTE: runs a script body, then applies its registrations or
//! starts the execution its `run()` prepared.

use crate::errors;
use crate::redis;
use crate::registry;
use crate::response::{arity, err, guarded, ok, reply_when_done, text, Failure, Response};
use crate::state::Gears;
use gears_core::Reply;
use gears_python::ScriptScope;
use redis_module::{Context, RedisResult, RedisString};

struct PyExecuteArgs {
    unblocking: bool,
    id: Option<String>,
    desc: Option<String>,
    upgrade: bool,
    replace_with: Option<String>,
    requirements: Vec<String>,
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
    };
    let mut i = 2;
    while i < args.len() {
        let tok = text(&args[i]);
        let mut value = |missing: &str| -> Result<String, Failure> {
            i += 1;
            args.get(i).map(text).ok_or_else(|| err(missing))
        };
        match tok.to_ascii_uppercase().as_str() {
            "UNBLOCKING" => out.unblocking = true,
            "ID" => {
                let id = value(errors::ID_MISSING)?;
                if !valid_session_id(&id) {
                    return Err(err(errors::BAD_SESSION_ID));
                }
                out.id = Some(id);
            }
            "DESCRIPTION" => out.desc = Some(value(errors::DESCRIPTION_MISSING)?),
            "REPLACE_WITH" => out.replace_with = Some(value(errors::REPLACE_WITH_MISSING)?),
            "UPGRADE" => out.upgrade = true,
            "FORCE_REINSTALL_REQUIREMENTS" => {}
            "REQUIREMENTS" => {
                out.requirements = args[i + 1..].iter().map(text).collect();
                break;
            }
            _ => return Err(err(errors::unknown_argument(&tok))),
        }
        i += 1;
    }
    Ok(out)
}

fn pyexecute_impl(
    g: &'static Gears,
    ctx: &Context,
    args: &[RedisString],
) -> Result<Response, Failure> {
    if !redis::can_block(ctx) {
        return Err(err(errors::PYEXECUTE_NOT_HERE));
    }
    arity(args, |n| n >= 2)?;
    let opts = parse_pyexecute(args)?;
    if !opts.requirements.is_empty() {
        return Err(err(errors::REQUIREMENTS_UNSUPPORTED));
    }
    let script = args[1]
        .try_as_str()
        .map_err(|_| err(errors::SCRIPT_NOT_UTF8))?;
    let regs = &g.engine.registrations;
    let session = opts.id.clone().unwrap_or_else(|| g.random_session_id());
    let exists = regs.session(&session).is_some();
    if exists && !opts.upgrade {
        return Err(err(errors::session_exists(&session)));
    }
    let mut replaced = (exists && opts.upgrade).then(|| session.clone());
    if let Some(old) = &opts.replace_with {
        if regs.session(old).is_none() {
            return Err(err(errors::no_session_to_replace(old)));
        }
        if exists && old != &session {
            return Err(err(errors::cannot_replace_existing(&session, old)));
        }
        replaced = Some(old.clone());
    }
    let identity = redis::identity_of(ctx);
    let db = identity.db;
    let scope = ScriptScope {
        session: session.clone(),
        replacing: replaced.clone(),
        identity,
    };
    let outcome = gears_python::exec_script(script, scope).map_err(err)?;
    let registered = !outcome.registrations.is_empty();
    if registered {
        registry::apply(
            g,
            db,
            &session,
            opts.desc.clone(),
            replaced.as_deref(),
            outcome.registrations,
        );
    }
    let Some(run) = outcome.run else {
        return Ok(ok().into());
    };
    let exec = run.execution.clone();
    gears_python::submit(run).map_err(err)?;
    if registered {
        return Ok(ok().into());
    }
    if opts.unblocking {
        return Ok(Reply::bulk(exec.id.as_bytes()).into());
    }
    // A blocking run is dropped once done, before its client sees the reply.
    Ok(reply_when_done(ctx, &exec, move |e| {
        g.engine.executions.forget(&e.id);
        e.results_reply()
    }))
}

pub fn pyexecute(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guarded(ctx, args, pyexecute_impl)
}
