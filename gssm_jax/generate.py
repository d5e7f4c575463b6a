"""Sample completions from a trained checkpoint and score them under the true process.

    python -m gssm_jax.generate --workdir RUN --max-new-tokens K [--step N] [--num 64]
        [--prompt-len L | --prompts FILE | --prompt TEXT] [--temperature T] [--top-k k]
        [--seed s] [--out FILE [--overwrite]]

Prompts are held-out stream sequences cut to lengths spread over [1, seq_len/2] (or all
`--prompt-len L`), or a JSON/JSONL file of token lists starting with the start token 0. Writes
JSONL rows (prompt, completion, exact -log p and entropy of every new token, excess nats) and a
`.summary.json` (default RUN/samples/<step>-seed<s>.jsonl, or -2, -3, ... after it: earlier
samples are never overwritten; an existing --out is refused without --overwrite). Sequences longer
than the trained data.seq_len get a warning line (extrapolation); a long generation prints progress
to stderr. On a text run (data.source="text") prompts and completions are text:
`--prompt "ROMEO:"` (--num completions of it), a `--prompts` file of strings, or held-out windows;
nothing is scored (text has no true process). Library: gssm_jax/inference/generation.py and
text_generation.py. Errors exit 2 with one line.
"""

from __future__ import annotations

import sys

from gssm_jax.inference import interrupt


def parse_args(argv: list[str] | None):
    from gssm_jax.runtime import cli  # after `interrupt` is in place (it loads in ~0.3 s)

    p = cli.OneLineParser(prog="gssm_jax.generate", description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", required=True, help="run directory (holds config.json)")
    p.add_argument("--step", type=int, help="checkpoint step (default: the latest)")
    p.add_argument("--num", type=cli.positive_int, default=64, help="prompts from the stream")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--prompt-len", type=cli.positive_int, help="every stream prompt this long")
    src.add_argument("--prompts", help="JSON or JSONL file of token lists (text run: strings)")
    src.add_argument("--prompt", help="a text run's prompt, as text (--num completions of it)")
    p.add_argument("--max-new-tokens", type=cli.positive_int, required=True)
    p.add_argument("--temperature", type=cli.non_negative(float), default=1.0, help="0: greedy")
    p.add_argument("--top-k", type=cli.non_negative(int), default=0, help="0: no top-k cut")
    p.add_argument("--seed", type=cli.non_negative(int), default=0)
    p.add_argument("--out", help="JSONL output (default RUN/samples/<step>-seed<s>[-n].jsonl)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    from gssm_jax.inference.generation import generate_run  # JAX: after the flags
    from gssm_jax.inference.rundir import run_cli
    from gssm_jax.inference.sampling import Sampling

    sampling = Sampling(a.max_new_tokens, a.temperature, a.top_k, a.seed)
    return run_cli(
        generate_run,
        a.workdir,
        sampling,
        a.step,
        a.num,
        a.prompt_len,
        a.prompts,
        a.out,
        a.prompt,
        a.overwrite,
    )


if __name__ == "__main__":
    sys.exit(interrupt.run_main(main))
