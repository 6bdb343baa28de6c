//! What users send must not crash the server, write to the wrong database,
//! get around ACLs, stall a stream or leak: regression tests of each way it
//! once could.

use gears_tests::{bulk, holds_for, Client, Server, Value};
use std::time::Duration;

fn ok() -> Value {
    Value::Status("OK".into())
}

fn alive(c: &mut Client) {
    assert_eq!(c.cmd(&["PING"]), Value::Status("PONG".into()));
}

#[test]
fn cyclic_and_deeply_nested_results_are_error_records() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let cyclic = "def f(x):\n    l = []\n    l.append(l)\n    return l\nGB('ShardsIDReader').map(f).run(convertToStr=False)";
    let r = c.py(cyclic);
    assert_eq!(r.array()[0], Value::Array(vec![]));
    let errors = r.errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("reply nesting too deep"), "{errors:?}");
    let deep = "def f(x):\n    l = []\n    for i in range(100000):\n        l = [l]\n    return l\nGB('ShardsIDReader').map(f).run(convertToStr=False)";
    let r = c.py(deep);
    assert!(r.errors()[0].contains("reply nesting too deep"));
    // Nesting within the bound still converts (90 levels: the test client,
    // redis-rs, parses replies up to 100 deep).
    let fine = "def f(x):\n    l = 'x'\n    for i in range(90):\n        l = [l]\n    return l\nGB('ShardsIDReader').map(f).run(convertToStr=False)";
    let r = c.py(fine);
    assert!(r.errors().is_empty());
    // override_reply with a cycle raises instead.
    c.py("def f(x):\n    l = []\n    l.append(l)\n    override_reply(l)\nGB().foreach(f).register(prefix='cyc*', commands=['get'], eventTypes=['keymiss'], mode='sync')");
    assert_eq!(c.cmd(&["GET", "cyc1"]), Value::Nil);
    let last = c.registrations()[0].field("lastError").text();
    assert!(last.contains("reply nesting too deep"), "{last}");
    alive(&mut c);
}

#[test]
fn clients_can_not_call_the_internal_hook_command() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let before = c.cmd(&["CONFIG", "GET", "maxmemory"]);
    let err = c
        .cmd(&["RG.INNERHOOK", "config", "set", "maxmemory", "777"])
        .error();
    assert!(err.contains("RG.INNERHOOK is internal"), "{err}");
    assert_eq!(c.cmd(&["CONFIG", "GET", "maxmemory"]), before);
    // Nested 20,000 times: refused at once, no recursion.
    let mut nested: Vec<&str> = vec!["RG.INNERHOOK"; 20_000];
    nested.push("PING");
    assert!(c.cmd(&nested).error().contains("RG.INNERHOOK is internal"));
    // With a hook in place the hooked command still goes through it, and
    // a hooked RG.INNERHOOK argument is not nested either.
    c.py("GB('CommandReader').map(lambda x: call_next(*x[1:])).register(hook='set', mode='sync')");
    assert_eq!(c.cmd(&["SET", "a", "1"]), bulk("OK"));
    assert_eq!(c.cmd(&["GET", "a"]), bulk("1"));
    alive(&mut c);
}

#[test]
fn a_sync_stream_registration_drains_a_long_backlog_without_recursion() {
    let s = Server::start(&[]);
    let mut c = s.client();
    c.set_timeout(Duration::from_secs(600));
    c.cmd(&[
        "EVAL",
        "for i = 1, tonumber(ARGV[1]) do redis.call('XADD', KEYS[1], '*', 'n', i) end return 1",
        "1",
        "s",
        "100000",
    ]);
    assert_eq!(
        c.py("GB('StreamReader').foreach(lambda x: execute('INCR', 'seen')).register(prefix='s', mode='sync')"),
        ok()
    );
    assert_eq!(c.cmd(&["GET", "seen"]), bulk("100000"));
    assert_eq!(c.cmd(&["XLEN", "s"]).int(), 0);
    alive(&mut c);
}

