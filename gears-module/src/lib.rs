//! The gears Redis module (`MODULE LIST` name: `rg`).
//!
//! This crate is glue: it parses module arguments with `gears-config`, starts
//! the engine of `gears-core` and the Python runtime of `gears-python`, gives
//! that runtime its view of Redis ([`host::ModuleHost`]), and exposes the
//! `RG.*` commands. It is the only crate that depends on `redis-module`.

mod commands;
mod events;
mod hooks;
mod host;
mod redis;
mod registrations;
mod streams;

use gears_cluster::Topology;
use gears_config::GearsConfig;
use gears_core::Engine;
use once_cell::sync::{Lazy, OnceCell};
#[allow(unused_imports)] // used inside the redis_module! expansion
use redis_module::AclCategory;
use redis_module::{raw, redis_module, Context, RedisString, Status};
use std::sync::{Arc, RwLock, RwLockReadGuard};

static CONFIG: OnceCell<RwLock<GearsConfig>> = OnceCell::new();
static ENGINE: OnceCell<Arc<Engine>> = OnceCell::new();
static TOPOLOGY: Lazy<RwLock<Topology>> = Lazy::new(|| RwLock::new(Topology::default()));

pub(crate) fn config() -> RwLockReadGuard<'static, GearsConfig> {
    CONFIG
        .get()
        .expect("configured at load")
        .read()
        .unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn engine() -> &'static Engine {
    ENGINE.get().expect("started at load")
}

pub(crate) fn topology() -> RwLockReadGuard<'static, Topology> {
    TOPOLOGY.read().unwrap_or_else(|e| e.into_inner())
}

/// Hands the limits of the configuration to the engine (at load and after
/// RG.CONFIGSET).
pub(crate) fn apply_limits() {
    let s = config().settings().clone();
    let engine = engine();
    engine.executions.set_max(s.maxexecutions as usize);
    engine.max_per_registration.store(
        s.maxexecutionsperregistration.max(0) as usize,
        std::sync::atomic::Ordering::Relaxed,
    );
}

fn on_worker_panic(message: &str) {
    redis::log("warning", &format!("a worker job panicked: {message}"));
}

fn init(ctx: &Context, args: &[RedisString]) -> Status {
    redis::init(ctx.ctx);
    let args: Vec<String> = args.iter().map(|a| a.to_string_lossy()).collect();
    let cfg = match GearsConfig::from_args(&args) {
        Ok(c) => c,
        Err(e) => {
            redis::log("warning", &format!("could not load the module: {e}"));
            return Status::Err;
        }
    };
    let settings = cfg.settings().clone();
    let _ = CONFIG.set(RwLock::new(cfg));
    let engine = match Engine::new(
        settings.executionthreads as usize,
        settings.maxexecutions as usize,
        on_worker_panic,
    ) {
        Ok(e) => Arc::new(e),
        Err(e) => {
            redis::log(
                "warning",
                &format!("could not start the worker threads: {e}"),
            );
            return Status::Err;
        }
    };
    let _ = ENGINE.set(engine.clone());
    apply_limits();
    // SAFETY: module load, main thread, valid context; the callbacks are
    // plain functions that live as long as the module.
    unsafe {
        let events = raw::REDISMODULE_NOTIFY_ALL | raw::REDISMODULE_NOTIFY_KEY_MISS;
        raw::RedisModule_SubscribeToKeyspaceEvents.unwrap()(
            ctx.ctx,
            events,
            Some(events::on_keyspace_event),
        );
        raw::RedisModule_SubscribeToKeyspaceEvents.unwrap()(
            ctx.ctx,
            raw::REDISMODULE_NOTIFY_STREAM,
            Some(events::on_stream_event),
        );
        raw::RedisModule_RegisterCommandFilter.unwrap()(
            ctx.ctx,
            Some(hooks::command_filter),
            raw::REDISMODULE_CMDFILTER_NOSELF as i32,
        );
    }
    if let Err(e) = gears_python::initialize(Arc::new(host::ModuleHost), engine) {
        redis::log("warning", &format!("could not start Python: {e}"));
        return Status::Err;
    }
    redis::log(
        "notice",
        &format!(
            "module loaded: {} execution threads, Python runtime ready",
            settings.executionthreads
        ),
    );
    Status::Ok
}

redis_module! {
    name: "rg",
    version: 10000,
    // Not RedisAlloc: its global used_memory counter becomes a contended
    // cache line when the reader and the Python worker allocate in parallel.
    allocator: (std::alloc::System, std::alloc::System),
    data_types: [],
    init: init,
    commands: [
        ["rg.pyexecute", commands::pyexecute, "readonly", 0, 0, 0, AclCategory::None],
        ["rg.dumpexecutions", commands::dump_executions, "readonly", 0, 0, 0, AclCategory::None],
        ["rg.getexecution", commands::get_execution, "readonly", 0, 0, 0, AclCategory::None],
        ["rg.getresults", commands::get_results, "readonly", 0, 0, 0, AclCategory::None],
        ["rg.getresultsblocking", commands::get_results_blocking, "readonly", 0, 0, 0, AclCategory::None],
        ["rg.dropexecution", commands::drop_execution, "readonly", 0, 0, 0, AclCategory::None],
        ["rg.abortexecution", commands::abort_execution, "readonly", 0, 0, 0, AclCategory::None],
        ["rg.configget", commands::config_get, "readonly", 0, 0, 0, AclCategory::None],
        ["rg.configset", commands::config_set, "readonly", 0, 0, 0, AclCategory::None],
        ["rg.infocluster", commands::info_cluster, "readonly", 0, 0, 0, AclCategory::None],
        ["rg.dumpregistrations", registrations::dump_registrations, "readonly", 0, 0, 0, AclCategory::None],
        ["rg.unregister", registrations::unregister_command, "readonly", 0, 0, 0, AclCategory::None],
        ["rg.pauseregistrations", registrations::pause, "readonly", 0, 0, 0, AclCategory::None],
        ["rg.unpauseregistrations", registrations::unpause, "readonly", 0, 0, 0, AclCategory::None],
        ["rg.clearregistrationsstats", registrations::clear_stats, "readonly", 0, 0, 0, AclCategory::None],
        ["rg.trigger", registrations::trigger, "readonly", 0, 0, 0, AclCategory::None],
        ["rg.triggeronkey", registrations::trigger, "readonly", 2, 2, 1, AclCategory::None],
        ["rg.innerhook", hooks::inner_hook, "", 0, 0, 0, AclCategory::None],
    ],
}
