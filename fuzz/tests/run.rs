//! The stable fuzz driver CI runs: every committed corpus input, then a bounded number of
//! seeded mutations of them. `GALE_FUZZ_RUNS` (mutations per target, default below) and
//! `GALE_FUZZ_SEED` make longer or different runs; a failure prints the seed, the iteration and
//! the input, which is then worth adding to the corpus.

use std::path::{Path, PathBuf};

use gale_fuzz::mutate::{Rng, mutate};

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a corpus entry").path())
        .collect();
    files.sort();
    let inputs: Vec<Vec<u8>> =
        files.iter().map(|p| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).collect();
    assert!(!inputs.is_empty(), "empty corpus {}", dir.display());
    inputs
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Runs `check` over the corpus, then over `default_runs` mutations (seeded).
fn run(target: &str, default_runs: u64, dictionary: &[&[u8]], max_len: usize, check: impl Fn(&[u8])) {
    let inputs = corpus(target);
    for input in &inputs {
        check(input);
    }
    let runs = env_number("GALE_FUZZ_RUNS", default_runs);
    let seed = env_number("GALE_FUZZ_SEED", 0x9a1e);
    let mut rng = Rng::new(seed);
    for i in 0..runs {
        let base = &inputs[rng.below(inputs.len())];
        let other = &inputs[rng.below(inputs.len())];
        let input = mutate(&mut rng, base, other, dictionary, max_len);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&input)));
        if outcome.is_err() {
            panic!(
                "{target}: mutation {i} (GALE_FUZZ_SEED={seed}) failed; input: {:?}",
                String::from_utf8_lossy(&input)
            );
        }
    }
}

#[test]
fn framing_tracker_agrees_with_hyper() {
    let runtime = gale_fuzz::framing::runtime();
    let dictionary: &[&[u8]] = &[
        b"\r\n",
        b"\n",
        b"\r\n\r\n",
        b"Content-Length: 5\r\n",
        b"Content-Length: 0\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"Transfer-Encoding: gzip, chunked\r\n",
        b"Upgrade: websocket\r\n",
        b"Connection: close\r\n",
        b"Expect: 100-continue\r\n",
        b"0\r\n\r\n",
        b"5\r\nhello\r\n",
        b";ext=1",
        b"POST / HTTP/1.1\r\nHost: a\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b" ",
        b"\t",
        b"0",
        b"f",
        b":",
    ];
    run("framing", 3000, dictionary, 2048, |input| gale_fuzz::framing::check(input, &runtime));
}

#[test]
fn multipart_parser_is_chunking_independent_and_bounded() {
    let dictionary: &[&[u8]] = &[
        b"\r\n",
        b"--XbOuNdArY123",
        b"\r\n--XbOuNdArY123\r\n",
        b"\r\n--XbOuNdArY123--\r\n",
        b"Content-Disposition: form-data; name=\"f\"; filename=\"a.txt\"\r\n",
        b"Content-Type: text/plain\r\n",
        b"\r\n\r\n",
        b"-",
    ];
    run("multipart", 3000, dictionary, 4096, gale_fuzz::multipart::check);
}
