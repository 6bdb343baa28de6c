//! The kit every command handler uses: a typed response (now or later),
//! [`guarded`] (panics become error replies), argument helpers, and one way
//! to answer a client once executions finish.

use crate::access;
use crate::errors::Error;
use crate::redis::{self, Blocked};
use crate::state::{self, Gears};
use gears_core::execution::Execution;
use gears_core::sync::LockExt;
use gears_core::{Fired, Reply};
use redis_module::{Context, RedisResult, RedisString, RedisValue};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// What a command handler answers.
pub enum Response {
    /// This reply, now.
    Now(Reply),
    /// The client was blocked; it gets its reply when what it waits for
    /// finishes.
    Later,
}

impl From<Reply> for Response {
    fn from(r: Reply) -> Response {
        Response::Now(r)
    }
}

/// An error reply as a handler's failure.
pub type Failure = Reply;

pub type Handler = fn(&'static Gears, &Context, &[RedisString]) -> Result<Response, Failure>;

/// Runs a handler with the module state, catching panics, and writes its
/// reply unless the client was blocked.
pub fn guarded(ctx: &Context, args: Vec<RedisString>, f: Handler) -> RedisResult {
    let r = match state::get() {
        Some(g) => match catch_unwind(AssertUnwindSafe(|| {
            access::check(ctx, &args).map_err(err)?;
            redis::serving_command(ctx, || f(g, ctx, &args))
        })) {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Response::Now(e),
            Err(_) => Response::Now(err(Error::Internal)),
        },
        None => Response::Now(err(Error::Internal)),
    };
    if let Response::Now(r) = r {
        redis::reply(ctx, &r);
    }
    Ok(RedisValue::NoReply)
}

/// Runs `f` on a thread of its own (`name`), for work a blocked client
/// waits for. A panic is caught and logged; either way what `f` owns is
/// dropped, so a [`Blocked`] it holds is answered (with an error if `f`
/// did not answer). A thread that can not start drops `f` at once.
pub fn spawn(name: &str, f: impl FnOnce() + Send + 'static) {
    let label = name.to_string();
    let started = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            if catch_unwind(AssertUnwindSafe(f)).is_err() {
                redis::log("warning", &format!("the {label} thread panicked"));
            }
        });
    if let Err(e) = started {
        redis::log(
            "warning",
            &format!("could not start the {name} thread: {e}"),
        );
    }
}

pub fn err(msg: impl Into<String>) -> Reply {
    Reply::Error(msg.into())
}

pub fn ok() -> Reply {
    Reply::Status("OK".into())
}

pub fn arity(args: &[RedisString], ok: impl Fn(usize) -> bool) -> Result<(), Failure> {
    if ok(args.len()) {
        return Ok(());
    }
    let name = args
        .first()
        .map(text)
        .unwrap_or_default()
        .to_ascii_lowercase();
    Err(err(Error::WrongArity(name.to_string())))
}

pub fn text(s: &RedisString) -> String {
    s.to_string_lossy()
}

/// Blocks the client until every execution of `execs` has finished, then
/// replies `make()`. Replies at once when there is nothing to wait for.
pub fn reply_when_all_done(
    ctx: &Context,
    execs: Vec<Arc<Execution>>,
    make: impl FnOnce() -> Reply + Send + 'static,
) -> Response {
    let waiting: Vec<_> = execs
        .into_iter()
        .filter(|e| !e.status().finished())
        .collect();
    if waiting.is_empty() {
        return Response::Now(make());
    }
    type Pending = Mutex<Option<(Blocked, Box<dyn FnOnce() -> Reply + Send>)>>;
    let left = Arc::new(AtomicUsize::new(waiting.len()));
    let pending: Arc<Pending> = Arc::new(Mutex::new(Some((Blocked::new(ctx), Box::new(make)))));
    for e in waiting {
        let (left, pending) = (left.clone(), pending.clone());
        e.on_finish(Box::new(move |_| {
            if left.fetch_sub(1, Ordering::SeqCst) == 1 {
                let taken = pending.lock_unpoisoned().take();
                if let Some((blocked, make)) = taken {
                    blocked.reply(&make());
                }
            }
        }));
    }
    Response::Later
}

/// Blocks the client until `exec` finishes, then replies `make(exec)`.
pub fn reply_when_done(
    ctx: &Context,
    exec: &Arc<Execution>,
    make: impl FnOnce(&Execution) -> Reply + Send + 'static,
) -> Response {
    let e = exec.clone();
    reply_when_all_done(ctx, vec![exec.clone()], move || make(&e))
}

/// The response to a client whose command fired a registration: the reply
/// of the finished execution, or later once a queued one finishes.
pub fn respond_fired(
    ctx: &Context,
    fired: Result<Fired, gears_core::dispatch::CannotBlock>,
    make: fn(&Execution) -> Reply,
) -> Result<Response, Failure> {
    match fired.map_err(|_| err(Error::NoAsyncHere))? {
        Fired::Finished(e) | Fired::Refused(e) => Ok(Response::Now(make(&e))),
        Fired::Queued(e) => Ok(reply_when_done(ctx, &e, make)),
    }
}

/// What an execution fired by a client command answers: its first error,
/// or else its results (all of them, or exactly one).
pub fn fired_reply(e: &Execution, one: bool) -> Reply {
    if let Some(err) = e.first_error() {
        return Reply::Error(err);
    }
    let mut results = e.results();
    if !one {
        return Reply::Array(results);
    }
    if results.len() != 1 {
        return err(Error::HookOneResult);
    }
    results.pop().unwrap_or(Reply::Null)
}
