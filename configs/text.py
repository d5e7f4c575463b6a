"""A small transformer on real text, byte-level: Shakespeare by default (docs/text.md).

    python -m gssm_jax.main --config configs/text.py --workdir runs/shakespeare
    python -m gssm_jax.main --config configs/text.py --config.data.path=PATH   # a file or folder

`data.path` is a text file, a JSONL file or a folder of `.txt`/`.jsonl` files (relative paths are
taken from the current directory and recorded absolute). The default is the modern-spelling
Shakespeare of the docs/text.md recipe, whose held-out split (its last 5%) shares no play with the
train split in another spelling. Four layers of width 128 over 256-byte windows learn in a few
minutes on a laptop CPU; `final.json`'s eval holds `bits_per_byte`.
"""

from gssm_jax.config import default_config


def get_config():
    c = default_config()
    c.data.source = "text"
    c.data.path = "datasets/shakespeare_modern"
    c.data.seq_len = 256
    c.data.batch_size = 32
    c.model.nb_layers = 4
    c.model.emb_dim = 128
    c.model.transformer.nb_heads = 4
    c.model.transformer.hidden_dim = 384
    c.optim.steps = 1000
    c.optim.warmup = 100
    c.optim.lr = 3e-3
    c.log.period = 20
    c.eval.period = 250
    c.eval.batches = 4
    c.checkpoint.period = 250
    return c
