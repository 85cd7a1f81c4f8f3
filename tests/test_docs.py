"""The README and docs/: links resolve, the README stays a front door, no measured number is lost, and the
commands they show name real scripts with options those scripts accept."""

import hashlib
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
README_MAX_LINES = 220
# every decimal number of the README before it was split into README.md + docs/ (from `git show HEAD:README.md`
# at that time); each must still appear in README.md, docs/*.md or results/*.md
NUMBERS_BEFORE = Path(__file__).parent / "data" / "readme_numbers_before.txt"
DECIMAL = re.compile(r"\d+\.\d+")

FENCE = re.compile(r"^(```|~~~)(.*?)^\1[ \t]*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]+`")
LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)
PYTHONS = ("python", "python3", ".venv/bin/python")
SHELL_LANGUAGES = ("", "bash", "sh", "shell", "console")
HELP_CACHE = "test_docs/help"


def prose(text: str) -> str:
    """The text outside fenced code blocks, with inline code spans blanked out (links there are not links)."""
    return INLINE_CODE.sub("`code`", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped (except - and _), spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    """Every heading anchor of a markdown file, duplicates numbered as GitHub does (name, name-1, ...)."""
    seen: dict[str, int] = {}
    result = set()
    for heading in HEADING.findall(FENCE.sub("", path.read_text(encoding="utf-8"))):
        base = slug(heading)
        count = seen.get(base, 0)
        result.add(base if count == 0 else f"{base}-{count}")
        seen[base] = count + 1
    return frozenset(result)


def relative_links(page: Path) -> list[str]:
    return [
        target
        for target in LINK.findall(prose(page.read_text(encoding="utf-8")))
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE)
    ]  # http:, https:, mailto:, ...


def link_problem(page: Path, target: str) -> str | None:
    """Why a relative link of `page` does not resolve, or None."""
    file_part, _, anchor = target.partition("#")
    path = page if not file_part else (page.parent / file_part).resolve()
    if not path.exists():
        return f"{page.relative_to(ROOT)}: {target}: no such file"
    if anchor and path.suffix == ".md" and anchor.lower() not in anchors(path):
        return f"{page.relative_to(ROOT)}: {target}: no heading with anchor #{anchor} in {path.relative_to(ROOT)}"
    return None


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    problems = [problem for target in relative_links(page) if (problem := link_problem(page, target))]
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_slug_follows_github_rules():
    assert slug("(d) BCE + sigmoid vs MSE + tanh") == "d-bce--sigmoid-vs-mse--tanh"
    assert slug('Capacity-controlled training (beta-VAE "B")') == "capacity-controlled-training-beta-vae-b"
    assert slug("The next step: better samples than N(0, I)") == "the-next-step-better-samples-than-n0-i"
    assert slug("snake_case and `code`") == "snake_case-and-code"


def test_readme_is_a_front_door():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move reference material into docs/"


def test_no_measured_number_lost():
    before = {
        line.strip() for line in NUMBERS_BEFORE.read_text().splitlines() if line.strip() and not line.startswith("#")
    }
    pages = PAGES + sorted((ROOT / "results").glob("*.md"))
    now = set(DECIMAL.findall("\n".join(page.read_text(encoding="utf-8") for page in pages)))
    missing = sorted(before - now, key=float)
    assert not missing, f"numbers of the old README found nowhere in README.md, docs/ or results/: {missing}"


# ---------------------------------------------------------------------------------------------- commands
def shell_commands(page: Path) -> list[str]:
    """The command lines of the page's fenced shell blocks (continuations joined, comments and prompts dropped)
    that run a Python script or module of the repository."""
    commands = []
    for match in FENCE.finditer(page.read_text(encoding="utf-8")):
        language, _, body = match.group(2).partition("\n")
        if language.strip().lower() not in SHELL_LANGUAGES:
            continue
        for line in re.sub(r"\\\n", " ", body).splitlines():
            line = line.strip().removeprefix("$ ")
            try:
                words = shlex.split(line, comments=True)
            except ValueError:
                continue
            while words and re.match(r"^[A-Za-z_]\w*=", words[0]):  # OMP_NUM_THREADS=1 python ...
                words = words[1:]
            if words and words[0] in PYTHONS and len(words) > 1:
                commands.append(" ".join(shlex.quote(word) for word in words))
    return commands


