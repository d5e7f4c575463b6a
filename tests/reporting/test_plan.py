"""The report's own errors and notes (reporting/plan.py), on runs written without training them
(issue 24): a bad --out or PATH is one line and exit 2 before anything is read, a bad --color is
not listed among the columns, and a sweep of one key and seeds says why it has no heatmap."""

from __future__ import annotations

import pytest
from fake_runs import write_run, write_sweep

pytest.importorskip("matplotlib")
pytest.importorskip("pandas")

from gssm_jax.report import main as report_main  # noqa: E402


def _error(argv: list[str], capsys) -> str:
    assert report_main([*argv, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err


def test_a_file_as_out_or_path_is_one_line(tmp_path, capsys):
    run = write_run(tmp_path / "run")
    afile = tmp_path / "afile"
    afile.write_text("not a folder\n")
    err = _error([str(run), "--out", str(afile)], capsys)
    assert f"--out {afile}: {afile} is a file, not a directory" in err
    err = _error([str(run), "--out", str(afile / "report")], capsys)
    assert f"{afile} is a file, not a directory" in err
    assert "is a file, not a directory" in _error([str(afile)], capsys)
    assert "no such directory" in _error([str(tmp_path / "nowhere")], capsys)
    assert afile.read_text() == "not a folder\n" and not (run / "report").exists()


def test_a_bad_colour_key_is_not_listed_among_the_columns(tmp_path, capsys):
    run = write_run(tmp_path / "run")
    err = _error([str(run), "--color", "nonsense.key"], capsys)
    assert err.startswith("error: key 'nonsense.key': not a column")
    assert err.count("nonsense.key") == 1 and "columns: run, status, family" in err


def test_a_sweep_of_one_key_and_seeds_says_the_seeds_are_left_out(tmp_path, capsys):
    points = [{"optim.lr": lr, "seed": s} for lr in (1e-3, 3e-3) for s in (0, 1)]
    sweep = write_sweep(tmp_path, "lr", points)
    assert report_main([str(sweep), "--out", str(tmp_path / "r")]) == 0
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "heatmap.png" in ln]
    assert lines == [
        "skipped heatmap.png: no two keys vary (seeds are left out: runs that differ only in seed are averaged)"
    ]
