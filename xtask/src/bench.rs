//! End-to-end benchmarks: the module against Redis's own Lua, in one run on
//! one server, so that the ratio is meaningful on a noisy machine.

use crate::Result;
use gears_tests::{Client, Server, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const KEYS_SUM: &str = "GB().map(lambda x: int(x['value']))\
    .aggregate(0, lambda a, x: a + x, lambda a, x: a + x).run()";

const LUA_SUM: &str = "local cursor = '0' local sum = 0 \
    repeat local r = redis.call('SCAN', cursor, 'COUNT', 1000) cursor = r[1] \
    for _, k in ipairs(r[2]) do sum = sum + tonumber(redis.call('GET', k)) end \
    until cursor == '0' return tostring(sum)";

const POPULATE: &str =
    "for i = 1, tonumber(ARGV[1]) do redis.call('SET', 'k:' .. i, i) end return 1";

fn best_of(runs: usize, mut f: impl FnMut() -> Duration) -> Duration {
    (0..runs).map(|_| f()).min().unwrap()
}

fn timed(c: &mut Client, args: &[&str], expect: &str) -> Duration {
    let t = Instant::now();
    let r = c.cmd(args);
    let d = t.elapsed();
    let got = match &r {
        Value::Array(a) if a.len() == 2 => a[0].texts().join(","),
        other => other.text(),
    };
    assert_eq!(
        got, expect,
        "unexpected benchmark result for {args:?}: {r:?}"
    );
    d
}

/// Latencies of PING from another client while `job` runs.
fn ping_during(port: u16, job: impl FnOnce()) -> Vec<Duration> {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let pinger = std::thread::spawn(move || {
        let mut c = Client::connect(port).unwrap();
        let mut lat = Vec::new();
        while !s.load(Ordering::Relaxed) {
            let t = Instant::now();
            c.cmd(&["PING"]);
            lat.push(t.elapsed());
            std::thread::sleep(Duration::from_millis(1));
        }
        lat
    });
    std::thread::sleep(Duration::from_millis(20));
    job();
    stop.store(true, Ordering::Relaxed);
    let mut lat = pinger.join().unwrap();
    lat.sort();
    lat
}

fn pct(l: &[Duration], p: f64) -> f64 {
    if l.is_empty() {
        return 0.0;
    }
    l[((l.len() - 1) as f64 * p) as usize].as_secs_f64() * 1000.0
}

/// Operations per second of `n` calls of `cmd(i)` from one client, one at a
/// time (no pipelining).
fn throughput(c: &mut Client, n: usize, cmd: impl Fn(usize) -> Vec<String>) -> f64 {
    let t = Instant::now();
    for i in 0..n {
        let r = c.cmd(&cmd(i));
        assert!(!matches!(r, Value::Error(_)), "{r:?}");
    }
    n as f64 / t.elapsed().as_secs_f64()
}

fn registration_id(c: &mut Client) -> String {
    c.registrations()
        .last()
        .expect("the registration exists")
        .id
        .clone()
}

/// SET throughput with a sync KeysReader registration doing one execute()
/// per event, against plain SET; rounds alternate to share the noise.
fn trigger_overhead(c: &mut Client, n: usize) {
    let (mut plain, mut triggered) = (0f64, 0f64);
    for round in 0..3 {
        plain = plain.max(throughput(c, n, |i| {
            vec!["SET".into(), format!("plain:{round}:{i}"), "v".into()]
        }));
        c.py("GB().foreach(lambda x: execute('INCR', 'triggers')).register(prefix='t:*', mode='sync', readValue=False)");
        let id = registration_id(c);
        triggered = triggered.max(throughput(c, n, |i| {
            vec!["SET".into(), format!("t:{round}:{i}"), "v".into()]
        }));
        c.cmd(&["RG.UNREGISTER", &id]);
    }
    assert_eq!(c.cmd(&["GET", "triggers"]).text(), (3 * n).to_string());
    println!(
        "trigger_overhead: SET with a sync registration (one execute() per event) vs plain SET, {n} SETs, best of 3: {:.0} vs {:.0} ops/s, ratio {:.2}",
        triggered,
        plain,
        triggered / plain
    );
}

/// XADD throughput with a StreamReader registration (async, batch=1)
/// against plain XADD; every message is checked to be processed.
fn stream_ingest(server: &Server, c: &mut Client, n: usize) {
    let (mut plain, mut consumed) = (0f64, 0f64);
    let mut drain = Duration::ZERO;
    for round in 0..3 {
        let key = format!("plain:{round}");
        plain = plain.max(throughput(c, n, |_| {
            vec![
                "XADD".into(),
                key.clone(),
                "*".into(),
                "f".into(),
                "v".into(),
            ]
        }));
        let stream = format!("in:{round}");
        c.py(&format!("GB('StreamReader').foreach(lambda x: execute('INCR', 'seen:{round}')).register(prefix='{stream}')"));
        let id = registration_id(c);
        consumed = consumed.max(throughput(c, n, |_| {
            vec![
                "XADD".into(),
                stream.clone(),
                "*".into(),
                "f".into(),
                "v".into(),
            ]
        }));
        let t = Instant::now();
        let seen = format!("seen:{round}");
        assert!(
            server.wait_for(120, || c.cmd(&["GET", &seen])
                == gears_tests::bulk(&n.to_string())),
            "every message is processed"
        );
        drain = drain.max(t.elapsed());
        c.cmd(&["RG.UNREGISTER", &id]);
    }
    println!(
        "stream_ingest: XADD with a StreamReader registration vs plain XADD, {n} messages, best of 3: {:.0} vs {:.0} ops/s, ratio {:.2} (backlog drained {:.0} ms after the last XADD, worst round)",
        consumed,
        plain,
        consumed / plain,
        drain.as_secs_f64() * 1000.0
    );
}

/// Requests per second `redis-benchmark` reaches with `clients` connections,
/// `pipeline` commands in flight on each, sending `n` times `args`
/// (`__rand_int__` becomes a random number below 1,000,000).
fn redis_benchmark(port: u16, clients: usize, pipeline: usize, n: usize, args: &[&str]) -> f64 {
    let out = std::process::Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-c", &clients.to_string(), "-P", &pipeline.to_string()])
        .args(["-n", &n.to_string(), "-r", "1000000", "--csv"])
        .args(args)
        .output()
        .expect("redis-benchmark runs (Debian's redis-tools)");
    let text = String::from_utf8_lossy(&out.stdout);
    // "test","rps" and six latencies: the seventh field from the end of
    // the second line (the test name may hold commas).
    text.lines()
        .nth(1)
        .and_then(|l| l.rsplit(',').nth(6))
        .and_then(|f| f.trim_matches('"').parse().ok())
        .unwrap_or_else(|| panic!("no rate in redis-benchmark's output: {text}"))
}

/// An integer key's value (0 when missing).
fn counter(c: &mut Client, key: &str) -> i64 {
    c.int_at(key)
}

/// The best of `rounds` rates of `f`.
fn best_rate(rounds: usize, mut f: impl FnMut() -> f64) -> f64 {
    (0..rounds).map(|_| f()).fold(0.0, f64::max)
}

/// The event path under many clients, as `redis-benchmark -c 50` loads it:
/// sync triggers, stream consumers and RG.PYEXECUTE, each against what
/// Redis does alone (or with Lua) in the same run.
fn concurrent(server: &Server, c: &mut Client, quick: bool) {
    let port = server.port;
    let n = if quick { 20_000 } else { 100_000 };
    c.py(
        "GB().foreach(lambda x: execute('INCR', 'bk_count')).register(prefix='bk:*', mode='sync')",
    );
    for pipeline in [1, 16] {
        let plain = best_rate(2, || {
            redis_benchmark(port, 50, pipeline, n, &["SET", "bn:__rand_int__", "v"])
        });
        let triggered = best_rate(2, || {
            redis_benchmark(port, 50, pipeline, n, &["SET", "bk:__rand_int__", "v"])
        });
        let lua = best_rate(2, || {
            redis_benchmark(
                port,
                50,
                pipeline,
                n,
                &[
                    "EVAL",
                    "redis.call('SET', KEYS[1], 'v') return redis.call('INCR', 'lua_count')",
                    "1",
                    "bl:__rand_int__",
                ],
            )
        });
        println!(
            "concurrent_sync_trigger: SET with a sync KeysReader registration (one execute('INCR')) vs plain SET, 50 clients, pipeline {pipeline}: {triggered:.0} vs {plain:.0} ops/s, ratio {:.2} (target >= {}; Lua SET+INCR ratio {:.2})",
            triggered / plain,
            if pipeline == 1 { "0.85" } else { "0.5" },
            lua / plain
        );
    }
    let id = registration_id(c);
    c.cmd(&["RG.UNREGISTER", &id]);

    // RedisGears 2.0's rg_keyspace_sync_simple: a trigger that does nothing.
    c.py("GB().register(prefix='bz:*', mode='sync')");
    for pipeline in [1, 16] {
        let plain = best_rate(2, || {
            redis_benchmark(port, 50, pipeline, n, &["SET", "bn:__rand_int__", "v"])
        });
        let triggered = best_rate(2, || {
            redis_benchmark(port, 50, pipeline, n, &["SET", "bz:__rand_int__", "v"])
        });
        println!(
            "concurrent_empty_trigger: SET with a sync registration that does nothing vs plain SET, 50 clients, pipeline {pipeline}: {triggered:.0} vs {plain:.0} ops/s, ratio {:.2} (target >= {})",
            triggered / plain,
            if pipeline == 1 { "0.9" } else { "0.6" },
        );
    }
    let id = registration_id(c);
    c.cmd(&["RG.UNREGISTER", &id]);

    c.py("GB('StreamReader').foreach(lambda x: execute('INCR', 'bs_seen')).register(prefix='bs', batch=1000, duration=50, trimStream=True)");
    let id = registration_id(c);
    let plain = best_rate(2, || {
        redis_benchmark(port, 50, 1, n, &["XADD", "bp", "*", "f", "v"])
    });
    let mut consumer_rate = f64::MAX;
    let with_reg = best_rate(2, || {
        let before = counter(c, "bs_seen");
        let t = Instant::now();
        let rate = redis_benchmark(port, 50, 1, n, &["XADD", "bs", "*", "f", "v"]);
        let want = before + n as i64;
        assert!(
            server.wait_for(300, || counter(c, "bs_seen") == want),
            "every stream message is processed"
        );
        consumer_rate = consumer_rate.min(n as f64 / t.elapsed().as_secs_f64());
        rate
    });
    c.cmd(&["RG.UNREGISTER", &id]);
    println!(
        "concurrent_stream: XADD with an async StreamReader registration (batch=1000, duration=50, trimStream) vs plain XADD, 50 clients: {with_reg:.0} vs {plain:.0} ops/s, ratio {:.2} (target >= 0.85); consumer processed {consumer_rate:.0} entries/s (XADD rate {with_reg:.0}/s)",
        with_reg / plain
    );

    let script = "GB('ShardsIDReader').run()";
    let m = if quick { 5_000 } else { 20_000 };
    let gears = best_rate(2, || {
        redis_benchmark(port, 50, 1, m, &["RG.PYEXECUTE", script])
    });
    let eval = best_rate(2, || {
        redis_benchmark(port, 50, 1, n, &["EVAL", "return 1", "0"])
    });
    println!(
        "concurrent_pyexecute: RG.PYEXECUTE \"{script}\" vs EVAL \"return 1\" 0, 50 clients: {gears:.0} vs {eval:.0} ops/s, ratio {:.2} (target >= 0.25)",
        gears / eval
    );
    let gears = best_rate(2, || {
        redis_benchmark(port, 1, 1, m / 4, &["RG.PYEXECUTE", script])
    });
    let eval = best_rate(2, || {
        redis_benchmark(port, 1, 1, n / 4, &["EVAL", "return 1", "0"])
    });
    println!(
        "pyexecute_round_trip: one client, RG.PYEXECUTE vs EVAL round trip: ratio {:.2} (target <= 2)",
        eval / gears
    );
}

/// A burst of `n` SETs from 50 clients on an `async` (then `async_local`)
/// registration doing one `execute()`: SET throughput during the burst
/// against plain SET in the same server, how fast the events are processed
/// (from the first SET to the last event), that each is processed exactly
/// once, and PING latency meanwhile.
fn async_burst(n: usize) {
    for mode in ["async", "async_local"] {
        let server = Server::start(&[]);
        let mut c = server.client();
        c.set_timeout(Duration::from_secs(600));
        let port = server.port;
        let plain = redis_benchmark(port, 50, 1, n / 4, &["SET", "plain:__rand_int__", "v"]);
        c.py(&format!(
            "GB().foreach(lambda x: execute('INCR', 'burst_count')).register(prefix='a:*', mode='{mode}', eventTypes=['set'])"
        ));
        let mut during = 0.0;
        let mut processed_in = Duration::ZERO;
        let pings = ping_during(port, || {
            let t = Instant::now();
            during = redis_benchmark(port, 50, 1, n, &["SET", "a:__rand_int__", "v"]);
            let mut w = Client::connect(port).unwrap();
            let done = server.wait_for(600, || counter(&mut w, "burst_count") >= n as i64);
            assert!(done, "the backlog did not drain");
            processed_in = t.elapsed();
        });
        std::thread::sleep(Duration::from_millis(200));
        let count = counter(&mut c, "burst_count");
        let reg = c.registrations().pop().expect("the registration");
        println!(
            "async_burst ({mode}): {n} SETs from 50 clients: SET {during:.0} vs plain {plain:.0} ops/s, ratio {:.2} (target >= 0.7); events processed {count} of {n} (failures {}), {:.0} events/s from the first SET to the last event (target >= 30000); PING p50 {:.2} p99 {:.2} ms (target < 2)",
            during / plain,
            reg.count("numFailures"),
            n as f64 / processed_in.as_secs_f64(),
            pct(&pings, 0.5),
            pct(&pings, 0.99)
        );
    }
}

/// Memory per pending event: the only worker is kept busy while `n` SETs
/// queue executions of an async registration; RSS and used_memory before
/// and after, divided by `n`.
fn pending_memory(n: usize) {
    let server = Server::start(&["ExecutionThreads", "1"]);
    let mut c = server.client();
    c.set_timeout(Duration::from_secs(600));
    let port = server.port;
    c.py("GB().foreach(lambda x: execute('INCR', 'pm_count')).register(prefix='pm:*', eventTypes=['set'])");
    let busy = "import time\ndef f(x):\n    while True:\n        time.sleep(0.01)\nGB('ShardsIDReader').map(f).run()";
    let id = c.cmd(&["RG.PYEXECUTE", busy, "UNBLOCKING"]).text();
    std::thread::sleep(Duration::from_millis(300));
    let rss = |c: &mut Client| info_number(c, "memory", "used_memory_rss");
    let used = |c: &mut Client| info_number(c, "memory", "used_memory");
    let (rss0, used0) = (rss(&mut c), used(&mut c));
    // Keys that exist already cost nothing more: the keyspace is filled
    // first, then each key is set again while the worker is busy.
    redis_benchmark(port, 50, 16, n, &["SET", "fill:__rand_int__", "v"]);
    let (rss1, used1) = (rss(&mut c), used(&mut c));
    redis_benchmark(port, 50, 16, n, &["SET", "pm:__rand_int__", "v"]);
    let (rss2, used2) = (rss(&mut c), used(&mut c));
    let keys_rss = (rss1 - rss0) as f64;
    let keys_used = (used1 - used0) as f64;
    println!(
        "pending_memory: {n} events waiting behind a busy worker: RSS +{:.0} bytes and used_memory +{:.0} bytes per event beyond what {n} keys cost (target <= 1024)",
        ((rss2 - rss1) as f64 - keys_rss) / n as f64,
        ((used2 - used1) as f64 - keys_used) / n as f64
    );
    c.cmd(&["RG.ABORTEXECUTION", &id]);
    server.wait_for(600, || counter(&mut c, "pm_count") >= n as i64);
}

/// SET and XADD with 1,000 KeysReader and 1,000 StreamReader registrations
/// on other prefixes (literal keys, `prefix*`, prefixes with a `*` inside)
/// against the same with only the matching one; registering and
/// unregistering the thousand.
fn many_registrations(n: usize) {
    let server = Server::start(&[]);
    let mut c = server.client();
    c.set_timeout(Duration::from_secs(600));
    let port = server.port;
    c.py("GB().foreach(lambda x: execute('INCR', 'mine')).register(prefix='mine:*', mode='sync', eventTypes=['set'])");
    c.py("GB('StreamReader').foreach(lambda x: execute('INCR', 'ms')).register(prefix='mystream', batch=1000, duration=50)");
    let rates = |c: &mut Client| {
        let set = best_rate(2, || {
            redis_benchmark(port, 50, 16, n, &["SET", "mine:__rand_int__", "v"])
        });
        let xadd = best_rate(2, || {
            redis_benchmark(port, 50, 1, n / 4, &["XADD", "mystream", "*", "f", "v"])
        });
        c.cmd(&["DEL", "mystream"]);
        (set, xadd)
    };
    let (set_one, xadd_one) = rates(&mut c);
    let mut script = String::from("for i in range(1000):\n");
    script.push_str("    p = ['other:%d' % i, 'other:%d:*' % i, 'o*%d:*' % i][i % 3]\n");
    script.push_str(
        "    GB().foreach(lambda x: execute('INCR', 'wrong')).register(prefix=p, mode='sync')\n",
    );
    script.push_str("    GB('StreamReader').foreach(lambda x: execute('INCR', 'wrong')).register(prefix='s' + p)\n");
    let t = Instant::now();
    assert_eq!(
        c.py_with(&["ID", "thousand"], &script),
        Value::Status("OK".into())
    );
    let register = t.elapsed();
    let (set_many, xadd_many) = rates(&mut c);
    let ids: Vec<String> = c
        .registrations()
        .into_iter()
        .map(|r| r.id)
        .filter(|id| !id.is_empty())
        .collect();
    let t = Instant::now();
    for id in ids.iter().skip(2).take(1000) {
        assert_eq!(c.cmd(&["RG.UNREGISTER", id]), Value::Status("OK".into()));
    }
    let unregister = t.elapsed();
    for id in ids.iter().skip(1002) {
        c.cmd(&["RG.UNREGISTER", id]);
    }
    println!(
        "many_registrations: SET (sync trigger, 50 clients, pipeline 16) with 2,000 other registrations vs none: {set_many:.0} vs {set_one:.0} ops/s, ratio {:.2} (target >= 0.9); XADD: {xadd_many:.0} vs {xadd_one:.0}, ratio {:.2} (target >= 0.9); registering the 2,000 {:.0} ms, unregistering 1,000 of them {:.0} ms (target < 1000 each)",
        set_many / set_one,
        xadd_many / xadd_one,
        register.as_secs_f64() * 1000.0,
        unregister.as_secs_f64() * 1000.0
    );
}

/// An INFO field as a number (0 when missing).
fn info_number(c: &mut Client, section: &str, field: &str) -> i64 {
    c.info_int(section, field).unwrap_or(0)
}

/// `--only soak`: `secs` seconds of mixed load, unthrottled, from 8
/// clients: SETs on a sync and an async registration, XADDs on a stream
/// registration, HSETs through a hook, batch runs, registration churn
/// (UPGRADE of a session), AOF rewrites; then the backlog drains, the
/// server is killed (-9) and restarted. Reports events sent and processed
/// per registration (they must be equal), error replies (none), and memory
/// after the drain against memory after the warm-up.
fn soak(secs: u64) {
    let mut server = Server::start_with(&["--appendonly", "yes", "--appendfsync", "everysec"], &[]);
    let mut c = server.client();
    c.set_timeout(Duration::from_secs(600));
    let script = "GB().foreach(lambda x: execute('INCR', 'cnt:sync')).register(prefix='sy:*', mode='sync', eventTypes=['set'])\n\
GB().foreach(lambda x: execute('INCR', 'cnt:async')).register(prefix='as:*', mode='async', eventTypes=['set'])\n\
GB('StreamReader').foreach(lambda x: execute('INCR', 'cnt:stream')).register(prefix='st', batch=100, duration=20)\n\
def hook(x):\n    execute('INCR', 'cnt:hook')\n    return call_next(*x[1:])\n\
GB('CommandReader').map(hook).register(hook='hset', keyprefix='hk:', mode='sync')";
    assert_eq!(
        c.py_with(&["ID", "soak"], script),
        Value::Status("OK".into())
    );
    let stop = Arc::new(AtomicBool::new(false));
    let port = server.port;
    // (sync, async, stream, hook, batch runs, error replies)
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(port).unwrap();
                c.set_timeout(Duration::from_secs(600));
                let mut sent = [0u64; 6];
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let key = format!("{w}:{i}");
                    let (kind, r) = match i % 10 {
                        0..=2 => (0, c.cmd(&["SET", &format!("sy:{key}"), "v"])),
                        3..=5 => (1, c.cmd(&["SET", &format!("as:{key}"), "v"])),
                        6 | 7 => (
                            2,
                            c.cmd(&["XADD", "st", "MAXLEN", "~", "100000", "*", "k", &key]),
                        ),
                        8 => (3, c.cmd(&["HSET", &format!("hk:{key}"), "f", "v"])),
                        _ if i % 1000 == 9 => {
                            (4, c.cmd(&["RG.PYEXECUTE", "GB().count().run('sy:*')"]))
                        }
                        _ => (0, c.cmd(&["SET", &format!("sy:{key}"), "v"])),
                    };
                    if let Value::Error(e) = r {
                        if sent[5] == 0 {
                            println!("soak: first error reply: {e}");
                        }
                        sent[5] += 1;
                    } else {
                        sent[kind] += 1;
                    }
                }
                sent
            })
        })
        .collect();
    // Churn and rewrites while the load runs.
    let start = Instant::now();
    let mut baseline = None;
    let mut round = 0;
    while start.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_secs(2));
        round += 1;
        let churn = format!("GB('CommandReader').map(lambda x: {round}).register(trigger='churn')");
        c.py_with(&["ID", "churn", "UPGRADE"], &churn);
        if round % 10 == 0 {
            c.cmd(&["BGREWRITEAOF"]);
        }
        if baseline.is_none() && start.elapsed() > Duration::from_secs(secs / 5) {
            baseline = Some((
                info_number(&mut c, "memory", "used_memory"),
                info_number(&mut c, "memory", "used_memory_rss"),
            ));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut sent = [0u64; 6];
    for w in workers {
        for (total, n) in sent.iter_mut().zip(w.join().unwrap()) {
            *total += n;
        }
    }
    let drained = server.wait_for(600, || {
        counter(&mut c, "cnt:async") as u64 >= sent[1]
            && counter(&mut c, "cnt:stream") as u64 >= sent[2]
    });
    let processed = [
        counter(&mut c, "cnt:sync"),
        counter(&mut c, "cnt:async"),
        counter(&mut c, "cnt:stream"),
        counter(&mut c, "cnt:hook"),
    ];
    let after = (
        info_number(&mut c, "memory", "used_memory"),
        info_number(&mut c, "memory", "used_memory_rss"),
    );
    let (base_used, base_rss) = baseline.unwrap_or(after);
    println!(
        "soak: {secs} s, 8 clients: sync {} sent / {} processed, async {} / {}, stream {} / {}, hook {} / {}, {} batch runs, {} error replies, drained: {drained}; used_memory {:.1} MB after the warm-up, {:.1} MB after the drain (rss {:.1} -> {:.1} MB; the data grew by the keys written)",
        sent[0], processed[0], sent[1], processed[1], sent[2], processed[2], sent[3], processed[3], sent[4], sent[5],
        base_used as f64 / 1e6, after.0 as f64 / 1e6, base_rss as f64 / 1e6, after.1 as f64 / 1e6
    );
    // kill -9 and restart: the registrations are back and fire.
    server.restart(&["KILL"]);
    let mut c = server.client();
    let regs = c.registrations().len();
    let before = counter(&mut c, "cnt:sync");
    c.cmd(&["SET", "sy:after", "v"]);
    println!(
        "soak: after kill -9 and restart: {regs} registrations (expected 5), the sync one fired: {}",
        counter(&mut c, "cnt:sync") == before + 1
    );
}

