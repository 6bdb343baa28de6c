//! The transport of messages between shards, over ordinary Redis
//! connections as 1.2 sent them. One networking thread (never the main
//! thread) keeps a connection per peer (redis-rs), authenticated with the
//! cluster's own credentials (`masteruser`/`masterauth`), greets it with
//! `RG.HELLO` (which answers the peer's run id) and sends
//! `RG.INNERMSGCOMMAND <my id> <my run id> <receiver> <payload> <msg id>`.
//!
//! Every message to a peer gets the next id. The peer acknowledges with a
//! status reply and ignores ids it has already seen from this sender and
//! run; a message not acknowledged stays pending and is sent again on the
//! next connection, up to `SendMsgRetries` times (0: forever). A peer that
//! restarted (a new run id) gets none of the messages pending when that is
//! noticed: they were meant for its previous life.

use crate::errors::Error;
use crate::redis as rd;
use crossbeam_channel::{Receiver, Sender};
use gears_core::sync::LockExt;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the transport needs to know of the cluster.
pub trait Directory: Send + Sync + 'static {
    /// This node's id, once the topology is known.
    fn my_id(&self) -> Option<String>;
    /// The address of shard `id`.
    fn address(&self, id: &str) -> Option<(String, u16)>;
    /// `SendMsgRetries` (0: forever).
    fn retries(&self) -> u64;
    /// The ids of every shard of the topology (this one included).
    fn shards(&self) -> Vec<String>;
}

/// How long a connection attempt, and a reply, may take.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// How long after a failure a peer is tried again.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

struct Message {
    id: u64,
    receiver: String,
    payload: Vec<u8>,
    /// Connections it was sent on without an acknowledgement.
    tries: u64,
}

#[derive(Default)]
struct Peer {
    conn: Option<redis::Connection>,
    next_id: u64,
    pending: VecDeque<Message>,
    retry_at: Option<Instant>,
}

struct Outgoing {
    to: String,
    receiver: String,
    payload: Vec<u8>,
}

/// The run id each shard's last RG.HELLO answered, by shard id: the one
/// record of it, read by RG.INFOCLUSTER and by the networking thread (a
/// changed run id is a restarted shard).
type Greeted = Arc<Mutex<HashMap<String, String>>>;

/// The sending side: queues messages for the networking thread, and knows
/// the run id of every shard it greeted.
pub struct Net {
    tx: Sender<Outgoing>,
    greeted: Greeted,
}

impl Net {
    /// Starts the networking thread.
    pub fn start(g: &'static dyn Directory) -> std::io::Result<Net> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let greeted = Greeted::default();
        let known = greeted.clone();
        std::thread::Builder::new()
            .name("gears-net".into())
            .spawn(move || {
                // A panic loses the connections, not the thread: it starts
                // over (peers are greeted again, unacknowledged messages
                // were kept by nobody: logged).
                while std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run(g, &rx, &known)
                }))
                .is_err()
                {
                    crate::redis::log(
                        "warning",
                        "the networking thread panicked; messages in flight are lost, it starts over",
                    );
                    std::thread::sleep(Duration::from_secs(1));
                }
            })?;
        Ok(Net { tx, greeted })
    }

    /// The run id shard `id` gave when this node last greeted it (1.2's
    /// `runid` in RG.INFOCLUSTER: tools wait for every shard's before
    /// sending work).
    pub fn run_id_of(&self, id: &str) -> Option<String> {
        self.greeted.lock_unpoisoned().get(id).cloned()
    }

    /// Sends `payload` to `receiver` on the shard `to` (a node id).
    pub fn send(&self, to: &str, receiver: &str, payload: Vec<u8>) {
        let _ = self.tx.send(Outgoing {
            to: to.to_owned(),
            receiver: receiver.to_owned(),
            payload,
        });
    }
}

/// Who this node is to its peers.
struct Me {
    id: String,
    run_id: String,
}

fn run(g: &'static dyn Directory, rx: &Receiver<Outgoing>, greeted: &Greeted) {
    let mut peers: HashMap<String, Peer> = HashMap::new();
    let mut me: Option<Me> = None;
    loop {
        let first = match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(m) => Some(m),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => None,
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
        };
        for m in first.into_iter().chain(rx.try_iter()) {
            let peer = peers.entry(m.to).or_default();
            peer.next_id += 1;
            peer.pending.push_back(Message {
                id: peer.next_id,
                receiver: m.receiver,
                payload: m.payload,
                tries: 0,
            });
        }
        if me.is_none() {
            let Some(id) = g.my_id() else {
                // The topology is not read yet: try again next time.
                continue;
            };
            me = Some(Me {
                id,
                run_id: rd::with_lock(|_| rd::run_id()),
            });
        }
        let Some(me) = me.as_ref() else { continue };
        // Every shard is greeted once it is in the topology, messages or
        // not, so that its run id is known (and a connection ready).
        for id in g.shards() {
            if id != me.id {
                let peer = peers.entry(id.clone()).or_default();
                if peer.conn.is_none() {
                    connect_peer(g, &id, peer, greeted);
                }
            }
        }
        let retries = g.retries();
        for (id, peer) in peers.iter_mut() {
            if !peer.pending.is_empty() {
                flush(g, me, id, peer, retries, greeted);
            }
        }
    }
}

