"""Slow, obvious implementations that the tests compare the Rust kernels against."""