#[test]
fn hooks_events_and_runs_act_on_the_clients_database() {
    let s = Server::start(&[]);
    let mut c = s.client();
    // A hook with call_next, from database 5.
    c.py("GB('CommandReader').map(lambda x: call_next(*x[1:])).register(hook='hset', mode='sync')");
    c.cmd(&["SELECT", "5"]);
    // (A hook's reply is its result, here the str of call_next's.)
    assert_eq!(c.cmd(&["HSET", "myhash", "f", "v"]), bulk("1"));
    assert_eq!(c.cmd(&["HGET", "myhash", "f"]), bulk("v"));
    c.cmd(&["SELECT", "0"]);
    assert_eq!(c.cmd(&["EXISTS", "myhash"]).int(), 0);
    // A sync KeysReader registration: its record and its execute() are in
    // the database of the event.
    c.py("GB().foreach(lambda x: execute('SET', 'copy:' + x['key'], x['value'])).register(prefix='k*', mode='sync', eventTypes=['set'])");
    c.cmd(&["SELECT", "3"]);
    c.cmd(&["SET", "k1", "hello"]);
    assert_eq!(c.cmd(&["GET", "copy:k1"]), bulk("hello"));
    c.cmd(&["SELECT", "0"]);
    assert_eq!(c.cmd(&["EXISTS", "copy:k1"]).int(), 0);
    // An async one too.
    c.py("GB().foreach(lambda x: execute('SET', 'acopy:' + x['key'], x['value'])).register(prefix='a*', eventTypes=['set'])");
    c.cmd(&["SELECT", "4"]);
    c.cmd(&["SET", "a1", "there"]);
    assert!(s.wait_for(10, || c.cmd(&["GET", "acopy:a1"]) == bulk("there")));
    c.cmd(&["SELECT", "0"]);
    assert_eq!(c.cmd(&["EXISTS", "acopy:a1"]).int(), 0);
    // run() reads the client's database; the script body writes there.
    c.cmd(&["SELECT", "2"]);
    c.cmd(&["SET", "only:2", "x"]);
    let r = c.py("execute('SET', 'body:2', 'y')\nGB().map(lambda x: x['key']).run('only:*')");
    assert_eq!(r.results(), ["only:2"]);
    assert_eq!(c.cmd(&["GET", "body:2"]), bulk("y"));
    // A key-miss function linked to GET fills the key in the client's
    // database and answers for it.
    c.py("def fill(x):\n    execute('SET', x['key'], 'filled')\n    override_reply('filled:' + x['key'])\nGB().foreach(fill).register(prefix='miss:*', commands=['get'], eventTypes=['keymiss'], mode='sync')");
    c.cmd(&["SELECT", "7"]);
    assert_eq!(c.cmd(&["GET", "miss:1"]), bulk("filled:miss:1"));
    assert_eq!(c.cmd(&["GET", "miss:1"]), bulk("filled"));
    c.cmd(&["SELECT", "0"]);
    assert_eq!(c.cmd(&["EXISTS", "miss:1"]).int(), 0);
    // A trigger too.
    c.py("GB('CommandReader').map(lambda x: execute('SET', x[1], 'trig')).register(trigger='put')");
    c.cmd(&["SELECT", "6"]);
    c.cmd(&["RG.TRIGGER", "put", "t6"]);
    assert_eq!(c.cmd(&["GET", "t6"]), bulk("trig"));
    c.cmd(&["SELECT", "0"]);
    assert_eq!(c.cmd(&["EXISTS", "t6", "body:2", "only:2"]).int(), 0);
}

/// Creates the user `limited` (`~app:* +@all -@dangerous`, the guide's
/// example) and returns a client logged in as it.
fn limited_client(s: &Server, admin: &mut Client) -> Client {
    s.client_as(admin, "limited", &["~app:*", "+@all", "-@dangerous"])
}

