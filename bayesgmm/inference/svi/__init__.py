"""Stochastic variational inference: guides, objective, compiled chunks, the run loop and draws."""
