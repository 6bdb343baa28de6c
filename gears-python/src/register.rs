//! `register()`: turns a GearsBuilder and its reader arguments into a
//! [`Registration`], checked the way 1.2 checks them. The registration is
//! applied by the host once the script body has succeeded.

use crate::args::{bytes_of, err, flag, text_of};
use crate::native::{make_steps, GearsError};
use crate::{host, PendingRegistration, SCRIPT};
use gears_core::plan::Plan;
use gears_core::registration::{Mode, OnFailed, ReaderArgs, Registration};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyInt, PyList, PyString};
use std::sync::Arc;

fn opt<'py>(kwargs: &Bound<'py, PyDict>, name: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
    Ok(kwargs.get_item(name)?.filter(|v| !v.is_none()))
}

/// A boolean keyword argument; `None` counts as not given.
fn boolean(kwargs: &Bound<'_, PyDict>, name: &str, default: bool, msg: &str) -> PyResult<bool> {
    flag(opt(kwargs, name)?, default, msg)
}

fn number(kwargs: &Bound<'_, PyDict>, name: &str, default: u64, msg: &str) -> PyResult<u64> {
    match opt(kwargs, name)? {
        None => Ok(default),
        Some(v) if v.is_instance_of::<PyInt>() && !v.is_instance_of::<PyBool>() => {
            v.extract::<u64>().or_else(|_| err(msg))
        }
        Some(_) => err(msg),
    }
}

/// A list of names (`eventTypes`, `keyTypes`, `commands`), lower-cased.
fn names(kwargs: &Bound<'_, PyDict>, name: &str, item: &str) -> PyResult<Option<Vec<String>>> {
    let Some(v) = opt(kwargs, name)? else {
        return Ok(None);
    };
    let Ok(iter) = v.try_iter() else {
        return err(format!("given {name} is not iterable"));
    };
    let mut out = Vec::new();
    for x in iter {
        out.push(text_of(&x?, &format!("given {item} type is not string"))?.to_ascii_lowercase());
    }
    Ok(Some(out))
}

const KEY_TYPES: &[&str] = &[
    "empty", "string", "list", "hash", "set", "zset", "module", "stream",
];

fn keys_args(prefix: &Bound<'_, PyAny>, kwargs: &Bound<'_, PyDict>) -> PyResult<ReaderArgs> {
    let prefix = bytes_of(prefix, "regex argument must be a string")?;
    let key_types = names(kwargs, "keyTypes", "key")?;
    if let Some(kt) = &key_types {
        if kt.iter().any(|t| !KEY_TYPES.contains(&t.as_str())) {
            return err("unknown key type");
        }
    }
    Ok(ReaderArgs::Keys {
        prefix,
        event_types: names(kwargs, "eventTypes", "event")?,
        key_types,
        read_value: boolean(kwargs, "readValue", true, "readValue is not boolean")?,
        commands: names(kwargs, "commands", "command")?,
    })
}

fn stream_args(
    prefix: &Bound<'_, PyAny>,
    kwargs: &Bound<'_, PyDict>,
    mode: Mode,
) -> PyResult<ReaderArgs> {
    let prefix = bytes_of(prefix, "regex argument must be a string")?;
    let batch = number(kwargs, "batch", 1, "batch argument must be a number")?;
    let duration_ms = number(kwargs, "duration", 0, "duration argument must be a number")?;
    let on_failed = match opt(kwargs, "onFailedPolicy")? {
        None => OnFailed::Continue,
        Some(v) => v
            .downcast::<PyString>()
            .ok()
            .and_then(|s| OnFailed::parse(&s.to_string_lossy()))
            .ok_or_else(|| GearsError::new_err("onFailedPolicy must be Continue/Abort/Retry"))?,
    };
    if mode == Mode::Sync && on_failed != OnFailed::Continue {
        return err("ExecutionMode sync can only be combined with OnFailedPolicy Continue");
    }
    Ok(ReaderArgs::Stream {
        prefix,
        batch: batch.max(1) as usize,
        duration_ms,
        on_failed,
        retry_interval_s: number(
            kwargs,
            "onFailedRetryInterval",
            1,
            "retryInterval argument must be a number",
        )?,
        trim: boolean(
            kwargs,
            "trimStream",
            true,
            "pyTrimmStream argument must be a boolean",
        )?,
    })
}