#[test]
fn python_runs_with_the_permissions_of_its_user() {
    let s = Server::start(&[]);
    let mut admin = s.client();
    let mut c = limited_client(&s, &mut admin);
    admin.cmd(&["SET", "secret:x", "s3cret"]);
    admin.cmd(&["SET", "app:a", "1"]);
    let maxmemory = admin.cmd(&["CONFIG", "GET", "maxmemory"]);
    assert!(c
        .cmd(&["CONFIG", "SET", "maxmemory", "1"])
        .error()
        .starts_with("NOPERM"));
    // execute() from a step and from the script body.
    let r = c.py(
        "GB('ShardsIDReader').map(lambda x: execute('CONFIG','SET','maxmemory','12345')).run()",
    );
    assert!(r.errors()[0].contains("NOPERM"), "{r:?}");
    let err = c.py("execute('GET', 'secret:x')").error();
    assert!(err.contains("NOPERM"), "{err}");
    assert_eq!(admin.cmd(&["CONFIG", "GET", "maxmemory"]), maxmemory);
    // KeysReader only sees the keys the user may read.
    let r = c.py("GB().map(lambda x: x['key']).run()");
    assert_eq!(r.results(), ["app:a"]);
    let r = c.py("GB().map(lambda x: x['value']).run('secret:x', noScan=True)");
    assert!(r.results().is_empty(), "{r:?}");
    // A registration of the limited user hears only of its keys, and its
    // functions run as that user.
    c.py("GB().foreach(lambda x: execute('INCR', 'app:count')).register(prefix='*', mode='sync', readValue=False, eventTypes=['set'])");
    admin.cmd(&["SET", "secret:y", "1"]);
    assert_eq!(admin.cmd(&["GET", "app:count"]), Value::Nil);
    admin.cmd(&["SET", "app:b", "1"]);
    assert_eq!(admin.cmd(&["GET", "app:count"]), bulk("1"));
    // A hooked command the user may not run stays refused.
    admin.cmd(&["ACL", "SETUSER", "limited", "-hset"]);
    admin.py(
        "GB('CommandReader').map(lambda x: call_next(*x[1:])).register(hook='hset', mode='sync')",
    );
    let err = c.cmd(&["HSET", "app:h", "f", "v"]).error();
    assert!(err.contains("NOPERM"), "{err}");
    assert_eq!(admin.cmd(&["EXISTS", "app:h"]).int(), 0);
    assert_eq!(admin.cmd(&["HSET", "app:h", "f", "v"]), bulk("1"));
}

#[test]
fn writes_from_python_respect_maxmemory() {
    let s = Server::start(&[]);
    let mut c = s.client();
    c.cmd(&["CONFIG", "SET", "maxmemory", "1"]);
    let r = c.py("GB('ShardsIDReader').map(lambda x: execute('SET', 'big', 'x')).run()");
    assert!(r.errors()[0].contains("OOM"), "{r:?}");
    c.cmd(&["CONFIG", "SET", "maxmemory", "0"]);
    assert_eq!(c.cmd(&["EXISTS", "big"]).int(), 0);
}

/// A StreamReader whose step fails until the key `gate` is set, recording
/// each message it processed in the list `done`.
const GATED: &str = "def f(x):\n    if execute('GET', 'gate') != '1':\n        raise Exception('closed')\n    execute('RPUSH', 'done', x['key'] + '/' + x['id'])\n";

fn processed(c: &mut Client) -> Vec<String> {
    c.cmd(&["LRANGE", "done", "0", "-1"]).texts()
}

#[test]
fn a_stream_drains_its_backlog_once_a_failure_clears() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let script = format!("{GATED}GB('StreamReader').foreach(f).register(prefix='gated', batch=5, onFailedPolicy='retry', onFailedRetryInterval=1)");
    assert_eq!(c.py(&script), ok());
    // A first batch of five fails; the other fifteen come while it fails.
    for i in 0..5 {
        c.cmd(&["XADD", "gated", "*", "n", &i.to_string()]);
    }
    assert!(s.wait_for(10, || c.registrations()[0].count("numFailures") >= 1));
    for i in 5..20 {
        c.cmd(&["XADD", "gated", "*", "n", &i.to_string()]);
    }
    assert!(
        holds_for(Duration::from_millis(300), || processed(&mut c).is_empty()),
        "processed while failing: {:?}",
        processed(&mut c)
    );
    c.cmd(&["SET", "gate", "1"]);
    assert!(
        s.wait_for(20, || processed(&mut c).len() >= 20),
        "processed: {:?}",
        processed(&mut c)
    );
    // Everything acknowledged and no batch running: nothing more comes.
    assert!(
        s.wait_for(10, || {
            let pending = c.cmd(&["XPENDING", "gated", "__gears_consumer_group__"]);
            pending.array()[0].int() == 0 && c.registrations()[0].settled()
        }),
        "{:?}",
        c.registrations()
    );
    let done = processed(&mut c);
    let mut unique = done.clone();
    unique.sort();
    unique.dedup();
    assert_eq!((done.len(), unique.len()), (20, 20), "{done:?}");
    let pending = c.cmd(&["XPENDING", "gated", "__gears_consumer_group__"]);
    assert_eq!(pending.array()[0].int(), 0);
}

