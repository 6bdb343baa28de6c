//! Command hooks (`GB('CommandReader').register(hook=...)`) and the
//! commands KeysReader registrations list in `commands=[...]`.
//!
//! A command filter renames a hooked command `cmd args...` to
//! `RG.INNERHOOK cmd args...` when one of its keys matches a registration.
//! [`inner_hook`] then runs the newest matching hook, whose `call_next`
//! reaches the next one and finally the real command (through
//! `RedisModule_Call`, which our own filter skips: `NOSELF`). Commands only
//! listed by KeysReader registrations run for real at once, with the client
//! linked to the executions their events trigger.

use crate::commands::{can_block, err, guarded, later, reply_when_done, NO_ASYNC_HERE};
use crate::events::{with_linked, Linked};
use crate::redis::{self, Blocked};
use gears_core::engine::VecReader;
use gears_core::execution::Execution;
use gears_core::registration::{prefix_matches, Mode, ReaderArgs, Registration};
use gears_core::{Record, Reply};
use gears_python::{CallNext, CommandCtx};
use once_cell::sync::Lazy;
use redis_module::{raw, Context, RedisResult, RedisString};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

/// Where a command keeps its keys (COMMAND INFO's first, last, step).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySpec {
    first: i64,
    last: i64,
    step: i64,
}

impl KeySpec {
    /// The argument positions holding keys, for a command of `argc` words.
    fn positions(self, argc: usize) -> impl Iterator<Item = usize> {
        let last = if self.last < 0 {
            argc as i64 + self.last
        } else {
            self.last.min(argc as i64 - 1)
        };
        let (first, step) = (self.first, self.step.max(1));
        (0..)
            .map(move |i| first + i * step)
            .take_while(move |&p| first > 0 && p <= last)
            .map(|p| p as usize)
    }
}

/// How a registration filters the keys of a hooked command.
#[derive(Debug, Clone, PartialEq)]
enum KeyFilter {
    Any,
    /// A hook's `keyprefix`: some key starts with it.
    StartsWith(Vec<u8>),
    /// A KeysReader prefix (1.2's rule: trailing `*` or exact).
    KeysPrefix(Vec<u8>),
}

impl KeyFilter {
    fn of(reg: &Registration) -> KeyFilter {
        match &reg.args {
            ReaderArgs::Hook {
                keyprefix: Some(p), ..
            } => KeyFilter::StartsWith(p.clone()),
            ReaderArgs::Keys { prefix, .. } if prefix.as_slice() != b"*" => {
                KeyFilter::KeysPrefix(prefix.clone())
            }
            _ => KeyFilter::Any,
        }
    }

    fn accepts(&self, spec: KeySpec, argc: usize, arg: &dyn Fn(usize) -> Vec<u8>) -> bool {
        match self {
            KeyFilter::Any => true,
            KeyFilter::StartsWith(p) => spec.positions(argc).any(|i| arg(i).starts_with(p)),
            KeyFilter::KeysPrefix(p) => spec.positions(argc).any(|i| prefix_matches(p, &arg(i))),
        }
    }
}

struct Hooked {
    spec: KeySpec,
    filters: Vec<KeyFilter>,
}

static HOOKED: Lazy<RwLock<Arc<HashMap<String, Hooked>>>> = Lazy::new(Default::default);
static ANY_HOOK: AtomicBool = AtomicBool::new(false);

/// What COMMAND INFO says about a command: `None` if it does not exist.
struct CommandInfo {
    flags: Vec<String>,
    spec: KeySpec,
}

