//! Test support: a throwaway `redis-server` with the module loaded, and a
//! client (redis-rs, with replies as plain [`Value`]s). No mocks: every test
//! talks to a real server.
//!
//! The module is found through `GEARS_MODULE` (set by `cargo xtask test`),
//! or else in `target/release` then `target/debug`.

#![forbid(unsafe_code)]

pub mod fuzz;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A RESP2 value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Nil,
    Array(Vec<Value>),
}

impl Value {
    /// The text of a status or bulk reply; panics otherwise.
    pub fn text(&self) -> String {
        match self {
            Value::Status(s) => s.clone(),
            Value::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
            other => panic!("expected text, got {other:?}"),
        }
    }

    pub fn int(&self) -> i64 {
        match self {
            Value::Int(i) => *i,
            other => panic!("expected an integer, got {other:?}"),
        }
    }

    pub fn array(&self) -> &[Value] {
        match self {
            Value::Array(a) => a,
            other => panic!("expected an array, got {other:?}"),
        }
    }

    pub fn error(&self) -> String {
        match self {
            Value::Error(e) => e.clone(),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    /// Texts of an array's items, whatever they are (`Debug` for non-text).
    pub fn texts_lossy(&self) -> Vec<String> {
        self.array()
            .iter()
            .map(|v| match v {
                Value::Status(_) | Value::Bulk(_) => v.text(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    /// Texts of an array of bulk/status replies.
    pub fn texts(&self) -> Vec<String> {
        self.array().iter().map(Value::text).collect()
    }

    /// For a `[results, errors]` reply: the results as text.
    pub fn results(&self) -> Vec<String> {
        self.array()[0].texts()
    }

    /// For a `[results, errors]` reply: the errors.
    pub fn errors(&self) -> Vec<String> {
        self.array()[1].texts()
    }
}

/// Builds a [`Value`] for comparisons: `bulk("x")`.
pub fn bulk(s: &str) -> Value {
    Value::Bulk(s.as_bytes().to_vec())
}

/// A reply of redis-rs as a [`Value`]; RESP3-only shapes do not occur (the
/// connections speak RESP2).
fn from_redis(v: redis::Value) -> Value {
    match v {
        redis::Value::Nil => Value::Nil,
        redis::Value::Int(i) => Value::Int(i),
        redis::Value::BulkString(b) => Value::Bulk(b),
        redis::Value::Array(items) | redis::Value::Set(items) => {
            Value::Array(items.into_iter().map(from_redis).collect())
        }
        redis::Value::SimpleString(s) => Value::Status(s),
        redis::Value::Okay => Value::Status("OK".into()),
        redis::Value::ServerError(e) => Value::Error(match e.details() {
            Some(d) => format!("{} {d}", e.code()),
            None => e.code().to_owned(),
        }),
        other => panic!("unexpected RESP3 reply {other:?}"),
    }
}

fn io_error(e: redis::RedisError) -> std::io::Error {
    if e.is_timeout() {
        return std::io::Error::new(std::io::ErrorKind::WouldBlock, e.to_string());
    }
    if e.is_connection_dropped() || e.is_connection_refusal() || e.is_io_error() {
        return std::io::Error::new(std::io::ErrorKind::UnexpectedEof, e.to_string());
    }
    std::io::Error::other(e.to_string())
}

/// A connection to a test server (redis-rs underneath): commands go out as
/// given, replies come back as [`Value`]s, server errors included.
pub struct Client {
    con: redis::Connection,
}

impl Client {
    pub fn connect(port: u16) -> std::io::Result<Client> {
        let con = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .and_then(|c| c.get_connection())
            .map_err(io_error)?;
        let c = Client { con };
        c.set_timeout(Duration::from_secs(60));
        Ok(c)
    }

    pub fn set_timeout(&self, t: Duration) {
        self.con.set_read_timeout(Some(t)).unwrap();
    }

    fn packed<A: AsRef<[u8]>>(args: &[A]) -> Vec<u8> {
        let mut cmd = redis::Cmd::new();
        for a in args {
            cmd.arg(a.as_ref());
        }
        cmd.get_packed_command()
    }

    /// Sends one command without reading its reply.
    pub fn send<A: AsRef<[u8]>>(&mut self, args: &[A]) {
        self.con
            .send_packed_command(&Self::packed(args))
            .expect("write to redis");
    }

    pub fn read(&mut self) -> Value {
        self.try_read().expect("read from redis")
    }

    pub fn try_read(&mut self) -> std::io::Result<Value> {
        self.con.recv_response().map(from_redis).map_err(io_error)
    }

    pub fn cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Value {
        self.send(args);
        self.read()
    }

    /// Like [`Client::cmd`], with I/O errors (a dead server, a timeout).
    pub fn try_cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> std::io::Result<Value> {
        self.con
            .send_packed_command(&Self::packed(args))
            .map_err(io_error)?;
        self.try_read()
    }

    /// The integer `key` holds (0 when it does not exist).
    pub fn int_at(&mut self, key: &str) -> i64 {
        match self.cmd(&["GET", key]) {
            Value::Nil => 0,
            v => v
                .text()
                .parse()
                .unwrap_or_else(|_| panic!("{key} holds no integer")),
        }
    }

    /// A number of `INFO section` (`None` when the server does not show it).
    pub fn info_int(&mut self, section: &str, field: &str) -> Option<i64> {
        let info = self.cmd(&["INFO", section]).text();
        let prefix = format!("{field}:");
        info.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
    }

    /// `RG.PYEXECUTE script [extra...]`.
    pub fn py(&mut self, script: &str) -> Value {
        self.cmd(&["RG.PYEXECUTE", script])
    }

    /// `(id, status)` of every execution `RG.DUMPEXECUTIONS` lists.
    pub fn executions(&mut self) -> Vec<(String, String)> {
        self.cmd(&["RG.DUMPEXECUTIONS"])
            .array()
            .iter()
            .map(|e| (e.array()[1].text(), e.array()[3].text()))
            .collect()
    }

    /// The status (`created`, `running`, `done`, `aborted`) of execution
    /// `id`; `None` when it is not listed.
    pub fn execution_status(&mut self, id: &str) -> Option<String> {
        self.executions()
            .into_iter()
            .find_map(|(e, status)| (e == id).then_some(status))
    }

    /// RG.PYEXECUTE with options after the script; panics on an error.
    pub fn py_with(&mut self, options: &[&str], script: &str) -> Value {
        let mut args = vec!["RG.PYEXECUTE", script];
        args.extend_from_slice(options);
        match self.cmd(&args) {
            Value::Error(e) => panic!("RG.PYEXECUTE failed: {e}"),
            v => v,
        }
    }
}

static SERVERS: AtomicUsize = AtomicUsize::new(0);

/// The path of the module the tests load: `GEARS_MODULE` when set (an
/// explicit choice, such as another build to compare), else the release
/// build of this checkout, which must be newer than every source it is
/// built from: `cargo test -p gears-tests` does not rebuild it, and a stale
/// module would test old code without a word.
pub fn module_path() -> PathBuf {
    static CHECKED: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    CHECKED
        .get_or_init(|| {
            if let Ok(p) = std::env::var("GEARS_MODULE") {
                let p = PathBuf::from(p);
                return Ok(p.canonicalize().unwrap_or(p));
            }
            let root = workspace_root();
            let module = root.join("target/release/libgears_module.so");
            let built = std::fs::metadata(&module)
                .and_then(|m| m.modified())
                .map_err(|_| {
                    "the module is not built: run `cargo xtask test`, or \
                     `cargo build --release -p gears-module` first"
                        .to_string()
                })?;
            match newest_source(&root) {
                Some((changed, path)) if changed > built => Err(format!(
                    "{} is older than {}: run `cargo build --release -p gears-module` \
                     (or `cargo xtask test`), or set GEARS_MODULE to the module to test",
                    module.display(),
                    path.display()
                )),
                _ => Ok(module),
            }
        })
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The most recently changed file the module is built from (the sources,
/// build scripts and manifests of its crates, the workspace's manifest and
/// lock file).
fn newest_source(root: &Path) -> Option<(std::time::SystemTime, PathBuf)> {
    fn walk(path: &Path, newest: &mut Option<(std::time::SystemTime, PathBuf)>) {
        if path.is_dir() {
            for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
                walk(&entry.path(), newest);
            }
        } else if let Ok(t) = std::fs::metadata(path).and_then(|m| m.modified()) {
            if newest.as_ref().is_none_or(|(n, _)| t > *n) {
                *newest = Some((t, path.to_path_buf()));
            }
        }
    }
    let mut newest = None;
    walk(&root.join("Cargo.toml"), &mut newest);
    walk(&root.join("Cargo.lock"), &mut newest);
    for krate in [
        "gears-core",
        "gears-python",
        "gears-module",
        "gears-config",
        "gears-cluster",
    ] {
        for part in ["src", "build.rs", "Cargo.toml"] {
            walk(&root.join(krate).join(part), &mut newest);
        }
    }
    newest
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A redis-server on 127.0.0.1 with the module loaded, in its own temporary
/// directory; killed and cleaned up on drop.
pub struct Server {
    pub port: u16,
    pub dir: PathBuf,
    child: Child,
    server_args: Vec<String>,
    module_args: Vec<String>,
    env: Env,
}

/// The environment variables a test server starts with: the test's own
/// plus `vars`, or only `vars` when `clear` (as a service manager does).
#[derive(Debug, Clone, Default)]
pub struct Env {
    pub clear: bool,
    pub vars: Vec<(String, String)>,
}

impl Server {
    /// Starts a server with the module and these module arguments.
    pub fn start(module_args: &[&str]) -> Server {
        Server::try_start(module_args)
            .unwrap_or_else(|log| panic!("redis-server did not start:\n{log}"))
    }

    /// Like [`Server::start`], but returns the server log when it fails to start.
    pub fn try_start(module_args: &[&str]) -> Result<Server, String> {
        Server::try_start_with(&[], module_args)
    }

    /// Starts a server with extra server arguments (before `--loadmodule`).
    pub fn start_with(server_args: &[&str], module_args: &[&str]) -> Server {
        Server::try_start_with(server_args, module_args)
            .unwrap_or_else(|log| panic!("redis-server did not start:\n{log}"))
    }

    /// Starts a server in the environment `env`.
    pub fn start_in(env: Env, server_args: &[&str], module_args: &[&str]) -> Server {
        Server::try_start_in(env, server_args, module_args)
            .unwrap_or_else(|log| panic!("redis-server did not start:\n{log}"))
    }

    fn try_start_with(server_args: &[&str], module_args: &[&str]) -> Result<Server, String> {
        Server::try_start_in(Env::default(), server_args, module_args)
    }

    fn try_start_in(
        env: Env,
        server_args: &[&str],
        module_args: &[&str],
    ) -> Result<Server, String> {
        // A port found free may be taken by a parallel test's server before
        // ours binds it: retry with another port when that happens.
        let mut last = String::new();
        for _ in 0..5 {
            match Server::spawn(&env, server_args, module_args)? {
                Ok(server) => return Ok(server),
                Err(log) if log.contains("Address already in use") => last = log,
                Err(log) => return Err(log),
            }
        }
        Err(last)
    }

    /// One attempt: `Ok(Err(log))` when the server exited during start-up.
    fn spawn(
        env: &Env,
        server_args: &[&str],
        module_args: &[&str],
    ) -> Result<Result<Server, String>, String> {
        let n = SERVERS.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("gears-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let dir = dir.canonicalize().unwrap();
        let port = free_port();
        let server_args: Vec<String> = server_args.iter().map(|s| s.to_string()).collect();
        let module_args: Vec<String> = module_args.iter().map(|s| s.to_string()).collect();
        let child = Server::run(port, &dir, env, &server_args, &module_args)?;
        let server = Server {
            port,
            dir,
            child,
            server_args,
            module_args,
            env: env.clone(),
        };
        server.wait_started()
    }

    fn run(
        port: u16,
        dir: &Path,
        env: &Env,
        server_args: &[String],
        module_args: &[String],
    ) -> Result<Child, String> {
        let mut load = vec![module_path().to_string_lossy().into_owned()];
        load.extend(module_args.iter().cloned());
        let mut cmd = Command::new("redis-server");
        if env.clear {
            cmd.env_clear();
        }
        cmd.envs(env.vars.iter().map(|(k, v)| (k, v)));
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--dir", &dir.to_string_lossy()])
            .args(["--logfile", "redis.log", "--save", "", "--appendonly", "no"])
            .args(server_args)
            .arg("--loadmodule")
            .args(&load)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("could not run redis-server: {e}"))
    }

    /// Waits until the server answers; `Ok(Err(log))` when it exited.
    fn wait_started(mut self) -> Result<Result<Server, String>, String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Ok(Err(self.log()));
            }
            if self.is_mine() && !self.loading() {
                return Ok(Ok(self));
            }
            if Instant::now() > deadline {
                return Err(format!("timed out; log:\n{}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn loading(&self) -> bool {
        let Ok(mut c) = Client::connect(self.port) else {
            return true;
        };
        matches!(c.try_cmd(&["PING"]), Ok(Value::Error(e)) if e.starts_with("LOADING"))
    }

    /// Stops the server (`SHUTDOWN` with `how`, e.g. `["NOSAVE"]`, or a
    /// `kill -9` when `how` is `["KILL"]`) and starts it again on the same
    /// port, in the same directory, with the same arguments.
    pub fn restart(&mut self, how: &[&str]) {
        self.stop(how);
        self.start_again();
    }

    /// The first half of [`Server::restart`]: the server is down after it.
    pub fn stop(&mut self, how: &[&str]) {
        if how != ["KILL"] {
            // A refused SHUTDOWN (a rewrite in progress...) is tried again
            // for a while, then the server is killed: never wait forever.
            let mut cmd = vec!["SHUTDOWN"];
            cmd.extend_from_slice(how);
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline && !matches!(self.child.try_wait(), Ok(Some(_))) {
                if let Ok(mut c) = Client::connect(self.port) {
                    let _ = c.try_cmd(&cmd);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The second half of [`Server::restart`]: started again as it was.
    pub fn start_again(&mut self) {
        let child = Server::run(
            self.port,
            &self.dir,
            &self.env,
            &self.server_args,
            &self.module_args,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let old = std::mem::replace(&mut self.child, child);
        drop(old);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.is_mine() || self.loading() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("redis-server did not restart ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "restart timed out:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the server answering on our port is the one we started (and
    /// not a parallel test's server that got the same port).
    fn is_mine(&self) -> bool {
        let Ok(mut c) = Client::connect(self.port) else {
            return false;
        };
        c.set_timeout(Duration::from_secs(5));
        match c.try_cmd(&["CONFIG", "GET", "dir"]) {
            Ok(Value::Array(a)) if a.len() == 2 => a[1].text() == self.dir.to_string_lossy(),
            _ => false,
        }
    }

    /// Starts a server replicating `master` and waits until the link is up.
    pub fn replica_of(master: &Server) -> Server {
        Server::replica_of_with(master, &[])
    }

    /// Like [`Server::replica_of`], with extra server arguments. The
    /// replica loads the module with the master's arguments.
    pub fn replica_of_with(master: &Server, server_args: &[&str]) -> Server {
        let module_args: Vec<&str> = master.module_args.iter().map(String::as_str).collect();
        let replica = Server::start_with(server_args, &module_args);
        let mut c = replica.client();
        c.cmd(&["REPLICAOF", "127.0.0.1", &master.port.to_string()]);
        let up = replica.wait_for(20, || {
            c.cmd(&["INFO", "replication"])
                .text()
                .contains("master_link_status:up")
        });
        assert!(up, "the replica did not connect to its master");
        replica
    }

    pub fn client(&self) -> Client {
        Client::connect(self.port).expect("connect to the test server")
    }

    /// A client authenticated as user `name` (password `pw`), made by
    /// `admin` with the ACL `rules` (`~app:*`, `+@all`...).
    pub fn client_as(&self, admin: &mut Client, name: &str, rules: &[&str]) -> Client {
        let mut setuser = vec!["ACL", "SETUSER", name, "on", ">pw"];
        setuser.extend_from_slice(rules);
        assert_eq!(admin.cmd(&setuser), Value::Status("OK".into()));
        let mut c = self.client();
        assert_eq!(c.cmd(&["AUTH", name, "pw"]), Value::Status("OK".into()));
        c
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
    }

    /// Waits until `cond` holds, up to `secs` seconds.
    pub fn wait_for(&self, secs: u64, mut cond: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if cond() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }
}

/// Whether `cond` holds throughout `d` (checked every 10 ms); false as soon
/// as it does not.
///
/// For what must *not* happen (an event left unprocessed, a key that stays
/// absent): nothing marks the moment the server could no longer do it, so
/// a fixed window is inherent there. Where a later, positive signal proves
/// the server had its chance (a marker processed after), wait for that
/// instead and assert at once.
pub fn holds_for(d: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + d;
    loop {
        if !cond() {
            return false;
        }
        if Instant::now() >= deadline {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A Redis Cluster of masters on loopback, each loading the module with the
/// same arguments; the 16384 slots are split evenly in order. Every node
/// is stopped and its directory removed on drop.
pub struct Cluster {
    pub nodes: Vec<Server>,
}

impl Cluster {
    /// Starts `n` masters and waits until every one sees the cluster whole
    /// (`cluster_state:ok`, `n` known nodes).
    pub fn start(n: usize, module_args: &[&str]) -> Cluster {
        Cluster::start_with(n, |_| Vec::new(), module_args)
    }

    /// [`Cluster::start`], node `i` started with the extra server arguments
    /// `server_args(i)` (a command renamed on one shard, say).
    pub fn start_with(
        n: usize,
        server_args: impl Fn(usize) -> Vec<&'static str>,
        module_args: &[&str],
    ) -> Cluster {
        assert!(n >= 1);
        let mut nodes = Vec::new();
        let mut bus_ports = Vec::new();
        for i in 0..n {
            let (node, bus) = Cluster::node(&server_args(i), module_args);
            nodes.push(node);
            bus_ports.push(bus);
        }
        for (i, s) in nodes.iter().enumerate() {
            let first = i * 16384 / n;
            let last = (i + 1) * 16384 / n - 1;
            let r = s.client().cmd(&[
                "CLUSTER",
                "ADDSLOTSRANGE",
                &first.to_string(),
                &last.to_string(),
            ]);
            assert_eq!(r, Value::Status("OK".into()), "ADDSLOTSRANGE on node {i}");
        }
        let mut first = nodes[0].client();
        for (s, bus) in nodes.iter().zip(&bus_ports).skip(1) {
            first.cmd(&[
                "CLUSTER",
                "MEET",
                "127.0.0.1",
                &s.port.to_string(),
                &bus.to_string(),
            ]);
        }
        let cluster = Cluster { nodes };
        let whole = cluster.nodes[0].wait_for(60, || {
            cluster.nodes.iter().all(|s| {
                let info = s.client().cmd(&["CLUSTER", "INFO"]).text();
                info.contains("cluster_state:ok")
                    && info.contains(&format!("cluster_known_nodes:{n}\r\n"))
            })
        });
        assert!(whole, "the cluster did not form");
        // And the module on every node knows it.
        let known = cluster.nodes[0].wait_for(30, || {
            cluster.nodes.iter().all(|s| {
                let r = s.client().cmd(&["RG.INFOCLUSTER"]);
                n == 1 || matches!(&r, Value::Array(a) if a.len() == 5 && a[4].array().len() == n)
            })
        });
        assert!(known, "the module did not see the cluster");
        cluster
    }

    /// Starts one more master with the same module arguments and makes it
    /// meet the cluster (it serves no slot yet).
    pub fn add_node(&mut self, module_args: &[&str]) -> &Server {
        let (node, bus) = Cluster::node(&[], module_args);
        self.nodes[0].client().cmd(&[
            "CLUSTER",
            "MEET",
            "127.0.0.1",
            &node.port.to_string(),
            &bus.to_string(),
        ]);
        let n = self.nodes.len() + 1;
        let known = node.wait_for(30, || {
            node.client()
                .cmd(&["CLUSTER", "INFO"])
                .text()
                .contains(&format!("cluster_known_nodes:{n}\r\n"))
        });
        assert!(known, "the new node did not join");
        self.nodes.push(node);
        self.nodes.last().unwrap()
    }

    /// A cluster-enabled server on its own ports (client and bus).
    fn node(server_args: &[&str], module_args: &[&str]) -> (Server, u16) {
        let bus = free_port();
        let bus_arg = bus.to_string();
        let mut args = vec![
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "3000",
            "--cluster-port",
            &bus_arg,
        ];
        args.extend_from_slice(server_args);
        let node = Server::start_with(&args, module_args);
        (node, bus)
    }

    /// The node id (`CLUSTER MYID`) of every node, in order.
    pub fn ids(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|s| s.client().cmd(&["CLUSTER", "MYID"]).text())
            .collect()
    }

    /// The node that serves `key`'s slot.
    pub fn node_of(&self, key: &str) -> &Server {
        let slot = self.nodes[0]
            .client()
            .cmd(&["CLUSTER", "KEYSLOT", key])
            .int() as usize;
        let n = self.nodes.len();
        let i = (0..n)
            .find(|i| slot >= i * 16384 / n && slot < (i + 1) * 16384 / n)
            .expect("every slot has a node");
        &self.nodes[i]
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // A server that exited before its test ended crashed: show why.
        if let Ok(Some(status)) = self.child.try_wait() {
            eprintln!(
                "redis-server on port {} exited early ({status}); its log:\n{}",
                self.port,
                self.log()
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One registration as `RG.DUMPREGISTRATIONS` shows it.
#[derive(Debug, Clone)]
pub struct RegistrationView {
    pub id: String,
    pub reader: String,
    pub data: Vec<Value>,
}

impl RegistrationView {
    /// A field of `RegistrationData` by name.
    pub fn field(&self, name: &str) -> Value {
        let i = self
            .data
            .iter()
            .position(|v| matches!(v, Value::Bulk(b) if b == name.as_bytes()))
            .unwrap_or_else(|| panic!("no {name} in {:?}", self.data));
        self.data[i + 1].clone()
    }

    pub fn count(&self, name: &str) -> i64 {
        self.field(name).int()
    }

    /// Whether every execution it triggered has ended (succeeded, failed
    /// or was aborted): none is queued or running.
    pub fn settled(&self) -> bool {
        self.count("numTriggered")
            == self.count("numSuccess") + self.count("numFailures") + self.count("numAborted")
    }
}

impl Client {
    /// Every registration, oldest first.
    pub fn registrations(&mut self) -> Vec<RegistrationView> {
        self.cmd(&["RG.DUMPREGISTRATIONS"])
            .array()
            .iter()
            .map(|r| {
                let r = r.array();
                RegistrationView {
                    id: r[1].text(),
                    reader: r[3].text(),
                    data: r[7].array().to_vec(),
                }
            })
            .collect()
    }
}
