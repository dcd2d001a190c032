//! Fusion of per-candidate predictions into one score, and top-k selection.

use super::kernels::{all_finite, has_avx2_fma};
use crate::error::{Error, Result};

/// Rule that combines K per-candidate predictions into one ranking score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FusionMode {
    /// `sum_k w_k * p_k`.
    WeightedSum,
    /// `prod_k p_k ^ w_k`, computed as `exp(sum_k w_k * ln p_k)`; predictions must be >= 0.
    Product,
}

impl FusionMode {
    /// Parse `"sum"` or `"product"`.
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "sum" => Ok(FusionMode::WeightedSum),
            "product" => Ok(FusionMode::Product),
            other => Err(Error::invalid(
                "mode",
                format!("expected \"sum\" or \"product\", got {other:?}"),
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            FusionMode::WeightedSum => "sum",
            FusionMode::Product => "product",
        }
    }
}

/// Handling of a candidate whose inputs contain NaN or an infinity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonFinite {
    /// Fail with an error that names the first such candidate.
    Raise,
    /// Give the candidate a NaN score, which every top-k ranks after all finite scores.
    RankLast,
}

impl NonFinite {
    /// Parse `"raise"` or `"rank_last"`.
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "raise" => Ok(NonFinite::Raise),
            "rank_last" => Ok(NonFinite::RankLast),
            other => Err(Error::invalid(
                "invalid",
                format!("expected \"raise\" or \"rank_last\", got {other:?}"),
            )),
        }
    }
}

/// Reject `candidate`, whose `argument` row has the non-finite `value` at position `feature`,
/// or return NaN as its score under [`NonFinite::RankLast`].
pub fn non_finite_candidate(
    policy: NonFinite,
    argument: &str,
    candidate: usize,
    feature: usize,
    value: f32,
) -> Result<f32> {
    match policy {
        NonFinite::Raise => Err(Error::invalid(
            argument,
            format!(
                "candidate {candidate} has the non-finite value {value} at position {feature}; \
                 fix the input or pass invalid=\"rank_last\" to rank such candidates last"
            ),
        )),
        NonFinite::RankLast => Ok(f32::NAN),
    }
}

/// Fuse predictions [C, K] (row-major) with `weights` [K] into scores [C].
///
/// Rows with NaN or an infinity, and rows with a negative prediction under
/// [`FusionMode::Product`], are rejected or scored NaN according to `invalid`.
pub fn fuse(
    predictions: &[f32],
    weights: &[f32],
    mode: FusionMode,
    invalid: NonFinite,
) -> Result<Vec<f32>> {
    let k = weights.len();
    if k == 0 {
        return Err(Error::shape("weights", "at least one weight", "0"));
    }
    if predictions.len() % k != 0 {
        return Err(Error::shape(
            "predictions",
            format!("(C, {k}) values"),
            format!("{} values", predictions.len()),
        ));
    }
    if let Some(position) = weights.iter().position(|w| !w.is_finite()) {
        return Err(Error::invalid(
            "weights",
            format!(
                "weight {position} is {}, expected a finite number",
                weights[position]
            ),
        ));
    }
    // Fast path: every prediction finite, a weighted sum over a common K.
    if mode == FusionMode::WeightedSum && all_finite(predictions) {
        let scores = all_weighted_sums(predictions, weights);
        if all_finite(&scores) {
            return Ok(scores);
        }
    }
    let mut scores = Vec::with_capacity(predictions.len() / k);
    for (candidate, row) in predictions.chunks_exact(k).enumerate() {
        let mut score = match mode {
            FusionMode::WeightedSum => weighted_sum(row, weights),
            FusionMode::Product => log_product(row, weights),
        };
        if !(score.is_finite() && all_finite(row)) {
            score = check_row(row, mode, invalid, candidate, score)?;
        } else if mode == FusionMode::Product {
            score = score.exp();
        }
        scores.push(score);
    }
    Ok(scores)
}

