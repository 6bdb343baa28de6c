//! Configuration of the gears module.
//!
//! Three layers are merged, later ones winning: the built-in defaults, the
//! module's load arguments (`loadmodule gears.so Key Value ...`) and changes
//! made at runtime with `RG.CONFIGSET`. The merge is done by the `config`
//! crate; the typed result is [`Settings`], deserialized with serde.
//!
//! Keys that are not built-in options are kept, with their exact case, in an
//! *extra* dictionary: users and the Python runtime read them back with
//! `RG.CONFIGGET` and `configGet()`.
//!
//! # Example
//!
//! ```rust
//! use gears_config::{GearsConfig, SetOutcome, Value};
//!
//! // Load arguments: built-in names in any case, unknown keys kept as extras.
//! let mut config = GearsConfig::from_args(&[
//!     "ExecutionThreads", "2",
//!     "maxexecutions", "50",
//!     "MyOption", "on",
//! ])?;
//! assert_eq!(config.settings().executionthreads, 2);
//! assert_eq!(config.get("MaxExecutions"), Some(Value::Int(50)));
//! assert_eq!(config.get("MyOption"), Some(Value::Text("on".into())));
//! // What no layer sets keeps its default.
//! assert_eq!(config.settings().sendmsgretries, 3);
//!
//! // RG.CONFIGSET: the runtime layer wins over the load arguments...
//! assert_eq!(config.set("MaxExecutions", "10")?, SetOutcome::Ok);
//! assert_eq!(config.settings().maxexecutions, 10);
//! assert_eq!(config.get("MaxExecutions"), Some(Value::Int(10)));
//! assert_eq!(config.set("Other", "x")?, SetOutcome::SavedAsExtra);
//! assert_eq!(config.get("Other"), Some(Value::Text("x".into())));
//!
//! // ...but options fixed at load time, or bad values, are refused.
//! assert!(config.set("ExecutionThreads", "4").is_err());
//! assert!(config.set("MaxExecutions", "0").is_err());
//! assert_eq!(config.settings().executionthreads, 2);
//! assert_eq!(config.settings().maxexecutions, 10);
//! # Ok::<(), gears_config::ConfigError>(())
//! ```

#![forbid(unsafe_code)]

use serde::Deserialize;
use std::collections::BTreeMap;

/// Which component an option belongs to; it selects the error wording of
/// `RG.CONFIGSET`, as 1.2 words them differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    Engine,
    Python,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An integer of at least `min`.
    Int {
        min: i64,
    },
    Text,
}

/// The description of one built-in option.
#[derive(Debug)]
pub struct Spec {
    pub name: &'static str,
    pub default: &'static str,
    pub kind: Kind,
    pub runtime: bool,
    pub owner: Owner,
}

const fn int(
    name: &'static str,
    default: &'static str,
    min: i64,
    runtime: bool,
    owner: Owner,
) -> Spec {
    Spec {
        name,
        default,
        kind: Kind::Int { min },
        runtime,
        owner,
    }
}

const fn text(name: &'static str, default: &'static str) -> Spec {
    Spec {
        name,
        default,
        kind: Kind::Text,
        runtime: false,
        owner: Owner::Python,
    }
}

/// Every built-in option with its default, type, range and mutability.
pub const SPECS: &[Spec] = &[
    int("MaxExecutions", "1000", 1, true, Owner::Engine),
    int(
        "MaxExecutionsPerRegistration",
        "100",
        0,
        true,
        Owner::Engine,
    ),
    int("MaxQueuedExecutions", "10000", 1, true, Owner::Engine),
    int("DropEventsWhenQueueFull", "0", 0, true, Owner::Engine),
    int("ProfileExecutions", "0", 0, true, Owner::Engine),
    int("ExecutionThreads", "3", 1, false, Owner::Engine),
    int("ExecutionMaxIdleTime", "5000", 1, true, Owner::Engine),
    int("SendMsgRetries", "3", 0, true, Owner::Engine),
    int("PythonAttemptTraceback", "1", 0, true, Owner::Python),
    int(
        "PythonInstallReqMaxIdleTime",
        "30000",
        1,
        true,
        Owner::Python,
    ),
    int("CreateVenv", "0", 0, false, Owner::Python),
    int("DownloadDeps", "0", 0, false, Owner::Python),
    int(
        "ForceDownloadDepsOnEnterprise",
        "0",
        0,
        false,
        Owner::Python,
    ),
    int("OverridePythonAllocators", "1", 0, false, Owner::Python),
    text("PythonInstallationDir", "/var/opt/redislabs/modules/rg"),
    text("DependenciesUrl", ""),
    text("DependenciesSha256", ""),
];

