//! The random numbers of training: SplitMix64 (Steele, Lea and Flood 2014), small, fast and
//! with no dependencies. `stream` derives an independent generator from the run's seed and
//! counters (the optimizer step, the epoch), so the dropout masks of step k and the data order
//! of epoch e depend only on (seed, k) and (seed, e): a resumed run draws exactly what the
//! uninterrupted run would have drawn.

/// The SplitMix64 generator: a 64-bit counter stepped by the golden gamma and passed through
/// the splitmix finalizer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitMix64(u64);

/// 2^64 / φ, the increment of the counter.
const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// The splitmix (Stafford variant 13) finalizer: a bijection on u64 that spreads every input
/// bit over every output bit.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN_GAMMA);
        mix(self.0)
    }

    /// Uniform in [0, 1): the top 53 bits of `next_u64` times 2^-53.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Shuffles `items` in place (Fisher–Yates from the end; the index drawn for position i is
    /// `next_u64() % (i + 1)`, whose modulo bias is below 2^-40 for any slice that fits in
    /// memory).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

/// A generator that depends only on `seed` and `parts` (e.g. `[STEP_TAG, k]`): each part is
/// mixed into the state with the splitmix finalizer, so different parts, a different order of
/// the same parts, or a different number of parts give unrelated streams.
pub fn stream(seed: u64, parts: &[u64]) -> SplitMix64 {
    let mut state = mix(seed.wrapping_add(GOLDEN_GAMMA));
    for (i, &part) in parts.iter().enumerate() {
        // The position enters too, so `[x, 0]` and `[x]` differ even though mix(0 + γ) is fixed.
        let salted = part.wrapping_add(GOLDEN_GAMMA.wrapping_mul(i as u64 + 2));
        state = mix(state ^ mix(salted));
    }
    SplitMix64(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draws(mut rng: SplitMix64, n: usize) -> Vec<u64> {
        (0..n).map(|_| rng.next_u64()).collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_numbers() {
        assert_eq!(draws(SplitMix64::new(7), 100), draws(SplitMix64::new(7), 100));
        assert_eq!(draws(stream(7, &[1, 2]), 100), draws(stream(7, &[1, 2]), 100));
        assert_ne!(draws(SplitMix64::new(7), 10), draws(SplitMix64::new(8), 10));
        // The reference values of SplitMix64 seeded with 0 (as in Vigna's splitmix64.c).
        assert_eq!(draws(SplitMix64::new(0), 2), vec![0xe220_a839_7b1d_cdaf, 0x6e78_9e6a_a1b9_65f4]);
    }

    #[test]
    fn different_streams_differ() {
        let streams = [
            stream(1, &[]),
            stream(1, &[0]),
            stream(1, &[0, 0]),
            stream(1, &[1]),
            stream(1, &[1, 2]),
            stream(1, &[2, 1]),
            stream(2, &[1, 2]),
            stream(2, &[]),
        ];
        let firsts: Vec<Vec<u64>> = streams.iter().map(|s| draws(s.clone(), 4)).collect();
        for i in 0..firsts.len() {
            for j in i + 1..firsts.len() {
                assert_ne!(firsts[i], firsts[j], "streams {i} and {j}");
                // Not merely shifted copies of each other either.
                assert!(!firsts[j].contains(&firsts[i][0]), "streams {i} and {j} overlap");
            }
        }
        // Consecutive counters (the steps of a run) give unrelated first draws.
        let mut seen: Vec<u64> = (0..1000).map(|k| stream(42, &[k]).next_u64()).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 1000);
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut rng = SplitMix64::new(3);
        for n in [0usize, 1, 2, 5, 100] {
            let mut items: Vec<usize> = (0..n).collect();
            rng.shuffle(&mut items);
            let mut sorted = items.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..n).collect::<Vec<_>>());
            if n == 100 {
                assert_ne!(items, sorted, "100 items came back in order");
            }
        }
        // Deterministic for a seed.
        let (mut x, mut y): (Vec<u32>, Vec<u32>) = ((0..50).collect(), (0..50).collect());
        SplitMix64::new(9).shuffle(&mut x);
        SplitMix64::new(9).shuffle(&mut y);
        assert_eq!(x, y);
    }

    #[test]
    fn next_f64_is_uniform_on_the_unit_interval() {
        let mut rng = stream(5, &[11]);
        let n = 100_000;
        let (mut sum, mut low) = (0.0, 0usize);
        for _ in 0..n {
            let u = rng.next_f64();
            assert!((0.0..1.0).contains(&u));
            sum += u;
            low += usize::from(u < 0.25);
        }
        // Standard error of the mean: sqrt(1/12 / 1e5) ≈ 0.0009.
        assert!((sum / n as f64 - 0.5).abs() < 0.005, "mean {}", sum / n as f64);
        assert!((low as f64 / n as f64 - 0.25).abs() < 0.01, "P(u < 0.25) = {}", low as f64 / n as f64);
    }
}
