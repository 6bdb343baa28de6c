//! The Python environment of 1.2 scripts and client libraries: the
//! `redisgears` module's own names, binary-safe values, 1.2's error class,
//! small differences users hit.

use gears_tests::{bulk, Server, Value};

/// Values and arguments holding NUL bytes cross `execute`,
/// `redisgears.executeCommand` and every reader intact.
#[test]
fn nul_bytes_survive_every_path() {
    let s = Server::start(&[]);
    let mut c = s.client();
    c.cmd(&["SET", "str", "test\0test"]);
    c.cmd(&["HSET", "hash", "f", "x\0y"]);
    c.cmd(&["RPUSH", "list", "p\0q"]);
    let r = c.py(concat!(
        "import redisgears\n",
        "redisgears.executeCommand('SET', 'copy', 'a\\x00b')\n",
        "GB().map(lambda x: repr((x['key'], x['value'], execute('GET', 'str'), ",
        "redisgears.executeCommand('GET', 'copy')))).run('str')",
    ));
    assert_eq!(
        r.results(),
        ["('str', 'test\\x00test', 'test\\x00test', 'a\\x00b')"]
    );
    assert_eq!(c.cmd(&["GET", "copy"]), Value::Bulk(b"a\0b".to_vec()));
    let r = c.py("GB().map(lambda x: repr(x['value'])).run('hash')");
    assert_eq!(r.results(), ["{'f': 'x\\x00y'}"]);
    let r = c.py("GB().map(lambda x: repr(x['value'])).run('list')");
    assert_eq!(r.results(), ["['p\\x00q']"]);
    c.py("GB('CommandReader').map(lambda x: x[1]).register(trigger='echo0')");
    assert_eq!(
        c.cmd(&["RG.TRIGGER", "echo0", "u\0v"]),
        Value::Array(vec![Value::Bulk(b"u\0v".to_vec())])
    );
    c.py("GB().foreach(lambda x: execute('SET', 'mirror', x['value'])).register(prefix='src', mode='sync')");
    c.cmd(&["SET", "src", "m\0n"]);
    assert_eq!(c.cmd(&["GET", "mirror"]), Value::Bulk(b"m\0n".to_vec()));
}

/// The names 1.2 client libraries take from `redisgears` (gearsclient,
/// rgsync, redgrease) and from `__main__` (redgrease).
#[test]
fn the_redisgears_module_has_the_names_of_1_2() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let r = c.py(concat!(
        "import redisgears\n",
        "from redisgears import executeCommand, getMyHashTag, config_get, atomicCtx, ",
        "gearsFutureCtx, callNext, overrideReply, log, isAsyncAllow\n",
        "from __main__ import GB, GearsBuilder, configGet, gearsConfigGet\n",
        "log('from a client library', level='warning')\n",
        "log('default level')\n",
        "ctx = atomicCtx()\n",
        "ctx.__enter__()\n",
        "executeCommand('SET', 'inside', '1')\n",
        "ctx.__exit__()\n",
        "assert executeCommand is redisgears.execute\n",
        "GB('ShardsIDReader').map(lambda x: repr((getMyHashTag() == hashtag(), ",
        "config_get('MaxExecutions'), configGet('MaxExecutions'), ",
        "redisgears.isInAtomicBlock()))).run()",
    ));
    assert_eq!(r.results(), ["(True, 1000, 1000, False)"]);
    assert_eq!(c.cmd(&["GET", "inside"]), bulk("1"));
    assert!(s.log().contains("from a client library"));
}

/// 1.2's error class is `gears.error`, and its name is part of the texts.
#[test]
fn errors_are_gears_error() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let e = c.py("raise GearsError('boom')").error();
    assert!(e.ends_with("gears.error: boom\\n']"), "{e}");
    c.cmd(&["RG.CONFIGSET", "PythonAttemptTraceback", "0"]);
    assert_eq!(
        c.py("raise GearsError('boom')").error(),
        "Error type: <class 'gears.error'>, Value: boom"
    );
    let r = c.py("GB('ShardsIDReader').map(lambda x: GearsError.__module__ + '.' + GearsError.__name__).run()");
    assert_eq!(r.results(), ["gears.error"]);
}