#[test]
fn each_failing_stream_of_a_registration_is_retried() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let script = format!("{GATED}GB('StreamReader').foreach(f).register(prefix='two:*', onFailedPolicy='retry', onFailedRetryInterval=1, trimStream=False)");
    assert_eq!(c.py(&script), ok());
    c.cmd(&["XADD", "two:a", "1-1", "n", "a"]);
    c.cmd(&["XADD", "two:b", "1-1", "n", "b"]);
    assert!(s.wait_for(10, || c.registrations()[0].count("numFailures") >= 2));
    c.cmd(&["SET", "gate", "1"]);
    assert!(s.wait_for(20, || processed(&mut c).len() >= 2));
    // A fixed window longer than the retry interval (1 s): a stream retried
    // once more than needed would process its message again meanwhile.
    assert!(
        holds_for(Duration::from_millis(1500), || processed(&mut c).len() == 2),
        "processed again: {:?}",
        processed(&mut c)
    );
    let mut done = processed(&mut c);
    done.sort();
    assert_eq!(done, ["two:a/1-1", "two:b/1-1"]);
    // A message to another stream while the registration waits to retry
    // is processed once it resumes.
    c.cmd(&["DEL", "gate", "done"]);
    let failures = c.registrations()[0].count("numFailures");
    c.cmd(&["XADD", "two:c", "1-1", "n", "c"]);
    assert!(s.wait_for(10, || c.registrations()[0].count("numFailures") > failures));
    c.cmd(&["XADD", "two:d", "1-1", "n", "d"]);
    c.cmd(&["SET", "gate", "1"]);
    assert!(s.wait_for(20, || processed(&mut c).len() >= 2));
    // A fixed window longer than the retry interval (1 s): a stream retried
    // once more than needed would process its message again meanwhile.
    assert!(
        holds_for(Duration::from_millis(1500), || processed(&mut c).len() == 2),
        "processed again: {:?}",
        processed(&mut c)
    );
    let mut done = processed(&mut c);
    done.sort();
    assert_eq!(done, ["two:c/1-1", "two:d/1-1"]);
}

#[test]
fn an_execution_never_ends_holding_the_redis_lock() {
    let s = Server::start(&[]);
    let mut c = s.client();
    c.set_timeout(Duration::from_secs(20));
    // A generator kept suspended inside atomic() when the execution ends.
    let r = c.py("keep = []\ndef gen():\n    with atomic():\n        yield 1\ndef f(x):\n    g = gen()\n    next(g)\n    keep.append(g)\n    return 'left'\nGB('ShardsIDReader').map(f).run()");
    assert_eq!(r.results(), ["left"]);
    alive(&mut c);
    // An abort that lands while a step goes in and out of atomic().
    for _ in 0..5 {
        let id = c
            .cmd(&[
                "RG.PYEXECUTE",
                "def f(x):\n    while True:\n        with atomic():\n            pass\nGB('ShardsIDReader').map(f).run()",
                "UNBLOCKING",
            ])
            .text();
        assert!(
            s.wait_for(10, || c.execution_status(&id).as_deref() == Some("running")),
            "{:?}",
            c.execution_status(&id)
        );
        assert_eq!(c.cmd(&["RG.ABORTEXECUTION", &id]), ok());
        alive(&mut c);
        assert_eq!(c.cmd(&["SET", "after", "1"]), ok());
    }
}

fn used_memory(c: &mut Client) -> i64 {
    c.info_int("memory", "used_memory")
        .expect("used_memory in INFO memory")
}

#[test]
fn runs_leave_no_memory_behind() {
    let s = Server::start(&[]);
    let mut c = s.client();
    for i in 0..10 {
        c.cmd(&["SET", &format!("k{i}"), "v"]);
    }
    c.cmd(&["XADD", "st", "*", "f", "v"]);
    for script in [
        "GB().map(lambda x: x['key']).run()",
        "GB('ShardsIDReader').run()",
        "GB('PythonReader').run(lambda: iter([1, 2, 3]))",
        "GB('StreamReader').run('st')",
    ] {
        for _ in 0..200 {
            c.py(script);
        }
        let before = used_memory(&mut c);
        for _ in 0..3000 {
            c.py(script);
        }
        let grown = used_memory(&mut c) - before;
        assert!(
            grown < 300_000,
            "{script}: used_memory grew by {grown} bytes over 3000 runs"
        );
    }
}

