"""Sample text from a checkpoint of a text run (`python -m gssm_jax.generate` on a run with
`data.source="text"`): text in, text out.

Prompts: `--prompt TEXT` (its tokens, `--num` completions of it, each with its own key), a
`--prompts FILE` of text prompts (a JSON list of strings, or JSONL: one string or {"prompt":
string} per line), or by default the starts of the first `--num` held-out windows cut to lengths
spread over [1, seq_len / 2] (or all `--prompt-len L`). A prompt is not given a BOS token: training
windows start anywhere in a document, so a prompt reads as text met mid-stream; an empty prompt is
BOS alone, the start of a new document.

Completions are decoded by the run's tokenizer: invalid UTF-8 (a cut character) is shown as U+FFFD
and BOS/EOS as `<|bos|>`/`<|eos|>`. Sampling is `gssm_jax.inference.generation`'s (one jitted
prefill + decode scan, temperature and top-k as for every run). Scoring against a true process is
skipped: text has none, and the summary says so. Writes JSONL rows (index, prompt, completion and
their tokens) and a `.summary.json`, prints each completion and a closing line.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gssm_jax.data import text
from gssm_jax.data.text_tokenizers import Tokenizer, load_tokenizer
from gssm_jax.inference import sampling as common
from gssm_jax.inference.rundir import RunDir
from gssm_jax.inference.sampling import Sampling

NOT_SCORED = "skipped: text has no true process to score completions against"


def encoded(tok: Tokenizer, prompt: str) -> list[int]:
    """A text prompt's tokens; the empty prompt is BOS alone."""
    return [int(t) for t in tok.encode(prompt)] or [tok.bos_id]


def file_text_prompts(path: str) -> list[str]:
    """Text prompts from a JSON list of strings or a JSONL file of strings / {"prompt": string}."""
    items = common.prompt_items(path)
    prompts = []
    for where, item in items:
        prompt = item.get("prompt") if isinstance(item, dict) else item
        if not isinstance(prompt, str):
            raise common.PromptError(
                f"--prompts {path} {where}: expected a string (a text run's prompts are text)"
            )
        prompts.append(prompt)
    return prompts


def heldout_prompts(run: RunDir, num: int, prompt_len: int | None) -> list[list[int]]:
    """The starts of the first `num` held-out windows (in eval order), cut to prompt lengths."""
    c = run.config
    corpus = text.corpus_from_config(c.data)
    order = text.heldout_order(corpus)
    lengths = np.full(num, prompt_len) if prompt_len else common.spread_lengths(num, c.data.seq_len)
    return [
        corpus.heldout[order[i % len(order)], :n].astype(int).tolist()
        for i, n in enumerate(lengths.tolist())
    ]


def generate_text_run(
    run: RunDir,
    sampling: Sampling,
    step: int | None,
    num: int,
    prompt_len: int | None,
    prompts_file: str | None,
    prompt: str | None,
    out: str | None,
    overwrite: bool = False,
) -> str:
    """Samples text from checkpoint `step` (default the latest) of text run `run`; writes the JSONL
    rows and `.summary.json`, prints each completion and one closing line; returns the JSONL path."""
    if not run.is_text:
        raise common.PromptError(
            f"--prompt: text prompts need a text run (data.source='text'); {run.workdir} has "
            f"data.source={run.config.data.source!r} (give --prompts FILE of token lists)"
        )
    step = run.step_or_latest(step)
    run.check_compatible(step)
    out = common.output_path(run, step, sampling.seed, out, overwrite)
    tok = load_tokenizer(run.config.data.text.tokenizer)
    if prompt is not None:
        prompts = [encoded(tok, prompt)] * num
    elif prompts_file:
        prompts = [encoded(tok, p) for p in file_text_prompts(prompts_file)]
    else:
        prompts = heldout_prompts(run, num, prompt_len)
    d = common.draw(run, step, prompts, sampling)
    n, new = d.num, d.new
    rows = [
        {
            "index": i,
            "prompt": tok.decode(prompts[i], specials=True),
            "completion": tok.decode(new[i].tolist(), specials=True),
            "prompt_tokens": prompts[i],
            "completion_tokens": new[i].tolist(),
        }
        for i in range(n)
    ]
    common.write_jsonl(out, rows)
    summary: dict[str, Any] = {
        **d.summary(run, step, sampling),
        "tokenizer": tok.describe(),
        "scoring": NOT_SCORED,
        "seconds": d.seconds,
    }
    common.write_summary(out, summary)
    for row in rows:
        print(f"--- {row['index']}: {row['prompt']}{row['completion']}", flush=True)
    print(
        f"generated {n} x {sampling.max_new_tokens} tokens of text from step {step} "
        f"{d.settings(sampling)} in {d.seconds:.2f} s incl. compile | "
        f"scoring {NOT_SCORED} | wrote {out} and {common.summary_path(out)}",
        flush=True,
    )
    return out