/// KeysReader `commands=` checks each command as 1.2 does.
#[test]
fn keys_reader_commands_are_checked() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let e = |c: &mut gears_tests::Client, cmds: &str, prefix: &str| {
        let e = c
            .py(&format!(
                "GB().register(prefix='{prefix}', commands={cmds})"
            ))
            .error();
        e.rsplit("gears.error: ")
            .next()
            .unwrap()
            .trim_end_matches("\\n']")
            .to_string()
    };
    assert_eq!(
        e(&mut c, "['nosuchcommand']", "p*"),
        "bad reply on COMMAND command"
    );
    assert_eq!(
        e(&mut c, "['zunionstore']", "p*"),
        "Can not hook a command with moveable keys by key prefix"
    );
    assert_eq!(
        e(&mut c, "['eval']", "p*"),
        "Can not hook a command which are not allowed inside a script"
    );
    assert_eq!(
        c.py("GB().register(prefix='*', commands=['zunionstore'])"),
        Value::Status("OK".into())
    );
}

/// `GB('PythonReader').run(x)` wants a function; KeysOnlyReader takes its
/// pattern from `patternGenerator`.
#[test]
fn python_reader_and_pattern_generator() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let e = c.py("GB('PythonReader').run(5)").error();
    assert!(
        e.contains("gears.error: pyreader argument must be a function"),
        "{e}"
    );
    for k in ["a:1", "a:2", "b:1"] {
        c.cmd(&["SET", k, "v"]);
    }
    let mut r = c
        .py("GB('KeysOnlyReader').run(patternGenerator=lambda: ('a:*', False))")
        .results();
    r.sort();
    assert_eq!(r, ["a:1", "a:2"]);
    let r = c
        .py("GB('KeysOnlyReader').run(patternGenerator=lambda: ('b:1', True))")
        .results();
    assert_eq!(r, ["b:1"]);
}

/// Ids are never reused: after a restart, executions and registrations
/// continue from where the saved data left them.
#[test]
fn ids_continue_after_a_restart() {
    let mut s = Server::start(&[]);
    let mut c = s.client();
    c.py("GB().register(prefix='x')");
    for _ in 0..3 {
        c.py("GB('ShardsIDReader').run()");
    }
    let last = c
        .cmd(&["RG.PYEXECUTE", "GB('ShardsIDReader').run()", "UNBLOCKING"])
        .text();
    let n = |id: &str| id.rsplit('-').next().unwrap().parse::<u64>().unwrap();
    let before = n(&last);
    s.restart(&["SAVE"]);
    let mut c = s.client();
    let after = c
        .cmd(&["RG.PYEXECUTE", "GB('ShardsIDReader').run()", "UNBLOCKING"])
        .text();
    assert!(n(&after) > before, "{after} after {last}");
    c.py("GB().register(prefix='y')");
    let ids: Vec<u64> = c.registrations().iter().map(|r| n(&r.id)).collect();
    assert_eq!(ids.len(), 2);
    assert!(ids[1] > ids[0], "{ids:?}");
}

/// The public names a `.pyi` stub declares (top-level defs, classes and
/// assignments without a leading underscore, and `X as X` re-exports).
fn stub_names(file: &str) -> Vec<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../stubs")
        .join(file);
    let code = r#"
import ast, sys
tree = ast.parse(open(sys.argv[1]).read())
names = set()
for node in tree.body:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        names.add(node.name)
    elif isinstance(node, ast.Assign):
        names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        names.add(node.target.id)
    elif isinstance(node, (ast.Import, ast.ImportFrom)):
        names.update(a.asname for a in node.names if a.asname and a.asname == a.name.split('.')[-1])
print('\n'.join(sorted(n for n in names if not n.startswith('_'))))
"#;
    python3(&["-c".as_ref(), code.as_ref(), path.as_os_str()], None)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Runs this machine's `python3` with `args` (and `PYTHONPATH`), which
/// must succeed; what it printed.
fn python3<S: AsRef<std::ffi::OsStr>>(args: &[S], path: Option<&std::path::Path>) -> String {
    let mut cmd = std::process::Command::new("python3");
    cmd.args(args);
    if let Some(p) = path {
        cmd.env("PYTHONPATH", p);
    }
    let out = cmd.output().expect("python3 runs");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The stubs in `stubs/` name exactly what the runtime exports: a script's
/// globals and the `redisgears` module.
#[test]
fn the_stubs_name_exactly_what_the_runtime_exports() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let runtime = |c: &mut gears_tests::Client, expr: &str| -> Vec<String> {
        let r = c.py(&format!(
            "names = {expr}\nGB('ShardsIDReader').flatmap(lambda x: names).run()"
        ));
        let mut names = r.results();
        names.sort();
        names
    };
    let globals = runtime(
        &mut c,
        "sorted(n for n in globals() if not n.startswith('_') and n != 'names')",
    );
    assert_eq!(stub_names("gears.pyi"), globals);
    let module = runtime(
        &mut c,
        "sorted(n for n in dir(__import__('redisgears')) if not n.startswith('_'))",
    );
    assert_eq!(stub_names("redisgears.pyi"), module);
}

