//! How long a configuration file takes to load (read, parse, validate, compile), as the
//! server's reload does it, with the binary's allocator:
//!
//! `cargo run --release -p trunkline-config --example loadtime -- FILE [RUNS]`

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: loadtime FILE [RUNS]");
        std::process::exit(2);
    };
    let runs: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(10);
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t0 = std::time::Instant::now();
        match config::load_file(std::path::Path::new(&path)) {
            Ok(c) => {
                times.push(t0.elapsed());
                eprintln!(
                    "loaded {} rules in {:.1} ms",
                    c.dialplan.len(),
                    t0.elapsed().as_secs_f64() * 1e3
                );
            }
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(1);
            }
        }
    }
    times.sort();
    if let Some(m) = times.get(times.len() / 2) {
        eprintln!("median {:.1} ms over {runs} runs", m.as_secs_f64() * 1e3);
    }
}
