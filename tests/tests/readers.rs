//! Readers for run(): KeysReader, KeysOnlyReader, ShardsIDReader, PythonReader,
//! and the reply conversion table.

use gears_tests::{bulk, Server, Value};

#[test]
fn keys_reader_records_for_every_type() {
    let s = Server::start(&[]);
    let mut c = s.client();
    c.cmd(&["SET", "s", "v"]);
    c.cmd(&["RPUSH", "l", "a", "b"]);
    c.cmd(&["HSET", "h", "f", "1"]);
    c.cmd(&["SADD", "st", "m"]);
    c.cmd(&["ZADD", "z", "1", "m"]);
    c.cmd(&["XADD", "x", "1-1", "f", "v"]);
    let r = c.py("GB().map(lambda r: (r['key'], r['type'], r['value'])).sort().run()");
    assert_eq!(
        r.results(),
        [
            "('h', 'hash', {'f': '1'})",
            "('l', 'list', ['a', 'b'])",
            "('s', 'string', 'v')",
            "('st', 'set', None)",
            "('x', 'unknown', None)",
            "('z', 'zset', None)",
        ]
    );
}

#[test]
fn keys_reader_options() {
    let s = Server::start(&[]);
    let mut c = s.client();
    for k in ["foo1", "foo2", "bar", "f?x"] {
        c.cmd(&["SET", k, "1"]);
    }
    assert_eq!(
        c.py("GB().map(lambda r: r['key']).sort().run('foo*')")
            .results(),
        ["foo1", "foo2"]
    );
    assert_eq!(
        c.py("GB().map(lambda r: r['key']).sort().run('f?o*')")
            .results(),
        ["foo1", "foo2"]
    );
    assert_eq!(
        c.py("GB().run('bar', noScan=True)").results(),
        ["{'key': 'bar', 'value': '1', 'type': 'string', 'event': None}"]
    );
    // noScan takes the pattern literally.
    assert_eq!(
        c.py("GB().map(lambda r: r['key']).run('f?x', noScan=True)")
            .results(),
        ["f?x"]
    );
    assert_eq!(
        c.py("GB().run('bar', readValue=False)").results(),
        ["{'key': 'bar', 'event': None}"]
    );
    assert_eq!(
        c.py("GB('KeysReader', 'foo*').count().run()").results(),
        ["2"]
    );
}

#[test]
fn keys_reader_reads_many_keys_in_batches() {
    let s = Server::start(&[]);
    let mut c = s.client();
    c.cmd(&[
        "EVAL",
        "for i = 1, 20000 do redis.call('SET', 'k:' .. i, i) end return 1",
        "0",
    ]);
    let r = c.py("GB().map(lambda x: int(x['value'])).aggregate(0, lambda a, x: a + x, lambda a, x: a + x).run()");
    assert_eq!(r.results(), ["200010000"]);
    assert_eq!(c.py("GB().count().run('k:1*')").results(), ["11111"]);
}

#[test]
fn keys_only_shards_id_and_python_readers() {
    let s = Server::start(&[]);
    let mut c = s.client();
    for k in ["a1", "a2", "b1"] {
        c.cmd(&["SET", k, "x"]);
    }
    assert_eq!(
        c.py("GB('KeysOnlyReader').sort().run('a*')").results(),
        ["a1", "a2"]
    );
    assert_eq!(
        c.py("GB('KeysOnlyReader').run('b1', noScan=True)")
            .results(),
        ["b1"]
    );
    assert_eq!(c.py("GB('ShardsIDReader').run()").results(), ["1"]);
    assert_eq!(
        c.py("gb = GB('ShardsIDReader')\ngb.map(lambda x: f'My Shard ID is {x}')\ngb.run()")
            .results(),
        ["My Shard ID is 1"]
    );
    // readers.md: a generator of 6379 records, and a generator factory.
    let r = c.py("def generator():\n    for x in range(6379):\n        yield x\n\ngb = GB('PythonReader')\ngb.count()\ngb.run(generator)");
    assert_eq!(r.results(), ["6379"]);
    let r = c.py(
        "def createGenerator(count=6379):\n    def generator():\n        nonlocal count\n        for x in range(count):\n            yield x\n    return generator\n\ngb = GB('PythonReader')\ngb.count()\ngb.run(createGenerator(count=42))",
    );
    assert_eq!(r.results(), ["42"]);
    let e =
        c.py("def g():\n    yield 1\n    raise ValueError('gen broke')\nGB('PythonReader').run(g)");
    assert_eq!(e.results(), ["1"]);
    assert!(
        e.errors()[0].contains("ValueError: gen broke"),
        "{:?}",
        e.errors()
    );
}

