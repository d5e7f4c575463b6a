"""Experiment 2: one big latent, or many small ones."""
