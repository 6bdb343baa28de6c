//! The module state: one [`Gears`] value, created at load and passed to
//! whatever needs it.
//!
//! It lives in one static because Redis calls the module back through
//! plain functions (command handlers, notifications, the command filter)
//! that carry no user data; only those entry points call [`get`].

use crate::errors::Error;
use crate::mailbox::Mailbox;
use crate::net::{Directory, Net};
use crate::prepared::AwaitingDecision;
use crate::tables::Tables;
use crate::timer::Timer;
use gears_cluster::Topology;
use gears_config::GearsConfig;
use gears_core::registration::Registration;
use gears_core::sync::{LockExt, RwLockExt};
use gears_core::Engine;
use gears_python::requirements::{Environment, Requirements};
use once_cell::sync::OnceCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};

/// A registration's consumer of one stream.
#[derive(Default)]
pub struct Consumer {
    pub running: bool,
    /// Messages added since the last batch started (an estimate).
    pub unread: usize,
    /// A `duration` flush is armed.
    pub timer: bool,
    /// Read the pending entries first (first batch, after retry/unpause).
    pub pending_first: bool,
    /// Draining what was there before the consumer started (not counted in
    /// `unread`): go on while batches come back full. Live traffic waits
    /// for `unread` to make a batch instead, so batches keep their size.
    pub backlog: bool,
}

/// (registration id, database, stream key).
pub type ConsumerKey = (String, i64, Vec<u8>);

pub struct Gears {
    pub config: RwLock<GearsConfig>,
    pub engine: Arc<Engine>,
    pub topology: RwLock<Topology>,
    tables: RwLock<Arc<Tables>>,
    /// Fast exits for servers without registrations of a kind.
    pub any_keys: AtomicBool,
    pub any_streams: AtomicBool,
    pub any_hook: AtomicBool,
    consumers: Mutex<HashMap<ConsumerKey, Consumer>>,
    pub timer: Timer,
    session_counter: AtomicU64,
    /// The secret the command filter passes to RG.INNERHOOK.
    pub hook_token: String,
    /// RG.PYKILL asked to stop the Python code running on the main thread.
    pub kill_requested: AtomicBool,
    /// The REQUIREMENTS environment, made on first use.
    requirements: OnceCell<Result<Requirements, Error>>,
    /// Messages to other shards (cluster mode only).
    net: OnceCell<Net>,
    /// The last message id seen from each (sender, run id).
    received: Mutex<HashMap<(String, String), u64>>,
    /// Records other shards sent for runs of this one.
    mailbox: Mailbox,
    /// Work other shards prepared here, waiting for their word, by token.
    awaiting_decision: Mutex<HashMap<String, AwaitingDecision>>,
}

static GEARS: OnceCell<Gears> = OnceCell::new();

/// Installs the state (module load).
pub fn install(g: Gears) -> Result<&'static Gears, &'static str> {
    GEARS.set(g).map_err(|_| "the module is already loaded")?;
    Ok(GEARS.get().expect("just set"))
}

/// The state, for the entry points Redis calls.
pub fn get() -> Option<&'static Gears> {
    GEARS.get()
}

impl Directory for Gears {
    fn my_id(&self) -> Option<String> {
        self.topology().my_id.clone()
    }

    fn address(&self, id: &str) -> Option<(String, u16)> {
        self.topology()
            .shards
            .iter()
            .find(|s| s.id == id)
            .map(|s| (s.host.clone(), s.port))
    }

    fn retries(&self) -> u64 {
        self.config().settings().sendmsgretries.max(0) as u64
    }

    fn shards(&self) -> Vec<String> {
        self.topology()
            .shards
            .iter()
            .map(|s| s.id.clone())
            .collect()
    }
}

impl Gears {
    pub fn new(config: GearsConfig, engine: Arc<Engine>, timer: Timer) -> Gears {
        let g = Gears {
            config: RwLock::new(config),
            engine,
            topology: RwLock::new(Topology::default()),
            tables: RwLock::default(),
            any_keys: AtomicBool::new(false),
            any_streams: AtomicBool::new(false),
            any_hook: AtomicBool::new(false),
            consumers: Mutex::default(),
            timer,
            session_counter: AtomicU64::new(0),
            hook_token: String::new(),
            kill_requested: AtomicBool::new(false),
            requirements: OnceCell::new(),
            net: OnceCell::new(),
            received: Mutex::default(),
            mailbox: Mailbox::default(),
            awaiting_decision: Mutex::default(),
        };
        g.apply_limits();
        Gears {
            hook_token: g.random_session_id(),
            ..g
        }
    }

