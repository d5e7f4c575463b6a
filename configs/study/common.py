"""What every study run shares: a small model and a short schedule sized to a 2-core CPU.

The sizes the original ran (12 layers of width 288, 16 x 2048 tokens a step, 10,000 steps on GPUs)
are replaced by 2 layers of width 64 (about 0.13M parameters; every family at its default
widths lands within 8% of the transformer's count, docs/results/study-families.md), sequences of
SEQ_LEN tokens, batches of BATCH, STEPS steps. `model.dtype` is float32 (bfloat16 is slow on a
CPU), so a rerun of a cell in a new process reproduces its numbers.
"""

import ml_collections

SEQ_LEN = 128
BATCH = 16
STEPS = 300
EVAL_EVERY = 100
EVAL_BATCHES = 8
LR = 3e-3
WIDTH = 64
LAYERS = 2


def widths(width: int) -> dict:
    """The model keys of width `width` (emb_dim; the transformer's heads of 16 and 4x MLP; the
    recurrent families' 3x MLP; Mamba's heads of up to 32), as dotted key -> value."""
    keys = {"model.emb_dim": width, "model.transformer.nb_heads": max(1, width // 16)}
    keys["model.transformer.hidden_dim"] = 4 * width
    keys.update({f"model.{f}.hidden_dim": 3 * width for f in ("hawk", "mingru", "minlstm")})
    keys["model.mamba.head_dim"] = min(32, 4 * width)
    return keys


def small(c: ml_collections.ConfigDict, width: int = WIDTH, steps: int = STEPS) -> None:
    """The study's model (every family's default widths at `width`) and schedule, in place."""
    c.data.seq_len = SEQ_LEN
    c.data.batch_size = BATCH
    c.model.nb_layers = LAYERS
    c.model.dtype = "float32"
    for key, value in widths(width).items():
        section, _, field = key.removeprefix("model.").rpartition(".")
        (c.model[section] if section else c.model)[field] = value
    c.optim.steps = steps
    c.optim.warmup = steps // 10
    c.optim.lr = LR
    c.log.period = 25
    c.eval.period = EVAL_EVERY
    c.eval.batches = EVAL_BATCHES
    c.checkpoint.period = steps
