//! A small deterministic generator for the randomised tests (no test-only dependency):
//! xorshift64*. Seeded tests replay the same series on every run. Also compiled into the crate's
//! own unit tests (`src/pop3/tests.rs` includes this file by path), so it stands alone.
#![allow(dead_code)]

/// xorshift64*; the state must not be 0.
pub struct Rng(pub u64);

impl Rng {
    /// From any seed (spread, and made odd so that it is never 0).
    pub fn seeded(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in 0..n; 0 when n is 0.
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next_u64() % n as u64) as usize }
    }

    /// Uniform in 1..=n (n ≥ 1).
    pub fn pick(&mut self, n: usize) -> u32 {
        (self.next_u64() % n as u64) as u32 + 1
    }
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn the_series_is_xorshift64_star() {
        // From state 1, as computed from the definition (shifts 12, 25, 27; Vigna's multiplier):
        // the seeded tests' series must not change under them.
        let mut r = Rng(1);
        assert_eq!(
            [r.next_u64(), r.next_u64(), r.next_u64()],
            [5180492295206395165, 12380297144915551517, 13389498078930870103]
        );
    }

    #[test]
    fn below_and_pick_stay_in_range() {
        let mut r = Rng::seeded(7);
        assert_eq!(r.below(0), 0);
        for n in 1..50 {
            assert!(r.below(n) < n);
            assert!((1..=n as u32).contains(&r.pick(n)));
        }
    }
}
