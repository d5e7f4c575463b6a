"""Experiment 1 (seeds/004): easy-to-infer vs easy-to-predict latents."""
