//! Command hooks (`GB('CommandReader').register(hook=...)`) and the
//! commands KeysReader registrations list in `commands=[...]`.
//!
//! The command filter renames a hooked command `cmd args...` to
//! `RG.INNERHOOK cmd args...` when one of its keys matches a registration.
//! RG.INNERHOOK then runs the newest matching hook, whose `call_next`
//! reaches the next one and finally the real command (through
//! `RedisModule_Call`, which our own filter skips: `NOSELF`). Commands only
//! listed by KeysReader registrations run for real at once, with the client
//! linked to the executions their events trigger.

use crate::errors::{Error, Hooking};
use crate::linked::{with_linked, Linked};
use crate::redis::{self, CommandFilter};
use crate::state::{self, Gears};
use crate::tables::KeyFilter;
use gears_core::dispatch::CannotBlock;
use gears_core::engine::VecReader;
use gears_core::execution::Execution;
use gears_core::registration::Registration;
use gears_core::{CallNext, Caller, CommandCtx, Fired, Identity, Placement, Record, Reply};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Checks that `command` may be hooked (`what` is "override" for hooks and
/// "hook" for KeysReader `commands`), with 1.2's errors.
pub fn check_hookable(command: &str, by_prefix: bool, what: Hooking) -> Result<(), Error> {
    let Some(info) = redis::command_info(command) else {
        return Err(Error::NoSuchCommand(what));
    };
    if info.flags.iter().any(|f| f == "noscript") {
        return Err(Error::CommandNotScriptable(what));
    }
    if by_prefix && info.flags.iter().any(|f| f == "movablekeys") {
        return Err(Error::MovableKeysByPrefix(what));
    }
    Ok(())
}

/// The command filter: sends hooked commands to RG.INNERHOOK.
pub fn command_filter(f: &mut CommandFilter<'_>) {
    let Some(g) = state::get() else { return };
    if !g.any_hook.load(Ordering::Relaxed) {
        return;
    }
    let argc = f.len();
    if argc == 0 {
        return;
    }
    let name = String::from_utf8_lossy(&f.arg(0)).to_ascii_lowercase();
    let tables = g.tables();
    let Some(h) = tables.hooked.get(&name) else {
        return;
    };
    let arg = |i: usize| f.arg(i);
    if !keys_served_here(g, h.spec, argc, &arg) {
        // Redis answers MOVED or CROSSSLOT itself, as for any command.
        return;
    }
    if h.filters.iter().any(|k| k.accepts(h.spec, argc, &arg)) {
        // `RG.INNERHOOK <token> cmd args...`: only the filter knows the
        // token, so clients can not call RG.INNERHOOK themselves.
        f.prepend(g.hook_token.as_bytes());
        f.prepend(INNER_HOOK.as_bytes());
    }
}

/// In a cluster, whether every key of the command is in one slot this node
/// serves (a hooked command must keep Redis Cluster's own errors).
fn keys_served_here(
    g: &Gears,
    spec: redis::KeySpec,
    argc: usize,
    arg: &dyn Fn(usize) -> Vec<u8>,
) -> bool {
    let t = g.topology();
    if !t.is_cluster() {
        return true;
    }
    let mut slots = spec
        .positions(argc)
        .map(|i| gears_cluster::key_slot(&arg(i)));
    let Some(first) = slots.next() else {
        return true;
    };
    slots.all(|s| s == first) && t.serves(first)
}

/// The command the filter sends hooked commands to.
pub const INNER_HOOK: &str = "RG.INNERHOOK";

/// Runs the real command (filters skip our own calls) as `who`, the client
/// that sent it: its database, its permissions; replicated, refused over
/// maxmemory like the client's own command would be.
pub fn call_real(who: &Identity, argv: &[Vec<u8>]) -> Reply {
    redis::call_as(who, argv)
}

/// Among `hooks` (newest first), the first one that accepts `argv`'s keys.
pub fn first_accepting(g: &Gears, hooks: &[Arc<Registration>], argv: &[Vec<u8>]) -> Option<usize> {
    let name = String::from_utf8_lossy(&argv[0]).to_ascii_lowercase();
    let spec = g.tables().spec(&name)?;
    let arg = |i: usize| argv.get(i).cloned().unwrap_or_default();
    hooks
        .iter()
        .position(|r| KeyFilter::of(r).accepts(spec, argv.len(), &arg))
}

/// The reply of a hook's execution: its single result, or its first error.
pub fn hook_reply(e: &Execution) -> Reply {
    crate::response::fired_reply(e, true)
}

/// `call_next` of a hook: the rest of the chain, then the command.
struct Next {
    gears: &'static Gears,
    command: Vec<u8>,
    chain: Vec<Arc<Registration>>,
    who: Identity,
}

impl CallNext for Next {
    fn call_next(&self, args: Vec<Vec<u8>>) -> Reply {
        let mut argv = Vec::with_capacity(args.len() + 1);
        argv.push(self.command.clone());
        argv.extend(args);
        // Only hooks older than the running one may come next. They run
        // inline, whatever their mode: their reply is what `call_next`
        // returns.
        match first_accepting(self.gears, &self.chain, &argv) {
            Some(i) => {
                let rest = self.chain[i + 1..].to_vec();
                let fired = start_hook(
                    self.gears,
                    &self.chain[i],
                    &argv,
                    rest,
                    // A nested hook can not wait: its reply is what this
                    // `call_next` returns now.
                    Placement::Inline { may_wait: false },
                    Caller::Client { can_block: false },
                    self.who.clone(),
                );
                hook_reply(fired.execution())
            }
            None => call_linked(&self.who, &argv, false).0,
        }
    }
}

/// A reader of one list record made of `words`: the record of a trigger
/// (`[name, args...]`) or of a hooked command (`[command, args...]`).
pub fn words_record<'a>(words: impl IntoIterator<Item = &'a [u8]>) -> Box<VecReader> {
    let record = Record::List(words.into_iter().map(|w| Record::Str(w.to_vec())).collect());
    Box::new(VecReader(Some(vec![record])))
}

