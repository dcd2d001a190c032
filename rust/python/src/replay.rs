//! Bindings of `recrl_core::replay`: the `ReplayStore` and `SumTree` classes.
//!
//! Sampling writes into output arrays that the caller allocates once and passes in a dict, so
//! a training loop reuses the same memory (pinned, if it wants) batch after batch.

use std::path::PathBuf;

use numpy::{
    Element, IntoPyArray, PyArray1, PyArrayDyn, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2,
    PyReadwriteArrayDyn, PyUntypedArrayMethods,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use recrl_core::replay::tree::SumTree;
use recrl_core::replay::{BatchMut, ReplayBuffer, ReplaySpec, Transitions};

use crate::errors::{run_detached, to_py_err};

fn check_columns(name: &str, shape: &[usize], width: usize) -> PyResult<()> {
    if shape.len() == 2 && shape[1] == width {
        Ok(())
    } else {
        Err(to_py_err(recrl_core::Error::shape(
            name,
            format!("shape (B, {width})"),
            format!("shape {shape:?}"),
        )))
    }
}

/// Writable output arrays taken from the dict passed to a sampling method.
struct Outputs<'py> {
    observations: PyReadwriteArrayDyn<'py, f32>,
    next_observations: PyReadwriteArrayDyn<'py, f32>,
    actions: PyReadwriteArrayDyn<'py, f32>,
    rewards: PyReadwriteArrayDyn<'py, f32>,
    terminals: PyReadwriteArrayDyn<'py, bool>,
    truncations: PyReadwriteArrayDyn<'py, bool>,
    extras: Vec<PyReadwriteArrayDyn<'py, f32>>,
    indices: PyReadwriteArrayDyn<'py, i64>,
    stamps: PyReadwriteArrayDyn<'py, i64>,
    weights: Option<PyReadwriteArrayDyn<'py, f32>>,
}

// Take `out[key]` as a writable C-contiguous array of element `T`, naming the key on failure.
fn required<'py, T: Element>(
    out: &Bound<'py, PyDict>,
    key: &str,
) -> PyResult<PyReadwriteArrayDyn<'py, T>> {
    let Some(value) = out.get_item(key)? else {
        return Err(PyValueError::new_err(format!(
            "out: missing the output array {key:?}"
        )));
    };
    let array = value
        .cast_into::<PyArrayDyn<T>>()
        .map_err(|error| PyValueError::new_err(format!("out[{key:?}]: {}", PyErr::from(error))))?;
    array
        .try_readwrite()
        .map_err(|error| PyValueError::new_err(format!("out[{key:?}]: {error}")))
}

impl<'py> Outputs<'py> {
    fn extract(out: &Bound<'py, PyDict>, extra_names: &[String], weights: bool) -> PyResult<Self> {
        let extras = extra_names
            .iter()
            .map(|name| required(out, name))
            .collect::<PyResult<Vec<_>>>()?;
        Ok(Outputs {
            observations: required(out, "observations")?,
            next_observations: required(out, "next_observations")?,
            actions: required(out, "actions")?,
            rewards: required(out, "rewards")?,
            terminals: required(out, "terminals")?,
            truncations: required(out, "truncations")?,
            extras,
            indices: required(out, "indices")?,
            stamps: required(out, "stamps")?,
            weights: if weights {
                Some(required(out, "weights")?)
            } else {
                None
            },
        })
    }

    fn view(&mut self) -> PyResult<BatchMut<'_>> {
        Ok(BatchMut {
            observations: self.observations.as_slice_mut()?,
            next_observations: self.next_observations.as_slice_mut()?,
            actions: self.actions.as_slice_mut()?,
            rewards: self.rewards.as_slice_mut()?,
            terminals: self.terminals.as_slice_mut()?,
            truncations: self.truncations.as_slice_mut()?,
            extras: self
                .extras
                .iter_mut()
                .map(|column| column.as_slice_mut())
                .collect::<Result<Vec<_>, _>>()?,
            indices: self.indices.as_slice_mut()?,
            stamps: self.stamps.as_slice_mut()?,
            weights: self
                .weights
                .as_mut()
                .map(|w| w.as_slice_mut())
                .transpose()?,
        })
    }
}

/// A thread-safe transition store; see `recrl.replay.ReplayBuffer` for the documented API.
#[pyclass(frozen, module = "recrl._core")]
struct ReplayStore {
    inner: ReplayBuffer,
    // Fixed at creation and kept here, so reading it never waits for the store's lock while
    // holding the GIL.
    spec: ReplaySpec,
    extra_names: Vec<String>,
}

