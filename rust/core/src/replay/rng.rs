//! The generator behind every random draw of a replay buffer: xoshiro256++ (Blackman and
//! Vigna, "Scrambled linear pseudorandom number generators", ACM TOMS 2021), seeded through
//! SplitMix64. Its whole state is four integers, so a saved buffer restores the exact stream.

/// A xoshiro256++ generator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generator {
    state: [u64; 4],
}

fn splitmix64(seed: &mut u64) -> u64 {
    *seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *seed;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Generator {
    /// Seed the four state words from SplitMix64, which never yields the all-zero state.
    pub fn from_seed(seed: u64) -> Self {
        let mut seed = seed;
        let state = [
            splitmix64(&mut seed),
            splitmix64(&mut seed),
            splitmix64(&mut seed),
            splitmix64(&mut seed),
        ];
        Generator { state }
    }

    /// Rebuild a generator from a state saved with [`Generator::state`].
    pub fn from_state(state: [u64; 4]) -> Option<Self> {
        if state == [0; 4] {
            None
        } else {
            Some(Generator { state })
        }
    }

    /// Returns the four state words.
    pub fn state(&self) -> [u64; 4] {
        self.state
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.state;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform float in `[0, 1)` from the top 53 bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in `[0, bound)` without modulo bias (Lemire, "Fast random integer
    /// generation in an interval", ACM TOMACS 2019). `bound` must be positive.
    pub fn below(&mut self, bound: u64) -> u64 {
        debug_assert!(bound > 0);
        let threshold = bound.wrapping_neg() % bound;
        loop {
            let product = (self.next_u64() as u128) * (bound as u128);
            if (product as u64) >= threshold {
                return (product >> 64) as u64;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let mut first = Generator::from_seed(7);
        let mut second = Generator::from_seed(7);
        for _ in 0..100 {
            assert_eq!(first.next_u64(), second.next_u64());
        }
        assert_ne!(
            Generator::from_seed(8).next_u64(),
            Generator::from_seed(7).next_u64()
        );
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut generator = Generator::from_seed(1);
        let mut seen = [false; 5];
        for _ in 0..1000 {
            let value = generator.below(5) as usize;
            seen[value] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn restored_state_continues_stream() {
        let mut generator = Generator::from_seed(3);
        generator.next_u64();
        let mut restored = Generator::from_state(generator.state()).unwrap();
        assert_eq!(generator.next_u64(), restored.next_u64());
        assert!(Generator::from_state([0; 4]).is_none());
    }
}
