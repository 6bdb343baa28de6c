//! The runtime functions of the seed page: atomic, hashtag, configGet,
//! gearsConfigGet, log, execute.

use gears_tests::{bulk, Server, Value};
use std::time::{Duration, Instant};

#[test]
fn atomic_block_is_never_seen_half_done() {
    let s = Server::start(&[]);
    // The observer polls from before the block starts until after it ends,
    // so one of its reads necessarily waits for the block.
    let mut other = s.client();
    let (polling, polls) = std::sync::mpsc::channel();
    let observer = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut blocked_for = Duration::ZERO;
        loop {
            let t = Instant::now();
            let r = other.cmd(&["MGET", "a", "b"]);
            blocked_for = blocked_for.max(t.elapsed());
            let _ = polling.send(());
            match r.array() {
                [Value::Nil, Value::Nil] => {}
                [a, b] if *a == bulk("1") && *b == bulk("1") => return blocked_for,
                half => panic!("saw a half-done atomic block: {half:?}"),
            }
            assert!(Instant::now() < deadline, "the block never completed");
            // Paces the polling: a read every few milliseconds is enough to
            // land one inside the half-second block.
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    // The block starts only once the observer is polling.
    polls
        .recv_timeout(Duration::from_secs(20))
        .expect("the observer never polled");
    let mut c = s.client();
    let script = "import time\n\
def step(x):\n    with atomic():\n        execute('SET', 'a', '1')\n        time.sleep(0.5)\n        execute('SET', 'b', '1')\n\
GB('PythonReader').foreach(step).run(lambda: iter([1]))";
    let id = c.cmd(&["RG.PYEXECUTE", script, "UNBLOCKING"]).text();
    let blocked_for = observer
        .join()
        .expect("the observer saw no half-done block");
    // The observer waited for the block rather than seeing inside it.
    assert!(blocked_for >= Duration::from_millis(300), "{blocked_for:?}");
    assert_eq!(
        c.cmd(&["RG.GETRESULTSBLOCKING", &id]).errors(),
        Vec::<String>::new()
    );
}

#[test]
fn atomic_nesting_and_flags() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let e = c
        .py("with atomic():\n    with atomic():\n        pass")
        .error();
    assert!(e.contains("Already inside an atomic block"), "{e}");
    // The failed inner block left the outer one properly closed.
    assert_eq!(
        c.py("with atomic():\n    execute('SET', 'x', 1)"),
        Value::Status("OK".into())
    );
    let r = c.py(
        "def f(x):\n    with atomic():\n        inside = isInAtomicBlock()\n    return [inside, isInAtomicBlock()]\n\
GB('PythonReader').map(f).run(lambda: iter([1]))",
    );
    assert_eq!(r.results(), ["[True, False]"]);
    let r = c.py(
        "def f(x):\n    with atomic():\n        with atomic():\n            pass\n\
GB('PythonReader').map(f).run(lambda: iter([1]))",
    );
    assert!(
        r.errors()[0].contains("Already inside an atomic block"),
        "{:?}",
        r.errors()
    );
    // And the worker released the lock: the server still answers.
    assert_eq!(c.cmd(&["GET", "x"]), bulk("1"));
}

/// The examples of the runtime page, as documented.
#[test]
fn seed_runtime_examples() {
    let s = Server::start(&[]);
    let mut c = s.client();
    // execute
    let r = c.py("GB('PythonReader').map(lambda x: execute('PING')).run(lambda: iter([1]))");
    assert_eq!(r.results(), ["PONG"]);
    // atomic: increments two keys atomically
    let script = "def transaction(_):\n    with atomic():\n        execute('INCR', f'{{{hashtag()}}}:foo')\n        execute('INCR', f'{{{hashtag()}}}:bar')\n\ngb = GB('ShardsIDReader')\ngb.foreach(transaction)\ngb.run()";
    assert_eq!(c.py(script).results(), ["1"]);
    assert_eq!(
        c.cmd(&["MGET", "{06S}:foo", "{06S}:bar"]),
        Value::Array(vec![bulk("1"), bulk("1")])
    );
    // configGet / gearsConfigGet
    let r = c.py("GB('PythonReader').run(lambda: iter([configGet('ProfileExecutions'), gearsConfigGet('foo', default='bar'), configGet('nope')]))");
    assert_eq!(r.results(), ["0", "bar", "None"]);
    // log every key
    c.cmd(&["SET", "logged", "v"]);
    let r = c.py("GB().foreach(lambda x: log(f\"{x['key']}: {x['value']}\")).run()");
    assert_eq!(r.results().len(), 3);
    assert!(s.wait_for(5, || s.log().contains("GEARS: logged: v")));
    // Log is a deprecated alias that still logs.
    assert_eq!(c.py("Log('old style')"), Value::Status("OK".into()));
    assert!(s.wait_for(5, || s.log().contains("GEARS: old style")));
    assert!(s.log().contains("Log is deprecated"));
}

#[test]
fn hashtag_keys_land_in_the_local_lowest_slot() {
    let s = Server::start_with(&["--cluster-enabled", "yes"], &[]);
    let mut c = s.client();
    assert_eq!(
        c.cmd(&["CLUSTER", "ADDSLOTSRANGE", "0", "16383"]),
        Value::Status("OK".into())
    );
    let tag = c
        .py("GB('PythonReader').run(lambda: iter([hashtag()]))")
        .results()[0]
        .clone();
    assert_eq!(c.cmd(&["CLUSTER", "KEYSLOT", &tag]).int(), 0);
    assert!(s.wait_for(10, || c
        .cmd(&["CLUSTER", "INFO"])
        .text()
        .contains("cluster_state:ok")));
    assert_eq!(
        c.py("execute('SET', '{%s}x' % hashtag(), 'v')"),
        Value::Status("OK".into())
    );
    let key = format!("{{{tag}}}x");
    assert_eq!(c.cmd(&["CLUSTER", "KEYSLOT", &key]).int(), 0);
    assert_eq!(c.cmd(&["CLUSTER", "COUNTKEYSINSLOT", "0"]).int(), 1);
    assert_eq!(c.cmd(&["GET", &key]), bulk("v"));
}

#[test]
fn atomic_writes_replicate_as_one_transaction() {
    let master = Server::start(&[]);
    let replica = Server::replica_of(&master);
    let mut monitor = replica.client();
    assert_eq!(monitor.cmd(&["MONITOR"]), Value::Status("OK".into()));
    let script = "def t(_):\n    with atomic():\n        execute('INCR', 'ta')\n        execute('INCR', 'tb')\nGB('ShardsIDReader').foreach(t).run()";
    assert_eq!(master.client().py(script).results(), ["1"]);
    let mut seen = Vec::new();
    while !seen.last().is_some_and(|l: &String| l.contains("\"EXEC\"")) {
        seen.push(monitor.read().text());
        assert!(seen.len() < 50, "no EXEC in {seen:?}");
    }
    let tail: Vec<&str> = seen[seen.len() - 4..]
        .iter()
        .map(|l| l.split_once("] ").map_or("", |(_, cmd)| cmd))
        .collect();
    assert_eq!(
        tail,
        [
            "\"MULTI\"",
            "\"INCR\" \"ta\"",
            "\"INCR\" \"tb\"",
            "\"EXEC\""
        ]
    );
}
