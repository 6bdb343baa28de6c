//! The module links libpython; the rpath makes Redis load the same CPython
//! the module was built against, whatever else the system has.

fn main() {
    if let Some(dir) = &pyo3_build_config::get().lib_dir {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
}
