"""The `data.text` section of the run config: schema, validation, the vocabulary of a text run,
saved configs, `--config.data.text.*` overrides and resume change detection."""

from __future__ import annotations

import json

import pytest
from conftest import set_key

from gssm_jax.config import (
    ConfigError,
    as_dict,
    config_from_dict,
    default_config,
    headline_metric,
    is_text,
    require_process,
    validate,
    vocab_size,
)
from gssm_jax.data.text_config import TEXT_DEFAULTS
from gssm_jax.runtime import cli
from gssm_jax.train import workdir


def _text_config(tmp_path):
    (tmp_path / "a.txt").write_text("some text " * 50)
    (tmp_path / "b.txt").write_text("other text " * 50)
    c = default_config()
    c.data.source = "text"
    c.data.path = str(tmp_path / "a.txt")
    return c


def test_the_schema_holds_the_text_defaults_and_a_text_run_validates(tmp_path):
    c = default_config()
    assert c.data.text.to_dict() == TEXT_DEFAULTS and not is_text(c)
    assert vocab_size(c) == 32 and headline_metric(c.data) == "kl_gap"
    c = _text_config(tmp_path)
    validate(c)
    assert is_text(c) and vocab_size(c) == 258 and headline_metric(c.data) == "bits_per_byte"
    c.data.graph.X.state_dim = 0  # a text run has no graph: it is not parsed
    validate(c)
    with pytest.raises(ConfigError, match=r"data.source='text': gssm_jax.difficulty needs a GSSM"):
        require_process(c, "gssm_jax.difficulty")
    c.data.text.tokenizer = "m.model"
    assert headline_metric(c.data) == "bits_per_token"
    assert headline_metric({"source": "text", "text": {"tokenizer": "m.model"}}) == "bits_per_token"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"source": "texts"}, r"data.source='texts': must be 'stream', 'files' or 'text'"),
        ({"path": "missing.txt"}, r"data.path='missing.txt': no such file or folder"),
        ({"text.weights": {"poems": 2}}, r"data.text.weights.poems=2: no source of that name"),
        ({"text.tokenizer": "none.model"}, r"data.text.tokenizer='none.model': no such file"),
        ({"train_sequences": 10}, r"data.train_sequences=10: needs data.source='files'"),
    ],
)
def test_bad_text_keys_fail_validation_naming_the_key(tmp_path, monkeypatch, change, message):
    monkeypatch.chdir(tmp_path)
    c = _text_config(tmp_path)
    for key, value in change.items():
        set_key(c, f"data.{key}", value)
    with pytest.raises(ConfigError, match=message):
        validate(c)


def test_named_sources_survive_a_saved_config_and_take_new_names_on_the_command_line(tmp_path):
    c = _text_config(tmp_path)
    c.data.path = ""
    for key, text in [
        ("data.text.sources.plays", str(tmp_path / "a.txt")),
        ("data.text.sources.poems", str(tmp_path / "b.txt")),
        ("data.text.weights.plays", "3"),
        ("data.text.weights.poems", "1"),
        ("data.text.weights.plays", "2.5"),  # a new type replaces the old value
    ]:
        cli.apply_override(c, key, text)
    validate(c)
    assert c.data.text.weights.to_dict() == {"plays": 2.5, "poems": 1}
    back = config_from_dict(json.loads(c.to_json_best_effort()))
    assert back.data.text.sources.to_dict() == c.data.text.sources.to_dict()
    assert as_dict(back) == as_dict(c)
    with pytest.raises(cli.CliError, match=r"section data.text has no field 'weight'"):
        cli.apply_override(c, "data.text.weight.plays", "1")
    with pytest.raises(cli.CliError, match=r"section data has no field 'txt'"):
        cli.apply_override(c, "data.txt.sources.x", "1")


def test_every_data_text_key_is_an_experiment_key_on_resume(tmp_path):
    a = _text_config(tmp_path)
    b = _text_config(tmp_path)
    b.data.text.heldout_fraction = 0.1
    b.data.text.jsonl_field = "body"
    b.data.text.weights = {"text": 2}
    b.data.prefetch = 2
    changed = workdir.changes(as_dict(a), as_dict(b))
    experiment = sorted(k for k, _, _ in changed if not workdir.is_harmless(k))
    assert experiment == [
        "data.text.heldout_fraction",
        "data.text.jsonl_field",
        "data.text.weights.text",
    ]


@pytest.mark.parametrize(
    "module",
    ["gssm_jax.data.text", "gssm_jax.data.text_tokenizers", "gssm_jax.data.text_metrics"],
)
def test_a_text_module_imports_first_without_a_cycle(module):
    """The text modules import the config package's errors, and the config reads the text
    defaults: either may be imported first in a fresh interpreter."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
