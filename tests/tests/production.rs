//! The module as operators run it: whatever environment starts Redis, users
//! locked down with Redis's ACL categories, hooks under Lua and Redis
//! functions, Python's memory in `used_memory`, every persistence setting,
//! `onRegistered` after restarts, streams of any database.

use gears_tests::{bulk, holds_for, Client, Env, Server, Value};
use std::time::Duration;

fn ok() -> Value {
    Value::Status("OK".into())
}

// ---------------------------------------------------------------- ACLs

/// A user made the usual way to forbid administration.
fn app_user(admin: &mut Client, s: &Server) -> Client {
    s.client_as(
        admin,
        "app",
        &["~*", "&*", "+@all", "-@admin", "-@dangerous"],
    )
}

fn is_noperm(v: &Value) -> bool {
    matches!(v, Value::Error(e) if e.starts_with("NOPERM"))
}

#[test]
fn administration_is_refused_to_users_without_admin_and_dangerous() {
    let s = Server::start(&[]);
    let mut admin = s.client();
    let mut app = app_user(&mut admin, &s);
    let refused: &[&[&str]] = &[
        &["RG.CONFIGSET", "MaxExecutions", "10"],
        &["RG.PYIMPORTREQ", "whatever"],
        &["RG.HELLO"],
        &["RG.INNERMSGCOMMAND", "a", "b", "c", "d", "1"],
        &["RG.NETWORKTEST"],
        &["RG.REFRESHCLUSTER"],
        &["RG.PYPROFILE", "RESET", "x"],
        &["RG.PYPROFILE", "STATS", "x"],
        &["RG.PYKILL"],
        &["RG.INNERREGISTER", "x"],
        &["RG.INNERUNREGISTER", "x"],
    ];
    for cmd in refused {
        let r = app.cmd(cmd);
        assert!(is_noperm(&r), "{cmd:?}: {r:?}");
    }
    // The configuration did not change.
    assert_eq!(
        admin.cmd(&["RG.CONFIGGET", "MaxExecutions"]).array()[0],
        Value::Int(1000)
    );

    // What 1.2 gives ordinary users still works.
    let reg =
        app.py("GB('CommandReader').map(lambda x: execute('INCR', 'n')).register(trigger='inc')");
    assert_eq!(reg, ok());
    assert_eq!(app.cmd(&["RG.TRIGGER", "inc"]).array()[0], bulk("1"));
    let run = app.cmd(&[
        "RG.PYEXECUTE",
        "GB().map(lambda x: x['key']).run('n')",
        "UNBLOCKING",
    ]);
    let id = run.text();
    assert_eq!(app.cmd(&["RG.GETRESULTSBLOCKING", &id]).results(), ["n"]);
    assert_eq!(app.cmd(&["RG.GETRESULTS", &id]).results(), ["n"]);
    assert!(!app.cmd(&["RG.DUMPEXECUTIONS"]).array().is_empty());
    assert_eq!(app.cmd(&["RG.DROPEXECUTION", &id]), ok());
    assert_eq!(
        app.cmd(&["RG.CONFIGGET", "MaxExecutions"]).array()[0],
        Value::Int(1000)
    );
    let regs = app.registrations();
    assert_eq!(regs.len(), 1);
    assert_eq!(
        app.cmd(&["RG.PAUSEREGISTRATIONS", &regs[0].id]).error(),
        "Reader CommandReader does not support pause"
    );
    assert!(matches!(app.cmd(&["RG.PYDUMPSESSIONS"]), Value::Array(_)));
    assert!(matches!(app.cmd(&["RG.PYDUMPREQS"]), Value::Array(_)));
    assert!(matches!(app.cmd(&["RG.PYSTATS"]), Value::Array(_)));
    assert!(matches!(app.cmd(&["RG.INFOCLUSTER"]), Value::Status(_)));
    assert_eq!(app.cmd(&["RG.CLEARREGISTRATIONSSTATS"]), ok());
    assert_eq!(app.cmd(&["RG.UNREGISTER", &regs[0].id]), ok());
    // And the administrator may do everything.
    assert_eq!(
        admin.cmd(&["RG.CONFIGSET", "MaxExecutions", "10"]).array()[0],
        ok()
    );
}