/// A small pure-Python package from PyPI, pinned.
const PACKAGE: &str = "humanize==4.9.0";

/// A server whose Python environment lives in its own directory.
fn server_with_env() -> Server {
    Server::start(&["PythonInstallationDir", "./pyenv"])
}

fn requirement_names(c: &mut gears_tests::Client) -> Vec<String> {
    c.cmd(&["RG.PYDUMPREQS"])
        .array()
        .iter()
        .map(|r| r.array()[3].text())
        .collect()
}

/// REQUIREMENTS installs with pip on a thread of its own (the server keeps
/// answering), once; a failure registers nothing; the wheels come back
/// from the RDB, offline, after a restart.
#[test]
fn requirements_are_installed_kept_and_reinstalled_offline() {
    let mut s = server_with_env();
    let mut c = s.client();
    let mut other = s.client();
    c.send(&[
        "RG.PYEXECUTE",
        "import humanize\nGB('CommandReader').map(lambda x: humanize.intcomma(int(x[1])) + ' ' + humanize.__file__).register(trigger='hum')",
        "ID",
        "withreq",
        "REQUIREMENTS",
        PACKAGE,
    ]);
    // pip runs while the server serves others.
    let mut worst = std::time::Duration::ZERO;
    for _ in 0..20 {
        let t = std::time::Instant::now();
        assert_eq!(other.cmd(&["PING"]), Value::Status("PONG".into()));
        worst = worst.max(t.elapsed());
        // Paces the PINGs over the time pip runs (a fixed wait on purpose).
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        worst < std::time::Duration::from_millis(200),
        "PING took {worst:?}"
    );
    assert_eq!(c.read(), Value::Status("OK".into()));
    let env = s.dir.join("pyenv").canonicalize().unwrap();
    let reply = c.cmd(&["RG.TRIGGER", "hum", "1234567"]).array()[0].text();
    let (number, file) = reply.split_once(' ').unwrap();
    assert_eq!(number, "1,234,567");
    assert!(
        file.starts_with(&env.to_string_lossy().to_string()),
        "{file}"
    );

    // RG.PYDUMPREQS, sessions and the registration's PD name it.
    let reqs = c.cmd(&["RG.PYDUMPREQS"]);
    let entry = reqs.array()[0].array();
    let keys: Vec<String> = entry.iter().step_by(2).map(|v| v.text()).collect();
    assert_eq!(
        keys,
        [
            "GearReqVersion",
            "Name",
            "IsDownloaded",
            "IsInstalled",
            "CompiledOs",
            "Wheels",
            "Path",
            "RefCount",
            "IsInReqDictionary"
        ]
    );
    assert_eq!(entry[3], bulk(PACKAGE));
    assert_eq!(entry[7], bulk("yes"));
    assert_eq!(entry[11].texts(), ["humanize-4.9.0-py3-none-any.whl"]);
    assert_eq!(entry[15], Value::Int(1));
    let sessions = c.cmd(&["RG.PYDUMPSESSIONS"]);
    assert_eq!(sessions.array()[0].array()[13].texts(), [PACKAGE]);
    let dump = c.cmd(&["RG.DUMPREGISTRATIONS"]);
    let entry = dump.array()[0].array();
    assert_eq!(entry[8], bulk("PD"));
    let pd = entry[9].text();
    assert!(
        pd.contains(&format!("'depsList':[{{'name':'{PACKAGE}'")),
        "{pd}"
    );

    // Already there: no pip, and fast.
    let t = std::time::Instant::now();
    c.py_with(&["REQUIREMENTS", PACKAGE], "import humanize");
    assert!(t.elapsed() < std::time::Duration::from_millis(500));
    assert_eq!(requirement_names(&mut c), [PACKAGE]);

    // A requirement pip can not find: 1.2's error, nothing registered.
    let e = c.cmd(&[
        "RG.PYEXECUTE",
        "GB().register(prefix='never')",
        "REQUIREMENTS",
        "no-such-package-for-gears-tests==0.0.1",
    ]);
    assert_eq!(
        e.error(),
        "Could not satisfy requirements (look at redis log file for more information)"
    );
    assert_eq!(c.registrations().len(), 1);
    assert!(s.log().contains("no-such-package-for-gears-tests"));

    // The installed files go; the RDB brings the wheels back.
    std::fs::remove_dir_all(env.join("python3.11").join("site-packages")).unwrap();
    s.restart(&["SAVE"]);
    let mut c = s.client();
    assert_eq!(
        c.cmd(&["RG.TRIGGER", "hum", "1000"]).array()[0]
            .text()
            .split(' ')
            .next(),
        Some("1,000")
    );
    assert_eq!(requirement_names(&mut c), [PACKAGE]);
}

