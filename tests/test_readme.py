"""The README and every page of docs/ as tests: extract their ```sh / ```python blocks and run them.

Rules (stated in docs/install.md, *The documentation is a test*):

- the README is walked top to bottom in a fresh folder; each ``docs/*.md`` page is walked on its
  own, top to bottom, in a fresh folder where the README's set-up command has run (so
  ``runs/digits`` exists, as it does for a reader who followed the set-up);

- every ```sh block runs as one ``bash -e`` script, every ```python block as its own fresh
  ``python`` process (so each Python block must be self-contained), in one shared folder per walk,
  in the order of the page;
- a line whose comment is exactly ``# GPU`` is skipped and counted; ``# MNIST`` lines run only
  when ``$DIMGEN_DATA`` holds MNIST (``MNIST/raw``), ``# CIFAR`` lines only when it holds the
  CIFAR-10 test copy (``CIFAR10/cifar10_test.npz``), else they are skipped and counted;
  ``# setup`` lines (install, download, the test suite itself) are skipped and counted: the
  test runs inside an installed checkout; the ``dimgen`` command that ends a set-up chain
  (``... && pip install ... && dimgen encode ...``) still runs, since later blocks use its output;
- ``DIMGEN_SMOKE=1`` is set (every trainer's budget is capped; see ``dimgen.training.smoke``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

FENCE = re.compile(r"^```\s*(\w*)\s*$")
TAG = re.compile(r"\s#\s*(GPU|MNIST|CIFAR|setup)\s*$")
LANGS = ("sh", "python")
SHELLS = ("sh", "bash", "shell", "console")  # every shell fence runs as ```sh


@dataclass
class Block:
    """One fenced block: its language, the README line of its first line, and its lines."""

    lang: str
    line: int
    lines: list[str]


@dataclass
class Walk:
    """What a walk did: blocks run, and skipped lines by tag."""

    ran: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    seconds: dict[int, float] = field(default_factory=dict)  # README line -> wall time


def extract(text: str) -> list[Block]:
    """Every shell (```sh, ```bash) and ```python block of a Markdown text, in order."""
    out: list[Block] = []
    current: Block | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        m = FENCE.match(raw.strip())
        if current is None:
            if m and m.group(1):
                lang = "sh" if m.group(1) in SHELLS else m.group(1)
                current = Block(lang, number + 1, [])
        elif m and not m.group(1):
            if current.lang in LANGS:
                out.append(current)
            current = None
        else:
            current.lines.append(raw)
    return out


def _logical(lines: list[str]) -> list[str]:
    """Join shell continuation lines (a trailing backslash) into one line each."""
    out: list[str] = []
    buf = ""
    for line in lines:
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        out.append(buf + line)
        buf = ""
    if buf:
        out.append(buf)
    return out


def has_mnist(data: str | None = None) -> bool:
    """Whether ``data`` (default ``$DIMGEN_DATA``) holds MNIST's raw files."""
    data = os.environ.get("DIMGEN_DATA") if data is None else data
    return bool(data) and (Path(data) / "MNIST" / "raw").is_dir()


def has_cifar(data: str | None = None) -> bool:
    """Whether ``data`` (default ``$DIMGEN_DATA``) holds the CIFAR-10 test copy."""
    data = os.environ.get("DIMGEN_DATA") if data is None else data
    return bool(data) and (Path(data) / "CIFAR10" / "cifar10_test.npz").is_file()


def prepare(block: Block, mnist: bool, walk: Walk, cifar: bool = False) -> str:
    """The code the test runs for ``block``: tagged lines dropped (and counted in ``walk``)."""
    kept: list[str] = []
    for line in _logical(block.lines) if block.lang == "sh" else block.lines:
        m = TAG.search(line)
        if m and not ((m.group(1) == "MNIST" and mnist) or (m.group(1) == "CIFAR" and cifar)):
            walk.skipped[m.group(1)] = walk.skipped.get(m.group(1), 0) + 1
            tail = line[: m.start()].rpartition("&& dimgen ")
            if m.group(1) == "setup" and tail[1]:
                kept.append("dimgen " + tail[2].strip())
            continue
        kept.append(line)
    return "\n".join(kept) + "\n"


def run_block(
    block: Block,
    code: str,
    cwd: Path,
    env: dict[str, str],
    timeout: float = 1200,
    name: str = "README",
) -> None:
    """Run one prepared block in ``cwd``; raise ``AssertionError`` naming the page and line."""
    if block.lang == "sh":
        cmd = ["bash", "-e", "-o", "pipefail", "-c", code]
    else:
        cmd = [sys.executable, "-c", code]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = (proc.stdout[-2000:] + "\n" + proc.stderr[-3000:]).strip()
        raise AssertionError(
            f"{name} block at line {block.line} ({block.lang}) failed with exit code "
            f"{proc.returncode}:\n{code}\n--- output ---\n{tail}"
        )


def walk(text: str, cwd: Path, env: dict[str, str] | None = None, name: str = "README") -> Walk:
    """Run every block of ``text`` in order in ``cwd`` (a smoke run); stop at the first failure."""
    env = dict(os.environ if env is None else env)
    env["DIMGEN_SMOKE"] = "1"
    env.setdefault("MPLBACKEND", "Agg")
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    mnist = has_mnist(env.get("DIMGEN_DATA"))
    cifar = has_cifar(env.get("DIMGEN_DATA"))
    result = Walk()
    for block in extract(text):
        code = prepare(block, mnist, result, cifar)
        if not code.strip():
            continue
        t0 = time.perf_counter()
        run_block(block, code, cwd, env, name=name)
        result.seconds[block.line] = time.perf_counter() - t0
        result.ran += 1
    return result


def setup_commands(text: str) -> list[str]:
    """The ``dimgen`` commands that end the set-up chains of ``text`` (``... && dimgen encode ...
    # setup``): what a reader has run before opening any page of docs/."""
    out = []
    for block in extract(text):
        if block.lang != "sh":
            continue
        for line in _logical(block.lines):
            m = TAG.search(line)
            tail = line[: m.start()].rpartition("&& dimgen ") if m else ("", "", "")
            if m and m.group(1) == "setup" and tail[1]:
                out.append("dimgen " + tail[2].strip())
    return out


REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
#: The documentation pages, each walked on its own after the README's set-up.
PAGES = sorted((REPO / "docs").glob("*.md"))
DOCS = [README, *PAGES]


def _name(path: Path) -> str:
    return str(path.relative_to(REPO))


def _fresh_checkout(dest: Path) -> None:
    """Copy the repository's tracked files outside the installed packages (configs, examples,
    benchmarks, ...) into ``dest``: the README is read from a clone's root."""
    try:
        names = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                               check=True).stdout.split()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        names = [str(p.relative_to(REPO)) for d in ("configs", "examples", "benchmarks")
                 for p in (REPO / d).rglob("*") if p.is_file()]  # fmt: skip
    for name in names:
        if name.split("/")[0] in ("dimgen", "cli", "tests") or not (REPO / name).is_file():
            continue
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / name, dest / name)


def unignored(work: Path, before: set[Path]) -> list[str]:
    """Files a walk wrote in ``work`` (not in ``before``) that the repository's ``.gitignore``
    does not cover: a reader running the same commands in a clone would see them as changes."""
    new = sorted(
        str(f.relative_to(work)) for f in work.rglob("*") if f.is_file() and f not in before
    )
    if not new:
        return []
    proc = subprocess.run(["git", "check-ignore", "--no-index", "--stdin"], cwd=REPO,
                          input="\n".join(new), capture_output=True, text=True)  # fmt: skip
    if proc.returncode not in (0, 1):
        return []  # not a git checkout: nothing to compare with
    return sorted(set(new) - set(proc.stdout.splitlines()))


def test_the_docs_have_pages_and_blocks() -> None:
    """The README keeps its set-up and a quick tour; the pages hold the rest (else the walks
    below would pass on nothing)."""
    readme = extract(README.read_text())
    assert setup_commands(README.read_text()) == ["dimgen encode --out runs/digits"]
    assert sum(b.lang == "sh" for b in readme) >= 2 and sum(b.lang == "python" for b in readme) >= 1
    assert len(README.read_text().splitlines()) <= 300
    blocks = [b for page in PAGES for b in extract(page.read_text())]
    assert len(PAGES) >= 10
    assert sum(b.lang == "sh" for b in blocks) >= 10
    assert sum(b.lang == "python" for b in blocks) >= 5


OUT = re.compile(r"--out\s+(\S+)")
#: Where the README's and docs' commands may write: run folders, codes and images under runs/,
#: exported folders under exported/ (both ignored by git).
OUT_ROOTS = ("runs/", "exported/")


def written_paths(pages: list[Path]) -> dict[str, set[str]]:
    """``--out`` path -> the command lines (``page:line: command``) of the shell blocks that write it."""
    out: dict[str, set[str]] = {}
    for page in pages:
        for block in extract(page.read_text()):
            if block.lang != "sh":
                continue
            for i, line in enumerate(block.lines):
                command = line.split("#", 1)[0].strip()
                where = f"{page.name}:{block.line + i}"
                for m in OUT.finditer(command):
                    out.setdefault(m.group(1), set()).add(f"{where}: {command}")
    return out


def test_doc_commands_write_under_runs_and_never_clash() -> None:
    """Every ``--out`` of the README and docs lands under runs/ (or exported/), and a file two
    pages write comes from the same command: a reader who follows the README, then a page,
    never finds one page's image or codes replaced by another's (two blocks once wrote
    ``mine.png``, one of them at the root)."""
    written = written_paths(DOCS)
    assert len(written) >= 30
    outside = sorted(p for p in written if not p.startswith(OUT_ROOTS))
    assert not outside, f"--out outside runs/ or exported/: {outside}: {written[outside[0]]}"
    files = {p: w for p, w in written.items() if Path(p).suffix in (".png", ".npz", ".json")}
    clashes = {p: w for p, w in files.items() if len({c.split(": ", 1)[1] for c in w}) > 1}
    assert not clashes, f"one file written by different commands: {clashes}"


def test_the_out_check_sees_a_clash(tmp_path: Path) -> None:
    page = tmp_path / "x.md"
    page.write_text("```sh\ndimgen sample a --out mine.png\ndimgen sample b --out mine.png\n```\n")
    written = written_paths([page])
    assert set(written) == {"mine.png"} and len(written["mine.png"]) == 2


@pytest.mark.parametrize("page", DOCS, ids=_name)
def test_doc_blocks_are_well_formed(page: Path) -> None:
    """Every block a walk would run parses: Python compiles, shell passes ``bash -n``."""
    for block in extract(page.read_text()):
        code = prepare(block, mnist=True, walk=Walk(), cifar=True)
        if block.lang == "python":
            compile(code, f"{_name(page)}:{block.line}", "exec")
        else:
            proc = subprocess.run(["bash", "-n", "-c", code], capture_output=True, text=True)
            assert proc.returncode == 0, f"{_name(page)}:{block.line}: {proc.stderr}"


def test_docs_mark_gpu_and_mnist_lines() -> None:
    """GPU and MNIST lines are marked (so the walks skip them) and none is left unmarked."""
    walk_ = Walk()
    for page in DOCS:
        for block in extract(page.read_text()):
            code = prepare(block, mnist=False, walk=walk_)
            for line in code.splitlines():
                assert "mnist" not in line.split("#")[0].lower() or "--help" in line, (
                    f"{_name(page)}:{block.line}: an MNIST line without a # MNIST or # GPU mark: "
                    f"{line}"
                )
    assert walk_.skipped.get("GPU", 0) >= 3


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", DOCS, ids=_name)
def test_doc_links_and_figures_resolve(page: Path) -> None:
    """Every relative link and figure of a page names a file of the repository (and an anchor
    that one of its headings makes)."""
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # http:, https:, mailto:
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        assert dest.is_file(), f"{_name(page)}: link to a missing file: {target}"
        if anchor and dest.suffix == ".md":
            assert anchor in _anchors(dest.read_text()), f"{_name(page)}: no heading for {target}"


def _anchors(text: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    out = set()
    for line in text.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return out


def test_every_page_is_linked_from_the_readme() -> None:
    text = README.read_text()
    missing = [p.name for p in PAGES if f"](docs/{p.name})" not in text]
    assert not missing, f"docs pages the README does not link: {missing}"


SAMPLE = """
Text.

```sh
echo one > a.txt
echo gpu >> a.txt   # GPU
echo mnist >> a.txt   # MNIST
echo long \\
  line >> a.txt
