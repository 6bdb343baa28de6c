//! RG.PYEXECUTE: replies, errors, the Python environment.

use gears_tests::{bulk, Server, Value};

#[test]
fn module_is_listed_as_rg() {
    let s = Server::start(&[]);
    let list = s.client().cmd(&["MODULE", "LIST"]);
    let first = list.array()[0].array();
    assert_eq!(first[0].text(), "name");
    assert_eq!(first[1].text(), "rg");
}

#[test]
fn script_without_run_replies_ok() {
    let s = Server::start(&[]);
    let mut c = s.client();
    assert_eq!(c.py("x = 1"), Value::Status("OK".into()));
}

#[test]
fn standard_library_c_extensions_import() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let r = c.py(
        "import asyncio, json, math, ssl, decimal\n\
         GB('PythonReader').run(lambda: iter([json.dumps({'a': math.floor(2.5)}), str(decimal.Decimal('1.1'))]))",
    );
    assert_eq!(r.results(), vec!["{\"a\": 2}", "1.1"]);
    assert!(r.errors().is_empty());
}

#[test]
fn each_script_has_its_own_globals() {
    let s = Server::start(&[]);
    let mut c = s.client();
    assert_eq!(c.py("secret = 42"), Value::Status("OK".into()));
    let e = c.py("secret").error();
    assert!(e.contains("NameError: name 'secret' is not defined"), "{e}");
    // The runtime names are there in every script.
    for name in [
        "GB",
        "GearsBuilder",
        "execute",
        "log",
        "atomic",
        "configGet",
        "gearsConfigGet",
        "hashtag",
        "flat_error",
    ] {
        assert_eq!(
            c.py(&format!("assert callable({name})")),
            Value::Status("OK".into()),
            "{name}"
        );
    }
}

#[test]
fn exceptions_and_syntax_errors_carry_the_traceback() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let e = c.py("1/0").error();
    assert!(
        e.starts_with("['Traceback (most recent call last):\\n'"),
        "{e}"
    );
    assert!(
        e.ends_with("'ZeroDivisionError: division by zero\\n']"),
        "{e}"
    );
    let e = c.py("def (:").error();
    assert!(e.contains("SyntaxError"), "{e}");
}

#[test]
fn traceback_can_be_turned_off() {
    let s = Server::start(&["PythonAttemptTraceback", "0"]);
    let e = s.client().py("1/0").error();
    assert_eq!(
        e,
        "Error type: <class 'ZeroDivisionError'>, Value: division by zero"
    );
}

#[test]
fn flat_error_is_reported_as_is() {
    let s = Server::start(&[]);
    let mut c = s.client();
    assert_eq!(c.py("flat_error('plain message')").error(), "plain message");
    let r = c
        .py("GB('PythonReader').map(lambda x: flat_error('bad ' + str(x))).run(lambda: iter([7]))");
    assert_eq!(r.errors(), vec!["bad 7"]);
}

#[test]
fn run_blocks_and_replies_results_and_errors() {
    let s = Server::start(&[]);
    let mut c = s.client();
    c.cmd(&["SET", "x", "1"]);
    let r = c.py("GB().run()");
    assert_eq!(
        r,
        Value::Array(vec![
            Value::Array(vec![bulk(
                "{'key': 'x', 'value': '1', 'type': 'string', 'event': None}"
            )]),
            Value::Array(vec![]),
        ])
    );
    // A blocking run is dropped once replied.
    assert_eq!(c.cmd(&["RG.DUMPEXECUTIONS"]), Value::Array(vec![]));
}

#[test]
fn step_errors_stop_the_input() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let r = c.py("GB('PythonReader').map(lambda x: 1/x).run(lambda: iter([1, 0, 2, 0]))");
    assert_eq!(r.results(), vec!["1.0"]);
    assert_eq!(r.errors().len(), 1);
    assert!(
        r.errors()[0].contains("ZeroDivisionError: division by zero"),
        "{:?}",
        r.errors()
    );
}

#[test]
fn unblocking_replies_the_execution_id() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let id = c.cmd(&["RG.PYEXECUTE", "GB().run()", "UNBLOCKING"]).text();
    assert!(
        id.starts_with("0000000000000000000000000000000000000000-"),
        "{id}"
    );
    let r = c.cmd(&["RG.GETRESULTSBLOCKING", &id]);
    assert_eq!(
        r,
        Value::Array(vec![Value::Array(vec![]), Value::Array(vec![])])
    );
    // UNBLOCKING executions stay listed.
    let list = c.cmd(&["RG.DUMPEXECUTIONS"]);
    assert_eq!(list.array()[0].array()[1].text(), id);
}

#[test]
fn two_runs_in_one_script_are_refused() {
    let s = Server::start(&[]);
    let e = s.client().py("GB().run()\nGB().run()").error();
    assert!(
        e.contains("Can not run more then 1 executions in a single script"),
        "{e}"
    );
}