/// The command context of hook `reg` for `argv`: `call_next` reaches
/// `rest` (older hooks), then the command, as `who`.
fn hook_ctx(
    g: &'static Gears,
    argv: &[Vec<u8>],
    rest: Vec<Arc<Registration>>,
    who: Identity,
) -> Arc<CommandCtx> {
    let next = Next {
        gears: g,
        command: argv[0].clone(),
        chain: rest,
        who,
    };
    Arc::new(CommandCtx::new(Some(Box::new(next))))
}

/// Fires hook `reg` for the command `argv` of the client `who`.
pub fn fire_hook(
    g: &'static Gears,
    reg: &Arc<Registration>,
    argv: &[Vec<u8>],
    rest: Vec<Arc<Registration>>,
    caller: Caller,
    who: Identity,
) -> Result<Fired, CannotBlock> {
    let placement = g.engine.placement(reg, caller)?;
    Ok(start_hook(g, reg, argv, rest, placement, caller, who))
}

fn start_hook(
    g: &'static Gears,
    reg: &Arc<Registration>,
    argv: &[Vec<u8>],
    rest: Vec<Arc<Registration>>,
    placement: Placement,
    caller: Caller,
    who: Identity,
) -> Fired {
    let command = hook_ctx(g, argv, rest, who.clone());
    let reader = words_record(argv.iter().map(Vec::as_slice));
    g.engine
        .start(reg, placement, caller, who, reader, Some(command))
}

/// Runs the real command as `who` with a link for the events it raises.
/// Returns the reply and the link (to wait for its executions).
pub fn call_linked(who: &Identity, argv: &[Vec<u8>], attached: bool) -> (Reply, Arc<Linked>) {
    let name = String::from_utf8_lossy(&argv[0]).to_ascii_lowercase();
    let linked = Linked::new(name, attached);
    let reply = with_linked(&linked, || call_real(who, argv));
    (reply, linked)
}
