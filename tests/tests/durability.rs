//! Registrations that outlive the process: RDB, DEBUG RELOAD, AOF,
//! replicas.

use gears_tests::{bulk, holds_for, Client, Server, Value};
use std::time::Duration;

fn ok() -> Value {
    Value::Status("OK".into())
}

/// A trigger that counts in a module-level dict (session state), a sync
/// KeysReader registration and a StreamReader registration.
const SCRIPT: &str = "counter = {'n': 0}\n\
def count(x):\n    counter['n'] += 1\n    return counter['n']\n\
GB('CommandReader').map(count).register(trigger='count', mode='sync')\n\
GB().foreach(lambda x: execute('INCR', 'sets')).register(prefix='k:*', mode='sync', eventTypes=['set'])\n\
GB('StreamReader').foreach(lambda x: execute('INCR', 'messages')).register(prefix='s')";

/// (id, reader, args) of every registration.
fn registrations(c: &mut Client) -> Vec<(String, String, String)> {
    c.registrations()
        .iter()
        .map(|r| {
            (
                r.id.clone(),
                format!("{} {}", r.reader, r.field("mode").text()),
                format!("{:?}", r.field("args")),
            )
        })
        .collect()
}

fn works(s: &Server, c: &mut Client, expect_count: &str) {
    assert_eq!(
        c.cmd(&["RG.TRIGGER", "count"]),
        Value::Array(vec![bulk(expect_count)])
    );
    let sets = c.cmd(&["GET", "sets"]);
    c.cmd(&["SET", "k:1", "v"]);
    let before = if sets == Value::Nil {
        0
    } else {
        sets.text().parse::<i64>().unwrap()
    };
    assert_eq!(c.cmd(&["GET", "sets"]), bulk(&(before + 1).to_string()));
    let messages = c.cmd(&["GET", "messages"]);
    let before = if messages == Value::Nil {
        0
    } else {
        messages.text().parse::<i64>().unwrap()
    };
    c.cmd(&["XADD", "s", "*", "f", "v"]);
    let want = bulk(&(before + 1).to_string());
    assert!(s.wait_for(10, || c.cmd(&["GET", "messages"]) == want));
}

#[test]
fn registrations_survive_debug_reload_with_their_ids() {
    let s = Server::start_with(&["--enable-debug-command", "yes"], &[]);
    let mut c = s.client();
    assert_eq!(c.py(SCRIPT), ok());
    works(&s, &mut c, "1");
    let before = registrations(&mut c);
    assert_eq!(before.len(), 3);
    assert_eq!(c.cmd(&["DEBUG", "RELOAD"]), ok());
    assert_eq!(registrations(&mut c), before);
    // Module-level state comes back as it was when the function was
    // registered (it is saved with the callbacks then).
    works(&s, &mut c, "1");
    // Ids go on after the restored ones.
    c.py("GB('CommandReader').register(trigger='later')");
    let ids: Vec<String> = registrations(&mut c).into_iter().map(|r| r.0).collect();
    let last: u64 = ids[3].rsplit('-').next().unwrap().parse().unwrap();
    assert!(
        ids[..3]
            .iter()
            .all(|id| id.rsplit('-').next().unwrap().parse::<u64>().unwrap() < last),
        "{ids:?}"
    );
}

#[test]
fn registrations_survive_a_restart_from_rdb() {
    let mut s = Server::start(&[]);
    let mut c = s.client();
    assert_eq!(c.py(SCRIPT), ok());
    let before = registrations(&mut c);
    s.restart(&["SAVE"]);
    let mut c = s.client();
    assert_eq!(registrations(&mut c), before);
    works(&s, &mut c, "1");
    // An unregistration is saved too.
    let id = before[0].0.clone();
    assert_eq!(c.cmd(&["RG.UNREGISTER", &id]), ok());
    s.restart(&["SAVE"]);
    let mut c = s.client();
    assert_eq!(registrations(&mut c), before[1..].to_vec());
}

