//! Dense float32 kernels of the scoring path: dot products and axpy for one row, GEMM for many.
//!
//! The one-row kernels are compiled twice, once for the x86-64 baseline and once with AVX2 and
//! FMA enabled, and the faster copy is picked at run time. The batch path hands the product to
//! the `gemm` crate, which does its own dispatch (AVX2, AVX-512) and can split the work across
//! rayon threads.

use std::sync::OnceLock;

/// Number of independent accumulators in [`dot`], so the loop vectorises without reassociation.
const LANES: usize = 16;

/// Return whether the CPU has AVX2 and FMA, detected on the first call.
pub(crate) fn has_avx2_fma() -> bool {
    static DETECTED: OnceLock<bool> = OnceLock::new();
    *DETECTED.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}

#[inline(always)]
fn dot_lanes(x: &[f32], y: &[f32], fused: bool) -> f32 {
    let mut sums = [0.0f32; LANES];
    let chunks = x.len() / LANES * LANES;
    for (a, b) in x[..chunks]
        .chunks_exact(LANES)
        .zip(y[..chunks].chunks_exact(LANES))
    {
        for lane in 0..LANES {
            sums[lane] = if fused {
                a[lane].mul_add(b[lane], sums[lane])
            } else {
                sums[lane] + a[lane] * b[lane]
            };
        }
    }
    let mut total = 0.0f32;
    for (a, b) in x[chunks..].iter().zip(&y[chunks..]) {
        total += a * b;
    }
    total + sums.iter().sum::<f32>()
}

#[inline(always)]
fn multiply_add(a: f32, b: f32, c: f32, fused: bool) -> f32 {
    if fused {
        a.mul_add(b, c)
    } else {
        c + a * b
    }
}

/// Add `input @ columns[:, start..start + B]` to `y[start..start + B]`.
///
/// The B sums live in two local arrays (even and odd inputs) that the compiler keeps in
/// registers, so no load or store of `y` sits on the dependency chain and two FMA chains
/// overlap.
#[inline(always)]
fn add_columns_block<const B: usize>(
    columns: &[f32],
    input: &[f32],
    y: &mut [f32],
    start: usize,
    fused: bool,
) {
    let width = y.len();
    let mut even = [0.0f32; B];
    let mut odd = [0.0f32; B];
    let pairs = input.len() / 2;
    for pair in 0..pairs {
        let i = 2 * pair;
        let first: &[f32; B] = columns[i * width + start..i * width + start + B]
            .try_into()
            .expect("block of B columns");
        let second: &[f32; B] = columns[(i + 1) * width + start..(i + 1) * width + start + B]
            .try_into()
            .expect("block of B columns");
        for lane in 0..B {
            even[lane] = multiply_add(input[i], first[lane], even[lane], fused);
            odd[lane] = multiply_add(input[i + 1], second[lane], odd[lane], fused);
        }
    }
    if input.len() % 2 == 1 {
        let i = input.len() - 1;
        let last: &[f32; B] = columns[i * width + start..i * width + start + B]
            .try_into()
            .expect("block of B columns");
        for lane in 0..B {
            even[lane] = multiply_add(input[i], last[lane], even[lane], fused);
        }
    }
    for lane in 0..B {
        y[start + lane] += even[lane] + odd[lane];
    }
}

/// `y += sum_i input[i] * columns[i, :]` over a row-major [input.len(), y.len()] matrix, in
/// blocks of 32 and 8 outputs, then one output at a time.
#[inline(always)]
fn add_columns_lanes(columns: &[f32], input: &[f32], y: &mut [f32], fused: bool) {
    let width = y.len();
    let mut start = 0;
    while start + 32 <= width {
        add_columns_block::<32>(columns, input, y, start, fused);
        start += 32;
    }
    while start + 8 <= width {
        add_columns_block::<8>(columns, input, y, start, fused);
        start += 8;
    }
    for output in start..width {
        let mut sum = 0.0f32;
        for (i, &x) in input.iter().enumerate() {
            sum = multiply_add(x, columns[i * width + output], sum, fused);
        }
        y[output] += sum;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dot_avx2(x: &[f32], y: &[f32]) -> f32 {
    dot_lanes(x, y, true)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn add_columns_avx2(columns: &[f32], input: &[f32], y: &mut [f32]) {
    add_columns_lanes(columns, input, y, true)
}

/// Return the dot product of two slices of equal length.
pub fn dot(x: &[f32], y: &[f32]) -> f32 {
    debug_assert_eq!(x.len(), y.len());
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA, checked once by `has_avx2_fma`.
        return unsafe { dot_avx2(x, y) };
    }
    dot_lanes(x, y, false)
}

/// Add `input [n] @ columns [n, y.len()]` to `y`: one axpy per input, so the outputs stay in
/// registers while the columns stream through.
pub fn add_columns(columns: &[f32], input: &[f32], y: &mut [f32]) {
    debug_assert_eq!(columns.len(), input.len() * y.len());
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA, checked once by `has_avx2_fma`.
        return unsafe { add_columns_avx2(columns, input, y) };
    }
    add_columns_lanes(columns, input, y, false)
}

/// Check that every value is finite.
///
/// A value is NaN or infinite when its exponent bits are all ones, and then adding one unit of
/// the exponent carries into the sign bit. The test is integer and/add/or in 16 lanes, which
/// the compiler vectorises.
pub fn all_finite(values: &[f32]) -> bool {
    const EXPONENT: u32 = 0x7f80_0000;
    const EXPONENT_UNIT: u32 = 0x0080_0000;
    let carry = |value: &f32| (value.to_bits() & EXPONENT) + EXPONENT_UNIT;
    let mut found = [0u32; LANES];
    let chunks = values.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for lane in 0..LANES {
            found[lane] |= carry(&chunk[lane]);
        }
    }
    let any = found.iter().fold(0u32, |a, b| a | b) | rest.iter().fold(0u32, |a, v| a | carry(v));
    any & 0x8000_0000 == 0
}

