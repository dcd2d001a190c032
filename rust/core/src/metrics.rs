//! Classification metrics for multi-task recommendation models: AUC, grouped AUC (per user or per
//! session), logloss and session logloss, over tens of millions of rows.
//!
//! AUC is the Mann-Whitney statistic: the share of (positive, negative) pairs in which the
//! positive scores higher, a tied pair counting 1/2. This equals the area under the ROC curve with
//! ties drawn as diagonal segments, which is what `sklearn.metrics.roc_auc_score` computes.
//!
//! Every kernel validates its input first and names the first bad row: labels must be exactly 0
//! or 1 and scores must not be NaN (logloss also needs scores in [0, 1]). Sums are taken over
//! fixed chunks or in group order, so results do not depend on the number of threads.

use rayon::prelude::*;

use crate::error::{check_len, Error, Result};

/// Rows per parallel chunk of a reduction. The size is fixed so that float sums are reproducible.
const CHUNK: usize = 1 << 16;

/// A binary label stored as `u8`, `f32` or `f64`, valid only when exactly 0 or 1.
pub trait Label: Copy + Send + Sync {
    /// Return `Some(true)` for 1, `Some(false)` for 0 and `None` for anything else.
    fn class(self) -> Option<bool>;
    /// Format the value for an error message.
    fn describe(self) -> String;
}

impl Label for u8 {
    fn class(self) -> Option<bool> {
        match self {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }
    fn describe(self) -> String {
        self.to_string()
    }
}

macro_rules! float_label {
    ($t:ty) => {
        impl Label for $t {
            fn class(self) -> Option<bool> {
                if self == 0.0 {
                    Some(false)
                } else if self == 1.0 {
                    Some(true)
                } else {
                    None
                }
            }
            fn describe(self) -> String {
                format!("{self:?}")
            }
        }
    };
}
float_label!(f32);
float_label!(f64);

/// A score stored as `f32` or `f64`.
pub trait Score: Copy + Send + Sync {
    /// Convert the value to `f64`.
    fn to_f64(self) -> f64;
    /// Map the value to an integer key whose order is the numeric order of the scores, with
    /// -0.0 equal to 0.0. The key of NaN is meaningless, so callers reject NaN first.
    fn sort_key(self) -> u64;
}

impl Score for f32 {
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    fn sort_key(self) -> u64 {
        // Adding 0.0 turns -0.0 into 0.0. Flipping the sign bit of non-negative values and all
        // bits of negative ones makes the unsigned order match the float order.
        let bits = (self + 0.0).to_bits();
        let key = if bits >> 31 == 1 {
            !bits
        } else {
            bits | (1 << 31)
        };
        u64::from(key)
    }
}

impl Score for f64 {
    fn to_f64(self) -> f64 {
        self
    }
    fn sort_key(self) -> u64 {
        let bits = (self + 0.0).to_bits();
        if bits >> 63 == 1 {
            !bits
        } else {
            bits | (1 << 63)
        }
    }
}

/// AUC of one set of rows, with the class counts that decide whether it is defined.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Auc {
    /// The AUC, or NaN when one class is absent.
    pub value: f64,
    /// Rows labelled 1.
    pub positives: u64,
    /// Rows labelled 0.
    pub negatives: u64,
}

/// Weighting of the per-group AUCs in grouped AUC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupWeighting {
    /// Weight each group by its number of rows.
    Size,
    /// Weight every group equally.
    Uniform,
}

/// Grouped AUC with the counts of groups used and skipped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupedAuc {
    /// Weighted mean of the per-group AUCs, or NaN when no group has both classes.
    pub value: f64,
    /// Groups with both classes, which enter the mean.
    pub groups_used: u64,
    /// Groups with a single class, whose AUC is undefined and which are left out.
    pub groups_skipped: u64,
}

/// Session logloss with the number of sessions averaged over.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SessionLogloss {
    /// Mean over sessions of the mean binary cross-entropy within each session.
    pub value: f64,
    /// Distinct session ids.
    pub sessions: u64,
}