#[test]
fn registrations_survive_a_restart_from_the_aof() {
    let mut s = Server::start_with(&["--appendonly", "yes"], &[]);
    let mut c = s.client();
    assert_eq!(c.py(SCRIPT), ok());
    c.py("GB('CommandReader').register(trigger='gone')");
    let gone = registrations(&mut c)[3].0.clone();
    c.cmd(&["RG.UNREGISTER", &gone]);
    let before = registrations(&mut c);
    assert_eq!(before.len(), 3);
    // Replayed from the AOF's RG.INNERREGISTER / RG.INNERUNREGISTER.
    s.restart(&["NOSAVE"]);
    let mut c = s.client();
    assert_eq!(registrations(&mut c), before);
    works(&s, &mut c, "1");
    // After a rewrite, from the AOF's RDB preamble: one started (counted
    // when it forks) and none is in progress or scheduled any more.
    let rewrites = |c: &mut Client| c.info_int("persistence", "aof_rewrites").unwrap_or(0);
    let started = rewrites(&mut c);
    c.cmd(&["BGREWRITEAOF"]);
    assert!(
        s.wait_for(20, || {
            let info = c.cmd(&["INFO", "persistence"]).text();
            info.contains("aof_rewrite_in_progress:0")
                && info.contains("aof_rewrite_scheduled:0")
                && rewrites(&mut c) > started
        }),
        "the rewrite did not finish"
    );
    let info = c.cmd(&["INFO", "persistence"]).text();
    assert!(info.contains("aof_last_bgrewrite_status:ok"), "{info}");
    s.restart(&["NOSAVE"]);
    let mut c = s.client();
    assert_eq!(registrations(&mut c), before);
}

#[test]
fn replicas_hold_every_registration_and_fire_nothing() {
    let master = Server::start(&[]);
    let mut m = master.client();
    assert_eq!(m.py(SCRIPT), ok());
    // Attached after: the full sync brings the registrations.
    let replica = Server::replica_of(&master);
    let mut r = replica.client();
    assert_eq!(registrations(&mut r), registrations(&mut m));
    // Registered after: RG.INNERREGISTER reaches it.
    m.py("GB('CommandReader').register(trigger='late')");
    assert!(replica.wait_for(10, || registrations(&mut r).len() == 4));
    assert_eq!(registrations(&mut r), registrations(&mut m));
    // The master's registrations fire; the replica's only get the writes.
    m.cmd(&["SET", "k:1", "v"]);
    assert_eq!(m.cmd(&["GET", "sets"]), bulk("1"));
    assert!(replica.wait_for(10, || r.cmd(&["GET", "sets"]) == bulk("1")));
    // Events fire while the write that raises them is applied, and the SET
    // of k:1 comes before the INCR of sets: had the replica fired, it would
    // show by now.
    let fired: i64 = r
        .registrations()
        .iter()
        .map(|x| x.count("numTriggered"))
        .sum();
    assert_eq!(fired, 0);
    // An unregistration reaches it too.
    let id = registrations(&mut m)[3].0.clone();
    m.cmd(&["RG.UNREGISTER", &id]);
    assert!(replica.wait_for(10, || registrations(&mut r).len() == 3));
    // Promoted, it fires its registrations and consumes the stream from the
    // group the master left.
    assert_eq!(r.cmd(&["REPLICAOF", "NO", "ONE"]), ok());
    r.cmd(&["SET", "k:2", "v"]);
    assert_eq!(r.cmd(&["GET", "sets"]), bulk("2"));
    r.cmd(&["XADD", "s", "*", "f", "after"]);
    assert!(replica.wait_for(10, || r.cmd(&["GET", "messages"]) == bulk("1")));
}

#[test]
fn a_callback_that_can_not_be_saved_fails_register() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let err = c
        .py("import threading\nlock = threading.Lock()\nGB('CommandReader').map(lambda x: str(lock)).register(trigger='t')")
        .error();
    assert!(
        err.contains("Error occured when serialized a python callback, callback=<lambda>"),
        "{err}"
    );
    assert_eq!(c.cmd(&["RG.DUMPREGISTRATIONS"]), Value::Array(vec![]));
    // Clients can not inject registrations.
    let err = c.cmd(&["RG.INNERREGISTER", "x"]).error();
    assert!(err.contains("internal"), "{err}");
    let err = c.cmd(&["RG.INNERUNREGISTER", "x"]).error();
    assert!(err.contains("internal"), "{err}");
}

