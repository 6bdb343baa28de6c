//! The `RG.*` commands.
//!
//! Every handler runs behind [`guarded`], which turns a panic into an error
//! reply instead of taking the server down. Error texts follow RedisGears 1.2.

use crate::redis::{self, Blocked};
use gears_core::execution::{AbortOutcome, DropError, Execution};
use gears_core::Reply;
use redis_module::raw;
use redis_module::{Context, RedisResult, RedisString, RedisValue};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

pub(crate) type Handler = fn(&Context, &[RedisString]) -> Result<Reply, Reply>;

/// What a handler returns when it blocked the client and the reply comes
/// later. A status with a NUL byte: no command can produce it.
const LATER: &str = "\0later";

pub(crate) fn later() -> Reply {
    Reply::Status(LATER.into())
}

/// Runs a handler, catching panics, and writes its reply.
pub(crate) fn guarded(ctx: &Context, args: Vec<RedisString>, f: Handler) -> RedisResult {
    let r = match catch_unwind(AssertUnwindSafe(|| f(ctx, &args))) {
        Ok(Ok(r)) | Ok(Err(r)) => r,
        Err(_) => Reply::Error("ERR internal error in the gears module (see the Redis log)".into()),
    };
    if !matches!(&r, Reply::Status(s) if s == LATER) {
        redis::reply(ctx.ctx, &r);
    }
    Ok(RedisValue::NoReply)
}

pub(crate) fn err(msg: impl Into<String>) -> Reply {
    Reply::Error(msg.into())
}

pub(crate) fn ok() -> Reply {
    Reply::Status("OK".into())
}

pub(crate) fn arity(args: &[RedisString], ok: impl Fn(usize) -> bool) -> Result<(), Reply> {
    if ok(args.len()) {
        Ok(())
    } else {
        let name = args
            .first()
            .map(text)
            .unwrap_or_default()
            .to_ascii_lowercase();
        Err(err(format!(
            "ERR wrong number of arguments for '{name}' command"
        )))
    }
}

pub(crate) fn text(s: &RedisString) -> String {
    s.to_string_lossy()
}

/// Blocks the client until `exec` finishes, then replies `make(exec)`.
/// Replies at once when it has already finished.
pub(crate) fn reply_when_done(
    ctx: &Context,
    exec: &Arc<Execution>,
    make: impl FnOnce(&Execution) -> Reply + Send + 'static,
) -> Reply {
    let blocked = Blocked::new(ctx.ctx);
    exec.on_finish(Box::new(move |e| blocked.reply(&make(e))));
    later()
}

/// 1.2's answer when a non-sync execution would block a client that
/// cannot be blocked.
pub(crate) const NO_ASYNC_HERE: &str = "ERR can not run a non-sync execution inside a MULTI/LUA (blocking is not allowed) or on loading.";

/// Whether the client may be blocked (not inside MULTI, Lua, or a context
/// that denies blocking).
pub(crate) fn can_block(ctx: &Context) -> bool {
    let forbidden = raw::REDISMODULE_CTX_FLAGS_MULTI
        | raw::REDISMODULE_CTX_FLAGS_LUA
        | raw::REDISMODULE_CTX_FLAGS_DENY_BLOCKING;
    redis::context_flags(ctx.ctx) & forbidden == 0
}

fn find(id: &str, missing: &str) -> Result<Arc<Execution>, Reply> {
    crate::engine()
        .executions
        .get(id)
        .ok_or_else(|| err(missing))
}

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

fn parse_pyexecute(args: &[RedisString]) -> Result<PyExecuteArgs, Reply> {
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
        let mut value = |missing: &str| -> Result<String, Reply> {
            i += 1;
            args.get(i).map(text).ok_or_else(|| err(missing))
        };
        match tok.to_ascii_uppercase().as_str() {
            "UNBLOCKING" => out.unblocking = true,
            "ID" => {
                let id = value("ID is missing")?;
                if !valid_session_id(&id) {
                    return Err(err(
                        "ID must be compose of: ['A'-'Z' | 'a'-'z' | '0' - '9' | '-' | '_']",
                    ));
                }
                out.id = Some(id);
            }
            "DESCRIPTION" => out.desc = Some(value("DESCRIPTION is missing")?),
            "REPLACE_WITH" => out.replace_with = Some(value("REPLACE_WITH is missing")?),
            "UPGRADE" => out.upgrade = true,
            "FORCE_REINSTALL_REQUIREMENTS" => {}
            "REQUIREMENTS" => {
                out.requirements = args[i + 1..].iter().map(text).collect();
                break;
            }
            _ => return Err(err(format!("Unknown arguments were given: {tok}"))),
        }
        i += 1;
    }
    Ok(out)
}

