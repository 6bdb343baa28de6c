//! Every GearsBuilder operation, with 1.2's semantics and the examples of
//! operations.md.

use gears_tests::{Client, Server, Value};

fn run(c: &mut Client, script: &str) -> Vec<String> {
    let r = c.py(script);
    assert!(matches!(&r, Value::Array(_)), "{script}: {r:?}");
    assert_eq!(r.errors(), Vec::<String>::new(), "{script}");
    r.results()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn py_reader(ops: &str, items: &str) -> String {
    format!("GB('PythonReader'){ops}.run(lambda: iter({items}))")
}

#[test]
fn primitive_operations() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let r = |c: &mut Client, ops: &str, items: &str| run(c, &py_reader(ops, items));
    assert_eq!(
        r(&mut c, ".map(lambda x: x * 2)", "[1, 2, 3]"),
        ["2", "4", "6"]
    );
    assert_eq!(
        r(&mut c, ".filter(lambda x: x % 2)", "[1, 2, 3]"),
        ["1", "3"]
    );
    // flatmap expands each list from its end, as 1.2 does.
    assert_eq!(
        r(&mut c, ".flatmap(lambda x: [x, x * 10])", "[1, 2]"),
        ["10", "1", "20", "2"]
    );
    assert_eq!(r(&mut c, ".flatmap(lambda x: x)", "[[], 5]"), ["5"]);
    assert_eq!(
        r(
            &mut c,
            ".accumulate(lambda a, r: (a if a else 0) + r)",
            "[1, 2, 3, 4]"
        ),
        ["10"]
    );
    assert_eq!(r(&mut c, ".limit(2, 1)", "range(5)"), ["1", "2"]);
    assert_eq!(r(&mut c, ".limit(2)", "range(5)"), ["0", "1"]);
    assert_eq!(r(&mut c, ".collect()", "[1]"), ["1"]);
    assert_eq!(
        r(&mut c, ".repartition(lambda x: str(x))", "[1, 2]"),
        ["1", "2"]
    );
    assert_eq!(
        r(
            &mut c,
            ".localgroupby(lambda x: x[0], lambda k, a, r: (a if a else 0) + 1)",
            "['a1', 'a2', 'b1']"
        ),
        ["{'key': 'a', 'value': 2}", "{'key': 'b', 'value': 1}"]
    );
    // Side effects of foreach happen; the records pass unchanged.
    assert_eq!(
        r(
            &mut c,
            ".foreach(lambda x: execute('INCRBY', 'fe', x))",
            "[1, 2]"
        ),
        ["1", "2"]
    );
    assert_eq!(c.cmd(&["GET", "fe"]).text(), "3");
}

#[test]
fn composite_operations() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let r = |c: &mut Client, ops: &str, items: &str| run(c, &py_reader(ops, items));
    assert_eq!(
        r(
            &mut c,
            ".aggregate([], lambda a, r: a + [r], lambda a, r: a + r)",
            "[1, 2, 3]"
        ),
        ["[1, 2, 3]"]
    );
    assert_eq!(
        r(
            &mut c,
            ".aggregateby(lambda x: x, 0, lambda k, a, r: a + 1, lambda k, a, r: a + r)",
            "['a', 'b', 'a']"
        ),
        ["{'key': 'a', 'value': 2}", "{'key': 'b', 'value': 1}"]
    );
    assert_eq!(
        r(
            &mut c,
            ".groupby(lambda x: x[0], lambda k, a, r: (a if a else 0) + 1)",
            "['a1', 'b1', 'a2']"
        ),
        ["{'key': 'a', 'value': 2}", "{'key': 'b', 'value': 1}"]
    );
    assert_eq!(
        r(
            &mut c,
            ".batchgroupby(lambda x: x[0], lambda k, l: len(l))",
            "['a1', 'b1', 'a2']"
        ),
        ["{'key': 'a', 'value': 2}", "{'key': 'b', 'value': 1}"]
    );
    // 1.2's sort(): the default reverse=True comes out ascending.
    assert_eq!(r(&mut c, ".sort()", "[3, 1, 2]"), ["1", "2", "3"]);
    assert_eq!(
        r(&mut c, ".sort(reverse=False)", "[3, 1, 2]"),
        ["3", "2", "1"]
    );
    assert_eq!(
        sorted(r(&mut c, ".distinct()", "[1, 2, 1, 3, 2]")),
        ["1", "2", "3"]
    );
    assert_eq!(r(&mut c, ".count()", "range(7)"), ["7"]);
    // An empty input has no count at all (accumulate emits nothing).
    assert_eq!(r(&mut c, ".count()", "[]"), Vec::<String>::new());
    assert_eq!(
        r(&mut c, ".countby()", "['x', 'y', 'x']"),
        ["{'key': 'x', 'value': 2}", "{'key': 'y', 'value': 1}"]
    );
    assert_eq!(r(&mut c, ".avg()", "[1, 2, 3, 6]"), ["3.0"]);
    assert_eq!(
        r(&mut c, ".avg(lambda x: x['n'])", "[{'n': 1}, {'n': 2}]"),
        ["1.5"]
    );
}

