//! CommandReader: triggers, command hooks with call_next, and KeysReader
//! registrations linked to commands (key miss, override_reply).

use gears_tests::{bulk, Server, Value};

fn ok() -> Value {
    Value::Status("OK".into())
}

#[test]
fn triggers_reply_with_their_results() {
    let s = Server::start(&[]);
    let mut c = s.client();
    // The readers.md and commands.md examples.
    c.py("gb = GB('CommandReader')\ngb.map(lambda x: f'{x[0]} got {len(x)-1} arguments! Ah ah ah!')\ngb.register(trigger='CountVonCount')");
    assert_eq!(
        c.cmd(&["RG.TRIGGER", "CountVonCount", "bat", "bat"]),
        Value::Array(vec![bulk("CountVonCount got 2 arguments! Ah ah ah!")])
    );
    c.py("GB('CommandReader').register(trigger='mytrigger')");
    assert_eq!(
        c.cmd(&["RG.TRIGGER", "mytrigger", "foo", "bar"]),
        Value::Array(vec![bulk("['mytrigger', 'foo', 'bar']")])
    );
    c.py(
        "GB('CommandReader').map(lambda x: execute('set', x[1], x[2])).register(trigger='my_set')",
    );
    assert_eq!(
        c.cmd(&["RG.TRIGGERONKEY", "my_set", "foo", "bar"]),
        Value::Array(vec![bulk("OK")])
    );
    assert_eq!(c.cmd(&["GET", "foo"]), bulk("bar"));
    // Errors: unknown trigger, failing function, taken name, inorder shown.
    assert_eq!(
        c.cmd(&["RG.TRIGGER", "nope"]).error(),
        "ERR subcommand not found"
    );
    c.py("GB('CommandReader').map(lambda x: flat_error('no way')).register(trigger='fail', mode='sync')");
    assert_eq!(c.cmd(&["RG.TRIGGER", "fail"]).error(), "no way");
    let err = c
        .py("GB('CommandReader').register(trigger='mytrigger')")
        .error();
    assert!(err.contains("trigger already registered"), "{err}");
    c.py("GB('CommandReader').register(trigger='ordered', inorder=True, mode='async_local')");
    let regs = c.registrations();
    let last = regs.last().unwrap();
    assert_eq!(last.reader, "CommandReader");
    assert_eq!(
        last.field("args"),
        Value::Array(vec![
            bulk("trigger"),
            bulk("ordered"),
            bulk("inorder"),
            Value::Int(1)
        ])
    );
    assert_eq!(
        c.cmd(&["RG.TRIGGER"]).error(),
        "ERR wrong number of arguments for 'rg.trigger' command"
    );
}

#[test]
fn hooks_replace_commands_and_chain_newest_first() {
    let s = Server::start(&[]);
    let mut c = s.client();
    // commands_hook.md, with a key prefix.
    let last_modified = "def my_hset(r):\n    t = str(execute('time')[0])\n    new_args = r[1:] + ['_last_modified_', t]\n    return call_next(*new_args)\n\nGB('CommandReader').map(my_hset).register(hook='hset', keyprefix='person', mode='sync')";
    assert_eq!(c.py(last_modified), ok());
    assert_eq!(c.cmd(&["HSET", "person:1", "foo", "bar"]), bulk("2"));
    let h = c.cmd(&["HGETALL", "person:1"]).texts();
    assert_eq!(&h[..3], ["foo", "bar", "_last_modified_"]);
    assert!(h[3].parse::<u64>().unwrap() > 1_600_000_000);
    assert_eq!(c.cmd(&["HSET", "k1", "foo", "bar"]), Value::Int(1));
    // A second hook runs first and reaches the first one through call_next.
    let times = "def my_hset(r):\n    execute('hincrby', r[1], '_times_modified_', 1)\n    return call_next(*r[1:])\n\nGB('CommandReader').map(my_hset).register(hook='hset', mode='sync')";
    assert_eq!(c.py(times), ok());
    assert_eq!(c.cmd(&["HSET", "person:2", "foo", "bar"]), bulk("2"));
    let h = c.cmd(&["HGETALL", "person:2"]).texts();
    assert_eq!(
        &h[..5],
        ["_times_modified_", "1", "foo", "bar", "_last_modified_"]
    );
    assert_eq!(c.cmd(&["HSET", "k2", "foo", "bar"]), bulk("1"));
    assert_eq!(
        c.cmd(&["HGETALL", "k2"]).texts(),
        ["_times_modified_", "1", "foo", "bar"]
    );
    // Inside MULTI a sync hook still runs.
    c.cmd(&["MULTI"]);
    c.cmd(&["HSET", "k3", "a", "b"]);
    assert_eq!(c.cmd(&["EXEC"]), Value::Array(vec![bulk("1")]));
    assert_eq!(c.cmd(&["HGET", "k3", "_times_modified_"]), bulk("1"));
}

