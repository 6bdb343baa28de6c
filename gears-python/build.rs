//! Links against the CPython that pyo3 selected (PYO3_PYTHON or `python3`),
//! with an rpath so that the test binaries load that same libpython, and
//! records its prefix so the embedded interpreter finds the matching stdlib.

fn main() {
    let cfg = pyo3_build_config::get();
    if let Some(dir) = &cfg.lib_dir {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
    let exe = cfg.executable.clone().unwrap_or_else(|| "python3".into());
    let out = std::process::Command::new(&exe)
        .args([
            "-c",
            "import sys; print(sys.base_prefix); print(sys.executable); print('%d.%d' % sys.version_info[:2])",
        ])
        .output()
        .expect("run the Python interpreter selected by pyo3");
    let text = String::from_utf8(out.stdout).expect("utf-8 output");
    let mut lines = text.lines();
    let mut next = || lines.next().unwrap_or_default().trim().to_string();
    println!("cargo:rustc-env=GEARS_PYTHON_HOME={}", next());
    // The interpreter whose pip installs REQUIREMENTS (the same CPython).
    println!("cargo:rustc-env=GEARS_PYTHON_EXE={}", next());
    println!("cargo:rustc-env=GEARS_PYTHON_VERSION={}", next());
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
}
