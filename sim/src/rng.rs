//! Random streams of a run: one master seed, split into one ChaCha8 stream per component.
//!
//! Each component (the network, the fault injector, the clients, each node's storage, each node's
//! core) draws from its own stream, derived from the master seed and a fixed component tag with
//! SplitMix64. An extra draw in one component therefore never reshuffles another's, and the
//! streams are portable: ChaCha8 and the draws below do not depend on a `rand` version.

use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The fixed component tags. Changing one changes every trace.
pub(crate) mod tag {
    pub const NETWORK: u64 = 1;
    pub const FAULTS: u64 = 2;
    pub const CLIENTS: u64 = 3;
    pub const OVERLOAD: u64 = 4;
    /// Scenario generation for swarm seeds.
    pub const SWARM: u64 = 5;
    /// The targeted window a swarm seed may end its fault phase with (its own stream, so the
    /// windows drawn before it stay those of earlier versions).
    pub const SWARM_TARGETED: u64 = 6;
    /// Leadership handovers scattered over a swarm seed's fault phase (a stream of their own).
    pub const SWARM_TRANSFERS: u64 = 7;
    /// The extra window a swarm seed may add after its targeted one (held-back links, the
    /// lagging figure 8) and handovers to named nodes: a stream of their own, so a seed that
    /// draws none of them keeps the scenario of earlier versions.
    pub const SWARM_EXTRA: u64 = 8;
    /// How a swarm seed's leaders answer reads (lease or read-index).
    pub const SWARM_READS: u64 = 9;
    /// Whether a swarm seed has spare nodes and reshapes its cluster (membership faults), and
    /// how: a stream of its own, so a seed that draws none keeps the scenario of earlier
    /// versions.
    pub const SWARM_MEMBERS: u64 = 10;
    /// Plus the node number: node `n` uses `NODE_CORE + n`.
    pub const NODE_CORE: u64 = 0x100;
    /// Plus the node number.
    pub const NODE_STORAGE: u64 = 0x200;
}

/// SplitMix64's finaliser: a bijective mix of 64 bits.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The seed of component `tag`'s stream under `master`.
pub(crate) fn derive(master: u64, tag: u64) -> u64 {
    mix(mix(master) ^ mix(tag.wrapping_mul(0xD6E8_FEB8_6659_FD93)))
}

/// One component's random stream.
#[derive(Clone, Debug)]
pub(crate) struct Stream(ChaCha8Rng);

impl Stream {
    pub(crate) fn new(master: u64, tag: u64) -> Stream {
        Stream(ChaCha8Rng::seed_from_u64(derive(master, tag)))
    }

    /// A uniform draw from `lo..=hi` (`lo` if `hi <= lo`), by rejection sampling.
    #[inline]
    pub(crate) fn between(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        let span = hi - lo + 1;
        if span == 0 {
            return self.0.next_u64();
        }
        loop {
            let x = self.0.next_u64();
            // Accept below `zone = MAX - MAX % span`, which is above `MAX - span`: only a draw in
            // the top `span` values needs the zone (a second division) to decide.
            if x <= u64::MAX - span || x < u64::MAX - (u64::MAX % span) {
                return lo + x % span;
            }
        }
    }

    /// A uniform index below `n` (0 if `n` is 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        self.between(0, n as u64 - 1) as usize
    }

    /// A uniform draw from `[0, 1)` with 53 bits of precision.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// True with probability `p` (never draws when `p` is 0, so a clean network costs nothing).
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_independent() {
        let mut a = Stream::new(42, tag::NETWORK);
        let mut b = Stream::new(42, tag::NETWORK);
        let mut c = Stream::new(42, tag::FAULTS);
        let xs: Vec<u64> = (0..32).map(|_| a.between(0, 1_000_000)).collect();
        let ys: Vec<u64> = (0..32).map(|_| b.between(0, 1_000_000)).collect();
        let zs: Vec<u64> = (0..32).map(|_| c.between(0, 1_000_000)).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
        assert_ne!(derive(1, tag::NODE_CORE + 1), derive(2, tag::NODE_CORE + 1));
    }

    #[test]
    fn draws_stay_in_their_ranges() {
        let mut s = Stream::new(7, 9);
        for _ in 0..10_000 {
            assert!((5..=9).contains(&s.between(5, 9)));
            assert!(s.below(3) < 3);
            let u = s.unit();
            assert!((0.0..1.0).contains(&u));
        }
        assert_eq!(s.between(4, 4), 4);
        assert_eq!(s.below(0), 0);
        assert!(!s.chance(0.0));
    }
}
