"""Issue 12, shell completion: subcommands (``res`` → ``resume``), their options and run folders
complete beside Hydra's groups and keys, in bash (Hydra's script) and zsh (dltrain's).

The first tests call :mod:`dltrain.completion` on folders made here. The ``test_wired_*`` ones
go through the real command, as the shell does: they need ``cli.main`` to hand completion
queries to ``completion.main``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest

from dltrain import completion

from .helpers import QUICK_TIMEOUT_S, cli_env

SUBCOMMANDS = ["check", "replay", "resume", "eval", "predict", "export", "summary"]


def make_run(path: Path, checkpoints: bool = True) -> Path:
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "config.yaml").write_text("{}\n")
    if checkpoints:
        (path / "checkpoints").mkdir()
        for name in ("best.pt", "last.pt"):
            (path / "checkpoints" / name).write_bytes(b"")
    return path


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """outputs/ with a run and a sweep of two jobs, a folder without runs, a file."""
    make_run(tmp_path / "outputs" / "2026-11-27" / "10-00-00-abc123")
    sweep = tmp_path / "outputs" / "multirun" / "2026-11-27" / "11-00-00-def456"
    for job in ("0", "1"):
        make_run(sweep / job)
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    (tmp_path / "docs" / "images").mkdir(parents=True)
    (tmp_path / "people.csv").write_text("a,b\n1,2\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def ask(line: str):
    """What dltrain offers for the line up to the cursor at its end, and what it leaves to
    Hydra (None: nothing)."""
    words, current = completion.split_line(line)
    return completion.complete(words, current, SUBCOMMANDS)


def test_the_first_word_completes_to_subcommands_and_hydras_keys():
    assert ask("dltrain res") == (["resume"], [])
    assert ask("dltrain r") == (["replay", "resume"], [])  # Hydra adds regularization=
    assert ask("dltrain ")[0] == sorted(SUBCOMMANDS)
    assert ask("python -m dltrain ev") == (["eval"], [])


def test_a_training_command_line_is_hydras_alone():
    assert ask("dltrain -m optim=sgd,adam opt") == ([], ["-m", "optim=sgd,adam"])
    assert ask("dltrain optim=sgd --c") == ([], None)  # no usage error from Hydra's parser


def test_resume_completes_folders_that_hold_runs_or_sweeps(tree):
    assert ask("dltrain resume ") == (["outputs/"], None)  # not docs/, not people.csv
    assert ask("dltrain resume outputs/") == (["outputs/2026-11-27/", "outputs/multirun/"], None)
    sweep = "outputs/multirun/2026-11-27/11-00-00-def456/"
    assert ask(f"dltrain resume {sweep}") == ([sweep, f"{sweep}0/", f"{sweep}1/"], None)


def test_a_run_folder_is_offered_alone_so_the_shell_adds_nothing(tree):
    run = "outputs/2026-11-27/10-00-00-abc123"
    assert ask(f"dltrain resume {run}") == ([f"{run}/"], None)
    assert ask(f"dltrain resume {run}/") == ([f"{run}/"], None)  # not its checkpoints/


def test_summary_completes_sweeps_only(tree):
    assert ask("dltrain summary outputs/") == (["outputs/multirun/"], None)
    sweep = "outputs/multirun/2026-11-27/11-00-00-def456/"
    assert ask(f"dltrain summary {sweep}") == ([sweep], None)


def test_eval_completes_runs_and_checkpoint_files(tree):
    run = "outputs/2026-11-27/10-00-00-abc123/"
    assert ask(f"dltrain eval {run}") == ([run, f"{run}checkpoints/"], None)
    assert ask(f"dltrain eval {run}checkpoints/b") == ([f"{run}checkpoints/best.pt"], None)


def test_options_and_their_values_complete(tree):
    assert ask("dltrain eval outputs --sp") == (["--split"], None)
    assert ask("dltrain eval --split ") == (["test", "val"], None)
    assert ask("dltrain eval --split=v") == (["--split=val"], None)
    assert ask("dltrain export RUN --format o") == (["onnx"], None)
    assert ask("dltrain resume --allow-") == (["--allow-changes", "--allow-data-change"], None)
    assert ask("dltrain predict RUN --checkpoint l") == (["last"], None)


def test_an_option_value_is_not_taken_for_the_run(tree):
    # --split's value is not the positional RUN: the folder is still to come
    assert ask("dltrain eval --split val ") == (["outputs/"], None)


def test_predicts_input_is_left_to_the_shells_file_completion(tree):
    assert ask("dltrain predict outputs/2026-11-27/10-00-00-abc123 pe") == ([], None)
    assert ask("dltrain predict RUN --out ") == ([], None)


def test_overrides_after_the_run_are_hydras_without_the_subcommand(tree):
    assert ask("dltrain resume outputs/x trainer.epochs=3 trainer.pro") == ([], ["trainer.epochs=3"])
    assert ask("dltrain check model=cnn opt") == ([], ["model=cnn"])
    assert ask("dltrain eval outputs/x ") == ([], None)  # eval takes no overrides


def test_a_query_is_told_from_a_command():
    assert completion.is_query(["-sc", "query=bash"])
    assert completion.handles(["--shell-completion", "install=zsh"])
    assert not completion.handles(["-sc", "install=bash"])  # Hydra's own script
    assert not completion.handles(["resume", "query=bash"])


def options_in_help(command: str, capsys) -> str:
    from dltrain.cli import main

    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", [c for c, spec in completion.COMMANDS.items() if spec["options"]])
def test_every_completed_option_is_one_the_command_takes(command, capsys):
    help_text = options_in_help(command, capsys)
    for option in completion.COMMANDS[command]["options"]:
        assert option in help_text, f"dltrain {command} --help does not list {option}"


def test_completion_knows_every_subcommand():
    from dltrain.cli import SUBCOMMANDS as commands

    assert set(completion.COMMANDS) == set(commands)


# ---------------------------------------------------------------------------------------------
# the whole answer, Hydra's part included, in a process of its own
QUERY = """
import sys
from dltrain import cli, completion
sys.exit(completion.main(["-sc", "query=bash"], cli.SUBCOMMANDS))
"""


def query(line: str, cwd: Path) -> subprocess.Popen:
    env = {**cli_env(), "COMP_LINE": line, "COMP_POINT": str(len(line))}
    return subprocess.Popen([sys.executable, "-c", QUERY], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def answers(procs: Dict[str, subprocess.Popen]) -> Dict[str, List[str]]:
    out = {}
    for line, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=QUICK_TIMEOUT_S)
        assert proc.returncode == 0 and not stderr, (line, stderr)
        out[line] = stdout.split()
    return out


def test_the_answer_joins_dltrains_words_and_hydras(tree):
    lines = ["dltrain r", "dltrain resume outputs/2026-11-27/10-00-00-abc123 trainer.ep",
             "dltrain resume ", "dltrain notakey opt"]
    got = answers({line: query(line, tree) for line in lines})
    assert got["dltrain r"] == ["replay", "resume", "regularization.", "regularization="]
    assert got[lines[1]] == ["trainer.epochs="]  # Hydra's, for the line without resume RUN
    assert got["dltrain resume "] == ["outputs/"]
    assert got["dltrain notakey opt"] == []  # and Hydra's parse error stays off the screen


# ---------------------------------------------------------------------------------------------
# through the command, as the shell runs it
@pytest.fixture
def on_path(tmp_path) -> Dict[str, str]:
    """An environment whose PATH starts with a ``dltrain`` that runs this checkout's
    ``cli.main``, as the installed entry point does."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "dltrain"
    script.write_text(f"#!{sys.executable}\nfrom dltrain.cli import main\nmain()\n")
    script.chmod(0o755)
    return {**cli_env(), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


BASH = r"""
eval "$(dltrain -sc install=bash)"
complete_line() {  # what bash sets before it calls a completion function
  COMP_LINE="$1"; COMP_POINT=${#1}
  read -ra COMP_WORDS <<< "$1"; [[ "$1" == *" " ]] && COMP_WORDS+=("")
  COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )); COMPREPLY=()
  hydra_bash_completion
  echo "$1|${COMPREPLY[*]}"
}
while IFS= read -r line; do complete_line "$line"; done
"""


def test_wired_bash_completes_subcommands_folders_and_keys(tree, on_path):
    lines = ["dltrain res", "dltrain resume outputs/multirun/2026-11-27/",
             "dltrain summary outputs/m", "dltrain eval --split ", "dltrain optim=rm",
             "dltrain resume outputs/2026-11-27/10-00-00-abc123 trainer.epo"]
    proc = subprocess.run(["bash", "-c", BASH], input="\n".join(lines) + "\n", cwd=tree,
                          env=on_path, capture_output=True, text=True, timeout=QUICK_TIMEOUT_S * 2)
    got = dict(line.split("|", 1) for line in proc.stdout.splitlines())
    assert got == {
        "dltrain res": "resume",
        "dltrain resume outputs/multirun/2026-11-27/": "outputs/multirun/2026-11-27/11-00-00-def456/",
        "dltrain summary outputs/m": "outputs/multirun/",
        "dltrain eval --split ": "test val",
        "dltrain optim=rm": "optim=rmsprop",
        "dltrain resume outputs/2026-11-27/10-00-00-abc123 trainer.epo": "trainer.epochs=",
    }, proc.stderr


ZSH = r"""
setopt extendedglob
zmodload zsh/zpty
zpty z 'zsh -f -i'
zpty -w z 'PROMPT="> "; autoload -Uz compinit && compinit -u; eval "$(dltrain -sc install=zsh)"'
zpty -n -w z "$1"$'\t'
out=""
integer deadline=$(( SECONDS + 15 ))
while (( SECONDS < deadline )); do
  zpty -r -t z chunk && out+=$chunk
  [[ ${out//$'\e'\[[0-9;?]#[a-zA-Z]/} == *"$2"* ]] && { print -r -- found; break }
  sleep 0.1
done
zpty -d z
"""


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
@pytest.mark.parametrize("typed, shown", [
    ("dltrain res", "dltrain resume "),
    # zsh's own file completion would stop at outputs/, between 2026-11-27/ and multirun/
    ("dltrain summary outputs/", "dltrain summary outputs/multirun/"),
])
def test_wired_zsh_completes_in_a_real_zsh(tree, on_path, typed, shown):
    """An interactive zsh on a pseudo-terminal, with compinit and dltrain's script: Tab after
    ``typed`` shows ``shown`` (a finished word gets its space, a folder none)."""
    proc = subprocess.run(["zsh", "-f", "-c", ZSH, "zsh", typed, shown], cwd=tree, env=on_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "found", proc.stderr
