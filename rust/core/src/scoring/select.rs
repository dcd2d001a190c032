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
    if !predictions.len().is_multiple_of(k) {
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
    // Fast path for the weighted sum. A NaN or infinite prediction always makes its row's sum
    // non-finite, because p * w is NaN or infinite for any finite w and adding finite terms
    // keeps it so. Finite scores thus prove finite inputs, and the predictions need no scan.
    if mode == FusionMode::WeightedSum {
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
pub(crate) fn all_weighted_sums(predictions: &[f32], weights: &[f32]) -> Vec<f32> {
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
        if let Ok(weights) = <&[f32; 8]>::try_from(weights) {
            let mut scores = vec![0.0; predictions.len() / 8];
            // SAFETY: the CPU supports AVX2 and FMA, checked once by `has_avx2_fma`, and
            // `scores` has one slot per row of 8 predictions.
            unsafe { weighted_sums_8_avx2(predictions, weights, &mut scores) };
            return scores;
        }
        // SAFETY: the CPU supports AVX2 and FMA, checked once by `has_avx2_fma`.
        return unsafe { dispatch_k_avx2(predictions, weights) };
    }
    dispatch_k(predictions, weights)
}

/// Weighted sums of rows of 8 predictions, eight rows per step: each row is one vector of
/// products, and three rounds of pairwise horizontal adds turn the eight vectors into one
/// vector of eight sums. Each sum is ((p0 + p1) + (p2 + p3)) + ((p4 + p5) + (p6 + p7)) of the
/// products p_i = w_i x_i.
///
/// # Safety
/// The CPU must support AVX2, and `scores.len() * 8 == predictions.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn weighted_sums_8_avx2(predictions: &[f32], weights: &[f32; 8], scores: &mut [f32]) {
    use std::arch::x86_64::*;
    debug_assert_eq!(predictions.len(), scores.len() * 8);
    let w = _mm256_loadu_ps(weights.as_ptr());
    let groups = scores.len() / 8;
    for group in 0..groups {
        // SAFETY: rows group * 8 .. group * 8 + 8 exist in both slices.
        let rows = predictions.as_ptr().add(group * 64);
        let product = |row: usize| _mm256_mul_ps(_mm256_loadu_ps(rows.add(row * 8)), w);
        let pairs_01 = _mm256_hadd_ps(product(0), product(1));
        let pairs_23 = _mm256_hadd_ps(product(2), product(3));
        let pairs_45 = _mm256_hadd_ps(product(4), product(5));
        let pairs_67 = _mm256_hadd_ps(product(6), product(7));
        // Lanes: sums of p0..p3 of rows 0..3 | sums of p4..p7 of rows 0..3 (and rows 4..7).
        let quads_0123 = _mm256_hadd_ps(pairs_01, pairs_23);
        let quads_4567 = _mm256_hadd_ps(pairs_45, pairs_67);
        let low = _mm256_permute2f128_ps::<0x20>(quads_0123, quads_4567);
        let high = _mm256_permute2f128_ps::<0x31>(quads_0123, quads_4567);
        _mm256_storeu_ps(scores.as_mut_ptr().add(group * 8), _mm256_add_ps(low, high));
    }
    for row in groups * 8..scores.len() {
        scores[row] = weighted_sums::<8>(&predictions[row * 8..row * 8 + 8], weights)[0];
    }
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

/// Estimate a 32-bit score key (see [`descending_key`]) that about 2k of the keys of `scores`
/// do not exceed, from a sample of 64 spread evenly.
///
/// Returns `None` when the input is too short for the filter to pay. Whether at least k keys
/// pass is checked by the caller, which falls back to selecting over all keys.
fn sampled_threshold(scores: &[f32], k: usize) -> Option<u32> {
    const SAMPLE: usize = 64;
    if scores.len() < 4 * SAMPLE || 4 * k > scores.len() {
        return None;
    }
    let stride = scores.len() / SAMPLE;
    let mut sample = [0u32; SAMPLE];
    for (slot, index) in sample.iter_mut().zip((0..scores.len()).step_by(stride)) {
        *slot = descending_key(scores[index]);
    }
    // Rank of the threshold in the sample: twice the expected share of the k best, plus 2.
    let rank = ((2 * k * SAMPLE).div_ceil(scores.len()) + 2).min(SAMPLE - 1);
    let (_, threshold, _) = sample.select_nth_unstable(rank);
    Some(*threshold)
}

/// Return the indices of the `k` best scores, best first, ties broken by the lower index and
/// NaN scores last. `k` larger than the number of scores returns them all.
///
/// Each candidate becomes one u64 key, score in the high half and index in the low half, so a
/// single integer comparison orders by score and then by index. A threshold estimated from a
/// sample drops most keys in the same branch-free pass that builds them, `select_nth_unstable`
/// partitions the k best of the rest in linear expected time, and only those k are sorted. The
/// key buffer is kept per thread and reused across calls.
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
    KEYS.with(|buffer| {
        let mut buffer = buffer.borrow_mut();
        let best = select_keys(scores, k, &mut buffer);
        Ok(best.iter().map(|&key| key as u32).collect())
    })
}

