//! The gears Redis module (`MODULE LIST` name: `rg`).
//!
//! This crate is glue: it parses module arguments with `gears-config`,
//! starts the engine of `gears-core` and the Python runtime of
//! `gears-python`, gives that runtime its view of Redis
//! ([`host::ModuleHost`]), and exposes the `RG.*` commands. It is the only
//! crate that depends on `redis-module`.
//!
//! Modules depend one way, from the commands down to the Redis layer:
//! ARCHITECTURE.md's layer table for this crate lists every module, and
//! `cargo xtask lint` checks the imports against it.

mod access;
mod cluster;
mod commands;
mod distributed;
mod durability;
mod errors;
mod events;
mod hooks;
mod host;
mod info;
mod keys;
mod linked;
mod mailbox;
mod net;
mod peers;
mod plans;
mod prepared;
mod redis;
mod registry;
mod requirements;
mod response;
mod state;
mod streams;
mod tables;
mod timeevents;
mod timer;

use redis::{GEARS_TYPE, TIME_EVENT_TYPE};
#[allow(unused_imports)] // used inside the redis_module! expansion
use redis_module::AclCategory;
use redis_module::{redis_module, Context, RedisString, Status};
use std::sync::Arc;

fn on_worker_panic(message: &str) {
    redis::log("warning", &format!("a worker job panicked: {message}"));
}

/// Builds the module state and starts Python; the error is logged.
fn start(ctx: &Context, args: &[RedisString]) -> Result<(), errors::Error> {
    redis::init(
        ctx,
        redis::Callbacks {
            keyspace: events::on_keyspace,
            stream: events::on_stream,
            command_filter: hooks::command_filter,
            aux_save: durability::aux_save,
            aux_counters: durability::aux_counters,
            info: info::sections,
            aux_load: durability::aux_load,
            loading: durability::loading,
            role_changed: durability::role_changed,
            aof_rewrite: durability::aof_rewrite,
            time_event: timeevents::loaded,
        },
    )
    .map_err(errors::Error::Load)?;
    let args: Vec<String> = args.iter().map(|a| a.to_string_lossy()).collect();
    let config = gears_config::GearsConfig::from_args(&args)
        .map_err(|e| errors::Error::Load(format!("could not load the module: {e}")))?;
    let s = config.settings().clone();
    let engine = gears_core::Engine::new(
        s.executionthreads as usize,
        s.maxexecutions as usize,
        s.maxexecutionsperregistration.max(0) as usize,
        Arc::new(gears_python::PyRunner),
        on_worker_panic,
    )
    .map_err(|e| errors::Error::Load(format!("could not start the worker threads: {e}")))?;
    let timer = timer::Timer::start()
        .map_err(|e| errors::Error::Load(format!("could not start the timer thread: {e}")))?;
    let _ = engine.over_limit.set(Box::new(redis::queue_over_limit));
    let g = state::install(state::Gears::new(config, Arc::new(engine), timer))
        .map_err(|e| errors::Error::Load(e.into()))?;
    gears_python::initialize(
        Arc::new(host::ModuleHost(g)),
        g.engine.clone(),
        s.overridepythonallocators.on().then(redis::allocator),
    )
    .map_err(|e| errors::Error::Load(format!("could not start Python: {e}")))?;
    redis::subscribe(ctx);
    cluster::watch(g);
    if redis::with_lock(|ctx| ctx.cluster_enabled()) {
        let net = net::Net::start(g).map_err(|e| {
            errors::Error::Load(format!("could not start the networking thread: {e}"))
        })?;
        g.set_net(net);
    }
    redis::log(
        "notice",
        &format!(
            "module loaded: {} execution threads, Python runtime ready",
            s.executionthreads
        ),
    );
    Ok(())
}

fn init(ctx: &Context, args: &[RedisString]) -> Status {
    match start(ctx, args) {
        Ok(()) => Status::Ok,
        Err(e) => {
            redis::log("warning", &e.to_string());
            Status::Err
        }
    }
}

/// `MODULE UNLOAD` is refused: worker threads and the Python interpreter
/// live as long as the server, and would run unloaded code.
fn deinit(_ctx: &Context) -> Status {
    redis::log(
        "warning",
        "the module can not be unloaded: its threads and Python live as long as the server",
    );
    Status::Err
}

