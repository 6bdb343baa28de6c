//! A fuzzer of the module's surface: random arguments to every `RG.*`
//! command and hostile Python (deep recursion, huge replies, cycles,
//! `sys.exit`, wrong types to every API) to `RG.PYEXECUTE`. After every few
//! calls, and at the end, the server must answer and stay consistent.
//!
//! Used by the `fuzz` integration test (a short run) and `cargo xtask fuzz`.

use crate::{Client, Value};
use std::time::Duration;

/// A small, seeded xorshift generator: runs can be replayed with the seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const COMMANDS: &[&str] = &[
    "RG.PYEXECUTE",
    "RG.DUMPEXECUTIONS",
    "RG.GETEXECUTION",
    "RG.GETRESULTS",
    "RG.GETRESULTSBLOCKING",
    "RG.DROPEXECUTION",
    "RG.ABORTEXECUTION",
    "RG.CONFIGGET",
    "RG.CONFIGSET",
    "RG.INFOCLUSTER",
    "RG.DUMPREGISTRATIONS",
    "RG.UNREGISTER",
    "RG.PAUSEREGISTRATIONS",
    "RG.UNPAUSEREGISTRATIONS",
    "RG.CLEARREGISTRATIONSSTATS",
    "RG.TRIGGER",
    "RG.TRIGGERONKEY",
    "RG.INNERHOOK",
    "RG.INNERREGISTER",
    "RG.INNERUNREGISTER",
    "RG.INNERTIMEEVENT",
    "RG.PYDUMPSESSIONS",
    "RG.PYKILL",
];

const TOKENS: &[&str] = &[
    "",
    "0",
    "-1",
    "1",
    "18446744073709551616",
    "UNBLOCKING",
    "ID",
    "DESCRIPTION",
    "UPGRADE",
    "REPLACE_WITH",
    "REQUIREMENTS",
    "SHARD",
    "CLUSTER",
    "abortpending",
    "MaxExecutions",
    "MaxQueuedExecutions",
    "MaxExecutionsPerRegistration",
    "PythonAttemptTraceback",
    "ExecutionThreads",
    "set",
    "get",
    "rg.innerhook",
    "t",
    "k",
    "s",
    "GB().run()",
    "0000000000000000000000000000000000000000-1",
];

