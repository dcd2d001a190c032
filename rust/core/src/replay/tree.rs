//! Segment trees over slot priorities: sums for proportional sampling, minima for the largest
//! importance weight, maxima for the priority given to new transitions.

use crate::error::{Error, Result};
use crate::memory::prefetch;

/// Children per inner node. Eight `f64` fill one 64-byte cache line, so each level of a walk
/// reads one line, and a million leaves need 7 levels where a binary tree needs 20.
const FANOUT: usize = 8;

/// How many walks or updates ahead the batched operations prefetch the lines they need.
pub(crate) const AHEAD: usize = 16;

/// Returns `value` as Rust displays it, or in exponent form where that would be long (1e-300
/// is otherwise written out with 300 zeros).
pub(crate) fn shown(value: f64) -> String {
    let text = value.to_string();
    if text.len() <= 24 {
        text
    } else {
        format!("{value:e}")
    }
}

/// The values of the children of one node, aligned to a cache line.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
struct Group([f64; FANOUT]);

const ZEROS: Group = Group([0.0; FANOUT]);

fn groups(count: usize, fill: Group) -> Vec<Group> {
    let mut values = Vec::with_capacity(count);
    crate::memory::advise_huge_pages(values.spare_capacity_mut());
    values.resize(count, fill);
    values
}

/// Set the bit of `entry` and return whether it was clear.
#[inline]
fn queue(bits: &mut [u64], entry: usize) -> bool {
    let (word, bit) = (entry / 64, 1u64 << (entry % 64));
    let clear = bits[word] & bit == 0;
    bits[word] |= bit;
    clear
}

#[inline]
fn clear(bits: &mut [u64], entry: usize) {
    bits[entry / 64] &= !(1u64 << (entry % 64));
}

/// Reduce a group in pairs with `pair`, as a binary tree: neighbours first, then neighbouring
/// pairs, then the two halves. The values are never NaN, so plain comparisons serve for minimum
/// and maximum, where `f64::min` and `f64::max` would add NaN checks to every step.
#[inline(always)]
fn pairwise(values: &[f64; FANOUT], pair: impl Fn(f64, f64) -> f64) -> f64 {
    pair(
        pair(pair(values[0], values[1]), pair(values[2], values[3])),
        pair(pair(values[4], values[5]), pair(values[6], values[7])),
    )
}

#[inline]
fn lesser(a: f64, b: f64) -> f64 {
    if b < a {
        b
    } else {
        a
    }
}

#[inline]
fn greater(a: f64, b: f64) -> f64 {
    if b > a {
        b
    } else {
        a
    }
}

/// Returns the sum of a group, added in pairs. [`pick`] walks the same pairs, so a mass below the sum
/// always finds a child.
#[inline(always)]
fn pair_sum(values: &[f64; FANOUT]) -> f64 {
    pairwise(values, |a, b| a + b)
}

/// Pick the child of a group that contains `mass` and return it with the mass left inside it.
///
/// Descends the pairs that [`pair_sum`] adds, as a binary tree of three levels. Selects replace
/// branches, so random masses cost no mispredictions, and each step waits on one addition, not
/// on a running sum of eight. When rounding leaves `mass` at or above the
/// group's sum, the walk takes the last positive child.
#[inline(always)]
fn pick(values: &[f64; FANOUT], mass: f64) -> (usize, f64) {
    let left_half = (values[0] + values[1]) + (values[2] + values[3]);
    let right = mass >= left_half;
    let mass = if right { mass - left_half } else { mass };
    let left_pair = if right {
        values[4] + values[5]
    } else {
        values[0] + values[1]
    };
    let base = 4 * usize::from(right);
    let right = mass >= left_pair;
    let mass = if right { mass - left_pair } else { mass };
    let base = base + 2 * usize::from(right);
    let first = values[base];
    let right = mass >= first;
    let mass = if right { mass - first } else { mass };
    let child = base + usize::from(right);
    if values[child] > 0.0 {
        return (child, mass);
    }
    let last = values.iter().rposition(|&value| value > 0.0).unwrap_or(0);
    (last, mass)
}

