//! KeysReader registrations, the three modes, and the commands that manage
//! registrations.

use gears_tests::{bulk, Server, Value};

#[test]
fn keys_registration_filters_by_prefix_event_and_key_type() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let r = c.py("GB().foreach(lambda x: execute('RPUSH', 'seen', repr(sorted(x.items())))).register(prefix='person:*', eventTypes=['HSET'], keyTypes=['hash'], mode='sync')");
    assert_eq!(r, Value::Status("OK".into()));
    c.cmd(&["HSET", "person:1", "name", "ann"]);
    c.cmd(&["SET", "person:2", "x"]); // a string: wrong key type and event
    c.cmd(&["HSET", "other:1", "name", "bob"]); // wrong prefix
    c.cmd(&["HSET", "person:", "a", "b"]); // matches the prefix exactly
    c.cmd(&["HINCRBY", "person:1", "n", "1"]); // another event
    assert_eq!(
        c.cmd(&["LRANGE", "seen", "0", "-1"]).texts(),
        [
            "[('event', 'hset'), ('key', 'person:1'), ('type', 'hash'), ('value', {'name': 'ann'})]",
            "[('event', 'hset'), ('key', 'person:'), ('type', 'hash'), ('value', {'a': 'b'})]",
        ]
    );
    // Without `*` the prefix is an exact key name, not a glob.
    c.py("GB().foreach(lambda x: execute('RPUSH', 'hits', x['key'])).register(prefix='exa?t', mode='sync', readValue=False)");
    for k in ["exact", "exa?t", "exa?tly"] {
        c.cmd(&["SET", k, "1"]);
    }
    assert_eq!(c.cmd(&["LRANGE", "hits", "0", "-1"]).texts(), ["exa?t"]);
    // readValue=False gives just key and event.
    c.py("GB().foreach(lambda x: execute('SET', 'last', repr(sorted(x.items())))).register(prefix='rv', mode='sync', readValue=False)");
    c.cmd(&["SET", "rv", "1"]);
    assert_eq!(
        c.cmd(&["GET", "last"]).text(),
        "[('event', 'set'), ('key', 'rv')]"
    );
}

#[test]
fn sync_registration_sees_every_write_before_the_reply() {
    let s = Server::start(&[]);
    let mut c = s.client();
    c.py("GB().foreach(lambda x: execute('INCR', 'count')).register(prefix='key:*', mode='sync', readValue=False)");
    // 10,000 writes, pipelined; each one's trigger has run when it replies.
    for i in 0..10_000 {
        c.send(&["SET", &format!("key:{i}"), "v"]);
    }
    for _ in 0..10_000 {
        assert_eq!(c.read(), Value::Status("OK".into()));
    }
    assert_eq!(c.cmd(&["GET", "count"]), bulk("10000"));
    let regs = c.registrations();
    assert_eq!(regs[0].count("numTriggered"), 10_000);
    assert_eq!(regs[0].count("numSuccess"), 10_000);
}

#[test]
fn async_registrations_run_in_trigger_order_on_the_pool() {
    let s = Server::start(&[]);
    let mut c = s.client();
    for mode in ["async", "async_local"] {
        c.py(&format!("GB().foreach(lambda x: execute('RPUSH', 'order:{mode}', x['key'])).register(prefix='o:*', mode='{mode}', readValue=False)"));
    }
    let keys: Vec<String> = (0..300).map(|i| format!("o:{i}")).collect();
    for k in &keys {
        c.cmd(&["SET", k, "1"]);
    }
    for mode in ["async", "async_local"] {
        let list = format!("order:{mode}");
        assert!(s.wait_for(20, || c.cmd(&["LLEN", &list]).int() == 300));
        assert_eq!(c.cmd(&["LRANGE", &list, "0", "-1"]).texts(), keys);
    }
    let regs = c.registrations();
    assert_eq!(regs[0].field("mode"), bulk("async"));
    assert_eq!(regs[1].field("mode"), bulk("async_local"));
    assert!(s.wait_for(10, || c.registrations()[1].count("numSuccess") == 300));
}

#[test]
fn registration_errors_are_counted_and_never_stop_redis() {
    let s = Server::start(&[]);
    let mut c = s.client();
    c.py("def boom(x):\n    raise Exception('boom on ' + x['key'])\nGB().foreach(boom).register(prefix='e*', mode='sync')");
    c.py("GB().foreach(lambda x: 1/0).register(prefix='e*', mode='async_local')");
    assert_eq!(c.cmd(&["SET", "e1", "v"]), Value::Status("OK".into()));
    assert_eq!(c.cmd(&["GET", "e1"]), bulk("v"));
    let regs = c.registrations();
    assert_eq!(regs[0].count("numFailures"), 1);
    assert_eq!(regs[0].count("numSuccess"), 0);
    let last = regs[0].field("lastError").text();
    assert!(last.contains("Exception: boom on e1"), "{last}");
    assert!(s.wait_for(10, || c.registrations()[1].count("numFailures") == 1));
    let last = c.registrations()[1].field("lastError").text();
    assert!(last.contains("ZeroDivisionError"), "{last}");
    // A success clears lastError; RG.CLEARREGISTRATIONSSTATS clears counters.
    c.py("GB().foreach(lambda x: x).register(prefix='e*', mode='sync')");
    c.cmd(&["SET", "e2", "v"]);
    assert_eq!(
        c.cmd(&["RG.CLEARREGISTRATIONSSTATS"]),
        Value::Status("OK".into())
    );
    let r = &c.registrations()[0];
    for f in ["numTriggered", "numSuccess", "numFailures", "numAborted"] {
        assert_eq!(r.count(f), 0, "{f}");
    }
    assert_eq!(r.field("lastError"), Value::Nil);
    assert_eq!(c.cmd(&["PING"]), Value::Status("PONG".into()));
}