/// Python that must fail cleanly (or work) without hurting the server.
const SCRIPTS: &[&str] = &[
    "def f(x):\n    return f(x)\nGB('ShardsIDReader').map(f).run()",
    "def f():\n    f()\nf()",
    "import sys\nsys.exit(1)",
    "import sys\nGB('ShardsIDReader').map(lambda x: sys.exit(3)).run()",
    "raise KeyboardInterrupt()",
    "raise MemoryError()",
    "GB('ShardsIDReader').map(lambda x: (_ for _ in ()).throw(SystemExit(2))).run()",
    "GB('PythonReader').run(lambda: iter(range(100000)))",
    "GB('ShardsIDReader').map(lambda x: 'x' * 5000000).run()",
    "def f(x):\n    l = []\n    l.append(l)\n    return l\nGB('ShardsIDReader').map(f).run(convertToStr=False)",
    "def f(x):\n    d = {}\n    d['d'] = d\n    return d\nGB('ShardsIDReader').map(f).run()",
    "def f(x):\n    l = 'x'\n    for i in range(50000):\n        l = [l]\n    return l\nGB('ShardsIDReader').map(f).run(convertToStr=False)",
    "execute(None)",
    "execute(1, 2)",
    "execute('SET')",
    "execute('')",
    "execute('RG.PYEXECUTE', 'GB().run()')",
    "execute('RG.INNERHOOK', 'PING')",
    "log(None)",
    "log('x', level=None)",
    "log('x', level='loud')",
    "with atomic():\n    with atomic():\n        pass",
    "GB(1).run()",
    "GB('NoSuchReader').run()",
    "GB('KeysReader').map(None).run()",
    "GB().run(1)",
    "GB().run('*', noScan=1)",
    "GB().run('*', readValue='x')",
    "GB().limit('a').run()",
    "GB().sort(None).run()",
    "GB().groupby(None, None).run()",
    "GB().accumulate(None).run()",
    "GB().flatmap(lambda x: 1).run()",
    "GB().filter(lambda x: 1 / 0).run()",
    "GB('StreamReader').run(None)",
    "GB('StreamReader').run('s', fromId=5)",
    "GB('CommandReader').run()",
    "hashtag(1)",
    "configGet(None)",
    "gearsConfigGet(None, default=object())",
    "override_reply(object())",
    "call_next(object())",
    "flat_error(None)",
    "GB().register(prefix=None)",
    "GB().register(eventTypes=[1])",
    "GB().register(keyTypes='string')",
    "GB().register(mode=5)",
    "GB().register(onRegistered=1)",
    "GB().register(onRegistered=lambda: 1 / 0)",
    "GB('StreamReader').register(batch=-1)",
    "GB('StreamReader').register(duration=10**30)",
    "GB('CommandReader').register(trigger='')",
    "GB('CommandReader').register(hook='rg.innerhook')",
    "GB('CommandReader').register(hook='multi')",
    "GB('CommandReader').register(hook='nosuchcommand')",
    "GB('CommandReader').map(lambda x: call_next(*x[1:])).register(hook='set', mode='sync')",
    "GB('CommandReader').map(lambda x: execute('RG.TRIGGER', x[0])).register(trigger='loop', mode='sync')",
    "GB().foreach(lambda x: execute('SET', x['key'], 'again')).register(prefix='loop*', mode='sync')",
    "import threading\nthreading.Thread(target=lambda: execute('SET', 'from:thread', '1')).start()",
    "keep = []\ndef gen():\n    with atomic():\n        yield 1\ndef f(x):\n    g = gen()\n    next(g)\n    keep.append(g)\n    return 1\nGB('ShardsIDReader').map(f).run()",
    "GB('PythonReader').run(lambda: (1/0 for _ in range(3)))",
    "GB('PythonReader').run(lambda: 5)",
    "import gc\ngc.collect()\nGB().run()",
    "redisgears.registerTimeEvent(None, None, None)",
    "def f(x):\n    return GB('CommandReader').register(trigger='fromstep')\nGB('ShardsIDReader').map(f).run()",
    "def f(x):\n    return GB().foreach(lambda r: execute('SET', 'fs', '1')).register(prefix='fs*', mode='sync')\nGB('ShardsIDReader').map(f).run()",
    "def f(x):\n    return GB('CommandReader').register(hook='set', mode='sync')\nGB('ShardsIDReader').map(f).run()",
    "redisgears.registerTimeEvent(0.05, lambda: execute('INCR', 'fuzz:ticks'), 'fuzz:te')",
    "redisgears.registerTimeEvent(0.05, lambda: 1 / 0, 'fuzz:te2')",
    "import threading\nl = threading.Lock()\nredisgears.registerTimeEvent(1, lambda: l, 'fuzz:te3')",
    "import threading\nl = threading.Lock()\nGB('CommandReader').map(lambda x: str(l)).register(trigger='unsaved')",
];

/// What a fuzz run did.
#[derive(Debug, Default)]
pub struct Report {
    pub calls: usize,
    pub errors: usize,
}

fn random_bytes(rng: &mut Rng) -> Vec<u8> {
    match rng.below(5) {
        0 => (0..rng.below(64)).map(|_| rng.next_u64() as u8).collect(),
        1 => vec![b'x'; 100_000],
        2 => b"\0\r\n-ERR \xff\xfe".to_vec(),
        _ => rng.pick(TOKENS).as_bytes().to_vec(),
    }
}

/// Ids of executions and registrations the server knows, to aim at.
fn known_ids(c: &mut Client) -> Vec<Vec<u8>> {
    let mut ids = Vec::new();
    for cmd in ["RG.DUMPEXECUTIONS", "RG.DUMPREGISTRATIONS"] {
        if let Value::Array(items) = c.cmd(&[cmd]) {
            for item in items {
                if let Value::Array(fields) = item {
                    if let Some(Value::Bulk(id)) = fields.get(1) {
                        ids.push(id.clone());
                    }
                }
            }
        }
    }
    ids
}

