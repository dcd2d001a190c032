"""Slow, obvious reference implementations that the tests compare the Rust kernels against."""
