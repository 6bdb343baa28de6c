//! `register()`: turns a GearsBuilder and its reader arguments into a
//! [`Registration`], checked the way 1.2 checks them. The registration is
//! applied by the host once the script body has succeeded.

use crate::args::{bytes_of, err, flag, text_of};
use crate::errors::{self as e, GearsError};
use crate::host::ScriptScope;
use crate::runtime::{engine, host};
use crate::script::{in_script, PendingRegistration, PyOnRegistered};
use crate::steps::make_steps;
use gears_core::plan::Plan;
use gears_core::record::KeyType;
use gears_core::registration::{Mode, OnFailed, OnRegistered, ReaderArgs, Registration};
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
        return err(e::not_iterable(name));
    };
    let mut out = Vec::new();
    for x in iter {
        out.push(text_of(&x?, &e::item_not_string(item))?.to_ascii_lowercase());
    }
    Ok(Some(out))
}

fn keys_args(prefix: &Bound<'_, PyAny>, kwargs: &Bound<'_, PyDict>) -> PyResult<ReaderArgs> {
    let prefix = bytes_of(prefix, e::REGEX_NOT_STRING)?;
    let key_types = names(kwargs, "keyTypes", "key")?;
    if let Some(kt) = &key_types {
        if kt.iter().any(|t| KeyType::parse(t).is_none()) {
            return err(e::UNKNOWN_KEY_TYPE);
        }
    }
    Ok(ReaderArgs::Keys {
        prefix,
        event_types: names(kwargs, "eventTypes", "event")?,
        key_types,
        read_value: boolean(kwargs, "readValue", true, e::READVALUE_IS_NOT_BOOL)?,
        commands: names(kwargs, "commands", "command")?,
    })
}

fn stream_args(
    prefix: &Bound<'_, PyAny>,
    kwargs: &Bound<'_, PyDict>,
    mode: Mode,
) -> PyResult<ReaderArgs> {
    let prefix = bytes_of(prefix, e::REGEX_NOT_STRING)?;
    let batch = number(kwargs, "batch", 1, e::BATCH_NOT_NUMBER)?;
    let duration_ms = number(kwargs, "duration", 0, e::DURATION_NOT_NUMBER)?;
    let on_failed = match opt(kwargs, "onFailedPolicy")? {
        None => OnFailed::Continue,
        Some(v) => v
            .downcast::<PyString>()
            .ok()
            .and_then(|s| OnFailed::parse(&s.to_string_lossy()))
            .ok_or_else(|| GearsError::new_err(e::BAD_ON_FAILED))?,
    };
    if mode == Mode::Sync && on_failed != OnFailed::Continue {
        return err(e::SYNC_NEEDS_CONTINUE);
    }
    Ok(ReaderArgs::Stream {
        prefix,
        batch: batch.max(1) as usize,
        duration_ms,
        on_failed,
        retry_interval_s: number(kwargs, "onFailedRetryInterval", 1, e::RETRY_NOT_NUMBER)?,
        trim: boolean(kwargs, "trimStream", true, e::TRIM_NOT_BOOL)?,
    })
}

fn command_args(kwargs: &Bound<'_, PyDict>) -> PyResult<ReaderArgs> {
    let trigger = opt(kwargs, "trigger")?;
    let hook = opt(kwargs, "hook")?;
    let keyprefix = opt(kwargs, "keyprefix")?;
    let inorder = boolean(kwargs, "inorder", false, e::INORDER_NOT_BOOL)?;
    match (trigger, hook) {
        (Some(t), hook) => {
            let name = text_of(&t, e::TRIGGER_NOT_STRING)?;
            if hook.is_some() || keyprefix.is_some() {
                return err(e::TRIGGER_WITH_HOOK);
            }
            Ok(ReaderArgs::Trigger { name, inorder })
        }
        (None, Some(h)) => Ok(ReaderArgs::Hook {
            command: text_of(&h, e::HOOK_NOT_STRING)?.to_ascii_lowercase(),
            keyprefix: keyprefix
                .map(|k| bytes_of(&k, e::KEYPREFIX_NOT_STRING))
                .transpose()?,
            inorder,
        }),
        (None, None) => err(e::NO_TRIGGER_OR_HOOK),
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
    // In a script body, registrations are applied once it succeeded; from
    // a step, at once, in a session of their own, owned by the execution's
    // user.
    let in_body = in_script(|c| c.scope.clone());
    let id = engine().next_registration_id();
    let scope = in_body.clone().unwrap_or_else(|| ScriptScope {
        session: id.clone(),
        replacing: None,
        identity: crate::acting::identity(),
    });
    let mode = match opt(kwargs, "mode")? {
        None => Mode::Async,
        Some(m) => {
            let m = text_of(&m, e::MODE_NOT_STRING)?;
            Mode::parse(&m).ok_or_else(|| GearsError::new_err(e::bad_register_mode(&m)))?
        }
    };
    let on_registered = match opt(kwargs, "onRegistered")? {
        None => None,
        Some(f) if f.is_callable() => Some(f.unbind()),
        Some(_) => return err(e::ONREGISTERED_NOT_FUNCTION),
    };
    let args = match reader {
        "KeysReader" => keys_args(prefix, kwargs)?,
        "StreamReader" => stream_args(prefix, kwargs, mode)?,
        "CommandReader" => command_args(kwargs)?,
        _ => return err(e::UNKNOWN_REGISTER_READER),
    };
    let clash = in_script(|c| {
        c.registrations
            .iter()
            .any(|p| same_trigger(&p.reg.args, &args))
    });
    if clash == Some(true) {
        return err(e::TRIGGER_TWICE_IN_SESSION);
    }
    if in_body.is_some() {
        host()
            .check_registration(&args, &scope)
            .map_err(PyErr::from)?;
    }
    let plan = Plan {
        reader: reader.to_owned(),
        steps: make_steps(steps)?,
        desc: desc.clone(),
    };
    plan.validate()
        .map_err(|e| GearsError::new_err(e.to_string()))?;
    // Saved now: a callback that can not be saved fails register() at once.
    let payload = crate::persist::save(steps.py(), steps, on_registered.as_ref())?;
    let reg = Registration::new(id.clone(), desc, mode, args, plan, scope.session.clone())
        .owned_by(scope.identity.user.clone())
        .with_payload(payload)
        .with_on_registered(
            on_registered.map(|f| Arc::new(PyOnRegistered(f)) as Arc<dyn OnRegistered>),
        );
    let pending = PendingRegistration::plain(Arc::new(reg));
    if in_body.is_some() {
        in_script(|c| c.registrations.push(pending));
        return Ok(id);
    }
    // Checked and applied by the host, without the GIL (it takes the Redis
    // lock); then onRegistered runs.
    let (h, reg) = (host(), pending.reg.clone());
    steps
        .py()
        .allow_threads(move || {
            crate::runtime::waiting_for_redis(|| h.apply_registration(reg, &scope))
        })
        .map_err(PyErr::from)?;
    pending.on_registered();
    Ok(id)
}
