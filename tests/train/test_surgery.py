"""`python -m gssm_jax.kron`: surgery on a run directory, continued training, exact resume, errors."""

from __future__ import annotations

import json
import re
import shutil
import signal
import sys

import numpy as np
import pytest
from conftest import main_cmd, read_jsonl, run_cmd, signal_at_step, start_cmd, train_losses

from gssm_jax.runtime.exitcodes import EXIT_BAD_CONFIG, EXIT_PREEMPTED
from gssm_jax.train.surgery import SurgeryError, surgery

SOURCE_STEPS = [
    "--config.optim.steps=10",
    "--config.optim.warmup=2",
    "--config.log.period=2",
    "--config.eval.period=10",
    "--config.checkpoint.period=10",
]


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    """A finished 10-step dense run of the tiny model (checkpoint at step 10)."""
    root = tmp_path_factory.mktemp("kron")
    workdir = root / "dense"
    code, out, err = run_cmd(main_cmd(workdir, *SOURCE_STEPS), root)
    assert code == 0, out + err
    return workdir


def _kron(source, out, *args: str) -> tuple[int, str]:
    """`python -m gssm_jax.kron --from=SOURCE --out=OUT ARGS` in OUT's folder: (code, output)."""
    cmd = [sys.executable, "-m", "gssm_jax.kron", f"--from={source}", f"--out={out}", *args]
    code, stdout, stderr = run_cmd(cmd, out.parent)
    return code, stdout + stderr


def _main(workdir, *args: str) -> list[str]:
    """gssm_jax.main on a workdir without --config: the run's own config.json."""
    return [sys.executable, "-m", "gssm_jax.main", f"--workdir={workdir}", *args]


def test_exact_prune_keeps_the_model_and_continues_training(source_run, tmp_path):
    """prune with r = m2 n2 terms is W itself: errors 0, the same held-out loss, and main trains on."""
    out = tmp_path / "pruned"
    code, log = _kron(source_run, out, "--init=prune", "--terms=2", "--factor=2x1", "--steps=4")
    assert code == 0, log
    report = json.loads((out / "kron.json").read_text())
    assert [m["relative_error"] for m in report["matrices"]] == [0.0, 0.0, 0.0]
    assert report["params"]["mlp_before"] == 3 * 32 * 64
    assert report["params"]["mlp_after"] == 3 * 2 * (16 * 64 + 2)
    np.testing.assert_allclose(
        report["eval_after"]["loss"], report["eval_before"]["loss"], rtol=1e-5
    )
    assert f"held-out kl_gap at step 10: dense {report['eval_before']['kl_gap']:.4f}" in log
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["mlp"] == "kronecker" and config["model"]["kron_terms"] == 2
    assert config["model"]["kron_factor"] == "2x1" and config["optim"]["steps"] == 14
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["10"]
    assert not (out / "final.json").exists()
    assert max(train_losses(out)) == 10  # the source's metrics up to the checkpoint
    # the run's own config.json, with an override on top
    code, stdout, stderr = run_cmd(_main(out, "--config.log.period=1"), tmp_path)
    assert code == 0, stdout + stderr
    assert "resumed from" in stdout
    assert sorted(train_losses(out))[-5:] == [10, 11, 12, 13, 14]
    assert json.loads((out / "final.json").read_text())["step"] == 14


def test_factorised_run_with_freezing_and_distillation_resumes_exactly(source_run, tmp_path):
    straight = tmp_path / "straight"
    code, log = _kron(
        source_run,
        straight,
        "--init=vanloan",
        "--terms=2",
        "--steps=30",
        "--config.optim.freeze=pretrained",
        "--config.optim.kron_lr=0.01",
        f"--config.optim.distill.teacher={source_run}",
        "--config.optim.distill.weight=0.5",
    )
    assert code == 0, log
    resumed = tmp_path / "resumed"
    shutil.copytree(straight, resumed)
    code, out, err = run_cmd(_main(straight), tmp_path)
    assert code == 0, out + err
    code, out = signal_at_step(start_cmd(_main(resumed), tmp_path), resumed, signal.SIGTERM, 24)
    assert code == EXIT_PREEMPTED, out
    assert max(train_losses(resumed)) < 40
    code, out, err = run_cmd(_main(resumed), tmp_path)
    assert code == 0, out + err
    a, b = train_losses(straight), train_losses(resumed)
    assert sorted(a) == sorted(b) and max(a) == 40
    assert max(abs(a[s] - b[s]) for s in a) <= 1e-6
    eval_a = read_jsonl(straight / "metrics" / "eval.jsonl")
    eval_b = read_jsonl(resumed / "metrics" / "eval.jsonl")
    np.testing.assert_allclose([r["loss"] for r in eval_a], [r["loss"] for r in eval_b], atol=1e-6)