/// A requirement exported from one server installs on another one, with
/// no network; bad data is refused.
#[test]
fn requirements_export_and_import() {
    let s = server_with_env();
    let mut c = s.client();
    c.py_with(&["REQUIREMENTS", PACKAGE], "import humanize");
    let exported = c.cmd(&["RG.PYEXPORTREQ", PACKAGE]);
    let parts = exported.array();
    assert_eq!(parts[0].array()[3], bulk(PACKAGE));
    let chunks: Vec<Vec<u8>> = parts[1]
        .array()
        .iter()
        .map(|v| match v {
            Value::Bulk(b) => b.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        c.cmd(&["RG.PYEXPORTREQ", "nothing"]).error(),
        "requirement does not exists"
    );

    let t = server_with_env();
    let mut d = t.client();
    let mut import: Vec<Vec<u8>> = vec![b"RG.PYIMPORTREQ".to_vec()];
    import.extend(chunks.iter().cloned());
    assert_eq!(d.cmd(&import), Value::Status("OK".into()));
    let r =
        d.py("import humanize\nGB('ShardsIDReader').map(lambda x: humanize.intcomma(1000)).run()");
    assert_eq!(r.results(), ["1,000"]);
    // Again without UPGRADE: it is there already.
    assert!(d.cmd(&import).error().contains("already exists"));
    import.insert(1, b"UPGRADE".to_vec());
    assert_eq!(d.cmd(&import), Value::Status("OK".into()));
    assert_eq!(
        d.cmd(&["RG.PYIMPORTREQ", "garbage"]).error(),
        "Bad serialization format on reading version"
    );
    // A wheel name that climbs out of its directory.
    let mut hostile = Vec::new();
    for part in [&1u64.to_le_bytes()[..], &1u64.to_le_bytes()[..]] {
        hostile.extend_from_slice(part);
    }
    let field = |out: &mut Vec<u8>, b: &[u8]| {
        out.extend_from_slice(&(b.len() as u64).to_le_bytes());
        out.extend_from_slice(b);
    };
    field(&mut hostile, b"evil");
    hostile.extend_from_slice(&1u64.to_le_bytes());
    field(&mut hostile, b"../../../evil.whl");
    field(&mut hostile, b"data");
    assert_eq!(
        d.cmd(&[b"RG.PYIMPORTREQ".to_vec(), hostile]).error(),
        "Bad serialization format on reading wheel name"
    );
}

/// Replicas install what their master installed, before the registration
/// that imports it.
#[test]
fn replicas_get_the_requirements() {
    let m = server_with_env();
    let r = Server::replica_of(&m);
    let mut c = m.client();
    c.py_with(
        &["REQUIREMENTS", PACKAGE],
        "import humanize\nGB('CommandReader').map(lambda x: humanize.intcomma(int(x[1]))).register(trigger='hum')",
    );
    let mut rc = r.client();
    assert!(
        r.wait_for(20, || rc.registrations().len() == 1),
        "{}",
        r.log()
    );
    assert_eq!(requirement_names(&mut rc), [PACKAGE]);
    assert!(r.dir.join("pyenv").exists());
}

/// gearsclient 1.0.2 from PyPI, unmodified, in a directory of its own for
/// the client side (`--no-deps`: this machine's redis-py and cloudpickle;
/// its pins predate Python 3.11).
fn gearsclient_dir(s: &Server) -> std::path::PathBuf {
    let dir = s.dir.join("client");
    let args = ["-m", "pip", "install", "-q", "--no-deps", "--target"];
    let mut args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
    args.push(dir.as_os_str());
    args.push("gearsclient==1.0.2".as_ref());
    python3(&args, None);
    dir
}

/// Runs `code` (Python) on the client side with gearsclient importable
/// and `PORT` set; returns what it prints.
fn client_python(s: &Server, lib: &std::path::Path, code: &str) -> String {
    let code = format!("PORT = {}\n{code}", s.port);
    python3(&["-c", code.as_str()], Some(lib))
}

/// gearsclient's README example (count the genres of movies), and a
/// registration made through it, against the module. The server installs
/// gearsclient itself, as a REQUIREMENT the client sends (the README's
/// default, a git URL, needs GitHub, which this machine can not reach).
#[test]
fn gearsclient_runs_its_readme_example() {
    let s = server_with_env();
    let lib = gearsclient_dir(&s);
    let mut c = s.client();
    for (key, genres) in [
        ("movie:1", "Drama,Comedy"),
        ("movie:2", "Comedy"),
        ("movie:3", "\\N"),
        ("movie:4", "Drama, Action"),
    ] {
        c.cmd(&["HSET", key, "genres", genres]);
    }
    let out = client_python(
        &s,
        &lib,
        r#"
from gearsclient import GearsRemoteBuilder as GearsBuilder
from gearsclient import execute
import redis
conn = redis.Redis(host='127.0.0.1', port=PORT)
res = GearsBuilder('KeysOnlyReader', r=conn, requirements=['gearsclient==1.0.2'], addClientToRequirements=False).\
      map(lambda x:execute('hget', x, 'genres')).\
      filter(lambda x:x != '\\N').\
      flatmap(lambda x: x.split(',')).\
      map(lambda x: x.strip()).\
      countby().\
      run()
for r in sorted(res[0], key=lambda r: r['key']):
    print('%s: %d' % (r['key'], r['value']))
print('errors', res[1])
res = GearsBuilder('KeysReader', r=conn, requirements=[], addClientToRequirements=False).\
      map(lambda x: (x['key'], len(x['value']))).\
      sort(False).limit(2).run('movie:*')
print(res)
print(GearsBuilder('KeysReader', r=conn, requirements=[], addClientToRequirements=False).\
      foreach(lambda x: execute('SET', 'seen:' + x['key'], '1')).\
      register(prefix='watched:*', mode='sync'))
"#,
    );
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "Action: 1",
            "Comedy: 2",
            "Drama: 2",
            "errors []",
            // sort(False) then flatmap from the end: descending (1.2).
            "([('movie:4', 1), ('movie:3', 1)], [])",
            "b'OK'",
        ]
    );
    c.cmd(&["SET", "watched:1", "v"]);
    assert_eq!(c.cmd(&["GET", "seen:watched:1"]), bulk("1"));
}