#[test]
fn replies_follow_the_conversion_table() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let r = c.py(
        "GB('PythonReader').run(lambda: iter([1, 1.5, True, '+OK', '-ERR bad', 'plain', '+', b'raw', [1, 'a'], {'d': 1}, None, (1, 2)]), convertToStr=False)",
    );
    assert_eq!(
        r.array()[0],
        Value::Array(vec![
            Value::Int(1),
            bulk("1.500000"),
            Value::Int(1),
            Value::Status("OK".into()),
            Value::Error("ERR bad".into()),
            bulk("plain"),
            bulk("+"),
            bulk("raw"),
            Value::Array(vec![Value::Int(1), bulk("a")]),
            bulk("PY RECORD"),
            bulk("PY RECORD"),
            bulk("PY RECORD"),
        ])
    );
}

#[test]
fn execute_and_log() {
    let s = Server::start(&[]);
    let mut c = s.client();
    assert_eq!(
        c.py("execute('SET', 'from_body', 1)\nlog('hello from a script')"),
        Value::Status("OK".into())
    );
    assert_eq!(c.cmd(&["GET", "from_body"]).text(), "1");
    let r = c.py(
        "GB('PythonReader').map(lambda x: execute('PING')).foreach(lambda x: execute('RPUSH', 'l', b'\\xff', 2)).run(lambda: iter([1]))",
    );
    assert_eq!(r.results(), ["PONG"]);
    assert_eq!(
        c.cmd(&["LRANGE", "l", "0", "-1"]),
        Value::Array(vec![Value::Bulk(vec![0xff]), bulk("2")])
    );
    let r = c.py("GB('PythonReader').map(lambda x: execute('HGETALL', 'nope')).run(lambda: iter([1]), convertToStr=False)");
    assert_eq!(r.array()[0], Value::Array(vec![Value::Array(vec![])]));
    let e = c.py("execute('NOSUCHCOMMAND')").error();
    assert!(e.contains("unknown command"), "{e}");
    let e = c.py("execute(1)").error();
    assert!(e.contains("the given command must be a string"), "{e}");
    // An error raised in a step is an error record, not a crash.
    let r = c.py("GB('PythonReader').map(lambda x: execute('INCR', 'from_body', 'extra')).run(lambda: iter([1]))");
    assert!(
        r.errors()[0].contains("wrong number of arguments"),
        "{:?}",
        r.errors()
    );
    for level in ["debug", "verbose", "notice", "warning"] {
        assert_eq!(
            c.py(&format!("log('at {level}', level='{level}')")),
            Value::Status("OK".into())
        );
    }
    let e = c.py("log('x', level='loud')").error();
    assert!(e.contains("unknown log level 'loud'"), "{e}");
    assert!(s.wait_for(5, || s.log().contains("GEARS: hello from a script")));
    assert!(s.log().contains("GEARS: at warning"));
    assert!(s.log().contains("GEARS: at notice"));
}

#[test]
fn execute_writes_are_replicated() {
    let master = Server::start(&[]);
    let replica = Server::replica_of(&master);
    let mut r = replica.client();
    let mut m = master.client();
    m.py("execute('SET', 'body_key', 'b')");
    m.py("GB('PythonReader').foreach(lambda x: execute('SET', 'step_key', x)).run(lambda: iter(['s']))");
    assert!(replica.wait_for(10, || r.cmd(&["GET", "step_key"]) == bulk("s")));
    assert_eq!(r.cmd(&["GET", "body_key"]), bulk("b"));
}
