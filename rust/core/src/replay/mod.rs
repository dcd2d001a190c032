//! A replay buffer for off-policy and offline reinforcement learning.
//!
//! # Layout
//!
//! Transitions live in a ring of `capacity` slots over contiguous arrays. Slot `i` stores the
//! observation, action, rewards [K], terminal and truncation flags and extras of one step. Its
//! next observation is not stored again: it is the observation of slot `(i + 1) % capacity`,
//! which contains the next step of the same episode. This halves the memory of stores that keep
//! both copies.
//!
//! # Episode ends
//!
//! When a step ends its episode (terminal or truncated), the final next observation is written
//! into the following slot, a *boundary* slot that is never sampled and has priority zero. Each
//! episode therefore uses one slot more than its number of steps. A step whose episode goes on
//! is *pending* until the next step arrives: its next observation does not exist yet, so it is
//! not sampled either. Transitions of one episode must be added in order and without other
//! episodes in between.
//!
//! # Concurrency
//!
//! The arrays sit behind a read-write lock: `extend` and `update_priorities` take it for
//! writing, sampling and `save` take it for reading, so a batch is always gathered from one
//! consistent state. The generator has its own mutex, held only while indices are drawn.

mod gather;
mod persist;
pub mod rng;
mod sampling;
pub mod tree;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::error::{Error, Result};
use crate::memory::prefetch;
use rng::Generator;
use tree::{SumTree, AHEAD};

/// Priority of the first transitions, before any update sets a maximum.
const INITIAL_PRIORITY: f64 = 1.0;

/// Shapes and the prioritization exponent of a buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplaySpec {
    /// Number of slots, boundary slots included; at least 2.
    pub capacity: usize,
    /// Observation width S.
    pub observation_dim: usize,
    /// Action width A.
    pub action_dim: usize,
    /// Number of reward components K.
    pub reward_dim: usize,
    /// Names and widths of extra float32 columns stored per transition.
    pub extras: Vec<(String, usize)>,
    /// Prioritization exponent alpha: a slot is drawn with probability p^alpha / sum p^alpha.
    pub alpha: f64,
}

impl ReplaySpec {
    fn validate(&self) -> Result<()> {
        if self.capacity < 2 {
            return Err(Error::invalid(
                "capacity",
                format!("expected at least 2 slots, got {}", self.capacity),
            ));
        }
        if !(self.alpha.is_finite() && self.alpha >= 0.0) {
            return Err(Error::invalid(
                "alpha",
                format!("expected a finite value >= 0, got {}", self.alpha),
            ));
        }
        let mut names = HashSet::new();
        for (name, _) in &self.extras {
            if !names.insert(name.as_str()) {
                return Err(Error::invalid(
                    "extras",
                    format!("column {name:?} is given twice"),
                ));
            }
        }
        Ok(())
    }
}

/// Rows to add, in step order. Every slice has B rows of its width.
pub struct Transitions<'a> {
    /// [B, S] observations.
    pub observations: &'a [f32],
    /// [B, A] actions.
    pub actions: &'a [f32],
    /// [B, K] rewards.
    pub rewards: &'a [f32],
    /// [B, S] next observations; only the rows that end an episode are read.
    pub next_observations: &'a [f32],
    /// [B] episode ended in a terminal state.
    pub terminals: &'a [bool],
    /// [B] episode was cut without reaching a terminal state.
    pub truncations: &'a [bool],
    /// [B, width] per extra column, in the order of [`ReplaySpec::extras`].
    pub extras: Vec<&'a [f32]>,
}

/// Output arrays that a sample fills, each with R rows (R = B, or B * T for sequences).
pub struct BatchMut<'a> {
    /// [R, S]
    pub observations: &'a mut [f32],
    /// [R, S]
    pub next_observations: &'a mut [f32],
    /// [R, A]
    pub actions: &'a mut [f32],
    /// [R, K]
    pub rewards: &'a mut [f32],
    /// [R]
    pub terminals: &'a mut [bool],
    /// [R]
    pub truncations: &'a mut [bool],
    /// [R, width] per extra column, in the order of [`ReplaySpec::extras`].
    pub extras: Vec<&'a mut [f32]>,
    /// [R] slots the rows came from.
    pub indices: &'a mut [i64],
    /// [R] insertion stamps of those slots, for [`ReplayBuffer::update_priorities`].
    pub stamps: &'a mut [i64],
    /// [R] importance weights; filled by prioritized sampling only.
    pub weights: Option<&'a mut [f32]>,
}

