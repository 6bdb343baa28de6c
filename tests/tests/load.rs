//! The event path under load: bursts faster than the workers, many
//! registrations. Throughput itself is measured by `cargo xtask bench`;
//! these tests check what must hold whatever the speed.

use gears_tests::{Client, Server, Value};
use std::time::Duration;

fn ok() -> Value {
    Value::Status("OK".into())
}

/// Sends `n` SETs on `prefix` keys from `clients` connections, pipelined.
fn burst(s: &Server, prefix: &str, n: usize, clients: usize) {
    let per = n / clients;
    let handles: Vec<_> = (0..clients)
        .map(|k| {
            let port = s.port;
            let prefix = prefix.to_string();
            std::thread::spawn(move || {
                let mut c = Client::connect(port).unwrap();
                c.set_timeout(Duration::from_secs(120));
                for i in 0..per {
                    c.send(&["SET", &format!("{prefix}{k}:{i}"), "v"]);
                }
                for _ in 0..per {
                    assert_eq!(c.read(), ok());
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

const SLOW_ASYNC: &str = "import time\n\
def work(x):\n    time.sleep(0.001)\n    execute('INCR', 'seen')\n\
GB().foreach(work).register(prefix='a:*', eventTypes=['set'])";

/// A burst far beyond MaxQueuedExecutions: events are kept instead of
/// dropped; every event is processed once. With the AOF on, so that the
/// workers' writes propagate while the queue is over the limit.
#[test]
fn a_full_queue_loses_no_event() {
    let s = Server::start_with(
        &["--appendonly", "yes"],
        &["ExecutionThreads", "1", "MaxQueuedExecutions", "20"],
    );
    let mut c = s.client();
    assert_eq!(c.py(SLOW_ASYNC), ok());
    burst(&s, "a:", 2000, 4);
    assert!(
        s.wait_for(60, || c.int_at("seen") == 2000),
        "{} processed",
        c.int_at("seen")
    );
    let reg = &c.registrations()[0];
    assert_eq!(reg.count("numTriggered"), 2000);
    assert_eq!(reg.count("numSuccess"), 2000);
    assert_eq!(reg.count("numFailures"), 0);
    assert!(
        s.log().contains("beyond MaxQueuedExecutions"),
        "{}",
        s.log()
    );
    assert_eq!(c.cmd(&["SET", "after", "1"]), ok());
}

/// Dropping is what a user turns on: counted as failures, and logged.
#[test]
fn dropping_events_is_an_option_counted_and_logged() {
    let s = Server::start(&["ExecutionThreads", "1", "MaxQueuedExecutions", "5"]);
    let mut c = s.client();
    assert_eq!(
        c.cmd(&["RG.CONFIGSET", "DropEventsWhenQueueFull", "1"])
            .array()[0],
        ok()
    );
    assert_eq!(c.py(SLOW_ASYNC), ok());
    burst(&s, "a:", 500, 1);
    let reg = s.wait_for(30, || {
        let r = &c.registrations()[0];
        r.count("numSuccess") + r.count("numFailures") == 500
    });
    assert!(reg);
    let r = &c.registrations()[0];
    assert!(r.count("numFailures") > 0, "{r:?}");
    assert_eq!(c.int_at("seen"), r.count("numSuccess"));
    assert!(s.log().contains("was dropped"), "{}", s.log());
}

/// KeysReader and StreamReader registrations on other prefixes are not
/// consulted for an event: with a thousand of them the right one still
/// fires, once, and only it.
#[test]
fn many_registrations_on_other_prefixes() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let mut script = String::from("for i in range(1000):\n");
    script.push_str("    p = ['other:%d' % i, 'other:%d:*' % i, 'o*%d:*' % i][i % 3]\n");
    script.push_str(
        "    GB().foreach(lambda x: execute('INCR', 'wrong')).register(prefix=p, mode='sync')\n",
    );
    script.push_str("    GB('StreamReader').foreach(lambda x: execute('INCR', 'wrong')).register(prefix='s' + p)\n");
    script.push_str(
        "GB().foreach(lambda x: execute('INCR', 'right')).register(prefix='mine:*', mode='sync')\n",
    );
    script.push_str("GB('StreamReader').foreach(lambda x: execute('INCR', 'stream')).register(prefix='mystream', mode='sync')\n");
    let t = std::time::Instant::now();
    assert_eq!(c.py(&script), ok());
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    for i in 0..50 {
        assert_eq!(c.cmd(&["SET", &format!("mine:{i}"), "v"]), ok());
    }
    c.cmd(&["XADD", "mystream", "*", "f", "v"]);
    assert_eq!(c.int_at("right"), 50);
    assert!(s.wait_for(10, || c.int_at("stream") == 1));
    // Keys the other registrations match do fire them.
    c.cmd(&["SET", "other:3", "v"]);
    c.cmd(&["SET", "other:4:x", "v"]);
    c.cmd(&["SET", "o*5:y", "v"]);
    assert_eq!(c.int_at("wrong"), 3);
    assert_eq!(c.int_at("right"), 50);
}
