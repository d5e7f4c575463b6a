"""Cluster runs: `python -m launch.submit` writes a run directory and its Slurm job script."""