def script_of(words: list[str]) -> tuple[str, str] | None:
    """('module', name) or ('path', file) of a python command line; None for `python -c` and the like, and for
    modules from outside the repository (`python -m papermill`)."""
    if words[1] == "-m" and len(words) > 2:
        top = ROOT / words[2].split(".")[0]
        return ("module", words[2]) if top.is_dir() or top.with_suffix(".py").is_file() else None
    if not words[1].startswith("-"):
        return "path", words[1]
    return None


LAB_INSTALLED = importlib.util.find_spec("optuna") is not None  # make lab: lab/requirements.txt


def in_lab(script: tuple[str, str]) -> bool:
    return script[1].startswith(("lab.", "lab/"))


def script_exists(kind: str, name: str) -> bool:
    if kind == "path":
        return (ROOT / name).is_file()
    base = ROOT / Path(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__main__.py").is_file()


# runs each script's --help in one process (so torch is imported once), printing {script: help text} as JSON
HELP_RUNNER = r"""
import contextlib, io, json, runpy, sys
texts = {}
for kind, name in json.loads(sys.argv[1]):
    out = io.StringIO()
    sys.argv = [name, "--help"]
    try:
        with contextlib.redirect_stdout(out):
            if kind == "module":
                runpy.run_module(name, run_name="__main__", alter_sys=True)
            else:
                runpy.run_path(name, run_name="__main__")
    except SystemExit:
        pass
    except BaseException as error:
        out.write(f"\n{name} --help failed: {type(error).__name__}: {error}")
    texts[name] = out.getvalue()
sys.stdout = sys.__stdout__
print(json.dumps(texts))
"""


def source_key() -> str:
    """What --help texts depend on: the Python version and every source file and requirement of the project."""
    digest = hashlib.sha256(sys.version.encode())
    for path in sorted(
        [*ROOT.glob("*.py"), *ROOT.glob("lab/*.py"), ROOT / "requirements.txt", ROOT / "lab" / "requirements.txt"]
    ):
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def run_help(scripts: list[tuple[str, str]]) -> dict[str, str]:
    result = subprocess.run(
        [sys.executable, "-c", HELP_RUNNER, json.dumps(scripts)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, f"the --help runs failed:\n{result.stderr[-2000:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def help_texts(request) -> dict[str, str]:
    """--help of every script that a fenced command of README.md or docs/ runs, from one process for all of them.
    Importing torch, sklearn and matplotlib takes seconds, so the texts are kept in pytest's cache under a digest
    of the sources: they are run again whenever a source file or requirements.txt changes."""
    scripts = sorted(
        {
            script
            for page in PAGES
            for command in shell_commands(page)
            if (script := script_of(shlex.split(command)))
            and script_exists(*script)
            and (LAB_INSTALLED or not in_lab(script))
        }
    )
    cache = getattr(request.config, "cache", None)  # None under -p no:cacheprovider
    key, cached = source_key(), cache.get(HELP_CACHE, {}) if cache else {}
    texts = cached.get("texts", {}) if cached.get("key") == key else {}
    if missing := [script for script in scripts if script[1] not in texts]:
        texts.update(run_help(missing))
        if cache and all("usage:" in text for text in texts.values()):
            cache.set(HELP_CACHE, {"key": key, "texts": texts})
    return texts


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_commands_name_real_scripts_and_options(page, help_texts):
    commands = shell_commands(page)
    if page == README:
        assert commands, "README.md shows no python command"
    problems = []
    for command in commands:
        words = shlex.split(command)
        script = script_of(words)
        if script is None:
            continue
        kind, name = script
        if not script_exists(kind, name):
            problems.append(f"{command}: no {'module' if kind == 'module' else 'file'} {name}")
            continue
        if in_lab(script) and not LAB_INSTALLED:
            continue  # the core install has no optuna: the lab's options are checked where the lab is (make lab)
        text = help_texts[name]
        if "usage:" not in text:
            problems.append(f"{command}: `{name} --help` printed no usage:\n{text.strip()[-600:]}")
            continue
        for option in {word.split("=")[0] for word in words[2:] if word.startswith("--")}:
            if not re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text):
                problems.append(f"{command}: {name} has no option {option}")
    assert not problems, "\n".join(problems)