/// Finds a built-in option, ignoring case (as load arguments and
/// `RG.CONFIGSET` do).
pub fn spec_nocase(key: &str) -> Option<&'static Spec> {
    SPECS.iter().find(|s| s.name.eq_ignore_ascii_case(key))
}

/// Finds a built-in option by its exact name (as `RG.CONFIGGET` does).
pub fn spec_exact(key: &str) -> Option<&'static Spec> {
    SPECS.iter().find(|s| s.name == key)
}

/// The merged, typed configuration.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub struct Settings {
    pub maxexecutions: i64,
    pub maxexecutionsperregistration: i64,
    pub maxqueuedexecutions: i64,
    pub dropeventswhenqueuefull: Flag,
    pub profileexecutions: Flag,
    pub executionthreads: i64,
    pub executionmaxidletime: i64,
    pub sendmsgretries: i64,
    pub pythonattempttraceback: Flag,
    pub pythoninstallreqmaxidletime: i64,
    pub createvenv: Flag,
    pub downloaddeps: Flag,
    pub forcedownloaddepsonenterprise: Flag,
    pub overridepythonallocators: Flag,
    pub pythoninstallationdir: String,
    pub dependenciesurl: String,
    pub dependenciessha256: String,
}

/// An option that switches something on or off. 1.2 takes any integer
/// from 0 and shows it back as given (`RG.CONFIGGET ProfileExecutions`
/// after setting 2 answers 2), so the number is kept; anything but 0 is on.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Flag(pub i64);

impl Flag {
    pub fn on(self) -> bool {
        self.0 != 0
    }
}

/// A value as `RG.CONFIGGET` and `configGet()` return it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    Text(String),
}

