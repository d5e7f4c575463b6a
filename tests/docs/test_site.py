"""The documentation as a whole: a short README whose links resolve, pages that cite only what a
clone has, docstrings' spec sections that exist, and the mkdocs site building in strict mode."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys

import pytest
from conftest import ROOT

README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").rglob("*.md"))]
MAX_README_LINES = 200


def test_readme_is_short_and_starts_with_the_two_commands():
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, len(lines)
    assert "    pip install -e . && python -m gssm_jax.main" in lines[:10]
    assert '    pip install -e ".[dev]" && python -m pytest -q' in lines[:10]
    assert any("docs/results/index.md" in line for line in lines[:30])  # on the first screen


def test_readme_links_resolve():
    text = README.read_text()
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    assert targets
    missing = [t for t in targets if "://" not in t and not (ROOT / t).exists()]
    assert not missing


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_pages_cite_only_what_a_clone_has(page):
    text = page.read_text()
    for pattern in (r"seeds/00\d", r"\.\./shared/", r"/work/", r"SPEC-gssm"):
        assert not re.search(pattern, text), f"{page.name}: cites {pattern}"


def test_spec_sections_named_in_docstrings_exist():
    sections = set(re.findall(r"^## (\d+)\. ", (ROOT / "docs" / "spec.md").read_text(), re.M))
    assert sections == {"1", "2", "3", "4", "5", "6"}
    cited = set()
    for path in [*ROOT.glob("gssm_jax/**/*.py"), *ROOT.glob("tests/**/*.py")]:
        text = path.read_text()
        old = "SPEC" + " section"  # the citation of the spec before it was in the repository
        assert old not in text, f"{path}: cite docs/spec.md section N"
        cited |= set(re.findall(r"docs/spec\.md section (\d+)", text))
    assert cited and cited <= sections, cited - sections


@pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None, reason='needs pip install ".[docs]"'
)
def test_site_builds_strict(tmp_path):
    """A broken link, a missing anchor or a page left out of the nav fails the build."""
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "site" / "tour" / "index.html").is_file()
