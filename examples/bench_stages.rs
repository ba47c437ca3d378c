//! Prints the throughput of each hot-path stage on one input, one line per stage:
//! `<stage> <MB/s>` (10^6 bytes per second of thread CPU time, unless the
//! name says `wall`). `scripts/bench-vs-borg.sh` runs this beside borg's own primitives on the
//! same file.
//!
//! Usage: `bench_stages [--file PATH | --kind random|text|zero --mib N] [--reps N]
//!         [--stages a:b:c] [--write PATH] [--window N] [--threads N]`; `--write` only stores the generated input.

use std::time::Instant;

use rborg::chunker::{BuzhashChunker, BuzhashParams, ChunkSource, FixedChunker, SliceCuts};
use rborg::compress::{compress, CompressionSpec};
use rborg::pipeline::{
    bench_data, blake2b_256, hmac_sha256, seal_stream, seal_stream_parallel, ChunkSealer, HotPath,
    ParallelOptions, ReferenceSealer,
};
use sha2::Digest;

const PIECE: usize = 2 << 20;

fn main() {
    let mut args = std::env::args().skip(1);
    let mut file = None;
    let mut kind = "random".to_string();
    let mut mib = 64usize;
    let mut reps = 3usize;
    let mut stages: Option<Vec<String>> = None;
    let mut write = None;
    let mut opts = ParallelOptions::default();
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| usage(&a));
        match a.as_str() {
            "--file" => file = Some(val()),
            "--kind" => kind = val(),
            "--mib" => mib = val().parse().unwrap_or_else(|_| usage("--mib")),
            "--reps" => reps = val().parse().unwrap_or_else(|_| usage("--reps")),
            "--write" => write = Some(val()),
            "--window" => opts.window = val().parse().unwrap_or_else(|_| usage("--window")),
            "--threads" => opts.threads = val().parse().unwrap_or_else(|_| usage("--threads")),
            "--stages" => stages = Some(val().split(':').map(str::to_string).collect()),
            _ => usage(&a),
        }
    }
    let data = match file {
        Some(path) => std::fs::read(&path).unwrap_or_else(|e| {
            eprintln!("cannot read {path}: {e}");
            std::process::exit(2)
        }),
        None => match kind.as_str() {
            "random" => bench_data::random(mib << 20, 1),
            "text" => bench_data::text(mib << 20, 1),
            "zero" => bench_data::zeros(mib << 20),
            _ => usage("--kind"),
        },
    };
    if let Some(path) = write {
        std::fs::write(&path, &data).unwrap_or_else(|e| {
            eprintln!("cannot write {path}: {e}");
            std::process::exit(2)
        });
        return;
    }
    let want = |s: &str| stages.as_ref().map_or(true, |v| v.iter().any(|x| x == s));
    let repokey = ReferenceSealer::repokey([1; 32], [2; 32], [3; 32]);
    let blake = ReferenceSealer::repokey_blake2([1; 32], [2; 128], [3; 128]);
    let key = [7u8; 32];
    let run = |name: &str, f: &mut dyn FnMut()| {
        if !want(name) {
            return;
        }
        // Single-thread stages are timed in thread CPU time, which other processes on a shared
        // machine disturb far less than wall time.
        let mut best = f64::MAX;
        for _ in 0..reps.max(1) {
            let c = thread_cpu();
            f();
            best = best.min(thread_cpu() - c);
        }
        println!("{name} {:.1}", data.len() as f64 / best / 1e6);
    };
    run("buzhash", &mut || {
        let mut c = BuzhashChunker::new(&data[..], 0, BuzhashParams::DEFAULT).unwrap();
        while c.read_chunk().unwrap().is_some() {}
    });
    run("buzhash-slice", &mut || {
        let cuts = SliceCuts::new(&data, 0, BuzhashParams::DEFAULT).unwrap();
        std::hint::black_box(cuts.count());
    });
    run("fixed", &mut || {
        let mut c = FixedChunker::new(&data[..], 1 << 20, 0).unwrap();
        while c.read_chunk().unwrap().is_some() {}
    });
    run("sha256", &mut || {
        for p in data.chunks(PIECE) {
            std::hint::black_box(sha2::Sha256::digest(p));
        }
    });
    run("hmac-sha256", &mut || {
        for p in data.chunks(PIECE) {
            std::hint::black_box(hmac_sha256(&key, p));
        }
    });
    run("blake2b-256", &mut || {
        for p in data.chunks(PIECE) {
            std::hint::black_box(blake2b_256(&key, p));
        }
    });
    run("aes-ctr-hmac", &mut || {
        for (i, p) in data.chunks(PIECE).enumerate() {
            std::hint::black_box(repokey.seal(p, i as u64 * 1_000_000));
        }
    });
    run("aes-ctr-blake2b", &mut || {
        for (i, p) in data.chunks(PIECE).enumerate() {
            std::hint::black_box(blake.seal(p, i as u64 * 1_000_000));
        }
    });
    for spec in [
        "lz4",
        "zstd,1",
        "zstd,3",
        "zstd,10",
        "zlib,6",
        "lzma,0",
        "auto,zstd,3",
    ] {
        let c: CompressionSpec = spec.parse().unwrap();
        run(spec, &mut || {
            for p in data.chunks(PIECE) {
                std::hint::black_box(compress(&c, p).unwrap());
            }
        });
    }
    // The whole path, single-thread and on all cores, measured back to back in each rep so
    // both see the same machine load. Prints the single-thread rate in CPU time and both wall
    // rates, the wall speedup, and the all-cores run's CPU time per byte relative to the
    // single-thread run (parallel overhead).
    for (label, sealer) in [("repokey", &repokey), ("blake2", &blake)] {
        for spec in ["lz4", "auto,zstd,3"] {
            let name = format!("hotpath-{label}-{spec}");
            if !want(&name) {
                continue;
            }
            let c: CompressionSpec = spec.parse().unwrap();
            let hot = HotPath {
                sealer,
                compression: &c,
                is_known: &|_: &[u8; 32]| false,
            };
            let (mut cpu1, mut wall1, mut wallm, mut cpum) =
                (f64::MAX, f64::MAX, f64::MAX, f64::MAX);
            for _ in 0..reps.max(1) {
                let (t, c0) = (Instant::now(), thread_cpu());
                let mut ch = BuzhashChunker::new(&data[..], 0, BuzhashParams::DEFAULT).unwrap();
                let mut iv = 0;
                seal_stream(&hot, &mut ch, &mut iv, |c| {
                    std::hint::black_box(c);
                    Ok(())
                })
                .unwrap();
                wall1 = wall1.min(t.elapsed().as_secs_f64());
                cpu1 = cpu1.min(thread_cpu() - c0);
                let (t, p0) = (Instant::now(), process_cpu());
                let ch = BuzhashChunker::new(&data[..], 0, BuzhashParams::DEFAULT).unwrap();
                let mut iv = 0;
                seal_stream_parallel(&hot, ch, &mut iv, opts, |c| {
                    std::hint::black_box(c);
                    Ok(())
                })
                .unwrap();
                wallm = wallm.min(t.elapsed().as_secs_f64());
                cpum = cpum.min(process_cpu() - p0);
            }
            let mb = |secs: f64| data.len() as f64 / secs / 1e6;
            println!("{name}-1t {:.1}", mb(cpu1));
            println!("{name}-1t-wall {:.1}", mb(wall1));
            println!("{name}-mt-wall {:.1}", mb(wallm));
            println!("{name}-mt-speedup {:.2}", wall1 / wallm);
            println!("{name}-mt-cpu-overhead {:.2}", cpum / cpu1);
        }
    }
}

fn process_cpu() -> f64 {
    cpu_clock(libc::CLOCK_PROCESS_CPUTIME_ID)
}

fn thread_cpu() -> f64 {
    cpu_clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

fn cpu_clock(clock: libc::clockid_t) -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn usage(what: &str) -> ! {
    eprintln!(
        "bad argument {what}\nusage: bench_stages [--file PATH | --kind random|text|zero --mib N] [--reps N] [--stages a:b] [--write PATH] [--window N] [--threads N]"
    );
    std::process::exit(2)
}
