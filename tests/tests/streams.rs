//! StreamReader: run() over a stream and consumer-group registrations.

use gears_tests::{bulk, holds_for, Client, Server, Value};
use std::time::Duration;

fn status(c: &mut Client) -> String {
    c.registrations()[0].field("status").text()
}

fn pending(c: &mut Client, key: &str) -> i64 {
    c.cmd(&["XPENDING", key, "__gears_consumer_group__"])
        .array()[0]
        .int()
}

#[test]
fn run_reads_a_stream_from_an_id() {
    let s = Server::start(&[]);
    let mut c = s.client();
    for (id, v) in [("1-1", "a"), ("2-1", "b"), ("3-1", "c")] {
        c.cmd(&["XADD", "s", id, "f", v]);
    }
    let r = c.py(
        "GB('StreamReader').map(lambda x: f\"{x['key']} {x['id']} {x['value']['f']}\").run('s')",
    );
    assert_eq!(r.results(), ["s 1-1 a", "s 2-1 b", "s 3-1 c"]);
    let r = c.py("GB('StreamReader').map(lambda x: x['id']).run('s', fromId='1-1')");
    assert_eq!(r.results(), ["2-1", "3-1"]);
    let r = c.py("GB('StreamReader').run('nostream')");
    assert_eq!(r.results(), Vec::<String>::new());
}

#[test]
fn registration_consumes_acks_and_trims() {
    let s = Server::start(&[]);
    let mut c = s.client();
    c.cmd(&["XADD", "mystream", "*", "before", "1"]);
    // examples.md "Basic Redis Stream Processing" uses x['streamId'], which
    // records do not have: every run fails (as in 1.2) and is counted.
    c.py("gb = GearsBuilder('StreamReader')\ngb.foreach(lambda x: execute('HMSET', x['streamId'], *x))\ngb.register('mystream')");
    assert!(s.wait_for(10, || c.registrations()[0].count("numFailures") >= 1));
    let last = c.registrations()[0].field("lastError").text();
    assert!(last.contains("KeyError: 'streamId'"), "{last}");
    let id = c.registrations()[0].id.clone();
    c.cmd(&["RG.UNREGISTER", &id]);
    // The intended version: copy each message to a hash named by its id.
    c.py("gb = GearsBuilder('StreamReader')\ngb.foreach(lambda x: execute('HSET', x['id'], *sum(x['value'].items(), ())))\ngb.register('mystream', batch=2)");
    let mut ids = Vec::new();
    // Six messages: full batches of two (a seventh would wait for its pair).
    for i in 0..6 {
        ids.push(
            c.cmd(&["XADD", "mystream", "*", "n", &i.to_string()])
                .text(),
        );
    }
    for (i, id) in ids.iter().enumerate() {
        let id = id.clone();
        assert!(
            s.wait_for(10, || c.cmd(&["HGET", &id, "n"]) == bulk(&i.to_string())),
            "message {i} of 6 not processed: {:?} {:?} {:?}",
            c.cmd(&["XINFO", "GROUPS", "mystream"]),
            c.cmd(&["XPENDING", "mystream", "__gears_consumer_group__"]),
            c.registrations()[0].data
        );
    }
    assert!(
        s.wait_for(10, || c.cmd(&["XLEN", "mystream"]).int() == 0),
        "trimmed"
    );
    assert_eq!(pending(&mut c, "mystream"), 0);
    let reg = &c.registrations()[0];
    assert_eq!(reg.field("status"), bulk("OK"));
    assert_eq!(
        reg.field("args"),
        Value::Array(vec![
            bulk("batchSize"),
            Value::Int(2),
            bulk("durationMS"),
            Value::Int(0),
            bulk("stream"),
            bulk("mystream"),
            bulk("trimStream"),
            Value::Int(1),
            bulk("onFailedPolicy"),
            bulk("continue"),
            bulk("retryInterval"),
            Value::Int(1),
        ])
    );
    assert_eq!(
        c.cmd(&["RG.DUMPREGISTRATIONS"]).array()[0].array()[7]
            .array()
            .len(),
        26
    );
    // A lone message waits for its batch, unless `duration` flushes it.
    c.cmd(&["XADD", "mystream", "*", "n", "lonely"]);
    assert!(
        holds_for(Duration::from_millis(300), || {
            c.cmd(&["XLEN", "mystream"]).int() == 1
        }),
        "the lone message was read"
    );
    c.py("GB('StreamReader').foreach(lambda x: execute('SET', 'flushed', x['value']['n'])).register('timed', batch=100, duration=50)");
    c.cmd(&["XADD", "timed", "*", "n", "alone"]);
    assert!(s.wait_for(10, || c.cmd(&["GET", "flushed"]) == bulk("alone")));
}