/// What `RG.CONFIGSET` answers for one key.
#[derive(Debug, Clone, PartialEq)]
pub enum SetOutcome {
    Ok,
    SavedAsExtra,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError(pub String, pub ErrorKind);

/// What kind of error a [`ConfigError`] is (`RG.CONFIGSET` words its reply
/// by it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Arguments that do not form `key value` pairs, or layers that do not
    /// merge.
    Invalid,
    /// The option can only be set at load time.
    NotRuntime,
    /// The value does not parse or is out of range for the option.
    BadValue(Owner),
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// The configuration store: the layers and their merged result.
#[derive(Debug, Clone)]
pub struct GearsConfig {
    load: BTreeMap<&'static str, Value>,
    runtime: BTreeMap<&'static str, Value>,
    extra: BTreeMap<String, String>,
    settings: Settings,
}

fn parse(spec: &Spec, raw: &str) -> Option<Value> {
    match spec.kind {
        Kind::Int { min } => {
            let v: i64 = raw.trim().parse().ok()?;
            (v >= min).then_some(Value::Int(v))
        }
        Kind::Text => Some(Value::Text(raw.to_owned())),
    }
}

fn merge(
    load: &BTreeMap<&'static str, Value>,
    runtime: &BTreeMap<&'static str, Value>,
) -> Result<Settings, ConfigError> {
    let err = |e: config::ConfigError| ConfigError(e.to_string(), ErrorKind::Invalid);
    let mut b = config::Config::builder();
    for s in SPECS {
        let key = s.name.to_ascii_lowercase();
        b = match parse(s, s.default).expect("defaults are valid") {
            Value::Int(i) => b.set_default(key, i),
            Value::Text(t) => b.set_default(key, t),
        }
        .map_err(err)?;
    }
    for layer in [load, runtime] {
        for (name, v) in layer {
            let key = name.to_ascii_lowercase();
            b = match v {
                Value::Int(i) => b.set_override(key, *i),
                Value::Text(t) => b.set_override(key, t.clone()),
            }
            .map_err(err)?;
        }
    }
    b.build().and_then(|c| c.try_deserialize()).map_err(err)
}

impl Default for GearsConfig {
    fn default() -> Self {
        GearsConfig::from_args::<&str>(&[]).expect("the defaults are a valid configuration")
    }
}

impl GearsConfig {
    /// Builds the configuration from load arguments (`key value` pairs).
    ///
    /// Built-in keys match case-insensitively; other keys go to the extra
    /// dictionary. A missing or invalid value is an error naming the key.
    pub fn from_args<S: AsRef<str>>(args: &[S]) -> Result<GearsConfig, ConfigError> {
        let mut load = BTreeMap::new();
        let mut extra = BTreeMap::new();
        let mut it = args.iter().map(|a| a.as_ref());
        while let Some(key) = it.next() {
            let Some(value) = it.next() else {
                return Err(ConfigError(
                    format!("Value was not given to {key}"),
                    ErrorKind::Invalid,
                ));
            };
            match spec_nocase(key) {
                Some(spec) => {
                    let v = parse(spec, value).ok_or_else(|| {
                        ConfigError(
                            format!("Failed setting config value {key}: bad value '{value}'"),
                            ErrorKind::BadValue(spec.owner),
                        )
                    })?;
                    load.insert(spec.name, v);
                }
                None => {
                    extra.insert(key.to_owned(), value.to_owned());
                }
            }
        }
        let settings = merge(&load, &BTreeMap::new())?;
        Ok(GearsConfig {
            load,
            runtime: BTreeMap::new(),
            extra,
            settings,
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The value of a built-in option (exact name) or an extra key.
    pub fn get(&self, key: &str) -> Option<Value> {
        if let Some(spec) = spec_exact(key) {
            return Some(self.builtin(spec));
        }
        self.extra.get(key).map(|v| Value::Text(v.clone()))
    }

    fn builtin(&self, spec: &Spec) -> Value {
        self.runtime
            .get(spec.name)
            .or_else(|| self.load.get(spec.name))
            .cloned()
            .unwrap_or_else(|| parse(spec, spec.default).expect("defaults are valid"))
    }

    /// Applies one `RG.CONFIGSET key value` pair.
    pub fn set(&mut self, key: &str, value: &str) -> Result<SetOutcome, ConfigError> {
        let Some(spec) = spec_nocase(key) else {
            self.extra.insert(key.to_owned(), value.to_owned());
            return Ok(SetOutcome::SavedAsExtra);
        };
        if !spec.runtime {
            let message = match spec.owner {
                Owner::Engine => format!("Config value {key} not modifiable at runtime"),
                Owner::Python => format!("{key} is not configurable at runtime"),
            };
            return Err(ConfigError(message, ErrorKind::NotRuntime));
        }
        let v = parse(spec, value).ok_or_else(|| {
            let message = match spec.owner {
                Owner::Engine => format!("Failed setting config value {key}"),
                Owner::Python => {
                    format!("Failed setting config value for key '{key}' with value '{value}'")
                }
            };
            ConfigError(message, ErrorKind::BadValue(spec.owner))
        })?;
        let mut runtime = self.runtime.clone();
        runtime.insert(spec.name, v);
        self.settings = merge(&self.load, &runtime)?;
        self.runtime = runtime;
        Ok(SetOutcome::Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = GearsConfig::default();
        let s = c.settings();
        assert_eq!(s.maxexecutions, 1000);
        assert_eq!(s.maxexecutionsperregistration, 100);
        assert_eq!(s.profileexecutions, Flag(0));
        assert_eq!(s.executionthreads, 3);
        assert_eq!(s.executionmaxidletime, 5000);
        assert_eq!(s.sendmsgretries, 3);
        assert_eq!(s.pythonattempttraceback, Flag(1));
        assert_eq!(s.pythoninstallreqmaxidletime, 30000);
        assert_eq!(s.createvenv, Flag(0));
        assert_eq!(s.downloaddeps, Flag(0));
        assert_eq!(s.overridepythonallocators, Flag(1));
        assert_eq!(s.pythoninstallationdir, "/var/opt/redislabs/modules/rg");
        assert_eq!(c.get("MaxExecutions"), Some(Value::Int(1000)));
    }

    #[test]
    fn load_args_are_case_insensitive_and_unknown_keys_are_extra() {
        let c = GearsConfig::from_args(&["executionthreads", "1", "MyKey", "MyValue"]).unwrap();
        assert_eq!(c.settings().executionthreads, 1);
        assert_eq!(c.get("ExecutionThreads"), Some(Value::Int(1)));
        assert_eq!(c.get("MyKey"), Some(Value::Text("MyValue".into())));
        // Extra keys keep their case; built-in names are exact for `get`.
        assert_eq!(c.get("mykey"), None);
        assert_eq!(c.get("executionthreads"), None);
    }

    #[test]
    fn bad_load_args_are_rejected() {
        assert_eq!(
            GearsConfig::from_args(&["ExecutionThreads"]).unwrap_err().0,
            "Value was not given to ExecutionThreads"
        );
        assert_eq!(
            GearsConfig::from_args(&["ExecutionThreads", "0"])
                .unwrap_err()
                .0,
            "Failed setting config value ExecutionThreads: bad value '0'"
        );
        assert!(GearsConfig::from_args(&["MaxExecutions", "ten"]).is_err());
        assert!(GearsConfig::from_args(&["SendMsgRetries", "-1"]).is_err());
    }

    #[test]
    fn runtime_changes() {
        let mut c = GearsConfig::from_args(&["MaxExecutions", "50"]).unwrap();
        assert_eq!(c.set("maxexecutions", "7"), Ok(SetOutcome::Ok));
        assert_eq!(c.settings().maxexecutions, 7);
        assert_eq!(c.set("foo", "bar"), Ok(SetOutcome::SavedAsExtra));
        assert_eq!(c.get("foo"), Some(Value::Text("bar".into())));
        assert_eq!(
            c.set("ExecutionThreads", "2").unwrap_err().0,
            "Config value ExecutionThreads not modifiable at runtime"
        );
        assert_eq!(
            c.set("CreateVenv", "1").unwrap_err().0,
            "CreateVenv is not configurable at runtime"
        );
        assert_eq!(
            c.set("MaxExecutions", "x").unwrap_err().0,
            "Failed setting config value MaxExecutions"
        );
        assert_eq!(
            c.set("PythonAttemptTraceback", "x").unwrap_err().0,
            "Failed setting config value for key 'PythonAttemptTraceback' with value 'x'"
        );
        // A rejected change leaves the old value in place.
        assert_eq!(c.settings().maxexecutions, 7);
        assert_eq!(c.set("PythonAttemptTraceback", "0"), Ok(SetOutcome::Ok));
        assert!(!c.settings().pythonattempttraceback.on());
    }

    #[test]
    fn every_option_parses_its_default_and_follows_its_rules() {
        for spec in SPECS {
            let mut c = GearsConfig::default();
            let default = parse(spec, spec.default).expect("default parses");
            assert_eq!(c.get(spec.name), Some(default.clone()), "{}", spec.name);
            // Load arguments accept any case and a valid value.
            let good = match spec.kind {
                Kind::Int { min } => (min + 1).to_string(),
                Kind::Text => "/some/where".to_string(),
            };
            let loaded = GearsConfig::from_args(&[spec.name.to_uppercase(), good.clone()]).unwrap();
            assert_eq!(loaded.get(spec.name), parse(spec, &good), "{}", spec.name);
            if let Kind::Int { min } = spec.kind {
                let low = (min - 1).to_string();
                assert!(
                    GearsConfig::from_args(&[spec.name, &low]).is_err(),
                    "{} below min",
                    spec.name
                );
                assert!(
                    GearsConfig::from_args(&[spec.name, "1x"]).is_err(),
                    "{} not a number",
                    spec.name
                );
            }
            // Runtime changes: accepted for runtime options, refused otherwise.
            let outcome = c.set(spec.name, &good);
            if spec.runtime {
                assert_eq!(outcome, Ok(SetOutcome::Ok), "{}", spec.name);
                assert_eq!(c.get(spec.name), parse(spec, &good), "{}", spec.name);
                if let Kind::Int { min } = spec.kind {
                    assert!(
                        c.set(spec.name, &(min - 1).to_string()).is_err(),
                        "{}",
                        spec.name
                    );
                    assert_eq!(
                        c.get(spec.name),
                        parse(spec, &good),
                        "{} unchanged",
                        spec.name
                    );
                }
            } else {
                let e = outcome.unwrap_err().0;
                assert!(
                    e.contains("not modifiable at runtime")
                        || e.contains("is not configurable at runtime"),
                    "{e}"
                );
                assert_eq!(c.get(spec.name), Some(default), "{} unchanged", spec.name);
            }
        }
    }
}