fn command_args(kwargs: &Bound<'_, PyDict>) -> PyResult<ReaderArgs> {
    let trigger = opt(kwargs, "trigger")?;
    let hook = opt(kwargs, "hook")?;
    let keyprefix = opt(kwargs, "keyprefix")?;
    let inorder = boolean(kwargs, "inorder", false, "inorder argument is be boolean")?;
    match (trigger, hook) {
        (Some(t), hook) => {
            let name = text_of(&t, "trigger argument is not string")?;
            if hook.is_some() || keyprefix.is_some() {
                return err("trigger argument can not be given with keyprefix or hook");
            }
            Ok(ReaderArgs::Trigger { name, inorder })
        }
        (None, Some(h)) => Ok(ReaderArgs::Hook {
            command: text_of(&h, "hook argument is not string")?.to_ascii_lowercase(),
            keyprefix: keyprefix
                .map(|k| bytes_of(&k, "keyprefix argument is not string"))
                .transpose()?,
            inorder,
        }),
        (None, None) => err("no trigger or hook argument was given"),
    }
}

/// Two registrations of one script that would claim the same trigger.
fn same_trigger(a: &ReaderArgs, b: &ReaderArgs) -> bool {
    matches!((a, b), (ReaderArgs::Trigger { name: x, .. }, ReaderArgs::Trigger { name: y, .. }) if x == y)
}

/// `register()` of a GearsBuilder; returns the registration id.
#[pyfunction]
#[pyo3(signature = (reader, prefix, steps, desc, kwargs))]
pub(crate) fn register(
    reader: &str,
    prefix: &Bound<'_, PyAny>,
    steps: &Bound<'_, PyList>,
    desc: Option<String>,
    kwargs: &Bound<'_, PyDict>,
) -> PyResult<String> {
    let Some(session) = SCRIPT.with(|s| s.borrow().as_ref().map(|c| c.session.clone())) else {
        return err("register() is only supported at the top level of an RG.PYEXECUTE script");
    };
    let mode = match opt(kwargs, "mode")? {
        None => Mode::Async,
        Some(m) => {
            let m = text_of(&m, "mode argument must be a string")?;
            Mode::parse(&m).ok_or_else(|| {
                GearsError::new_err(format!(
                    "unknown execution mode '{m}' (use sync, async or async_local)"
                ))
            })?
        }
    };
    let on_registered = match opt(kwargs, "onRegistered")? {
        None => None,
        Some(f) if f.is_callable() => Some(f.unbind()),
        Some(_) => return err("onRegistered argument must be a function"),
    };
    let args = match reader {
        "KeysReader" => keys_args(prefix, kwargs)?,
        "StreamReader" => stream_args(prefix, kwargs, mode)?,
        "CommandReader" => command_args(kwargs)?,
        _ => return err("given reader does not exists or does not support register"),
    };
    let clash = SCRIPT.with(|s| {
        s.borrow().as_ref().is_some_and(|c| {
            c.registrations
                .iter()
                .any(|p| same_trigger(&p.reg.args, &args))
        })
    });
    if clash {
        return err("trigger already registered in this session");
    }
    host()
        .check_registration(&args, &session)
        .map_err(GearsError::new_err)?;
    let plan = Plan {
        reader: reader.to_owned(),
        steps: make_steps(steps)?,
        desc: desc.clone(),
    };
    plan.validate().map_err(GearsError::new_err)?;
    let id = crate::engine().next_registration_id();
    let reg = Registration::new(id.clone(), desc, mode, args, plan, session);
    SCRIPT.with(|s| {
        if let Some(ctx) = s.borrow_mut().as_mut() {
            ctx.registrations.push(PendingRegistration {
                reg: Arc::new(reg),
                on_registered,
            });
        }
    });
    Ok(id)
}
