//! The streaming multipart parser: random bodies in random chunkings (gale_fuzz::multipart).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| gale_fuzz::multipart::check(input));