/// Write position and episode bookkeeping, saved with the buffer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    /// Next slot to write.
    pub position: usize,
    /// Slots written at least once (stops growing at capacity).
    pub size: usize,
    /// Slots written since creation; the stamp of the next slot.
    pub written: u64,
    /// Identifier of the episode being written.
    pub episode: u64,
    /// Step index of the next transition within its episode.
    pub step: u32,
    /// The last written slot is a pending transition whose episode goes on.
    pub open: bool,
}

struct Storage {
    spec: ReplaySpec,
    observations: Vec<f32>,
    actions: Vec<f32>,
    rewards: Vec<f32>,
    terminals: Vec<bool>,
    truncations: Vec<bool>,
    extras: Vec<Vec<f32>>,
    sampleable: Vec<bool>,
    episode_ids: Vec<u64>,
    episode_steps: Vec<u32>,
    stamps: Vec<i64>,
    // Priority p of each slot as last set. The tree stores p^alpha (summed, minimum kept) and p
    // (maximum kept, for new transitions) for sampleable slots, and zeros elsewhere.
    priorities: Vec<f64>,
    tree: SumTree,
    // Set when a slot is sampled, cleared when it is overwritten.
    sampled: Vec<AtomicBool>,
    cursor: Cursor,
    sampleable_count: usize,
    stale_updates: u64,
}

/// A thread-safe transition store with uniform, prioritized and sequence sampling.
pub struct ReplayBuffer {
    storage: RwLock<Storage>,
    generator: Mutex<Generator>,
}

fn check_width(argument: &str, values: usize, rows: usize, width: usize) -> Result<()> {
    if values == rows * width {
        Ok(())
    } else {
        Err(Error::shape(
            argument,
            format!("{rows} rows of width {width} ({} values)", rows * width),
            format!("{values} values"),
        ))
    }
}

fn lock_poisoned(what: &str) -> Error {
    Error::invalid(
        "buffer",
        format!("the {what} lock is poisoned because another thread panicked while holding it"),
    )
}

impl Storage {
    fn new(spec: ReplaySpec) -> Result<Self> {
        spec.validate()?;
        let capacity = spec.capacity;
        let extras = spec
            .extras
            .iter()
            .map(|(_, width)| vec![0.0; capacity * width])
            .collect();
        let mut observations = vec![0.0; capacity * spec.observation_dim];
        crate::memory::advise_huge_pages(&mut observations);
        Ok(Storage {
            observations,
            actions: vec![0.0; capacity * spec.action_dim],
            rewards: vec![0.0; capacity * spec.reward_dim],
            terminals: vec![false; capacity],
            truncations: vec![false; capacity],
            extras,
            sampleable: vec![false; capacity],
            episode_ids: vec![0; capacity],
            episode_steps: vec![0; capacity],
            stamps: vec![-1; capacity],
            priorities: vec![0.0; capacity],
            tree: SumTree::with_secondary(capacity)?,
            sampled: (0..capacity).map(|_| AtomicBool::new(false)).collect(),
            cursor: Cursor::default(),
            sampleable_count: 0,
            stale_updates: 0,
            spec,
        })
    }

    fn capacity(&self) -> usize {
        self.spec.capacity
    }

    fn deactivate(&mut self, slot: usize) {
        if self.sampleable[slot] {
            self.sampleable[slot] = false;
            self.sampleable_count -= 1;
            self.tree.set_unchecked(slot, 0.0, 0.0);
        }
        self.sampled[slot].store(false, Ordering::Relaxed);
    }

    fn activate(&mut self, slot: usize) {
        if !self.sampleable[slot] {
            self.sampleable[slot] = true;
            self.sampleable_count += 1;
        }
        let priority = self.priorities[slot];
        self.tree
            .set_unchecked(slot, priority.powf(self.spec.alpha), priority);
    }

    fn new_priority(&self) -> f64 {
        let max = self.tree.max();
        if max > 0.0 {
            max
        } else {
            INITIAL_PRIORITY
        }
    }