/// rgsync 1.2.0 from PyPI, unmodified, installed by the server itself
/// (`REQUIREMENTS rgsync==1.2.0`, as its README says): a write-behind from
/// Redis hashes to SQLite. Writes reach the table, deletes delete.
#[test]
fn rgsync_writes_behind_to_sqlite() {
    let s = server_with_env();
    let db = s.dir.join("rgsync.db");
    let sql = |q: &str| -> String {
        let code = format!(
            "import sqlite3\nc = sqlite3.connect({:?})\nr = c.execute({q:?}).fetchall()\nc.commit()\nprint(r)",
            db.to_string_lossy()
        );
        python3(&["-c", code.as_str()], None).trim().to_string()
    };
    sql("CREATE TABLE persons (person_id TEXT PRIMARY KEY, first TEXT, last TEXT, age INTEGER)");
    let script = format!(
        r#"
from rgsync import RGWriteBehind
from rgsync.Connectors import SQLiteConnection, SQLiteConnector
connection = SQLiteConnection({path:?})
persons = SQLiteConnector(connection, 'persons', 'person_id')
mappings = {{'first_name': 'first', 'last_name': 'last', 'age': 'age'}}
RGWriteBehind(GB, keysPrefix='person', mappings=mappings, connector=persons, name='PersonsWriteBehind', version='99.99.99', batch=1, duration=10)
"#,
        path = db.to_string_lossy()
    );
    let mut c = s.client();
    c.set_timeout(std::time::Duration::from_secs(300));
    c.py_with(&["REQUIREMENTS", "rgsync==1.2.0"], &script);
    assert_eq!(c.registrations().len(), 2);
    c.cmd(&[
        "HSET",
        "person:1",
        "first_name",
        "Ada",
        "last_name",
        "Lovelace",
        "age",
        "36",
    ]);
    c.cmd(&[
        "HSET",
        "person:2",
        "first_name",
        "Alan",
        "last_name",
        "Turing",
        "age",
        "41",
    ]);
    let want = "[('1', 'Ada', 'Lovelace', 36), ('2', 'Alan', 'Turing', 41)]";
    let mut last = String::new();
    let arrived = s.wait_for(30, || {
        last = sql("SELECT * FROM persons ORDER BY person_id");
        last == want
    });
    assert!(arrived, "{last}\n{}", s.log());
    c.cmd(&["DEL", "person:1"]);
    let deleted = s.wait_for(30, || {
        last = sql("SELECT person_id FROM persons ORDER BY person_id");
        last == "[('2',)]"
    });
    assert!(deleted, "{last}\n{}", s.log());
}