impl ReplayStore {
    fn from_buffer(inner: ReplayBuffer) -> PyResult<Self> {
        let spec = inner.spec().map_err(to_py_err)?;
        let extra_names = spec.extras.iter().map(|(name, _)| name.clone()).collect();
        Ok(ReplayStore {
            inner,
            spec,
            extra_names,
        })
    }

    fn spec(&self) -> PyResult<ReplaySpec> {
        Ok(self.spec.clone())
    }
}

#[pymethods]
impl ReplayStore {
    #[new]
    #[pyo3(signature = (capacity, observation_dim, action_dim, reward_dim, *, extras=Vec::new(), alpha=0.6, seed=0))]
    fn new(
        capacity: usize,
        observation_dim: usize,
        action_dim: usize,
        reward_dim: usize,
        extras: Vec<(String, usize)>,
        alpha: f64,
        seed: u64,
    ) -> PyResult<Self> {
        let spec = ReplaySpec {
            capacity,
            observation_dim,
            action_dim,
            reward_dim,
            extras,
            alpha,
        };
        Self::from_buffer(ReplayBuffer::new(spec, seed).map_err(to_py_err)?)
    }

    #[allow(clippy::too_many_arguments)]
    fn extend(
        &self,
        py: Python<'_>,
        observations: PyReadonlyArray2<'_, f32>,
        actions: PyReadonlyArray2<'_, f32>,
        rewards: PyReadonlyArray2<'_, f32>,
        next_observations: PyReadonlyArray2<'_, f32>,
        terminals: PyReadonlyArray1<'_, bool>,
        truncations: PyReadonlyArray1<'_, bool>,
        extras: Vec<PyReadonlyArray2<'_, f32>>,
    ) -> PyResult<()> {
        let spec = self.spec()?;
        check_columns("observations", observations.shape(), spec.observation_dim)?;
        check_columns(
            "next_observations",
            next_observations.shape(),
            spec.observation_dim,
        )?;
        check_columns("actions", actions.shape(), spec.action_dim)?;
        check_columns("rewards", rewards.shape(), spec.reward_dim)?;
        for ((name, width), column) in spec.extras.iter().zip(&extras) {
            check_columns(name, column.shape(), *width)?;
        }
        let rows = Transitions {
            observations: observations.as_slice()?,
            actions: actions.as_slice()?,
            rewards: rewards.as_slice()?,
            next_observations: next_observations.as_slice()?,
            terminals: terminals.as_slice()?,
            truncations: truncations.as_slice()?,
            extras: extras
                .iter()
                .map(|column| column.as_slice())
                .collect::<Result<Vec<_>, _>>()?,
        };
        run_detached(py, || self.inner.extend(&rows))
    }

    fn sample_uniform(
        &self,
        py: Python<'_>,
        batch_size: usize,
        replace: bool,
        out: &Bound<'_, PyDict>,
    ) -> PyResult<()> {
        let mut outputs = Outputs::extract(out, &self.extra_names, false)?;
        let mut view = outputs.view()?;
        run_detached(py, || {
            self.inner.sample_uniform(batch_size, replace, &mut view)
        })
    }

    fn sample_prioritized(
        &self,
        py: Python<'_>,
        batch_size: usize,
        beta: f64,
        out: &Bound<'_, PyDict>,
    ) -> PyResult<()> {
        let mut outputs = Outputs::extract(out, &self.extra_names, true)?;
        let mut view = outputs.view()?;
        run_detached(py, || {
            self.inner.sample_prioritized(batch_size, beta, &mut view)
        })
    }

    fn sample_sequences(
        &self,
        py: Python<'_>,
        batch_size: usize,
        length: usize,
        out: &Bound<'_, PyDict>,
    ) -> PyResult<()> {
        let mut outputs = Outputs::extract(out, &self.extra_names, false)?;
        let mut view = outputs.view()?;
        run_detached(py, || {
            self.inner.sample_sequences(batch_size, length, &mut view)
        })
    }

    fn gather(
        &self,
        py: Python<'_>,
        indices: PyReadonlyArray1<'_, i64>,
        out: &Bound<'_, PyDict>,
    ) -> PyResult<()> {
        let indices = indices.as_slice()?;
        let mut outputs = Outputs::extract(out, &self.extra_names, false)?;
        let mut view = outputs.view()?;
        run_detached(py, || self.inner.gather(indices, &mut view))
    }

