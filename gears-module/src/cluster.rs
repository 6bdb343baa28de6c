//! The cluster as this node sees it: `CLUSTER MYID` and `CLUSTER SHARDS`
//! read into gears-cluster's [`Topology`], on RG.REFRESHCLUSTER and by
//! itself every second (a node that joined, a failover, a migrated slot),
//! so users never have to ask.

use crate::errors::Error;
use crate::redis;
use crate::state::Gears;
use gears_cluster::{Shard, Topology};
use gears_core::sync::RwLockExt;
use gears_core::Reply;
use std::time::Duration;

/// How often the topology is read again.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// A field of a `[name, value, name, value...]` reply.
fn field<'a>(pairs: &'a [Reply], name: &str) -> Option<&'a Reply> {
    pairs
        .chunks(2)
        .find(|p| matches!(&p[0], Reply::Bulk(b) if b == name.as_bytes()))
        .and_then(|p| p.get(1))
}

fn text(r: Option<&Reply>) -> Option<String> {
    match r? {
        Reply::Bulk(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Reply::Status(s) => Some(s.clone()),
        _ => None,
    }
}

/// The shards of a `CLUSTER SHARDS` reply: each one's master and slots
/// (shards without slots or without a master are left out).
pub fn shards_of(reply: &Reply) -> Result<Vec<Shard>, Error> {
    let Reply::Array(shards) = reply else {
        return Err(Error::Shard(format!(
            "unexpected CLUSTER SHARDS reply: {reply:?}"
        )));
    };
    let mut out = Vec::new();
    for shard in shards {
        let Reply::Array(pairs) = shard else { continue };
        let slots: Vec<u16> = match field(pairs, "slots") {
            Some(Reply::Array(s)) => s
                .iter()
                .filter_map(|x| match x {
                    Reply::Int(i) => u16::try_from(*i).ok(),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        let ranges: Vec<(u16, u16)> = slots
            .chunks(2)
            .filter(|c| c.len() == 2)
            .map(|c| (c[0], c[1]))
            .collect();
        let Some(Reply::Array(nodes)) = field(pairs, "nodes") else {
            continue;
        };
        let master = nodes.iter().find_map(|n| match n {
            Reply::Array(n) if text(field(n, "role")).as_deref() == Some("master") => Some(n),
            _ => None,
        });
        let Some(master) = master else { continue };
        if ranges.is_empty() {
            continue;
        }
        let port = match field(master, "port") {
            Some(Reply::Int(p)) => u16::try_from(*p).unwrap_or(0),
            _ => 0,
        };
        out.push(Shard {
            id: text(field(master, "id")).unwrap_or_default(),
            host: text(field(master, "ip"))
                .or_else(|| text(field(master, "endpoint")))
                .unwrap_or_default(),
            port,
            ranges,
        });
    }
    out.sort_by_key(|s| s.ranges.iter().map(|r| r.0).min());
    Ok(out)
}

/// Reads the topology (Redis lock held). Off-cluster it stays empty.
pub fn refresh(g: &Gears) -> Result<(), Error> {
    let enabled = redis::with_lock(|ctx| ctx.cluster_enabled());
    let topology = if enabled {
        let id = match redis::call_with(&[b"CLUSTER".to_vec(), b"MYID".to_vec()], c"v") {
            Reply::Bulk(b) => String::from_utf8_lossy(&b).into_owned(),
            Reply::Status(s) => s,
            other => return Err(Error::Shard(format!("CLUSTER MYID: {other:?}"))),
        };
        // Ids given from now on carry this node's id, as 1.2's do.
        g.engine.set_node_id(&id);
        let shards = redis::call_with(&[b"CLUSTER".to_vec(), b"SHARDS".to_vec()], c"v");
        Topology {
            my_id: Some(id),
            shards: shards_of(&shards)?,
        }
    } else {
        Topology::default()
    };
    let mut current = g.topology.write_unpoisoned();
    if *current != topology {
        if enabled {
            redis::log(
                "notice",
                &format!("cluster topology: {} shards", topology.shards.len()),
            );
        }
        let old = std::mem::replace(&mut *current, topology.clone());
        drop(current);
        crate::distributed::welcome(g, &old, &topology);
    }
    Ok(())
}

/// Reads the topology now and then every second, for good (cluster mode
/// only).
pub fn watch(g: &'static Gears) {
    if !redis::with_lock(|ctx| ctx.cluster_enabled()) {
        return;
    }
    fn tick(g: &'static Gears) {
        if let Err(e) = redis::with_lock(|_| refresh(g)) {
            redis::log(
                "warning",
                &format!("could not read the cluster topology: {e}"),
            );
        }
        g.timer.after(WATCH_EVERY, move || tick(g));
    }
    tick(g);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Reply {
        Reply::bulk(s.as_bytes())
    }

    #[test]
    fn shards_come_from_their_masters() {
        let node = |id: &str, port: i64, role: &str| {
            Reply::Array(vec![
                bulk("id"),
                bulk(id),
                bulk("port"),
                Reply::Int(port),
                bulk("ip"),
                bulk("127.0.0.1"),
                bulk("role"),
                bulk(role),
            ])
        };
        let reply = Reply::Array(vec![
            Reply::Array(vec![
                bulk("slots"),
                Reply::Array(vec![Reply::Int(5461), Reply::Int(10922)]),
                bulk("nodes"),
                Reply::Array(vec![node("r", 7003, "replica"), node("b", 7001, "master")]),
            ]),
            Reply::Array(vec![
                bulk("slots"),
                Reply::Array(vec![
                    Reply::Int(0),
                    Reply::Int(5460),
                    Reply::Int(16000),
                    Reply::Int(16383),
                ]),
                bulk("nodes"),
                Reply::Array(vec![node("a", 7000, "master")]),
            ]),
            Reply::Array(vec![
                bulk("slots"),
                Reply::Array(vec![]),
                bulk("nodes"),
                Reply::Array(vec![node("empty", 7009, "master")]),
            ]),
        ]);
        let shards = shards_of(&reply).unwrap();
        assert_eq!(shards.len(), 2);
        assert_eq!(shards[0].id, "a");
        assert_eq!(shards[0].ranges, [(0, 5460), (16000, 16383)]);
        assert_eq!(shards[1].id, "b");
        assert_eq!(shards[1].port, 7001);
        assert!(shards_of(&Reply::Int(1)).is_err());
    }
}