#[test]
fn builder_errors() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let e = |c: &mut Client, script: &str| c.py(script).error();
    assert!(e(&mut c, "GB().map()").contains("wrong number of args to map function"));
    assert!(e(&mut c, "GB().map(1)").contains("map argument must be a function"));
    assert!(e(&mut c, "GB().filter(1, 2)").contains("wrong number of args to filter function"));
    assert!(e(&mut c, "GB().groupby(1, 2)")
        .contains("groupby extractor|reducer argument must be a function"));
    assert!(e(&mut c, "GB().batchgroupby(1, len)")
        .contains("batchgroupby extractor argument must be a function"));
    assert!(e(&mut c, "GB().limit('a')").contains("limit argument must be a number"));
    assert!(e(&mut c, "GB(1)").contains("reader argument must be a string"));
    assert!(e(&mut c, "GB('NoSuchReader')").contains("The given reader does not exists"));
    assert!(
        e(&mut c, "GB('PythonReader').run(42)").contains("pyreader argument must be a function")
    );
    assert!(e(&mut c, "GB('CommandReader').run()").contains("reader do not support run"));
    assert!(e(&mut c, "GB().run(readValue=3)").contains("readValue value is not boolean"));
    assert!(e(&mut c, "GB().run(noScan='x')").contains("exactMatch value is not boolean"));
}

/// The examples of operations.md, on a small keyspace.
#[test]
fn documented_examples() {
    let s = Server::start(&[]);
    let mut c = s.client();
    c.cmd(&["SET", "aaaa", "1"]);
    c.cmd(&["SET", "abc", "2"]);
    c.cmd(&["SET", "bbbbb", "1"]);
    // The flatmap/limit quirk: lpush l 1 2 3 4 5 stores 5..1, flatmap pops
    // from the end, so limit(1, 3) keeps '4'.
    let s2 = Server::start(&[]);
    let mut c2 = s2.client();
    c2.cmd(&["LPUSH", "l", "1", "2", "3", "4", "5"]);
    assert_eq!(
        run(
            &mut c2,
            "GB().flatmap(lambda x: x['value']).limit(1, 3).run()"
        ),
        ["4"]
    );

    assert_eq!(
        sorted(run(&mut c, "gb = GB()\ngb.filter(lambda x: len(x['key']) > 3)\ngb.map(lambda x: x['key'])\ngb.run()")),
        ["aaaa", "bbbbb"]
    );
    assert_eq!(
        run(
            &mut c,
            "gb = GB()\ngb.accumulate(lambda a, r: (a if a else 0) + len(r['key']))\ngb.run()"
        ),
        ["12"]
    );
    assert_eq!(
        sorted(run(&mut c, "gb = GB()\ngb.localgroupby(lambda x: x['key'][:1], lambda k, a, r: (a if a else 0) + 1)\ngb.run()")),
        ["{'key': 'a', 'value': 2}", "{'key': 'b', 'value': 1}"]
    );
    assert_eq!(
        sorted(run(
            &mut c,
            "gb = GB()\ngb.batchgroupby(lambda x: x['key'][:1], lambda k, l: len(l))\ngb.run()"
        )),
        ["{'key': 'a', 'value': 2}", "{'key': 'b', 'value': 1}"]
    );
    assert_eq!(
        sorted(run(
            &mut c,
            "gb = GB()\ngb.countby(lambda x: x['value'])\ngb.run()"
        )),
        ["{'key': '1', 'value': 2}", "{'key': '2', 'value': 1}"]
    );
    assert_eq!(run(&mut c, "gb = GB()\ngb.count()\ngb.run()"), ["3"]);
    assert_eq!(
        run(
            &mut c,
            "gb = GB()\ngb.map(lambda x: x['value'])\ngb.sort(reverse=False)\ngb.run()"
        ),
        ["2", "1", "1"]
    );
    assert_eq!(
        run(
            &mut c,
            "gb = GB()\ngb.map(lambda x: x['value'])\ngb.avg()\ngb.run()"
        ),
        ["1.3333333333333333"]
    );
    let hashtag = c.py("gb = GB()\ngb.foreach(lambda x: execute('INCR', hashtag()))\ngb.run()");
    assert_eq!(hashtag.results().len(), 3);
    assert_eq!(
        c.py("GB('PythonReader').run(lambda: iter([hashtag()]))")
            .results(),
        ["06S"]
    );
    assert_eq!(c.cmd(&["GET", "06S"]).text(), "3");
}