/// COMMAND INFO's flags: nothing that writes is `readonly`; administrative
/// and internal commands are `admin`; internal ones are refused in scripts.
#[test]
fn command_flags_follow_redis_conventions() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let flags = |c: &mut Client, name: &str| -> Vec<String> {
        let info = c.cmd(&["COMMAND", "INFO", name]);
        info.array()[0].array()[2].texts()
    };
    for writer in [
        "rg.pyexecute",
        "rg.configset",
        "rg.unregister",
        "rg.trigger",
        "rg.pyimportreq",
    ] {
        let f = flags(&mut c, writer);
        assert!(!f.contains(&"readonly".to_string()), "{writer}: {f:?}");
    }
    for admin in [
        "rg.configset",
        "rg.pyimportreq",
        "rg.hello",
        "rg.innermsgcommand",
        "rg.pykill",
        "rg.pyprofile",
    ] {
        let f = flags(&mut c, admin);
        assert!(f.contains(&"admin".to_string()), "{admin}: {f:?}");
    }
    for inspection in [
        "rg.dumpregistrations",
        "rg.getresults",
        "rg.configget",
        "rg.dumpexecutions",
    ] {
        let f = flags(&mut c, inspection);
        assert!(f.contains(&"readonly".to_string()), "{inspection}: {f:?}");
    }
    assert!(flags(&mut c, "rg.innermsgcommand").contains(&"noscript".to_string()));
    let e = c
        .cmd(&["EVAL", "return redis.pcall('RG.HELLO')", "0"])
        .error();
    assert!(e.contains("not allowed from script"), "{e}");
}

#[test]
fn inter_shard_commands_are_refused_outside_a_cluster() {
    let s = Server::start(&[]);
    let mut c = s.client();
    assert_eq!(
        c.cmd(&["RG.HELLO"]).error(),
        "ERR RG.HELLO is only used between the shards of a cluster, and this server is not in one"
    );
    assert_eq!(
        c.cmd(&["RG.INNERMSGCOMMAND", "a", "b", "RG_NetworkTest", "", "1"]).error(),
        "ERR RG.INNERMSGCOMMAND is only used between the shards of a cluster, and this server is not in one"
    );
}

// ------------------------------------------------- hooks under scripts

#[test]
fn hooks_and_triggers_work_under_lua_and_redis_functions() {
    let s = Server::start(&[]);
    let mut c = s.client();
    assert_eq!(c.cmd(&["SELECT", "3"]), ok());
    // A hook that changes the value, owned by the default user.
    assert_eq!(
        c.py("GB('CommandReader').map(lambda x: call_next(x[1], x[2] + '-hooked')).register(hook='set', mode='sync', keyprefix='h:')"),
        ok()
    );
    // A trigger on keys that scripts write.
    assert_eq!(
        c.py("GB().foreach(lambda x: execute('INCR', 'seen:' + x['key'])).register(prefix='t:*', mode='sync', eventTypes=['set'])"),
        ok()
    );
    // The hook's reply is what the script gets.
    let r = c.cmd(&["EVAL", "return redis.call('SET', KEYS[1], 'v')", "1", "h:a"]);
    assert_eq!(r, bulk("OK"));
    assert_eq!(c.cmd(&["GET", "h:a"]), bulk("v-hooked"));
    let lib = "#!lua name=gearslib\nredis.register_function('setit', function(keys, args) return redis.call('SET', keys[1], args[1]) end)";
    assert_eq!(c.cmd(&["FUNCTION", "LOAD", lib]), bulk("gearslib"));
    assert_eq!(c.cmd(&["FCALL", "setit", "1", "h:b", "w"]), bulk("OK"));
    assert_eq!(c.cmd(&["GET", "h:b"]), bulk("w-hooked"));
    // Keys the hook does not watch pass untouched.
    assert_eq!(c.cmd(&["FCALL", "setit", "1", "other", "w"]), ok());
    assert_eq!(c.cmd(&["GET", "other"]), bulk("w"));
    // Writes of scripts fire keyspace triggers, in the script's database.
    c.cmd(&["EVAL", "redis.call('SET', 't:1', 'x') return 1", "0"]);
    c.cmd(&["FCALL", "setit", "1", "t:2", "y"]);
    assert_eq!(c.cmd(&["GET", "seen:t:1"]), bulk("1"));
    assert_eq!(c.cmd(&["GET", "seen:t:2"]), bulk("1"));
    // Nothing went to database 0.
    assert_eq!(c.cmd(&["SELECT", "0"]), ok());
    assert_eq!(c.cmd(&["DBSIZE"]).int(), 0);
}

