"""`python -m gssm_jax.report PATH... --out DIR`: many runs turned into a table and figures.

PATH is a run directory, a `launch.submit` root, or a folder holding them. DIR gets `runs.csv` (one
row per run), PNG figures (KL gap against tokens, parameters and training sequences, a heatmap over
two keys, per-position KL curves where `gssm_jax.evaluate` wrote them) and `index.html` showing
both. Needs the `report` extra (matplotlib, pandas): `pip install -e ".[report]"`.
"""