#[test]
fn keys_are_read_correctly_on_a_cluster_node() {
    let s = Server::start_with(&["--cluster-enabled", "yes"], &[]);
    let mut c = s.client();
    c.cmd(&["CLUSTER", "ADDSLOTSRANGE", "0", "16383"]);
    assert!(s.wait_for(10, || c
        .cmd(&["CLUSTER", "INFO"])
        .text()
        .contains("cluster_state:ok")));
    for (k, v) in [("a", "1"), ("b", "2"), ("c", "3")] {
        c.cmd(&["SET", k, v]);
    }
    c.cmd(&["RPUSH", "l", "x", "y"]);
    c.cmd(&["HSET", "h", "f", "v"]);
    let r = c.py("GB().map(lambda x: (x['key'], x['type'], x['value'])).sort().run()");
    assert!(r.errors().is_empty(), "{r:?}");
    assert_eq!(
        r.results(),
        [
            "('a', 'string', '1')",
            "('b', 'string', '2')",
            "('c', 'string', '3')",
            "('h', 'hash', {'f': 'v'})",
            "('l', 'list', ['x', 'y'])",
        ]
    );
}

#[test]
fn the_module_refuses_to_unload() {
    let s = Server::start_with(&["--enable-module-command", "yes"], &[]);
    let mut c = s.client();
    let err = c.cmd(&["MODULE", "UNLOAD", "rg"]);
    assert!(
        matches!(&err, Value::Error(e) if e.contains("unload")),
        "{err:?}"
    );
    let r = c.py("GB('ShardsIDReader').map(lambda x: 'still here').run()");
    assert_eq!(r.results(), ["still here"]);
}

#[test]
fn nothing_is_written_on_a_read_only_replica() {
    let master = Server::start(&[]);
    let replica = Server::replica_of(&master);
    let mut r = replica.client();
    let reply =
        r.py("GB('ShardsIDReader').map(lambda x: execute('SET', 'from:replica', '1')).run()");
    let errors = reply.errors();
    assert_eq!(errors.len(), 1, "{reply:?}");
    assert_eq!(r.cmd(&["EXISTS", "from:replica"]).int(), 0);
    // Reading still works.
    let reply = r.py("GB('ShardsIDReader').map(lambda x: execute('PING')).run()");
    assert_eq!(reply.results(), ["PONG"]);
}

#[test]
fn queued_executions_are_bounded() {
    let s = Server::start(&["ExecutionThreads", "1", "MaxQueuedExecutions", "1"]);
    let mut c = s.client();
    let busy = "import time\ndef f(x):\n    while True:\n        time.sleep(0.01)\nGB('ShardsIDReader').map(f).run()";
    let first = c.cmd(&["RG.PYEXECUTE", busy, "UNBLOCKING"]).text();
    // The worker takes it.
    assert!(
        s.wait_for(10, || {
            c.execution_status(&first).as_deref() == Some("running")
        }),
        "{:?}",
        c.execution_status(&first)
    );
    // The only worker is busy: one execution may wait, the next is refused.
    let second = c
        .cmd(&["RG.PYEXECUTE", "GB('ShardsIDReader').run()", "UNBLOCKING"])
        .text();
    let err = c
        .cmd(&["RG.PYEXECUTE", "GB('ShardsIDReader').run()", "UNBLOCKING"])
        .error();
    assert!(err.contains("too many executions are waiting"), "{err}");
    // A registration's execution is refused the same way, as a failure.
    c.py("GB('CommandReader').register(trigger='t')");
    let err = c.cmd(&["RG.TRIGGER", "t"]).error();
    assert!(err.contains("MaxQueuedExecutions is 1"), "{err}");
    assert_eq!(c.registrations()[0].count("numFailures"), 1);
    c.cmd(&["RG.ABORTEXECUTION", &first]);
    assert!(s.wait_for(10, || matches!(
        c.cmd(&["RG.GETRESULTS", &second]),
        Value::Array(a) if a.len() == 2
    )));
    assert_eq!(
        c.cmd(&["RG.TRIGGER", "t", "x"]),
        Value::Array(vec![bulk("['t', 'x']")])
    );
}

