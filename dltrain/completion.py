"""Tab completion: dltrain's subcommands, their options and run folders, beside Hydra's groups
and keys.

Hydra's completion is installed with ``eval "$(dltrain -sc install=bash)"``: the shell function
it defines calls ``dltrain -sc query=bash`` with the line being typed in ``COMP_LINE``, and
offers the words printed. dltrain answers that query itself (:func:`main`, called by
``cli.main`` before anything else):

- the first word: the subcommands (``res`` → ``resume``), with Hydra's groups and keys;
- after ``resume``, ``replay``, ``eval``, ``predict``, ``export``, ``summary`` and ``compare``:
  run folders (or sweeps, or checkpoint files, as the command takes; ``compare`` takes any
  number), its ``--options`` and their values;
- the overrides of ``check``, ``replay`` and ``resume``, and every plain training command line:
  Hydra's own answer, for the line without the subcommand and its folder.

zsh gets a completion function of its own (``dltrain -sc install=zsh``): Hydra's install=zsh
prints its bash script, which zsh 5.9 cannot run even through bashcompinit (``[ a == b ]`` is
an error in zsh, and zsh counts array indices from 1). fish queries (``query=fish``) are
answered too, one word a line, as Hydra's fish script expects. Only the standard library is
imported here, and Hydra only when its part of the answer is needed.
"""

from __future__ import annotations

import contextlib
import io
import os
import shlex
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

FLAG = ("-sc", "--shell-completion")

# what a positional argument takes
RUN, RUN_OR_SWEEP, SWEEP, RUN_OR_CHECKPOINT, FILE = "run", "run_or_sweep", "sweep", "ckpt", "file"
# what an option's value takes: a fixed list, files (the shell's own completion), or nothing
DEVICES = ("cpu", "auto", "cuda", "mps")
CHECKPOINTS = ("best", "last")
NO_VALUE: Tuple[str, ...] = ()
ANY_FILE = None

# each subcommand's positional arguments, options (with what their value takes; NO_VALUE for a
# switch) and whether Hydra overrides follow the positionals ("repeat": the last positional
# takes any number of words). tests/cli/test_completion.py checks every option against the
# command's own --help
COMMANDS: Dict[str, dict] = {
    "check": {"args": [], "options": {}, "overrides": True},
    "replay": {"args": [RUN], "options": {"--allow-data-change": NO_VALUE}, "overrides": True},
    "resume": {"args": [RUN_OR_SWEEP], "overrides": True,
               "options": {"--allow-changes": NO_VALUE, "--allow-data-change": NO_VALUE}},
    "eval": {"args": [RUN_OR_CHECKPOINT], "overrides": False,
             "options": {"--split": ("test", "val"), "--device": DEVICES,
                         "--allow-data-change": NO_VALUE}},
    "predict": {"args": [RUN_OR_CHECKPOINT, FILE], "overrides": False,
                "options": {"--out": ANY_FILE, "--checkpoint": CHECKPOINTS,
                            "--batch-size": ANY_FILE, "--device": DEVICES}},
    "export": {"args": [RUN_OR_CHECKPOINT], "overrides": False,
               "options": {"--format": "formats", "--out": ANY_FILE,
                           "--checkpoint": CHECKPOINTS}},
    "summary": {"args": [SWEEP], "options": {}, "overrides": False},
    "compare": {"args": [RUN_OR_SWEEP], "repeat": True, "options": {"--out": ANY_FILE},
                "overrides": False},
}

SEARCH_BUDGET = 2000  # folders looked into per answer, to find run folders below a folder
SEARCH_DEPTH = 4  # outputs/multirun/DATE/TIME-ID/N holds a run four levels down


def is_query(argv: Sequence[str]) -> bool:
    """Whether ``argv`` is a completion query (``-sc query=SHELL``), not a command to run."""
    return any(a in FLAG for a in argv) and any(a.startswith("query=") for a in argv)


def is_zsh_script(argv: Sequence[str]) -> bool:
    return any(a in FLAG for a in argv) and any(a in ("install=zsh", "uninstall=zsh") for a in argv)


def handles(argv: Sequence[str]) -> bool:
    """Whether :func:`main` answers ``argv``: a query, or zsh's script (the bash and fish
    scripts are Hydra's own)."""
    return is_query(argv) or is_zsh_script(argv)


