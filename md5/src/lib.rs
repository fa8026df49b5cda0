//! The md5 of gale's stored uploads: the heaviest work of an upload (two thirds of its CPU, see
//! docs/uploads.md, "Where the work runs").
//!
//! A crate of its own so that it is optimised in debug builds too (root Cargo.toml): the tests
//! run the debug gale, and the compression function's intrinsics are calls at `opt-level = 0`
//! (10 MiB/s instead of 900).
//!
//! Why gale has a compression function of its own: MD5 is one chain of 64 dependent steps per
//! 64-byte block, so its speed is the length of that chain, not the instruction count. The `md-5`
//! crate's fastest code (its `asm` feature) is scalar x86-64, where a step's boolean function
//! takes two or three dependent instructions before the add, the rotate and the final add. With
//! AVX-512 (`avx512f` + `avx512vl`), `vpternlogd` computes any of the four boolean functions of
//! three registers in one instruction and `vprold` rotates, so every step is four dependent
//! one-cycle instructions. The state lives in lane 0 of four `xmm` registers (the other lanes
//! are unused); 128-bit EVEX instructions do not lower the core's clock as 512-bit ones can.
//! Measured on one core here (2026-11-30, 1 GiB in 1 MiB updates): md-5 with `asm` 756 MiB/s,
//! this 900 MiB/s.
//!
//! Only the compression function is ours. Buffering, padding and the length block are
//! RustCrypto's own (`digest`'s `CoreWrapper` and `block-buffer`, used as `md-5` uses them), and a
//! CPU without AVX-512 gets `md-5` itself. The tests compare the two on every length up to three
//! blocks, on split updates and on the RFC 1321 vectors.

#[cfg(target_arch = "x86_64")]
use digest::{FixedOutput as _, Update as _, core_api::CoreWrapper};
use md5::Digest as _;

/// An md5 hasher that uses AVX-512 where the CPU has it (chosen per hasher: the detection is a
/// cached load).
pub struct Md5(Hasher);

enum Hasher {
    #[cfg(target_arch = "x86_64")]
    Avx512(CoreWrapper<avx512::Core>),
    Generic(md5::Md5),
}

impl Default for Md5 {
    fn default() -> Self {
        Md5::new()
    }
}

impl Md5 {
    /// A hasher for the fastest code this CPU runs.
    pub fn new() -> Self {
        #[cfg(target_arch = "x86_64")]
        if let Some(core) = avx512::Core::detect() {
            return Md5(Hasher::Avx512(CoreWrapper::from_core(core)));
        }
        Md5::generic()
    }

    /// The `md-5` crate's hasher, whatever the CPU.
    pub fn generic() -> Self {
        Md5(Hasher::Generic(md5::Md5::new()))
    }

    /// Whether this hasher runs gale's AVX-512 compression function.
    pub fn uses_avx512(&self) -> bool {
        match self.0 {
            #[cfg(target_arch = "x86_64")]
            Hasher::Avx512(_) => true,
            Hasher::Generic(_) => false,
        }
    }

    /// Hashes `data` after everything given before; partial blocks wait in the buffer.
    pub fn update(&mut self, data: &[u8]) {
        match &mut self.0 {
            #[cfg(target_arch = "x86_64")]
            Hasher::Avx512(h) => h.update(data),
            Hasher::Generic(h) => md5::Digest::update(h, data),
        }
    }

    /// The 16-byte digest.
    pub fn finalize(self) -> [u8; 16] {
        match self.0 {
            #[cfg(target_arch = "x86_64")]
            Hasher::Avx512(h) => h.finalize_fixed().into(),
            Hasher::Generic(h) => h.finalize().into(),
        }
    }
}