/// The remaining examples of operations.md, verbatim, on a known keyspace.
#[test]
fn documented_examples_verbatim() {
    let s = Server::start(&[]);
    let mut c = s.client();
    c.cmd(&["SET", "k1", "a"]);
    c.cmd(&["SET", "k2", "b"]);
    c.cmd(&["SET", "k3", "a"]);
    let keys = "[('k1', 'a'), ('k2', 'b'), ('k3', 'a')]";
    // map(lambda x: str(x)) stringifies the record.
    let r = sorted(run(&mut c, "gb = GB()\ngb.map(lambda x: str(x))\ngb.run()"));
    assert_eq!(
        r[0],
        "{'key': 'k1', 'value': 'a', 'type': 'string', 'event': None}"
    );
    // flatmap into key and value: value first (expanded from the end).
    let r = run(
        &mut c,
        "gb = GB()\ngb.flatmap(lambda x: [x['key'], x['value']])\ngb.run()",
    );
    assert_eq!(r.len(), 6);
    for pair in r.chunks(2) {
        assert!(
            keys.contains(&format!("('{}', '{}')", pair[1], pair[0])),
            "{pair:?}"
        );
    }
    assert_eq!(run(&mut c, "gb = GB()\ngb.limit(3, 1)\ngb.run()").len(), 2);
    assert_eq!(run(&mut c, "gb = GB()\ngb.collect()\ngb.run()").len(), 3);
    assert_eq!(
        run(
            &mut c,
            "gb = GB()\ngb.repartition(lambda x: x['key'])\ngb.run()"
        )
        .len(),
        3
    );
    assert_eq!(
        run(
            &mut c,
            "gb = GB()\ngb.repartition(lambda x: x['key'][:1])\ngb.run()"
        )
        .len(),
        3
    );
    let r = run(&mut c, "gb = GB()\ngb.aggregate([],\n             lambda a, r: a + [r['value']],\n             lambda a, r: a + r)\ngb.run()");
    assert_eq!(r.len(), 1);
    let mut values: Vec<char> = r[0].chars().filter(|c| c.is_alphabetic()).collect();
    values.sort();
    assert_eq!(values, ['a', 'a', 'b']);
    assert_eq!(
        sorted(run(&mut c, "gb = GB()\ngb.groupby(lambda x: x['key'][:1],\n           lambda k, a, r: (a if a else 0) + 1)\ngb.run()")),
        ["{'key': 'k', 'value': 3}"]
    );
    assert_eq!(
        sorted(run(
            &mut c,
            "gb = GB()\ngb.map(lambda x: x['value'])\ngb.distinct()\ngb.run()"
        )),
        ["a", "b"]
    );
    // The aggregateby example of operations.md uses an undefined name in its
    // global reducer; as in 1.2, that is an error record, not a crash.
    let r = c.py("gb = GB()\ngb.aggregateby(lambda x: x['value'],\n               [],\n               lambda k, a, r: a + [r],\n               lambda k, a, r: a + x)\ngb.run()");
    assert!(
        r.errors()[0].contains("NameError: name 'x' is not defined"),
        "{:?}",
        r.errors()
    );
}
