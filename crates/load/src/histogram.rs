//! A fixed-size latency histogram, so a long load run costs the same memory as a short one.
//!
//! Keeping every latency and sorting at the end would grow with the request count (millions in a
//! benchmark) and make merging per-connection results expensive. Instead each connection counts
//! latencies into log-linear buckets: exact below 64 µs, then 32 buckets per power of two, so any
//! reported quantile is within about 3 % of the true value. A bucket array is cheap to record into
//! (a shift and an add), and merging the connections' histograms is a plain element-wise sum.

use std::time::Duration;

/// Sub-buckets per power of two are `2^SUB_BITS`: 32, i.e. a relative error of at most 1/32.
const SUB_BITS: u32 = 5;
const SUB_COUNT: u64 = 1 << SUB_BITS;
/// Values below this are counted exactly, one bucket per microsecond.
const LINEAR_LIMIT: u64 = 2 * SUB_COUNT;
/// Largest power of two tracked; anything above (over 19 hours) lands in the last bucket, while
/// the exact maximum is still kept separately.
const MAX_EXP: u32 = 36;
const BUCKETS: usize = (LINEAR_LIMIT + (MAX_EXP - SUB_BITS) as u64 * SUB_COUNT) as usize;

/// Latencies in microseconds, bucketed.
#[derive(Debug, Clone)]
pub(crate) struct Histogram {
    counts: Vec<u64>,
    count: u64,
    sum_us: u128,
    min_us: u64,
    max_us: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            count: 0,
            sum_us: 0,
            min_us: u64::MAX,
            max_us: 0,
        }
    }
}

/// Which bucket counts `us`.
fn bucket_of(us: u64) -> usize {
    if us < LINEAR_LIMIT {
        return us as usize;
    }
    // `exp` is the position of the highest set bit (at least SUB_BITS + 1 here); the SUB_BITS
    // bits below it select the sub-bucket.
    let exp = (u64::BITS - 1 - us.leading_zeros()).min(MAX_EXP);
    let shift = exp - SUB_BITS;
    let sub = (us >> shift).min(2 * SUB_COUNT - 1) - SUB_COUNT;
    let index = LINEAR_LIMIT + u64::from(exp - SUB_BITS - 1) * SUB_COUNT + sub;
    (index as usize).min(BUCKETS - 1)
}

/// The largest value that `bucket_of` maps to `index`.
fn upper_bound_of(index: usize) -> u64 {
    let index = index as u64;
    if index < LINEAR_LIMIT {
        return index;
    }
    let exp = (index - LINEAR_LIMIT) / SUB_COUNT + u64::from(SUB_BITS) + 1;
    let sub = (index - LINEAR_LIMIT) % SUB_COUNT + SUB_COUNT;
    let shift = exp - u64::from(SUB_BITS);
    ((sub + 1) << shift) - 1
}

impl Histogram {
    pub(crate) fn record(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.counts[bucket_of(us)] += 1;
        self.count += 1;
        self.sum_us += u128::from(us);
        self.min_us = self.min_us.min(us);
        self.max_us = self.max_us.max(us);
    }

    pub(crate) fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.count += other.count;
        self.sum_us += other.sum_us;
        self.min_us = self.min_us.min(other.min_us);
        self.max_us = self.max_us.max(other.max_us);
    }

    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    pub(crate) fn min_us(&self) -> Option<u64> {
        (self.count > 0).then_some(self.min_us)
    }

    pub(crate) fn max_us(&self) -> Option<u64> {
        (self.count > 0).then_some(self.max_us)
    }

    pub(crate) fn mean_us(&self) -> Option<u64> {
        (self.count > 0).then(|| (self.sum_us / u128::from(self.count)) as u64)
    }

    /// The value below or at which a fraction `q` (0..=1) of the recorded latencies fall,
    /// rounded up to its bucket's upper bound but never above the exact maximum.
    pub(crate) fn quantile_us(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        // Nearest-rank definition: the smallest value whose rank is at least ceil(q * n).
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (index, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(upper_bound_of(index).min(self.max_us));
            }
        }
        Some(self.max_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bucket_bounds_the_values_mapped_to_it() {
        // Walk a range that covers the linear part, several octaves and the clamp.
        let mut previous_bucket = 0;
        for us in (0..5_000u64).chain((5_000..50_000_000).step_by(997)) {
            let bucket = bucket_of(us);
            assert!(
                bucket >= previous_bucket,
                "buckets must be monotonic at {us}"
            );
            previous_bucket = bucket;
            let upper = upper_bound_of(bucket);
            assert!(upper >= us, "bucket {bucket} upper {upper} below {us}");
            // Relative error bound: the bucket is at most 1/32 of its lower edge wide.
            assert!(
                (upper - us) as f64 <= us as f64 / SUB_COUNT as f64,
                "bucket {bucket} too wide for {us}: upper {upper}"
            );
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_of_a_uniform_distribution_are_within_the_precision() {
        let mut h = Histogram::default();
        for us in 1..=10_000u64 {
            h.record(Duration::from_micros(us));
        }
        for (q, exact) in [(0.5, 5_000.0), (0.9, 9_000.0), (0.99, 9_900.0)] {
            let got = h.quantile_us(q).unwrap() as f64;
            assert!(
                got >= exact && got <= exact * (1.0 + 1.0 / 32.0),
                "q{q}: got {got}, exact {exact}"
            );
        }
        assert_eq!(h.quantile_us(1.0), Some(10_000));
        assert_eq!(h.min_us(), Some(1));
        assert_eq!(h.max_us(), Some(10_000));
        assert_eq!(h.mean_us(), Some(5_000));
    }

    #[test]
    fn merging_equals_recording_everything_in_one() {
        let (mut a, mut b, mut all) = (
            Histogram::default(),
            Histogram::default(),
            Histogram::default(),
        );
        for us in [3u64, 70, 900, 12_345, 2_000_000] {
            a.record(Duration::from_micros(us));
            all.record(Duration::from_micros(us));
        }
        for us in [5u64, 64, 1_000_000] {
            b.record(Duration::from_micros(us));
            all.record(Duration::from_micros(us));
        }
        a.merge(&b);
        assert_eq!(a.counts, all.counts);
        assert_eq!(a.count(), 8);
        assert_eq!(a.min_us(), Some(3));
        assert_eq!(a.max_us(), Some(2_000_000));
        assert_eq!(a.quantile_us(0.5), all.quantile_us(0.5));
    }

    #[test]
    fn an_empty_histogram_has_no_quantiles() {
        let h = Histogram::default();
        assert_eq!(h.quantile_us(0.5), None);
        assert_eq!(h.max_us(), None);
        assert_eq!(h.mean_us(), None);
    }
}
