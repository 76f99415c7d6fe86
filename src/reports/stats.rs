//! The statistics the reports use (docs/reports.md states them).

/// z for a two-sided 95 % interval.
pub const Z95: f64 = 1.959_963_984_540_054;

/// Wilson score interval of `k` successes in `n` trials at 95 %;
/// `None` when `n` is 0.
pub fn wilson(k: u64, n: u64) -> Option<(f64, f64)> {
    if n == 0 {
        return None;
    }
    let (k, n) = (k as f64, n as f64);
    let p = k / n;
    let z2 = Z95 * Z95;
    let denom = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denom;
    let half = Z95 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denom;
    // At k = 0 (k = n) the bound is exactly 0 (1); rounding would leave a
    // tiny positive (below-one) value that no longer contains the rate.
    let lo = if k == 0.0 {
        0.0
    } else {
        (centre - half).max(0.0)
    };
    let hi = if k == n {
        1.0
    } else {
        (centre + half).min(1.0)
    };
    Some((lo, hi))
}

/// Nearest-rank percentile (`q` in (0, 1]) of `sorted` values: the value at
/// rank ⌈q·n⌉. The median is `q = 0.5`.
pub fn percentile(sorted: &[i64], q: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Two-proportion z-test (pooled) of `k1/n1` against `k2/n2`: `(z, two-sided
/// p)`; `None` when a sample is empty or the pooled proportion is 0 or 1.
pub fn two_proportion_z(k1: u64, n1: u64, k2: u64, n2: u64) -> Option<(f64, f64)> {
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let (n1f, n2f) = (n1 as f64, n2 as f64);
    let pooled = (k1 + k2) as f64 / (n1f + n2f);
    let se = (pooled * (1.0 - pooled) * (1.0 / n1f + 1.0 / n2f)).sqrt();
    if se == 0.0 {
        return None;
    }
    let z = (k2 as f64 / n2f - k1 as f64 / n1f) / se;
    Some((z, 2.0 * (1.0 - normal_cdf(z.abs()))))
}

/// Standard normal CDF via erf (Abramowitz–Stegun 7.1.26, |error| < 1.5e-7).
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * (1.0 + erf(x / std::f64::consts::SQRT_2))
}

fn erf(x: f64) -> f64 {
    let sign = if x < 0.0 { -1.0 } else { 1.0 };
    let x = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let y = 1.0
        - (((((1.061_405_429 * t - 1.453_152_027) * t) + 1.421_413_741) * t - 0.284_496_736) * t
            + 0.254_829_592)
            * t
            * (-x * x).exp();
    sign * y
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_a_published_value() {
        // 81 of 263: 0.2553 .. 0.3662 (Wilson 1927, as tabulated by Newcombe 1998).
        let (lo, hi) = wilson(81, 263).unwrap();
        assert!(
            (lo - 0.2553).abs() < 1e-3 && (hi - 0.3662).abs() < 1e-3,
            "{lo} {hi}"
        );
        assert_eq!(wilson(0, 0), None);
        for n in 1..200 {
            assert_eq!(wilson(0, n).unwrap().0, 0.0);
            assert_eq!(wilson(n, n).unwrap().1, 1.0);
        }
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
        assert_eq!(percentile(&v, 0.5), Some(5));
        assert_eq!(percentile(&v, 0.9), Some(9));
        assert_eq!(percentile(&[7], 0.9), Some(7));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn two_proportion_test() {
        // 10/100 vs 25/100: pooled p̂ = 0.175, SE = 0.05374, z = 2.791,
        // p = 0.00525.
        let (z, p) = two_proportion_z(10, 100, 25, 100).unwrap();
        assert!((z - 2.7915).abs() < 0.001, "{z}");
        assert!((p - 0.00525).abs() < 0.0001, "{p}");
        assert!((normal_cdf(1.959_964) - 0.975).abs() < 1e-6);
    }
}