/// One inner level. Entry `i` belongs to node `i` of the level, and group `j` contains the
/// entries of the children of node `j` of the level above.
#[derive(Clone, Debug)]
struct Level {
    sums: Vec<Group>,
    mins: Vec<Group>,
    maxs: Vec<Group>,
}

impl Level {
    fn new(count: usize) -> Self {
        Level {
            sums: groups(count, ZEROS),
            mins: groups(count, Group([f64::INFINITY; FANOUT])),
            maxs: groups(count, ZEROS),
        }
    }

    /// Start loading the three lines that [`Level::write`] changes for `entry`.
    #[inline(always)]
    fn prefetch(&self, entry: usize) {
        let group = entry / FANOUT;
        prefetch(&self.sums[group]);
        prefetch(&self.mins[group]);
        prefetch(&self.maxs[group]);
    }

    #[inline(always)]
    fn write(&mut self, entry: usize, (sum, min, max): (f64, f64, f64)) {
        let (group, lane) = (entry / FANOUT, entry % FANOUT);
        self.sums[group].0[lane] = sum;
        self.mins[group].0[lane] = min;
        self.maxs[group].0[lane] = max;
    }

    /// Returns the sum, minimum and maximum of group `group`. `WIDE` selects the AVX-512
    /// code, which the caller may only choose on a CPU that has it.
    #[inline(always)]
    fn reduce<const WIDE: bool>(&self, group: usize) -> (f64, f64, f64) {
        let (sums, mins, maxs) = (
            &self.sums[group].0,
            &self.mins[group].0,
            &self.maxs[group].0,
        );
        #[cfg(target_arch = "x86_64")]
        if WIDE {
            // SAFETY: `WIDE` is only set on CPUs with AVX-512F.
            return unsafe { wide::summarise(sums, mins, maxs) };
        }
        (
            pair_sum(sums),
            pairwise(mins, lesser),
            pairwise(maxs, greater),
        )
    }
}

/// AVX-512 versions of the group reductions, with one group in one register. They return
/// exactly what the portable code returns. The sum adds the same pairs, and the order in which
/// a minimum or maximum visits its values cannot change the result, because the values are
/// never NaN and stored leaves are never -0.0.
#[cfg(target_arch = "x86_64")]
mod wide {
    use super::FANOUT;
    use std::arch::x86_64::*;

    /// Returns `pair_sum(values)`: neighbours, then neighbouring pairs, then the two halves.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn pair_sum(values: __m512d) -> f64 {
        let pairs = _mm512_add_pd(values, _mm512_permute_pd::<0b0101_0101>(values));
        let quads = _mm512_add_pd(pairs, _mm512_permutex_pd::<0b0100_1110>(pairs));
        let total = _mm512_add_pd(quads, _mm512_shuffle_f64x2::<0b0100_1110>(quads, quads));
        _mm_cvtsd_f64(_mm512_castpd512_pd128(total))
    }

    #[target_feature(enable = "avx512f")]
    #[inline]
    fn load(values: &[f64; FANOUT]) -> __m512d {
        // SAFETY: `values` contains the eight f64 that an unaligned 512-bit load reads.
        unsafe { _mm512_loadu_pd(values.as_ptr()) }
    }

    /// Returns the pair sum of `sums`, the minimum of `mins` and the maximum of `maxs`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(super) fn summarise(
        sums: &[f64; FANOUT],
        mins: &[f64; FANOUT],
        maxs: &[f64; FANOUT],
    ) -> (f64, f64, f64) {
        (
            pair_sum(load(sums)),
            _mm512_reduce_min_pd(load(mins)),
            _mm512_reduce_max_pd(load(maxs)),
        )
    }

    /// Returns the pair sum of `values`, their smallest positive value (infinity when none is)
    /// and the maximum of `secondary`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(super) fn summarise_leaves(
        values: &[f64; FANOUT],
        secondary: &[f64; FANOUT],
    ) -> (f64, f64, f64) {
        let values = load(values);
        let positive = _mm512_cmp_pd_mask::<_CMP_GT_OQ>(values, _mm512_setzero_pd());
        let infinite = _mm512_set1_pd(f64::INFINITY);
        (
            pair_sum(values),
            _mm512_reduce_min_pd(_mm512_mask_blend_pd(positive, infinite, values)),
            _mm512_reduce_max_pd(load(secondary)),
        )
    }
}