```

```python
from pathlib import Path
assert Path("a.txt").read_text().split() == EXPECTED, Path("a.txt").read_text()
```

```text
not run
```
"""


@pytest.mark.parametrize("mnist", [False, True])
def test_walk_runs_blocks_in_order_and_skips_tagged_lines(tmp_path: Path, mnist: bool) -> None:
    expected = ["one", "mnist", "long", "line"] if mnist else ["one", "long", "line"]
    text = SAMPLE.replace("EXPECTED", repr(expected))
    data = tmp_path / "data"
    if mnist:
        (data / "MNIST" / "raw").mkdir(parents=True)
    work = tmp_path / "work"
    work.mkdir()
    result = walk(text, work, {**os.environ, "DIMGEN_DATA": str(data)})
    assert result.ran == 2
    assert result.skipped == ({"GPU": 1} if mnist else {"GPU": 1, "MNIST": 1})


@pytest.mark.parametrize("broken", ["sh", "python"])
def test_walk_fails_on_a_broken_block(tmp_path: Path, broken: str) -> None:
    """A failing block stops the walk with the README line of the block that broke."""
    text = SAMPLE.replace("EXPECTED", repr(["one", "long", "line"]))
    if broken == "sh":
        text = text.replace("echo one > a.txt", "echo one > a.txt\nfalse")
        line = 5
    else:
        text = text.replace('assert Path("a.txt")', 'print(images)\nassert Path("a.txt")')
        line = 13
    with pytest.raises(AssertionError, match=f"README block at line {line} "):
        walk(text, tmp_path, {**os.environ, "DIMGEN_DATA": str(tmp_path / "none")})


@pytest.mark.slow
def test_readme_runs_as_written(tmp_path: Path) -> None:
    """The whole README, top to bottom, in a fresh folder, with ``DIMGEN_SMOKE=1``."""
    _fresh_checkout(tmp_path)
    before = {f for f in tmp_path.rglob("*") if f.is_file()}
    result = walk(README.read_text(), tmp_path)
    written = unignored(tmp_path, before)
    assert not written, f"the README writes files .gitignore does not cover: {written[:10]}"
    print(f"README walk: {result.ran} blocks, skipped {result.skipped}, seconds by line:")
    print({line: round(t, 1) for line, t in result.seconds.items()})
    assert result.ran >= 2
    run = (tmp_path / "runs" / "digits" / "run.json").read_text()
    assert '"smoke"' in run  # every run of the walk is marked as a smoke run


@pytest.fixture(scope="module")
def set_up(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh checkout where the README's set-up command has run (a smoke run)."""
    folder = tmp_path_factory.mktemp("set-up")
    _fresh_checkout(folder)
    code = "\n".join(setup_commands(README.read_text())) + "\n"
    walk(f"```sh\n{code}```\n", folder, name="README set-up")
    return folder


@pytest.mark.slow
@pytest.mark.timeout(3600)  # a page of MNIST benchmarks (with MNIST present) runs for many minutes
@pytest.mark.parametrize("page", [p for p in PAGES if extract(p.read_text())], ids=_name)
def test_doc_page_runs_as_written(page: Path, set_up: Path, tmp_path: Path) -> None:
    """One page of docs/, top to bottom, in a fresh copy of the set-up folder."""
    work = tmp_path / "work"
    shutil.copytree(set_up, work, symlinks=True)
    before = {f for f in work.rglob("*") if f.is_file()}
    result = walk(page.read_text(), work, name=_name(page))
    written = unignored(work, before)
    assert not written, f"{_name(page)} writes files .gitignore does not cover: {written[:10]}"
    print(f"{_name(page)}: {result.ran} blocks, skipped {result.skipped}, seconds by line:")
    print({line: round(t, 1) for line, t in result.seconds.items()})
