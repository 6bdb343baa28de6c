//! RG.CONFIGGET, RG.CONFIGSET, RG.INFOCLUSTER and RG.REFRESHCLUSTER.

use crate::cluster;
use crate::errors::Error;
use crate::redis;
use crate::response::{arity, err, guarded, ok, text};
use gears_config::{ErrorKind, Owner, SetOutcome, Value};
use gears_core::sync::RwLockExt;
use gears_core::Reply;
use redis_module::{Context, RedisResult, RedisString};

fn config_value(v: Value) -> Reply {
    match v {
        Value::Int(i) => Reply::Int(i),
        Value::Text(t) => Reply::bulk(t),
    }
}

pub fn config_get(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guarded(ctx, args, |g, _, args| {
        arity(args, |n| n >= 2)?;
        let cfg = g.config();
        let values = args[1..].iter().map(|k| {
            let k = text(k);
            cfg.get(&k)
                .map(config_value)
                .unwrap_or_else(|| err(Error::UnsupportedConfig(k.to_string())))
        });
        Ok(Reply::Array(values.collect()).into())
    })
}

pub fn config_set(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guarded(ctx, args, |g, _, args| {
        arity(args, |n| n >= 2)?;
        let mut out = Vec::new();
        for pair in args[1..].chunks(2) {
            let key = text(&pair[0]);
            let Some(value) = pair.get(1) else {
                out.push(err(Error::ConfigValueMissing(key.to_string())));
                continue;
            };
            let mut cfg = g.config.write_unpoisoned();
            out.push(match cfg.set(&key, &text(value)) {
                Ok(SetOutcome::Ok) => ok(),
                Ok(SetOutcome::SavedAsExtra) => {
                    Reply::Status("OK - value was saved in extra config dictionary".into())
                }
                // 1.2's Python options word their bad values without the
                // "(error)" the engine's options carry.
                Err(e) if e.1 == ErrorKind::BadValue(Owner::Python) => err(e.0),
                Err(e) => err(Error::Config(e.0.to_string())),
            });
        }
        // Apply what changed: MaxExecutions evicts at once.
        g.apply_limits();
        Ok(Reply::Array(out).into())
    })
}

/// RG.INFOCLUSTER: `no cluster mode`, or this node's id and run id and
/// every shard (id, address, slot range), as 1.2 answers.
pub fn info_cluster(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guarded(ctx, args, |g, _, _| {
        let t = g.topology().clone();
        let Some(my_id) = t.my_id.clone().filter(|_| t.is_cluster()) else {
            return Ok(Reply::Status("no cluster mode".into()).into());
        };
        let shards = t
            .shards
            .iter()
            .map(|s| {
                let min = s.ranges.iter().map(|r| r.0).min().unwrap_or(0);
                let max = s.ranges.iter().map(|r| r.1).max().unwrap_or(0);
                Reply::Array(vec![
                    Reply::bulk("id"),
                    Reply::bulk(s.id.as_bytes()),
                    Reply::bulk("ip"),
                    Reply::bulk(s.host.as_bytes()),
                    Reply::bulk("port"),
                    Reply::Int(s.port as i64),
                    Reply::bulk("unixSocket"),
                    Reply::bulk("None"),
                    Reply::bulk("runid"),
                    match (s.id == my_id, g.net()) {
                        (true, _) => Reply::bulk(redis::run_id().as_bytes()),
                        (false, Some(net)) => net
                            .run_id_of(&s.id)
                            .map_or(Reply::Null, |r| Reply::bulk(r.as_bytes())),
                        (false, None) => Reply::Null,
                    },
                    Reply::bulk("minHslot"),
                    Reply::Int(min as i64),
                    Reply::bulk("maxHslot"),
                    Reply::Int(max as i64),
                    Reply::bulk("pendingMessages"),
                    Reply::Int(0),
                ])
            })
            .collect();
        Ok(Reply::Array(vec![
            Reply::bulk("MyId"),
            Reply::bulk(my_id.as_bytes()),
            Reply::bulk("MyRunId"),
            Reply::bulk(redis::run_id().as_bytes()),
            Reply::Array(shards),
        ])
        .into())
    })
}

/// RG.REFRESHCLUSTER: reads the topology now (it is also read every
/// second).
pub fn refresh_cluster(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guarded(ctx, args, |g, _, args| {
        arity(args, |n| n == 1)?;
        cluster::refresh(g).map_err(err)?;
        Ok(ok().into())
    })
}
