//! The Python runtime in-process, with a fake Redis behind `RedisHost`.
//! (The interpreter can start only once per process: one test function.)

#![allow(clippy::unwrap_used)] // a benchmark or test: a failure should stop it

use gears_core::engine::VecReader;
use gears_core::record::{KeyEntry, KeyValue};
use gears_core::registration::{Mode, ReaderArgs};
use gears_core::{Caller, CommandCtx, Engine, Identity, Reader, Record, Reply};
use gears_python::{KeysReaderSpec, LogLevel, RedisHost, ScriptScope};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct FakeHost {
    logs: Mutex<Vec<String>>,
    calls: Mutex<Vec<String>>,
}

impl RedisHost for FakeHost {
    fn call(&self, _who: &Identity, argv: &[Vec<u8>]) -> Reply {
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

    fn keys_reader(&self, _who: Identity, spec: KeysReaderSpec) -> Box<dyn Reader> {
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

    fn stream_reader(&self, _: Identity, _: Vec<u8>, _: Vec<u8>) -> Box<dyn Reader> {
        Box::new(VecReader(None))
    }

    fn check_registration(
        &self,
        args: &ReaderArgs,
        _: &ScriptScope,
    ) -> Result<(), gears_python::Error> {
        match args {
            ReaderArgs::Trigger { name, .. } if name == "taken" => Err(gears_python::Error::Host(
                "trigger already registered".into(),
            )),
            _ => Ok(()),
        }
    }
}

fn gears_cluster_tag() -> String {
    "06S".into()
}

fn run_to_end(script: &str) -> Reply {
    let outcome = gears_python::exec_script(script, "s").expect("the script runs");
    let run = outcome.run.expect("the script calls run()");
    let exec = run.execution.clone();
    let (tx, rx) = mpsc::channel();
    gears_python::submit(run).expect("the execution is queued");
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
    let engine =
        Arc::new(Engine::new(2, 100, 100, Arc::new(gears_python::PyRunner), |_| {}).unwrap());
    gears_python::initialize(
        host.clone(),
        engine.clone(),
        Some(gears_python::alloc::Allocator::system()),
    )
    .unwrap();
    // The packages the runtime needs are checked; a missing one is named,
    // with the command that installs it into this Python.
    assert_eq!(
        gears_python::check_packages(gears_python::RUNTIME_PACKAGES),
        Ok(())
    );
    let missing = gears_python::check_packages(&[("no_such_gears_pkg", "no-such-gears-pkg==1")])
        .unwrap_err()
        .to_string();
    assert!(
        missing.contains("'no_such_gears_pkg' is missing"),
        "{missing}"
    );
    assert!(
        missing.contains("-m pip install 'no-such-gears-pkg==1'"),
        "{missing}"
    );

    // A registration's execution, run inline on this thread.
    let run_inline = |reg, reader, command| {
        engine
            .fire(reg, Caller::Event, Identity::default(), reader, command)
            .map(|fired| fired.execution().clone())
            .unwrap_or_else(|_| panic!("an event can always fire"))
    };

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
    let err = gears_python::exec_script("execute('NOPE')", "s")
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("ERR unknown command"), "{err}");
    let err = gears_python::exec_script("GB().run()\nGB().run()", "s")
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("Can not run more then 1 executions in a single script"),
        "{err}"
    );
    assert!(gears_python::exec_script("x = 1", "s")
        .unwrap()
        .run
        .is_none());

    // log() and hashtag() go through the host.
    gears_python::exec_script("log('hi', level='warning')\nassert hashtag() == '06S'", "s")
        .unwrap();
    assert_eq!(host.logs.lock().unwrap().as_slice(), ["Warning: hi"]);