    // Claim the slot at the write position for the current episode and advance the cursor.
    fn claim_slot(&mut self) -> usize {
        let slot = self.cursor.position;
        self.deactivate(slot);
        self.episode_ids[slot] = self.cursor.episode;
        self.episode_steps[slot] = self.cursor.step;
        self.stamps[slot] = self.cursor.written as i64;
        self.cursor.written += 1;
        self.cursor.position = (slot + 1) % self.capacity();
        self.cursor.size = (self.cursor.size + 1).min(self.capacity());
        slot
    }

    fn push(&mut self, rows: &Transitions, row: usize) {
        let spec = &self.spec;
        let (s, a, k) = (spec.observation_dim, spec.action_dim, spec.reward_dim);
        let previous = (self.cursor.position + self.capacity() - 1) % self.capacity();
        let slot = self.claim_slot();

        self.observations[slot * s..(slot + 1) * s]
            .copy_from_slice(&rows.observations[row * s..(row + 1) * s]);
        self.actions[slot * a..(slot + 1) * a]
            .copy_from_slice(&rows.actions[row * a..(row + 1) * a]);
        self.rewards[slot * k..(slot + 1) * k]
            .copy_from_slice(&rows.rewards[row * k..(row + 1) * k]);
        for ((_, width), (column, values)) in self
            .spec
            .extras
            .iter()
            .zip(self.extras.iter_mut().zip(&rows.extras))
        {
            column[slot * width..(slot + 1) * width]
                .copy_from_slice(&values[row * width..(row + 1) * width]);
        }
        let (terminal, truncated) = (rows.terminals[row], rows.truncations[row]);
        self.terminals[slot] = terminal;
        self.truncations[slot] = truncated;
        self.priorities[slot] = self.new_priority();

        // The previous step of this episode now has its next observation.
        if self.cursor.open {
            self.activate(previous);
        }
        self.cursor.step += 1;
        if !(terminal || truncated) {
            self.cursor.open = true;
            return;
        }

        // Episode end: the final next observation goes into a boundary slot.
        let boundary = self.claim_slot();
        self.observations[boundary * s..(boundary + 1) * s]
            .copy_from_slice(&rows.next_observations[row * s..(row + 1) * s]);
        self.actions[boundary * a..(boundary + 1) * a].fill(0.0);
        self.rewards[boundary * k..(boundary + 1) * k].fill(0.0);
        for ((_, width), column) in self.spec.extras.iter().zip(self.extras.iter_mut()) {
            column[boundary * width..(boundary + 1) * width].fill(0.0);
        }
        self.terminals[boundary] = false;
        self.truncations[boundary] = false;
        self.priorities[boundary] = 0.0;
        self.activate(slot);
        self.cursor.episode += 1;
        self.cursor.step = 0;
        self.cursor.open = false;
    }
}

impl ReplayBuffer {
    /// Create an empty buffer whose generator starts from `seed`.
    pub fn new(spec: ReplaySpec, seed: u64) -> Result<Self> {
        Ok(ReplayBuffer {
            storage: RwLock::new(Storage::new(spec)?),
            generator: Mutex::new(Generator::from_seed(seed)),
        })
    }

