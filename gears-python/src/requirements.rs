//! REQUIREMENTS: the Python packages sessions need.
//!
//! pip downloads (or builds) a requirement's wheels, its dependencies'
//! included, into a directory of its own, then installs them from there
//! (`--no-index`) into the module's environment, a directory first on
//! `sys.path`. The wheels are kept: they travel in the RDB, to replicas and
//! through RG.PYEXPORTREQ / RG.PYIMPORTREQ, so a restart, a replica or an
//! offline server installs the same files again without the network.
//!
//! Nothing here touches Redis. pip runs as a child process, on whatever
//! thread calls [`Requirements::install`]: never the Redis main thread for
//! a download, and never with the GIL held.

use crate::errors::Error;
use gears_core::codec::{Decoder, Encoder};
use gears_core::sync::LockExt;
use pyo3::prelude::*;
use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};

/// The version of [`Requirements::encode`]'s layout (RG.PYDUMPREQS shows it
/// as `GearReqVersion`).
pub const FORMAT_VERSION: u64 = 1;

/// Where the packages go, and the interpreter whose pip installs them.
pub struct Environment {
    python: PathBuf,
    root: PathBuf,
    site: PathBuf,
}

impl Environment {
    /// The environment under `install_dir`: a virtualenv named after `tag`
    /// with `venv`, a plain `python3_<version>` directory otherwise.
    /// Creates what is missing.
    pub fn new(install_dir: &Path, venv: bool, tag: &str) -> Result<Environment, Error> {
        let python = PathBuf::from(env!("GEARS_PYTHON_EXE"));
        let version = env!("GEARS_PYTHON_VERSION");
        // Relative to the server's directory, as its other files.
        std::fs::create_dir_all(install_dir)
            .map_err(|e| req(format!("could not create {}: {e}", install_dir.display())))?;
        let install_dir = &install_dir
            .canonicalize()
            .map_err(|e| req(format!("{}: {e}", install_dir.display())))?;
        let (root, site) = if venv {
            let root = install_dir.join(format!(".venv-{tag}"));
            let site = root
                .join("lib")
                .join(format!("python{version}"))
                .join("site-packages");
            (root, site)
        } else {
            let root = install_dir.join(format!("python{version}"));
            let site = root.join("site-packages");
            (root, site)
        };
        if venv && !root.join("pyvenv.cfg").exists() {
            let out = Command::new(&python)
                .args(["-m", "venv", "--without-pip", "--system-site-packages"])
                .arg(&root)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| req(format!("could not run {}: {e}", python.display())))?;
            if !out.status.success() {
                return Err(req(format!(
                    "could not create the virtualenv {}: {}",
                    root.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
        }
        std::fs::create_dir_all(&site)
            .and_then(|_| std::fs::create_dir_all(root.join("wheels")))
            .map_err(|e| req(format!("could not create {}: {e}", root.display())))?;
        Ok(Environment { python, root, site })
    }

    /// Puts the environment first on `sys.path` (takes the GIL).
    pub fn activate(&self) -> Result<(), Error> {
        Python::with_gil(|py| -> PyResult<()> {
            let path = py.import("sys")?.getattr("path")?;
            let site = self.site.to_string_lossy().into_owned();
            if !path.contains(&site)? {
                path.call_method1("insert", (0, site))?;
            }
            Ok(())
        })
        .map_err(|e| req(format!("could not add the environment to sys.path: {e}")))
    }

    pub fn site(&self) -> &Path {
        &self.site
    }

    /// Runs pip with `args`; its output goes to the error on failure.
    fn pip(&self, args: &[&str], extra: &[PathBuf]) -> Result<(), Error> {
        let out = Command::new(&self.python)
            .args(["-m", "pip", "--disable-pip-version-check", "--no-input"])
            .args(args)
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| req(format!("could not run pip: {e}")))?;
        if out.status.success() {
            return Ok(());
        }
        let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
        if text.trim().is_empty() {
            text = String::from_utf8_lossy(&out.stdout).into_owned();
        }
        Err(req(text.trim()))
    }

    /// A new, empty directory for the wheels of `name`.
    fn wheel_dir(&self, name: &str) -> Result<PathBuf, Error> {
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .take(64)
            .collect();
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write(name.as_bytes());
        let dir = self
            .root
            .join("wheels")
            .join(format!("{safe}_{:010x}", h.finish() & 0xff_ffff_ffff));
        std::fs::create_dir_all(&dir)
            .map_err(|e| req(format!("could not create {}: {e}", dir.display())))?;
        Ok(dir)
    }

    /// Installs every wheel of `dir`, offline, over what was there.
    fn install_wheels(&self, dir: &Path, wheels: &[String]) -> Result<(), Error> {
        if wheels.is_empty() {
            return Ok(());
        }
        let site = self.site.to_string_lossy().into_owned();
        let files: Vec<PathBuf> = wheels.iter().map(|w| dir.join(w)).collect();
        self.pip(
            &[
                "install",
                "-q",
                "--no-index",
                "--no-deps",
                "--upgrade",
                "--target",
                &site,
            ],
            &files,
        )
    }
}

/// A requirement as RG.PYDUMPREQS shows it.
#[derive(Debug, Clone)]
pub struct Requirement {
    /// As the script gave it (a pip specifier: `name`, `name==1.0`...).
    pub name: String,
    /// The directory of its wheels.
    pub dir: PathBuf,
    /// The wheel files, dependencies included.
    pub wheels: Vec<String>,
    pub installed: bool,
}

/// Why a requirement could not be installed (details go to the log).
#[derive(Debug)]
pub struct InstallError {
    pub requirement: String,
    pub detail: String,
}

/// Every requirement of this server.
pub struct Requirements {
    env: Environment,
    all: Mutex<BTreeMap<String, Arc<Requirement>>>,
    /// One pip at a time.
    installing: Mutex<()>,
}

/// What a wheel file may be called: no directories, no hidden files.
fn valid_wheel_name(name: &str) -> bool {
    name.ends_with(".whl")
        && !name.starts_with('.')
        && !name.contains(['/', '\\', '\0'])
        && name.len() < 256
}

impl Requirements {
    pub fn new(env: Environment) -> Requirements {
        Requirements {
            env,
            all: Mutex::new(BTreeMap::new()),
            installing: Mutex::new(()),
        }
    }

    pub fn environment(&self) -> &Environment {
        &self.env
    }

    fn all(&self) -> MutexGuard<'_, BTreeMap<String, Arc<Requirement>>> {
        self.all.lock_unpoisoned()
    }

    /// Every requirement, by name.
    pub fn list(&self) -> Vec<Arc<Requirement>> {
        self.all().values().cloned().collect()
    }

    pub fn get(&self, name: &str) -> Option<Arc<Requirement>> {
        self.all().get(name).cloned()
    }

    /// Those of `names` that need pip: not installed yet, or all of them
    /// with `force`.
    pub fn to_install(&self, names: &[String], force: bool) -> Vec<String> {
        let all = self.all();
        let mut out: Vec<String> = names
            .iter()
            .filter(|n| force || !all.get(*n).is_some_and(|r| r.installed))
            .cloned()
            .collect();
        out.dedup();
        out
    }

    /// Downloads and installs `names` (network). Slow: call it from a
    /// background thread, without the Redis lock or the GIL.
    pub fn install(&self, names: &[String]) -> Result<(), InstallError> {
        let _one = self.installing.lock_unpoisoned();
        for name in names {
            let fail = |detail: Error| InstallError {
                requirement: name.clone(),
                detail: detail.to_string(),
            };
            let dir = self.env.wheel_dir(name).map_err(fail)?;
            let dir_arg = dir.to_string_lossy().into_owned();
            let mut last = Ok(());
            // pip retries connections itself; a second run covers the rest.
            for _ in 0..2 {
                last = self
                    .env
                    .pip(&["wheel", "-q", "--wheel-dir", &dir_arg, name], &[]);
                if last.is_ok() {
                    break;
                }
            }
            if let Err(e) = last {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(fail(e));
            }
            let wheels = wheels_in(&dir).map_err(fail)?;
            self.env.install_wheels(&dir, &wheels).map_err(fail)?;
            self.add(Requirement {
                name: name.clone(),
                dir,
                wheels,
                installed: true,
            });
        }
        invalidate_import_caches();
        Ok(())
    }

    fn add(&self, r: Requirement) {
        let old = self.all().insert(r.name.clone(), Arc::new(r));
        if let Some(old) = old {
            // The files of a replaced requirement go with it.
            let _ = std::fs::remove_dir_all(&old.dir);
        }
    }

    /// Every requirement with its wheels, for the RDB.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        let all = self.list();
        let mut w = Encoder::default();
        w.u64(FORMAT_VERSION);
        w.u64(all.len() as u64);
        for r in &all {
            write_requirement(&mut w, r)?;
        }
        Ok(w.0)
    }