fn pyexecute_impl(ctx: &Context, args: &[RedisString]) -> Result<Reply, Reply> {
    if !can_block(ctx) {
        return Err(err(
            "Can not run gears inside a multi exec, lua, or when blocking is not allowed",
        ));
    }
    arity(args, |n| n >= 2)?;
    let opts = parse_pyexecute(args)?;
    if !opts.requirements.is_empty() {
        return Err(err(
            "REQUIREMENTS are not supported yet by this version of the module",
        ));
    }
    let script = args[1]
        .try_as_str()
        .map_err(|_| err("the script is not valid UTF-8"))?;
    let regs = &crate::engine().registrations;
    let session = opts
        .id
        .clone()
        .unwrap_or_else(crate::registrations::random_session_id);
    let exists = regs.session(&session).is_some();
    if exists && !opts.upgrade {
        return Err(err(format!("Session {session} already exists")));
    }
    let mut replaced = (exists && opts.upgrade).then(|| session.clone());
    if let Some(old) = &opts.replace_with {
        if regs.session(old).is_none() {
            return Err(err(format!(
                "Can not replace with {old}, session does not exists."
            )));
        }
        if exists && old != &session {
            return Err(err(format!(
                "Can not replace an existing session {session} with {old}"
            )));
        }
        replaced = Some(old.clone());
    }
    let outcome = crate::registrations::while_replacing(replaced.clone(), || {
        gears_python::exec_script(script, &session)
    })
    .map_err(err)?;
    let registered = !outcome.registrations.is_empty();
    if registered {
        crate::registrations::apply(
            &session,
            opts.desc.clone(),
            replaced.as_deref(),
            outcome.registrations,
        );
    }
    let Some(run) = outcome.run else {
        return Ok(ok());
    };
    let exec = run.execution.clone();
    gears_python::submit(run);
    if registered {
        return Ok(ok());
    }
    if opts.unblocking {
        return Ok(Reply::bulk(exec.id.as_bytes()));
    }
    // A blocking run is dropped once done, before its client sees the reply.
    Ok(reply_when_done(ctx, &exec, |e| {
        crate::engine().executions.forget(&e.id);
        e.results_reply()
    }))
}

pub fn pyexecute(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guarded(ctx, args, pyexecute_impl)
}

pub fn dump_executions(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guarded(ctx, args, |_, args| {
        arity(args, |n| n == 1)?;
        let list = crate::engine()
            .executions
            .list()
            .iter()
            .map(|e| {
                Reply::map([
                    ("executionId", Reply::bulk(e.id.as_bytes())),
                    ("status", Reply::bulk(e.status().name())),
                    ("registered", Reply::Int(e.registered as i64)),
                ])
            })
            .collect();
        Ok(Reply::Array(list))
    })
}

pub fn get_execution(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guarded(ctx, args, |_, args| {
        arity(args, |n| n == 2 || n == 3)?;
        if let Some(mode) = args.get(2) {
            match text(mode).to_ascii_uppercase().as_str() {
                "SHARD" => {}
                "CLUSTER" if !crate::topology().is_cluster() => {
                    return Err(err(
                        "no cluster detected - use `RG.GETEXECUTION <id> [SHARD]` instead",
                    ))
                }
                "CLUSTER" => {}
                _ => return Err(err("unknown subcommand")),
            }
        }
        let e = find(&text(&args[1]), "execution plan does not exist")?;
        let snap = e.snapshot();
        let steps = e
            .steps
            .iter()
            .rev()
            .map(|s| {
                Reply::map([
                    ("type", Reply::bulk(s.kind)),
                    ("duration", Reply::Int(0)),
                    ("name", Reply::bulk(s.name.as_bytes())),
                    ("arg", Reply::bulk(s.arg.as_bytes())),
                ])
            })
            .collect();
        let plan = Reply::map([
            ("status", Reply::bulk(snap.status.name())),
            ("shards_received", Reply::Int(0)),
            ("shards_completed", Reply::Int(0)),
            (
                "results",
                Reply::Int(if snap.status.finished() {
                    snap.results as i64
                } else {
                    -1
                }),
            ),
            (
                "errors",
                Reply::Array(
                    snap.errors
                        .iter()
                        .map(|x| Reply::bulk(x.as_bytes()))
                        .collect(),
                ),
            ),
            ("total_duration", Reply::Int(snap.total_ms as i64)),
            ("read_duration", Reply::Int(snap.read_ms as i64)),
            ("steps", Reply::Array(steps)),
        ]);
        let node = crate::engine().node_id.clone();
        Ok(Reply::Array(vec![Reply::map([
            ("shard_id", Reply::bulk(node.as_bytes())),
            ("execution_plan", plan),
        ])]))
    })
}

