//! Execution management: RG.DUMPEXECUTIONS, RG.GETEXECUTION,
//! RG.GETRESULTS, RG.GETRESULTSBLOCKING, RG.DROPEXECUTION,
//! RG.ABORTEXECUTION.

use crate::distributed;
use crate::errors::Error;
use crate::plans;
use crate::redis;
use crate::redis::Blocked;
use crate::response::{arity, err, guarded, ok, reply_when_done, spawn, text, Failure, Response};
use crate::state::Gears;
use gears_core::execution::{AbortOutcome, DropError, Execution};
use gears_core::Reply;
use redis_module::{Context, RedisResult, RedisString};
use std::sync::Arc;

fn find(g: &Gears, id: &str, missing: Error) -> Result<Arc<Execution>, Failure> {
    g.engine.executions.get(id).ok_or_else(|| err(missing))
}

pub fn dump_executions(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guarded(ctx, args, |g, _, args| {
        arity(args, |n| n == 1)?;
        let list = g
            .engine
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
        Ok(Reply::Array(list).into())
    })
}

fn get_execution_impl(
    g: &'static Gears,
    ctx: &Context,
    args: &[RedisString],
) -> Result<Response, Failure> {
    arity(args, |n| n == 2 || n == 3)?;
    if let Some(mode) = args.get(2) {
        match text(mode).to_ascii_uppercase().as_str() {
            "SHARD" => {}
            "CLUSTER" if !g.topology().is_cluster() => return Err(err(Error::NoCluster)),
            "CLUSTER" => {}
            _ => return Err(err(Error::UnknownSubcommand)),
        }
    }
    let id = text(&args[1]);
    let cluster = args
        .get(2)
        .is_some_and(|m| text(m).eq_ignore_ascii_case("CLUSTER"));
    if !cluster {
        let e = find(g, &id, Error::NoSuchPlan)?;
        return Ok(Reply::Array(vec![plans::execution_entry(g, &e)]).into());
    }
    // Every shard's part: this one's now, the others' through messages.
    let local = g
        .engine
        .executions
        .get(&id)
        .map(|e| plans::execution_entry(g, &e));
    let Some(asked) = distributed::ask_execution(g, &id) else {
        let e = local.ok_or_else(|| err(Error::NoSuchPlan))?;
        return Ok(Reply::Array(vec![e]).into());
    };
    let blocked = Blocked::new(ctx);
    spawn("gears-getexecution", move || {
        let mut entries: Vec<Reply> = local.into_iter().collect();
        entries.extend(asked());
        let reply = if entries.is_empty() {
            err(Error::NoSuchPlan)
        } else {
            Reply::Array(entries)
        };
        blocked.reply(&reply);
    });
    Ok(Response::Later)
}

pub fn get_execution(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guarded(ctx, args, get_execution_impl)
}

pub fn get_results(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guarded(ctx, args, |g, _, args| {
        arity(args, |n| n == 2)?;
        let e = find(g, &text(&args[1]), Error::NoSuchPlan)?;
        if !e.status().finished() {
            return Err(err(Error::StillRunning));
        }
        Ok(e.results_reply().into())
    })
}

pub fn get_results_blocking(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guarded(ctx, args, |g, ctx, args| {
        arity(args, |n| n == 2)?;
        let e = find(g, &text(&args[1]), Error::NoSuchPlan)?;
        if e.status().finished() {
            return Ok(e.results_reply().into());
        }
        if !redis::can_block(ctx) {
            return Err(err(Error::StillRunning));
        }
        Ok(reply_when_done(ctx, &e, |e| e.results_reply()))
    })
}

pub fn drop_execution(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guarded(ctx, args, |g, _, args| {
        arity(args, |n| n == 2)?;
        let id = text(&args[1]);
        match g.engine.executions.drop_execution(&id) {
            Ok(()) => {
                distributed::share_drop(g, &id);
                Ok(ok().into())
            }
            Err(DropError::NotFound) => Err(err(Error::NoSuchPlan)),
            Err(DropError::Running) => Err(err(Error::DropRunning)),
        }
    })
}

/// RG.PYKILL: stops the Python code (a script body, a `sync` function)
/// that keeps the main thread busy, as SCRIPT KILL stops Lua. Allowed while
/// the server is busy.
pub fn pykill(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guarded(ctx, args, |g, _, args| {
        arity(args, |n| n == 1)?;
        if !redis::yielding() {
            return Err(err(Error::NotBusy));
        }
        g.kill_requested
            .store(true, std::sync::atomic::Ordering::SeqCst);
        Ok(ok().into())
    })
}

pub fn abort_execution(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guarded(ctx, args, |g, ctx, args| {
        arity(args, |n| n == 2)?;
        let e = find(g, &text(&args[1]), Error::NoSuchExecution)?;
        distributed::share_abort(g, &e.id);
        match e.abort() {
            AbortOutcome::AlreadyFinished | AbortOutcome::AbortedBeforeStart => Ok(ok().into()),
            AbortOutcome::Stopping if !redis::can_block(ctx) => Ok(ok().into()),
            AbortOutcome::Stopping => Ok(reply_when_done(ctx, &e, |_| ok())),
        }
    })
}