#[test]
fn retry_processes_every_message_exactly_once_after_the_failure_clears() {
    let s = Server::start(&[]);
    let mut c = s.client();
    c.cmd(&["SET", "broken", "1"]);
    let script = "def f(x):\n    if execute('EXISTS', 'broken'):\n        raise Exception('not yet')\n    execute('RPUSH', 'done', x['value']['n'])\n\
GB('StreamReader').foreach(f).register(prefix='jobs', batch=3, onFailedPolicy='retry', onFailedRetryInterval=1, trimStream=False)";
    assert_eq!(c.py(script), Value::Status("OK".into()));
    for i in 0..10 {
        c.cmd(&["XADD", "jobs", "*", "n", &i.to_string()]);
    }
    assert!(s.wait_for(10, || status(&mut c) == "WAITING_FOR_RETRY_ON_FAILURE"));
    assert!(
        pending(&mut c, "jobs") > 0,
        "the failed batch stays pending"
    );
    // Fails again at least once more while broken.
    assert!(s.wait_for(10, || c.registrations()[0].count("numFailures") >= 2));
    c.cmd(&["DEL", "broken"]);
    assert!(s.wait_for(20, || c.cmd(&["LLEN", "done"]).int() >= 10));
    // Everything acknowledged and no batch running: nothing more comes.
    assert!(
        s.wait_for(10, || {
            pending(&mut c, "jobs") == 0 && c.registrations()[0].settled()
        }),
        "{:?}",
        c.registrations()
    );
    let expected: Vec<String> = (0..10).map(|i| i.to_string()).collect();
    assert_eq!(c.cmd(&["LRANGE", "done", "0", "-1"]).texts(), expected);
    assert_eq!(pending(&mut c, "jobs"), 0);
    assert_eq!(status(&mut c), "OK");
    assert_eq!(
        c.cmd(&["XLEN", "jobs"]).int(),
        10,
        "trimStream=False keeps them"
    );
}

#[test]
fn abort_stops_and_pending_messages_are_read_first_by_the_next_consumer() {
    let s = Server::start(&[]);
    let mut c = s.client();
    c.py("GB('StreamReader').foreach(lambda x: 1/0).register(prefix='a', onFailedPolicy='abort')");
    c.cmd(&["XADD", "a", "*", "n", "0"]);
    assert!(s.wait_for(10, || status(&mut c) == "ABORTED"));
    c.cmd(&["XADD", "a", "*", "n", "1"]);
    assert!(
        holds_for(Duration::from_millis(200), || {
            c.registrations()[0].count("numTriggered") == 1
        }),
        "aborted: no more runs"
    );
    assert_eq!(
        pending(&mut c, "a"),
        1,
        "the failed message was not acknowledged"
    );
    // As after a restart: a new registration reads the pending entry first.
    let id = c.registrations()[0].id.clone();
    c.cmd(&["RG.UNREGISTER", &id]);
    c.py("GB('StreamReader').foreach(lambda x: execute('RPUSH', 'got', x['value']['n'])).register(prefix='a')");
    assert!(s.wait_for(10, || c.cmd(&["LLEN", "got"]).int() == 2));
    assert_eq!(c.cmd(&["LRANGE", "got", "0", "-1"]).texts(), ["0", "1"]);
}

#[test]
fn pause_and_unpause() {
    let s = Server::start(&[]);
    let mut c = s.client();
    // A PAUSE error (flat_error) pauses the registration.
    c.py("def f(x):\n    if execute('EXISTS', 'hold'):\n        flat_error('PAUSE holding')\n    execute('RPUSH', 'out', x['value']['n'])\nGB('StreamReader').foreach(f).register(prefix='p')");
    let id = c.registrations()[0].id.clone();
    c.cmd(&["SET", "hold", "1"]);
    c.cmd(&["XADD", "p", "*", "n", "0"]);
    assert!(s.wait_for(10, || status(&mut c) == "PAUSED"));
    c.cmd(&["DEL", "hold"]);
    c.cmd(&["XADD", "p", "*", "n", "1"]);
    assert!(
        holds_for(Duration::from_millis(200), || {
            c.cmd(&["LLEN", "out"]).int() == 0
        }),
        "read while paused"
    );
    assert_eq!(
        c.cmd(&["RG.UNPAUSEREGISTRATIONS", &id]),
        Value::Status("OK".into())
    );
    assert!(s.wait_for(10, || c.cmd(&["LLEN", "out"]).int() == 2));
    assert_eq!(c.cmd(&["LRANGE", "out", "0", "-1"]).texts(), ["0", "1"]);
    // RG.PAUSEREGISTRATIONS, then messages wait until unpaused.
    assert_eq!(
        c.cmd(&["RG.PAUSEREGISTRATIONS", &id]),
        Value::Status("OK".into())
    );
    assert_eq!(status(&mut c), "PAUSED");
    c.cmd(&["XADD", "p", "*", "n", "2"]);
    assert!(
        holds_for(Duration::from_millis(200), || {
            c.cmd(&["LLEN", "out"]).int() == 2
        }),
        "read while paused"
    );
    c.cmd(&["RG.UNPAUSEREGISTRATIONS", &id]);
    assert!(s.wait_for(10, || c.cmd(&["LLEN", "out"]).int() == 3));
    // Errors.
    assert_eq!(
        c.cmd(&["RG.PAUSEREGISTRATIONS"]).error(),
        "ERR no registration to pause"
    );
    assert_eq!(
        c.cmd(&["RG.PAUSEREGISTRATIONS", "not_exists"]).error(),
        "Execution not_exists does not exists on shard 0000000000000000000000000000000000000000"
    );
    c.py("GB().register(prefix='k')");
    let keys_id = c.registrations()[1].id.clone();
    assert_eq!(
        c.cmd(&["RG.UNPAUSEREGISTRATIONS", &keys_id]).error(),
        "Reader KeysReader does not support unpause"
    );
}

#[test]
fn sync_stream_registration_runs_before_xadd_returns() {
    let s = Server::start(&[]);
    let mut c = s.client();
    c.py("GB('StreamReader').foreach(lambda x: execute('INCR', 'seen')).register(prefix='sy*', mode='sync')");
    for _ in 0..50 {
        c.cmd(&["XADD", "sy1", "*", "a", "1"]);
    }
    assert_eq!(c.cmd(&["GET", "seen"]), bulk("50"));
    assert_eq!(c.cmd(&["XLEN", "sy1"]).int(), 0);
}
