//! Finding the streams registrations consume: at registration, after a
//! load, on promotion, one pass over the keyspace per database for every
//! registration at once.

use super::*;

/// Starts consuming every existing stream that `regs` (StreamReader
/// registrations) match in `db` (at registration, after a load, a
/// promotion or an unpause): pending entries first, then the backlog.
/// One pass over the database for all of them; none when every prefix is
/// a literal key. Lock held.
pub fn scan_existing(g: &'static Gears, regs: &[Arc<Registration>], db: i64) {
    let mut index = PrefixIndex::new();
    let mut literal = Vec::new();
    let mut scan = false;
    for reg in regs {
        if let ReaderArgs::Stream { prefix, .. } = &reg.args {
            index.insert(prefix, reg.clone());
            match prefix.last() {
                Some(b'*') => scan = true,
                _ => literal.push(prefix.clone()),
            }
        }
    }
    if index.is_empty() {
        return;
    }
    let module = Identity::module(db);
    let keys = if scan {
        stream_keys(&module)
    } else {
        redis::with_lock(|ctx| {
            redis::without_key_miss_events(|| {
                ctx.select_db(db);
                literal
                    .into_iter()
                    .filter(|k| redis::key_type(ctx, k) == KeyType::Stream)
                    .collect()
            })
        })
    };
    for key in keys {
        for reg in index.matches(&key) {
            let s = Stream {
                reg,
                db,
                key: key.clone(),
            };
            let start = s.consumer(g, |c| {
                c.pending_first = true;
                c.backlog = true;
                !std::mem::replace(&mut c.running, true)
            });
            if start {
                drain(g, s, false);
            }
        }
    }
}

/// Every stream of the database `module` acts in.
pub(super) fn stream_keys(module: &Identity) -> Vec<Vec<u8>> {
    let mut cursor = b"0".to_vec();
    let mut keys = Vec::new();
    loop {
        let reply = call(
            module,
            &[b"SCAN", &cursor, b"COUNT", b"1000", b"TYPE", b"stream"],
        );
        let Reply::Array(mut parts) = reply else {
            break;
        };
        if let Some(found) = parts.pop() {
            keys.extend(bulk_list(found));
        }
        match parts.pop() {
            Some(Reply::Bulk(c)) if c != b"0" => cursor = c,
            _ => break,
        }
    }
    keys
}

/// [`scan_existing`] in every database: after a load, a promotion or an
/// unpause, streams of any database may have messages waiting. Lock held.
pub fn scan_every_db(g: &'static Gears, regs: &[Arc<Registration>]) {
    if !regs
        .iter()
        .any(|r| matches!(r.args, ReaderArgs::Stream { .. }))
    {
        return;
    }
    for db in 0..redis::database_count() {
        scan_existing(g, regs, db);
    }
}
