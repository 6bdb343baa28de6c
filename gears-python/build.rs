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
        .args(["-c", "import sys; print(sys.base_prefix)"])
        .output()
        .expect("run the Python interpreter selected by pyo3");
    let prefix = String::from_utf8(out.stdout).expect("utf-8 prefix");
    println!("cargo:rustc-env=GEARS_PYTHON_HOME={}", prefix.trim());
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
}