#[test]
fn hooks_refuse_what_1_2_refuses() {
    let s = Server::start(&[]);
    let mut c = s.client();
    for (script, expected) in [
        (
            "GB('CommandReader').register(hook='multi')",
            "Can not override a command which are not allowed inside a script",
        ),
        (
            "GB('CommandReader').register(hook='nosuchcommand')",
            "Can not override an unexisting command",
        ),
        (
            "GB('CommandReader').register(hook='sort', keyprefix='x')",
            "Can not override a command with moveable keys by key prefix",
        ),
        (
            "GB().register(commands=['exec'])",
            "Can not hook a command which are not allowed inside a script",
        ),
    ] {
        let err = c.py(script).error();
        assert!(err.contains(expected), "{script}: {err}");
    }
    // A hook stacks only on a sync one.
    c.py("GB('CommandReader').map(lambda x: call_next(*x[1:])).register(hook='incrby', mode='async_local')");
    let err = c
        .py("GB('CommandReader').register(hook='incrby', mode='sync')")
        .error();
    assert!(
        err.contains("Can not override a none sync registration"),
        "{err}"
    );
    // The async hook blocks its client until done...
    assert_eq!(c.cmd(&["INCRBY", "n", "5"]), bulk("5"));
    // ...so MULTI refuses it.
    c.cmd(&["MULTI"]);
    c.cmd(&["INCRBY", "n", "1"]);
    let r = c.cmd(&["EXEC"]);
    assert_eq!(
        r.array()[0].error(),
        "ERR can not run a non-sync execution inside a MULTI/LUA (blocking is not allowed) or on loading."
    );
    // call_next outside a hook, and a hook whose result count is wrong.
    c.py("GB('CommandReader').map(lambda x: call_next('a')).register(trigger='t', mode='sync')");
    let err = c.cmd(&["RG.TRIGGER", "t"]).error();
    assert!(err.contains("Can not get CommandHook ctx"), "{err}");
    c.py("GB('CommandReader').flatmap(lambda x: [1, 2]).register(hook='append', mode='sync')");
    assert_eq!(
        c.cmd(&["APPEND", "a", "b"]).error(),
        "Command hook must return exactly one result"
    );
    // A failing hook answers with its error; the command did not run.
    c.py("GB('CommandReader').map(lambda x: flat_error('-denied')).register(hook='del', mode='sync')");
    c.cmd(&["SET", "keep", "1"]);
    assert_eq!(c.cmd(&["DEL", "keep"]).error(), "-denied");
    assert_eq!(c.cmd(&["GET", "keep"]), bulk("1"));
}

#[test]
fn key_miss_fetches_from_another_server_and_overrides_the_reply() {
    let s = Server::start(&[]);
    let source = Server::start(&[]);
    let mut src = source.client();
    src.cmd(&["SET", "x", "1"]);
    src.cmd(&["SET", "y", "2"]);
    let mut c = s.client();
    // miss_event.md: log each miss.
    c.py("GB().foreach(lambda x: log('key %s was fetched and missed' % x['key'])).register(eventTypes=['keymiss'], mode=\"async_local\")");
    c.cmd(&["GET", "ghost"]);
    assert!(s.wait_for(10, || s.log().contains("key ghost was fetched and missed")));
    let id = c.registrations()[0].id.clone();
    c.cmd(&["RG.UNREGISTER", &id]);
    // Fetch on miss (redis-py, as the tutorial writes it): two GETs.
    let fetch = format!("import redis\n\ndef fetch_data(r):\n    key = r['key']\n    conn = redis.Redis('localhost', {})\n    data = conn.get(key)\n    execute('set', key, data)\n\nGB().foreach(fetch_data).register(eventTypes=['keymiss'], mode=\"async_local\")", source.port);
    assert_eq!(c.py(&fetch), ok());
    assert_eq!(c.cmd(&["GET", "x"]), Value::Nil);
    assert!(s.wait_for(10, || c.cmd(&["GET", "x"]) == bulk("1")));
    let id = c.registrations()[0].id.clone();
    c.cmd(&["RG.UNREGISTER", &id]);
    // With commands=['get'] the client waits and gets the fetched value.
    let linked = format!("import redis\n\ndef fetch_data(r):\n    key = r['key']\n    conn = redis.Redis('localhost', {})\n    data = conn.get(key)\n    execute('set', key, data)\n    override_reply(data)\n\nGB().foreach(fetch_data).register(commands=['get'], eventTypes=['keymiss'], mode=\"async_local\")", source.port);
    assert_eq!(c.py(&linked), ok());
    assert_eq!(c.cmd(&["GET", "y"]), bulk("2"));
    assert_eq!(c.cmd(&["GET", "y"]), bulk("2"));
    // In MULTI nothing waits: the client gets the real reply and the
    // function cannot override it.
    src.cmd(&["SET", "z", "3"]);
    c.cmd(&["MULTI"]);
    c.cmd(&["GET", "z"]);
    assert_eq!(c.cmd(&["EXEC"]), Value::Array(vec![Value::Nil]));
    assert!(s.wait_for(10, || c.registrations()[0].count("numFailures") == 1));
    let last = c.registrations()[0].field("lastError").text();
    assert!(last.contains("Can not get command ctx"), "{last}");
}

#[test]
fn override_reply_converts_and_works_once() {
    let s = Server::start(&[]);
    let mut c = s.client();
    c.py("def f(x):\n    override_reply('-ERR go away')\n    override_reply('twice')\nGB().foreach(f).register(prefix='o*', commands=['get'], eventTypes=['keymiss'], mode='sync')");
    assert_eq!(c.cmd(&["GET", "o1"]).error(), "ERR go away");
    let last = c.registrations()[0].field("lastError").text();
    assert!(last.contains("Can only override reply once"), "{last}");
    // Keys outside the prefix are not linked.
    assert_eq!(c.cmd(&["GET", "p1"]), Value::Nil);
    c.py("GB().foreach(lambda x: override_reply('+fine')).register(prefix='s*', commands=['get'], eventTypes=['keymiss'], mode='sync')");
    assert_eq!(c.cmd(&["GET", "s1"]), Value::Status("fine".into()));
}