    /// One requirement with its wheels (RG.PYEXPORTREQ, replication).
    pub fn export(&self, name: &str) -> Option<Result<Vec<u8>, Error>> {
        let r = self.get(name)?;
        let mut w = Encoder::default();
        w.u64(FORMAT_VERSION);
        w.u64(1);
        Some(write_requirement(&mut w, &r).map(|_| w.0))
    }

    /// Installs what [`Requirements::encode`] or [`Requirements::export`]
    /// wrote, offline. Without `replace`, a requirement already installed
    /// is an error. Returns the names installed.
    pub fn import(&self, bytes: &[u8], replace: bool) -> Result<Vec<String>, Error> {
        let decoded = decode(bytes)?;
        let _one = self.installing.lock_unpoisoned();
        if !replace {
            if let Some((name, _)) = decoded
                .iter()
                .find(|(n, _)| self.get(n).is_some_and(|r| r.installed))
            {
                return Err(req(format!("requirement {name} already exists")));
            }
        }
        let mut names = Vec::new();
        for (name, wheels) in decoded {
            let dir = self.env.wheel_dir(&name)?;
            let mut files = Vec::new();
            for (file, data) in wheels {
                std::fs::write(dir.join(&file), data)
                    .map_err(|e| req(format!("could not write {file}: {e}")))?;
                files.push(file);
            }
            if let Err(e) = self.env.install_wheels(&dir, &files) {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(req(format!("could not install {name}: {e}")));
            }
            self.add(Requirement {
                name: name.clone(),
                dir,
                wheels: files,
                installed: true,
            });
            names.push(name);
        }
        invalidate_import_caches();
        Ok(names)
    }
}