#[test]
fn argument_errors() {
    let s = Server::start(&[]);
    let mut c = s.client();
    assert_eq!(
        c.cmd(&["RG.PYEXECUTE", "GB().run()", "FOO"]).error(),
        "Unknown arguments were given: FOO"
    );
    assert_eq!(
        c.cmd(&["RG.PYEXECUTE", "x=1", "ID"]).error(),
        "ID is missing"
    );
    assert_eq!(
        c.cmd(&["RG.PYEXECUTE", "x=1", "DESCRIPTION"]).error(),
        "DESCRIPTION is missing"
    );
    assert_eq!(
        c.cmd(&["RG.PYEXECUTE", "x=1", "REPLACE_WITH"]).error(),
        "REPLACE_WITH is missing"
    );
    assert_eq!(
        c.cmd(&["RG.PYEXECUTE", "x=1", "ID", "bad id!"]).error(),
        "ID must be compose of: ['A'-'Z' | 'a'-'z' | '0' - '9' | '-' | '_']"
    );
    assert_eq!(
        c.cmd(&["RG.PYEXECUTE"]).error(),
        "ERR wrong number of arguments for 'rg.pyexecute' command"
    );
    // Options are case-insensitive.
    assert_eq!(
        c.cmd(&["RG.PYEXECUTE", "x=1", "description", "d"]),
        Value::Status("OK".into())
    );
}

#[test]
fn refused_inside_multi_and_lua() {
    let s = Server::start(&[]);
    let mut c = s.client();
    const MSG: &str = "Can not run gears inside a multi exec, lua, or when blocking is not allowed";
    assert_eq!(c.cmd(&["MULTI"]), Value::Status("OK".into()));
    assert_eq!(
        c.cmd(&["RG.PYEXECUTE", "GB().run()"]),
        Value::Status("QUEUED".into())
    );
    let r = c.cmd(&["EXEC"]);
    assert_eq!(r.array()[0].error(), MSG);
    let e = c
        .cmd(&[
            "EVAL",
            "return redis.call('RG.PYEXECUTE', 'GB().run()')",
            "0",
        ])
        .error();
    assert!(e.contains(MSG), "{e}");
}

#[test]
fn unknown_module_argument_value_fails_the_load() {
    let log = match Server::try_start(&["ExecutionThreads", "zero"]) {
        Ok(_) => panic!("the module loaded with a bad argument"),
        Err(log) => log,
    };
    assert!(
        log.contains("could not load the module: Failed setting config value ExecutionThreads: bad value 'zero'"),
        "{log}"
    );
    let log = match Server::try_start(&["MaxExecutions"]) {
        Ok(_) => panic!("the module loaded with a dangling argument"),
        Err(log) => log,
    };
    assert!(
        log.contains("Value was not given to MaxExecutions"),
        "{log}"
    );
}

#[test]
fn unknown_module_arguments_are_kept_as_extra_config() {
    let s = Server::start(&["MyKey", "MyValue"]);
    let r = s.client().py("GB('PythonReader').run(lambda: iter([configGet('MyKey'), gearsConfigGet('nope', 'dflt')]))");
    assert_eq!(r.results(), vec!["MyValue", "dflt"]);
}

#[test]
fn ping_is_served_while_a_long_pipeline_runs() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let id = c
        .cmd(&[
            "RG.PYEXECUTE",
            "import time\nGB('PythonReader').foreach(lambda x: time.sleep(0.2)).run(lambda: iter(range(10)))",
            "UNBLOCKING",
        ])
        .text();
    let mut other = s.client();
    for _ in 0..20 {
        let t = std::time::Instant::now();
        assert_eq!(other.cmd(&["PING"]), Value::Status("PONG".into()));
        assert!(
            t.elapsed() < std::time::Duration::from_millis(100),
            "PING took {:?}",
            t.elapsed()
        );
        // Paces the PINGs over the time the pipeline runs (a fixed wait on
        // purpose).
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(
        c.cmd(&["RG.GETEXECUTION", &id]).array()[0].array()[3].array()[1].text(),
        "running"
    );
    let r = c.cmd(&["RG.GETRESULTSBLOCKING", &id]);
    assert_eq!(r.results().len(), 10);
}

/// Names 1.2 scripts use directly: the builder's `__localAggregateby__`
/// and `redisgears.flatError`.
#[test]
fn builder_and_module_names_of_1_2_exist() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let r = c.py(
        "GB('PythonReader').__localAggregateby__(lambda x: str(x % 2), 0, lambda k, a, x: a + x).map(lambda r: '%s=%s' % (r['key'], r['value'])).run(lambda: iter(range(6)))",
    );
    let mut got = r.results();
    got.sort();
    assert_eq!(got, ["0=6", "1=9"]);
    let r = c.py(
        "import redisgears\nGB('ShardsIDReader').foreach(lambda x: redisgears.flatError('PAUSE flat')).run()",
    );
    assert_eq!(r.errors(), ["PAUSE flat"]);
}