    fn read(&self) -> Result<RwLockReadGuard<'_, Storage>> {
        self.storage.read().map_err(|_| lock_poisoned("storage"))
    }

    fn write(&self) -> Result<RwLockWriteGuard<'_, Storage>> {
        self.storage.write().map_err(|_| lock_poisoned("storage"))
    }

    fn with_generator<T>(&self, draw: impl FnOnce(&mut Generator) -> T) -> Result<T> {
        let mut generator = self
            .generator
            .lock()
            .map_err(|_| lock_poisoned("generator"))?;
        Ok(draw(&mut generator))
    }

    /// Returns the shapes and exponent the buffer was created with.
    pub fn spec(&self) -> Result<ReplaySpec> {
        Ok(self.read()?.spec.clone())
    }

    /// Returns the number of transitions that can be sampled now.
    pub fn len(&self) -> Result<usize> {
        Ok(self.read()?.sampleable_count)
    }

    /// Returns true when no transition can be sampled.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Returns the write position and episode bookkeeping.
    pub fn cursor(&self) -> Result<Cursor> {
        Ok(self.read()?.cursor.clone())
    }

    /// Returns the number of priority updates rejected so far because their slot had been overwritten.
    pub fn stale_updates(&self) -> Result<u64> {
        Ok(self.read()?.stale_updates)
    }

    /// Returns the priority p of every slot (zero for boundary and empty slots).
    pub fn priorities(&self) -> Result<Vec<f64>> {
        Ok(self.read()?.priorities.clone())
    }

    /// Returns whether each slot can be sampled.
    pub fn sampleable_mask(&self) -> Result<Vec<bool>> {
        Ok(self.read()?.sampleable.clone())
    }

    /// Returns the generator state, as saved with the buffer.
    pub fn generator_state(&self) -> Result<[u64; 4]> {
        self.with_generator(|generator| generator.state())
    }

    /// Append rows in step order; see the module documentation for episode ends.
    pub fn extend(&self, rows: &Transitions) -> Result<()> {
        let count = rows.terminals.len();
        {
            let storage = self.read()?;
            let spec = &storage.spec;
            check_width(
                "observations",
                rows.observations.len(),
                count,
                spec.observation_dim,
            )?;
            check_width(
                "next_observations",
                rows.next_observations.len(),
                count,
                spec.observation_dim,
            )?;
            check_width("actions", rows.actions.len(), count, spec.action_dim)?;
            check_width("rewards", rows.rewards.len(), count, spec.reward_dim)?;
            check_width("truncations", rows.truncations.len(), count, 1)?;
            if rows.extras.len() != spec.extras.len() {
                return Err(Error::shape(
                    "extras",
                    format!("{} columns", spec.extras.len()),
                    format!("{} columns", rows.extras.len()),
                ));
            }
            for ((name, width), column) in spec.extras.iter().zip(&rows.extras) {
                check_width(name, column.len(), count, *width)?;
            }
        }

        let mut storage = self.write()?;
        for row in 0..count {
            storage.push(rows, row);
        }
        Ok(())
    }

    /// Draw B transitions uniformly, with or without replacement, into `out`.
    pub fn sample_uniform(
        &self,
        batch_size: usize,
        replace: bool,
        out: &mut BatchMut,
    ) -> Result<()> {
        let storage = self.read()?;
        storage.check_sampleable(batch_size)?;
        storage.check_batch(out, batch_size)?;
        let slots = if replace {
            self.with_generator(|generator| {
                let mut slots = Vec::with_capacity(batch_size);
                storage.draw_uniform(generator, &mut slots, batch_size);
                slots
            })?
        } else {
            self.with_generator(|generator| {
                storage.draw_without_replacement(generator, batch_size)
            })??
        };
        storage.gather(&slots, out);
        Ok(())
    }

    /// Draw B transitions with probability p^alpha / sum p^alpha (with replacement) into
    /// `out`, and fill `out.weights` with importance weights for exponent `beta`.
    pub fn sample_prioritized(
        &self,
        batch_size: usize,
        beta: f64,
        out: &mut BatchMut,
    ) -> Result<()> {
        if !(beta.is_finite() && beta >= 0.0) {
            return Err(Error::invalid(
                "beta",
                format!("expected a finite value >= 0, got {beta}"),
            ));
        }
        let storage = self.read()?;
        storage.check_sampleable(batch_size)?;
        storage.check_batch(out, batch_size)?;
        if out.weights.is_none() {
            return Err(Error::invalid(
                "weights",
                "prioritized sampling needs a weights output",
            ));
        }
        if storage.tree.total() <= 0.0 {
            return Err(Error::invalid(
                "priorities",
                "every sampleable transition has priority zero; update some to a positive value",
            ));
        }
        let slots =
            self.with_generator(|generator| storage.draw_prioritized(generator, batch_size))?;
        // Weights first: the walks have just loaded the leaves they read, and copying the rows
        // would evict them.
        if let Some(weights) = out.weights.as_deref_mut() {
            storage.fill_weights(&slots, beta, weights);
        }
        storage.gather(&slots, out);
        Ok(())
    }

    /// Draw B windows of T consecutive steps of one episode into `out` (R = B * T rows, window
    /// after window). The last step of a window may end its episode.
    pub fn sample_sequences(
        &self,
        batch_size: usize,
        length: usize,
        out: &mut BatchMut,
    ) -> Result<()> {
        if length == 0 {
            return Err(Error::invalid("length", "expected at least 1 step, got 0"));
        }
        let storage = self.read()?;
        storage.check_sampleable(batch_size)?;
        storage.check_batch(out, batch_size * length)?;
        let slots = self
            .with_generator(|generator| storage.draw_sequences(generator, batch_size, length))??;
        storage.gather(&slots, out);
        Ok(())
    }

    /// Gather the given slots into `out`; every slot must be sampleable.
    pub fn gather(&self, indices: &[i64], out: &mut BatchMut) -> Result<()> {
        let storage = self.read()?;
        storage.check_batch(out, indices.len())?;
        let mut slots = Vec::with_capacity(indices.len());
        for &index in indices {
            let sampleable = usize::try_from(index)
                .ok()
                .filter(|&slot| slot < storage.capacity() && storage.sampleable[slot]);
            match sampleable {
                Some(slot) => slots.push(slot),
                None => {
                    return Err(Error::invalid(
                        "indices",
                        format!("slot {index} does not hold a sampleable transition"),
                    ))
                }
            }
        }
        storage.gather(&slots, out);
        Ok(())
    }

    /// Set the priority of sampled slots; returns how many updates were rejected as stale.
    ///
    /// With `stamps` (as returned by sampling), an update is stale when the slot's stamp
    /// differs, that is when the slot was overwritten after it was sampled. Without stamps, an
    /// update is stale when the slot's current transition has never been sampled. Stale updates
    /// leave the priority unchanged and are added to [`ReplayBuffer::stale_updates`].
    pub fn update_priorities(
        &self,
        indices: &[i64],
        priorities: &[f64],
        stamps: Option<&[i64]>,
    ) -> Result<usize> {
        check_width("priorities", priorities.len(), indices.len(), 1)?;
        if let Some(stamps) = stamps {
            check_width("stamps", stamps.len(), indices.len(), 1)?;
        }
        if let Some(bad) = priorities.iter().find(|p| !(p.is_finite() && **p > 0.0)) {
            return Err(Error::invalid(
                "priorities",
                format!("expected finite values > 0, got {}", tree::shown(*bad)),
            ));
        }

        let mut storage = self.write()?;
        // The tree stores p^alpha, which must not overflow the sum of all slots. Nor may it
        // underflow to zero, which would make the slot undrawable while `priorities` shows p.
        let alpha = storage.spec.alpha;
        let largest = storage.tree.max_value();
        let scaled: Vec<f64> = priorities.iter().map(|p| p.powf(alpha)).collect();
        if let Some((p, value)) = priorities
            .iter()
            .zip(&scaled)
            .find(|(_, value)| !(**value > 0.0 && **value <= largest))
        {
            let problem = if *value > 0.0 {
                format!(
                    "is above {}, the largest a sum over {} slots can hold",
                    tree::shown(largest),
                    storage.capacity()
                )
            } else {
                "underflows to 0".to_owned()
            };
            return Err(Error::invalid(
                "priorities",
                format!(
                    "{} raised to alpha = {alpha} gives {}, which {problem}; scale the \
                     priorities towards 1 or lower alpha",
                    tree::shown(*p),
                    tree::shown(*value)
                ),
            ));
        }
        let capacity = storage.capacity() as i64;
        if let Some(bad) = indices.iter().find(|&&i| i < 0 || i >= capacity) {
            return Err(Error::invalid(
                "indices",
                format!("expected slots in [0, {capacity}), got {bad}"),
            ));
        }
        let mut leaves = Vec::with_capacity(indices.len());
        for (position, ((&index, &priority), &value)) in
            indices.iter().zip(priorities).zip(&scaled).enumerate()
        {
            // Slots are random, so each check misses the cache; the prefetches start the loads
            // of a later slot while `powf` runs for this one.
            if let Some(&ahead) = indices.get(position + AHEAD) {
                let ahead = ahead as usize;
                prefetch(&storage.stamps[ahead]);
                prefetch(&storage.sampleable[ahead]);
                prefetch(&storage.priorities[ahead]);
            }
            let slot = index as usize;
            let current = match stamps {
                Some(stamps) => storage.stamps[slot] == stamps[position],
                None => storage.sampled[slot].load(Ordering::Relaxed),
            };
            if current && storage.sampleable[slot] {
                storage.priorities[slot] = priority;
                leaves.push((slot, value, priority));
            }
        }
        // One batched refresh: the ancestors shared by several slots are recomputed once.
        storage.tree.set_many_unchecked(&leaves);
        let rejected = indices.len() - leaves.len();
        storage.stale_updates += rejected as u64;
        Ok(rejected)
    }
}

#[cfg(test)]
mod tests;
