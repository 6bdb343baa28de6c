//! RG.INNERHOOK: where the command filter sends hooked commands.

use crate::errors::Error;
use crate::hooks::{call_linked, fire_hook, first_accepting, hook_reply, INNER_HOOK};
use crate::redis;
use crate::response::{arity, err, guarded, reply_when_all_done, respond_fired, Failure, Response};
use crate::state::{self, Gears};
use gears_core::{Caller, Identity};
use redis_module::{Context, RedisResult, RedisString, RedisValue};
use std::panic::{catch_unwind, AssertUnwindSafe};

fn inner_hook_impl(
    g: &'static Gears,
    ctx: &Context,
    args: &[RedisString],
) -> Result<Response, Failure> {
    // Only the command filter calls RG.INNERHOOK: it adds the token, which
    // clients never see; and a hooked command is never RG.INNERHOOK itself.
    if args.len() < 3 || args[1].as_slice() != g.hook_token.as_bytes() {
        return Err(err(Error::InternalCommand(INNER_HOOK)));
    }
    if args[2]
        .as_slice()
        .eq_ignore_ascii_case(INNER_HOOK.as_bytes())
    {
        return Err(err(Error::InternalCommand(INNER_HOOK)));
    }
    arity(args, |n| n >= 3)?;
    let argv: Vec<Vec<u8>> = args[2..].iter().map(|a| a.as_slice().to_vec()).collect();
    let who = redis::identity_of(ctx);
    // Replication and loading replay the command as it was.
    if redis::is_replayed(ctx) {
        return Ok(redis::call_replayed(ctx, &argv).into());
    }
    // From a Lua script or a Redis function the caller's user can not be
    // known, but Redis has checked it already: the command (RG.INNERHOOK)
    // and, through the key positions below, its keys. The hook then acts as
    // its registration's owner, the real command as the module.
    let from_script = who.user.as_deref() == Some(redis::UNKNOWN_CALLER);
    let name = String::from_utf8_lossy(&argv[0]).to_ascii_lowercase();
    let hooks = g.engine.registrations.hooks(&name);
    let can_block = redis::can_block(ctx);
    if let Some(i) = first_accepting(g, &hooks, &argv) {
        let (newest, rest) = (&hooks[i], hooks[i + 1..].to_vec());
        let who = if from_script {
            Identity::new(newest.owner.clone(), who.db)
        } else {
            who
        };
        let fired = fire_hook(g, newest, &argv, rest, Caller::Client { can_block }, who);
        return respond_fired(ctx, fired, hook_reply);
    }
    let who = if from_script {
        Identity::module(who.db)
    } else {
        who
    };
    let (real, linked) = call_linked(&who, &argv, can_block);
    let held = linked.held();
    Ok(reply_when_all_done(ctx, held, move || {
        linked.final_reply(real)
    }))
}

pub fn inner_hook(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    if redis::is_keys_position_request(ctx) {
        // Never unwinds into Redis: a panic reports no keys.
        let _ = catch_unwind(AssertUnwindSafe(|| hook_keys(ctx, &args)));
        return Ok(RedisValue::NoReply);
    }
    guarded(ctx, args, inner_hook_impl)
}

/// The keys of `RG.INNERHOOK <token> cmd args...`: those of `cmd`, so that
/// Redis checks the caller's key permissions as for the command itself.
fn hook_keys(ctx: &Context, args: &[RedisString]) {
    let Some(g) = state::get() else { return };
    let Some(command) = args.get(2) else { return };
    let name = String::from_utf8_lossy(command.as_slice()).to_ascii_lowercase();
    let tables = g.tables();
    let Some(h) = tables.hooked.get(&name) else {
        return;
    };
    for pos in h.spec.positions(args.len() - 2) {
        redis::key_at(ctx, pos + 2, h.writes);
    }
}