/// A script caller still needs the key permissions of the hooked command:
/// Redis checks them on RG.INNERHOOK's key positions.
#[test]
fn a_hook_does_not_widen_a_script_callers_key_permissions() {
    let s = Server::start(&[]);
    let mut admin = s.client();
    admin.cmd(&["SET", "secret:token", "abc"]);
    admin.py("GB('CommandReader').map(lambda x: call_next(*x[1:])).register(hook='set', mode='sync', keyprefix='')");
    let mut c = s.client_as(&mut admin, "lim", &["~app:*", "+@all", "-@dangerous"]);
    let e = c
        .cmd(&["EVAL", "return redis.call('SET', 'secret:token', 'x')", "0"])
        .error();
    assert!(e.contains("can't access at least one of the keys"), "{e}");
    let e = c.cmd(&["SET", "secret:token", "x"]).error();
    assert!(e.starts_with("NOPERM"), "{e}");
    assert_eq!(admin.cmd(&["GET", "secret:token"]), bulk("abc"));
    // Its own keys go through the hook.
    assert_eq!(
        c.cmd(&["EVAL", "return redis.call('SET', 'app:1', 'x')", "0"]),
        bulk("OK")
    );
    assert_eq!(admin.cmd(&["GET", "app:1"]), bulk("x"));
}

// --------------------------------------------------- hermetic Python

const SYS_PATH: &str = "import sys\nGB('ShardsIDReader').map(lambda x: repr((sys.path, sys.prefix, sys.executable))).run()";

/// What scripts see, and that registrations (cloudpickle) work.
fn python_view(s: &Server) -> String {
    let mut c = s.client();
    let view = c.py(SYS_PATH).results()[0].clone();
    assert_eq!(
        c.py("GB('CommandReader').map(lambda x: 'pickled').register(trigger='p')"),
        ok(),
        "{}",
        s.log()
    );
    assert_eq!(c.cmd(&["RG.TRIGGER", "p"]).array()[0], bulk("pickled"));
    view
}

#[test]
fn the_environment_of_the_server_does_not_change_python() {
    let plain = Server::start(&[]);
    let expected = python_view(&plain);
    assert!(!expected.contains("''"), "{expected}");

    // A foreign virtualenv active in the shell that starts Redis.
    let venv = plain.dir.join("foreign-venv");
    let made = std::process::Command::new("python3")
        .args(["-m", "venv", "--without-pip"])
        .arg(&venv)
        .status()
        .unwrap();
    assert!(made.success());
    let path = format!(
        "{}:{}",
        venv.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let foreign = Env {
        clear: false,
        vars: vec![
            ("VIRTUAL_ENV".into(), venv.display().to_string()),
            ("PATH".into(), path),
            ("PYTHONPATH".into(), "/nonexistent/junk:.".into()),
            ("PYTHONHOME".into(), "/nonexistent/home".into()),
            ("PYTHONNOUSERSITE".into(), String::new()),
            ("PYTHONSTARTUP".into(), "/nonexistent/startup.py".into()),
        ],
    };
    let s = Server::start_in(foreign, &[], &[]);
    assert_eq!(python_view(&s), expected);

    // As systemd starts it: an empty environment and a minimal PATH.
    let bare = Env {
        clear: true,
        vars: vec![("PATH".into(), "/usr/bin:/bin".into())],
    };
    let s = Server::start_in(bare, &[], &[]);
    assert_eq!(python_view(&s), expected);
}

// ------------------------------------------------------------- memory

fn used_memory(c: &mut Client) -> i64 {
    c.info_int("memory", "used_memory")
        .expect("used_memory in INFO")
}

const BIG: &str = "data = 'x' * 100_000_000\nGB('CommandReader').map(lambda x: len(data)).register(trigger='big')";

#[test]
fn python_memory_counts_in_used_memory_and_is_given_back() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let before = used_memory(&mut c);
    assert_eq!(c.py(BIG), ok());
    let held = used_memory(&mut c);
    assert!(
        (95_000_000..130_000_000).contains(&(held - before)),
        "{before} -> {held}"
    );
    assert_eq!(c.cmd(&["RG.TRIGGER", "big"]).array()[0], bulk("100000000"));
    let id = c.registrations()[0].id.clone();
    assert_eq!(c.cmd(&["RG.UNREGISTER", &id]), ok());
    // The execution kept for RG.DUMPEXECUTIONS holds no Python object.
    let after = used_memory(&mut c);
    assert!(after - before < 10_000_000, "{before} -> {held} -> {after}");
}

