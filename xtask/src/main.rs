//! `cargo xtask <command>`: set up the machine, build the module and drive it.
//!
//! - `run [--port N] [--cluster N]`: build (release), start redis-server with
//!   the module on 127.0.0.1 (or a cluster of N masters), print how to
//!   connect; Ctrl-C stops it.
//! - `lint`: the architecture rules: crate dependencies, ARCHITECTURE.md's
//!   layers and module cycles, `unsafe` only where FFI is (see `lint/`).
//! - `test`: lint, build, then formatting, clippy, unit and integration tests.
//! - `bench [--quick] [--module PATH] [--only NAME]`: end-to-end benchmarks
//!   against Redis's Lua in the same run (`--only soak` for the soak).
//! - `fuzz [--calls N] [--seed S]`: random commands and scripts against a
//!   server, which must stay up and answer.
//! - `setup`: install what is missing (redis-server, libclang-dev, Python
//!   packages for the tests).

#![forbid(unsafe_code)]

mod bench;
mod lint;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

type Result<T> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => run(&args[1..]),
        Some("lint") => lint::lint(),
        Some("test") => test(),
        Some("bench") => bench::bench(&args[1..]),
        Some("fuzz") => fuzz(&args[1..]),
        Some("setup") => setup().map(|_| ()),
        _ => {
            eprintln!(
                "usage: cargo xtask <run [--port N] [--cluster N] | lint | test | bench [--quick] [--module PATH] [--only NAME] | fuzz [--calls N] [--seed S] | setup>"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn have(cmd: &str, arg: &str) -> bool {
    Command::new(cmd)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn libclang_present() -> bool {
    [
        "/usr/lib/llvm-14/lib",
        "/usr/lib/llvm-15/lib",
        "/usr/lib/llvm-16/lib",
        "/usr/lib/x86_64-linux-gnu",
    ]
    .iter()
    .any(|d| Path::new(d).join("libclang.so").exists())
        || Path::new("/usr/lib/x86_64-linux-gnu/libclang-14.so").exists()
}

fn sh(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd.status().map_err(|e| format!("{shown}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{shown} failed with {status}"))
    }
}

/// Installs what is missing (Debian packages as root), finds the Python to
/// build against, and returns its executable.
fn setup() -> Result<String> {
    let mut missing = Vec::new();
    if !have("redis-server", "--version") {
        missing.push("redis-server");
    }
    if !libclang_present() {
        missing.push("libclang-dev");
    }
    if !missing.is_empty() {
        if !is_root() {
            return Err(format!(
                "missing system packages: {} (install them with: sudo apt-get install {})",
                missing.join(", "),
                missing.join(" ")
            ));
        }
        eprintln!("xtask: installing {}", missing.join(" "));
        sh(Command::new("apt-get").args(["update", "-q"]))?;
        sh(Command::new("apt-get")
            .args(["install", "-y", "-q"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
    }
    let python = std::env::var("PYO3_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(&python)
        .args(["-c", "import sys, sysconfig; print(sys.executable); print(sysconfig.get_config_var('Py_ENABLE_SHARED'))"])
        .output()
        .map_err(|e| format!("no Python 3 found ({python}): {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines();
    let exe = lines.next().unwrap_or_default().to_owned();
    if lines.next() != Some("1") {
        return Err(format!("{exe} has no shared libpython; set PYO3_PYTHON to a CPython 3.11 built with --enable-shared"));
    }
    python_packages(&exe)?;
    Ok(exe)
}

/// Python packages the module's default environment provides to user code
/// (the 1.2 tutorials import redis-py inside their functions).
///
/// cloudpickle saves registrations' callbacks (RDB, AOF, replicas), as the
/// 1.2 ecosystem (gearsclient) ships pipelines with it.
const PYTHON_PACKAGES: &[(&str, &str)] = &[
    ("redis", "redis>=4,<6"),
    ("cloudpickle", "cloudpickle>=2,<4"),
];

fn python_packages(python: &str) -> Result<()> {
    for (module, spec) in PYTHON_PACKAGES {
        let present = Command::new(python)
            .args(["-c", &format!("import {module}")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !present {
            eprintln!("xtask: installing the Python package {spec}");
            sh(Command::new(python).args(["-m", "pip", "install", "-q", spec]))?;
        }
    }
    Ok(())
}

fn cargo(python: &str) -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root()).env("PYO3_PYTHON", python);
    c
}

/// Builds the module in release mode and returns its path.
fn build_module(python: &str) -> Result<PathBuf> {
    sh(cargo(python).args(["build", "--release", "-p", "gears-module"]))?;
    let path = root().join("target/release/libgears_module.so");
    if !path.exists() {
        return Err(format!("{} was not produced", path.display()));
    }
    Ok(path)
}

fn run(args: &[String]) -> Result<()> {
    let mut port = 6379u16;
    let mut cluster = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--port" => {
                port = it
                    .next()
                    .and_then(|p| p.parse().ok())
                    .ok_or("--port needs a number")?
            }
            "--cluster" => {
                cluster = Some(
                    it.next()
                        .and_then(|n| n.parse::<usize>().ok())
                        .filter(|n| (1..=16).contains(n))
                        .ok_or("--cluster needs a number of masters (1 to 16)")?,
                )
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let python = setup()?;
    let module = build_module(&python)?;
    if let Some(n) = cluster {
        return run_cluster(&module, n);
    }
    println!(
        "Starting redis-server on 127.0.0.1:{port} with {}",
        module.display()
    );
    println!("Connect with:   redis-cli -p {port}");
    println!(
        "Try:            redis-cli -p {port} RG.PYEXECUTE \"GB().map(lambda x: x['key']).run()\""
    );
    println!("Stop with Ctrl-C.");
    let status = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .arg("--loadmodule")
        .arg(&module)
        .status()
        .map_err(|e| format!("could not start redis-server: {e}"))?;
    if status.success() || status.code().is_none() {
        Ok(())
    } else {
        Err(format!("redis-server exited with {status}"))
    }
}

/// `run --cluster N`: N masters on free loopback ports, the slots split
/// evenly, the module on every node; until Ctrl-C.
fn run_cluster(module: &std::path::Path, n: usize) -> Result<()> {
    std::env::set_var("GEARS_MODULE", module);
    let cluster = gears_tests::Cluster::start(n, &[]);
    println!(
        "A {n}-master Redis Cluster with {} on every node:",
        module.display()
    );
    for s in &cluster.nodes {
        println!("  127.0.0.1:{}   (files in {})", s.port, s.dir.display());
    }
    let port = cluster.nodes[0].port;
    println!("Connect with:   redis-cli -c -p {port}");
    println!("Try:            redis-cli -c -p {port} RG.INFOCLUSTER");
    println!("Stop with Ctrl-C.");
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

/// `fuzz [--calls N] [--seed S]`: random calls and hostile Python against
/// a fresh server; fails with the first sign of a broken server.
fn fuzz(args: &[String]) -> Result<()> {
    let mut calls = 5000usize;
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let value = it.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--calls" => calls = value?.parse().map_err(|_| "--calls needs a number")?,
            "--seed" => seed = value?.parse().map_err(|_| "--seed needs a number")?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let python = setup()?;
    let module = build_module(&python)?;
    std::env::set_var("GEARS_MODULE", &module);
    let server = gears_tests::Server::start(&[]);
    println!(
        "fuzz: {calls} calls, seed {seed}, server on port {}",
        server.port
    );
    match gears_tests::fuzz::run(server.port, calls, seed) {
        Ok(report) => {
            println!(
                "fuzz: the server survived {} calls ({} answered with an error)",
                report.calls, report.errors
            );
            Ok(())
        }
        Err(e) => Err(format!("fuzz: {e}\nserver log:\n{}", server.log())),
    }
}

fn test() -> Result<()> {
    lint::lint()?;
    let python = setup()?;
    let module = build_module(&python)?;
    sh(cargo(&python).args(["fmt", "--all", "--", "--check"]))?;
    sh(cargo(&python).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    sh(cargo(&python)
        .args(["test", "--workspace"])
        .env("GEARS_MODULE", &module))?;
    Ok(())
}
