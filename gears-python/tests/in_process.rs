//! The Python runtime in-process, with a fake Redis behind `RedisHost`.
//! (The interpreter can start only once per process: one test function.)

use gears_core::engine::VecReader;
use gears_core::record::{KeyEntry, KeyValue};
use gears_core::{Engine, Reader, Record, Reply};
use gears_python::{KeysReaderSpec, LogLevel, RedisHost};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct FakeHost {
    logs: Mutex<Vec<String>>,
    calls: Mutex<Vec<String>>,
}

impl RedisHost for FakeHost {
    fn call(&self, argv: &[Vec<u8>]) -> Reply {
        let words: Vec<String> = argv
            .iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        self.calls.lock().unwrap().push(words.join(" "));
        match words[0].to_ascii_uppercase().as_str() {
            "PING" => Reply::Status("PONG".into()),
            "ECHO" => Reply::Array(vec![
                Reply::bulk(words[1].as_bytes()),
                Reply::Int(7),
                Reply::Null,
            ]),
            _ => Reply::Error("ERR unknown command".into()),
        }
    }

    fn log(&self, level: LogLevel, message: &str) {
        self.logs
            .lock()
            .unwrap()
            .push(format!("{level:?}: {message}"));
    }

    fn config_get(&self, key: &str) -> Option<gears_config::Value> {
        gears_config::GearsConfig::default().get(key)
    }

    fn hashtag(&self) -> String {
        gears_cluster_tag()
    }

    fn keys_reader(&self, spec: KeysReaderSpec) -> Box<dyn Reader> {
        assert_eq!(spec.pattern, b"*");
        Box::new(VecReader(Some(vec![Record::Key(Box::new(KeyEntry {
            key: b"k".to_vec(),
            value: Some(KeyValue::String(b"v".to_vec())),
            event: None,
        }))])))
    }

    // Nothing to lock in the fake: there is no other client.
    fn lock(&self) {}

    fn unlock(&self) {}
}

fn gears_cluster_tag() -> String {
    "06S".into()
}

fn run_to_end(script: &str) -> Reply {
    let outcome = gears_python::exec_script(script).expect("the script runs");
    let run = outcome.run.expect("the script calls run()");
    let exec = run.execution.clone();
    let (tx, rx) = mpsc::channel();
    gears_python::submit(run);
    let cb: gears_core::execution::DoneCallback =
        Box::new(move |e| tx.send(e.results_reply()).unwrap());
    if let Some(cb) = exec.when_done(cb) {
        cb(&exec);
    }
    rx.recv_timeout(Duration::from_secs(30))
        .expect("the execution finishes")
}

#[test]
fn python_runtime_in_process() {
    let host = Arc::new(FakeHost::default());
    let engine = Arc::new(Engine::new(2, 100, |_| {}).unwrap());
    gears_python::initialize(host.clone(), engine).unwrap();

    // execute() reaches the host; replies convert both ways.
    let r = run_to_end("GB('PythonReader').map(lambda x: execute('ECHO', x)).run(lambda: iter(['a']), convertToStr=False)");
    assert_eq!(
        r,
        Reply::Array(vec![
            Reply::Array(vec![Reply::Array(vec![
                Reply::bulk("a"),
                Reply::Int(7),
                Reply::bulk("PY RECORD")
            ])]),
            Reply::Array(vec![]),
        ])
    );
    assert_eq!(host.calls.lock().unwrap().as_slice(), ["ECHO a"]);

    // KeysReader records come from the host's reader.
    let r = run_to_end("GB().run()");
    assert_eq!(
        r,
        Reply::Array(vec![
            Reply::Array(vec![Reply::bulk(
                "{'key': 'k', 'value': 'v', 'type': 'string', 'event': None}"
            )]),
            Reply::Array(vec![]),
        ])
    );

    // Errors: a failing command raises; the script error carries the traceback.
    let err = gears_python::exec_script("execute('NOPE')").err().unwrap();
    assert!(err.contains("ERR unknown command"), "{err}");
    let err = gears_python::exec_script("GB().run()\nGB().run()")
        .err()
        .unwrap();
    assert!(
        err.contains("Can not run more then 1 executions in a single script"),
        "{err}"
    );
    assert!(gears_python::exec_script("x = 1").unwrap().run.is_none());

    // log() and hashtag() go through the host.
    gears_python::exec_script("log('hi', level='warning')\nassert hashtag() == '06S'").unwrap();
    assert_eq!(host.logs.lock().unwrap().as_slice(), ["Warning: hi"]);
}