#[test]
fn maxmemory_sees_python() {
    let s = Server::start_with(&["--maxmemory", "80mb"], &[]);
    let mut c = s.client();
    assert_eq!(c.py(BIG), ok());
    let e = c.cmd(&["SET", "k", "v"]).error();
    assert!(e.starts_with("OOM"), "{e}");
}

#[test]
fn without_override_python_memory_is_not_counted() {
    let s = Server::start(&["OverridePythonAllocators", "0"]);
    let mut c = s.client();
    let before = used_memory(&mut c);
    assert_eq!(c.py(BIG), ok());
    let held = used_memory(&mut c);
    assert!(held - before < 10_000_000, "{before} -> {held}");
}

// --------------------------------------------------------- persistence

/// What every persistence test registers (in database 2): a session with a
/// trigger whose `onRegistered` counts, a KeysReader registration and a
/// time event.
fn register_state(c: &mut Client) {
    assert_eq!(c.cmd(&["SELECT", "2"]), ok());
    let script = "def hello():\n    execute('INCR', 'onreg')\n\
GB('CommandReader').map(lambda x: 'alive').register(trigger='alive', onRegistered=hello)\n\
GB().foreach(lambda x: execute('INCR', 'writes')).register(prefix='w:*', mode='sync', eventTypes=['set'])";
    assert_eq!(c.py_with(&["ID", "kept"], script), ok());
    assert_eq!(
        c.py("redisgears.registerTimeEvent(0.1, lambda: execute('INCR', 'ticks'), 'tick')"),
        ok()
    );
    // onRegistered and time events act in database 0 (as 1.2's do).
    assert_eq!(c.cmd(&["SELECT", "0"]), ok());
    assert_eq!(c.cmd(&["GET", "onreg"]), bulk("1"));
    assert_eq!(c.cmd(&["SELECT", "2"]), ok());
    assert_eq!(c.cmd(&["SET", "w:1", "x"]), ok());
    assert_eq!(c.cmd(&["GET", "writes"]), bulk("1"));
}

/// After a restart: everything is back, and `onRegistered` ran again.
fn check_state(s: &mut Server, onreg: &str) {
    let mut c = s.client();
    assert_eq!(c.cmd(&["SELECT", "2"]), ok());
    let regs = c.registrations();
    assert_eq!(regs.len(), 2, "{}", s.log());
    assert_eq!(c.cmd(&["RG.TRIGGER", "alive"]).array()[0], bulk("alive"));
    assert_eq!(c.cmd(&["SET", "w:2", "x"]), ok());
    assert!(matches!(c.cmd(&["GET", "writes"]), Value::Bulk(_)));
    assert_eq!(c.cmd(&["SELECT", "0"]), ok());
    assert_eq!(c.cmd(&["GET", "onreg"]), bulk(onreg), "{}", s.log());
    let sessions = c.cmd(&["RG.PYDUMPSESSIONS"]);
    assert_eq!(sessions.array()[0].texts_lossy()[1], "kept", "{sessions:?}");
    let ticks = |c: &mut Client| c.int_at("ticks");
    let t = ticks(&mut c);
    assert!(
        s.wait_for(10, || ticks(&mut c) > t + 2),
        "the time event stopped"
    );
}

