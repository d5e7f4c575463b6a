"""Experiment 1 (the original system's first experiment): easy-to-infer vs easy-to-predict latents."""
