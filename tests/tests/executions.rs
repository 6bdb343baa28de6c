//! Execution management: dump, get, results, drop, abort, MaxExecutions.

use gears_tests::{bulk, Server, Value};

const SLOW: &str = "import time\nGB('PythonReader').foreach(lambda x: time.sleep(0.3)).run(lambda: iter(range(20)))";

fn unblocking(c: &mut gears_tests::Client, script: &str) -> String {
    c.cmd(&["RG.PYEXECUTE", script, "UNBLOCKING"]).text()
}

#[test]
fn dump_and_get_execution_shapes() {
    let s = Server::start(&[]);
    let mut c = s.client();
    c.cmd(&["SET", "k", "v"]);
    let id = unblocking(&mut c, "GB().run()");
    c.cmd(&["RG.GETRESULTSBLOCKING", &id]);
    assert_eq!(
        c.cmd(&["RG.DUMPEXECUTIONS"]),
        Value::Array(vec![Value::Array(vec![
            bulk("executionId"),
            bulk(&id),
            bulk("status"),
            bulk("done"),
            bulk("registered"),
            Value::Int(0),
        ])])
    );
    let ex = c.cmd(&["RG.GETEXECUTION", &id]);
    let shard = ex.array()[0].array();
    assert_eq!(shard[0].text(), "shard_id");
    assert_eq!(shard[1].text(), "0000000000000000000000000000000000000000");
    let plan = shard[3].array();
    let names: Vec<String> = plan.iter().step_by(2).map(|v| v.text()).collect();
    assert_eq!(
        names,
        [
            "status",
            "shards_received",
            "shards_completed",
            "results",
            "errors",
            "total_duration",
            "read_duration",
            "steps"
        ]
    );
    assert_eq!(plan[1].text(), "done");
    assert_eq!(plan[7].int(), 1);
    assert_eq!(plan[9], Value::Array(vec![]));
    // Steps, last first, without the reader.
    let steps: Vec<(String, String)> = plan[15]
        .array()
        .iter()
        .map(|s| (s.array()[1].text(), s.array()[5].text()))
        .collect();
    assert_eq!(
        steps,
        [
            ("collect".to_string(), "collect".to_string()),
            (
                "map".to_string(),
                "RedisGearsPy_PyCallbackMapper".to_string()
            ),
            (
                "map".to_string(),
                "RedisGearsPy_ToPyRecordMapper".to_string()
            ),
        ]
    );
    assert!(plan[15].array()[1].array()[7]
        .text()
        .starts_with("<function GearsBuilder.run.<locals>.<lambda>"));
    assert_eq!(c.cmd(&["RG.GETEXECUTION", &id, "SHARD"]), ex);
    assert_eq!(
        c.cmd(&["RG.GETEXECUTION", &id, "BOGUS"]).error(),
        "unknown subcommand"
    );
    assert_eq!(
        c.cmd(&["RG.GETEXECUTION", &id, "CLUSTER"]).error(),
        "no cluster detected - use `RG.GETEXECUTION <id> [SHARD]` instead"
    );
    assert_eq!(
        c.cmd(&["RG.GETEXECUTION", "nope"]).error(),
        "execution plan does not exist"
    );
}

#[test]
fn results_drop_and_their_errors() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let id = unblocking(&mut c, SLOW);
    assert_eq!(
        c.cmd(&["RG.GETRESULTS", &id]).error(),
        "execution is still running"
    );
    assert_eq!(
        c.cmd(&["RG.DROPEXECUTION", &id]).error(),
        "can not drop a not yet finished execution, abort it first."
    );
    assert_eq!(
        c.cmd(&["RG.ABORTEXECUTION", &id]),
        Value::Status("OK".into())
    );
    assert_eq!(
        c.cmd(&["RG.DROPEXECUTION", &id]),
        Value::Status("OK".into())
    );
    assert_eq!(
        c.cmd(&["RG.GETRESULTS", &id]).error(),
        "execution plan does not exist"
    );
    assert_eq!(
        c.cmd(&["RG.DROPEXECUTION", &id]).error(),
        "execution plan does not exist"
    );
    assert_eq!(
        c.cmd(&["RG.GETRESULTSBLOCKING", "nope"]).error(),
        "execution plan does not exist"
    );
    assert_eq!(
        c.cmd(&["RG.ABORTEXECUTION", "nope"]).error(),
        "execution does not exist"
    );
    let id = unblocking(&mut c, "GB('PythonReader').run(lambda: iter([1, 2]))");
    let r = c.cmd(&["RG.GETRESULTSBLOCKING", &id]);
    assert_eq!(r.results(), ["1", "2"]);
    assert_eq!(c.cmd(&["RG.GETRESULTS", &id]), r);
}