fn survives(server_args: &[&str], persist: impl Fn(&mut Client, &Server), shutdown: &[&str]) {
    let mut s = Server::start_with(server_args, &[]);
    let mut c = s.client();
    register_state(&mut c);
    persist(&mut c, &s);
    s.restart(shutdown);
    check_state(&mut s, "2");
    // And once more, from what the first restart wrote.
    persist(&mut s.client(), &s);
    s.restart(shutdown);
    check_state(&mut s, "3");
}

fn rewrite_aof(c: &mut Client, s: &Server) {
    let r = c.cmd(&["BGREWRITEAOF"]);
    assert!(matches!(r, Value::Status(_)), "{r:?}");
    let done = s.wait_for(20, || {
        let info = c.cmd(&["INFO", "persistence"]).text();
        info.contains("aof_rewrite_in_progress:0") && info.contains("aof_rewrite_scheduled:0")
    });
    assert!(done, "the rewrite did not finish");
}

#[test]
fn state_survives_rdb_only() {
    survives(&[], |c, _| assert_eq!(c.cmd(&["SAVE"]), ok()), &["NOSAVE"]);
}

#[test]
fn state_survives_aof_with_rdb_preamble_and_a_rewrite() {
    survives(
        &["--appendonly", "yes", "--aof-use-rdb-preamble", "yes"],
        rewrite_aof,
        &["NOSAVE"],
    );
}

#[test]
fn state_survives_aof_without_rdb_preamble_and_a_rewrite() {
    survives(
        &["--appendonly", "yes", "--aof-use-rdb-preamble", "no"],
        rewrite_aof,
        &["NOSAVE"],
    );
}

#[test]
fn state_survives_aof_without_preamble_and_without_a_rewrite() {
    survives(
        &["--appendonly", "yes", "--aof-use-rdb-preamble", "no"],
        |_, _| {},
        &["NOSAVE"],
    );
}

#[test]
fn state_survives_aof_with_fsync_always_and_a_kill() {
    survives(
        &[
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--aof-use-rdb-preamble",
            "no",
        ],
        rewrite_aof,
        &["KILL"],
    );
}

#[test]
fn state_survives_aof_with_fsync_everysec() {
    survives(
        &["--appendonly", "yes", "--appendfsync", "everysec"],
        |c, s| {
            // A kill loses only what Redis has not written to the AOF yet
            // (the system keeps what was written, synced or not; with
            // everysec a write may wait for a background fsync): wait until
            // its buffer is empty.
            let written = s.wait_for(20, || {
                c.info_int("persistence", "aof_buffer_length") == Some(0)
            });
            assert!(written, "the AOF buffer was never written");
        },
        &["KILL"],
    );
}

/// Automatic rewrites (many of them, each adding a base file and an
/// incremental one to the multi-part AOF) keep the registrations.
#[test]
fn state_survives_automatic_aof_rewrites() {
    survives(
        &[
            "--appendonly",
            "yes",
            "--aof-use-rdb-preamble",
            "no",
            "--auto-aof-rewrite-percentage",
            "1",
            "--auto-aof-rewrite-min-size",
            "1kb",
        ],
        |c, s| {
            let rewrites = |c: &mut Client| c.info_int("persistence", "aof_rewrites").unwrap_or(0);
            let before = rewrites(c);
            let value = "v".repeat(4096);
            let grew = s.wait_for(30, || {
                c.cmd(&["SET", "filler", &value]);
                rewrites(c) >= before + 2
            });
            assert!(grew, "no automatic rewrite");
            let idle = s.wait_for(20, || {
                c.cmd(&["INFO", "persistence"])
                    .text()
                    .contains("aof_rewrite_in_progress:0")
            });
            assert!(idle);
        },
        &["NOSAVE"],
    );
}

