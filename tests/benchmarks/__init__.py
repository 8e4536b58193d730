"""Tests of ulmfit.benchmarks: task registry, fine-tuning, result tables."""
