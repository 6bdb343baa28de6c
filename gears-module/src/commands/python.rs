//! RG.PYSTATS and RG.PYPROFILE: what the Python interpreter holds and
//! where its time goes.

use crate::errors::Error;
use crate::info;
use crate::response::{arity, err, guarded, ok, text};
use gears_core::Reply;
use redis_module::{Context, RedisResult, RedisString};

/// RG.PYSTATS: the memory the Python interpreter holds.
pub fn pystats(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guarded(ctx, args, |_, _, args| {
        arity(args, |n| n == 1)?;
        Ok(info::pystats_reply().into())
    })
}

/// RG.PYPROFILE STATS session [order] | RESET session. The order is
/// accepted and, as in 1.2, the profile is always sorted by `tottime`.
pub fn pyprofile(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guarded(ctx, args, |g, _, args| {
        arity(args, |n| n == 3 || n == 4)?;
        let sub = text(&args[1]).to_ascii_uppercase();
        let session = text(&args[2]);
        if !matches!(sub.as_str(), "STATS" | "RESET") {
            return Err(err(Error::WrongProfileSubcommand));
        }
        if g.engine.registrations.session(&session).is_none() {
            return Err(err(Error::NoSuchSessionToProfile));
        }
        if sub == "RESET" {
            gears_python::profiling::reset(&session).map_err(err)?;
            return Ok(ok().into());
        }
        let stats = gears_python::profiling::stats(&session).map_err(err)?;
        Ok(Reply::bulk(stats.as_bytes()).into())
    })
}