#[test]
fn dump_registrations_has_the_reference_shape() {
    let s = Server::start(&[]);
    let mut c = s.client();
    c.cmd(&[
        "RG.PYEXECUTE",
        "GB(desc='my desc').register(prefix='p:*', eventTypes=['set'], commands=['get'])",
        "ID",
        "sess1",
        "DESCRIPTION",
        "about",
    ]);
    let all = c.cmd(&["RG.DUMPREGISTRATIONS"]);
    let r = all.array()[0].array();
    let names: Vec<String> = r.iter().step_by(2).map(Value::text).collect();
    assert_eq!(
        names,
        [
            "id",
            "reader",
            "desc",
            "RegistrationData",
            "PD",
            "ExecutionThreadPool"
        ]
    );
    assert_eq!(r[1], bulk("0000000000000000000000000000000000000000-1"));
    assert_eq!(r[3], bulk("KeysReader"));
    assert_eq!(r[5], bulk("my desc"));
    assert_eq!(r[11], bulk("DefaultPool"));
    let data = r[7].array();
    let keys: Vec<String> = data.iter().step_by(2).map(Value::text).collect();
    assert_eq!(
        keys,
        [
            "mode",
            "numTriggered",
            "numSuccess",
            "numFailures",
            "numAborted",
            "lastRunDurationMS",
            "totalRunDurationMS",
            "avgRunDurationMS",
            "lastError",
            "args"
        ]
    );
    assert_eq!(data[1], bulk("async"));
    assert_eq!(data[15], bulk("0"));
    assert_eq!(data[17], Value::Nil);
    assert_eq!(
        data[19],
        Value::Array(vec![
            bulk("regex"),
            bulk("p:*"),
            bulk("eventTypes"),
            Value::Array(vec![bulk("set")]),
            bulk("keyTypes"),
            Value::Nil,
            bulk("hookCommands"),
            Value::Array(vec![bulk("get")]),
        ])
    );
    let pd = r[9].text();
    assert!(pd.contains("'sessionName':'sess1'"), "{pd}");
    assert!(pd.contains("'sessionDescription':'about'"), "{pd}");
    assert!(
        pd.contains("'registrationsList':['0000000000000000000000000000000000000000-1']"),
        "{pd}"
    );
}

#[test]
fn unregister_stops_a_registration() {
    let s = Server::start(&[]);
    let mut c = s.client();
    c.py("GB().foreach(lambda x: execute('INCR', 'n')).register(prefix='u', mode='sync', readValue=False)");
    let id = c.registrations()[0].id.clone();
    c.cmd(&["SET", "u", "1"]);
    assert_eq!(c.cmd(&["RG.UNREGISTER", &id]), Value::Status("OK".into()));
    c.cmd(&["SET", "u", "2"]);
    assert_eq!(c.cmd(&["GET", "n"]), bulk("1"));
    assert!(c.registrations().is_empty());
    assert_eq!(
        c.cmd(&["RG.UNREGISTER", &id]).error(),
        "execution is not registered"
    );
    assert_eq!(
        c.cmd(&["RG.UNREGISTER"]).error(),
        "ERR wrong number of arguments for 'rg.unregister' command"
    );
    // abortpending: queued executions that did not start are aborted.
    c.py("import time\nGB().foreach(lambda x: time.sleep(0.3)).register(prefix='slow', mode='async_local', readValue=False)");
    let id = c.registrations()[0].id.clone();
    for _ in 0..4 {
        c.cmd(&["SET", "slow", "1"]);
    }
    // The first has started (one at a time: the other three wait).
    assert!(
        s.wait_for(10, || {
            c.executions().iter().any(|(_, status)| status == "running")
        }),
        "{:?}",
        c.executions()
    );
    assert_eq!(
        c.cmd(&["RG.UNREGISTER", &id, "abortpending"]),
        Value::Status("OK".into())
    );
    let dump = c.cmd(&["RG.DUMPEXECUTIONS"]);
    let aborted = dump
        .array()
        .iter()
        .filter(|e| e.array()[3] == bulk("aborted"))
        .count();
    assert_eq!(aborted, 3, "{dump:?}");
}

