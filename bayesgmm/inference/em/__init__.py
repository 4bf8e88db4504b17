"""Expectation-maximisation: the kernel, its statistics and M-step, starts, fits and criteria."""
