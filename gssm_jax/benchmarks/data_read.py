"""Is reading from files ever the bottleneck? `python -m gssm_jax.bench data [--config FILE]`
(and `--config.KEY=VALUE` overrides).

Writes a set matching the config (default: the debug config), then in the same process measures

- read_tokens_per_s: tokens/s the Grain pipeline delivers from the files as the trainer consumes
  them: `next(iterator)` on `files.TrainWalk.stream` and the global batch built on the mesh;
- train_tokens_per_s: tokens/s of the config's jitted train step on batches of the same shape;

and prints them as one JSON line with their ratio (tokens counted as the loop does: batch x
(seq_len - 1)). Exits 1 when reading is less than 10x faster than training.

With a text config (`data.source="text"`, e.g. `--config configs/text.py`) the row is the text
pipeline's instead: the corpus is read (tokenised, packed, split) and `read_windows_per_s` is the
rate of `text.TextWalk.stream` (the trainer's reader: shuffled, mixed windows) into global batches,
against `train_windows_per_s`, the windows per second the config's train step consumes.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

import jax
from jax.sharding import NamedSharding

from gssm_jax.config import graph_of, is_text, validate, vocab_size
from gssm_jax.data import files, set_writer, text
from gssm_jax.gssm.kernels import draw_kernels
from gssm_jax.runtime import cli, parallel
from gssm_jax.train import state as train_state
from gssm_jax.train import step as train_step_lib

MIN_RATIO = 10.0
DEFAULT_CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "debug.py")


def write_matching_set(c, directory: str, num_sequences: int) -> tuple[str, float]:
    """A train set for the config's graph and sequence length; returns (path, sequences/s)."""
    graph = graph_of(c)
    tables = draw_kernels(graph, c.data.graph_seed)
    request = set_writer.set_request(
        graph, tables, c.data.graph_seed, c.data.seed, 0, num_sequences, c.data.seq_len
    )
    path = os.path.join(directory, "train")
    progress = set_writer.Progress(num_sequences, c.data.seq_len, "[bench] write", sys.stderr)
    t0 = time.perf_counter()
    set_writer.write_set(
        path,
        request,
        graph,
        tables,
        batch_size=min(num_sequences, 4096),
        mc_draws=16,
        progress=progress,
        label="train",
    )
    return path, num_sequences / (time.perf_counter() - t0)


def read_rate(c, path: str, sharding: NamedSharding, num_batches: int) -> float:
    """Tokens/s out of `iterator -> global array`, the trainer's data_wait, over `num_batches`."""
    fs = files.FileSet(path)
    batch = c.data.batch_size
    walk = files.TrainWalk(fs, batch, (0, batch), num_batches + 8, c.data.shuffle_seed)
    return stream_rate(c, walk.stream(c.data.prefetch), sharding, num_batches)


def stream_rate(c, stream, sharding: NamedSharding, num_batches: int) -> float:
    """Tokens/s out of a train stream's `iterator -> global array` (after 8 start-up batches)."""
    global_shape = (c.data.batch_size, c.data.seq_len)
    iterator = iter(stream)  # as the trainer reads it
    for _ in range(8):  # thread start-up
        tokens = next(iterator)["tokens"]
        jax.block_until_ready(
            jax.make_array_from_process_local_data(sharding, tokens, global_shape)
        )
    t0 = time.perf_counter()
    for _ in range(num_batches):
        tokens = next(iterator)["tokens"]
        jax.block_until_ready(
            jax.make_array_from_process_local_data(sharding, tokens, global_shape)
        )
    seconds = time.perf_counter() - t0
    return num_batches * c.data.batch_size * (c.data.seq_len - 1) / seconds


def train_rate(c, path: str, sharding: NamedSharding, mesh, num_steps: int) -> float:
    """Tokens/s of the jitted train step (after two compile/warm-up steps), data already on device."""
    fs = files.FileSet(path)
    dataset = files.TrainWalk(fs, c.data.batch_size, (0, c.data.batch_size), 2, 0).dataset()
    return step_rate(c, [dataset[k]["tokens"] for k in range(2)], sharding, mesh, num_steps)