#[test]
fn abort_interrupts_a_running_python_step() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let id = unblocking(&mut c, "def spin(x):\n    execute('SET', 'spinning', '1')\n    while True:\n        pass\nGB('PythonReader').map(spin).run(lambda: iter([1]))");
    // Abort once the step is inside Python (not merely `running`).
    let mut probe = s.client();
    assert!(s.wait_for(10, || probe.cmd(&["EXISTS", "spinning"]) == Value::Int(1)));
    assert_eq!(
        c.cmd(&["RG.GETEXECUTION", &id]).array()[0].array()[3].array()[1].text(),
        "running"
    );
    // The server keeps answering while the step spins.
    assert_eq!(s.client().cmd(&["PING"]), Value::Status("PONG".into()));
    assert_eq!(
        c.cmd(&["RG.ABORTEXECUTION", &id]),
        Value::Status("OK".into())
    );
    let plan = c.cmd(&["RG.GETEXECUTION", &id]);
    let plan = plan.array()[0].array()[3].array();
    assert_eq!(plan[1].text(), "done");
    let errors = plan[9].texts();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].contains("ForceStoppedError"), "{errors:?}");
    // Aborting a finished execution is a no-op.
    assert_eq!(
        c.cmd(&["RG.ABORTEXECUTION", &id]),
        Value::Status("OK".into())
    );
}

#[test]
fn max_executions_keeps_the_newest_finished() {
    let s = Server::start(&["MaxExecutions", "2"]);
    let mut c = s.client();
    let ids: Vec<String> = (0..3)
        .map(|_| {
            let id = unblocking(&mut c, "GB('PythonReader').run(lambda: iter([1]))");
            c.cmd(&["RG.GETRESULTSBLOCKING", &id]);
            id
        })
        .collect();
    let listed: Vec<String> = c
        .cmd(&["RG.DUMPEXECUTIONS"])
        .array()
        .iter()
        .map(|e| e.array()[1].text())
        .collect();
    assert_eq!(listed, ids[1..]);
    // Lowering the limit at runtime evicts at once.
    assert_eq!(
        c.cmd(&["RG.CONFIGSET", "MaxExecutions", "1"]).array()[0],
        Value::Status("OK".into())
    );
    assert_eq!(c.cmd(&["RG.DUMPEXECUTIONS"]).array().len(), 1);
}

#[test]
fn config_get_and_set() {
    let s = Server::start(&[]);
    let mut c = s.client();
    assert_eq!(
        c.cmd(&["RG.CONFIGGET", "MaxExecutions", "ExecutionThreads"]),
        Value::Array(vec![Value::Int(1000), Value::Int(3)])
    );
    assert_eq!(
        c.cmd(&["RG.CONFIGGET", "foo"]).array()[0].error(),
        "(error) Unsupported config parameter: foo"
    );
    assert_eq!(
        c.cmd(&["RG.CONFIGSET", "foo", "bar"]).array()[0],
        Value::Status("OK - value was saved in extra config dictionary".into())
    );
    assert_eq!(
        c.cmd(&["RG.CONFIGGET", "foo"]),
        Value::Array(vec![bulk("bar")])
    );
    let r = c.cmd(&[
        "RG.CONFIGSET",
        "ExecutionThreads",
        "1",
        "MaxExecutions",
        "x",
        "ProfileExecutions",
    ]);
    assert_eq!(
        r.array()[0].error(),
        "(error) Config value ExecutionThreads not modifiable at runtime"
    );
    assert_eq!(
        r.array()[1].error(),
        "(error) Failed setting config value MaxExecutions"
    );
    assert_eq!(
        r.array()[2].error(),
        "(error) Value was not given to ProfileExecutions"
    );
    assert_eq!(
        c.cmd(&["RG.CONFIGSET", "PythonAttemptTraceback", "0"])
            .array()[0],
        Value::Status("OK".into())
    );
    assert_eq!(
        c.py("1/0").error(),
        "Error type: <class 'ZeroDivisionError'>, Value: division by zero"
    );
}