#[test]
fn runaway_python_on_the_main_thread_leaves_redis_responsive_and_can_be_killed() {
    let s = Server::start(&[]);
    let mut admin = s.client();
    admin.cmd(&["CONFIG", "SET", "busy-reply-threshold", "100"]);
    let err = admin.cmd(&["RG.PYKILL"]).error();
    assert!(err.starts_with("NOTBUSY"), "{err}");
    // A script body that never ends.
    let mut runner = s.client();
    runner.send(&["RG.PYEXECUTE", "while True:\n    pass"]);
    let mut other = s.client();
    // Answered at once until the script has run past the threshold.
    let mut busy = Value::Nil;
    assert!(
        s.wait_for(10, || {
            busy = other.cmd(&["PING"]);
            matches!(&busy, Value::Error(e) if e.starts_with("BUSY"))
        }),
        "{busy:?}"
    );
    assert_eq!(other.cmd(&["RG.PYKILL"]), ok());
    let killed = runner.read().error();
    assert!(killed.contains("killed"), "{killed}");
    alive(&mut other);
    // A sync function that never ends, inside a client's SET.
    admin.py("def f(x):\n    while True:\n        pass\nGB().foreach(f).register(prefix='spin', mode='sync', eventTypes=['set'])");
    runner.send(&["SET", "spin", "1"]);
    let mut busy = Value::Nil;
    assert!(
        s.wait_for(10, || {
            busy = other.cmd(&["GET", "spin"]);
            matches!(&busy, Value::Error(e) if e.starts_with("BUSY"))
        }),
        "{busy:?}"
    );
    assert_eq!(other.cmd(&["RG.PYKILL"]), ok());
    assert_eq!(runner.read(), ok());
    assert_eq!(other.cmd(&["GET", "spin"]), bulk("1"));
    let last = other.registrations()[0].field("lastError").text();
    assert!(last.contains("killed"), "{last}");
}

#[test]
fn the_modules_own_reads_raise_no_key_misses() {
    let s = Server::start(&[]);
    let mut c = s.client();
    // Two registrations on every event: reading the missing key for one
    // must not raise a key miss that triggers the other, back and forth.
    c.py("GB().register()");
    c.py("GB().register()");
    c.cmd(&["GET", "missing"]);
    // A key miss fires while the read that raises it runs: once both
    // executions have ended, any firing they caused is counted (and a
    // back and forth would keep one running).
    assert!(
        s.wait_for(10, || {
            c.registrations()
                .iter()
                .all(|r| r.count("numTriggered") >= 1 && r.settled())
        }),
        "{:?}",
        c.registrations()
    );
    let triggered: Vec<i64> = c
        .registrations()
        .iter()
        .map(|r| r.count("numTriggered"))
        .collect();
    assert_eq!(triggered, [1, 1]);
}

#[test]
fn trimming_never_deletes_an_entry_still_pending() {
    let s = Server::start(&[]);
    let mut c = s.client();
    // 1-1 is read by another consumer of the group and not acknowledged.
    c.cmd(&[
        "XGROUP",
        "CREATE",
        "tr",
        "__gears_consumer_group__",
        "0",
        "MKSTREAM",
    ]);
    c.cmd(&["XADD", "tr", "1-1", "n", "1"]);
    c.cmd(&[
        "XREADGROUP",
        "GROUP",
        "__gears_consumer_group__",
        "other",
        "COUNT",
        "1",
        "STREAMS",
        "tr",
        ">",
    ]);
    c.py("GB('StreamReader').foreach(lambda x: execute('RPUSH', 'done', x['id'])).register(prefix='tr', trimStream=True)");
    c.cmd(&["XADD", "tr", "2-1", "n", "2"]);
    assert!(
        s.wait_for(10, || c.cmd(&["LRANGE", "done", "0", "-1"]).texts()
            == ["2-1"])
    );
    // 2-1 is acknowledged, and the trim goes with the acknowledgement
    // (under the same lock): only 1-1 is left pending.
    assert!(
        s.wait_for(10, || {
            let pending = c.cmd(&["XPENDING", "tr", "__gears_consumer_group__"]);
            pending.array()[0].int() == 1
        }),
        "{:?}",
        c.cmd(&["XPENDING", "tr", "__gears_consumer_group__"])
    );
    let ids: Vec<String> = c
        .cmd(&["XRANGE", "tr", "-", "+"])
        .array()
        .iter()
        .map(|e| e.array()[0].text())
        .collect();
    // MINID trims a prefix: nothing from the pending entry on may go.
    assert_eq!(ids, ["1-1", "2-1"]);
}

