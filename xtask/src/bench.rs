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

pub fn bench(args: &[String]) -> Result<()> {
    let quick = args.iter().any(|a| a == "--quick");
    let python = crate::setup()?;
    let module = crate::build_module(&python)?;
    std::env::set_var("GEARS_MODULE", &module);
    let server = Server::start(&[]);
    let mut c = server.client();
    c.set_timeout(Duration::from_secs(600));
    let sizes: &[usize] = if quick {
        &[10_000, 100_000]
    } else {
        &[100_000, 1_000_000]
    };
    println!("keys_sum: sum of N integer string keys; gears vs Lua SCAN+GET (best of 3)");
    for &n in sizes {
        c.cmd(&["FLUSHALL"]);
        c.cmd(&["EVAL", POPULATE, "0", &n.to_string()]);
        let expect = (n as u64 * (n as u64 + 1) / 2).to_string();
        let gears = best_of(3, || timed(&mut c, &["RG.PYEXECUTE", KEYS_SUM], &expect));
        let lua = best_of(3, || timed(&mut c, &["EVAL", LUA_SUM, "0"], &expect));
        println!(
            "  N={n:>8}: gears {:>8.1} ms   lua {:>8.1} ms   ratio gears/lua {:.2}",
            gears.as_secs_f64() * 1000.0,
            lua.as_secs_f64() * 1000.0,
            gears.as_secs_f64() / lua.as_secs_f64()
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
    Ok(())
}
