//! Copying the drawn slots into the caller's output arrays, several rows per rayon task.

use rayon::prelude::*;

use std::sync::atomic::Ordering;

use super::{check_width, BatchMut, Storage, AHEAD};
use crate::error::{Error, Result};
use crate::memory::prefetch;

impl Storage {
    /// Start loading the per-slot values that [`Storage::gather`] copies for `slot`, past the
    /// rows it leaves to the hardware prefetcher.
    #[inline(always)]
    fn prefetch_flags(&self, slot: usize) {
        prefetch(&self.terminals[slot]);
        prefetch(&self.truncations[slot]);
        prefetch(&self.stamps[slot]);
        prefetch(&self.sampled[slot]);
    }

    pub(super) fn check_batch(&self, out: &BatchMut, rows: usize) -> Result<()> {
        let spec = &self.spec;
        check_width(
            "observations",
            out.observations.len(),
            rows,
            spec.observation_dim,
        )?;
        check_width(
            "next_observations",
            out.next_observations.len(),
            rows,
            spec.observation_dim,
        )?;
        check_width("actions", out.actions.len(), rows, spec.action_dim)?;
        check_width("rewards", out.rewards.len(), rows, spec.reward_dim)?;
        check_width("terminals", out.terminals.len(), rows, 1)?;
        check_width("truncations", out.truncations.len(), rows, 1)?;
        check_width("indices", out.indices.len(), rows, 1)?;
        check_width("stamps", out.stamps.len(), rows, 1)?;
        if let Some(weights) = &out.weights {
            check_width("weights", weights.len(), rows, 1)?;
        }
        if out.extras.len() != spec.extras.len() {
            return Err(Error::shape(
                "extras",
                format!("{} columns", spec.extras.len()),
                format!("{} columns", out.extras.len()),
            ));
        }
        for ((name, width), column) in spec.extras.iter().zip(&out.extras) {
            check_width(name, column.len(), rows, *width)?;
        }
        Ok(())
    }

    pub(super) fn gather(&self, slots: &[usize], out: &mut BatchMut) {
        let spec = &self.spec;
        let capacity = self.capacity();
        let width = spec.observation_dim;

        // Observations dominate the cost: one rayon task per block of rows copies both the
        // observation and the next observation of each row.
        if width > 0 {
            let block = slots
                .len()
                .div_ceil(4 * rayon::current_num_threads())
                .max(8);
            out.observations
                .par_chunks_mut(block * width)
                .zip(out.next_observations.par_chunks_mut(block * width))
                .zip(slots.par_chunks(block))
                .for_each(|((observations, next_observations), slots)| {
                    // No software prefetch. Issuing one per cache line of the rows ahead made
                    // the gather about 10 % slower than leaving the rows to the hardware
                    // prefetcher (see docs/decisions.md).
                    for ((row, next_row), &slot) in observations
                        .chunks_exact_mut(width)
                        .zip(next_observations.chunks_exact_mut(width))
                        .zip(slots)
                    {
                        let next = if slot + 1 == capacity { 0 } else { slot + 1 };
                        row.copy_from_slice(&self.observations[slot * width..(slot + 1) * width]);
                        next_row
                            .copy_from_slice(&self.observations[next * width..(next + 1) * width]);
                    }
                });
        }
        gather_rows(
            &self.actions,
            spec.action_dim,
            slots,
            0,
            capacity,
            out.actions,
        );
        gather_rows(
            &self.rewards,
            spec.reward_dim,
            slots,
            0,
            capacity,
            out.rewards,
        );
        for ((_, width), (column, target)) in spec
            .extras
            .iter()
            .zip(self.extras.iter().zip(out.extras.iter_mut()))
        {
            gather_rows(column, *width, slots, 0, capacity, target);
        }
        for (row, &slot) in slots.iter().enumerate() {
            if let Some(&ahead) = slots.get(row + AHEAD) {
                self.prefetch_flags(ahead);
            }
            out.terminals[row] = self.terminals[slot];
            out.truncations[row] = self.truncations[slot];
            out.indices[row] = slot as i64;
            out.stamps[row] = self.stamps[slot];
            self.sampled[slot].store(true, Ordering::Relaxed);
        }
    }

    pub(super) fn fill_weights(&self, slots: &[usize], beta: f64, weights: &mut [f32]) {
        // w_i = (N P(i))^-beta / max_j w_j = (p_i^alpha / min_j p_j^alpha)^-beta, with the
        // maximum over every sampleable slot (Schaul et al., "Prioritized Experience Replay",
        // ICLR 2016, Sec. 3.4).
        let minimum = self.tree.min_positive();
        for (weight, &slot) in weights.iter_mut().zip(slots) {
            *weight = (self.tree.get(slot) / minimum).powf(-beta) as f32;
        }
    }
}

/// Maximum number of values that [`gather_rows`] copies in the calling thread. Handing a task to the
/// rayon pool from a Python thread wakes a worker and waits for it, which costs more than
/// copying a few thousand values (actions and rewards of a batch of 512).
const SERIAL_GATHER_VALUES: usize = 1 << 15;

// Copy row `(slot + offset) % capacity` of `source` for each slot into consecutive rows of
// `target`: in the calling thread for small batches, otherwise several rows per rayon task.
fn gather_rows<T: Copy + Send + Sync>(
    source: &[T],
    width: usize,
    slots: &[usize],
    offset: usize,
    capacity: usize,
    target: &mut [T],
) {
    if width == 0 {
        return;
    }
    if slots.len() * width <= SERIAL_GATHER_VALUES {
        for (row, &slot) in target.chunks_exact_mut(width).zip(slots) {
            let slot = (slot + offset) % capacity;
            row.copy_from_slice(&source[slot * width..(slot + 1) * width]);
        }
        return;
    }
    let min_rows = (4096 / width).max(1);
    target
        .par_chunks_mut(width)
        .with_min_len(min_rows)
        .zip(slots.par_iter())
        .for_each(|(row, &slot)| {
            let slot = (slot + offset) % capacity;
            row.copy_from_slice(&source[slot * width..(slot + 1) * width]);
        });
}