#[test]
fn a_client_that_leaves_while_blocked_harms_nothing() {
    let s = Server::start(&[]);
    let mut c = s.client();
    {
        let mut gone = s.client();
        gone.send(&[
            "RG.PYEXECUTE",
            "import time\nGB('ShardsIDReader').map(lambda x: time.sleep(0.5) or 'late').run()",
        ]);
        // It leaves once its run has started.
        assert!(
            s.wait_for(10, || !c.executions().is_empty()),
            "the run did not start"
        );
    }
    // The execution finished and was dropped like any blocking run.
    assert!(
        s.wait_for(10, || c.executions().is_empty()),
        "{:?}",
        c.executions()
    );
    alive(&mut c);
    assert_eq!(c.cmd(&["RG.DUMPEXECUTIONS"]), Value::Array(vec![]));
}

#[test]
fn values_that_raise_when_shown_become_error_records() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let script = "class Bad:\n    def __str__(self):\n        raise ValueError('no str')\n    def __repr__(self):\n        raise ValueError('no repr')\n    def __eq__(self, other):\n        raise ValueError('no eq')\nGB('ShardsIDReader').map(lambda x: Bad()).run()";
    let r = c.py(script);
    assert!(r.array()[0].array().is_empty(), "{r:?}");
    assert!(r.errors()[0].contains("no str"), "{r:?}");
    // Without the str() step, the object replies as an opaque record.
    let r = c.py(&script.replace(".run()", ".run(convertToStr=False)"));
    assert_eq!(r.results(), ["PY RECORD"]);
    alive(&mut c);
}

#[test]
fn a_replica_passes_hooked_commands_from_its_master() {
    let master = Server::start(&[]);
    let replica = Server::replica_of(&master);
    let mut m = master.client();
    m.py("GB('CommandReader').map(lambda x: call_next(*x[1:])).register(hook='set', mode='sync')");
    let mut r = replica.client();
    assert!(
        replica.wait_for(10, || r.registrations().len() == 1),
        "{}",
        replica.log()
    );
    m.cmd(&["SET", "x", "1"]);
    assert!(replica.wait_for(10, || r.cmd(&["GET", "x"]) == bulk("1")));
    alive(&mut r);
}

#[test]
fn commands_python_calls_run_as_its_user() {
    let s = Server::start(&[]);
    let mut admin = s.client();
    let mut c = limited_client(&s, &mut admin);
    admin.cmd(&["SET", "secret:x", "s3cret"]);
    admin.py("GB('CommandReader').map(lambda x: execute('GET', 'secret:x')).register(trigger='peek', mode='sync')");
    assert_eq!(
        admin.cmd(&["RG.TRIGGER", "peek"]),
        Value::Array(vec![bulk("s3cret")])
    );
    // Directly, and through execute() from the user's own Python.
    assert!(c.cmd(&["RG.TRIGGER", "peek"]).error().contains("NOPERM"));
    let r = c.py("GB('ShardsIDReader').map(lambda x: execute('RG.TRIGGER', 'peek')).run()");
    assert!(r.results().is_empty(), "{r:?}");
    assert!(r.errors()[0].contains("NOPERM"), "{r:?}");
}

#[test]
fn callers_whose_user_is_unknown_are_refused() {
    let s = Server::start(&[]);
    let mut admin = s.client();
    let mut c = limited_client(&s, &mut admin);
    admin.cmd(&["SET", "secret:token", "abc"]);
    admin.py("GB('CommandReader').map(lambda x: call_next(*x[1:])).register(hook='set', mode='sync', keyprefix='secret:')");
    // From Lua the hooked command's user can not be known, but Redis
    // checks its key permissions on RG.INNERHOOK's keys: refused.
    let err = c
        .cmd(&["EVAL", "return redis.call('SET', 'secret:token', 'x')", "0"])
        .error();
    assert!(
        err.contains("can't access at least one of the keys"),
        "{err}"
    );
    assert_eq!(admin.cmd(&["GET", "secret:token"]), bulk("abc"));
    // Commands that check permissions themselves are refused to Python
    // acting for a user.
    for cmd in [
        "execute('EVAL', \"return redis.call('GET', 'secret:token')\", '0')",
        "execute('SORT', 'app:list', 'BY', 'secret:*')",
    ] {
        let r = c.py(&format!("GB('ShardsIDReader').map(lambda x: {cmd}).run()"));
        assert!(r.errors()[0].contains("NOPERM"), "{cmd}: {r:?}");
    }
}