/// Weighted sums of all rows, unrolled for common K and compiled twice (baseline and AVX2) with
/// the CPU picking one at run time.
fn all_weighted_sums(predictions: &[f32], weights: &[f32]) -> Vec<f32> {
    #[inline(always)]
    fn dispatch_k(predictions: &[f32], weights: &[f32]) -> Vec<f32> {
        match weights.len() {
            2 => weighted_sums::<2>(predictions, weights),
            4 => weighted_sums::<4>(predictions, weights),
            8 => weighted_sums::<8>(predictions, weights),
            k => predictions
                .chunks_exact(k)
                .map(|row| weighted_sum(row, weights))
                .collect(),
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn dispatch_k_avx2(predictions: &[f32], weights: &[f32]) -> Vec<f32> {
        dispatch_k(predictions, weights)
    }

    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA, checked once by `has_avx2_fma`.
        return unsafe { dispatch_k_avx2(predictions, weights) };
    }
    dispatch_k(predictions, weights)
}

/// Weighted sums of rows of a compile-time width K.
///
/// The K products are added as a balanced tree, so the dependency chain per row has depth
/// log2 K instead of K and the compiler can use vector adds.
#[inline(always)]
fn weighted_sums<const K: usize>(predictions: &[f32], weights: &[f32]) -> Vec<f32> {
    let weights: [f32; K] = weights.try_into().expect("K weights");
    predictions
        .chunks_exact(K)
        .map(|row| {
            let mut products = [0.0f32; K];
            for i in 0..K {
                products[i] = row[i] * weights[i];
            }
            let mut width = K;
            while width > 1 {
                let half = width / 2;
                for i in 0..half {
                    products[i] += products[i + half];
                }
                if width % 2 == 1 {
                    products[0] += products[width - 1];
                }
                width = half;
            }
            products[0]
        })
        .collect()
}

#[inline(always)]
fn weighted_sum(row: &[f32], weights: &[f32]) -> f32 {
    row.iter().zip(weights).map(|(p, w)| p * w).sum()
}

/// `sum_k w_k ln p_k`, skipping zero weights so that 0^0 counts as 1.
fn log_product(row: &[f32], weights: &[f32]) -> f32 {
    row.iter()
        .zip(weights)
        .filter(|(_, w)| **w != 0.0)
        .map(|(p, w)| w * p.ln())
        .sum()
}

/// Decide the score of a row whose fused value is not finite: an invalid input (rejected or
/// NaN), or a legitimate limit such as `ln 0 = -inf` under the product (score 0).
fn check_row(
    row: &[f32],
    mode: FusionMode,
    invalid: NonFinite,
    candidate: usize,
    score: f32,
) -> Result<f32> {
    if let Some(position) = row.iter().position(|p| !p.is_finite()) {
        return non_finite_candidate(invalid, "predictions", candidate, position, row[position]);
    }
    if mode == FusionMode::Product {
        if let Some(position) = row.iter().position(|p| *p < 0.0) {
            return match invalid {
                NonFinite::Raise => Err(Error::invalid(
                    "predictions",
                    format!(
                        "candidate {candidate} has the negative prediction {} at position \
                         {position}; the product fusion needs predictions >= 0",
                        row[position]
                    ),
                )),
                NonFinite::RankLast => Ok(f32::NAN),
            };
        }
        if score.is_nan() {
            // ln 0 under both a positive and a negative weight: 0 * inf has no value.
            return match invalid {
                NonFinite::Raise => Err(Error::invalid(
                    "predictions",
                    format!(
                        "candidate {candidate}: the product is undefined because a zero \
                         prediction meets weights of both signs"
                    ),
                )),
                NonFinite::RankLast => Ok(f32::NAN),
            };
        }
        return Ok(score.exp());
    }
    // A finite row whose weighted sum overflowed.
    non_finite_candidate(invalid, "predictions", candidate, 0, score)
}

/// Map a score to a u32 that sorts ascending in the order best first, NaN last.
///
/// Flipping all bits of a negative float and only the sign bit of a positive one gives an
/// unsigned integer in float order, and its complement puts the best first. Only a NaN can map
/// to u32::MAX, so NaN is set to exactly that. The code has no branch.
#[inline]
fn descending_key(score: f32) -> u32 {
    // Adding 0.0 turns -0.0 into +0.0 so the two tie and fall back to the candidate index.
    let bits = (score + 0.0).to_bits();
    let flip = (((bits as i32) >> 31) as u32) | 0x8000_0000;
    let key = !(bits ^ flip);
    if score.is_nan() {
        u32::MAX
    } else {
        key
    }
}

/// Estimate a key that about 2k of `keys` do not exceed, from a sample of 64 spread evenly.
///
/// Returns `None` when the input is too short for the filter to pay. Whether at least k keys
/// pass is checked by the caller, which falls back to selecting over all keys.
fn sampled_threshold(keys: &[u64], k: usize) -> Option<u64> {
    const SAMPLE: usize = 64;
    if keys.len() < 4 * SAMPLE || 4 * k > keys.len() {
        return None;
    }
    let stride = keys.len() / SAMPLE;
    let mut sample: Vec<u64> = keys.iter().step_by(stride).take(SAMPLE).copied().collect();
    // Rank of the threshold in the sample: twice the expected share of the k best, plus 2.
    let rank = ((2 * k * SAMPLE).div_ceil(keys.len()) + 2).min(SAMPLE - 1);
    let (_, threshold, _) = sample.select_nth_unstable(rank);
    Some(*threshold)
}

/// Return the indices of the `k` best scores, best first, ties broken by the lower index and
/// NaN scores last. `k` larger than the number of scores returns them all.
///
/// Each candidate becomes one u64 key, score in the high half and index in the low half, so a
/// single integer comparison orders by score and then by index. A threshold estimated from a
/// sample drops most keys in one branch-free pass, `select_nth_unstable` partitions the k best
/// of the rest in linear expected time, and only those k are sorted.
pub fn top_k(scores: &[f32], k: usize) -> Result<Vec<u32>> {
    if scores.len() > u32::MAX as usize {
        return Err(Error::shape(
            "scores",
            format!("at most {} candidates", u32::MAX),
            scores.len().to_string(),
        ));
    }
    let k = k.min(scores.len());
    if k == 0 {
        return Ok(Vec::new());
    }
    let keys: Vec<u64> = scores
        .iter()
        .enumerate()
        .map(|(index, &score)| (u64::from(descending_key(score)) << 32) | index as u64)
        .collect();
    let mut best = match sampled_threshold(&keys, k) {
        // Keep the keys that beat the threshold, writing every key and advancing the length
        // only for those, so there is no unpredictable branch.
        Some(threshold) => {
            let mut kept = vec![0u64; keys.len() + 1];
            let mut length = 0usize;
            for &key in &keys {
                kept[length] = key;
                length += usize::from(key <= threshold);
            }
            kept.truncate(length);
            if length >= k {
                kept
            } else {
                keys
            }
        }
        None => keys,
    };
    if best.len() > k {
        best.select_nth_unstable(k - 1);
        best.truncate(k);
    }
    best.sort_unstable();
    Ok(best.into_iter().map(|key| key as u32).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_ties_and_nan() {
        let scores = [1.0, f32::NAN, 3.0, 1.0, f32::NEG_INFINITY, -0.0, 0.0, 3.0];
        assert_eq!(top_k(&scores, 3).unwrap(), vec![2, 7, 0]);
        assert_eq!(top_k(&scores, 100).unwrap(), vec![2, 7, 0, 3, 5, 6, 4, 1]);
        assert!(top_k(&scores, 0).unwrap().is_empty());
        assert!(top_k(&[], 5).unwrap().is_empty());
    }

    #[test]
    fn top_k_matches_full_sort_past_the_buffer() {
        // Scores with many ties and some NaN, long enough to refill the selection buffer.
        let scores: Vec<f32> = (0..5000u64)
            .map(|i| {
                let hashed = i.wrapping_mul(2_654_435_761) % 97;
                if hashed == 13 {
                    f32::NAN
                } else {
                    hashed as f32 * 0.5
                }
            })
            .collect();
        let mut order: Vec<u32> = (0..scores.len() as u32).collect();
        order
            .sort_by_key(|&i| (u64::from(descending_key(scores[i as usize])) << 32) | u64::from(i));
        for k in [1, 7, 50, 64, 65, 200, 4999, 5000, 6000] {
            let expected = &order[..k.min(order.len())];
            assert_eq!(top_k(&scores, k).unwrap(), expected, "k = {k}");
        }
    }

    #[test]
    fn top_k_falls_back_when_the_sample_misleads() {
        // The best scores sit exactly at the sampled positions, so the sampled threshold lets
        // fewer than k keys through.
        let scores: Vec<f32> = (0..1000)
            .map(|i| if i % 15 == 0 { 100.0 } else { 0.0 })
            .collect();
        let best = top_k(&scores, 80).unwrap();
        let expected: Vec<u32> = (0..1000u32)
            .filter(|i| i % 15 == 0)
            .chain((0..1000u32).filter(|i| i % 15 != 0))
            .take(80)
            .collect();
        assert_eq!(best, expected);
    }

    #[test]
    fn fuse_sum_and_product() {
        let predictions = [0.5, 2.0, 0.0, 4.0];
        let weights = [2.0, 0.5];
        let sum = fuse(
            &predictions,
            &weights,
            FusionMode::WeightedSum,
            NonFinite::Raise,
        )
        .unwrap();
        assert_eq!(sum, vec![2.0, 2.0]);
        let product = fuse(
            &predictions,
            &weights,
            FusionMode::Product,
            NonFinite::Raise,
        )
        .unwrap();
        assert!((product[0] - 0.25 * 2.0_f32.sqrt()).abs() < 1e-6);
        assert_eq!(product[1], 0.0);
    }

    #[test]
    fn fuse_nan_rejected_or_ranked_last() {
        let predictions = [0.5, 2.0, f32::NAN, 4.0];
        let weights = [1.0, 1.0];
        let error = fuse(
            &predictions,
            &weights,
            FusionMode::WeightedSum,
            NonFinite::Raise,
        )
        .unwrap_err();
        assert!(error.to_string().contains("candidate 1"), "{error}");
        let scores = fuse(
            &predictions,
            &weights,
            FusionMode::WeightedSum,
            NonFinite::RankLast,
        )
        .unwrap();
        assert!(scores[1].is_nan());
    }

    #[test]
    fn product_rejects_negative() {
        let error = fuse(&[-0.1], &[1.0], FusionMode::Product, NonFinite::Raise).unwrap_err();
        assert!(error.to_string().contains("candidate 0"), "{error}");
    }
}
