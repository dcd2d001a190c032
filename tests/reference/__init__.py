"""Slow, obvious implementations that the Rust kernels are tested against."""
