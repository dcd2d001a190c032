//! Scoring of requests by a loaded [`Policy`]: one request with the hand-written kernels, many
//! with GEMM.

use std::borrow::Cow;
use std::sync::atomic::Ordering;

use super::kernels::{add_matmul_transposed, all_finite, dot};
use super::mlp::broadcast_rows;
use super::policy::{Candidates, Model, Policy, Requests};
use super::select::{all_weighted_sums, fuse, non_finite_candidate, top_k, FusionMode, NonFinite};
use crate::error::{Error, Result};

/// Reject the first non-finite value of `values` [rows, width], naming request and position.
fn check_finite_states(values: &[f32], width: usize, batch: bool) -> Result<()> {
    if all_finite(values) {
        return Ok(());
    }
    let Some(position) = values.iter().position(|v| !v.is_finite()) else {
        return Ok(());
    };
    let value = values[position];
    if batch {
        let (row, column) = (position / width.max(1), position % width.max(1));
        Err(Error::invalid(
            "states",
            format!("request {row} has the non-finite value {value} at position {column}"),
        ))
    } else {
        Err(Error::invalid(
            "state",
            format!("the value at position {position} is {value}, expected a finite number"),
        ))
    }
}

impl Policy {
    /// Score the candidates of one request (`requests.rows == 1`); returns [C].
    pub fn score(
        &self,
        requests: &Requests<'_>,
        candidates: Candidates<'_>,
        invalid: NonFinite,
    ) -> Result<Vec<f32>> {
        if requests.rows != 1 {
            return Err(Error::shape(
                "state",
                "one request",
                requests.rows.to_string(),
            ));
        }
        let count = match candidates {
            Candidates::Ids(ids) => ids.len(),
            Candidates::Rows { values, width } => values.len() / width.max(1),
        };
        self.score_requests(requests, candidates, count, invalid, 1, false)
    }

    /// Score `count` candidates for each of `requests.rows` requests; returns [rows, count].
    ///
    /// The work runs in the calling thread unless `threads` > 1, which splits the GEMM of the
    /// network over the rayon pool.
    pub fn score_batch(
        &self,
        requests: &Requests<'_>,
        candidates: Candidates<'_>,
        count: usize,
        invalid: NonFinite,
        threads: usize,
    ) -> Result<Vec<f32>> {
        self.score_requests(requests, candidates, count, invalid, threads, true)
    }

    /// Score one request and return the indices and scores of its `k` best candidates.
    pub fn top_k(
        &self,
        requests: &Requests<'_>,
        candidates: Candidates<'_>,
        k: usize,
        invalid: NonFinite,
    ) -> Result<(Vec<u32>, Vec<f32>)> {
        let scores = self.score(requests, candidates, invalid)?;
        let indices = top_k(&scores, k)?;
        let best = indices.iter().map(|&i| scores[i as usize]).collect();
        Ok((indices, best))
    }

    /// Run the policy's MLP on raw inputs [rows, input width]; returns [rows, outputs].
    ///
    /// Available for MLP policies and for categorical policies without a state encoder (the
    /// output is then the preference vector). One row takes the hand-written path.
    pub fn forward(&self, inputs: &[f32], rows: usize, threads: usize) -> Result<Vec<f32>> {
        let mlp = match &self.model {
            Model::Mlp { mlp, .. } => mlp,
            Model::Categorical {
                encoder: None,
                preference,
                ..
            } => preference,
            _ => {
                return Err(Error::invalid(
                    "forward",
                    format!(
                        "available for MLP policies and categorical policies without a state \
                         encoder, not for this {} policy",
                        self.kind()
                    ),
                ))
            }
        };
        let width = mlp.input_dim();
        if inputs.len() != rows * width {
            return Err(Error::shape(
                "inputs",
                format!("({rows}, {width})"),
                format!("{} values", inputs.len()),
            ));
        }
        if !all_finite(inputs) {
            let position = inputs.iter().position(|v| !v.is_finite()).unwrap_or(0);
            return Err(Error::invalid(
                "inputs",
                format!(
                    "row {} has the non-finite value {} at position {}",
                    position / width.max(1),
                    inputs[position],
                    position % width.max(1)
                ),
            ));
        }
        let inputs = self.normalised(inputs, 0, width);
        if rows == 1 {
            Ok(mlp.forward_one(&inputs))
        } else {
            Ok(mlp.forward_batch(&inputs, rows, threads))
        }
    }

