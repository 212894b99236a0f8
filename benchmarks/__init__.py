"""Benchmarks behind ``make bench`` (not tests: timings on shared machines are noisy; ratios are measured in one run)."""
