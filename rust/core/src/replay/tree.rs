//! Segment trees over slot priorities: sums for proportional sampling, minima for the largest
//! importance weight, maxima for the priority given to new transitions.

use crate::error::{Error, Result};

/// One node: the sum and the smallest positive value of its leaves, and the largest of their
/// secondary values. Keeping the three together puts one cache line, not three, on each level of
/// a walk, which matters once the tree outgrows the CPU caches.
#[derive(Clone, Copy, Debug)]
struct Node {
    sum: f64,
    min: f64,
    max: f64,
}

const EMPTY: Node = Node {
    sum: 0.0,
    min: f64::INFINITY,
    max: 0.0,
};

/// A complete binary tree over `capacity` leaves (padded to a power of two) whose inner nodes hold
/// the sum, minimum and maximum of their subtrees. Leaves are `f64` so that a million priorities
/// sum without the drift `f32` shows after a few thousand updates.
///
/// Each leaf has a value (summed, and its minimum kept) and a secondary value whose maximum is
/// kept. [`SumTree::set`] makes both equal; the replay buffer stores `p^alpha` as the value and
/// the raw priority `p` as the secondary value.
#[derive(Clone, Debug)]
pub struct SumTree {
    capacity: usize,
    leaves: usize,
    nodes: Vec<Node>,
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
        let mut nodes = Vec::with_capacity(2 * leaves);
        crate::memory::advise_huge_pages(nodes.spare_capacity_mut());
        nodes.resize(2 * leaves, EMPTY);
        Ok(SumTree {
            capacity,
            leaves,
            nodes,
        })
    }

    /// Returns the number of leaves a caller may address.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Returns the sum of all leaves.
    pub fn total(&self) -> f64 {
        self.nodes[1].sum
    }

    /// Returns the smallest positive leaf, or infinity when every leaf is zero.
    pub fn min_positive(&self) -> f64 {
        self.nodes[1].min
    }

    /// Returns the largest secondary value, or zero when every leaf is zero.
    pub fn max(&self) -> f64 {
        self.nodes[1].max
    }

    /// Returns the value of leaf `index`.
    pub fn get(&self, index: usize) -> f64 {
        self.nodes[self.leaves + index].sum
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
        self.set_unchecked(index, value, value);
        Ok(())
    }

    pub(crate) fn set_unchecked(&mut self, index: usize, value: f64, secondary: f64) {
        let mut node = self.leaves + index;
        self.nodes[node] = Node {
            sum: value,
            min: if value > 0.0 { value } else { f64::INFINITY },
            max: secondary,
        };
        while node > 1 {
            node /= 2;
            let (left, right) = (self.nodes[2 * node], self.nodes[2 * node + 1]);
            self.nodes[node] = Node {
                sum: left.sum + right.sum,
                min: left.min.min(right.min),
                max: left.max.max(right.max),
            };
        }
    }

    /// Return the leaf `i` with `sum(leaves[..i]) <= mass < sum(leaves[..=i])`.
    ///
    /// `mass` must lie in `[0, total)`. Rounding can make the walk end on a zero leaf when
    /// `mass` is within a few ulps of a subtree sum. The walk then steps left to the nearest
    /// positive leaf.
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

    /// Find the leaf of every mass in `masses` (each in `[0, total)`) and write it to `leaves`.
    ///
    /// The walks advance together one level at a time. Within a level the loads of different
    /// walks do not depend on each other, so the CPU overlaps their cache misses, where walking
    /// one mass after another waits for each miss in turn.
    pub(crate) fn find_prefix_many_unchecked(&self, masses: &mut [f64], leaves: &mut [usize]) {
        leaves.fill(1);
        let mut level_width = 1;
        while level_width < self.leaves {
            for (node, mass) in leaves.iter_mut().zip(masses.iter_mut()) {
                let left = 2 * *node;
                let left_sum = self.nodes[left].sum;
                if *mass < left_sum {
                    *node = left;
                } else {
                    *mass -= left_sum;
                    *node = left + 1;
                }
            }
            level_width *= 2;
        }
        for node in leaves.iter_mut() {
            let mut index = *node - self.leaves;
            while self.nodes[self.leaves + index].sum <= 0.0 && index > 0 {
                index -= 1;
            }
            *node = index;
        }
    }

    pub(crate) fn find_prefix_unchecked(&self, mut mass: f64) -> usize {
        let mut node = 1;
        while node < self.leaves {
            let left = 2 * node;
            let left_sum = self.nodes[left].sum;
            if mass < left_sum {
                node = left;
            } else {
                mass -= left_sum;
                node = left + 1;
            }
        }
        let mut index = node - self.leaves;
        while self.nodes[self.leaves + index].sum <= 0.0 && index > 0 {
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