/// A replica promoted to master runs `onRegistered`.
#[test]
fn on_registered_runs_on_a_promoted_replica() {
    let master = Server::start(&[]);
    let replica = Server::replica_of(&master);
    let mut m = master.client();
    let script =
        "def hello():\n    execute('INCR', 'hello:' + str(len(execute('RG.DUMPREGISTRATIONS'))))\n\
GB('CommandReader').map(lambda x: 1).register(trigger='x', onRegistered=hello)";
    assert_eq!(m.py(script), ok());
    assert_eq!(m.cmd(&["GET", "hello:1"]), bulk("1"));
    let mut r = replica.client();
    assert!(replica.wait_for(10, || r.cmd(&["GET", "hello:1"]) == bulk("1")));
    assert_eq!(r.registrations().len(), 1);
    drop(master);
    assert_eq!(r.cmd(&["REPLICAOF", "NO", "ONE"]), ok());
    assert!(replica.wait_for(10, || r.cmd(&["GET", "hello:1"]) == bulk("2")));
}

// ------------------------------------------------------------ streams

const SLOW_STREAM: &str = "import time\n\
def work(x):\n    time.sleep(0.05)\n    execute('INCR', 'done')\n\
GB('StreamReader').foreach(work).register(prefix='s3', batch=2)";

fn done(c: &mut Client) -> i64 {
    c.int_at("done")
}

#[test]
fn streams_outside_database_zero_resume_after_kill_9() {
    let mut s = Server::start_with(&["--appendonly", "yes", "--appendfsync", "always"], &[]);
    let mut c = s.client();
    assert_eq!(c.cmd(&["SELECT", "3"]), ok());
    assert_eq!(c.py(SLOW_STREAM), ok());
    for i in 0..20 {
        c.cmd(&["XADD", "s3", "*", "n", &i.to_string()]);
    }
    assert!(s.wait_for(10, || done(&mut c) >= 4));
    s.restart(&["KILL"]);
    let mut c = s.client();
    assert_eq!(c.cmd(&["SELECT", "3"]), ok());
    // Every message is processed, without a new XADD (a batch in flight at
    // the kill runs again: at least once).
    assert!(
        s.wait_for(20, || c.cmd(&["XLEN", "s3"]).int() == 0),
        "{} processed; {}",
        done(&mut c),
        s.log()
    );
    assert!(done(&mut c) >= 20);
}

#[test]
fn streams_outside_database_zero_resume_after_unpause_and_promotion() {
    let master = Server::start(&[]);
    let replica = Server::replica_of(&master);
    let mut c = master.client();
    assert_eq!(c.cmd(&["SELECT", "3"]), ok());
    assert_eq!(
        c.py("GB('StreamReader').foreach(lambda x: execute('INCR', 'done')).register(prefix='s3')"),
        ok()
    );
    let id = c.registrations()[0].id.clone();
    assert_eq!(c.cmd(&["RG.PAUSEREGISTRATIONS", &id]), ok());
    for i in 0..5 {
        c.cmd(&["XADD", "s3", "*", "n", &i.to_string()]);
    }
    assert!(
        holds_for(Duration::from_millis(200), || done(&mut c) == 0),
        "read while paused: {}",
        done(&mut c)
    );
    assert_eq!(c.cmd(&["RG.UNPAUSEREGISTRATIONS", &id]), ok());
    assert!(master.wait_for(10, || done(&mut c) == 5));

    // Messages the master never processed are processed by the promoted
    // replica.
    assert_eq!(c.cmd(&["RG.PAUSEREGISTRATIONS", &id]), ok());
    for i in 0..5 {
        c.cmd(&["XADD", "s3", "*", "n", &i.to_string()]);
    }
    let mut r = replica.client();
    assert_eq!(r.cmd(&["SELECT", "3"]), ok());
    assert!(replica.wait_for(10, || r.cmd(&["XLEN", "s3"]).int() == 5));
    drop(master);
    assert_eq!(r.cmd(&["REPLICAOF", "NO", "ONE"]), ok());
    assert!(
        replica.wait_for(10, || done(&mut r) == 10),
        "{} done; {}",
        done(&mut r),
        replica.log()
    );
}
