//! Forward pass of an exported multi-layer perceptron (`recrl.nets.MLP` in evaluation mode).

use rayon::prelude::*;

use super::kernels::{add_columns, add_matmul_transposed, dot, erfc};

/// Minimum rows per thread for a batch forward pass to be split across threads.
const MIN_ROWS_PER_THREAD: usize = 64;
use crate::error::{Error, Result};

/// The element-wise function between two linear layers, as in `torch.nn`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    Relu,
    /// `x` for x > 0, else `alpha * (exp(x) - 1)`.
    Elu {
        alpha: f32,
    },
    /// The exact GELU, `x * Phi(x)` (torch's default `approximate="none"`).
    Gelu,
    Tanh,
    LeakyRelu {
        negative_slope: f32,
    },
}

impl Activation {
    /// Parse the name and parameter written by `recrl.serving.export`.
    pub fn from_name(name: &str, parameter: Option<f64>) -> Result<Self> {
        let parameter = parameter.map(|p| p as f32);
        match name {
            "relu" => Ok(Activation::Relu),
            "elu" => Ok(Activation::Elu {
                alpha: parameter.unwrap_or(1.0),
            }),
            "gelu" => Ok(Activation::Gelu),
            "tanh" => Ok(Activation::Tanh),
            "leaky_relu" => Ok(Activation::LeakyRelu {
                negative_slope: parameter.unwrap_or(0.01),
            }),
            other => Err(Error::invalid(
                "activation",
                format!("expected one of relu, elu, gelu, tanh, leaky_relu, got {other:?}"),
            )),
        }
    }

    /// Apply the function to every value in place.
    pub fn apply(self, values: &mut [f32]) {
        match self {
            // `max` would turn NaN into 0; torch keeps NaN, and so does this comparison.
            Activation::Relu => values.iter_mut().for_each(|v| {
                if *v < 0.0 {
                    *v = 0.0
                }
            }),
            Activation::Elu { alpha } => values.iter_mut().for_each(|v| {
                if *v <= 0.0 {
                    *v = alpha * v.exp_m1()
                }
            }),
            Activation::Gelu => values.iter_mut().for_each(|v| {
                let x = f64::from(*v);
                *v = (0.5 * x * erfc(-x / std::f64::consts::SQRT_2)) as f32;
            }),
            Activation::Tanh => values.iter_mut().for_each(|v| *v = v.tanh()),
            Activation::LeakyRelu { negative_slope } => values.iter_mut().for_each(|v| {
                if *v < 0.0 {
                    *v *= negative_slope
                }
            }),
        }
    }
}

/// One `nn.Linear`: `y = W x + b` with W stored row-major [outputs, inputs] as torch does.
#[derive(Debug, Clone)]
pub struct Linear {
    pub inputs: usize,
    pub outputs: usize,
    /// [outputs, inputs], for the dot-product and GEMM paths.
    pub weight: Vec<f32>,
    /// [inputs, outputs], for the axpy path of one row.
    weight_transposed: Vec<f32>,
    pub bias: Vec<f32>,
}

impl Linear {
    /// Build a layer from a torch-layout weight [outputs, inputs] and bias [outputs].
    pub fn new(inputs: usize, outputs: usize, weight: Vec<f32>, bias: Vec<f32>) -> Result<Self> {
        if weight.len() != inputs * outputs {
            return Err(Error::shape(
                "weight",
                format!("({outputs}, {inputs})"),
                format!("{} values", weight.len()),
            ));
        }
        if bias.len() != outputs {
            return Err(Error::shape(
                "bias",
                format!("({outputs},)"),
                format!("{} values", bias.len()),
            ));
        }
        let mut weight_transposed = vec![0.0f32; weight.len()];
        for o in 0..outputs {
            for i in 0..inputs {
                weight_transposed[i * outputs + o] = weight[o * inputs + i];
            }
        }
        Ok(Linear {
            inputs,
            outputs,
            weight,
            weight_transposed,
            bias,
        })
    }

    /// `output = W x + b` for one row.
    ///
    /// Wide layers accumulate columns of W (axpy over [inputs, outputs]), which keeps the output
    /// in registers; narrow ones take one dot product per output.
    pub fn forward_one(&self, input: &[f32], output: &mut [f32]) {
        output.copy_from_slice(&self.bias);
        self.add_columns(0, input, output);
    }

    /// Add `W[:, offset..offset + input.len()] @ input` to `output`, for a layer whose input is
    /// split into parts (request features, then candidate features).
    pub fn add_columns(&self, offset: usize, input: &[f32], output: &mut [f32]) {
        if self.outputs >= 8 {
            let columns = &self.weight_transposed
                [offset * self.outputs..(offset + input.len()) * self.outputs];
            add_columns(columns, input, output);
        } else {
            for (o, value) in output.iter_mut().enumerate() {
                let row = o * self.inputs + offset;
                *value += dot(&self.weight[row..row + input.len()], input);
            }
        }
    }
}

/// Linear layers with an activation after every layer but the last.
#[derive(Debug, Clone)]
pub struct Mlp {
    pub layers: Vec<Linear>,
    pub activations: Vec<Activation>,
}

impl Mlp {
    /// Chain `layers`, checking that widths match and that there is one activation per gap.
    pub fn new(layers: Vec<Linear>, activations: Vec<Activation>) -> Result<Self> {
        if layers.is_empty() {
            return Err(Error::invalid(
                "layers",
                "expected at least one linear layer",
            ));
        }
        if activations.len() != layers.len() - 1 {
            return Err(Error::shape(
                "activations",
                format!("{} (one between each pair of layers)", layers.len() - 1),
                activations.len().to_string(),
            ));
        }
        for (position, pair) in layers.windows(2).enumerate() {
            if pair[0].outputs != pair[1].inputs {
                return Err(Error::shape(
                    format!("layer {}", position + 1),
                    format!("{} inputs", pair[0].outputs),
                    format!("{} inputs", pair[1].inputs),
                ));
            }
        }
        Ok(Mlp {
            layers,
            activations,
        })
    }