/// Add `inputs [rows, inner] @ weights[outer, inner]^T` to `outputs [rows, outer]`.
///
/// Row o of the weights starts at `o * weight_stride`, so a block of columns of a wider matrix
/// can be passed without a copy. `threads` > 1 lets the `gemm` crate split the product over the
/// rayon pool.
#[allow(clippy::too_many_arguments)]
pub fn add_matmul_transposed(
    inputs: &[f32],
    weights: &[f32],
    weight_stride: usize,
    outputs: &mut [f32],
    rows: usize,
    inner: usize,
    outer: usize,
    threads: usize,
) {
    assert_eq!(inputs.len(), rows * inner);
    assert_eq!(outputs.len(), rows * outer);
    if rows == 0 || outer == 0 || inner == 0 {
        return;
    }
    assert!(weight_stride >= inner);
    assert!(weights.len() >= (outer - 1) * weight_stride + inner);
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the three buffers have the lengths asserted above. The strides below address
    // row-major [rows, outer] outputs and row-major [rows, inner] inputs. The weights are read
    // as their transpose [inner, outer], element (i, o) at o * weight_stride + i, which the
    // assertions keep in bounds. `dst` does not alias
    // either operand because it is a unique borrow.
    unsafe {
        gemm::gemm(
            rows,
            outer,
            inner,
            outputs.as_mut_ptr(),
            1,
            outer as isize,
            true,
            inputs.as_ptr(),
            1,
            inner as isize,
            weights.as_ptr(),
            weight_stride as isize,
            1,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Complementary error function, fractional error below 1.2e-7 for every x.
///
/// The Chebyshev fit of Press et al., *Numerical Recipes in C* (2nd ed., 1992), section 6.2
/// (`erfcc`). Rust's standard library has no stable `erf`.
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let polynomial = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let result = t * polynomial.exp();
    if x >= 0.0 {
        result
    } else {
        2.0 - result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_plain_sum() {
        let x: Vec<f32> = (0..37).map(|i| i as f32 * 0.5).collect();
        let y: Vec<f32> = (0..37).map(|i| 1.0 - i as f32 * 0.25).collect();
        let expected: f32 = x.iter().zip(&y).map(|(a, b)| a * b).sum();
        assert!((dot(&x, &y) - expected).abs() < 1e-3);
    }

    #[test]
    fn matmul_matches_loops() {
        let (rows, inner, outer) = (5, 7, 3);
        let inputs: Vec<f32> = (0..rows * inner).map(|i| (i % 5) as f32 - 2.0).collect();
        let weights: Vec<f32> = (0..outer * inner).map(|i| (i % 3) as f32 * 0.5).collect();
        let mut outputs = vec![1.0f32; rows * outer];
        add_matmul_transposed(
            &inputs,
            &weights,
            inner,
            &mut outputs,
            rows,
            inner,
            outer,
            1,
        );
        for r in 0..rows {
            for o in 0..outer {
                let expected = 1.0
                    + (0..inner)
                        .map(|i| inputs[r * inner + i] * weights[o * inner + i])
                        .sum::<f32>();
                assert!((outputs[r * outer + o] - expected).abs() < 1e-4);
            }
        }
    }

    #[test]
    fn all_finite_finds_any_position() {
        let mut values = vec![1.0f32; 37];
        assert!(all_finite(&values));
        for position in [0, 15, 16, 36] {
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                values[position] = bad;
                assert!(!all_finite(&values), "{bad} at {position}");
                values[position] = 1.0;
            }
        }
    }

    #[test]
    fn erfc_known_values() {
        assert!((erfc(0.0) - 1.0).abs() < 1e-7);
        assert!((erfc(1.0) - 0.157_299_207_050_285_1).abs() < 1e-7);
        assert!((erfc(-1.0) - 1.842_700_792_949_715).abs() < 1e-7);
    }
}