#[test]
fn no_stream_message_is_lost_across_a_crash() {
    let mut s = Server::start_with(&["--appendonly", "yes", "--appendfsync", "always"], &[]);
    let mut c = s.client();
    c.py("import time\ndef f(x):\n    time.sleep(0.02)\n    execute('SADD', 'done', x['id'])\nGB('StreamReader').foreach(f).register(prefix='jobs', batch=3)");
    let mut ids = Vec::new();
    for i in 0..60 {
        ids.push(c.cmd(&["XADD", "jobs", "*", "n", &i.to_string()]).text());
    }
    // Some processed, a batch in flight, the rest waiting: kill -9.
    assert!(s.wait_for(10, || c.cmd(&["SCARD", "done"]).int() >= 10));
    s.restart(&["KILL"]);
    let mut c = s.client();
    assert_eq!(c.registrations().len(), 1);
    assert!(
        s.wait_for(30, || c.cmd(&["SCARD", "done"]).int() == 60),
        "processed {} of 60",
        c.cmd(&["SCARD", "done"]).int()
    );
    for id in &ids {
        assert_eq!(c.cmd(&["SISMEMBER", "done", id]).int(), 1, "{id}");
    }
    // And across a plain shutdown and restart.
    for i in 60..70 {
        ids.push(c.cmd(&["XADD", "jobs", "*", "n", &i.to_string()]).text());
    }
    s.restart(&["NOSAVE"]);
    let mut c = s.client();
    assert!(s.wait_for(30, || c.cmd(&["SCARD", "done"]).int() == 70));
}

#[test]
fn sessions_are_dumped_and_survive_a_restart() {
    let mut s = Server::start(&[]);
    let mut c = s.client();
    assert_eq!(
        c.cmd(&[
            "RG.PYEXECUTE",
            "GB('CommandReader').register(trigger='a')",
            "ID",
            "test",
            "DESCRIPTION",
            "my session",
        ]),
        ok()
    );
    let id = c.registrations()[0].id.clone();
    let expected = Value::Array(vec![Value::Array(vec![
        bulk("ID"),
        bulk("test"),
        bulk("sessionDescription"),
        bulk("my session"),
        bulk("refCount"),
        Value::Int(1),
        bulk("linked"),
        bulk("primary"),
        bulk("dead"),
        bulk("false"),
        bulk("requirementInstallationNeeded"),
        Value::Int(0),
        bulk("requirements"),
        Value::Array(vec![]),
        bulk("registrations"),
        Value::Array(vec![bulk(&id)]),
    ])]);
    assert_eq!(c.cmd(&["RG.PYDUMPSESSIONS"]), expected);
    // VERBOSE shows each registration (without PD).
    let verbose = c.cmd(&["RG.PYDUMPSESSIONS", "VERBOSE", "SESSIONS", "test"]);
    let regs = verbose.array()[0].array()[15].array().to_vec();
    assert_eq!(regs.len(), 1);
    assert_eq!(regs[0].array().len(), 10);
    assert_eq!(regs[0].array()[1], bulk(&id));
    assert_eq!(
        c.cmd(&["RG.PYDUMPSESSIONS", "SESSIONS", "nope"]),
        Value::Array(vec![bulk("Session nope does not exists")])
    );
    assert_eq!(
        c.cmd(&["RG.PYDUMPSESSIONS", "BAD"]).error(),
        "Unknown option BAD"
    );
    s.restart(&["SAVE"]);
    let mut c = s.client();
    assert_eq!(c.cmd(&["RG.PYDUMPSESSIONS"]), expected);
    // UPGRADE still replaces the session's registrations after the reload.
    assert_eq!(
        c.cmd(&[
            "RG.PYEXECUTE",
            "GB('CommandReader').register(trigger='b')",
            "ID",
            "test",
            "UPGRADE",
        ]),
        ok()
    );
    let triggers: Vec<String> = c
        .registrations()
        .iter()
        .map(|r| r.field("args").array()[1].text())
        .collect();
    assert_eq!(triggers, ["b"]);
}