#[test]
fn a_full_queue_loses_no_stream_message() {
    let s = Server::start(&["ExecutionThreads", "1", "MaxQueuedExecutions", "1"]);
    let mut c = s.client();
    c.py("GB('StreamReader').foreach(lambda x: execute('SADD', 'done', x['id'])).register(prefix='q', onFailedPolicy='continue', onFailedRetryInterval=1)");
    let busy = "import time\ndef f(x):\n    while True:\n        time.sleep(0.01)\nGB('ShardsIDReader').map(f).run()";
    let first = c.cmd(&["RG.PYEXECUTE", busy, "UNBLOCKING"]).text();
    // The worker takes it: the queue is free for one execution.
    assert!(
        s.wait_for(10, || {
            c.execution_status(&first).as_deref() == Some("running")
        }),
        "{:?}",
        c.execution_status(&first)
    );
    for i in 0..10 {
        c.cmd(&["XADD", "q", "*", "n", &i.to_string()]);
    }
    // The messages reached the registration while the worker is busy.
    assert!(
        s.wait_for(10, || c.registrations()[0].count("numTriggered") >= 1),
        "{:?}",
        c.registrations()
    );
    c.cmd(&["RG.ABORTEXECUTION", &first]);
    assert!(
        s.wait_for(20, || c.cmd(&["SCARD", "done"]).int() == 10),
        "processed {}",
        c.cmd(&["SCARD", "done"]).int()
    );
}

#[test]
fn a_registration_whose_owner_was_deleted_fires_nothing() {
    let s = Server::start(&[]);
    let mut admin = s.client();
    admin.cmd(&["ACL", "SETUSER", "gone", "on", ">pw", "~app:*", "+@all"]);
    let mut c = s.client();
    c.cmd(&["AUTH", "gone", "pw"]);
    c.py("GB().foreach(lambda x: execute('INCR', 'app:count')).register(prefix='app:*', mode='sync', eventTypes=['set'])");
    drop(c);
    admin.cmd(&["ACL", "DELUSER", "gone"]);
    admin.cmd(&["SET", "app:x", "1"]);
    alive(&mut admin);
    assert_eq!(admin.cmd(&["GET", "app:count"]), Value::Nil);
}

#[test]
fn threads_and_on_registered_act_as_their_user() {
    let s = Server::start(&[]);
    let mut admin = s.client();
    let mut c = limited_client(&s, &mut admin);
    c.cmd(&["SELECT", "2"]);
    // A thread a step starts acts as the step: same user, same database.
    let r = c.py(
        "import threading\n\
         def step(x):\n    out = []\n    def work():\n        execute('set', 'app:thread', 'db2')\n        try:\n            execute('set', 'elsewhere', 'x')\n        except Exception as e:\n            out.append(str(e)[:6])\n    t = threading.Thread(target=work)\n    t.start()\n    t.join()\n    return ','.join(out)\n\
         GB('ShardsIDReader').map(step).run()",
    );
    assert_eq!(r.results(), ["NOPERM"]);
    admin.cmd(&["SELECT", "2"]);
    assert_eq!(admin.cmd(&["GET", "app:thread"]), bulk("db2"));
    for db in ["0", "2"] {
        admin.cmd(&["SELECT", db]);
        assert_eq!(admin.cmd(&["EXISTS", "elsewhere"]).int(), 0, "db {db}");
    }
    // So does a Thread subclass with its own run(), such as Timer.
    let r = c.py(
        "import threading\n\
         class Worker(threading.Thread):\n    def run(self):\n        execute('set', 'app:subclass', 'db2')\n\
         def step(x):\n    t = Worker()\n    t.start()\n    t.join()\n    u = threading.Timer(0.01, lambda: execute('set', 'app:timer', 'db2'))\n    u.start()\n    u.join()\n    return 'done'\n\
         GB('ShardsIDReader').map(step).run()",
    );
    assert_eq!(r.results(), ["done"]);
    admin.cmd(&["SELECT", "2"]);
    assert_eq!(admin.cmd(&["GET", "app:subclass"]), bulk("db2"));
    assert_eq!(admin.cmd(&["GET", "app:timer"]), bulk("db2"));
    // onRegistered runs as the registration's owner.
    let r = c.py(
        "def init():\n    execute('set', 'app:init', '1')\n    execute('set', 'not-mine', '1')\n\
         GB('CommandReader').register(trigger='owned', onRegistered=init)",
    );
    assert_eq!(r, ok());
    admin.cmd(&["SELECT", "0"]);
    assert_eq!(admin.cmd(&["GET", "app:init"]), bulk("1"));
    assert_eq!(admin.cmd(&["EXISTS", "not-mine"]).int(), 0);
    assert!(s.log().contains("onRegistered of registration"));
}