thread_local! {
    /// Key buffer of [`top_k`], reused by later calls on the same thread.
    static KEYS: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Largest key buffer kept between calls, in keys (8 MiB); a larger one is shrunk to the k keys
/// it returns.
const KEPT_KEYS: usize = 1 << 20;

/// Leave the `k` best keys of `scores`, sorted, in `buffer` and return them (1 <= k <= C).
fn select_keys<'b>(scores: &[f32], k: usize, buffer: &'b mut Vec<u64>) -> &'b [u64] {
    let key = |index: usize| (u64::from(descending_key(scores[index])) << 32) | index as u64;
    let mut length = scores.len();
    match sampled_threshold(scores, k) {
        Some(threshold) => {
            // Keep every candidate whose score is at least as good as the threshold's.
            length = filter_keys(scores, threshold, buffer);
            if length < k {
                // The sample misled the threshold: select over every key instead.
                buffer.clear();
                buffer.extend((0..scores.len()).map(key));
                length = scores.len();
            }
        }
        None => {
            buffer.clear();
            buffer.extend((0..scores.len()).map(key));
        }
    }
    buffer.truncate(length);
    if buffer.len() > k {
        buffer.select_nth_unstable(k - 1);
        buffer.truncate(k);
    }
    buffer.sort_unstable();
    if buffer.capacity() > KEPT_KEYS {
        buffer.shrink_to_fit();
    }
    &buffer[..]
}

/// Write the keys of the scores whose 32-bit key is at most `threshold` to the front of
/// `buffer` and return their count. `buffer` is resized as needed.
fn filter_keys(scores: &[f32], threshold: u32, buffer: &mut Vec<u64>) -> usize {
    // Eight slots of slack: the vector path stores whole groups of eight. Old contents are
    // overwritten, so the buffer is only grown, never cleared.
    if buffer.len() < scores.len() + LANES_8 {
        buffer.resize(scores.len() + LANES_8, 0);
    }
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports AVX2, checked once by `has_avx2_fma`.
        return unsafe { filter_keys_avx2(scores, threshold, buffer) };
    }
    filter_keys_scalar(scores, 0, threshold, buffer, 0)
}

const LANES_8: usize = 8;

/// Scalar filter of `scores[from..]`, appending after `length` kept keys; returns the new count.
/// Every key is written and only the kept ones advance the count, so there is no unpredictable
/// branch.
fn filter_keys_scalar(
    scores: &[f32],
    from: usize,
    threshold: u32,
    buffer: &mut [u64],
    mut length: usize,
) -> usize {
    for (index, &score) in scores.iter().enumerate().skip(from) {
        let key = descending_key(score);
        buffer[length] = (u64::from(key) << 32) | index as u64;
        length += usize::from(key <= threshold);
    }
    length
}

/// For each 8-lane mask, the lanes whose bit is set, in order, then zeros.
static LEFT_PACK: [[u32; LANES_8]; 256] = left_pack_table();

const fn left_pack_table() -> [[u32; LANES_8]; 256] {
    let mut table = [[0u32; LANES_8]; 256];
    let mut mask = 0;
    while mask < 256 {
        let (mut count, mut lane) = (0, 0);
        while lane < LANES_8 {
            if mask & (1 << lane) != 0 {
                table[mask][count] = lane as u32;
                count += 1;
            }
            lane += 1;
        }
        mask += 1;
    }
    table
}