/// Lets `import` see packages installed after the interpreter started.
fn invalidate_import_caches() {
    Python::with_gil(|py| {
        if let Ok(importlib) = py.import("importlib") {
            let _ = importlib.call_method0("invalidate_caches");
        }
    });
}

fn wheels_in(dir: &Path) -> Result<Vec<String>, Error> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| req(format!("could not read {}: {e}", dir.display())))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| valid_wheel_name(n))
        .collect();
    out.sort();
    Ok(out)
}

fn write_requirement(w: &mut Encoder, r: &Requirement) -> Result<(), Error> {
    w.bytes(r.name.as_bytes());
    w.u64(r.wheels.len() as u64);
    for file in &r.wheels {
        let data = std::fs::read(r.dir.join(file))
            .map_err(|e| req(format!("could not read the wheel {file}: {e}")))?;
        w.bytes(file.as_bytes());
        w.bytes(&data);
    }
    Ok(())
}

/// 1.2's text for data that is not a serialized requirement.
fn bad(what: &str) -> Error {
    req(format!("Bad serialization format on reading {what}"))
}

/// An error of the requirements' job.
fn req(text: impl Into<String>) -> Error {
    Error::Requirements(text.into())
}

type Decoded = Vec<(String, Vec<(String, Vec<u8>)>)>;

fn decode(bytes: &[u8]) -> Result<Decoded, Error> {
    let mut r = Decoder(bytes);
    if r.u64().ok_or_else(|| bad("version"))? != FORMAT_VERSION {
        return Err(bad("version"));
    }
    let n = r.u64().ok_or_else(|| bad("requirements count"))?;
    let mut out = Vec::new();
    for _ in 0..n {
        let name = r.text().ok_or_else(|| bad("requirement name"))?;
        if name.is_empty() {
            return Err(bad("requirement name"));
        }
        let wheels = r.u64().ok_or_else(|| bad("wheels count"))?;
        let mut files = Vec::new();
        for _ in 0..wheels {
            let file = r.text().ok_or_else(|| bad("wheel name"))?;
            if !valid_wheel_name(&file) {
                return Err(bad("wheel name"));
            }
            let data = r.bytes().ok_or_else(|| bad("wheel data"))?.to_vec();
            files.push((file, data));
        }
        out.push((name, files));
    }
    if !r.rest().is_empty() {
        return Err(bad("trailing data"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_and_hostile_wheel_names_are_refused() {
        assert_eq!(decode(b"xx").unwrap_err(), bad("version"));
        let mut w = Encoder::default();
        w.u64(FORMAT_VERSION);
        w.u64(1);
        w.bytes(b"pkg");
        w.u64(1);
        w.bytes(b"../../etc/evil.whl");
        w.bytes(b"data");
        assert_eq!(decode(&w.0).unwrap_err(), bad("wheel name"));
        let mut w = Encoder::default();
        w.u64(FORMAT_VERSION);
        w.u64(u64::MAX);
        assert_eq!(decode(&w.0).unwrap_err(), bad("requirement name"));
        let mut w = Encoder::default();
        w.u64(FORMAT_VERSION);
        w.u64(1);
        w.bytes(b"pkg");
        w.u64(1);
        w.bytes(b"pkg-1.0-py3-none-any.whl");
        w.u64(u64::MAX);
        assert_eq!(decode(&w.0).unwrap_err(), bad("wheel data"));
    }

    #[test]
    fn a_requirement_round_trips() {
        let mut w = Encoder::default();
        w.u64(FORMAT_VERSION);
        w.u64(1);
        w.bytes(b"pkg==1.0");
        w.u64(1);
        w.bytes(b"pkg-1.0-py3-none-any.whl");
        w.bytes(b"\x00zip");
        let d = decode(&w.0).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].0, "pkg==1.0");
        assert_eq!(d[0].1[0].0, "pkg-1.0-py3-none-any.whl");
        assert_eq!(d[0].1[0].1, b"\x00zip");
    }
}
