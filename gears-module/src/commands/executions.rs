//! Execution management: RG.DUMPEXECUTIONS, RG.GETEXECUTION,
//! RG.GETRESULTS, RG.GETRESULTSBLOCKING, RG.DROPEXECUTION,
//! RG.ABORTEXECUTION.

use crate::distributed;
use crate::errors;
use crate::redis;
use crate::response::{arity, err, guarded, ok, reply_when_done, text, Failure, Response};
use crate::state::Gears;
use gears_core::execution::{AbortOutcome, DropError, Execution};
use gears_core::Reply;
use redis_module::{Context, RedisResult, RedisString};
use std::sync::Arc;

fn find(g: &Gears, id: &str, missing: &str) -> Result<Arc<Execution>, Failure> {
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
    _: &Context,
    args: &[RedisString],
) -> Result<Response, Failure> {
    arity(args, |n| n == 2 || n == 3)?;
    if let Some(mode) = args.get(2) {
        match text(mode).to_ascii_uppercase().as_str() {
            "SHARD" => {}
            "CLUSTER" if !g.topology().is_cluster() => return Err(err(errors::NO_CLUSTER)),
            "CLUSTER" => {}
            _ => return Err(err(errors::UNKNOWN_SUBCOMMAND)),
        }
    }
    let e = find(g, &text(&args[1]), errors::NO_SUCH_PLAN)?;
    let snap = e.snapshot();
    let step_ms = e.step_ms();
    let steps = e
        .steps
        .iter()
        .zip(step_ms)
        .rev()
        .map(|(s, ms)| {
            Reply::map([
                ("type", Reply::bulk(s.kind)),
                ("duration", Reply::Int(ms as i64)),
                ("name", Reply::bulk(s.name.as_bytes())),
                ("arg", Reply::bulk(s.arg.as_bytes())),
            ])
        })
        .collect();
    let results = if snap.status.finished() {
        snap.results as i64
    } else {
        -1
    };
    let errors = snap.errors.iter().map(|x| Reply::bulk(x.as_bytes()));
    let plan = Reply::map([
        ("status", Reply::bulk(snap.status.name())),
        ("shards_received", Reply::Int(0)),
        ("shards_completed", Reply::Int(0)),
        ("results", Reply::Int(results)),
        ("errors", Reply::Array(errors.collect())),
        ("total_duration", Reply::Int(snap.total_ms as i64)),
        ("read_duration", Reply::Int(snap.read_ms as i64)),
        ("steps", Reply::Array(steps)),
    ]);
    Ok(Reply::Array(vec![Reply::map([
        ("shard_id", Reply::bulk(g.engine.node_id.as_bytes())),
        ("execution_plan", plan),
    ])])
    .into())
}

pub fn get_execution(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guarded(ctx, args, get_execution_impl)
}

pub fn get_results(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guarded(ctx, args, |g, _, args| {
        arity(args, |n| n == 2)?;
        let e = find(g, &text(&args[1]), errors::NO_SUCH_PLAN)?;
        if !e.status().finished() {
            return Err(err(errors::STILL_RUNNING));
        }
        Ok(e.results_reply().into())
    })
}

pub fn get_results_blocking(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guarded(ctx, args, |g, ctx, args| {
        arity(args, |n| n == 2)?;
        let e = find(g, &text(&args[1]), errors::NO_SUCH_PLAN)?;
        if e.status().finished() {
            return Ok(e.results_reply().into());
        }
        if !redis::can_block(ctx) {
            return Err(err(errors::STILL_RUNNING));
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
            Err(DropError::NotFound) => Err(err(errors::NO_SUCH_PLAN)),
            Err(DropError::Running) => Err(err(errors::DROP_RUNNING)),
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
            return Err(err(errors::NOT_BUSY));
        }
        g.kill_requested
            .store(true, std::sync::atomic::Ordering::SeqCst);
        Ok(ok().into())
    })
}

pub fn abort_execution(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guarded(ctx, args, |g, ctx, args| {
        arity(args, |n| n == 2)?;
        let e = find(g, &text(&args[1]), errors::NO_SUCH_EXECUTION)?;
        distributed::share_abort(g, &e.id);
        match e.abort() {
            AbortOutcome::AlreadyFinished | AbortOutcome::AbortedBeforeStart => Ok(ok().into()),
            AbortOutcome::Stopping if !redis::can_block(ctx) => Ok(ok().into()),
            AbortOutcome::Stopping => Ok(reply_when_done(ctx, &e, |_| ok())),
        }
    })
}
