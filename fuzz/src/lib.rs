//! The checks gale's fuzz targets run, one function per parser, each panicking when an
//! invariant breaks. Two drivers call them: `cargo test -p gale-fuzz` (stable: the committed
//! corpus plus a bounded, seeded run of mutated inputs; what CI runs) and the cargo-fuzz targets
//! in `libfuzzer/` (nightly, coverage-guided, for long runs). See docs/fuzzing.md.

pub mod framing;
pub mod multipart;
pub mod mutate;
