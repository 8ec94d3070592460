"""Sweeps over methods, weights and seeds: Pareto fronts, hypervolume, plots and reports."""