    /// `values` [rows, width] standardised with statistics `offset .. offset + width`, or the
    /// input itself when the policy has no normalisation.
    fn normalised<'v>(&self, values: &'v [f32], offset: usize, width: usize) -> Cow<'v, [f32]> {
        match &self.normalisation {
            Some(stats) if width > 0 => {
                let mut copy = values.to_vec();
                let part = super::policy::Normalisation {
                    mean: stats.mean[offset..offset + width].to_vec(),
                    std: stats.std[offset..offset + width].to_vec(),
                };
                part.apply_rows(&mut copy);
                Cow::Owned(copy)
            }
            _ => Cow::Borrowed(values),
        }
    }

    fn check_requests(&self, requests: &Requests<'_>, batch: bool) -> Result<()> {
        let rows = requests.rows;
        let (state_name, codes_name, history_name) = if batch {
            ("states", "categorical", "history")
        } else {
            ("state", "categorical", "history")
        };
        let state_dim = self.state_dim();
        if requests.states.len() != rows * state_dim {
            return Err(Error::shape(
                state_name,
                format!("{} float32 values ({rows} x {state_dim})", rows * state_dim),
                requests.states.len().to_string(),
            ));
        }
        let fields = self.categorical_fields();
        if requests.categorical.len() != rows * fields {
            return Err(Error::shape(
                codes_name,
                format!("{} int64 codes ({rows} x {fields})", rows * fields),
                requests.categorical.len().to_string(),
            ));
        }
        if !self.uses_history() && !requests.history.is_empty() {
            return Err(Error::invalid(
                history_name,
                "this policy's state has no item history; pass none",
            ));
        }
        if rows > 0 && !requests.history.len().is_multiple_of(rows) {
            return Err(Error::shape(
                history_name,
                format!("a multiple of {rows} ids"),
                requests.history.len().to_string(),
            ));
        }
        check_finite_states(requests.states, state_dim, batch)
    }

    fn score_requests(
        &self,
        requests: &Requests<'_>,
        candidates: Candidates<'_>,
        count: usize,
        invalid: NonFinite,
        threads: usize,
        batch: bool,
    ) -> Result<Vec<f32>> {
        self.check_requests(requests, batch)?;
        let rows = requests.rows;
        let width = self.candidate_width();
        match (&self.model, candidates) {
            (Model::Categorical { .. }, Candidates::Ids(ids)) => {
                if ids.len() != rows * count {
                    return Err(Error::shape(
                        "candidates",
                        format!("{} ids ({rows} x {count})", rows * count),
                        ids.len().to_string(),
                    ));
                }
                Ok(self.score_categorical(requests, ids, count, threads))
            }
            (Model::Categorical { .. }, Candidates::Rows { .. }) => Err(Error::invalid(
                "candidates",
                "a categorical policy scores int64 item ids, not float rows",
            )),
            (_, Candidates::Ids(_)) => Err(Error::invalid(
                "candidates",
                format!(
                    "this {} policy scores float32 rows of {width} values per candidate, not ids",
                    self.kind()
                ),
            )),
            (
                _,
                Candidates::Rows {
                    values,
                    width: given,
                },
            ) => {
                if given != width || values.len() != rows * count * width {
                    return Err(Error::shape(
                        "candidates",
                        format!(
                            "{} float32 values ({rows} x {count} x {width})",
                            rows * count * width
                        ),
                        format!("{} values of width {given}", values.len()),
                    ));
                }
                self.score_rows(requests, values, count, invalid, threads)
            }
        }
    }

    /// Encoder outputs (or normalised states) [rows, preference input] of categorical requests.
    fn preference_inputs(&self, requests: &Requests<'_>) -> Vec<f32> {
        let Model::Categorical { encoder, items, .. } = &self.model else {
            unreachable!("preference inputs of a categorical policy only");
        };
        let state_dim = self.state_dim();
        let states = self.normalised(requests.states, 0, state_dim);
        let Some(encoder) = encoder else {
            return states.into_owned();
        };
        let rows = requests.rows;
        let fields = encoder.cardinalities.len();
        let history_width = requests.history.len().checked_div(rows).unwrap_or(0);
        let mut inputs = Vec::with_capacity(rows * encoder.output_dim());
        let mut unknown = 0u64;
        for r in 0..rows {
            encoder.encode(
                &states[r * state_dim..(r + 1) * state_dim],
                &requests.categorical[r * fields..(r + 1) * fields],
                &requests.history[r * history_width..(r + 1) * history_width],
                items,
                &mut unknown,
                &mut inputs,
            );
        }
        self.unknown_history_add(unknown);
        inputs
    }

    fn score_categorical(
        &self,
        requests: &Requests<'_>,
        ids: &[i64],
        count: usize,
        threads: usize,
    ) -> Vec<f32> {
        let Model::Categorical {
            preference,
            item_embeddings,
            items,
            ..
        } = &self.model
        else {
            unreachable!("categorical scoring of a categorical policy only");
        };
        let rows = requests.rows;
        let inputs = self.preference_inputs(requests);
        let preferences = if rows == 1 {
            preference.forward_one(&inputs)
        } else {
            preference.forward_batch(&inputs, rows, threads)
        };

        // Eq. score_j = <a, phi_j>, with unknown ids scored by the embedding of index 0.
        let width = preference.output_dim();
        let mut scores = Vec::with_capacity(ids.len());
        let mut unknown = 0u64;
        for r in 0..rows {
            let preference = &preferences[r * width..(r + 1) * width];
            for &raw in &ids[r * count..(r + 1) * count] {
                let index = items.index(raw);
                unknown += u64::from(index == 0);
                scores.push(dot(
                    preference,
                    &item_embeddings[index * width..(index + 1) * width],
                ));
            }
        }
        self.unknown_candidates
            .fetch_add(unknown, Ordering::Relaxed);
        scores
    }

    fn unknown_history_add(&self, count: u64) {
        if count > 0 {
            self.unknown_history_counter()
                .fetch_add(count, Ordering::Relaxed);
        }
    }

    /// Score candidates given as float rows: an MLP over [state, candidate], or plain fusion.
    fn score_rows(
        &self,
        requests: &Requests<'_>,
        values: &[f32],
        count: usize,
        invalid: NonFinite,
        threads: usize,
    ) -> Result<Vec<f32>> {
        let total = requests.rows * count;
        let width = self.candidate_width();

        // A weighted-sum fusion whose scores are all finite had finite inputs (see `fuse`), so
        // the scan of the inputs below is only needed when some score is not.
        if let Model::Fusion {
            mode: FusionMode::WeightedSum,
            weights,
        } = &self.model
        {
            let scores = all_weighted_sums(values, weights);
            if all_finite(&scores) {
                return Ok(scores);
            }
        }

        // Candidates with NaN or infinite inputs: rejected, or scored NaN at the end.
        let mut ranked_last = Vec::new();
        let rows_to_check = if all_finite(values) { 0 } else { total };
        for (candidate, row) in values
            .chunks_exact(width.max(1))
            .enumerate()
            .take(rows_to_check)
        {
            if let Some(position) = row.iter().position(|v| !v.is_finite()) {
                let argument = "candidates";
                non_finite_candidate(
                    invalid,
                    argument,
                    candidate % count.max(1),
                    position,
                    row[position],
                )
                .map_err(|error| with_request(error, candidate / count.max(1), requests.rows))?;
                ranked_last.push(candidate);
            }
        }

        let mut scores = match &self.model {
            Model::Fusion { mode, weights } => fuse(values, weights, *mode, NonFinite::RankLast)?,
            Model::Mlp {
                mlp,
                state_dim,
                candidate_dim,
                fusion,
            } => {
                let outputs = self.forward_candidates(
                    requests,
                    values,
                    count,
                    *state_dim,
                    *candidate_dim,
                    threads,
                );
                match fusion {
                    Some((mode, weights)) => fuse(&outputs, weights, *mode, NonFinite::RankLast)?,
                    None => {
                        debug_assert_eq!(mlp.output_dim(), 1);
                        outputs
                    }
                }
            }
            Model::Categorical { .. } => unreachable!("categorical policies score ids"),
        };

        // Finite inputs whose score overflowed, and negative predictions under the product.
        for (candidate, score) in scores.iter_mut().enumerate() {
            if score.is_nan() && !ranked_last.contains(&candidate) {
                let position = candidate % count.max(1);
                *score = match invalid {
                    NonFinite::Raise => {
                        return Err(with_request(
                            Error::invalid(
                                "candidates",
                                format!(
                                    "candidate {position} has a finite input but no finite score \
                                     (overflow, or a negative prediction under the product \
                                     fusion); pass invalid=\"rank_last\" to rank it last"
                                ),
                            ),
                            candidate / count.max(1),
                            requests.rows,
                        ))
                    }
                    NonFinite::RankLast => f32::NAN,
                };
            }
        }
        for candidate in ranked_last {
            scores[candidate] = f32::NAN;
        }
        Ok(scores)
    }

    /// MLP outputs [rows * count, outputs] for the rows `[state_r, candidate_rj]`.
    ///
    /// The first layer is split: `W [s; c] = W_s s + W_c c`, so the request part is computed
    /// once per request instead of once per candidate.
    fn forward_candidates(
        &self,
        requests: &Requests<'_>,
        values: &[f32],
        count: usize,
        state_dim: usize,
        candidate_dim: usize,
        threads: usize,
    ) -> Vec<f32> {
        let Model::Mlp { mlp, .. } = &self.model else {
            unreachable!("MLP forward of an MLP policy only");
        };
        let rows = requests.rows;
        let first = &mlp.layers[0];
        let hidden_width = first.outputs;
        let states = self.normalised(requests.states, 0, state_dim);
        let candidates = self.normalised(values, state_dim, candidate_dim);

        let mut request_part = broadcast_rows(&first.bias, rows);
        if rows == 1 {
            first.add_columns(0, &states, &mut request_part);
        } else {
            add_matmul_transposed(
                &states,
                &first.weight,
                first.inputs,
                &mut request_part,
                rows,
                state_dim,
                hidden_width,
                threads,
            );
        }
        let mut hidden = Vec::with_capacity(rows * count * hidden_width);
        for r in 0..rows {
            let part = &request_part[r * hidden_width..(r + 1) * hidden_width];
            for _ in 0..count {
                hidden.extend_from_slice(part);
            }
        }
        let total = rows * count;
        if total == 1 {
            first.add_columns(state_dim, &candidates, &mut hidden);
            return mlp.forward_one_from(1, hidden);
        }
        if candidate_dim > 0 && total > 0 {
            add_matmul_transposed(
                &candidates,
                &first.weight[state_dim..],
                first.inputs,
                &mut hidden,
                total,
                candidate_dim,
                hidden_width,
                threads,
            );
        }
        mlp.forward_batch_from(1, hidden, total, threads)
    }
}

/// Prefix the request index to a candidate error when several requests were scored together.
fn with_request(error: Error, request: usize, rows: usize) -> Error {
    match error {
        Error::InvalidArgument { argument, message } if rows > 1 => Error::InvalidArgument {
            argument,
            message: format!("request {request}: {message}"),
        },
        other => other,
    }
}
