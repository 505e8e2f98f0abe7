//! Deterministic randomness for the simulator: a SplitMix64 generator (every
//! stream derives from the scenario seed), exponential inter-arrival times
//! and a Zipf sampler over URL ranks.

/// SplitMix64: small, fast, and the same sequence on every platform.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// An independent stream for `label` (an isolate, the purger, ...).
    pub fn derive(seed: u64, label: u64) -> Self {
        let mut base = Self::new(seed);
        let mix = base.next_u64() ^ label.wrapping_mul(0xD6E8_FEB8_6659_FD93);
        Self::new(mix)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// An exponential wait with mean `1 / rate_per_ms`, in ms.
    pub fn exp_ms(&mut self, rate_per_ms: f64) -> f64 {
        if rate_per_ms <= 0.0 {
            return f64::INFINITY;
        }
        -(1.0 - self.unit()).ln() / rate_per_ms
    }
}

/// Zipf(s) over ranks `0..n`: rank 0 is the most popular.
#[derive(Debug, Clone)]
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    pub fn new(n: usize, s: f64) -> Self {
        let mut cdf = Vec::with_capacity(n.max(1));
        let mut total = 0.0;
        for rank in 0..n.max(1) {
            total += 1.0 / ((rank + 1) as f64).powf(s);
            cdf.push(total);
        }
        for c in &mut cdf {
            *c /= total;
        }
        Self { cdf }
    }

    pub fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        self.cdf.partition_point(|c| *c < u).min(self.cdf.len() - 1)
    }

    /// The share of requests that go to `rank`.
    pub fn share(&self, rank: usize) -> f64 {
        let below = if rank == 0 { 0.0 } else { self.cdf[rank - 1] };
        self.cdf.get(rank).map_or(0.0, |c| c - below)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_sequence_and_labels_give_other_streams() {
        let mut r1 = Rng::derive(7, 3);
        let mut r2 = Rng::derive(7, 3);
        let a: Vec<u64> = (0..5).map(|_| r1.next_u64()).collect();
        let b: Vec<u64> = (0..5).map(|_| r2.next_u64()).collect();
        assert_eq!(a, b);
        assert_ne!(Rng::derive(7, 3).next_u64(), Rng::derive(7, 4).next_u64());
    }

    #[test]
    fn zipf_puts_the_most_traffic_on_rank_zero() {
        let zipf = Zipf::new(1000, 1.0);
        let mut rng = Rng::new(1);
        let mut counts = [0u32; 3];
        for _ in 0..20_000 {
            let r = zipf.sample(&mut rng);
            if r < 3 {
                counts[r] += 1;
            }
        }
        assert!(counts[0] > counts[1] && counts[1] > counts[2]);
        assert!((zipf.share(0) - 1.0 / 7.485).abs() < 0.01);
    }
}