/// Check lengths, emptiness, labels in {0, 1} and scores not NaN. With `probabilities`, scores
/// must also lie in [0, 1].
fn validate<L: Label, S: Score>(labels: &[L], scores: &[S], probabilities: bool) -> Result<()> {
    if labels.is_empty() {
        return Err(Error::invalid(
            "labels",
            "expected at least one row, got an empty array",
        ));
    }
    check_len("scores", scores, labels.len())?;

    if let Some(row) = first_row_where(labels, |l| l.class().is_none()) {
        return Err(Error::InvalidValue {
            column: "labels".into(),
            row: row as u64,
            message: format!("expected 0 or 1, got {}", labels[row].describe()),
        });
    }

    let bad_score = |s: &S| {
        let v = s.to_f64();
        v.is_nan() || (probabilities && !(0.0..=1.0).contains(&v))
    };
    if let Some(row) = first_row_where(scores, bad_score) {
        let expected = if probabilities {
            "a probability in [0, 1]"
        } else {
            "a number"
        };
        return Err(Error::InvalidValue {
            column: "scores".into(),
            row: row as u64,
            message: format!("expected {expected}, got {}", scores[row].to_f64()),
        });
    }
    Ok(())
}

/// Return the first row of `values` for which `is_bad` holds.
///
/// Scans every chunk in parallel without stopping early: valid input is the common case, and
/// a per-chunk scan is much cheaper than the per-item bookkeeping of a short-circuiting search.
fn first_row_where<T: Sync>(values: &[T], is_bad: impl Fn(&T) -> bool + Sync) -> Option<usize> {
    values
        .par_chunks(CHUNK)
        .enumerate()
        .filter_map(|(chunk, part)| part.iter().position(&is_bad).map(|i| chunk * CHUNK + i))
        .min()
}

/// Compute the AUC of `scores` against `labels`, ties counted as 1/2.
///
/// Returns NaN (with the class counts) when all rows have the same label.
///
/// # Errors
/// Empty input, unequal lengths, a label other than 0 or 1, or a NaN score, naming the row.
pub fn auc<L: Label, S: Score>(labels: &[L], scores: &[S]) -> Result<Auc> {
    validate(labels, scores, false)?;

    // Sort the score keys of each class, then count for every positive the negatives below it
    // (and half of those equal to it) by walking both sorted lists together.
    let (mut positives, mut negatives) = class_keys(labels, scores);
    rayon::join(|| radix_sort(&mut positives), || radix_sort(&mut negatives));
    let (n_pos, n_neg) = (positives.len() as u64, negatives.len() as u64);
    if n_pos == 0 || n_neg == 0 {
        return Ok(Auc {
            value: f64::NAN,
            positives: n_pos,
            negatives: n_neg,
        });
    }

    let twice_wins: u128 = positives
        .par_chunks(CHUNK)
        .map(|chunk| twice_wins_of_chunk(chunk, &negatives))
        .sum();
    Ok(Auc {
        value: twice_wins as f64 / (2.0 * n_pos as f64 * n_neg as f64),
        positives: n_pos,
        negatives: n_neg,
    })
}

/// Split the score keys into those of positive rows and those of negative rows.
///
/// Counts the positives of each chunk first, so that every chunk writes its keys straight into
/// its own part of the two outputs.
fn class_keys<L: Label, S: Score>(labels: &[L], scores: &[S]) -> (Vec<u64>, Vec<u64>) {
    let chunk_positives: Vec<usize> = labels
        .par_chunks(CHUNK)
        .map(|part| part.iter().filter(|l| l.class() == Some(true)).count())
        .collect();
    let total_positives: usize = chunk_positives.iter().sum();
    let mut positives = vec![0u64; total_positives];
    let mut negatives = vec![0u64; labels.len() - total_positives];

    let mut outputs = Vec::with_capacity(chunk_positives.len());
    let (mut positive_rest, mut negative_rest) = (&mut positives[..], &mut negatives[..]);
    for (chunk, &count) in chunk_positives.iter().enumerate() {
        let rows = CHUNK.min(labels.len() - chunk * CHUNK);
        let (positive_part, positive_tail) = positive_rest.split_at_mut(count);
        let (negative_part, negative_tail) = negative_rest.split_at_mut(rows - count);
        outputs.push((positive_part, negative_part));
        (positive_rest, negative_rest) = (positive_tail, negative_tail);
    }

    labels
        .par_chunks(CHUNK)
        .zip(scores.par_chunks(CHUNK))
        .zip(outputs.into_par_iter())
        .for_each(|((labels, scores), (positive_part, negative_part))| {
            let (mut p, mut n) = (0, 0);
            for (label, score) in labels.iter().zip(scores) {
                if label.class() == Some(true) {
                    positive_part[p] = score.sort_key();
                    p += 1;
                } else {
                    negative_part[n] = score.sort_key();
                    n += 1;
                }
            }
        });
    (positives, negatives)
}