fn command_info(name: &str) -> Option<CommandInfo> {
    let reply = redis::call(&[
        b"COMMAND".to_vec(),
        b"INFO".to_vec(),
        name.as_bytes().to_vec(),
    ]);
    let Reply::Array(mut entries) = reply else {
        return None;
    };
    let Some(Reply::Array(info)) = entries.pop() else {
        return None;
    };
    let int = |i: usize| match info.get(i) {
        Some(Reply::Int(n)) => *n,
        _ => 0,
    };
    let flags = match info.get(2) {
        Some(Reply::Array(f)) => f
            .iter()
            .filter_map(|x| match x {
                Reply::Status(s) => Some(s.clone()),
                Reply::Bulk(b) => Some(String::from_utf8_lossy(b).into_owned()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    Some(CommandInfo {
        flags,
        spec: KeySpec {
            first: int(3),
            last: int(4),
            step: int(5),
        },
    })
}

/// Checks that `command` may be hooked (`what` is "override" for hooks and
/// "hook" for KeysReader `commands`), with 1.2's errors.
pub fn check_hookable(command: &str, by_prefix: bool, what: &str) -> Result<(), String> {
    let Some(info) = command_info(command) else {
        return Err(format!("Can not {what} an unexisting command"));
    };
    if info.flags.iter().any(|f| f == "noscript") {
        return Err(format!(
            "Can not {what} a command which are not allowed inside a script"
        ));
    }
    if by_prefix && info.flags.iter().any(|f| f == "movablekeys") {
        return Err(format!(
            "Can not {what} a command with moveable keys by key prefix"
        ));
    }
    Ok(())
}

/// Rebuilds the table the command filter reads.
pub fn refresh() {
    let mut table: HashMap<String, Hooked> = HashMap::new();
    for reg in crate::engine().registrations.snapshot().iter() {
        let commands: Vec<String> = match &reg.args {
            ReaderArgs::Hook { command, .. } => vec![command.clone()],
            ReaderArgs::Keys {
                commands: Some(c), ..
            } => c.clone(),
            _ => continue,
        };
        for c in commands {
            if !table.contains_key(&c) {
                let Some(info) = command_info(&c) else {
                    continue;
                };
                table.insert(
                    c.clone(),
                    Hooked {
                        spec: info.spec,
                        filters: Vec::new(),
                    },
                );
            }
            if let Some(h) = table.get_mut(&c) {
                h.filters.push(KeyFilter::of(reg));
            }
        }
    }
    ANY_HOOK.store(!table.is_empty(), Ordering::SeqCst);
    *HOOKED.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(table);
}

fn filter_arg(fctx: *mut raw::RedisModuleCommandFilterCtx, i: usize) -> Vec<u8> {
    // SAFETY: `fctx` is the live filter context and `i` is below its count;
    // the string stays owned by the filter.
    unsafe {
        let s = raw::RedisModule_CommandFilterArgGet.unwrap()(fctx, i as _);
        if s.is_null() {
            return Vec::new();
        }
        let mut len = 0usize;
        let p = raw::RedisModule_StringPtrLen.unwrap()(s, &mut len);
        std::slice::from_raw_parts(p.cast::<u8>(), len).to_vec()
    }
}

/// The command filter: sends hooked commands to RG.INNERHOOK.
pub extern "C" fn command_filter(fctx: *mut raw::RedisModuleCommandFilterCtx) {
    if !ANY_HOOK.load(Ordering::Relaxed) {
        return;
    }
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: `fctx` is valid during the callback.
        let argc = unsafe { raw::RedisModule_CommandFilterArgsCount.unwrap()(fctx) } as usize;
        if argc == 0 {
            return;
        }
        let name = String::from_utf8_lossy(&filter_arg(fctx, 0)).to_ascii_lowercase();
        let table = HOOKED.read().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(h) = table.get(&name) else { return };
        let arg = |i: usize| filter_arg(fctx, i);
        if !h.filters.iter().any(|f| f.accepts(h.spec, argc, &arg)) {
            return;
        }
        let word = b"RG.INNERHOOK";
        // SAFETY: a string without context belongs to whoever takes it: the
        // filter takes ownership of inserted arguments.
        unsafe {
            let s = raw::RedisModule_CreateString.unwrap()(
                std::ptr::null_mut(),
                word.as_ptr().cast(),
                word.len(),
            );
            raw::RedisModule_CommandFilterArgInsert.unwrap()(fctx, 0, s);
        }
    });
}

/// Runs the real command (filters skip our own calls), replicated, refused
/// over maxmemory like the client's own command would be.
fn call_real(argv: &[Vec<u8>]) -> Reply {
    redis::call_with(argv, c"!vEM")
}

/// Among `hooks` (newest first), the first one that accepts `argv`'s keys.
fn first_accepting(hooks: &[Arc<Registration>], argv: &[Vec<u8>]) -> Option<usize> {
    let name = String::from_utf8_lossy(&argv[0]).to_ascii_lowercase();
    let spec = HOOKED
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(&name)
        .map(|h| h.spec)?;
    let arg = |i: usize| argv.get(i).cloned().unwrap_or_default();
    hooks
        .iter()
        .position(|r| KeyFilter::of(r).accepts(spec, argv.len(), &arg))
}

/// The reply of a hook's execution: its single result, or its first error.
fn hook_reply(e: &Execution) -> Reply {
    if let Some(err) = e.first_error() {
        return Reply::Error(err);
    }
    let mut results = e.results();
    if results.len() != 1 {
        return Reply::Error("Command hook must return exactly one result".into());
    }
    results.pop().unwrap_or(Reply::Null)
}

/// `call_next` of a hook: the rest of the chain, then the command.
struct Next {
    command: Vec<u8>,
    chain: Vec<Arc<Registration>>,
}

impl CallNext for Next {
    fn call_next(&self, args: Vec<Vec<u8>>) -> Reply {
        let mut argv = Vec::with_capacity(args.len() + 1);
        argv.push(self.command.clone());
        argv.extend(args);
        // Only hooks older than the running one may come next.
        match first_accepting(&self.chain, &argv) {
            Some(i) => {
                let rest = self.chain[i + 1..].to_vec();
                hook_reply(&run_hook_inline(&self.chain[i], &argv, rest))
            }
            None => call_linked(&argv, false).0,
        }
    }
}

/// A reader of one list record made of `words`: the record of a trigger
/// (`[name, args...]`) or of a hooked command (`[command, args...]`).
pub(crate) fn words_record<'a>(words: impl IntoIterator<Item = &'a [u8]>) -> Box<VecReader> {
    let record = Record::List(words.into_iter().map(|w| Record::Str(w.to_vec())).collect());
    Box::new(VecReader(Some(vec![record])))
}

fn hook_record(argv: &[Vec<u8>]) -> Box<VecReader> {
    words_record(argv.iter().map(Vec::as_slice))
}

fn hook_ctx(argv: &[Vec<u8>], rest: Vec<Arc<Registration>>) -> Arc<CommandCtx> {
    Arc::new(CommandCtx::new(Some(Box::new(Next {
        command: argv[0].clone(),
        chain: rest,
    }))))
}

fn run_hook_inline(
    reg: &Arc<Registration>,
    argv: &[Vec<u8>],
    rest: Vec<Arc<Registration>>,
) -> Arc<Execution> {
    gears_python::run_inline(reg, hook_record(argv), Some(hook_ctx(argv, rest)))
}

/// Runs the real command with `linked` set for the events it raises.
/// Returns the reply and the link (to wait for its executions).
fn call_linked(argv: &[Vec<u8>], attached: bool) -> (Reply, Arc<Linked>) {
    let name = String::from_utf8_lossy(&argv[0]).to_ascii_lowercase();
    let linked = Linked::new(name, attached);
    let reply = with_linked(&linked, || call_real(argv));
    (reply, linked)
}

fn inner_hook_impl(ctx: &Context, args: &[RedisString]) -> Result<Reply, Reply> {
    crate::commands::arity(args, |n| n >= 2)?;
    let argv: Vec<Vec<u8>> = args[1..].iter().map(|a| a.as_slice().to_vec()).collect();
    let flags = redis::context_flags(ctx.ctx);
    // Replication and loading replay the command as it was.
    if flags & (raw::REDISMODULE_CTX_FLAGS_REPLICATED | raw::REDISMODULE_CTX_FLAGS_LOADING) != 0 {
        return Ok(call_real(&argv));
    }
    let name = String::from_utf8_lossy(&argv[0]).to_ascii_lowercase();
    let hooks = crate::engine().registrations.hooks(&name);
    let blockable = can_block(ctx);
    if let Some(i) = first_accepting(&hooks, &argv) {
        let (newest, rest) = (&hooks[i], &hooks[i + 1..]);
        if newest.mode == Mode::Sync {
            let exec = run_hook_inline(newest, &argv, rest.to_vec());
            return Ok(hook_reply(&exec));
        }
        if !blockable {
            return Err(err(NO_ASYNC_HERE));
        }
        let exec = gears_python::run_queued(
            newest,
            hook_record(&argv),
            Some(hook_ctx(&argv, rest.to_vec())),
        );
        return Ok(reply_when_done(ctx, &exec, hook_reply));
    }
    let (reply, linked) = call_linked(&argv, blockable);
    linked.set_real(reply);
    if linked.waiting() {
        linked.park(Blocked::new(ctx.ctx));
        linked.release();
        return Ok(later());
    }
    Ok(linked.final_reply())
}

pub fn inner_hook(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guarded(ctx, args, inner_hook_impl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_positions_follow_command_info() {
        let hset = KeySpec {
            first: 1,
            last: 1,
            step: 1,
        };
        assert_eq!(hset.positions(4).collect::<Vec<_>>(), [1]);
        let mset = KeySpec {
            first: 1,
            last: -1,
            step: 2,
        };
        assert_eq!(mset.positions(5).collect::<Vec<_>>(), [1, 3]);
        let ping = KeySpec {
            first: 0,
            last: 0,
            step: 0,
        };
        assert_eq!(ping.positions(2).count(), 0);
        // A short command never reads past its arguments.
        assert_eq!(hset.positions(1).count(), 0);
    }
}