    /// The requirements of this server. The first call creates the
    /// environment under `PythonInstallationDir` and puts it on `sys.path`
    /// (takes the GIL: never call it holding the GIL).
    pub fn requirements(&self) -> Result<&Requirements, Error> {
        self.requirements
            .get_or_init(|| {
                let s = self.config().settings().clone();
                // A virtualenv is named after the server's log file, as in 1.2.
                let env = Environment::new(
                    std::path::Path::new(&s.pythoninstallationdir),
                    s.createvenv.on(),
                    &crate::redis::log_file_name().unwrap_or_else(|| "redis".into()),
                )?;
                env.activate()?;
                Ok(Requirements::new(env))
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The networking thread, in cluster mode.
    pub fn net(&self) -> Option<&Net> {
        self.net.get()
    }

    /// The networking thread, when the cluster has other shards to talk to.
    pub fn cluster_net(&self) -> Option<&Net> {
        self.net().filter(|_| self.topology().is_cluster())
    }

    pub fn set_net(&self, net: Net) {
        let _ = self.net.set(net);
    }

    /// Work other shards prepared here, waiting for their word.
    pub fn awaiting_decision(&self) -> MutexGuard<'_, HashMap<String, AwaitingDecision>> {
        self.awaiting_decision.lock_unpoisoned()
    }

    /// Records other shards sent for runs of this one.
    pub fn mailbox(&self) -> &Mailbox {
        &self.mailbox
    }

    /// The last message id seen from each (sender, run id).
    pub fn received_messages(&self) -> MutexGuard<'_, HashMap<(String, String), u64>> {
        self.received.lock_unpoisoned()
    }

    /// The requirements, if any was ever installed or loaded.
    pub fn requirements_if_any(&self) -> Option<&Requirements> {
        self.requirements.get().and_then(|r| r.as_ref().ok())
    }

    pub fn config(&self) -> RwLockReadGuard<'_, GearsConfig> {
        self.config.read_unpoisoned()
    }

    pub fn topology(&self) -> RwLockReadGuard<'_, Topology> {
        self.topology.read_unpoisoned()
    }

    /// Hands the limits of the configuration to the engine (at load and
    /// after RG.CONFIGSET).
    pub fn apply_limits(&self) {
        let s = self.config().settings().clone();
        self.engine.executions.set_max(s.maxexecutions as usize);
        self.engine.max_per_registration.store(
            s.maxexecutionsperregistration.max(0) as usize,
            Ordering::Relaxed,
        );
        self.engine
            .max_queued
            .store(s.maxqueuedexecutions.max(1) as usize, Ordering::Relaxed);
        self.engine
            .profile
            .store(s.profileexecutions.on(), Ordering::Relaxed);
        self.engine
            .drop_when_full
            .store(s.dropeventswhenqueuefull.on(), Ordering::Relaxed);
    }

    pub fn tables(&self) -> Arc<Tables> {
        self.tables.read_unpoisoned().clone()
    }

    pub fn set_tables(&self, t: Tables) {
        self.any_keys.store(!t.keys.is_empty(), Ordering::SeqCst);
        self.any_streams
            .store(!t.streams.is_empty(), Ordering::SeqCst);
        self.any_hook.store(!t.hooked.is_empty(), Ordering::SeqCst);
        *self.tables.write_unpoisoned() = Arc::new(t);
    }

    /// Runs `f` on `reg`'s consumer of `key` in `db`. A new consumer reads
    /// its pending entries first.
    pub fn consumer<R>(
        &self,
        reg: &Registration,
        db: i64,
        key: &[u8],
        f: impl FnOnce(&mut Consumer) -> R,
    ) -> R {
        let mut all = self.consumers();
        let c = all
            .entry((reg.id.clone(), db, key.to_vec()))
            .or_insert_with(|| Consumer {
                pending_first: true,
                ..Consumer::default()
            });
        f(c)
    }

    pub fn consumers(&self) -> MutexGuard<'_, HashMap<ConsumerKey, Consumer>> {
        self.consumers.lock_unpoisoned()
    }

    /// A fresh session id: 40 hex characters.
    pub fn random_session_id(&self) -> String {
        use std::hash::{BuildHasher, Hasher};
        let mut out = String::with_capacity(40);
        while out.len() < 40 {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(self.session_counter.fetch_add(1, Ordering::Relaxed));
            out.push_str(&format!("{:016x}", h.finish()));
        }
        out.truncate(40);
        out
    }
}
