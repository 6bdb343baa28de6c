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

use crate::errors;
use crate::linked::{with_linked, Linked};
use crate::redis::{self, CommandFilter};
use crate::state::{self, Gears};
use crate::tables::KeyFilter;
use gears_core::dispatch::CannotBlock;
use gears_core::engine::VecReader;
use gears_core::execution::Execution;
use gears_core::registration::Registration;
use gears_core::{CallNext, Caller, CommandCtx, Fired, Record, Reply};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Checks that `command` may be hooked (`what` is "override" for hooks and
/// "hook" for KeysReader `commands`), with 1.2's errors.
pub fn check_hookable(command: &str, by_prefix: bool, what: &str) -> Result<(), String> {
    let Some(info) = redis::command_info(command) else {
        return Err(errors::no_such_command(what));
    };
    if info.flags.iter().any(|f| f == "noscript") {
        return Err(errors::command_not_scriptable(what));
    }
    if by_prefix && info.flags.iter().any(|f| f == "movablekeys") {
        return Err(errors::movable_keys_by_prefix(what));
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
    if h.filters.iter().any(|k| k.accepts(h.spec, argc, &arg)) {
        f.prepend(b"RG.INNERHOOK");
    }
}

/// Runs the real command (filters skip our own calls), replicated, refused
/// over maxmemory like the client's own command would be.
pub fn call_real(argv: &[Vec<u8>]) -> Reply {
    redis::call_with(argv, c"!vEM")
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
}

impl CallNext for Next {
    fn call_next(&self, args: Vec<Vec<u8>>) -> Reply {
        let mut argv = Vec::with_capacity(args.len() + 1);
        argv.push(self.command.clone());
        argv.extend(args);
        // Only hooks older than the running one may come next. They run
        // inline: this thread already holds what the outer hook holds.
        match first_accepting(self.gears, &self.chain, &argv) {
            Some(i) => {
                let rest = self.chain[i + 1..].to_vec();
                let fired = fire_hook(self.gears, &self.chain[i], &argv, rest, Caller::Event);
                match fired {
                    Ok(Fired::Finished(e)) => hook_reply(&e),
                    // A queued older hook: its reply is not known yet.
                    Ok(Fired::Queued(_)) | Err(_) => Reply::Error(errors::NO_ASYNC_HERE.into()),
                }
            }
            None => call_linked(&argv, false).0,
        }
    }
}

/// A reader of one list record made of `words`: the record of a trigger
/// (`[name, args...]`) or of a hooked command (`[command, args...]`).
pub fn words_record<'a>(words: impl IntoIterator<Item = &'a [u8]>) -> Box<VecReader> {
    let record = Record::List(words.into_iter().map(|w| Record::Str(w.to_vec())).collect());
    Box::new(VecReader(Some(vec![record])))
}

/// Fires hook `reg` for the command `argv`, with `rest` (older hooks) as
/// what its `call_next` reaches.
pub fn fire_hook(
    g: &'static Gears,
    reg: &Arc<Registration>,
    argv: &[Vec<u8>],
    rest: Vec<Arc<Registration>>,
    caller: Caller,
) -> Result<Fired, CannotBlock> {
    let next = Next {
        gears: g,
        command: argv[0].clone(),
        chain: rest,
    };
    let command = Arc::new(CommandCtx::new(Some(Box::new(next))));
    let reader = words_record(argv.iter().map(Vec::as_slice));
    g.engine.fire(reg, caller, reader, Some(command))
}

/// Runs the real command with a link for the events it raises. Returns
/// the reply and the link (to wait for its executions).
pub fn call_linked(argv: &[Vec<u8>], attached: bool) -> (Reply, Arc<Linked>) {
    let name = String::from_utf8_lossy(&argv[0]).to_ascii_lowercase();
    let linked = Linked::new(name, attached);
    let reply = with_linked(&linked, || call_real(argv));
    (reply, linked)
}