/// Sort items by a `u64` key with a least-significant-digit radix sort, 8 bits per pass.
///
/// The sort is stable. Passes in which every key has the same digit are skipped, so float32
/// keys (upper four bytes zero) take at most four passes and a million group ids three.
fn radix_sort_by_key<T: Copy + Default>(items: &mut Vec<T>, key: impl Fn(&T) -> u64) {
    let mut counts = vec![[0usize; 256]; 8];
    for item in items.iter() {
        let value = key(item);
        for (digit, count) in counts.iter_mut().enumerate() {
            count[((value >> (8 * digit)) & 0xff) as usize] += 1;
        }
    }

    let mut buffer = vec![T::default(); items.len()];
    for (digit, count) in counts.iter().enumerate() {
        if count.contains(&items.len()) {
            continue;
        }
        let mut offsets = [0usize; 256];
        let mut total = 0;
        for (offset, &n) in offsets.iter_mut().zip(count.iter()) {
            *offset = total;
            total += n;
        }
        for item in items.iter() {
            let bucket = ((key(item) >> (8 * digit)) & 0xff) as usize;
            buffer[offsets[bucket]] = *item;
            offsets[bucket] += 1;
        }
        std::mem::swap(items, &mut buffer);
    }
}

/// Sort keys, by radix sort above a few thousand keys.
fn radix_sort(keys: &mut Vec<u64>) {
    if keys.len() < 1 << 12 {
        keys.sort_unstable();
    } else {
        radix_sort_by_key(keys, |&k| k);
    }
}

/// Sum over the sorted positive keys of `2 * (negatives below) + (negatives equal)`.
fn twice_wins_of_chunk(positives: &[u64], negatives: &[u64]) -> u128 {
    let first = positives[0];
    let mut below = negatives.partition_point(|&n| n < first);
    let mut below_or_equal = below;
    let mut total: u128 = 0;
    for &p in positives {
        while below < negatives.len() && negatives[below] < p {
            below += 1;
        }
        if below_or_equal < below {
            below_or_equal = below;
        }
        while below_or_equal < negatives.len() && negatives[below_or_equal] <= p {
            below_or_equal += 1;
        }
        total += (below + below_or_equal) as u128;
    }
    total
}

/// Build one item per row with `make`, keyed by the row's group id, and bring equal ids
/// together. Returns the items and the CSR offsets of the groups among them.
///
/// Groups appear in increasing id order and rows keep their original order within a group,
/// so sums over a group are reproducible. When the ids are already non-decreasing, no sort is
/// needed. Each item carries what the group needs, so that the per-group work reads memory in
/// order instead of gathering rows at random.
fn group_by_key<T: Copy + Default + Send + Sync>(
    groups: &[i64],
    make: impl Fn(usize) -> T + Sync,
) -> (Vec<(u64, T)>, Vec<usize>) {
    // Flipping the sign bit orders i64 ids as u64 keys.
    let mut items: Vec<(u64, T)> = groups
        .par_iter()
        .enumerate()
        .map(|(row, &g)| ((g as u64) ^ (1 << 63), make(row)))
        .collect();
    if !groups.par_windows(2).all(|w| w[0] <= w[1]) {
        radix_sort_by_key(&mut items, |&(key, _)| key);
    }

    let mut starts: Vec<usize> = std::iter::once(0)
        .chain(
            (1..items.len())
                .into_par_iter()
                .filter(|&i| items[i].0 != items[i - 1].0)
                .collect::<Vec<_>>(),
        )
        .collect();
    starts.push(items.len());
    (items, starts)
}