/// DEBUG RELOAD (save and load the RDB) with 1,000 registrations against
/// the same with none: the cost of restoring one registration.
fn restart_with_registrations() {
    let s = Server::start_with(&["--enable-debug-command", "yes"], &[]);
    let mut c = s.client();
    c.set_timeout(Duration::from_secs(600));
    let reload = |c: &mut Client| {
        best_of(3, || {
            let t = Instant::now();
            assert_eq!(c.cmd(&["DEBUG", "RELOAD"]), Value::Status("OK".into()));
            t.elapsed()
        })
    };
    let empty = reload(&mut c);
    let n = 1000;
    let script = format!(
        "def f(x):\n    return x\nfor i in range({n}):\n    GB('CommandReader').map(f).register(trigger='t%d' % i)"
    );
    assert_eq!(c.py(&script), Value::Status("OK".into()));
    let full = reload(&mut c);
    assert_eq!(c.cmd(&["RG.DUMPREGISTRATIONS"]).array().len(), n);
    let per = full.saturating_sub(empty).as_secs_f64() * 1000.0 / n as f64;
    println!(
        "restart_with_registrations: DEBUG RELOAD with {n} registrations {:.1} ms, with none {:.1} ms: {per:.3} ms per registration",
        full.as_secs_f64() * 1000.0,
        empty.as_secs_f64() * 1000.0
    );
}