/// RG.PYSTATS counts the interpreter's memory (OverridePythonAllocators
/// 1, the default) or nothing (0); INFO has 1.2's rg sections.
#[test]
fn pystats_and_info() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let stats = |c: &mut gears_tests::Client| -> Vec<(String, i64)> {
        let r = c.cmd(&["RG.PYSTATS"]);
        r.array()
            .chunks(2)
            .map(|p| (p[0].text(), p[1].int()))
            .collect()
    };
    let before = stats(&mut c);
    let names: Vec<&str> = before.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["TotalAllocated", "PeakAllocated", "CurrAllocated"]);
    assert!(before[2].1 > 1_000_000, "{before:?}");
    // A session that keeps 50,000 strings holds more.
    c.py_with(
        &["ID", "big"],
        "kept = [str(i) * 3 for i in range(50000)]\nGB('CommandReader').map(lambda x: len(kept)).register(trigger='big')",
    );
    let after = stats(&mut c);
    assert!(after[2].1 > before[2].1 + 2_000_000, "{before:?} {after:?}");
    assert!(
        after[0].1 >= after[1].1 && after[1].1 >= after[2].1,
        "{after:?}"
    );
    c.cmd(&["RG.TRIGGER", "big"]);

    let info = c.cmd(&["INFO", "everything"]).text();
    for line in [
        "# rg\r\n",
        "rg_nregistrations:1\r\n",
        "# rg_regisrations\r\n",
        "# rg_plugins\r\n",
        "rg_GearsPythonPlugin:version=10000\r\n",
        "# rg_python_stats\r\n",
        "# rg_python_requirements\r\n",
        "# rg_python_sessions\r\n",
    ] {
        assert!(info.contains(line), "{line:?} missing from\n{info}");
    }
    assert!(
        info.contains(":reader=CommandReader,desc=,mode=async,numTriggered=1,numSuccess=1"),
        "{info}"
    );
    assert!(
        info.contains("rg_big:sessionDescription=,refCount=1"),
        "{info}"
    );
    let current: i64 = info
        .lines()
        .find_map(|l| l.strip_prefix("rg_CurrAllocated:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no rg_CurrAllocated in\n{info}"));
    assert!(current > 1_000_000, "{current}");

    let off = Server::start(&["OverridePythonAllocators", "0"]);
    let mut c = off.client();
    assert!(stats(&mut c).iter().all(|(_, v)| *v == 0));
}

/// ProfileExecutions: per-step durations in RG.GETEXECUTION and the
/// session's cProfile profile through RG.PYPROFILE.
#[test]
fn profiling_steps_and_sessions() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let script = "def slow(x):\n    import time\n    time.sleep(0.05)\n    return 1\n\
GB('CommandReader').map(slow).register(trigger='slow', mode='sync')";
    c.py_with(&["ID", "prof"], script);
    let duration_of_slow = |c: &mut gears_tests::Client| -> i64 {
        c.cmd(&["RG.TRIGGER", "slow"]);
        let dump = c.cmd(&["RG.DUMPEXECUTIONS"]);
        let id = dump.array().last().unwrap().array()[1].text();
        let ex = c.cmd(&["RG.GETEXECUTION", &id]);
        let plan = ex.array()[0].array()[3].array().to_vec();
        let steps = plan[15].array();
        // Last first: collect, str, slow, the record conversion.
        steps[2].array()[3].int()
    };
    // Off: nothing measured, and nothing profiled.
    assert_eq!(duration_of_slow(&mut c), 0);
    assert!(c
        .cmd(&["RG.PYPROFILE", "STATS", "prof"])
        .error()
        .contains("TypeError"));
    c.cmd(&["RG.CONFIGSET", "ProfileExecutions", "1"]);
    let ms = duration_of_slow(&mut c);
    assert!((50..1000).contains(&ms), "{ms}");
    let stats = c.cmd(&["RG.PYPROFILE", "STATS", "prof", "cumtime"]).text();
    assert!(stats.contains("Ordered by: internal time"), "{stats}");
    assert!(stats.contains("(slow)"), "{stats}");
    assert!(stats.contains("{built-in method time.sleep}"), "{stats}");
    assert_eq!(
        c.cmd(&["RG.PYPROFILE", "RESET", "prof"]),
        Value::Status("OK".into())
    );
    assert!(c
        .cmd(&["RG.PYPROFILE", "STATS", "prof"])
        .error()
        .contains("TypeError"));
    assert_eq!(
        c.cmd(&["RG.PYPROFILE", "STATS", "nosuch"]).error(),
        "session does not exists"
    );
    assert_eq!(
        c.cmd(&["RG.PYPROFILE", "SHOW", "prof"]).error(),
        "Wrong subcommand given to RG.PYPROFILE"
    );
    assert!(c
        .cmd(&["RG.PYPROFILE", "STATS"])
        .error()
        .contains("wrong number of arguments"));
}

