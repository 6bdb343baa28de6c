//! The `RG.*` commands: argument parsing and replies over the services.
//! Nothing below imports this layer.

mod config;
mod executions;
mod hooks;
mod peers;
mod pyexecute;
mod python;
mod registrations;
mod requirements;

pub use config::{config_get, config_set, info_cluster, refresh_cluster};
pub use executions::{
    abort_execution, drop_execution, dump_executions, get_execution, get_results,
    get_results_blocking, pykill,
};
pub use hooks::inner_hook;
pub use peers::{hello, inner_msg, network_test};
pub use pyexecute::pyexecute;
pub use python::{pyprofile, pystats};
pub use registrations::{
    clear_stats, dump_registrations, dump_sessions, inner_register, inner_time_event,
    inner_unregister, pause, trigger, unpause, unregister_command,
};
pub use requirements::{dump_reqs, export_req, import_req};
