//! Deterministic randomness: every draw is a hash of (seed, kind, n), so a run is
//! reproducible from its seed and no RNG state is shared between requests.

/// splitmix64: a good 64-bit mix of its input.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A uniform draw in [0, 1) for (seed, kind, n): deterministic, no shared RNG state.
pub(crate) fn draw(seed: u64, kind: u64, n: u64) -> f64 {
    (mix(seed ^ mix(kind ^ mix(n))) >> 11) as f64 / (1u64 << 53) as f64
}

pub(crate) fn chance(seed: u64, kind: u64, n: u64, p: f64) -> bool {
    p > 0.0 && draw(seed, kind, n) < p
}
