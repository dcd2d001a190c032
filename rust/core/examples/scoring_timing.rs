use recrl_core::scoring::mlp::{Activation, Linear, Mlp};
use recrl_core::scoring::top_k;
use std::time::Instant;

fn main() {
    let which = std::env::args().nth(1).unwrap_or_default();
    let w1: Vec<f32> = (0..1044 * 32)
        .map(|i| ((i * 7919) % 1000) as f32 * 1e-3 - 0.5)
        .collect();
    let l1 = Linear::new(1044, 32, w1, vec![0.1; 32]).unwrap();
    let l2 = Linear::new(32, 1, vec![0.2; 32], vec![0.0]).unwrap();
    let mlp = Mlp::new(vec![l1, l2], vec![Activation::Relu]).unwrap();
    let x: Vec<f32> = (0..1044).map(|i| (i % 13) as f32 * 0.1).collect();
    let mut total = 0.0;
    let n = if which == "mlp" { 200000 } else { 0 };
    let started = Instant::now();
    for _ in 0..n {
        total += mlp.forward_one(std::hint::black_box(&x))[0];
    }
    println!(
        "forward_one {:.2} us ({total})",
        started.elapsed().as_secs_f64() / 20000.0 * 1e6
    );
    let scores: Vec<f32> = (0..1000u64)
        .map(|i| ((i * 2654435761) % 10007) as f32)
        .collect();
    let started = Instant::now();
    let mut sum = 0;
    let n = if which == "topk" { 200000 } else { 0 };
    for _ in 0..n {
        sum += top_k(std::hint::black_box(&scores), 50).unwrap()[0];
    }
    println!(
        "top_k {:.2} us ({sum})",
        started.elapsed().as_secs_f64() / 20000.0 * 1e6
    );
}