#[test]
fn pyexecute_replies_ok_and_sessions_guard_their_id() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let reg = "GB('CommandReader').map(lambda x: 'v1').register(trigger='ver', mode='sync')";
    assert_eq!(
        c.cmd(&["RG.PYEXECUTE", reg, "ID", "lib"]),
        Value::Status("OK".into())
    );
    assert_eq!(
        c.cmd(&["RG.PYEXECUTE", reg, "ID", "lib"]).error(),
        "Session lib already exists"
    );
    let err = c.cmd(&["RG.PYEXECUTE", reg, "ID", "other"]).error();
    assert!(err.contains("trigger already registered"), "{err}");
    let v2 = "GB('CommandReader').map(lambda x: 'v2').register(trigger='ver', mode='sync')";
    assert_eq!(
        c.cmd(&["RG.PYEXECUTE", v2, "ID", "lib", "UPGRADE"]),
        Value::Status("OK".into())
    );
    assert_eq!(
        c.cmd(&["RG.TRIGGER", "ver"]),
        Value::Array(vec![bulk("v2")])
    );
    assert_eq!(c.registrations().len(), 1);
    assert_eq!(
        c.cmd(&["RG.PYEXECUTE", v2, "REPLACE_WITH", "nope"]).error(),
        "Can not replace with nope, session does not exists."
    );
    // A script that registers and then fails changes nothing.
    let err = c
        .py("GB('CommandReader').register(trigger='half')\nraise Exception('late')")
        .error();
    assert!(err.contains("Exception: late"), "{err}");
    assert_eq!(c.registrations().len(), 1);
    // onRegistered runs when the registration is applied.
    c.py("GB().register(prefix='nothing', onRegistered=lambda: execute('SET', 'ready', 'yes'))");
    assert_eq!(c.cmd(&["GET", "ready"]), bulk("yes"));
}

#[test]
fn sync_runs_inside_multi_and_async_triggers_are_refused_there() {
    let s = Server::start(&[]);
    let mut c = s.client();
    c.py("GB().foreach(lambda x: execute('INCR', 'm')).register(prefix='mk', mode='sync', readValue=False)");
    c.py("GB('CommandReader').register(trigger='later', mode='async_local')");
    c.cmd(&["MULTI"]);
    c.cmd(&["SET", "mk", "1"]);
    c.cmd(&["RG.TRIGGER", "later"]);
    let r = c.cmd(&["EXEC"]);
    assert_eq!(r.array()[0], Value::Status("OK".into()));
    assert_eq!(
        r.array()[1].error(),
        "ERR can not run a non-sync execution inside a MULTI/LUA (blocking is not allowed) or on loading."
    );
    assert_eq!(c.cmd(&["GET", "m"]), bulk("1"));
    // Outside MULTI the async trigger blocks its client until done.
    assert_eq!(
        c.cmd(&["RG.TRIGGER", "later", "a"]),
        Value::Array(vec![bulk("['later', 'a']")])
    );
}

#[test]
fn max_executions_per_registration_drops_the_oldest() {
    let s = Server::start(&["MaxExecutionsPerRegistration", "2"]);
    let mut c = s.client();
    c.py("GB().register(prefix='x', mode='async_local', readValue=False)");
    for _ in 0..5 {
        c.cmd(&["SET", "x", "1"]);
    }
    assert!(s.wait_for(10, || c.registrations()[0].count("numSuccess") == 5));
    let dump = c.cmd(&["RG.DUMPEXECUTIONS"]);
    assert_eq!(dump.array().len(), 2, "{dump:?}");
    for e in dump.array() {
        assert_eq!(e.array()[5], Value::Int(1), "registered executions: {e:?}");
    }
}

/// The str() of convertToStr is made when a result is read, and only for
/// records nothing else can change in the meantime: what RG.GETRESULTS
/// shows is what the record was when its execution ended.
#[test]
fn kept_results_show_records_as_they_were_when_the_execution_ended() {
    let s = Server::start(&[]);
    let mut c = s.client();
    c.py(concat!(
        "shared = {'n': 0}\n",
        "inner = []\n",
        "def f(x):\n",
        "    shared['n'] += 1\n",
        "    inner.append(shared['n'])\n",
        "    return [shared, {'inner': inner}, {'own': [x['key']]}, ('t', [1])]\n",
        "GB().flatmap(f).register(prefix='snap:*', mode='sync')",
    ));
    c.cmd(&["SET", "snap:1", "v"]);
    let first = c.cmd(&["RG.DUMPEXECUTIONS"]).array()[0].array()[1].clone();
    c.cmd(&["SET", "snap:2", "v"]);
    c.cmd(&["SET", "snap:3", "v"]);
    let results = c.cmd(&["RG.GETRESULTS", &first.text()]);
    assert_eq!(
        results,
        Value::Array(vec![
            // (flatmap expands from the end, as 1.2 does)
            Value::Array(vec![
                bulk("('t', [1])"),
                bulk("{'own': ['snap:1']}"),
                bulk("{'inner': [1]}"),
                bulk("{'n': 1}"),
            ]),
            Value::Array(vec![]),
        ])
    );
    // Texts that read as replies keep their meaning.
    c.py("GB('CommandReader').map(lambda x: '+OK').register(trigger='plus')");
    assert_eq!(
        c.cmd(&["RG.TRIGGER", "plus"]),
        Value::Array(vec![Value::Status("OK".into())])
    );
}