redis_module! {
    name: "rg",
    version: 10000,
    // Not RedisAlloc: its global used_memory counter becomes a contended
    // cache line when the reader and the Python worker allocate in parallel.
    allocator: (std::alloc::System, std::alloc::System),
    data_types: [GEARS_TYPE, TIME_EVENT_TYPE],
    init: init,
    deinit: deinit,
    // Flags and ACL categories as Redis gives its own commands of the same
    // nature (docs/guide.md, "Running in production"); where the server can
    // not file module commands under categories, `access` enforces them.
    commands: [
        ["rg.pyexecute", commands::pyexecute, "may-replicate", 0, 0, 0, AclCategory::None, AclCategory::from("slow scripting")],
        ["rg.dumpexecutions", commands::dump_executions, "readonly", 0, 0, 0, AclCategory::None, AclCategory::from("slow")],
        ["rg.getexecution", commands::get_execution, "readonly", 0, 0, 0, AclCategory::None, AclCategory::from("slow")],
        ["rg.getresults", commands::get_results, "readonly", 0, 0, 0, AclCategory::None, AclCategory::from("slow")],
        ["rg.getresultsblocking", commands::get_results_blocking, "readonly", 0, 0, 0, AclCategory::None, AclCategory::from("slow blocking")],
        ["rg.dropexecution", commands::drop_execution, "", 0, 0, 0, AclCategory::None, AclCategory::from("slow")],
        ["rg.abortexecution", commands::abort_execution, "", 0, 0, 0, AclCategory::None, AclCategory::from("slow")],
        ["rg.pykill", commands::pykill, "admin allow-busy deny-script", 0, 0, 0, AclCategory::None, AclCategory::from("admin dangerous slow")],
        ["rg.configget", commands::config_get, "readonly", 0, 0, 0, AclCategory::None, AclCategory::from("slow")],
        ["rg.configset", commands::config_set, "admin", 0, 0, 0, AclCategory::None, AclCategory::from("admin dangerous slow")],
        ["rg.infocluster", commands::info_cluster, "readonly", 0, 0, 0, AclCategory::None, AclCategory::from("slow")],
        ["rg.refreshcluster", commands::refresh_cluster, "admin deny-script", 0, 0, 0, AclCategory::None, AclCategory::from("admin dangerous slow")],
        ["rg.hello", commands::hello, "admin deny-script", 0, 0, 0, AclCategory::None, AclCategory::from("admin dangerous slow")],
        ["rg.innermsgcommand", commands::inner_msg, "admin deny-script", 0, 0, 0, AclCategory::None, AclCategory::from("admin dangerous slow")],
        ["rg.networktest", commands::network_test, "admin deny-script", 0, 0, 0, AclCategory::None, AclCategory::from("admin dangerous slow")],
        ["rg.dumpregistrations", commands::dump_registrations, "readonly", 0, 0, 0, AclCategory::None, AclCategory::from("slow")],
        ["rg.pydumpsessions", commands::dump_sessions, "readonly", 0, 0, 0, AclCategory::None, AclCategory::from("slow")],
        ["rg.pydumpreqs", commands::dump_reqs, "readonly", 0, 0, 0, AclCategory::None, AclCategory::from("slow")],
        ["rg.pystats", commands::pystats, "readonly", 0, 0, 0, AclCategory::None, AclCategory::from("slow")],
        ["rg.pyprofile", commands::pyprofile, "admin", 0, 0, 0, AclCategory::None, AclCategory::from("admin dangerous slow")],
        ["rg.pyexportreq", commands::export_req, "readonly", 0, 0, 0, AclCategory::None, AclCategory::from("slow")],
        ["rg.pyimportreq", commands::import_req, "admin may-replicate", 0, 0, 0, AclCategory::None, AclCategory::from("admin dangerous slow")],
        ["rg.unregister", commands::unregister_command, "may-replicate", 0, 0, 0, AclCategory::None, AclCategory::from("slow")],
        ["rg.pauseregistrations", commands::pause, "", 0, 0, 0, AclCategory::None, AclCategory::from("slow")],
        ["rg.unpauseregistrations", commands::unpause, "", 0, 0, 0, AclCategory::None, AclCategory::from("slow")],
        ["rg.clearregistrationsstats", commands::clear_stats, "", 0, 0, 0, AclCategory::None, AclCategory::from("slow")],
        ["rg.trigger", commands::trigger, "may-replicate", 0, 0, 0, AclCategory::None, AclCategory::from("slow")],
        ["rg.triggeronkey", commands::trigger, "may-replicate", 2, 2, 1, AclCategory::None, AclCategory::from("slow")],
        ["rg.innerhook", commands::inner_hook, "getkeys-api", 0, 0, 0, AclCategory::None],
        ["rg.innerregister", commands::inner_register, "admin deny-script", 0, 0, 0, AclCategory::None, AclCategory::from("admin dangerous slow")],
        ["rg.innerunregister", commands::inner_unregister, "admin deny-script", 0, 0, 0, AclCategory::None, AclCategory::from("admin dangerous slow")],
        ["rg.innertimeevent", commands::inner_time_event, "write admin deny-script", 1, 1, 1, AclCategory::None, AclCategory::from("admin dangerous slow")],
    ],
}