fn ticks(c: &mut Client) -> i64 {
    c.int_at("ticks")
}

#[test]
fn time_events_run_until_their_key_goes_and_survive_restarts() {
    let mut s = Server::start_with(&["--enable-debug-command", "yes"], &[]);
    let mut c = s.client();
    assert_eq!(
        c.py("redisgears.registerTimeEvent(0.1, lambda: execute('INCR', 'ticks'), 'tick')"),
        ok()
    );
    assert!(s.wait_for(10, || ticks(&mut c) >= 3));
    let err = c
        .py("redisgears.registerTimeEvent(1, lambda: 1, 'tick')")
        .error();
    assert!(err.contains("key already exists"), "{err}");
    let err = c
        .py("redisgears.registerTimeEvent(0, lambda: 1, 'other')")
        .error();
    assert!(err.contains("positive number of seconds"), "{err}");
    // DEBUG RELOAD, then a restart from the RDB: still ticking.
    assert_eq!(c.cmd(&["DEBUG", "RELOAD"]), ok());
    let t = ticks(&mut c);
    assert!(s.wait_for(10, || ticks(&mut c) >= t + 3));
    s.restart(&["SAVE"]);
    let mut c = s.client();
    let t = ticks(&mut c);
    assert!(s.wait_for(10, || ticks(&mut c) >= t + 3));
    // Deleting the key stops it.
    assert_eq!(c.cmd(&["DEL", "tick"]).int(), 1);
    // A fixed wait: a tick already running when the key went may still
    // land, and nothing shows when it has.
    std::thread::sleep(Duration::from_millis(300));
    let t = ticks(&mut c);
    assert!(
        holds_for(Duration::from_millis(500), || ticks(&mut c) == t),
        "still ticking: {} after {t}",
        ticks(&mut c)
    );
}

#[test]
fn time_events_reach_the_aof_and_replicas() {
    let mut s = Server::start_with(&["--appendonly", "yes"], &[]);
    let replica = Server::replica_of(&s);
    let mut c = s.client();
    assert_eq!(
        c.py("redisgears.registerTimeEvent(0.1, lambda: execute('INCR', 'ticks'), 'tick')"),
        ok()
    );
    let mut r = replica.client();
    assert!(replica.wait_for(10, || r.cmd(&["EXISTS", "tick"]).int() == 1));
    drop(replica);
    s.restart(&["NOSAVE"]);
    let mut c = s.client();
    let exists = c.try_cmd(&["EXISTS", "tick"]);
    assert_eq!(exists.ok(), Some(Value::Int(1)), "{}", s.log());
    let t = ticks(&mut c);
    assert!(s.wait_for(10, || ticks(&mut c) >= t + 3));
}

#[test]
fn restored_functions_of_a_session_share_its_globals() {
    let s = Server::start_with(&["--enable-debug-command", "yes"], &[]);
    let mut c = s.client();
    let script = "state = {'n': 0}\n\
def bump(x):\n    state['n'] += 1\n    return state['n']\n\
def peek(x):\n    return state['n']\n\
GB('CommandReader').map(bump).register(trigger='bump', mode='sync')\n\
GB('CommandReader').map(peek).register(trigger='peek', mode='sync')";
    assert_eq!(c.py(script), ok());
    assert_eq!(
        c.cmd(&["RG.TRIGGER", "bump"]),
        Value::Array(vec![bulk("1")])
    );
    assert_eq!(
        c.cmd(&["RG.TRIGGER", "peek"]),
        Value::Array(vec![bulk("1")])
    );
    assert_eq!(c.cmd(&["DEBUG", "RELOAD"]), ok());
    // Restored as saved (state as at register time), and shared again.
    assert_eq!(
        c.cmd(&["RG.TRIGGER", "bump"]),
        Value::Array(vec![bulk("1")])
    );
    assert_eq!(
        c.cmd(&["RG.TRIGGER", "bump"]),
        Value::Array(vec![bulk("2")])
    );
    assert_eq!(
        c.cmd(&["RG.TRIGGER", "peek"]),
        Value::Array(vec![bulk("2")])
    );
}