/// The MD5 block state around the AVX-512 compression function, in the shape `digest` wraps (as
/// `md-5`'s own `Md5Core`): the four state words and the number of blocks seen.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::{__m128i, _mm_add_epi32, _mm_cvtsi32_si128, _mm_cvtsi128_si32};
    use std::arch::x86_64::{_mm_rol_epi32, _mm_ternarylogic_epi32};

    use digest::core_api::{Block, BlockSizeUser, Buffer, BufferKindUser, FixedOutputCore, UpdateCore};
    use digest::typenum::{U16, U64, Unsigned};
    use digest::{HashMarker, Output, OutputSizeUser};

    const INIT: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];

    /// Made only by [`Core::detect`] (the fields are private): holding one means the CPU has the
    /// instructions `compress` needs.
    pub struct Core {
        state: [u32; 4],
        blocks: u64,
    }

    impl Core {
        pub fn detect() -> Option<Core> {
            let present =
                std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512vl");
            present.then_some(Core { state: INIT, blocks: 0 })
        }

        fn compress(&mut self, blocks: &[Block<Self>]) {
            #[allow(unsafe_code)]
            // SAFETY: `compress` only needs avx512f and avx512vl, and a `Core` is only made by
            // `detect`, after the CPU said it has both.
            unsafe {
                compress(&mut self.state, blocks);
            }
        }
    }

    impl HashMarker for Core {}

    impl BlockSizeUser for Core {
        type BlockSize = U64;
    }

    impl BufferKindUser for Core {
        type BufferKind = digest::block_buffer::Eager;
    }

    impl OutputSizeUser for Core {
        type OutputSize = U16;
    }

    impl UpdateCore for Core {
        fn update_blocks(&mut self, blocks: &[Block<Self>]) {
            self.blocks = self.blocks.wrapping_add(blocks.len() as u64);
            self.compress(blocks);
        }
    }

    impl FixedOutputCore for Core {
        fn finalize_fixed_core(&mut self, buffer: &mut Buffer<Self>, out: &mut Output<Self>) {
            let bits = self.blocks.wrapping_mul(U64::U64).wrapping_add(buffer.get_pos() as u64).wrapping_mul(8);
            buffer.len64_padding_le(bits, |block| self.compress(std::slice::from_ref(block)));
            for (bytes, word) in out.chunks_exact_mut(4).zip(self.state) {
                bytes.copy_from_slice(&word.to_le_bytes());
            }
        }
    }

    /// The sine-derived constants of RFC 1321, one per step.
    const K: [u32; 64] = [
        0xd76a_a478,
        0xe8c7_b756,
        0x2420_70db,
        0xc1bd_ceee,
        0xf57c_0faf,
        0x4787_c62a,
        0xa830_4613,
        0xfd46_9501,
        0x6980_98d8,
        0x8b44_f7af,
        0xffff_5bb1,
        0x895c_d7be,
        0x6b90_1122,
        0xfd98_7193,
        0xa679_438e,
        0x49b4_0821,
        0xf61e_2562,
        0xc040_b340,
        0x265e_5a51,
        0xe9b6_c7aa,
        0xd62f_105d,
        0x0244_1453,
        0xd8a1_e681,
        0xe7d3_fbc8,
        0x21e1_cde6,
        0xc337_07d6,
        0xf4d5_0d87,
        0x455a_14ed,
        0xa9e3_e905,
        0xfcef_a3f8,
        0x676f_02d9,
        0x8d2a_4c8a,
        0xfffa_3942,
        0x8771_f681,
        0x6d9d_6122,
        0xfde5_380c,
        0xa4be_ea44,
        0x4bde_cfa9,
        0xf6bb_4b60,
        0xbebf_bc70,
        0x289b_7ec6,
        0xeaa1_27fa,
        0xd4ef_3085,
        0x0488_1d05,
        0xd9d4_d039,
        0xe6db_99e5,
        0x1fa2_7cf8,
        0xc4ac_5665,
        0xf429_2244,
        0x432a_ff97,
        0xab94_23a7,
        0xfc93_a039,
        0x655b_59c3,
        0x8f0c_cc92,
        0xffef_f47d,
        0x8584_5dd1,
        0x6fa8_7e4f,
        0xfe2c_e6e0,
        0xa301_4314,
        0x4e08_11a1,
        0xf753_7e82,
        0xbd3a_f235,
        0x2ad7_d2bb,
        0xeb86_d391,
    ];

    // The four boolean functions as `vpternlogd` truth tables over (x, y, z) = (0xf0, 0xcc, 0xaa):
    // F = (x & y) | (!x & z), G = (x & z) | (y & !z), H = x ^ y ^ z, I = y ^ (x | !z).
    const F: i32 = 0xca;
    const G: i32 = 0xe4;
    const H: i32 = 0x96;
    const I: i32 = 0x39;

    /// One step: `a = b + ((a + f(b, c, d) + M[g] + K[i]) <<< s)`. `M[g] + K[i]` does not depend
    /// on the chain and is added first, so the chain is ternlog, add, rotate, add.
    macro_rules! step {
        ($f:ident, $a:ident, $b:ident, $c:ident, $d:ident, $mk:expr, $s:literal) => {
            $a = _mm_add_epi32($a, $mk);
            $a = _mm_add_epi32($a, _mm_ternarylogic_epi32::<$f>($b, $c, $d));
            $a = _mm_add_epi32(_mm_rol_epi32::<$s>($a), $b);
        };
    }

    /// Four steps of one round, with the message word index and shift of each.
    macro_rules! four {
        ($f:ident, $a:ident, $b:ident, $c:ident, $d:ident, $mk:ident, $i:literal,
         [$g0:literal, $g1:literal, $g2:literal, $g3:literal], [$s0:literal, $s1:literal, $s2:literal, $s3:literal]) => {
            step!($f, $a, $b, $c, $d, $mk($i, $g0), $s0);
            step!($f, $d, $a, $b, $c, $mk($i + 1, $g1), $s1);
            step!($f, $c, $d, $a, $b, $mk($i + 2, $g2), $s2);
            step!($f, $b, $c, $d, $a, $mk($i + 3, $g3), $s3);
        };
    }

    #[target_feature(enable = "avx512f,avx512vl")]
    fn lane(word: u32) -> __m128i {
        _mm_cvtsi32_si128(i32::from_ne_bytes(word.to_ne_bytes()))
    }

    #[target_feature(enable = "avx512f,avx512vl")]
    fn word(lane: __m128i) -> u32 {
        u32::from_ne_bytes(_mm_cvtsi128_si32(lane).to_ne_bytes())
    }

    /// The MD5 compression function over whole blocks.
    #[target_feature(enable = "avx512f,avx512vl")]
    fn compress(state: &mut [u32; 4], blocks: &[Block<Core>]) {
        let [mut a, mut b, mut c, mut d] = [lane(state[0]), lane(state[1]), lane(state[2]), lane(state[3])];
        for block in blocks {
            let m: [u32; 16] = std::array::from_fn(|i| {
                u32::from_le_bytes([block[4 * i], block[4 * i + 1], block[4 * i + 2], block[4 * i + 3]])
            });
            let mk = |i: usize, g: usize| lane(m[g].wrapping_add(K[i]));
            let (a0, b0, c0, d0) = (a, b, c, d);
            four!(F, a, b, c, d, mk, 0, [0, 1, 2, 3], [7, 12, 17, 22]);
            four!(F, a, b, c, d, mk, 4, [4, 5, 6, 7], [7, 12, 17, 22]);
            four!(F, a, b, c, d, mk, 8, [8, 9, 10, 11], [7, 12, 17, 22]);
            four!(F, a, b, c, d, mk, 12, [12, 13, 14, 15], [7, 12, 17, 22]);
            four!(G, a, b, c, d, mk, 16, [1, 6, 11, 0], [5, 9, 14, 20]);
            four!(G, a, b, c, d, mk, 20, [5, 10, 15, 4], [5, 9, 14, 20]);
            four!(G, a, b, c, d, mk, 24, [9, 14, 3, 8], [5, 9, 14, 20]);
            four!(G, a, b, c, d, mk, 28, [13, 2, 7, 12], [5, 9, 14, 20]);
            four!(H, a, b, c, d, mk, 32, [5, 8, 11, 14], [4, 11, 16, 23]);
            four!(H, a, b, c, d, mk, 36, [1, 4, 7, 10], [4, 11, 16, 23]);
            four!(H, a, b, c, d, mk, 40, [13, 0, 3, 6], [4, 11, 16, 23]);
            four!(H, a, b, c, d, mk, 44, [9, 12, 15, 2], [4, 11, 16, 23]);
            four!(I, a, b, c, d, mk, 48, [0, 7, 14, 5], [6, 10, 15, 21]);
            four!(I, a, b, c, d, mk, 52, [12, 3, 10, 1], [6, 10, 15, 21]);
            four!(I, a, b, c, d, mk, 56, [8, 15, 6, 13], [6, 10, 15, 21]);
            four!(I, a, b, c, d, mk, 60, [4, 11, 2, 9], [6, 10, 15, 21]);
            a = _mm_add_epi32(a, a0);
            b = _mm_add_epi32(b, b0);
            c = _mm_add_epi32(c, c0);
            d = _mm_add_epi32(d, d0);
        }
        *state = [word(a), word(b), word(c), word(d)];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(d: [u8; 16]) -> String {
        d.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn both(data: &[u8], split: usize) -> (String, String) {
        let mut fast = Md5::new();
        let mut generic = Md5::generic();
        for part in data.chunks(split.max(1)) {
            fast.update(part);
            generic.update(part);
        }
        (hex(fast.finalize()), hex(generic.finalize()))
    }

    #[test]
    fn uses_avx512_where_the_cpu_has_it() {
        #[cfg(target_arch = "x86_64")]
        let expected =
            std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512vl");
        #[cfg(not(target_arch = "x86_64"))]
        let expected = false;
        assert_eq!(Md5::new().uses_avx512(), expected);
    }

    /// What the comparisons below tested. On a CPU without AVX-512 they compare `md-5` with
    /// itself: this says so loudly (scripts/test.sh shows it), and `GALE_REQUIRE_AVX512=1` makes
    /// it a failure. No emulator here can stand in: QEMU's TCG (7.2, Debian's `qemu-user`)
    /// drops avx512f/avx512vl ("TCG doesn't support requested feature"), and Intel SDE is not
    /// packaged.
    #[test]
    fn says_which_implementation_the_tests_ran() {
        if Md5::new().uses_avx512() {
            eprintln!("md5: the tests ran gale's AVX-512 compression function against md-5 (avx512f + avx512vl)");
            return;
        }
        let note = "md5: THE AVX-512 PATH WAS NOT TESTED: this CPU lacks avx512f/avx512vl, so the comparisons \
                    ran md-5 against itself; run the tests on an AVX-512 CPU";
        assert!(std::env::var_os("GALE_REQUIRE_AVX512").is_none(), "{note} (GALE_REQUIRE_AVX512 is set)");
        eprintln!("{note}");
    }

    #[test]
    fn matches_rfc_1321() {
        let vectors: [(&[u8], &str); 7] = [
            (b"", "d41d8cd98f00b204e9800998ecf8427e"),
            (b"a", "0cc175b9c0f1b6a831c399e269772661"),
            (b"abc", "900150983cd24fb0d6963f7d28e17f72"),
            (b"message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
            (b"abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"),
            (b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", "d174ab98d277d9f5a5611c2c9f419d9f"),
            (
                b"12345678901234567890123456789012345678901234567890123456789012345678901234567890",
                "57edf4a22be3c955ac49da2e2107b67a",
            ),
        ];
        for (input, want) in vectors {
            let mut h = Md5::new();
            h.update(input);
            assert_eq!(hex(h.finalize()), want, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn agrees_with_md5_crate_on_every_length_and_split() {
        // Lengths around every padding boundary (55/56/64) for up to three blocks, each in
        // several update sizes so the buffered and direct block paths both run.
        let data: Vec<u8> = (0..200u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for len in 0..=data.len() {
            for split in [1, 7, 63, 64, 65, 200] {
                let (fast, generic) = both(&data[..len], split);
                assert_eq!(fast, generic, "length {len}, updates of {split}");
            }
        }
    }

    #[test]
    fn agrees_with_md5_crate_on_a_large_input() {
        let data: Vec<u8> = (0..(3 << 20) + 17u32).map(|i| (i.wrapping_mul(2_246_822_519) >> 11) as u8).collect();
        let (fast, generic) = both(&data, 1 << 20);
        assert_eq!(fast, generic);
        let (fast, generic) = both(&data, 4093);
        assert_eq!(fast, generic);
    }
}