/// A tree over `capacity` leaves whose inner nodes store the sum, the smallest positive leaf and
/// the largest secondary value of their subtrees, eight children per node. Leaves are `f64` so
/// that a million priorities sum without the drift `f32` shows after a few thousand updates.
///
/// Each leaf has a value and a secondary value. A tree made by [`SumTree::new`] uses the value
/// as the secondary value and stores nothing more per leaf. One made by
/// [`SumTree::with_secondary`] stores both: the replay buffer keeps `p^alpha` as the value and
/// the raw priority `p` as the secondary value.
#[derive(Clone, Debug)]
pub struct SumTree {
    capacity: usize,
    leaves: Vec<Group>,
    secondary: Option<Vec<Group>>,
    // inner[0] summarises the leaf groups, and the last level contains the root alone.
    inner: Vec<Level>,
    // One bit per entry of each inner level: set while a batched update has queued that entry.
    // Every bit is clear between calls.
    queued: Vec<Vec<u64>>,
}

impl SumTree {
    /// Build a tree of `capacity` leaves, all zero, whose secondary values are its values.
    pub fn new(capacity: usize) -> Result<Self> {
        if capacity == 0 {
            return Err(Error::invalid(
                "capacity",
                "expected at least 1 leaf, got 0",
            ));
        }
        let leaf_groups = capacity.div_ceil(FANOUT);
        let mut inner = Vec::new();
        let mut entries = leaf_groups;
        loop {
            inner.push(Level::new(entries.div_ceil(FANOUT)));
            if entries == 1 {
                break;
            }
            entries = entries.div_ceil(FANOUT);
        }
        let queued = inner
            .iter()
            .map(|level| vec![0; (level.sums.len() * FANOUT).div_ceil(64)])
            .collect();
        Ok(SumTree {
            capacity,
            leaves: groups(leaf_groups, ZEROS),
            secondary: None,
            inner,
            queued,
        })
    }

    /// Build a tree of `capacity` leaves, all zero, that stores a secondary value per leaf.
    pub fn with_secondary(capacity: usize) -> Result<Self> {
        let mut tree = Self::new(capacity)?;
        tree.secondary = Some(groups(tree.leaves.len(), ZEROS));
        Ok(tree)
    }