/// Compute the AUC within each group and average the defined ones.
///
/// Groups are the distinct values of `groups`, whose rows need not be contiguous. A group whose
/// rows all have the same label has no AUC; it is skipped and counted in `groups_skipped`.
///
/// # Errors
/// Those of [`auc`], plus a `groups` length that differs from `labels`.
pub fn grouped_auc<L: Label, S: Score>(
    labels: &[L],
    scores: &[S],
    groups: &[i64],
    weighting: GroupWeighting,
) -> Result<GroupedAuc> {
    validate(labels, scores, false)?;
    check_len("groups", groups, labels.len())?;

    let (items, starts) = group_by_key(groups, |row| {
        (scores[row].sort_key(), labels[row].class() == Some(true))
    });

    // Per group: copy (score key, label), sort by score and walk runs of tied scores.
    let per_group: Vec<Option<(f64, f64)>> = starts
        .par_windows(2)
        .map_init(Vec::new, |buffer: &mut Vec<(u64, bool)>, bounds| {
            buffer.clear();
            buffer.extend(items[bounds[0]..bounds[1]].iter().map(|&(_, item)| item));
            buffer.sort_unstable();
            let auc = auc_of_sorted(buffer)?;
            let weight = match weighting {
                GroupWeighting::Size => buffer.len() as f64,
                GroupWeighting::Uniform => 1.0,
            };
            Some((auc, weight))
        })
        .collect();

    let (mut weighted_sum, mut weight_sum, mut used) = (0.0, 0.0, 0u64);
    for (auc, weight) in per_group.iter().flatten() {
        weighted_sum += auc * weight;
        weight_sum += weight;
        used += 1;
    }
    let value = if used == 0 {
        f64::NAN
    } else {
        weighted_sum / weight_sum
    };
    Ok(GroupedAuc {
        value,
        groups_used: used,
        groups_skipped: per_group.len() as u64 - used,
    })
}

/// AUC of (score key, is positive) pairs sorted by key, or `None` when one class is absent.
fn auc_of_sorted(rows: &[(u64, bool)]) -> Option<f64> {
    let (mut negatives_below, mut twice_wins, mut positives) = (0u64, 0u64, 0u64);
    let mut start = 0;
    while start < rows.len() {
        let mut end = start;
        let (mut run_pos, mut run_neg) = (0u64, 0u64);
        while end < rows.len() && rows[end].0 == rows[start].0 {
            if rows[end].1 {
                run_pos += 1;
            } else {
                run_neg += 1;
            }
            end += 1;
        }
        twice_wins += run_pos * (2 * negatives_below + run_neg);
        negatives_below += run_neg;
        positives += run_pos;
        start = end;
    }
    let negatives = negatives_below;
    if positives == 0 || negatives == 0 {
        return None;
    }
    Some(twice_wins as f64 / (2.0 * positives as f64 * negatives as f64))
}

/// Binary cross-entropy of one row with the probability clipped to `[eps, 1 - eps]`.
fn cross_entropy(positive: bool, probability: f64, eps: f64) -> f64 {
    let p = probability.clamp(eps, 1.0 - eps);
    if positive {
        -p.ln()
    } else {
        -(1.0 - p).ln()
    }
}

fn check_eps(eps: f64) -> Result<()> {
    if eps.is_finite() && (0.0..0.5).contains(&eps) {
        Ok(())
    } else {
        Err(Error::invalid(
            "eps",
            format!("expected a value in [0, 0.5), got {eps}"),
        ))
    }
}

/// Compute the mean binary cross-entropy, probabilities clipped to `[eps, 1 - eps]`.
///
/// Clipping keeps the loss finite when a model outputs exactly 0 or 1 for the wrong class.
///
/// # Errors
/// Empty input, unequal lengths, a label other than 0 or 1, a score outside [0, 1] or NaN,
/// naming the row, or `eps` outside [0, 0.5).
pub fn logloss<L: Label, S: Score>(labels: &[L], scores: &[S], eps: f64) -> Result<f64> {
    check_eps(eps)?;
    validate(labels, scores, true)?;

    let partial_sums: Vec<f64> = labels
        .par_chunks(CHUNK)
        .zip(scores.par_chunks(CHUNK))
        .map(|(labels, scores)| {
            labels
                .iter()
                .zip(scores)
                .map(|(l, s)| cross_entropy(l.class() == Some(true), s.to_f64(), eps))
                .sum::<f64>()
        })
        .collect();
    Ok(partial_sums.iter().sum::<f64>() / labels.len() as f64)
}

