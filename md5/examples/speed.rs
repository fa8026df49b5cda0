//! How fast each md5 runs on this machine: `cargo run --release -p gale-md5 --example speed`.
//!
//! Hashes 1 GiB in 1 MiB updates (the writer threads hash up to 128 KiB at a time; the size
//! changes nothing once it is many blocks) with gale's choice and with `md-5` alone, three times
//! each, alternating, and prints MiB/s. Pin it to a core (`taskset -c 0`) and compare with
//! `md5sum` of a file in memory.

use std::time::Instant;

use gale_md5::Md5;

fn main() {
    let chunk: Vec<u8> = (0..1u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let run = |mut hasher: Md5| {
        let start = Instant::now();
        for _ in 0..1024 {
            hasher.update(&chunk);
        }
        let digest = hasher.finalize();
        (1024.0 / start.elapsed().as_secs_f64(), digest)
    };
    let chosen = if Md5::new().uses_avx512() { "AVX-512" } else { "md-5 (no AVX-512 here)" };
    for _ in 0..3 {
        let (fast, a) = run(Md5::new());
        let (generic, b) = run(Md5::generic());
        assert_eq!(a, b, "the two md5s disagree");
        println!("gale's md5 [{chosen}]: {fast:.0} MiB/s   md-5: {generic:.0} MiB/s");
    }
}