/// A long RG.PYEXECUTE run is in SLOWLOG with the time it took, though it
/// ran off the main thread.
#[test]
fn long_runs_are_in_the_slowlog() {
    let s = Server::start(&[]);
    let mut c = s.client();
    c.cmd(&["CONFIG", "SET", "slowlog-log-slower-than", "100000"]);
    c.cmd(&["SLOWLOG", "RESET"]);
    let script = "import time\nGB('ShardsIDReader').map(lambda x: time.sleep(0.3)).run()";
    c.py(script);
    let log = c.cmd(&["SLOWLOG", "GET", "10"]);
    let entry = log
        .array()
        .iter()
        .find(|e| {
            e.array()[3].array()[0]
                .text()
                .eq_ignore_ascii_case("RG.PYEXECUTE")
        })
        .unwrap_or_else(|| panic!("no RG.PYEXECUTE in {log:?}"))
        .array()
        .to_vec();
    let micros = entry[2].int();
    assert!((300_000..3_000_000).contains(&micros), "{micros}");
    assert_eq!(entry[3].array()[1].text(), script);
}

/// `CreateVenv 1` installs into a virtualenv named after the log file;
/// FORCE_REINSTALL_REQUIREMENTS downloads and installs again.
#[test]
fn virtualenv_and_forced_reinstall() {
    let s = Server::start(&["PythonInstallationDir", "./pyenv", "CreateVenv", "1"]);
    let mut c = s.client();
    let file = c
        .py_with(
            &["REQUIREMENTS", PACKAGE],
            "import humanize\nGB('ShardsIDReader').map(lambda x: humanize.__file__).run()",
        )
        .results();
    let venv = s
        .dir
        .join("pyenv")
        .join(".venv-redis.log")
        .canonicalize()
        .unwrap();
    assert!(venv.join("pyvenv.cfg").exists());
    assert!(
        file[0].starts_with(&venv.join("lib").to_string_lossy().to_string()),
        "{file:?}"
    );
    let path =
        |c: &mut gears_tests::Client| c.cmd(&["RG.PYDUMPREQS"]).array()[0].array()[13].text();
    let first = path(&mut c);
    c.py_with(&["REQUIREMENTS", PACKAGE], "import humanize");
    assert_eq!(path(&mut c), first);
    c.py_with(
        &["FORCE_REINSTALL_REQUIREMENTS", "REQUIREMENTS", PACKAGE],
        "import humanize",
    );
    let second = path(&mut c);
    assert_ne!(second, first);
    assert!(
        !std::path::Path::new(&first).exists(),
        "the old wheels stay: {first}"
    );
    assert!(std::path::Path::new(&second).exists());
}