def main(argv: Sequence[str], subcommands: Iterable[str]) -> int:
    """Answer a completion query (:func:`is_query`) or print the zsh script; the exit code.

    The line is ``COMP_LINE`` up to the cursor (``COMP_POINT``): the words after the cursor do
    not change what the word under it can become.
    """
    if is_zsh_script(argv):
        print(zsh_script() if "install=zsh" in argv else "compdef -d dltrain\nunfunction _dltrain")
        return 0
    shell = next(a.partition("=")[2] for a in argv if a.startswith("query="))
    line = os.environ.get("COMP_LINE", "")
    try:
        point = int(os.environ.get("COMP_POINT", len(line)))
    except ValueError:
        point = len(line)
    words, current = split_line(line[:point])
    own, hydra_words = complete(words, current, list(subcommands))
    separator = "\n" if shell == "fish" else " "
    if own:
        print(separator.join(own), flush=True)
    if hydra_words is not None:
        hydra_query(shell, hydra_words, current)
    return 0


def split_line(line: str) -> Tuple[List[str], str]:
    """The words typed after the program's name, and the word under the cursor ('' after a
    space). An open quote (mid-typing) falls back to splitting on spaces."""
    try:
        words = shlex.split(line)
    except ValueError:
        words = line.split()
    current = "" if not line or line[-1].isspace() or not words else words.pop()
    if words and Path(words[0]).name.startswith("python"):
        words = words[3:] if words[1:3] == ["-m", "dltrain"] else words[2:]
    else:
        words = words[1:]
    return words, current


def complete(words: List[str], current: str,
             subcommands: List[str]) -> Tuple[List[str], Optional[List[str]]]:
    """dltrain's own candidates for ``current``, and the words to hand Hydra for its part (None:
    Hydra has nothing to add)."""
    if not words and not current.startswith("-"):
        return sorted(s for s in subcommands if s.startswith(current)), []
    command = COMMANDS.get(words[0]) if words else None
    if command is None:
        # a training command line: Hydra's alone (it completes no flags, and a partial one
        # would make it print a usage error into the terminal)
        return [], None if current.startswith("-") else words
    args, overrides = _positionals(words[1:], command)
    options: Dict[str, object] = command["options"]
    # an option's value: after "--split " or within "--split=te"
    name, eq, value = current.partition("=")
    if current.startswith("--") and eq and name in options:
        return [f"{name}={v}" for v in _values(options[name], value)], None
    if words[-1] in options and options[words[-1]] != NO_VALUE and "=" not in words[-1]:
        return _values(options[words[-1]], current), None
    if current.startswith("-"):
        return sorted(o for o in [*options, "--help"] if o.startswith(current)), None
    if len(args) < len(command["args"]) or command.get("repeat"):
        return _paths(current, command["args"][min(len(args), len(command["args"]) - 1)]), None
    if command["overrides"]:
        return [], overrides
    return [], None


def _positionals(words: List[str], command: dict) -> Tuple[List[str], List[str]]:
    """The positional arguments among ``words`` (an option's value is not one), and the
    Hydra overrides after them."""
    options: Dict[str, object] = command["options"]
    args: List[str] = []
    overrides: List[str] = []
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word.startswith("-"):
            skip = word in options and options[word] != NO_VALUE
        elif len(args) < len(command["args"]) or command.get("repeat"):
            args.append(word)
        else:
            overrides.append(word)
    return args, overrides


def _values(kind: object, current: str) -> List[str]:
    if kind == "formats":
        from dltrain.export.command import FORMATS  # no torch: the formats' names only

        kind = tuple(FORMATS)
    if kind is ANY_FILE:
        return []  # the shell's own file completion (Hydra's script asks for -o default)
    values = [v for v in kind if v.startswith(current)]  # type: ignore[union-attr]
    if kind is CHECKPOINTS:
        values += _paths(current, RUN_OR_CHECKPOINT)
    return values


# ---------------------------------------------------------------------------------------------
# folders
def is_run(path: Path) -> bool:
    return (path / ".hydra" / "config.yaml").is_file()


def is_sweep(path: Path) -> bool:
    """sweeps.is_sweep without parsing YAML (too slow for every folder looked into): a
    multirun.yaml, or (an Optuna search) a first job that Hydra records as a multirun's."""
    if (path / "multirun.yaml").is_file():
        return True
    job = next((p for p in _subdirs(path, limit=50) if is_run(p)), None)
    try:
        return job is not None and "mode: MULTIRUN" in (job / ".hydra" / "hydra.yaml").read_text()
    except OSError:
        return False


def _subdirs(path: Path, limit: int = SEARCH_BUDGET) -> List[Path]:
    try:
        found = []
        for entry in os.scandir(path):
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            found.append(Path(entry.path))
            if len(found) >= limit:
                break
        return found
    except OSError:
        return []