/// The credentials shards use with each other: `masteruser`/`masterauth`.
fn credentials() -> (Option<String>, Option<String>) {
    let get = |name: &str| rd::config_get(name).filter(|v| !v.is_empty());
    rd::with_lock(|_| (get("masteruser"), get("masterauth")))
}

/// The internal user shards authenticate as, if one is configured.
pub fn cluster_user() -> Option<String> {
    credentials().0
}

fn connect(g: &dyn Directory, id: &str) -> Result<(redis::Connection, String), Error> {
    let (host, port) = g
        .address(id)
        .ok_or_else(|| Error::Shard(format!("no shard {id} in the topology")))?;
    let client = redis::Client::open(format!("redis://{host}:{port}/"))
        .map_err(|e| Error::Shard(e.to_string()))?;
    let mut conn = client
        .get_connection_with_timeout(IO_TIMEOUT)
        .map_err(|e| Error::Shard(e.to_string()))?;
    conn.set_read_timeout(Some(IO_TIMEOUT))
        .and_then(|_| conn.set_write_timeout(Some(IO_TIMEOUT)))
        .map_err(|e| Error::Shard(e.to_string()))?;
    match credentials() {
        (Some(user), Some(pass)) => redis::cmd("AUTH").arg(user).arg(pass).exec(&mut conn),
        (None, Some(pass)) => redis::cmd("AUTH").arg(pass).exec(&mut conn),
        _ => Ok(()),
    }
    .map_err(|e| Error::Shard(format!("AUTH: {e}")))?;
    let run_id: String = redis::cmd("RG.HELLO")
        .query(&mut conn)
        .map_err(|e| Error::Shard(format!("RG.HELLO: {e}")))?;
    Ok((conn, run_id))
}

/// Connects to `peer` (shard `id`) unless a recent attempt failed, and
/// greets it: its run id is recorded. False when it is not connected.
fn connect_peer(g: &dyn Directory, id: &str, peer: &mut Peer, greeted: &Greeted) -> bool {
    if peer.conn.is_some() {
        return true;
    }
    if peer.retry_at.is_some_and(|t| Instant::now() < t) {
        return false;
    }
    match connect(g, id) {
        Ok((conn, run_id)) => {
            let old = greeted
                .lock_unpoisoned()
                .insert(id.to_owned(), run_id.clone());
            if old.is_some_and(|old| old != run_id) {
                // A new life: what was meant for the old one (the runs it
                // took part in, long given up by now) is stale, as in
                // 1.2.
                if !peer.pending.is_empty() {
                    rd::log(
                        "notice",
                        &format!(
                            "shard {id} restarted: {} messages to it dropped",
                            peer.pending.len()
                        ),
                    );
                }
                peer.pending.clear();
            }
            peer.conn = Some(conn);
            peer.retry_at = None;
            true
        }
        Err(e) => {
            rd::log("verbose", &format!("could not reach shard {id}: {e}"));
            peer.retry_at = Some(Instant::now() + RECONNECT_AFTER);
            false
        }
    }
}

/// Sends what `peer` has pending, in order, connecting first if needed.
fn flush(g: &dyn Directory, me: &Me, id: &str, peer: &mut Peer, retries: u64, greeted: &Greeted) {
    if !connect_peer(g, id, peer, greeted) {
        return;
    }
    let Some(conn) = peer.conn.as_mut() else {
        return;
    };
    while let Some(m) = peer.pending.front_mut() {
        if retries > 0 && m.tries >= retries {
            rd::log(
                "warning",
                &format!(
                    "message {} to shard {id} ({}) dropped after {} tries",
                    m.id, m.receiver, m.tries
                ),
            );
            peer.pending.pop_front();
            continue;
        }
        m.tries += 1;
        let reply: redis::RedisResult<redis::Value> = redis::cmd("RG.INNERMSGCOMMAND")
            .arg(&me.id)
            .arg(&me.run_id)
            .arg(&m.receiver)
            .arg(&m.payload)
            .arg(m.id)
            .query(conn);
        match reply {
            Ok(redis::Value::SimpleString(_)) | Ok(redis::Value::Okay) => {
                peer.pending.pop_front();
            }
            other => {
                rd::log(
                    "verbose",
                    &format!("shard {id} did not take message {}: {other:?}", m.id),
                );
                peer.conn = None;
                peer.retry_at = Some(Instant::now() + RECONNECT_AFTER);
                return;
            }
        }
    }
}
