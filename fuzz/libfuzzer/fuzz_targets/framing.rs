//! The framing tracker against hyper's parser on the same bytes (gale_fuzz::framing).
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(gale_fuzz::framing::runtime);

fuzz_target!(|input: &[u8]| gale_fuzz::framing::check(input, &RUNTIME));
