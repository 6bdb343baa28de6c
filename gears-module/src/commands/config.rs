//! RG.CONFIGGET, RG.CONFIGSET and RG.INFOCLUSTER.

use crate::errors;
use crate::response::{arity, err, guarded, ok, text};
use gears_config::{ErrorKind, Owner, SetOutcome, Value};
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
                .unwrap_or_else(|| err(errors::unsupported_config(&k)))
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
                out.push(err(errors::config_value_missing(&key)));
                continue;
            };
            let mut cfg = g.config.write().unwrap_or_else(|e| e.into_inner());
            out.push(match cfg.set(&key, &text(value)) {
                Ok(SetOutcome::Ok) => ok(),
                Ok(SetOutcome::SavedAsExtra) => {
                    Reply::Status("OK - value was saved in extra config dictionary".into())
                }
                // 1.2's Python options word their bad values without the
                // "(error)" the engine's options carry.
                Err(e) if e.1 == ErrorKind::BadValue(Owner::Python) => err(e.0),
                Err(e) => err(errors::config_error(&e.0)),
            });
        }
        // Apply what changed: MaxExecutions evicts at once.
        g.apply_limits();
        Ok(Reply::Array(out).into())
    })
}

pub fn info_cluster(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guarded(ctx, args, |_, _, _| {
        Ok(Reply::Status("no cluster mode".into()).into())
    })
}
