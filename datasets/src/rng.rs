//! A tiny deterministic random number generator (SplitMix64).
//!
//! The shapes dataset must render the same scenes from the same seed on every machine and with
//! every version of the `rand` crate, so it uses this fixed algorithm instead.

/// SplitMix64: fast, statistically good enough for procedural data, and fully specified.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose whole stream is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// A generator for item `index` of stream `stream` under `seed`, independent of the others.
    pub fn for_item(seed: u64, stream: u64, index: u64) -> Self {
        let mut mixer = Self::new(seed ^ stream.wrapping_mul(0xA24B_AED4_963E_E407));
        let base = mixer.next_u64();
        Self::new(base ^ index.wrapping_mul(0x9FB2_1C65_1E98_DF25))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in `[low, high)`.
    pub fn uniform(&mut self, low: f32, high: f32) -> f32 {
        low + (high - low) * self.next_f32()
    }

    /// Uniform integer in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_streams_differ() {
        let a: Vec<u64> = (0..4)
            .map(|_| 0)
            .scan(SplitMix64::new(7), |r, _| Some(r.next_u64()))
            .collect();
        let b: Vec<u64> = (0..4)
            .map(|_| 0)
            .scan(SplitMix64::new(7), |r, _| Some(r.next_u64()))
            .collect();
        assert_eq!(a, b);
        let c = SplitMix64::for_item(7, 0, 1).next_u64();
        let d = SplitMix64::for_item(7, 1, 1).next_u64();
        let e = SplitMix64::for_item(7, 0, 2).next_u64();
        assert!(c != d && c != e && d != e);
        let mut r = SplitMix64::new(3);
        assert!((0..1000)
            .map(|_| r.next_f32())
            .all(|x| (0.0..1.0).contains(&x)));
    }
}