    pub fn input_dim(&self) -> usize {
        self.layers[0].inputs
    }

    pub fn output_dim(&self) -> usize {
        self.layers[self.layers.len() - 1].outputs
    }

    /// Forward one row with the hand-written kernels.
    pub fn forward_one(&self, input: &[f32]) -> Vec<f32> {
        let first = &self.layers[0];
        let mut hidden = vec![0.0f32; first.outputs];
        first.forward_one(input, &mut hidden);
        self.forward_one_from(1, hidden)
    }

    /// Continue a one-row forward pass: `hidden` contains the pre-activation output of layer
    /// `first - 1`.
    pub fn forward_one_from(&self, first: usize, mut hidden: Vec<f32>) -> Vec<f32> {
        for position in first..self.layers.len() {
            self.activations[position - 1].apply(&mut hidden);
            let layer = &self.layers[position];
            let mut output = vec![0.0f32; layer.outputs];
            layer.forward_one(&hidden, &mut output);
            hidden = output;
        }
        hidden
    }

    /// Forward `rows` rows [rows, input_dim] with GEMM; returns [rows, output_dim].
    ///
    /// With `threads` > 1 and enough rows, the rows are split into one contiguous block per
    /// thread and each block runs every layer on its own: one fork and join per call instead of
    /// one per layer, and each GEMM keeps the single-thread kernel.
    pub fn forward_batch(&self, inputs: &[f32], rows: usize, threads: usize) -> Vec<f32> {
        let parts = threads.min(rows / MIN_ROWS_PER_THREAD);
        if parts > 1 {
            let width = self.input_dim();
            let outputs = self.output_dim();
            let per_part = rows.div_ceil(parts);
            let mut result = vec![0.0f32; rows * outputs];
            result
                .par_chunks_mut(per_part * outputs)
                .zip(inputs.par_chunks(per_part * width))
                .for_each(|(block, rows_in)| {
                    let count = rows_in.len() / width;
                    block.copy_from_slice(&self.forward_batch_serial(rows_in, count));
                });
            return result;
        }
        self.forward_batch_serial(inputs, rows)
    }

    fn forward_batch_serial(&self, inputs: &[f32], rows: usize) -> Vec<f32> {
        let threads = 1;
        let first = &self.layers[0];
        let mut hidden = broadcast_rows(&first.bias, rows);
        add_matmul_transposed(
            inputs,
            &first.weight,
            first.inputs,
            &mut hidden,
            rows,
            first.inputs,
            first.outputs,
            threads,
        );
        self.forward_batch_from(1, hidden, rows, threads)
    }

    /// Continue a batch forward pass: `hidden` contains the pre-activation output of layer
    /// `first - 1` for every row.
    pub fn forward_batch_from(
        &self,
        first: usize,
        mut hidden: Vec<f32>,
        rows: usize,
        threads: usize,
    ) -> Vec<f32> {
        for position in first..self.layers.len() {
            self.activations[position - 1].apply(&mut hidden);
            let layer = &self.layers[position];
            let mut output = broadcast_rows(&layer.bias, rows);
            add_matmul_transposed(
                &hidden,
                &layer.weight,
                layer.inputs,
                &mut output,
                rows,
                layer.inputs,
                layer.outputs,
                threads,
            );
            hidden = output;
        }
        hidden
    }
}

/// Repeat `row` `rows` times into one row-major buffer.
pub fn broadcast_rows(row: &[f32], rows: usize) -> Vec<f32> {
    let mut buffer = Vec::with_capacity(row.len() * rows);
    for _ in 0..rows {
        buffer.extend_from_slice(row);
    }
    buffer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_mlp() -> Mlp {
        let first = Linear::new(
            3,
            9,
            (0..27).map(|i| (i as f32 - 13.0) * 0.1).collect(),
            (0..9).map(|i| i as f32 * 0.01).collect(),
        )
        .unwrap();
        let second = Linear::new(
            9,
            2,
            (0..18).map(|i| (i % 4) as f32 - 1.5).collect(),
            vec![0.5, -0.5],
        )
        .unwrap();
        Mlp::new(vec![first, second], vec![Activation::Relu]).unwrap()
    }

    #[test]
    fn one_row_equals_batch() {
        let mlp = small_mlp();
        let rows: Vec<f32> = vec![0.3, -1.0, 2.0, 1.5, 0.0, -0.25];
        let batch = mlp.forward_batch(&rows, 2, 1);
        for r in 0..2 {
            let single = mlp.forward_one(&rows[r * 3..(r + 1) * 3]);
            for o in 0..2 {
                assert!((single[o] - batch[r * 2 + o]).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn relu_keeps_nan() {
        let mut values = [f32::NAN, -1.0, 2.0];
        Activation::Relu.apply(&mut values);
        assert!(values[0].is_nan());
        assert_eq!(values[1..], [0.0, 2.0]);
    }

    #[test]
    fn mismatched_widths_rejected() {
        let first = Linear::new(2, 3, vec![0.0; 6], vec![0.0; 3]).unwrap();
        let second = Linear::new(4, 1, vec![0.0; 4], vec![0.0]).unwrap();
        let error = Mlp::new(vec![first, second], vec![Activation::Tanh]).unwrap_err();
        assert!(error.to_string().contains("layer 1"));
    }
}