def _wanted(path: Path, kind: str) -> bool:
    if kind == SWEEP:
        return is_sweep(path)
    if kind == RUN_OR_SWEEP:
        return is_run(path) or is_sweep(path)
    return is_run(path)


class _Budget:
    def __init__(self, folders: int) -> None:
        self.left = folders


def _leads_to(path: Path, kind: str, depth: int, budget: _Budget) -> bool:
    """Whether ``path`` is, or holds within ``depth`` levels, a folder ``kind`` wants. A search
    that runs out of budget says yes: better offer a folder than hide one."""
    if _wanted(path, kind):
        return True
    if depth == 0 or is_run(path):  # a run's own folders hold no other run
        return False
    for child in _subdirs(path):
        budget.left -= 1
        if budget.left < 0 or _leads_to(child, kind, depth - 1, budget):
            return True
    return False


def _paths(current: str, kind: str) -> List[str]:
    """Folders under the typed prefix that are or hold what ``kind`` wants, each with a trailing
    slash so the next Tab goes into it; checkpoint files (.pt) where a command takes them. A
    folder that is what ``kind`` wants and holds nothing more is offered alone, as typed, so
    the shell completes nothing further (not the files in it)."""
    if kind == FILE:
        return []  # any file: the shell's own completion
    typed_dir, _, prefix = current.rpartition("/")
    typed_dir = typed_dir + "/" if "/" in current else ""
    folder = Path(os.path.expanduser(typed_dir or "."))
    budget = _Budget(SEARCH_BUDGET)
    out: List[str] = []
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return []
    for entry in entries:
        if not entry.name.startswith(prefix) or (entry.name.startswith(".") and not prefix.startswith(".")):
            continue
        path = Path(entry.path)
        if entry.is_dir():
            if _leads_to(path, kind, SEARCH_DEPTH, budget):
                out.append(f"{typed_dir}{entry.name}/")
            elif kind == RUN_OR_CHECKPOINT and (path / "best.pt").is_file():
                out.append(f"{typed_dir}{entry.name}/")  # a run's checkpoints/ folder
        elif kind == RUN_OR_CHECKPOINT and entry.name.endswith(".pt"):
            out.append(f"{typed_dir}{entry.name}")
    here = Path(os.path.expanduser(current)) if current else None
    if here is not None and current.endswith("/") and here.is_dir() and _wanted(here, kind):
        out = [current, *out]  # the folder itself is an answer: bash then adds nothing
    return out


# ---------------------------------------------------------------------------------------------
# Hydra's part, and the zsh script
def hydra_query(shell: str, words: List[str], current: str) -> None:
    """Hydra's own answer (groups, keys, values) for the training command line ``words`` plus
    the word under the cursor: Hydra reads the line from COMP_LINE."""
    line = " ".join(["dltrain", *words, current])  # Hydra splits it on spaces, as typed
    os.environ["COMP_LINE"] = line
    os.environ["COMP_POINT"] = str(len(line))
    from dltrain import launch

    # a line Hydra cannot parse yet (a word without '=') makes it print an error and exit:
    # the shell would show that in the middle of the line being typed
    with contextlib.redirect_stderr(io.StringIO()):
        try:
            launch.run_hydra(["-sc", f"query={shell if shell in ('bash', 'zsh', 'fish') else 'bash'}"])
        except SystemExit:
            pass


def zsh_script(program: str = "dltrain") -> str:
    """zsh's own completion function for dltrain: it asks ``dltrain -sc query=zsh`` as Hydra's
    bash script does, and adds a space after a finished word but not after ``key=``, ``key.``
    or ``folder/``. With no answer, zsh completes file names."""
    name = "_" + "".join(c if c.isalnum() else "_" for c in program)
    return f"""{name}() {{
  local line="${{(j: :)words[1,CURRENT-1]}} $PREFIX"
  local -a choices open done
  choices=(${{(f)"$(COMP_LINE="$line" COMP_POINT=${{#line}} {program} -sc query=zsh 2>/dev/null | tr ' ' '\\n')"}})
  open=(${{(M)choices:#*[=./]}})
  done=(${{choices:#*[=./]}})
  (( ${{#open}} )) && compadd -S '' -- $open
  (( ${{#done}} )) && compadd -- $done
  (( ${{#choices}} )) || _files
}}
(( $+functions[compdef] )) || {{ autoload -Uz compinit && compinit }}
compdef {name} {program}"""