    // register(): checked arguments, applied by the host later.
    let out = gears_python::exec_script(
        "GB('CommandReader').map(lambda x: x[1] + '!').register(trigger='shout', mode='sync')\n\
         GB('CommandReader').register(trigger='other', onRegistered=lambda: log('ready'))",
        "sess",
    )
    .unwrap();
    assert!(out.run.is_none());
    assert_eq!(out.registrations.len(), 2);
    let shout = out.registrations[0].reg.clone();
    assert_eq!(shout.mode, Mode::Sync);
    assert_eq!(shout.session, "sess");
    assert_eq!(
        shout.args,
        ReaderArgs::Trigger {
            name: "shout".into(),
            inorder: false
        }
    );
    out.registrations[1].on_registered();
    assert!(host
        .logs
        .lock()
        .unwrap()
        .contains(&"Notice: ready".to_string()));
    let record = Record::List(vec![
        Record::Str(b"shout".to_vec()),
        Record::Str(b"hi".to_vec()),
    ]);
    let exec = run_inline(&shout, Box::new(VecReader(Some(vec![record]))), None);
    assert_eq!(
        exec.results_reply(),
        Reply::Array(vec![
            Reply::Array(vec![Reply::bulk("hi!")]),
            Reply::Array(vec![])
        ])
    );
    let stats = shout.stats();
    assert_eq!((stats.triggered, stats.success, stats.failures), (1, 1, 0));

    // override_reply and call_next need a command context.
    let out = gears_python::exec_script(
        "GB('CommandReader').foreach(lambda x: override_reply(x[1])).foreach(lambda x: override_reply('again')).register(trigger='o', mode='sync')",
        "s",
    )
    .unwrap();
    let o = out.registrations[0].reg.clone();
    let rec = || {
        Box::new(VecReader(Some(vec![Record::List(vec![
            Record::Str(b"o".to_vec()),
            Record::Str(b"-ERR no".to_vec()),
        ])])))
    };
    let ctx = Arc::new(CommandCtx::new(None));
    let exec = run_inline(&o, rec(), Some(ctx.clone()));
    assert_eq!(ctx.take_override(), Some(Reply::Error("ERR no".into())));
    let errors = exec.errors();
    assert!(
        errors[0].contains("Can only override reply once"),
        "{errors:?}"
    );
    let exec = run_inline(&o, rec(), None);
    assert!(exec.errors()[0].contains("Can not get command ctx"));
    assert_eq!(o.stats().failures, 2);
    assert!(o
        .stats()
        .last_error
        .unwrap()
        .contains("Can not get command ctx"));

    // Argument errors, with 1.2's texts.
    for (script, expected) in [
        (
            "GB().register(eventTypes=3)",
            "given eventTypes is not iterable",
        ),
        ("GB().register(keyTypes=['str'])", "unknown key type"),
        (
            "GB().register(keyTypes=[1])",
            "given key type is not string",
        ),
        ("GB().register(readValue=1)", "readValue is not boolean"),
        (
            "GB().register(commands=[None])",
            "given command type is not string",
        ),
        ("GB().register(prefix=1)", "regex argument must be a string"),
        (
            "GB('StreamReader').register(batch='x')",
            "batch argument must be a number",
        ),
        (
            "GB('StreamReader').register(onFailedPolicy='x')",
            "onFailedPolicy must be Continue/Abort/Retry",
        ),
        (
            "GB('StreamReader').register(onFailedPolicy='retry', mode='sync')",
            "ExecutionMode sync can only be combined with OnFailedPolicy Continue",
        ),
        (
            "GB('StreamReader').register(trimStream=1)",
            "pyTrimmStream argument must be a boolean",
        ),
        (
            "GB('CommandReader').register()",
            "no trigger or hook argument was given",
        ),
        (
            "GB('CommandReader').register(trigger=1)",
            "trigger argument is not string",
        ),
        (
            "GB('CommandReader').register(trigger='t', hook='set')",
            "trigger argument can not be given with keyprefix or hook",
        ),
        (
            "GB('CommandReader').register(trigger='t', inorder=1)",
            "inorder argument is be boolean",
        ),
        (
            "GB('CommandReader').register(trigger='taken')",
            "trigger already registered",
        ),
        (
            "GB('CommandReader').register(trigger='t')\nGB('CommandReader').register(trigger='t')",
            "trigger already registered in this session",
        ),
        (
            "GB('PythonReader').register()",
            "given reader does not exists or does not support register",
        ),
        (
            "GB().register(mode='later')",
            "unknown execution mode 'later'",
        ),
    ] {
        let err = gears_python::exec_script(script, "s")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains(expected), "{script}: {err}");
    }
}
