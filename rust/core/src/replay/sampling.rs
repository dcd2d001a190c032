//! Index draws: uniform with and without replacement, prioritized, and episode windows.

use std::collections::HashSet;

use super::rng::Generator;
use super::Storage;
use crate::error::{Error, Result};

impl Storage {
    pub(super) fn check_sampleable(&self, batch_size: usize) -> Result<()> {
        if self.sampleable_count == 0 {
            return Err(Error::invalid(
                "buffer",
                "is empty: it contains no transition with a stored next observation; \
                 add transitions with extend before sampling",
            ));
        }
        if batch_size == 0 {
            return Err(Error::invalid("batch_size", "expected at least 1, got 0"));
        }
        Ok(())
    }

    pub(super) fn draw_uniform(
        &self,
        generator: &mut Generator,
        out: &mut Vec<usize>,
        count: usize,
    ) {
        let size = self.cursor.size as u64;
        while out.len() < count {
            let slot = generator.below(size) as usize;
            if self.sampleable[slot] {
                out.push(slot);
            }
        }
    }

    pub(super) fn draw_without_replacement(
        &self,
        generator: &mut Generator,
        batch_size: usize,
    ) -> Result<Vec<usize>> {
        if batch_size > self.sampleable_count {
            return Err(Error::invalid(
                "batch_size",
                format!(
                    "requested {batch_size}, buffer holds {} (sampling without replacement)",
                    self.sampleable_count
                ),
            ));
        }

        // Few draws: rejection keeps each draw uniform over the slots not yet chosen.
        if 2 * batch_size <= self.sampleable_count {
            let mut chosen = HashSet::with_capacity(batch_size);
            let mut slots = Vec::with_capacity(batch_size);
            let size = self.cursor.size as u64;
            while slots.len() < batch_size {
                let slot = generator.below(size) as usize;
                if self.sampleable[slot] && chosen.insert(slot) {
                    slots.push(slot);
                }
            }
            return Ok(slots);
        }

        // Many draws: a partial Fisher-Yates shuffle of all sampleable slots.
        let mut candidates: Vec<usize> = (0..self.cursor.size)
            .filter(|&slot| self.sampleable[slot])
            .collect();
        for i in 0..batch_size {
            let j = i + generator.below((candidates.len() - i) as u64) as usize;
            candidates.swap(i, j);
        }
        candidates.truncate(batch_size);
        Ok(candidates)
    }

    pub(super) fn draw_prioritized(
        &self,
        generator: &mut Generator,
        batch_size: usize,
    ) -> Vec<usize> {
        let total = self.tree.total();
        let mut masses: Vec<f64> = (0..batch_size)
            .map(|_| generator.next_f64() * total)
            .collect();
        let mut slots = vec![0; batch_size];
        self.tree
            .find_prefix_many_unchecked(&mut masses, &mut slots);

        // A walk that rounding sent to a slot that cannot be sampled is drawn again.
        for slot in slots.iter_mut() {
            while !self.sampleable[*slot] {
                *slot = self
                    .tree
                    .find_prefix_unchecked(generator.next_f64() * total);
            }
        }
        slots
    }

    pub(super) fn sequence_start(&self, end: usize, length: usize) -> Option<usize> {
        let capacity = self.capacity();
        let back = length - 1;
        let step = self.episode_steps[end] as usize;
        if step < back {
            return None;
        }
        let start = (end + capacity - back) % capacity;
        let intact = start < self.cursor.size
            && self.episode_ids[start] == self.episode_ids[end]
            && self.episode_steps[start] as usize == step - back;
        intact.then_some(start)
    }

    pub(super) fn draw_sequences(
        &self,
        generator: &mut Generator,
        batch_size: usize,
        length: usize,
    ) -> Result<Vec<usize>> {
        let capacity = self.capacity();
        let max_draws = 1000 + 100 * batch_size;
        let mut slots = Vec::with_capacity(batch_size * length);
        let mut ends = Vec::with_capacity(1);
        let mut draws = 0;
        while slots.len() < batch_size * length {
            if draws == max_draws {
                return Err(Error::invalid(
                    "length",
                    format!(
                        "found no window of {length} steps within one episode in {max_draws} \
                         draws; the episodes in the buffer may be shorter than {length} steps"
                    ),
                ));
            }
            draws += 1;
            ends.clear();
            self.draw_uniform(generator, &mut ends, 1);
            if let Some(start) = self.sequence_start(ends[0], length) {
                slots.extend((0..length).map(|t| (start + t) % capacity));
            }
        }
        Ok(slots)
    }
}
