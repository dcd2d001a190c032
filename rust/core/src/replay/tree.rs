//! Segment trees over slot priorities: sums for proportional sampling, minima for the largest
//! importance weight, maxima for the priority given to new transitions.

use crate::error::{Error, Result};

/// A complete binary tree over `capacity` leaves (padded to a power of two) whose inner nodes hold
/// the sum, minimum and maximum of their subtrees. Leaves are `f64` so that a million priorities
/// sum without the drift `f32` shows after a few thousand updates.
#[derive(Clone, Debug)]
pub struct SumTree {
    capacity: usize,
    leaves: usize,
    sums: Vec<f64>,
    minima: Vec<f64>,
    maxima: Vec<f64>,
}

impl SumTree {
    /// Build a tree of `capacity` leaves, all zero.
    pub fn new(capacity: usize) -> Result<Self> {
        if capacity == 0 {
            return Err(Error::invalid(
                "capacity",
                "expected at least 1 leaf, got 0",
            ));
        }
        let leaves = capacity.next_power_of_two();
        Ok(SumTree {
            capacity,
            leaves,
            sums: vec![0.0; 2 * leaves],
            minima: vec![f64::INFINITY; 2 * leaves],
            maxima: vec![0.0; 2 * leaves],
        })
    }

    /// Number of leaves a caller may address.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Sum of all leaves.
    pub fn total(&self) -> f64 {
        self.sums[1]
    }

    /// Smallest positive leaf, or infinity when every leaf is zero.
    pub fn min_positive(&self) -> f64 {
        self.minima[1]
    }

    /// Largest leaf, or zero when every leaf is zero.
    pub fn max(&self) -> f64 {
        self.maxima[1]
    }

    /// Value of leaf `index`.
    pub fn get(&self, index: usize) -> f64 {
        self.sums[self.leaves + index]
    }

    /// Set leaf `index` to `value` (finite, at least zero) and refresh its ancestors.
    ///
    /// A zero leaf is excluded from the minimum, so it can never be drawn and never sets the
    /// largest importance weight.
    pub fn set(&mut self, index: usize, value: f64) -> Result<()> {
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
        self.set_unchecked(index, value);
        Ok(())
    }

    pub(crate) fn set_unchecked(&mut self, index: usize, value: f64) {
        let mut node = self.leaves + index;
        self.sums[node] = value;
        self.minima[node] = if value > 0.0 { value } else { f64::INFINITY };
        self.maxima[node] = value;
        while node > 1 {
            node /= 2;
            let (left, right) = (2 * node, 2 * node + 1);
            self.sums[node] = self.sums[left] + self.sums[right];
            self.minima[node] = self.minima[left].min(self.minima[right]);
            self.maxima[node] = self.maxima[left].max(self.maxima[right]);
        }
    }

    /// Return the leaf `i` with `sum(leaves[..i]) <= mass < sum(leaves[..=i])`.
    ///
    /// `mass` must lie in `[0, total)`. Rounding can make the walk end on a zero leaf when
    /// `mass` is within a few ulps of the total; the walk then moves to the last positive leaf
    /// on its left, which is the leaf the exact arithmetic would have chosen.
    pub fn find_prefix(&self, mass: f64) -> Result<usize> {
        let total = self.total();
        if !(mass >= 0.0 && mass < total) {
            return Err(Error::invalid(
                "mass",
                format!("expected a value in [0, {total}), got {mass}"),
            ));
        }
        Ok(self.find_prefix_unchecked(mass))
    }

    pub(crate) fn find_prefix_unchecked(&self, mut mass: f64) -> usize {
        let mut node = 1;
        while node < self.leaves {
            let left = 2 * node;
            if mass < self.sums[left] {
                node = left;
            } else {
                mass -= self.sums[left];
                node = left + 1;
            }
        }
        let mut index = node - self.leaves;
        while self.sums[self.leaves + index] <= 0.0 && index > 0 {
            index -= 1;
        }
        index
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
    }

    #[test]
    fn mass_outside_total_is_rejected() {
        let mut tree = SumTree::new(2).unwrap();
        tree.set(0, 1.0).unwrap();
        assert!(tree.find_prefix(1.0).is_err());
        assert!(tree.find_prefix(-0.5).is_err());
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
