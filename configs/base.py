"""A cluster-sized base run (the README's multi-host example): the `four` graph on the fly, a
12-layer transformer of width 288 (the model of seeds/004) in bfloat16, 64 x 1024 tokens per step.

    python -m launch.submit --config configs/base.py --name big \\
        --config.slurm.nodes=2 --config.slurm.tasks_per_node=4 --config.slurm.gpus_per_node=4
    python -m launch.submit --config configs/base.py --grid configs/grids/lr.py --name base-lr

The global batch (data.batch_size) is split over every process and device (mesh.data=-1), so keep
it a multiple of the number of GPUs.
"""

from configs import sizes
from gssm_jax.config import default_config


def get_config():
    c = default_config()
    c.data.seq_len = 1024
    c.data.batch_size = 64
    sizes.transformer(c, emb_dim=288, nb_layers=12, nb_heads=12)
    sizes.long_run(c, steps=20_000, every=1_000)
    return c