/// [`filter_keys_scalar`] eight scores at a time: the keys of a group are computed in one
/// vector, the kept lanes are moved to the front by a permutation looked up from the compare
/// mask, and all eight lanes are stored while the count advances by the number kept.
///
/// # Safety
/// The CPU must support AVX2, and `buffer` must hold at least `scores.len() + 8` keys.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn filter_keys_avx2(scores: &[f32], threshold: u32, buffer: &mut [u64]) -> usize {
    use std::arch::x86_64::*;
    debug_assert!(buffer.len() >= scores.len() + LANES_8);
    let groups = scores.len() / LANES_8;
    let sign = _mm256_set1_epi32(i32::MIN);
    let ones = _mm256_set1_epi32(-1);
    let limit = _mm256_set1_epi32(threshold as i32);
    let step = _mm256_set1_epi32(LANES_8 as i32);
    let mut indices = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let mut length = 0usize;
    for group in 0..groups {
        // SAFETY (all loads and stores): group * 8 + 8 <= scores.len(), and the store at
        // `length` <= group * 8 writes 8 keys within scores.len() + 8.
        let values = _mm256_loadu_ps(scores.as_ptr().add(group * LANES_8));
        // `descending_key` on eight lanes: +0.0 folds -0.0 into +0.0, and NaN maps to u32::MAX.
        let bits = _mm256_castps_si256(_mm256_add_ps(values, _mm256_setzero_ps()));
        let flip = _mm256_or_si256(_mm256_srai_epi32::<31>(bits), sign);
        let keys = _mm256_xor_si256(_mm256_xor_si256(bits, flip), ones);
        let nan = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_UNORD_Q>(values, values));
        let keys = _mm256_or_si256(keys, nan);
        // Unsigned key <= threshold exactly when min(key, threshold) == key.
        let kept = _mm256_cmpeq_epi32(_mm256_min_epu32(keys, limit), keys);
        let mask = _mm256_movemask_ps(_mm256_castsi256_ps(kept)) as usize;
        let order = _mm256_loadu_si256(LEFT_PACK[mask].as_ptr().cast());
        let packed_keys = _mm256_permutevar8x32_epi32(keys, order);
        let packed_indices = _mm256_permutevar8x32_epi32(indices, order);
        // (key << 32) | index per lane, in lane order.
        let low = _mm256_unpacklo_epi32(packed_indices, packed_keys);
        let high = _mm256_unpackhi_epi32(packed_indices, packed_keys);
        let first = _mm256_permute2x128_si256::<0x20>(low, high);
        let second = _mm256_permute2x128_si256::<0x31>(low, high);
        let target = buffer.as_mut_ptr().add(length).cast::<__m256i>();
        _mm256_storeu_si256(target, first);
        _mm256_storeu_si256(target.add(1), second);
        length += mask.count_ones() as usize;
        indices = _mm256_add_epi32(indices, step);
    }
    filter_keys_scalar(scores, groups * LANES_8, threshold, buffer, length)
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
    fn eight_wide_sums_match_plain_sums() {
        let weights = [0.5, -1.0, 2.0, 0.25, 1.5, -0.75, 3.0, 0.125];
        // Row counts around the 8-row groups, so the scalar tail is covered too.
        for rows in [0, 1, 7, 8, 9, 16, 23] {
            let predictions: Vec<f32> = (0..rows * 8)
                .map(|i| ((i * 13) % 17) as f32 - 8.0)
                .collect();
            let fused = all_weighted_sums(&predictions, &weights);
            assert_eq!(fused.len(), rows);
            for (row, score) in fused.iter().enumerate() {
                let expected: f32 = predictions[row * 8..row * 8 + 8]
                    .iter()
                    .zip(&weights)
                    .map(|(p, w)| p * w)
                    .sum();
                assert!(
                    (score - expected).abs() <= 1e-5 * expected.abs().max(1.0),
                    "row {row}"
                );
            }
        }
    }

    #[test]
    fn filter_keeps_exactly_keys_within_threshold() {
        let scores: Vec<f32> = (0..45u32)
            .map(|i| match i % 9 {
                0 => f32::NAN,
                1 => -0.0,
                2 => 0.0,
                _ => (i % 7) as f32 - 3.0,
            })
            .collect();
        for threshold in [0, descending_key(1.0), descending_key(-2.0), u32::MAX] {
            let mut buffer = Vec::new();
            let kept = filter_keys(&scores, threshold, &mut buffer);
            let mut found: Vec<u64> = buffer[..kept].to_vec();
            found.sort_unstable();
            let mut expected: Vec<u64> = (0..scores.len())
                .map(|i| (u64::from(descending_key(scores[i])) << 32) | i as u64)
                .filter(|key| (key >> 32) as u32 <= threshold)
                .collect();
            expected.sort_unstable();
            assert_eq!(found, expected, "threshold {threshold}");
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
