"""Every command in the README and docs/ matches the code; the marked ones run.

Two checks (the convention is described in docs/development.md, "Tests"):

- every `lma-tf COMMAND ...` in a shell block or an inline code span, and
  every `python tools/NAME.py` / `python -m lma_tf.cli.NAME`, names a real
  command and only flags that command defines (enum values too); every
  `--config.FIELD` and every config key written as `train.epochs` names a
  real config field. Nothing runs for this part.
- a ```sh block right after a `<!-- runnable -->` line is executed with bash
  in a fresh temporary folder, on a tiny synthetic cohort.

Relative links, and their #anchors, must resolve too.
"""

from __future__ import annotations

import dataclasses
import functools
import glob
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from lma_tf import cli
from lma_tf import config as lma_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = sorted([os.path.join(REPO, "README.md")] + glob.glob(f"{REPO}/docs/*.md"))
SHELL = ("sh", "bash", "shell", "console")
MARKER = re.compile(r"^<!-- runnable(?::\s*(?P<setup>[\w, ]+))? -->$")
TOOLS = {"make_records": "convert", "synthesize_cohort": "synthesize"}
INVOCATION = re.compile(
    r"(?:^|[\s;&(])(?:lma-tf\s+(?P<cmd>[a-z]+)"
    r"|python3?\s+tools/(?P<tool>\w+)\.py"
    r"|python3?\s+-m\s+lma_tf\.cli\.(?P<mod>\w+))"
)
FLAG = re.compile(r"(?<![\w-])--([A-Za-z_][\w.]*)(?:=(\S+))?")
CONFIG_KEY = re.compile(r"^(?:data|model|loss|train|classical)\.[a-z_.]+$")
# Spans that look like config keys but are files or Keras methods.
NOT_CONFIG = re.compile(r"\.(?:py|json|onnx|csv|png|md|pb|fit|predict|compile)$")
# What a runnable block's `train` gets appended: a 1-epoch run of a tiny net.
TINY_TRAIN = (
    "--config.train.epochs=1 --config.train.batch_size=4 "
    "--config.train.warmup_epochs=0 --config.model.trunk_channels='(8,)' "
    "--config.model.frame_pools=1 --config.model.sector_pools=1 "
    "--config.model.head_channels='(8,)' "
    "--config.model.head_units='(8,)'"
)


@dataclasses.dataclass(frozen=True)
class Block:
    path: str  # relative to the repository
    line: int  # of the opening fence
    info: str  # the fence's language
    text: str
    setup: tuple[str, ...] | None  # None: not runnable

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


def _blocks(path: str) -> list[Block]:
    """The fenced code blocks of one markdown file (a ```` fence nests ```)."""
    out, lines = [], open(path, encoding="utf-8").read().splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^\s*(`{3,})([\w+-]*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        start, body, fence = i, [], m[1]
        i += 1
        while i < len(lines) and lines[i].strip() != fence:
            body.append(lines[i])
            i += 1
        marker = MARKER.match(lines[start - 1].strip()) if start else None
        setup = None
        if marker:
            setup = tuple(s.strip() for s in (marker["setup"] or "").split(",") if s)
        rel = os.path.relpath(path, REPO)
        out.append(Block(rel, start + 1, m[2], "\n".join(body), setup))
        i += 1
    return out


ALL_BLOCKS = [b for p in DOCS for b in _blocks(p)]
SHELL_BLOCKS = [b for b in ALL_BLOCKS if b.info in SHELL]
RUNNABLE = [b for b in SHELL_BLOCKS if b.setup is not None]


def _commands(text: str) -> list[str]:
    """Shell text as single commands: continuations joined, comments cut."""
    text = text.replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line)
        out += [c for c in re.split(r"&&|;", line) if c.strip()]
    return out


def _inline_spans(path: str) -> list[str]:
    """Inline code spans outside fenced blocks."""
    text = open(path, encoding="utf-8").read()
    text = re.sub(r"(`{3,}).*?\1", "", text, flags=re.S)
    return re.findall(r"`([^`\n]+)`", text.replace("\n", " "))


