//! The shard-to-shard commands: RG.HELLO, RG.INNERMSGCOMMAND, and
//! RG.NETWORKTEST (a message to every other shard).

use crate::distributed;
use crate::errors::Error;
use crate::net;
use crate::peers;
use crate::redis;
use crate::response::{arity, err, guarded, ok, text};
use gears_core::Reply;
use redis_module::{Context, RedisResult, RedisString};

/// RG.HELLO: this process's run id, which a peer compares with the last
/// one it saw to tell a restart.
pub fn hello(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guarded(ctx, args, |g, _, args| {
        arity(args, |n| n == 1)?;
        if g.net().is_none() {
            return Err(err(Error::ClusterOnly("RG.HELLO")));
        }
        Ok(Reply::bulk(redis::run_id().as_bytes()).into())
    })
}

/// RG.INNERMSGCOMMAND sender sender-run-id receiver payload msg-id: a
/// message from another shard. Only the cluster's own user (`masteruser`)
/// may send one when it is configured; an id already seen from that sender
/// and run is acknowledged and ignored.
pub fn inner_msg(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guarded(ctx, args, |g, ctx, args| {
        arity(args, |n| n == 6)?;
        if g.net().is_none() {
            return Err(err(Error::ClusterOnly("RG.INNERMSGCOMMAND")));
        }
        if let Some(user) = net::cluster_user() {
            if redis::identity_of(ctx).user.as_deref() != Some(user.as_str()) {
                return Err(err(Error::InternalCommand("RG.INNERMSGCOMMAND")));
            }
        }
        let (sender, run) = (text(&args[1]), text(&args[2]));
        let receiver = text(&args[3]);
        let Ok(id) = text(&args[5]).parse::<u64>() else {
            return Err(err(Error::BadMsgId));
        };
        let Some(handler) = peers::handler(&receiver) else {
            return Err(err(Error::NoSuchReceiver));
        };
        {
            let mut seen = g.received_messages();
            let last = seen.entry((sender.clone(), run)).or_insert(0);
            if id <= *last {
                return Ok(Reply::Status("duplicate message ignored".into()).into());
            }
            *last = id;
        }
        handler(g, &sender, args[4].as_slice());
        Ok(ok().into())
    })
}

/// RG.NETWORKTEST: a test message to every other shard (each logs it);
/// nothing to do off-cluster.
pub fn network_test(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guarded(ctx, args, |g, _, args| {
        arity(args, |n| n == 1)?;
        distributed::to_others(g, peers::NETWORK_TEST, b"");
        Ok(ok().into())
    })
}
