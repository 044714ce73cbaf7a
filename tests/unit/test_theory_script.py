"""scripts/theory.py: a smoke run writes its blocks' part of the page (table, claim, verdict,
pictures), and every command the page shows composes as dltrain would run it."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path
from typing import List

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
import theory  # noqa: E402

from dltrain.launch import check_sweep, compose  # noqa: E402


def shown_commands(page: str) -> List[List[str]]:
    """The dltrain commands of the page's code blocks, split as a shell splits them."""
    blocks = re.findall(r"```\n(.*?)```", page, re.S)
    return [shlex.split(line) for block in blocks for line in block.splitlines()
            if line.startswith("dltrain ")]


def check_composes(argv: List[str]) -> None:
    """Compose the command's config (each value of a sweep's lists) without training."""
    assert argv[0] == "dltrain"
    if argv[1] == "-m":
        check_sweep(argv[2:])
    else:
        compose(argv[1:])


@pytest.mark.slow
def test_quick_run_writes_the_blocks_it_was_asked_for(tmp_path):
    out = tmp_path / "page.md"
    assert theory.main(["--quick", "--only", "activations,losses", "--out", str(out)]) == 0
    page = out.read_text()

    assert "## Activations" in page and "## Losses" in page
    assert "## Optimizers" not in page and "## Regularization" not in page
    assert "| activation | test acc |" in page
    assert "| loss | test MAE |" in page
    verdicts = re.findall(r"^> \*\*Verdict: (held|did not hold)\.\*\* \S", page, re.M)
    assert len(verdicts) == page.count("> **Claim:**") == 2
    assert "smoke run" in page

    pictures = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", page)
    assert len(pictures) >= 4
    for picture in pictures:
        path = out.parent / picture
        assert path.is_file() and path.stat().st_size > 0, picture
    snippet = (tmp_path / "page" / "readme_snippet.md").read_text()
    for picture in re.findall(r"\]\(([^)]+\.png)\)", snippet):
        assert Path(picture).stat().st_size > 0

    commands = shown_commands(page)
    assert len(commands) == 2
    for argv in commands:
        check_composes(argv)


def test_unknown_block_is_refused(capsys):
    with pytest.raises(SystemExit) as e:
        theory.main(["--only", "activation"])
    assert e.value.code == 2
    assert "known: activations" in capsys.readouterr().err


def test_every_command_of_the_committed_page_composes(monkeypatch):
    monkeypatch.chdir(REPO)  # the page's paths are the repository root's
    commands = shown_commands((REPO / "docs" / "theory.md").read_text())
    assert commands
    for argv in commands:
        check_composes(argv)