pub fn get_results(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guarded(ctx, args, |_, args| {
        arity(args, |n| n == 2)?;
        let e = find(&text(&args[1]), "execution plan does not exist")?;
        if !e.status().finished() {
            return Err(err("execution is still running"));
        }
        Ok(e.results_reply())
    })
}

pub fn get_results_blocking(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guarded(ctx, args, |ctx, args| {
        arity(args, |n| n == 2)?;
        let e = find(&text(&args[1]), "execution plan does not exist")?;
        if e.status().finished() {
            return Ok(e.results_reply());
        }
        if !can_block(ctx) {
            return Err(err("execution is still running"));
        }
        Ok(reply_when_done(ctx, &e, |e| e.results_reply()))
    })
}

pub fn drop_execution(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guarded(ctx, args, |_, args| {
        arity(args, |n| n == 2)?;
        match crate::engine().executions.drop_execution(&text(&args[1])) {
            Ok(()) => Ok(ok()),
            Err(DropError::NotFound) => Err(err("execution plan does not exist")),
            Err(DropError::Running) => Err(err(
                "can not drop a not yet finished execution, abort it first.",
            )),
        }
    })
}

pub fn abort_execution(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guarded(ctx, args, |ctx, args| {
        arity(args, |n| n == 2)?;
        let e = find(&text(&args[1]), "execution does not exist")?;
        match e.abort() {
            AbortOutcome::AlreadyFinished | AbortOutcome::AbortedBeforeStart => Ok(ok()),
            AbortOutcome::Stopping => {
                if !can_block(ctx) {
                    return Ok(ok());
                }
                Ok(reply_when_done(ctx, &e, |_| ok()))
            }
        }
    })
}

fn config_value(v: gears_config::Value) -> Reply {
    match v {
        gears_config::Value::Int(i) => Reply::Int(i),
        gears_config::Value::Text(t) => Reply::bulk(t),
    }
}

pub fn config_get(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guarded(ctx, args, |_, args| {
        arity(args, |n| n >= 2)?;
        let cfg = crate::config();
        Ok(Reply::Array(
            args[1..]
                .iter()
                .map(|k| {
                    let k = text(k);
                    cfg.get(&k).map(config_value).unwrap_or_else(|| {
                        err(format!("(error) Unsupported config parameter: {k}"))
                    })
                })
                .collect(),
        ))
    })
}

pub fn config_set(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guarded(ctx, args, |_, args| {
        arity(args, |n| n >= 2)?;
        let lock = crate::CONFIG.get().expect("configured at load");
        let mut out = Vec::new();
        for pair in args[1..].chunks(2) {
            let key = text(&pair[0]);
            let Some(value) = pair.get(1) else {
                out.push(err(format!("(error) Value was not given to {key}")));
                continue;
            };
            let mut cfg = lock.write().unwrap_or_else(|e| e.into_inner());
            out.push(match cfg.set(&key, &text(value)) {
                Ok(gears_config::SetOutcome::Ok) => ok(),
                Ok(gears_config::SetOutcome::SavedAsExtra) => {
                    Reply::Status("OK - value was saved in extra config dictionary".into())
                }
                Err(e) if e.0.starts_with("Failed setting config value for key") => err(e.0),
                Err(e) => err(format!("(error) {}", e.0)),
            });
        }
        // Apply what changed: MaxExecutions evicts at once.
        crate::apply_limits();
        Ok(Reply::Array(out))
    })
}

pub fn info_cluster(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guarded(ctx, args, |_, _| {
        Ok(Reply::Status("no cluster mode".into()))
    })
}