/// Latency of SET with a sync registration while a KeysReader batch job
/// over `n` keys keeps a worker busy (it competes for the GIL and takes the
/// Redis lock batch after batch).
fn sync_set_during_batch(c: &mut Client, port: u16, n: usize) {
    c.cmd(&["EVAL", POPULATE, "0", &n.to_string()]);
    c.py("GB().foreach(lambda x: execute('INCR', 'during')).register(prefix='lat:*', mode='sync', readValue=False)");
    let id = registration_id(c);
    let job = c
        .cmd(&[
            "RG.PYEXECUTE",
            "GB().map(lambda x: int(x['value'])).aggregate(0, lambda a, x: a + x, lambda a, x: a + x).run('k:*')",
            "UNBLOCKING",
        ])
        .text();
    std::thread::sleep(Duration::from_millis(50));
    let mut other = Client::connect(port).unwrap();
    let mut lat = Vec::new();
    let mut i = 0;
    loop {
        let t = Instant::now();
        other.cmd(&["SET", &format!("lat:{i}"), "v"]);
        lat.push(t.elapsed());
        i += 1;
        if i % 100 == 0
            && c.cmd(&["RG.GETRESULTS", &job]) != Value::Error("execution is still running".into())
        {
            break;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    lat.sort();
    c.cmd(&["RG.UNREGISTER", &id]);
    println!(
        "sync_set_during_batch: SET with a sync trigger while a {n}-key batch job runs (ms): p50 {:.3} p99 {:.3} max {:.3} ({} SETs; target p99 <= 1)",
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        pct(&lat, 1.0),
        lat.len()
    );
}

/// 100,000 records through a map whose function is `async def` awaiting
/// nothing, against the same map with a plain `def`: the cost of a coroutine
/// step that answers at once (driven where it runs, no trip to the loop).
fn async_map_eager(c: &mut Client, n: usize) {
    let run = |c: &mut Client, def: &str| {
        let script = format!(
            "{def} f(x):\n    return x + 1\n\
             GB('PythonReader').map(f).count().run(lambda: iter(range({n})))"
        );
        best_of(3, || timed(c, &["RG.PYEXECUTE", &script], &n.to_string()))
    };
    let sync = run(c, "def");
    let eager = run(c, "async def");
    println!(
        "async_map_eager: map with an async def awaiting nothing vs a plain def, {n} records, best of 3: {:.1} vs {:.1} ms, ratio async/sync {:.2} (target <= 3)",
        eager.as_secs_f64() * 1000.0,
        sync.as_secs_f64() * 1000.0,
        eager.as_secs_f64() / sync.as_secs_f64()
    );
}

/// 1,000 records whose step awaits `asyncio.sleep(0.1)`: they wait
/// together, so the execution takes about 0.1 s, not 100 s.
fn async_wait_concurrency(c: &mut Client) {
    let script = "import asyncio\n\
        async def nap(x):\n    await asyncio.sleep(0.1)\n    return x\n\
        GB('PythonReader').map(nap).count().run(lambda: iter(range(1000)))";
    let took = best_of(3, || timed(c, &["RG.PYEXECUTE", script], "1000"));
    println!(
        "async_wait_concurrency: 1000 records each awaiting asyncio.sleep(0.1), best of 3: {:.0} ms (target < 1000 ms)",
        took.as_secs_f64() * 1000.0
    );
}

pub fn bench(args: &[String]) -> Result<()> {
    let quick = args.iter().any(|a| a == "--quick");
    // `--module PATH`: measure a module built elsewhere (an older build, to
    // compare before and after a change on the same machine).
    let given = args
        .iter()
        .position(|a| a == "--module")
        .map(|i| args.get(i + 1).cloned().ok_or("--module needs a path"))
        .transpose()?;
    let module = match given {
        Some(path) => std::path::PathBuf::from(path),
        None => crate::build_module(&crate::setup()?)?,
    };
    // `--only PREFIX`: run only the benches whose name starts with PREFIX.
    let only = args
        .iter()
        .position(|a| a == "--only")
        .map(|i| args.get(i + 1).cloned().ok_or("--only needs a bench name"))
        .transpose()?;
    let want = |name: &str| only.as_deref().is_none_or(|o| name.starts_with(o));
    std::env::set_var("GEARS_MODULE", &module);
    let server = Server::start(&[]);
    let mut c = server.client();
    c.set_timeout(Duration::from_secs(600));
    let sizes: &[usize] = if quick {
        &[10_000, 100_000]
    } else {
        &[100_000, 1_000_000]
    };
    if want("keys_sum") {
        keys_sum(&server, &mut c, sizes);
    }
    let events = if quick { 5_000 } else { 20_000 };
    c.cmd(&["FLUSHALL"]);
    if want("trigger_overhead") {
        trigger_overhead(&mut c, events);
    }
    if want("stream_ingest") {
        stream_ingest(&server, &mut c, events);
    }
    if want("sync_set_during_batch") {
        sync_set_during_batch(&mut c, server.port, *sizes.last().unwrap_or(&100_000));
        c.cmd(&["FLUSHALL"]);
    }
    if want("concurrent") {
        concurrent(&server, &mut c, quick);
    }
    if want("async_map_eager") {
        async_map_eager(&mut c, 100_000);
    }
    if want("async_wait_concurrency") {
        async_wait_concurrency(&mut c);
    }
    if want("restart_with_registrations") {
        restart_with_registrations();
    }
    if want("async_burst") {
        async_burst(if quick { 100_000 } else { 1_000_000 });
    }
    if want("pending_memory") {
        pending_memory(if quick { 100_000 } else { 1_000_000 });
    }
    if want("many_registrations") {
        many_registrations(if quick { 20_000 } else { 100_000 });
    }
    if only.as_deref() == Some("soak") {
        soak(if quick { 60 } else { 300 });
    }
    if want("python_env") {
        python_env(*sizes.last().unwrap_or(&100_000));
    }
    if want("cluster") {
        cluster_benches(*sizes.last().unwrap_or(&100_000));
    }
    Ok(())
}

/// Fills `n` keys `k:1..n` (holding their number), each on the node
/// serving it, pipelined.
fn fill_cluster(cluster: &gears_tests::Cluster, n: usize) {
    let nodes = cluster.nodes.len();
    let mut clients: Vec<Client> = cluster.nodes.iter().map(|s| s.client()).collect();
    let mut sent = vec![0usize; nodes];
    for i in 1..=n {
        let key = format!("k:{i}");
        let slot = gears_cluster::key_slot(key.as_bytes()) as usize;
        let at = (0..nodes)
            .find(|j| slot >= j * 16384 / nodes && slot < (j + 1) * 16384 / nodes)
            .expect("every slot has a node");
        clients[at].send(&["SET", &key, &i.to_string()]);
        sent[at] += 1;
        if sent[at].is_multiple_of(1000) {
            for _ in 0..1000 {
                clients[at].read();
            }
        }
    }
    for (c, n) in clients.iter_mut().zip(sent) {
        for _ in 0..n % 1000 {
            c.read();
        }
    }
}

/// keys_sum over the same keys on 3 shards and on 1, for the module and
/// for Lua (the same SCAN sum sent to every shard in parallel by a client);
/// and the round trip of a trivial run on 3 shards vs 1 (the fan-out cost).
fn cluster_benches(n: usize) {
    let expect = (n as u64 * (n as u64 + 1) / 2).to_string();
    let one = gears_tests::Cluster::start(1, &[]);
    let three = gears_tests::Cluster::start(3, &[]);
    fill_cluster(&one, n);
    fill_cluster(&three, n);
    let gears_on = |cluster: &gears_tests::Cluster| {
        let mut c = cluster.nodes[0].client();
        c.set_timeout(Duration::from_secs(600));
        best_of(3, || timed(&mut c, &["RG.PYEXECUTE", KEYS_SUM], &expect))
    };
    let lua_on = |cluster: &gears_tests::Cluster| {
        best_of(3, || {
            let t = Instant::now();
            let sums: Vec<u64> = std::thread::scope(|s| {
                let handles: Vec<_> = cluster
                    .nodes
                    .iter()
                    .map(|node| {
                        s.spawn(move || {
                            let mut c = node.client();
                            c.set_timeout(Duration::from_secs(600));
                            c.cmd(&["EVAL", LUA_SUM, "0"])
                                .text()
                                .parse::<u64>()
                                .unwrap()
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            assert_eq!(sums.iter().sum::<u64>().to_string(), expect);
            t.elapsed()
        })
    };
    let (g1, g3) = (gears_on(&one), gears_on(&three));
    let (l1, l3) = (lua_on(&one), lua_on(&three));
    let gears_speedup = g1.as_secs_f64() / g3.as_secs_f64();
    let lua_speedup = l1.as_secs_f64() / l3.as_secs_f64();
    println!(
        "cluster_keys_sum: {n} keys, 1 shard vs 3 shards: gears {:.1} vs {:.1} ms (speed-up {gears_speedup:.2}), Lua in parallel {:.1} vs {:.1} ms (speed-up {lua_speedup:.2}); gears' speed-up / Lua's {:.2} (target >= 0.7)",
        g1.as_secs_f64() * 1000.0,
        g3.as_secs_f64() * 1000.0,
        l1.as_secs_f64() * 1000.0,
        l3.as_secs_f64() * 1000.0,
        gears_speedup / lua_speedup
    );
    let trivial = |cluster: &gears_tests::Cluster| {
        let mut c = cluster.nodes[0].client();
        let rounds = 200;
        let mut best = Duration::MAX;
        for _ in 0..3 {
            let t = Instant::now();
            for _ in 0..rounds {
                let r = c.cmd(&["RG.PYEXECUTE", "GB('ShardsIDReader').run()"]);
                assert_eq!(r.results().len(), cluster.nodes.len(), "{r:?}");
            }
            best = best.min(t.elapsed() / rounds);
        }
        best
    };
    let (t1, t3) = (trivial(&one), trivial(&three));
    println!(
        "cluster_trivial: RG.PYEXECUTE \"GB('ShardsIDReader').run()\" round trip, 3 shards vs 1: {:.3} vs {:.3} ms (aim < 3 ms)",
        t3.as_secs_f64() * 1000.0,
        t1.as_secs_f64() * 1000.0
    );
}

/// Mean round trip of `args` over `n` calls.
fn mean_round_trip(c: &mut Client, n: usize, args: &[&str]) -> Duration {
    let t = Instant::now();
    for _ in 0..n {
        let r = c.cmd(args);
        assert!(!matches!(r, Value::Error(_)), "{r:?}");
    }
    t.elapsed() / n as u32
}

/// What the Python environment features cost: REQUIREMENTS naming a
/// package already installed, ProfileExecutions, and the allocator counting
/// of OverridePythonAllocators, each against the same work without it.
fn python_env(n: usize) {
    let dir = std::env::temp_dir().join(format!("gears-bench-env-{}", std::process::id()));
    let env_dir = dir.to_string_lossy().into_owned();
    let server = Server::start(&["PythonInstallationDir", &env_dir]);
    let mut c = server.client();
    c.set_timeout(Duration::from_secs(600));
    let trivial = "GB('ShardsIDReader').run()";
    let installed = c.cmd(&["RG.PYEXECUTE", trivial, "REQUIREMENTS", "humanize==4.9.0"]);
    if let Value::Error(e) = installed {
        println!("python_env: requirements row skipped (pip could not install: {e})");
    } else {
        let rounds = 300;
        let (mut plain, mut with_req) = (Duration::MAX, Duration::MAX);
        for _ in 0..3 {
            plain = plain.min(mean_round_trip(&mut c, rounds, &["RG.PYEXECUTE", trivial]));
            with_req = with_req.min(mean_round_trip(
                &mut c,
                rounds,
                &["RG.PYEXECUTE", trivial, "REQUIREMENTS", "humanize==4.9.0"],
            ));
        }
        println!(
            "requirements_installed: RG.PYEXECUTE naming an installed requirement adds {:.3} ms ({:.3} vs {:.3} ms round trip; target < 5 ms)",
            (with_req.as_secs_f64() - plain.as_secs_f64()).max(0.0) * 1000.0,
            with_req.as_secs_f64() * 1000.0,
            plain.as_secs_f64() * 1000.0
        );
    }
    c.cmd(&["EVAL", POPULATE, "0", &n.to_string()]);
    let expect = (n as u64 * (n as u64 + 1) / 2).to_string();
    let (mut off, mut on) = (Duration::MAX, Duration::MAX);
    for _ in 0..3 {
        c.cmd(&["RG.CONFIGSET", "ProfileExecutions", "0"]);
        off = off.min(timed(&mut c, &["RG.PYEXECUTE", KEYS_SUM], &expect));
        c.cmd(&["RG.CONFIGSET", "ProfileExecutions", "1"]);
        on = on.min(timed(&mut c, &["RG.PYEXECUTE", KEYS_SUM], &expect));
    }
    c.cmd(&["RG.CONFIGSET", "ProfileExecutions", "0"]);
    println!(
        "profile_executions: keys_sum over {n} keys with ProfileExecutions 1 vs 0: {:.1} vs {:.1} ms, ratio {:.2}",
        on.as_secs_f64() * 1000.0,
        off.as_secs_f64() * 1000.0,
        on.as_secs_f64() / off.as_secs_f64()
    );
    drop(c);
    drop(server);
    let plain = Server::start(&["OverridePythonAllocators", "0"]);
    let mut p = plain.client();
    p.set_timeout(Duration::from_secs(600));
    p.cmd(&["EVAL", POPULATE, "0", &n.to_string()]);
    let counting = Server::start(&["OverridePythonAllocators", "1"]);
    let mut q = counting.client();
    q.set_timeout(Duration::from_secs(600));
    q.cmd(&["EVAL", POPULATE, "0", &n.to_string()]);
    let (mut without, mut with) = (Duration::MAX, Duration::MAX);
    for _ in 0..3 {
        without = without.min(timed(&mut p, &["RG.PYEXECUTE", KEYS_SUM], &expect));
        with = with.min(timed(&mut q, &["RG.PYEXECUTE", KEYS_SUM], &expect));
    }
    println!(
        "override_allocators: keys_sum over {n} keys with OverridePythonAllocators 1 vs 0: {:.1} vs {:.1} ms, ratio {:.2}",
        with.as_secs_f64() * 1000.0,
        without.as_secs_f64() * 1000.0,
        with.as_secs_f64() / without.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The floor of keys_sum: the module's own CPython building the same
/// record dicts for `n` keys and summing their values through the same two
/// lambdas, in a plain loop (timed inside Python, data made beforehand).
fn python_floor(c: &mut Client, n: usize) -> Duration {
    let script = format!(
        "import time\n\
         data = [('k:%d' % i, str(i)) for i in range(1, {n} + 1)]\n\
         m = lambda x: int(x['value'])\n\
         a = lambda acc, x: acc + x\n\
         t = time.perf_counter()\n\
         s = 0\n\
         for k, v in data:\n    s = a(s, m({{'key': k, 'value': v, 'type': 'string', 'event': None}}))\n\
         execute('SET', '__floor_s', repr(time.perf_counter() - t))\n\
         assert s == {n} * ({n} + 1) // 2\n"
    );
    assert_eq!(c.py(&script), Value::Status("OK".into()));
    let secs: f64 = c.cmd(&["GET", "__floor_s"]).text().parse().unwrap();
    c.cmd(&["DEL", "__floor_s"]);
    Duration::from_secs_f64(secs)
}

/// keys_sum, and PING latency while it runs.
fn keys_sum(server: &Server, c: &mut Client, sizes: &[usize]) {
    println!("keys_sum: sum of N integer string keys; gears vs Lua SCAN+GET (best of 3)");
    for &n in sizes {
        c.cmd(&["FLUSHALL"]);
        c.cmd(&["EVAL", POPULATE, "0", &n.to_string()]);
        let expect = (n as u64 * (n as u64 + 1) / 2).to_string();
        let gears = best_of(3, || timed(c, &["RG.PYEXECUTE", KEYS_SUM], &expect));
        let lua = best_of(3, || timed(c, &["EVAL", LUA_SUM, "0"], &expect));
        let floor = best_of(3, || python_floor(c, n));
        println!(
            "  N={n:>8}: gears {:>8.1} ms   lua {:>8.1} ms   ratio gears/lua {:.2} (target <= 0.7)   plain CPython loop {:>8.1} ms, ratio gears/loop {:.2} (target <= 2.0)",
            gears.as_secs_f64() * 1000.0,
            lua.as_secs_f64() * 1000.0,
            gears.as_secs_f64() / lua.as_secs_f64(),
            floor.as_secs_f64() * 1000.0,
            gears.as_secs_f64() / floor.as_secs_f64()
        );
    }
    let port = server.port;
    let during_gears = ping_during(port, || {
        let mut c = Client::connect(port).unwrap();
        c.set_timeout(Duration::from_secs(600));
        c.cmd(&["RG.PYEXECUTE", KEYS_SUM]);
    });
    let during_lua = ping_during(port, || {
        let mut c = Client::connect(port).unwrap();
        c.set_timeout(Duration::from_secs(600));
        c.cmd(&["EVAL", LUA_SUM, "0"]);
    });
    println!(
        "PING latency while the job runs (ms): gears p50 {:.2} p99 {:.2} max {:.2} ({} pings) | lua p50 {:.2} p99 {:.2} max {:.2} ({} pings)",
        pct(&during_gears, 0.5),
        pct(&during_gears, 0.99),
        pct(&during_gears, 1.0),
        during_gears.len(),
        pct(&during_lua, 0.5),
        pct(&during_lua, 0.99),
        pct(&during_lua, 1.0),
        during_lua.len()
    );
}