    /// Returns the number of leaves a caller may address.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn root(&self) -> (f64, f64, f64) {
        let root = &self.inner[self.inner.len() - 1];
        (root.sums[0].0[0], root.mins[0].0[0], root.maxs[0].0[0])
    }

    /// Returns the sum of all leaves.
    pub fn total(&self) -> f64 {
        self.root().0
    }

    /// Returns the smallest positive leaf, or infinity when every leaf is zero.
    pub fn min_positive(&self) -> f64 {
        self.root().1
    }

    /// Returns the largest secondary value, or zero when every leaf is zero.
    pub fn max(&self) -> f64 {
        self.root().2
    }

    /// Returns the value of leaf `index`.
    pub fn get(&self, index: usize) -> f64 {
        self.leaves[index / FANOUT].0[index % FANOUT]
    }

    /// Returns the largest leaf value accepted: `capacity` leaves of it still sum to a finite
    /// total.
    pub fn max_value(&self) -> f64 {
        f64::MAX / self.capacity as f64
    }

    // Check one leaf of `set` (`batched` false) or `set_many` (true). Errors name the argument
    // of the method called.
    fn check_leaf(&self, index: usize, value: f64, batched: bool) -> Result<()> {
        let (index_name, value_name) = if batched {
            ("indices", "values")
        } else {
            ("index", "value")
        };
        if index >= self.capacity {
            return Err(Error::invalid(
                index_name,
                format!("expected a leaf below {}, got {index}", self.capacity),
            ));
        }
        if !(value.is_finite() && value >= 0.0) {
            return Err(Error::invalid(
                value_name,
                format!("expected a finite value >= 0, got {}", shown(value)),
            ));
        }
        if value > self.max_value() {
            return Err(Error::invalid(
                value_name,
                format!(
                    "{} is above {}, the largest value whose sum over {} leaves stays finite; \
                     scale the values down",
                    shown(value),
                    shown(self.max_value()),
                    self.capacity
                ),
            ));
        }
        Ok(())
    }

    /// Set leaf `index` to `value` (finite, at least zero), also as its secondary value, and
    /// refresh its ancestors.
    ///
    /// A zero leaf is excluded from the minimum, so it can never be drawn and never sets the
    /// largest importance weight.
    pub fn set(&mut self, index: usize, value: f64) -> Result<()> {
        self.check_leaf(index, value, false)?;
        self.set_unchecked(index, value, value);
        Ok(())
    }

    /// Set leaf `indices[i]` to `values[i]` for every i, as [`SumTree::set`] does, then refresh
    /// each touched ancestor once. Nothing changes when an index or value is invalid. A repeated
    /// index keeps its last value.
    pub fn set_many(&mut self, indices: &[usize], values: &[f64]) -> Result<()> {
        if indices.len() != values.len() {
            return Err(Error::shape(
                "values",
                format!("{} values, one per index", indices.len()),
                format!("{} values", values.len()),
            ));
        }
        for (&index, &value) in indices.iter().zip(values) {
            self.check_leaf(index, value, true)?;
        }
        let leaves: Vec<(usize, f64, f64)> = indices
            .iter()
            .zip(values)
            .map(|(&index, &value)| (index, value, value))
            .collect();
        self.set_many_unchecked(&leaves);
        Ok(())
    }

    // Start loading the lines that `write_leaf` changes for leaf `index`.
    #[inline(always)]
    fn prefetch_leaf(&self, index: usize) {
        prefetch(&self.leaves[index / FANOUT]);
        if let Some(secondaries) = &self.secondary {
            prefetch(&secondaries[index / FANOUT]);
        }
    }

    // Write a leaf and its secondary value, when the tree stores one. Adding 0.0 stores -0.0
    // as 0.0, so every order of taking a maximum gives the same bits.
    #[inline(always)]
    fn write_leaf(&mut self, index: usize, value: f64, secondary: f64) {
        let (group, lane) = (index / FANOUT, index % FANOUT);
        self.leaves[group].0[lane] = value + 0.0;
        if let Some(secondaries) = &mut self.secondary {
            secondaries[group].0[lane] = secondary + 0.0;
        }
    }

    // Returns the sum, smallest positive value and largest secondary value of leaf group
    // `group`, as `Level::reduce` does for inner groups.
    #[inline(always)]
    fn reduce_leaves<const WIDE: bool>(&self, group: usize) -> (f64, f64, f64) {
        let values = &self.leaves[group].0;
        let secondary = self.secondary.as_ref().map_or(values, |s| &s[group].0);
        #[cfg(target_arch = "x86_64")]
        if WIDE {
            // SAFETY: `WIDE` is only set on CPUs with AVX-512F.
            return unsafe { wide::summarise_leaves(values, secondary) };
        }
        let positive = values.map(|value| if value > 0.0 { value } else { f64::INFINITY });
        (
            pair_sum(values),
            pairwise(&positive, lesser),
            pairwise(secondary, greater),
        )
    }

    /// Set leaf `index` to `value` and, when the tree stores them, its secondary value to
    /// `secondary`; then refresh its ancestors. The caller checks both.
    pub(crate) fn set_unchecked(&mut self, index: usize, value: f64, secondary: f64) {
        self.write_leaf(index, value, secondary);
        let mut entry = index / FANOUT;
        let summary = self.reduce_leaves::<false>(entry);
        self.inner[0].write(entry, summary);
        for level in 1..self.inner.len() {
            let group = entry / FANOUT;
            let summary = self.inner[level - 1].reduce::<false>(group);
            self.inner[level].write(group, summary);
            entry = group;
        }
    }

    /// Set many leaves (index, value, secondary value) and refresh each touched ancestor once.
    pub(crate) fn set_many_unchecked(&mut self, leaves: &[(usize, f64, f64)]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has the only feature `update_avx512` is compiled for.
            unsafe { self.update_avx512(leaves) };
            return;
        }
        self.update::<false>(leaves);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn update_avx512(&mut self, leaves: &[(usize, f64, f64)]) {
        self.update::<true>(leaves);
    }

    #[inline(always)]
    fn update<const WIDE: bool>(&mut self, leaves: &[(usize, f64, f64)]) {
        for (position, &(index, value, secondary)) in leaves.iter().enumerate() {
            if let Some(&(ahead, _, _)) = leaves.get(position + AHEAD) {
                self.prefetch_leaf(ahead);
            }
            self.write_leaf(index, value, secondary);
        }
        let mut entries = Vec::with_capacity(leaves.len());
        let queued = &mut self.queued[0];
        entries.extend(
            leaves
                .iter()
                .map(|&(index, _, _)| index / FANOUT)
                .filter(|&entry| queue(queued, entry)),
        );
        self.refresh::<WIDE>(entries);
    }

    // Recompute the ancestors of the leaf groups in `entries` (entries of `inner[0]`, no
    // repeats, their bits set in `queued[0]`), one level at a time. Each level queues every
    // parent once, through its bit in `queued`, and clears the bits of its own entries. The
    // loads of one level do not depend on each other, so the CPU overlaps their cache misses.
    #[inline(always)]
    fn refresh<const WIDE: bool>(&mut self, mut entries: Vec<usize>) {
        for (position, &entry) in entries.iter().enumerate() {
            if let Some(&ahead) = entries.get(position + AHEAD) {
                self.inner[0].prefetch(ahead);
            }
            let summary = self.reduce_leaves::<WIDE>(entry);
            self.inner[0].write(entry, summary);
        }
        let mut parents = Vec::with_capacity(entries.len());
        for level in 1..self.inner.len() {
            let (done, rest) = self.queued.split_at_mut(level);
            let (below, above) = (&mut done[level - 1], &mut rest[0]);
            parents.clear();
            for &entry in &entries {
                clear(below, entry);
                let parent = entry / FANOUT;
                if queue(above, parent) {
                    parents.push(parent);
                }
            }
            let (lower, upper) = self.inner.split_at_mut(level);
            let (lower, upper) = (&lower[level - 1], &mut upper[0]);
            for (position, &parent) in parents.iter().enumerate() {
                if let Some(&ahead) = parents.get(position + AHEAD) {
                    upper.prefetch(ahead);
                }
                upper.write(parent, lower.reduce::<WIDE>(parent));
            }
            std::mem::swap(&mut entries, &mut parents);
        }
        let root = self.queued.last_mut().expect("a tree has a root level");
        for &entry in &entries {
            clear(root, entry);
        }
    }

    /// Return the leaf `i` with `sum(leaves[..i]) <= mass < sum(leaves[..=i])`.
    ///
    /// `mass` must lie in `[0, total)`. When `mass` is within a few ulps of a subtree's sum,
    /// rounding can leave the walk at or above that sum. The walk then takes the last positive
    /// leaf of that subtree.
    pub fn find_prefix(&self, mass: f64) -> Result<usize> {
        self.check_mass(mass)?;
        Ok(self.find_prefix_unchecked(mass))
    }

    fn check_mass(&self, mass: f64) -> Result<()> {
        let total = self.total();
        if !(mass >= 0.0 && mass < total) {
            return Err(Error::invalid(
                "mass",
                format!(
                    "expected a value in [0, {}), got {}",
                    shown(total),
                    shown(mass)
                ),
            ));
        }
        Ok(())
    }

    /// Find the leaf of every mass in `masses` (each in `[0, total)`), as
    /// [`SumTree::find_prefix`] does, and write it to `leaves`.
    pub fn find_prefix_many(&self, masses: &[f64], leaves: &mut [usize]) -> Result<()> {
        if masses.len() != leaves.len() {
            return Err(Error::shape(
                "leaves",
                format!("{} values, one per mass", masses.len()),
                format!("{} values", leaves.len()),
            ));
        }
        for &mass in masses {
            self.check_mass(mass)?;
        }
        let mut masses = masses.to_vec();
        self.find_prefix_many_unchecked(&mut masses, leaves);
        Ok(())
    }

    // Returns the sums of every level a walk reads, from the root's children down to the leaves.
    fn walk_levels(&self) -> impl Iterator<Item = &[Group]> {
        let inner = &self.inner[..self.inner.len() - 1];
        inner
            .iter()
            .rev()
            .map(|level| level.sums.as_slice())
            .chain(std::iter::once(self.leaves.as_slice()))
    }

    /// Find the leaf of every mass in `masses` (each in `[0, total)`) and write it to `leaves`;
    /// `masses` is used as scratch space.
    ///
    /// The walks advance together one level at a time. Within a level the loads of different
    /// walks do not depend on each other, so the CPU overlaps their cache misses, where walking
    /// one mass after another waits for each miss in turn.
    pub(crate) fn find_prefix_many_unchecked(&self, masses: &mut [f64], leaves: &mut [usize]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has the only feature `walk_avx512` is compiled for.
            unsafe { self.walk_avx512(masses, leaves) };
            return;
        }
        self.walk(masses, leaves);
    }

    // `walk` compiled with AVX-512, whose mask registers turn the selects of `pick` into one
    // masked move each: about twice as fast as the SSE2 code of the portable build.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn walk_avx512(&self, masses: &mut [f64], leaves: &mut [usize]) {
        self.walk(masses, leaves);
    }

    #[inline(always)]
    fn walk(&self, masses: &mut [f64], leaves: &mut [usize]) {
        leaves.fill(0);
        for sums in self.walk_levels() {
            // The prefetches start the loads of the groups `AHEAD` walks further on while this
            // one picks its child.
            for &entry in &leaves[..AHEAD.min(leaves.len())] {
                prefetch(&sums[entry]);
            }
            for walk in 0..leaves.len() {
                if let Some(&ahead) = leaves.get(walk + AHEAD) {
                    prefetch(&sums[ahead]);
                }
                let entry = leaves[walk];
                let (child, mass) = pick(&sums[entry].0, masses[walk]);
                masses[walk] = mass;
                leaves[walk] = entry * FANOUT + child;
            }
        }
    }

    pub(crate) fn find_prefix_unchecked(&self, mut mass: f64) -> usize {
        let mut entry = 0;
        for sums in self.walk_levels() {
            let (child, rest) = pick(&sums[entry].0, mass);
            mass = rest;
            entry = entry * FANOUT + child;
        }
        entry
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_priorities_split_mass_evenly() {
        let mut tree = SumTree::new(3).unwrap();
        for slot in 0..3 {
            tree.set(slot, 1.0).unwrap();
        }
        let found: Vec<usize> = [0.5, 1.5, 2.5]
            .iter()
            .map(|&mass| tree.find_prefix(mass).unwrap())
            .collect();
        assert_eq!(found, vec![0, 1, 2]);
    }

    #[test]
    fn integer_masses_count_priorities() {
        let mut tree = SumTree::new(3).unwrap();
        for (slot, priority) in [10.0, 5.0, 2.0].into_iter().enumerate() {
            tree.set(slot, priority).unwrap();
        }
        let mut counts = [0usize; 3];
        for mass in 0..17 {
            counts[tree.find_prefix(mass as f64).unwrap()] += 1;
        }
        assert_eq!(counts, [10, 5, 2]);

        let mut masses: Vec<f64> = (0..17).map(f64::from).collect();
        let mut leaves = vec![0; 17];
        tree.find_prefix_many_unchecked(&mut masses, &mut leaves);
        let mut counts = [0usize; 3];
        for leaf in leaves {
            counts[leaf] += 1;
        }
        assert_eq!(counts, [10, 5, 2]);
    }

    #[test]
    fn mass_outside_total_is_rejected() {
        let mut tree = SumTree::new(2).unwrap();
        tree.set(0, 1.0).unwrap();
        assert!(tree.find_prefix(1.0).is_err());
        assert!(tree.find_prefix(-0.5).is_err());
    }

    // Returns the first leaf whose running sum exceeds `mass`, by a linear scan.
    fn scan(values: &[f64], mass: f64) -> usize {
        let mut running = 0.0;
        values
            .iter()
            .position(|&value| {
                running += value;
                mass < running
            })
            .unwrap()
    }

    #[test]
    fn deep_tree_matches_a_linear_scan() {
        // 1000 leaves need three inner levels of eight; every third leaf is zero.
        let values: Vec<f64> = (0..1000)
            .map(|i| {
                if i % 3 == 0 {
                    0.0
                } else {
                    (i % 17) as f64 + 0.25
                }
            })
            .collect();
        let mut tree = SumTree::new(values.len()).unwrap();
        for (leaf, &value) in values.iter().enumerate() {
            tree.set(leaf, value).unwrap();
        }
        assert_eq!(tree.inner.len(), 4);

        // Every value is a multiple of 1/4 and the total is small, so all sums are exact.
        let total: f64 = values.iter().sum();
        assert_eq!(tree.total(), total);

        // Masses at the start, middle and last representable value of each positive leaf.
        let mut running = 0.0;
        let mut masses = Vec::new();
        for &value in &values {
            if value > 0.0 {
                let end: f64 = running + value;
                masses.extend([running, running + value / 2.0, end.next_down()]);
            }
            running += value;
        }

        let mut leaves = vec![0; masses.len()];
        tree.find_prefix_many(&masses, &mut leaves).unwrap();
        for (&mass, &leaf) in masses.iter().zip(&leaves) {
            assert_eq!(leaf, scan(&values, mass), "mass {mass}");
            assert_eq!(tree.find_prefix(mass).unwrap(), leaf);
        }
    }

    #[test]
    fn batched_set_equals_one_at_a_time() {
        let mut one = SumTree::with_secondary(700).unwrap();
        let mut many = SumTree::with_secondary(700).unwrap();
        let leaves: Vec<(usize, f64, f64)> = (0..300)
            .map(|i| ((i * 37) % 700, 0.1 * (i % 11) as f64, (i % 5) as f64))
            .collect();
        for &(index, value, secondary) in &leaves {
            one.set_unchecked(index, value, secondary);
        }
        many.set_many_unchecked(&leaves);
        for (a, b) in one.inner.iter().zip(&many.inner) {
            for group in 0..a.sums.len() {
                assert_eq!(a.reduce::<false>(group), b.reduce::<false>(group));
            }
        }
        assert_eq!(one.total().to_bits(), many.total().to_bits());
        assert_eq!(one.min_positive(), many.min_positive());
        assert_eq!(one.max(), 4.0);
        assert_eq!(many.max(), 4.0);
        // The batch leaves no entry queued for the next one.
        assert!(many.queued.iter().flatten().all(|&word| word == 0));
    }

    // Returns pseudo-random groups with zeros, -0.0, tiny, huge and equal values in them.
    fn awkward_groups(count: usize) -> Vec<[f64; FANOUT]> {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let special = [0.0, -0.0, 5e-324, 1e300, 1.0, 1.0, 0.1, 0.3];
        (0..count)
            .map(|_| {
                std::array::from_fn(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    match state % 4 {
                        0 => special[(state >> 8) as usize % special.len()],
                        _ => (state >> 11) as f64 / (1u64 << 40) as f64,
                    }
                })
            })
            .collect()
    }

    #[test]
    fn wide_reductions_match_portable_bit_for_bit() {
        #[cfg(target_arch = "x86_64")]
        {
            if !std::arch::is_x86_feature_detected!("avx512f") {
                eprintln!("skipped: this CPU has no AVX-512F, so only the portable code runs");
                return;
            }
            let groups = awkward_groups(3000);
            for window in groups.windows(3) {
                let (values, mins, maxs) = (&window[0], &window[1], &window[2]);
                let mins = mins.map(|v| if v > 0.0 { v } else { f64::INFINITY });
                let maxs = maxs.map(|v| v + 0.0);
                let values = values.map(|v| v + 0.0);
                // SAFETY: the CPU has AVX-512F, checked above.
                let wide = unsafe { wide::summarise(&values, &mins, &maxs) };
                let portable = (
                    pair_sum(&values),
                    pairwise(&mins, lesser),
                    pairwise(&maxs, greater),
                );
                assert_eq!(wide.0.to_bits(), portable.0.to_bits(), "sum of {values:?}");
                assert_eq!(wide.1.to_bits(), portable.1.to_bits(), "min of {mins:?}");
                assert_eq!(wide.2.to_bits(), portable.2.to_bits(), "max of {maxs:?}");
                let positive = values.map(|v| if v > 0.0 { v } else { f64::INFINITY });
                // SAFETY: as above.
                let leaves = unsafe { wide::summarise_leaves(&values, &maxs) };
                assert_eq!(leaves.0.to_bits(), portable.0.to_bits());
                assert_eq!(leaves.1.to_bits(), pairwise(&positive, lesser).to_bits());
                assert_eq!(leaves.2.to_bits(), portable.2.to_bits());
            }
        }
    }

    #[test]
    fn dispatched_walk_and_update_match_portable() {
        let values: Vec<f64> = awkward_groups(2000)
            .into_iter()
            .flatten()
            .map(|v| v.clamp(0.0, 1e6))
            .collect();
        let indices: Vec<usize> = (0..values.len()).collect();
        let leaves: Vec<(usize, f64, f64)> =
            indices.iter().map(|&i| (i, values[i], values[i])).collect();
        let mut dispatched = SumTree::new(values.len()).unwrap();
        let mut portable = SumTree::new(values.len()).unwrap();
        dispatched.set_many_unchecked(&leaves);
        portable.update::<false>(&leaves);
        for (a, b) in dispatched.inner.iter().zip(&portable.inner) {
            for group in 0..a.sums.len() {
                let (x, y) = (a.reduce::<false>(group), b.reduce::<false>(group));
                assert_eq!(
                    [x.0, x.1, x.2].map(f64::to_bits),
                    [y.0, y.1, y.2].map(f64::to_bits)
                );
            }
        }
        let total = portable.total();
        let masses: Vec<f64> = (0..5000).map(|i| total * (i as f64 / 5000.0)).collect();
        let (mut wide_masses, mut portable_masses) = (masses.clone(), masses);
        let (mut wide_leaves, mut portable_leaves) = (vec![0; 5000], vec![0; 5000]);
        dispatched.find_prefix_many_unchecked(&mut wide_masses, &mut wide_leaves);
        portable.walk(&mut portable_masses, &mut portable_leaves);
        assert_eq!(wide_leaves, portable_leaves);
    }

    #[test]
    fn negative_zero_is_stored_as_zero() {
        let mut tree = SumTree::new(3).unwrap();
        tree.set(1, -0.0).unwrap();
        assert_eq!(tree.max().to_bits(), 0.0f64.to_bits());
        assert_eq!(tree.get(1).to_bits(), 0.0f64.to_bits());
    }

    #[test]
    fn batched_set_checks_everything_first() {
        let mut tree = SumTree::new(4).unwrap();
        assert!(tree.set_many(&[0, 9], &[1.0, 1.0]).is_err());
        assert!(tree.set_many(&[0, 1], &[1.0, f64::NAN]).is_err());
        assert!(tree.set_many(&[0], &[1.0, 2.0]).is_err());
        assert_eq!(tree.total(), 0.0);
        tree.set_many(&[3, 1, 3], &[1.0, 2.0, 5.0]).unwrap();
        assert_eq!((tree.get(1), tree.get(3), tree.total()), (2.0, 5.0, 7.0));
    }

    #[test]
    fn walk_skips_zero_children_and_survives_rounding() {
        let mut values = [0.0; FANOUT];
        values[2] = 1.0;
        values[5] = 2.0;
        assert_eq!(pick(&values, 0.0), (2, 0.0));
        assert_eq!(pick(&values, 2.5), (5, 1.5));
        // At or above the group's sum (only rounding gets there): the last positive child.
        assert_eq!(pick(&values, 3.0).0, 5);
        assert_eq!(pick(&values, 7.0).0, 5);
    }

    #[test]
    fn minimum_skips_zero_leaves() {
        let mut tree = SumTree::new(4).unwrap();
        tree.set(1, 3.0).unwrap();
        tree.set(2, 0.5).unwrap();
        assert_eq!(tree.min_positive(), 0.5);
        assert_eq!(tree.max(), 3.0);
        tree.set(2, 0.0).unwrap();
        assert_eq!(tree.min_positive(), 3.0);
    }
}
