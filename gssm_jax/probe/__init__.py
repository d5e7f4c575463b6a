"""Linear probes of a trained model's activations for every hidden node of the GSSM, scored
against the true states and the exact Bayes filtering posterior (`python -m gssm_jax.probe`)."""