@functools.cache
def _command_flags(command: str) -> dict:
    """{"flags": {name: enum values or None}, "positional": [...]} of a command.

    A fresh interpreter per command: the commands share flag names, which
    absl allows only once per process.
    """
    code = (
        "import importlib, json, sys\n"
        "from absl import app, flags, logging\n"
        "app.define_help_flags()  # --help and friends, as app.run adds them\n"
        "m = importlib.import_module('lma_tf.cli.' + sys.argv[1])\n"
        "fl = {n: sorted(getattr(flags.FLAGS[n].parser, 'enum_values', None) or [])"
        " or None for n in flags.FLAGS}\n"
        "print(json.dumps({'flags': fl, 'positional': list(getattr(m, 'WHICH', []))}))"
    )
    env = dict(os.environ, PYTHONPATH=REPO)
    out = subprocess.run(
        [sys.executable, "-c", code, command],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@functools.cache
def _all_flags() -> frozenset[str]:
    """The flags of every command, with absl's own."""
    return frozenset(f for c in cli.COMMANDS for f in _command_flags(c)["flags"])


@functools.cache
def _config_fields() -> frozenset[str]:
    """Every config field of every experiment, dotted."""
    return frozenset(
        name
        for exp in lma_config.experiment_names()
        for name, _ in lma_config.field_defaults(lma_config.load_experiment(exp))
    )


def _config_problem(field: str) -> str | None:
    if re.search(r"[A-Z]", field):  # a placeholder such as --config.FIELD
        return None
    fields = _config_fields()
    if field in fields or any(f.startswith(field + ".") for f in fields):
        return None
    return f"--config.{field}: no such config field"


def _check_command(cmd_text: str) -> list[str]:
    """Problems of every invocation in one command line."""
    problems = []
    for m in INVOCATION.finditer(cmd_text):
        name = m["cmd"] or m["mod"] or TOOLS.get(m["tool"], m["tool"])
        if name.isupper() or (m["tool"] and name not in cli.COMMANDS):
            continue  # a placeholder (COMMAND), or a helper script
        if name not in cli.COMMANDS:
            problems.append(f"unknown command {name!r}")
            continue
        spec = _command_flags(name)
        rest = cmd_text[m.end() :]
        nxt = INVOCATION.search(rest)
        rest = rest[: nxt.start()] if nxt else rest
        words = rest.split()
        if words and not words[0].startswith(("-", "[", "<")):
            if words[0] not in spec["positional"]:
                problems.append(f"{name}: unexpected argument {words[0]!r}")
        for flag, value in FLAG.findall(rest):
            if flag.startswith("config.") and name == "train":
                problem = _config_problem(flag[len("config.") :])
                problems += [f"{name}: {problem}"] if problem else []
            elif flag not in spec["flags"]:
                problems.append(f"{name}: no flag --{flag}")
            elif spec["flags"][flag] and value:
                # `--split=val`, or the documented choices `--format=a|b`.
                for choice in value.strip("[]'\"").split("|"):
                    if (
                        re.fullmatch(r"[a-z0-9_+.-]+", choice)
                        and choice not in (spec["flags"][flag])
                    ):
                        problems.append(f"{name}: --{flag}={choice} not a choice")
    return problems


@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=str)
def test_shell_block_commands_use_real_flags(block):
    problems = [p for c in _commands(block.text) for p in _check_command(c)]
    assert not problems, f"{block}: {problems}"


@pytest.mark.parametrize("path", DOCS, ids=lambda p: os.path.relpath(p, REPO))
def test_inline_commands_and_config_keys_are_real(path):
    problems = []
    for span in _inline_spans(path):
        if INVOCATION.match(" " + span):  # a command, not a message quoting one
            problems += _check_command(span)
        for field in re.findall(r"(?<![\w-])--config\.([\w.]+)", span):
            problems += [p for p in [_config_problem(field)] if p]
        if CONFIG_KEY.match(span) and not NOT_CONFIG.search(span):
            problems += [p for p in [_config_problem(span)] if p]
    # The first column of a flag table: some command must define the flag.
    table_flag = re.compile(r"^\|\s*`--(?:\[no\])?([a-z][a-z0-9_]*)", re.M)
    for flag in table_flag.findall(open(path, encoding="utf-8").read()):
        if flag not in _all_flags():
            problems.append(f"--{flag}: no command has this flag")
    assert not problems, f"{os.path.relpath(path, REPO)}: {problems}"