    #[pyo3(signature = (indices, priorities, stamps=None))]
    fn update_priorities(
        &self,
        py: Python<'_>,
        indices: PyReadonlyArray1<'_, i64>,
        priorities: PyReadonlyArray1<'_, f64>,
        stamps: Option<PyReadonlyArray1<'_, i64>>,
    ) -> PyResult<usize> {
        let indices = indices.as_slice()?;
        let priorities = priorities.as_slice()?;
        let stamps = stamps.as_ref().map(|s| s.as_slice()).transpose()?;
        run_detached(py, || {
            self.inner.update_priorities(indices, priorities, stamps)
        })
    }

    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        run_detached(py, || self.inner.save(&path))
    }

    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        Self::from_buffer(run_detached(py, || ReplayBuffer::load(&path))?)
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        run_detached(py, || self.inner.len())
    }

    #[getter]
    fn capacity(&self) -> PyResult<usize> {
        Ok(self.spec()?.capacity)
    }

    #[getter]
    fn observation_dim(&self) -> PyResult<usize> {
        Ok(self.spec()?.observation_dim)
    }

    #[getter]
    fn action_dim(&self) -> PyResult<usize> {
        Ok(self.spec()?.action_dim)
    }

    #[getter]
    fn reward_dim(&self) -> PyResult<usize> {
        Ok(self.spec()?.reward_dim)
    }

    #[getter]
    fn extras(&self) -> PyResult<Vec<(String, usize)>> {
        Ok(self.spec()?.extras)
    }

    #[getter]
    fn alpha(&self) -> PyResult<f64> {
        Ok(self.spec()?.alpha)
    }

    #[getter]
    fn stale_updates(&self, py: Python<'_>) -> PyResult<u64> {
        run_detached(py, || self.inner.stale_updates())
    }

    #[getter]
    fn position(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(run_detached(py, || self.inner.cursor())?.position)
    }

    #[getter]
    fn slots_used(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(run_detached(py, || self.inner.cursor())?.size)
    }

    fn priorities<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray1<f64>>> {
        Ok(run_detached(py, || self.inner.priorities())?.into_pyarray(py))
    }

    fn sampleable_mask<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray1<bool>>> {
        Ok(run_detached(py, || self.inner.sampleable_mask())?.into_pyarray(py))
    }

    fn generator_state(&self, py: Python<'_>) -> PyResult<(u64, u64, u64, u64)> {
        let [a, b, c, d] = run_detached(py, || self.inner.generator_state())?;
        Ok((a, b, c, d))
    }
}

/// Sum, minimum and maximum tree over float64 leaves, exposed for tests and custom samplers.
#[pyclass(name = "SumTree", module = "recrl._core")]
struct PySumTree {
    inner: SumTree,
}

#[pymethods]
impl PySumTree {
    #[new]
    fn new(capacity: usize) -> PyResult<Self> {
        Ok(PySumTree {
            inner: SumTree::new(capacity).map_err(to_py_err)?,
        })
    }

    #[getter]
    fn capacity(&self) -> usize {
        self.inner.capacity()
    }

    fn set(&mut self, index: usize, value: f64) -> PyResult<()> {
        self.inner.set(index, value).map_err(to_py_err)
    }

    fn get(&self, index: usize) -> PyResult<f64> {
        if index >= self.inner.capacity() {
            return Err(to_py_err(recrl_core::Error::invalid(
                "index",
                format!(
                    "expected a leaf below {}, got {index}",
                    self.inner.capacity()
                ),
            )));
        }
        Ok(self.inner.get(index))
    }

    fn total(&self) -> f64 {
        self.inner.total()
    }

    fn min_positive(&self) -> f64 {
        self.inner.min_positive()
    }

    fn max(&self) -> f64 {
        self.inner.max()
    }

    fn max_value(&self) -> f64 {
        self.inner.max_value()
    }

    fn find_prefix(&self, mass: f64) -> PyResult<usize> {
        self.inner.find_prefix(mass).map_err(to_py_err)
    }

    fn find_prefix_many<'py>(
        &self,
        py: Python<'py>,
        masses: PyReadonlyArray1<'py, f64>,
    ) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let masses = masses.as_slice()?;
        let mut leaves = vec![0; masses.len()];
        self.inner
            .find_prefix_many(masses, &mut leaves)
            .map_err(to_py_err)?;
        Ok(leaves
            .into_iter()
            .map(|leaf| leaf as i64)
            .collect::<Vec<_>>()
            .into_pyarray(py))
    }

    fn set_many(
        &mut self,
        indices: PyReadonlyArray1<'_, i64>,
        values: PyReadonlyArray1<'_, f64>,
    ) -> PyResult<()> {
        let indices = indices
            .as_slice()?
            .iter()
            .map(|&index| {
                usize::try_from(index).map_err(|_| {
                    to_py_err(recrl_core::Error::invalid(
                        "indices",
                        format!("expected leaves >= 0, got {index}"),
                    ))
                })
            })
            .collect::<PyResult<Vec<_>>>()?;
        self.inner
            .set_many(&indices, values.as_slice()?)
            .map_err(to_py_err)
    }
}

pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<ReplayStore>()?;
    module.add_class::<PySumTree>()?;
    Ok(())
}