def test_bad_input_is_a_named_error_before_anything_is_written(source_run, tmp_path):
    out = tmp_path / "out"
    code, log = _kron(source_run, out, "--factor=3x1")
    assert code == EXIT_BAD_CONFIG, log
    assert "error: config model.kron_factor='3x1'" in log and "Traceback" not in log, log
    assert not out.exists()
    cases = [
        ("prune", 3, "2x1", None, [], "model.kron_terms"),
        ("svd", 1, "", None, [], "--init 'svd'"),
        ("vanloan", 1, "", None, [("optim.freeze", "everything")], "optim.freeze"),
        ("vanloan", 1, "", 7, [], "--step 7"),
    ]
    for init, terms, factor, step, overrides, name in cases:
        with pytest.raises(SurgeryError, match=re.escape(name)):
            surgery(str(source_run), str(out), step, init, terms, factor, 5, 0, overrides)
        assert not out.exists(), name
    other = tmp_path / "mamba_run"
    other.mkdir()
    config = json.loads((source_run / "config.json").read_text())
    config["model"]["family"] = "mamba"
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(SurgeryError, match="model.family='mamba' has no SwiGLU MLP"):
        surgery(str(other), str(out), None, "prune", 1, "", 5, 0, {})
    with pytest.raises(SurgeryError, match="not a run directory"):
        surgery(str(tmp_path / "nothing"), str(out), None, "prune", 1, "", 5, 0, {})


def test_surgery_and_distillation_on_a_text_run(tiny_text_run, tmp_path):
    """A text run's MLPs factorised: held-out bits per byte before and after, fine-tuning with the
    dense run as teacher, and the kron table's rows in bits per byte."""
    sweep = tmp_path / "sweep"
    dense = sweep / "dense"
    shutil.copytree(tiny_text_run, dense)
    out = sweep / "vanloan_r1_freeze-none_distill-1"
    teacher = f"--config.optim.distill.teacher={tiny_text_run}"
    code, log = _kron(tiny_text_run, out, "--terms=1", "--factor=2x1", "--steps=4", teacher)
    assert code == 0, log
    report = json.loads((out / "kron.json").read_text())
    assert report["metric"] == "bits_per_byte" and report["step"] == 20
    before, after = report["eval_before"], report["eval_after"]
    final = json.loads((tiny_text_run / "final.json").read_text())["eval"]
    assert before["bits_per_byte"] == pytest.approx(final["bits_per_byte"], abs=1e-5)
    assert set(after) == {"loss", "bits_per_token", "bits_per_byte"} and after["loss"] > 0
    assert f"held-out bits_per_byte at step 20: dense {before['bits_per_byte']:.4f}" in log
    code, stdout, stderr = run_cmd(_main(out), tmp_path)
    assert code == 0, stdout + stderr
    assert "resumed from" in stdout and "done: final eval bits_per_byte" in stdout
    code, stdout, stderr = run_cmd(
        [sys.executable, "-m", "gssm_jax.kron", "--table", str(sweep), f"--from={tiny_text_run}"],
        tmp_path,
    )
    assert code == 0, stdout + stderr
    lines = stdout.strip().splitlines()
    assert "bits_per_byte after factorisation" in lines[0]
    assert lines[2].startswith(
        f"| dense (reference, trained on) | - | {report['params']['mlp_before']}"
    )
    assert lines[3].startswith(f"| vanloan | 1 | {report['params']['mlp_after']} | none | yes |")


def test_the_new_run_inherits_only_its_own_history(run_copy, tmp_path):
    """Issue 24: kron copied RUN's evals/, probe/, samples/ and eval rows, so the report showed the
    factorised run at the dense model's best eval kl_gap, with its kl_t curve and probe."""
    from gssm_jax.reporting.runs import find_runs, load_run
    from gssm_jax.reporting.table import run_row

    for folder, name in (("evals", "20.json"), ("probe", "20.json"), ("samples", "20-seed0.jsonl")):
        (run_copy / folder).mkdir()
        (run_copy / folder / name).write_text('{"kl_t": [0.5, 0.4]}\n')
    dense = run_row(load_run(find_runs([str(run_copy)])[0]))
    assert dense["best_eval_kl_gap"] is not None
    out = tmp_path / "kron"
    report = surgery(str(run_copy), str(out), None, "prune", 2, "2x1", 10, 0, {})
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints", "config.json", "kron.json",
                                                     "metrics"]  # fmt: skip
    assert [p.name for p in (out / "metrics").iterdir()] == ["train.jsonl"]
    assert train_losses(out).keys() == train_losses(run_copy).keys()  # its history up to step 20
    row = run_row(load_run(find_runs([str(out)])[0]))
    assert row["best_eval_kl_gap"] is None and row["eval_kl_gap"] is None  # none of its own yet
    assert report["eval_before"]["kl_gap"] == pytest.approx(dense["eval_kl_gap"], abs=1e-6)
