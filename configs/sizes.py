"""Settings several config files share: the model sizes of the original's experiments and the
schedule of a long (GPU) run and of a short (CPU) one. A config file imports these: `from configs.sizes import ...`."""

import ml_collections


def transformer(c: ml_collections.ConfigDict, emb_dim: int, nb_layers: int, nb_heads: int) -> None:
    """A bfloat16 transformer of width `emb_dim` with a 4x SwiGLU MLP."""
    c.model.emb_dim = emb_dim
    c.model.nb_layers = nb_layers
    c.model.transformer.nb_heads = nb_heads
    c.model.transformer.hidden_dim = 4 * emb_dim
    c.model.dtype = "bfloat16"


def long_run(c: ml_collections.ConfigDict, steps: int, every: int, lr: float = 1e-3) -> None:
    """`steps` steps at peak `lr` after `every` warmup steps; eval (8 batches) and checkpoints
    every `every` steps, a log line every 50."""
    c.optim.steps = steps
    c.optim.warmup = every
    c.optim.lr = lr
    c.log.period = 50
    c.eval.period = every
    c.eval.batches = 8
    c.checkpoint.period = every


def short_run(
    c: ml_collections.ConfigDict, steps: int, log: int, every: int, eval_batches: int
) -> None:
    """`steps` steps, a log line every `log`, eval (`eval_batches` batches) every `every`, one
    checkpoint at the end: the schedule of a debug-sized run."""
    c.optim.steps = steps
    c.log.period = log
    c.eval.period = every
    c.eval.batches = eval_batches
    c.checkpoint.period = steps
