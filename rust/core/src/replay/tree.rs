//! Segment trees over slot priorities: sums for proportional sampling, minima for the largest
//! importance weight, maxima for the priority given to new transitions.

use crate::error::{Error, Result};

/// Children per inner node. Eight `f64` fill one 64-byte cache line, so each level of a walk
/// reads one line, and a million leaves need 7 levels where a binary tree needs 20.
const FANOUT: usize = 8;

/// How many walks ahead [`SumTree::find_prefix_many_unchecked`] prefetches the next group.
const AHEAD: usize = 16;

/// Ask the CPU to start loading the cache line of `value`. A hint only: it never faults and
/// does nothing on targets without a stable prefetch instruction.
#[inline(always)]
fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetching is a hint that neither faults nor changes memory, and `value` is a
    // valid reference.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>((value as *const T).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
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

/// Reduce a group in pairs with `pair`, as a binary tree: neighbours first, then neighbouring
/// pairs, then the two halves. The values are never NaN, so plain comparisons serve for minimum
/// and maximum, where `f64::min` and `f64::max` would add NaN checks to every step.
#[inline]
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
#[inline]
fn pair_sum(values: &[f64; FANOUT]) -> f64 {
    pairwise(values, |a, b| a + b)
}

/// Pick the child of a group that contains `mass` and return it with the mass left inside it.
///
/// Descends the pairs that [`pair_sum`] adds, as a binary tree of three levels. Selects replace
/// branches, so random masses cost no mispredictions, and each step waits on one addition, not
/// on a running sum of eight. When rounding leaves `mass` at or above the
/// group's sum, the walk takes the last positive child.
#[inline]
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

    fn write(&mut self, entry: usize, (sum, min, max): (f64, f64, f64)) {
        let (group, lane) = (entry / FANOUT, entry % FANOUT);
        self.sums[group].0[lane] = sum;
        self.mins[group].0[lane] = min;
        self.maxs[group].0[lane] = max;
    }

    /// Returns the sum, minimum and maximum of group `group`.
    fn reduce(&self, group: usize) -> (f64, f64, f64) {
        (
            pair_sum(&self.sums[group].0),
            pairwise(&self.mins[group].0, lesser),
            pairwise(&self.maxs[group].0, greater),
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
        Ok(SumTree {
            capacity,
            leaves: groups(leaf_groups, ZEROS),
            secondary: None,
            inner,
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

    fn check_leaf(&self, index: usize, value: f64) -> Result<()> {
        if index >= self.capacity {
            return Err(Error::invalid(
                "index",
                format!("expected a leaf below {}, got {index}", self.capacity),
            ));
        }
        if !(value.is_finite() && value >= 0.0) {
            return Err(Error::invalid(
                "value",
                format!("expected a finite value >= 0, got {value}"),
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
        self.check_leaf(index, value)?;
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
            self.check_leaf(index, value)?;
        }
        let leaves: Vec<(usize, f64, f64)> = indices
            .iter()
            .zip(values)
            .map(|(&index, &value)| (index, value, value))
            .collect();
        self.set_many_unchecked(&leaves);
        Ok(())
    }

    // Write a leaf and its secondary value, when the tree stores one.
    fn write_leaf(&mut self, index: usize, value: f64, secondary: f64) {
        let (group, lane) = (index / FANOUT, index % FANOUT);
        self.leaves[group].0[lane] = value;
        if let Some(secondaries) = &mut self.secondary {
            secondaries[group].0[lane] = secondary;
        }
    }

    // Returns the sum, smallest positive value and largest secondary value of leaf group `group`.
    fn reduce_leaves(&self, group: usize) -> (f64, f64, f64) {
        let values = &self.leaves[group].0;
        let positive = values.map(|value| if value > 0.0 { value } else { f64::INFINITY });
        let secondary = self.secondary.as_ref().map_or(values, |s| &s[group].0);
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
        let summary = self.reduce_leaves(entry);
        self.inner[0].write(entry, summary);
        for level in 1..self.inner.len() {
            let group = entry / FANOUT;
            let summary = self.inner[level - 1].reduce(group);
            self.inner[level].write(group, summary);
            entry = group;
        }
    }

    /// Set many leaves (index, value, secondary value) and refresh each touched ancestor once.
    pub(crate) fn set_many_unchecked(&mut self, leaves: &[(usize, f64, f64)]) {
        let mut touched = Vec::with_capacity(leaves.len());
        for &(index, value, secondary) in leaves {
            self.write_leaf(index, value, secondary);
            touched.push(index / FANOUT);
        }
        self.refresh(touched);
    }

    // Recompute the ancestors of the leaf groups in `groups`, one level at a time. Sorting
    // lets each level drop repeats with `dedup`, and the loads of one level do not depend on
    // each other, so the CPU overlaps their cache misses.
    fn refresh(&mut self, mut groups: Vec<usize>) {
        groups.sort_unstable();
        groups.dedup();
        for &group in &groups {
            let summary = self.reduce_leaves(group);
            self.inner[0].write(group, summary);
        }
        for level in 1..self.inner.len() {
            for group in groups.iter_mut() {
                *group /= FANOUT;
            }
            groups.dedup();
            let (below, above) = self.inner.split_at_mut(level);
            let (below, above) = (&below[level - 1], &mut above[0]);
            for &group in &groups {
                above.write(group, below.reduce(group));
            }
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
                format!("expected a value in [0, {total}), got {mass}"),
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
                assert_eq!(a.reduce(group), b.reduce(group));
            }
        }
        assert_eq!(one.total().to_bits(), many.total().to_bits());
        assert_eq!(one.min_positive(), many.min_positive());
        assert_eq!(one.max(), 4.0);
        assert_eq!(many.max(), 4.0);
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