/// Compute the mean over sessions of the mean binary cross-entropy within each session.
///
/// Every session weighs the same whatever its length, so long sessions do not dominate.
/// Probabilities are clipped to `[eps, 1 - eps]` as in [`logloss`].
///
/// # Errors
/// Those of [`logloss`], plus a `sessions` length that differs from `labels`.
pub fn session_logloss<L: Label, S: Score>(
    labels: &[L],
    scores: &[S],
    sessions: &[i64],
    eps: f64,
) -> Result<SessionLogloss> {
    check_eps(eps)?;
    validate(labels, scores, true)?;
    check_len("sessions", sessions, labels.len())?;

    let (losses, starts) = group_by_key(sessions, |row| {
        cross_entropy(labels[row].class() == Some(true), scores[row].to_f64(), eps)
    });
    let session_means: Vec<f64> = starts
        .par_windows(2)
        .map(|bounds| {
            let total: f64 = losses[bounds[0]..bounds[1]]
                .iter()
                .map(|&(_, loss)| loss)
                .sum();
            total / (bounds[1] - bounds[0]) as f64
        })
        .collect();
    Ok(SessionLogloss {
        value: session_means.iter().sum::<f64>() / session_means.len() as f64,
        sessions: session_means.len() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_counts_tied_pair_as_half() {
        let result = auc(&[1u8, 0], &[0.5f32, 0.5]).unwrap();
        assert_eq!(result.value, 0.5);
    }

    #[test]
    fn auc_with_ties_matches_hand_count() {
        // Pairs: (0.8 vs 0.8) tie = 1/2, (0.8 vs 0.1) win, (0.3 vs 0.8) loss, (0.3 vs 0.1) win.
        let value = auc(&[1u8, 0, 1, 0], &[0.8f64, 0.8, 0.3, 0.1])
            .unwrap()
            .value;
        assert_eq!(value, 0.625);
        let value = auc(&[0u8, 1, 0, 1], &[0.1f64, 0.3, 0.8, 0.8])
            .unwrap()
            .value;
        assert_eq!(value, 0.625);
    }

    #[test]
    fn auc_of_one_class_is_nan() {
        let result = auc(&[1.0f32, 1.0, 1.0], &[0.1f32, 0.2, 0.3]).unwrap();
        assert!(result.value.is_nan());
        assert_eq!((result.positives, result.negatives), (3, 0));
    }

    #[test]
    fn negative_zero_ties_with_zero() {
        let value = auc(&[1u8, 0], &[-0.0f64, 0.0]).unwrap().value;
        assert_eq!(value, 0.5);
    }

    #[test]
    fn radix_sort_orders_keys() {
        let mut state = 12345u64;
        let mut keys: Vec<u64> = (0..10_000)
            .map(|i| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                if i % 3 == 0 {
                    state >> 40
                } else {
                    state
                }
            })
            .collect();
        let mut expected = keys.clone();
        expected.sort_unstable();
        radix_sort(&mut keys);
        assert_eq!(keys, expected);
    }

    #[test]
    fn bad_rows_are_named() {
        let error = auc(&[1u8, 2], &[0.1f32, 0.2]).unwrap_err().to_string();
        assert!(error.contains("row 1"), "{error}");
        let error = auc(&[1u8, 0], &[0.1f32, f32::NAN]).unwrap_err().to_string();
        assert!(error.contains("row 1"), "{error}");
        let error = logloss(&[1u8, 0], &[0.1f32, 1.5], 1e-7)
            .unwrap_err()
            .to_string();
        assert!(error.contains("row 1"), "{error}");
        assert!(auc::<u8, f32>(&[], &[]).is_err());
    }

    #[test]
    fn grouped_auc_skips_single_class_groups() {
        let labels = [1u8, 0, 1, 1, 0, 1];
        let scores = [0.9f64, 0.1, 0.5, 0.2, 0.7, 0.6];
        // Group 7 (rows 0, 1, 4): positive 0.9 beats 0.1 and 0.7, AUC 1. Group 3 (rows 2, 5):
        // positives only, skipped. Group -1 (row 3): skipped.
        let groups = [7i64, 7, 3, -1, 7, 3];
        let result = grouped_auc(&labels, &scores, &groups, GroupWeighting::Size).unwrap();
        assert_eq!(result.value, 1.0);
        assert_eq!((result.groups_used, result.groups_skipped), (1, 2));
    }

    #[test]
    fn session_logloss_weighs_sessions_equally() {
        let labels = [1u8, 1, 0];
        let scores = [0.5f64, 0.5, 0.5];
        let sessions = [2i64, 1, 1];
        let result = session_logloss(&labels, &scores, &sessions, 1e-7).unwrap();
        assert!((result.value - std::f64::consts::LN_2).abs() < 1e-12);
        assert_eq!(result.sessions, 2);
    }

    #[test]
    fn logloss_clips_probabilities() {
        let value = logloss(&[1u8], &[0.0f64], 1e-7).unwrap();
        assert!((value - (-(1e-7f64).ln())).abs() < 1e-9);
    }
}
