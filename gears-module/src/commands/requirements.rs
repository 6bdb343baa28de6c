//! RG.PYDUMPREQS, RG.PYEXPORTREQ and RG.PYIMPORTREQ.

use crate::errors::Error;
use crate::redis::{self, Blocked};
use crate::requirements;
use crate::response::{arity, err, guarded, ok, spawn, text, Response};
use gears_core::Reply;
use redis_module::{Context, RedisResult, RedisString};

/// Exported data comes in chunks of at most this many bytes (as 1.2).
const CHUNK: usize = 10 * 1024 * 1024;

/// RG.PYDUMPREQS: every requirement of this server.
pub fn dump_reqs(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guarded(ctx, args, |g, _, args| {
        arity(args, |n| n == 1)?;
        let all = g
            .requirements_if_any()
            .map(|r| r.list())
            .unwrap_or_default();
        let entries = all.iter().map(|r| requirements::metadata(g, r));
        Ok(Reply::Array(entries.collect()).into())
    })
}

/// RG.PYEXPORTREQ name: `[metadata, [chunk...]]`, the requirement with its
/// wheels, for RG.PYIMPORTREQ on another server.
pub fn export_req(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guarded(ctx, args, |g, _, args| {
        arity(args, |n| n == 2)?;
        let name = text(&args[1]);
        let reqs = g
            .requirements_if_any()
            .ok_or_else(|| err(Error::NoSuchRequirement))?;
        let r = reqs
            .get(&name)
            .ok_or_else(|| err(Error::NoSuchRequirement))?;
        let data = reqs
            .export(&name)
            .ok_or_else(|| err(Error::NoSuchRequirement))?
            .map_err(err)?;
        let chunks = data
            .chunks(CHUNK)
            .map(|c| Reply::Bulk(c.to_vec()))
            .collect();
        Ok(Reply::Array(vec![requirements::metadata(g, &r), Reply::Array(chunks)]).into())
    })
}

/// RG.PYIMPORTREQ [UPGRADE] chunk...: installs an exported requirement,
/// offline. A client waits while pip runs on a thread of its own; a
/// replayed one (master, AOF) is installed before the next command.
pub fn import_req(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guarded(ctx, args, |g, ctx, args| {
        arity(args, |n| n >= 2)?;
        let upgrade = text(&args[1]).eq_ignore_ascii_case("UPGRADE");
        let chunks = &args[if upgrade { 2 } else { 1 }..];
        if chunks.is_empty() {
            return Err(err(Error::WrongArity("rg.pyimportreq".into())));
        }
        let data: Vec<u8> = chunks.iter().flat_map(|c| c.as_slice().to_vec()).collect();
        let reqs = g.requirements().map_err(err)?;
        if redis::is_replayed(ctx) {
            redis::replicate_verbatim(ctx);
            // Replicated as it came: replicas of this one get it too.
            reqs.import(&data, true).map_err(err)?;
            requirements::save(reqs);
            return Ok(ok().into());
        }
        if !redis::can_block(ctx) {
            return Err(err(Error::PyexecuteNotHere));
        }
        let blocked = Blocked::new(ctx);
        spawn("gears-pip", move || {
            let reply = match reqs.import(&data, upgrade) {
                Ok(names) => {
                    redis::with_lock(|_| requirements::changed(reqs, &names));
                    ok()
                }
                Err(e) => Reply::Error(e.to_string()),
            };
            blocked.reply(&reply);
        });
        Ok(Response::Later)
    })
}