def test_the_checker_catches_wrong_flags_and_fields():
    assert _check_command("lma-tf train --config.train.epoch=3")
    assert _check_command("lma-tf convert --inputs=x")
    assert _check_command("lma-tf evaluate --split=validation")
    assert _check_command("lma-tf maps --base_at=top|bottom")
    assert _check_command("lma-tf benchmark everything")
    assert _check_command("lma-tf trian --config=multitask")
    assert not _check_command("lma-tf train --config.FIELD=VALUE --records_dir=r")
    assert not _check_command(
        "python tools/make_records.py --input=x --split=0.8,0,0.2"
    )
    assert len(RUNNABLE) >= 3, "the README's worked example must stay runnable"


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> dict[str, str]:
    """A small synthetic cohort of .mat exports and its records."""
    from lma_tf.data import records, synthetic_io

    root = tmp_path_factory.mktemp("docs_cohort")
    cohort_dir, records_dir = str(root / "cohort"), str(root / "records")
    synthetic_io.synthesize_cohort(cohort_dir, 8, 1, "mat")
    options = records.RecordsOptions(output_dir=records_dir, progress=False)
    records.make_records([cohort_dir], options)
    return {"cohort": cohort_dir, "records": records_dir}


def _prepare(block: Block, cwd: str, cohort: dict[str, str]) -> str:
    """The block's script, with /data and /tmp paths moved into `cwd`."""
    for name in set(re.findall(r"(?<![\w.])/data/([\w.-]+)", block.text)):
        os.makedirs(os.path.join(cwd, "data"), exist_ok=True)
        os.symlink(cohort["cohort"], os.path.join(cwd, "data", name))
    os.makedirs(os.path.join(cwd, "tmp"), exist_ok=True)
    for item in block.setup or ():
        shutil.copytree(cohort[item], os.path.join(cwd, item))
    script = re.sub(r"(?<![\w.])/(data|tmp)/", r"./\1/", block.text)
    dispatch = (
        "import sys; from lma_tf.cli import dispatch; "
        "dispatch(['lma-tf', *sys.argv[1:]])"
    )
    return (
        "set -euo pipefail\n"
        f'lma-tf() {{ if [ "${{1:-}}" = train ]; then set -- "$@" {TINY_TRAIN}; fi\n'
        f'  "{sys.executable}" -c "{dispatch}" "$@"; }}\n'
        f"{script}\n"
    )


@pytest.mark.parametrize("block", RUNNABLE, ids=str)
def test_runnable_block_runs(block, cohort, tmp_path):
    script = _prepare(block, str(tmp_path), cohort)
    env = dict(os.environ, PYTHONPATH=REPO, MPLBACKEND="Agg")
    proc = subprocess.run(
        ["nice", "-n", "5", "bash", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, f"{block} failed:\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, - for space."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", text))


@pytest.mark.parametrize("path", DOCS, ids=lambda p: os.path.relpath(p, REPO))
def test_relative_links_and_anchors_resolve(path):
    text = open(path, encoding="utf-8").read()
    problems = []
    for target in re.findall(
        r"\]\(([^)\s]+)\)", re.sub(r"(`{3,}).*?\1", "", text, flags=re.S)
    ):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        file_part, _, anchor = target.partition("#")
        linked = os.path.normpath(os.path.join(os.path.dirname(path), file_part))
        if file_part and not os.path.exists(linked):
            problems.append(f"{target}: no such file")
            continue
        if anchor and linked.endswith(".md"):
            with open(linked if file_part else path, encoding="utf-8") as f:
                headings = re.findall(r"^#+\s+(.*)$", f.read(), flags=re.M)
            if anchor not in {_slug(h) for h in headings}:
                problems.append(f"{target}: no such heading")
    assert not problems, f"{os.path.relpath(path, REPO)}: {problems}"