fn random_call(rng: &mut Rng, ids: &[Vec<u8>]) -> Vec<Vec<u8>> {
    // Python is where most of the surface is: two calls in five.
    let cmd = if rng.below(5) < 2 {
        "RG.PYEXECUTE"
    } else {
        *rng.pick(COMMANDS)
    };
    let mut argv = vec![cmd.as_bytes().to_vec()];
    if cmd == "RG.PYEXECUTE" && rng.below(4) != 0 {
        argv.push(rng.pick(SCRIPTS).as_bytes().to_vec());
        if rng.below(3) == 0 {
            argv.push(b"UNBLOCKING".to_vec());
        }
        return argv;
    }
    for _ in 0..rng.below(5) {
        if !ids.is_empty() && rng.below(3) == 0 {
            argv.push(rng.pick(ids).clone());
        } else {
            argv.push(random_bytes(rng));
        }
    }
    argv
}

/// A call as text, long arguments cut.
fn shown(argv: &[Vec<u8>]) -> Vec<String> {
    argv.iter()
        .map(|a| String::from_utf8_lossy(&a[..a.len().min(200)]).into_owned())
        .collect()
}

/// Checks that the server answers and its bookkeeping still works.
pub fn check(c: &mut Client) -> Result<(), String> {
    let pong = c
        .try_cmd(&["PING"])
        .map_err(|e| format!("PING failed: {e}"))?;
    if pong != Value::Status("PONG".into()) {
        return Err(format!("PING answered {pong:?}"));
    }
    for cmd in ["RG.DUMPEXECUTIONS", "RG.DUMPREGISTRATIONS"] {
        match c.try_cmd(&[cmd]) {
            Ok(Value::Array(_)) => {}
            other => return Err(format!("{cmd} answered {other:?}")),
        }
    }
    let r = c
        .try_cmd(&[
            "RG.PYEXECUTE",
            "GB('ShardsIDReader').map(lambda x: 'ok').run()",
        ])
        .map_err(|e| format!("a plain run failed: {e}"))?;
    match &r {
        Value::Array(a) if a.len() == 2 && a[0] == Value::Array(vec![crate::bulk("ok")]) => Ok(()),
        other => Err(format!("a plain run answered {other:?}")),
    }
}

/// Sends `calls` random calls to the server of `port`; `Err` describes the
/// first sign of a broken server.
pub fn run(port: u16, calls: usize, seed: u64) -> Result<Report, String> {
    let mut rng = Rng::new(seed);
    let mut c = Client::connect(port).map_err(|e| e.to_string())?;
    c.set_timeout(Duration::from_secs(60));
    let mut checker = Client::connect(port).map_err(|e| e.to_string())?;
    checker.set_timeout(Duration::from_secs(60));
    let mut report = Report::default();
    let mut ids = Vec::new();
    let verbose = std::env::var_os("GEARS_FUZZ_VERBOSE").is_some();
    for i in 0..calls {
        if i % 50 == 0 {
            ids = known_ids(&mut checker);
        }
        let argv = random_call(&mut rng, &ids);
        if verbose {
            eprintln!("fuzz call {i}: {}", shown(&argv).join(" "));
        }
        match c.try_cmd(&argv) {
            Ok(Value::Error(_)) => report.errors += 1,
            Ok(_) => {}
            Err(e) => {
                return Err(format!("call {i} (seed {seed}) {:?}: {e}", shown(&argv)));
            }
        }
        report.calls += 1;
        if i % 25 == 24 {
            check(&mut checker).map_err(|e| {
                let mut counts = std::collections::BTreeMap::new();
                let mut running = Vec::new();
                if let Value::Array(all) = checker.cmd(&["RG.DUMPEXECUTIONS"]) {
                    for e in all {
                        let t = e.texts_lossy();
                        *counts.entry(t[3].clone()).or_insert(0) += 1;
                        if t[3] == "running" {
                            running.push(t[1].clone());
                        }
                    }
                }
                let plans: Vec<String> = running
                    .iter()
                    .take(3)
                    .map(|id| format!("{:?}", checker.cmd(&["RG.GETEXECUTION", id])))
                    .collect();
                let state = format!("{counts:?} running: {plans:?}");
                format!("after call {i} (seed {seed}): {e}\nexecutions: {state}")
            })?;
        }
    }
    // Leave no registration behind that hooks the checks' commands.
    for id in known_ids(&mut checker) {
        checker.cmd(&[b"RG.UNREGISTER".to_vec(), id]);
    }
    check(&mut checker).map_err(|e| format!("at the end (seed {seed}): {e}"))?;
    Ok(report)
}
