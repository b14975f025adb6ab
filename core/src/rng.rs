//! The node's private random stream: ChaCha8 seeded from the config, with a portable uniform draw
//! (so traces never depend on how a `rand` version maps bits to ranges).
//!
//! Owns: the draws. Never: an unseeded source.

use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(Clone, Debug)]
pub(crate) struct NodeRng(ChaCha8Rng);

impl NodeRng {
    pub(crate) fn new(seed: u64) -> NodeRng {
        NodeRng(ChaCha8Rng::seed_from_u64(seed))
    }

    /// A uniform draw from `lo..hi` (`lo` if the range is empty), by rejection sampling.
    pub(crate) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        let span = hi - lo;
        loop {
            let x = self.0.next_u64();
            // Accept below `zone = MAX - MAX % span`, which is above `MAX - span`: only a draw in
            // the top `span` values needs the zone (a second division) to decide.
            if x <= u64::MAX - span || x < u64::MAX - (u64::MAX % span) {
                return lo + x % span;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_stay_in_range_and_repeat_per_seed() {
        let mut a = NodeRng::new(3);
        let mut b = NodeRng::new(3);
        for _ in 0..1000 {
            let x = a.range(100, 200);
            assert!((100..200).contains(&x));
            assert_eq!(x, b.range(100, 200));
        }
        assert_eq!(a.range(5, 5), 5);
    }
}