#[test]
fn registrations_made_from_a_step_are_applied_and_saved() {
    let mut s = Server::start(&[]);
    let replica = Server::replica_of(&s);
    let mut c = s.client();
    let r = c.py("def make(x):\n    return GB('CommandReader').map(lambda y: 'made in a step').register(trigger='stepmade', mode='sync')\nGB('ShardsIDReader').map(make).run()");
    assert!(r.errors().is_empty(), "{r:?}");
    assert_eq!(
        c.cmd(&["RG.TRIGGER", "stepmade"]),
        Value::Array(vec![bulk("made in a step")])
    );
    // Checked like any registration.
    let r = c.py("def make(x):\n    return GB('CommandReader').register(trigger='stepmade')\nGB('ShardsIDReader').map(make).run()");
    assert!(
        r.errors()[0].contains("trigger already registered"),
        "{r:?}"
    );
    let mut rc = replica.client();
    assert!(replica.wait_for(10, || rc.registrations().len() == 1));
    drop(replica);
    s.restart(&["SAVE"]);
    let mut c = s.client();
    assert_eq!(
        c.cmd(&["RG.TRIGGER", "stepmade"]),
        Value::Array(vec![bulk("made in a step")])
    );
}

#[test]
fn a_background_save_holds_the_registrations_of_its_start() {
    let mut s = Server::start(&[]);
    let mut c = s.client();
    c.py("GB('CommandReader').map(lambda x: 'saved').register(trigger='bg')");
    assert_eq!(
        c.cmd(&["BGSAVE"]),
        Value::Status("Background saving started".into())
    );
    assert!(s.wait_for(20, || c
        .cmd(&["INFO", "persistence"])
        .text()
        .contains("rdb_bgsave_in_progress:0")));
    // A registration made after the background save is not in it.
    c.py("GB('CommandReader').register(trigger='after')");
    s.restart(&["NOSAVE"]);
    let mut c = s.client();
    assert_eq!(c.registrations().len(), 1);
    assert_eq!(
        c.cmd(&["RG.TRIGGER", "bg"]),
        Value::Array(vec![bulk("saved")])
    );
}

#[test]
fn a_replica_keeps_what_it_replayed_in_its_own_aof() {
    let master = Server::start(&[]);
    let mut replica = Server::replica_of_with(&master, &["--appendonly", "yes"]);
    let mut m = master.client();
    m.py("GB('CommandReader').map(lambda x: 'kept').register(trigger='kept', mode='sync')");
    m.py("GB('CommandReader').map(lambda x: call_next(*x[1:])).register(hook='set', mode='sync')");
    m.cmd(&["SET", "hooked", "1"]);
    let mut r = replica.client();
    assert!(replica.wait_for(10, || r.cmd(&["GET", "hooked"]) == bulk("1")));
    drop(master);
    // The full sync started an AOF rewrite: let it end first.
    assert!(replica.wait_for(20, || {
        let p = r.cmd(&["INFO", "persistence"]).text();
        p.contains("aof_rewrite_in_progress:0") && p.contains("aof_rewrite_scheduled:0")
    }));
    replica.restart(&["NOSAVE"]);
    let mut r = replica.client();
    assert_eq!(r.registrations().len(), 2);
    assert_eq!(r.cmd(&["GET", "hooked"]), bulk("1"));
    assert_eq!(
        r.cmd(&["RG.TRIGGER", "kept"]),
        Value::Array(vec![bulk("kept")])
    );
}

#[test]
fn restore_can_not_bring_a_time_event() {
    let s = Server::start(&[]);
    let mut c = s.client();
    c.py("redisgears.registerTimeEvent(100, lambda: 1, 'te')");
    let dump = c.cmd(&["DUMP", "te"]);
    let Value::Bulk(bytes) = dump else {
        panic!("{dump:?}")
    };
    c.cmd(&["DEL", "te"]);
    let r = c.cmd(&[b"RESTORE".to_vec(), b"te".to_vec(), b"0".to_vec(), bytes]);
    assert!(matches!(r, Value::Error(_)), "{r:?}");
    assert_eq!(c.cmd(&["EXISTS", "te"]).int(), 0);
}