/// gears-cli 1.2.0 from PyPI, unmodified (`--no-deps`: this machine's click
/// and redis-py): `run`, `install-requirements`, then `export-requirements`
/// from one server and `import-requirements` into another.
#[test]
fn gears_cli_runs_installs_exports_and_imports() {
    let s = server_with_env();
    let lib = s.dir.join("cli");
    let lib_arg = lib.to_string_lossy().to_string();
    python3(
        &[
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            &lib_arg,
            "gears-cli==1.2.0",
        ],
        None,
    );
    let cli = |port: u16, rest: &[&str]| -> String {
        let port = port.to_string();
        let mut a = vec![
            "-m",
            "gears_cli",
            rest[0],
            "--host",
            "127.0.0.1",
            "--port",
            &port,
        ];
        a.extend_from_slice(&rest[1..]);
        python3(&a, Some(&lib))
    };
    let script = s.dir.join("script.py");
    std::fs::write(&script, "GB('ShardsIDReader').map(lambda x: 'hello').run()").unwrap();
    let out = cli(s.port, &["run", &script.to_string_lossy()]);
    assert!(out.contains("hello"), "{out}");
    let out = cli(s.port, &["install-requirements", PACKAGE]);
    assert!(out.contains("Done"), "{out}");
    let mut c = s.client();
    assert_eq!(requirement_names(&mut c), [PACKAGE]);
    let exports = s.dir.join("exports");
    std::fs::create_dir_all(&exports).unwrap();
    cli(
        s.port,
        &[
            "export-requirements",
            "--all",
            "--save-directory",
            &exports.to_string_lossy(),
        ],
    );
    let zip = std::fs::read_dir(&exports)
        .unwrap()
        .next()
        .expect("an exported file")
        .unwrap()
        .path();
    let name = zip.file_name().unwrap().to_string_lossy().to_string();
    assert!(
        name.starts_with("redisgears-requirement-v1-humanize==4.9.0-"),
        "{name}"
    );

    let t = server_with_env();
    cli(
        t.port,
        &[
            "import-requirements",
            "--requirements-path",
            &exports.to_string_lossy(),
            &name,
        ],
    );
    let mut d = t.client();
    assert_eq!(requirement_names(&mut d), [PACKAGE]);
    let r =
        d.py("import humanize\nGB('ShardsIDReader').map(lambda x: humanize.intcomma(12345)).run()");
    assert_eq!(r.results(), ["12,345"]);
}

/// RG.PYIMPORTREQ runs pip off the main thread for a client that waits:
/// inside MULTI (or Lua), where nobody can wait, it is refused.
#[test]
fn import_is_refused_where_the_client_can_not_wait() {
    let s = server_with_env();
    let mut c = s.client();
    c.cmd(&["MULTI"]);
    c.cmd(&["RG.PYIMPORTREQ", "whatever"]);
    let r = c.cmd(&["EXEC"]);
    assert_eq!(
        r.array()[0].error(),
        "Can not run gears inside a multi exec, lua, or when blocking is not allowed"
    );
    let lua = c.cmd(&[
        "EVAL",
        "return redis.pcall('RG.PYIMPORTREQ', 'whatever')",
        "0",
    ]);
    // An administrative command from a script: where the server files
    // module commands under no ACL category (Redis 7.0) the module checks
    // the caller itself, and can not know a script's user: refused.
    let e = lua.error();
    assert!(
        e == "Can not run gears inside a multi exec, lua, or when blocking is not allowed"
            || e == "NOPERM this user has no permissions to run the 'rg.pyimportreq' command",
        "{e}"
    );
    assert!(c.cmd(&["RG.PYDUMPREQS"]).array().is_empty());
}

/// With `aof-use-rdb-preamble no` a rewrite's base file holds keys only:
/// the requirement (wheels included) and the registration that imports it
/// come back from the head of the new incremental file, offline.
#[test]
fn requirements_survive_an_aof_rewrite_without_rdb_preamble() {
    let mut s = Server::start_with(
        &["--appendonly", "yes", "--aof-use-rdb-preamble", "no"],
        &["PythonInstallationDir", "./pyenv"],
    );
    let mut c = s.client();
    c.py_with(
        &["ID", "withreq", "REQUIREMENTS", PACKAGE],
        "import humanize\nGB('CommandReader').map(lambda x: humanize.intcomma(int(x[1]))).register(trigger='hum')",
    );
    assert_eq!(
        c.cmd(&["BGREWRITEAOF"]).text(),
        "Background append only file rewriting started"
    );
    let done = s.wait_for(20, || {
        c.cmd(&["INFO", "persistence"])
            .text()
            .contains("aof_rewrite_in_progress:0")
    });
    assert!(done);
    let env = s.dir.join("pyenv").canonicalize().unwrap();
    std::fs::remove_dir_all(env.join("python3.11").join("site-packages")).unwrap();
    s.restart(&["NOSAVE"]);
    let mut c = s.client();
    assert_eq!(
        c.cmd(&["RG.TRIGGER", "hum", "1234"]).array()[0],
        bulk("1,234"),
        "{}",
        s.log()
    );
    assert_eq!(requirement_names(&mut c), [PACKAGE]);
}