def step_rate(c, tokens: list, sharding: NamedSharding, mesh, num_steps: int) -> float:
    """Tokens/s of the jitted train step on two given batches (after two compile/warm-up steps)."""
    model = train_state.model_from_config(c, vocab_size(c))
    state, shardings = train_state.create_train_state(c, mesh, model, jax.random.key(c.seed))
    step_fn = train_step_lib.make_train_step(c, model, mesh, shardings)
    global_shape = (c.data.batch_size, c.data.seq_len)
    batches = [jax.make_array_from_process_local_data(sharding, t, global_shape) for t in tokens]
    for k in range(2):
        state, metrics = step_fn(state, batches[k])
        jax.block_until_ready(metrics)
    t0 = time.perf_counter()
    for k in range(num_steps):
        state, metrics = step_fn(state, batches[k % 2])
        jax.block_until_ready(metrics)
    seconds = time.perf_counter() - t0
    return num_steps * c.data.batch_size * (c.data.seq_len - 1) / seconds


def text_row(c, sharding: NamedSharding, mesh, read_batches: int, train_steps: int) -> dict:
    """The text pipeline's row: windows/s read by `TextWalk.stream` and consumed by the train step."""
    t0 = time.perf_counter()
    corpus = text.corpus_from_config(c.data)
    load_s = time.perf_counter() - t0
    batch = c.data.batch_size
    walk = text.TextWalk(corpus, batch, (0, batch), read_batches + 8, c.data.shuffle_seed)
    read = stream_rate(c, walk.stream(c.data.prefetch), sharding, read_batches)
    first = walk.dataset()
    train = step_rate(c, [first[k]["tokens"] for k in range(2)], sharding, mesh, train_steps)
    per_window = c.data.seq_len - 1  # tokens counted as the loop does
    return {
        "bench": "data",
        "source": "text",
        "read_windows_per_s": round(read / per_window, 1),
        "train_windows_per_s": round(train / per_window, 1),
        "ratio": round(read / train, 2),
        "read_tokens_per_s": round(read, 1),
        "train_tokens_per_s": round(train, 1),
        "batch_size": batch,
        "seq_len": c.data.seq_len,
        "prefetch": c.data.prefetch,
        "train_windows": int(len(corpus.train)),
        "corpus_load_s": round(load_s, 2),
        "devices": jax.device_count(),
        "backend": jax.default_backend(),
    }


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    while argv and not argv[0].startswith("-"):  # tolerate `bench data ...` or a program name
        argv.pop(0)
    parser = cli.config_parser("python -m gssm_jax.bench data", __doc__, "configs/debug.py")
    parser.add_argument("--sequences", type=int, default=8192, help="sequences in the set")
    parser.add_argument("--read-batches", type=int, default=300)
    parser.add_argument("--train-steps", type=int, default=10)
    args, c = cli.parse_args(parser, argv, DEFAULT_CONFIG)
    try:
        validate(c)
    except ValueError as e:
        cli.exit_with_error(e)
    mesh = parallel.make_mesh(c.mesh)
    sharding = NamedSharding(mesh, parallel.batch_spec(c))
    if is_text(c):
        try:
            result = text_row(c, sharding, mesh, args.read_batches, args.train_steps)
        except ValueError as e:  # a source that cannot be read (TextDataError)
            cli.exit_with_error(e)
        return report(result)
    with tempfile.TemporaryDirectory(prefix="gssm_bench_data_") as directory:
        path, write_rate = write_matching_set(c, directory, args.sequences)
        read = read_rate(c, path, sharding, args.read_batches)
        train = train_rate(c, path, sharding, mesh, args.train_steps)
    result = {
        "bench": "data",
        "read_tokens_per_s": round(read, 1),
        "train_tokens_per_s": round(train, 1),
        "ratio": round(read / train, 2),
        "batch_size": c.data.batch_size,
        "seq_len": c.data.seq_len,
        "prefetch": c.data.prefetch,
        "write_sequences_per_s_incl_compile": round(write_rate, 1),
        "devices": jax.device_count(),
        "backend": jax.default_backend(),
    }
    return report(result)


def report(result: dict) -> int:
    """Prints the row as one JSON line; 1 when reading is less than MIN_RATIO x training."""
    print(json.dumps(result), flush=True)
    ratio = result["ratio"]
    if ratio < MIN_RATIO:
        print(
            f"reading is only {ratio:.1f}x faster than training (need {MIN_RATIO:g}x)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
