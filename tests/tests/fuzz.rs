//! A short fuzz run (`cargo xtask fuzz --calls N` runs a long one).

use gears_tests::{fuzz, Server};

#[test]
fn the_server_survives_random_calls_and_hostile_python() {
    let s = Server::start(&[]);
    let seed = std::env::var("GEARS_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    match fuzz::run(s.port, 400, seed) {
        Ok(report) => {
            eprintln!("fuzz: seed {seed}: {report:?}");
            assert_eq!(report.calls, 400);
        }
        Err(e) => {
            if std::env::var_os("GEARS_FUZZ_HOLD").is_some() {
                eprintln!("{e}\nholding server on port {} (pid in its dir)", s.port);
                // Keeps the failed server up for someone to inspect (asked
                // for with GEARS_FUZZ_HOLD): a fixed wait on purpose.
                std::thread::sleep(std::time::Duration::from_secs(600));
            }
            panic!("{e}\nserver log:\n{}", s.log())
        }
    }
}
