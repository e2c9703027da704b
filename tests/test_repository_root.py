"""The repository holds sources and documentation only: no run folders, weights or other files
that dimgen's commands write (they belong in ``runs/`` and other ignored paths)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: What the root of a Python project of this kind holds (files and folders).
ROOT_ALLOWED = frozenset(
    {
        ".ci",
        ".gitignore",
        "LICENSE",
        "README.md",
        "benchmarks",
        "cli",
        "configs",
        "dimgen",
        "docs",
        "examples",
        "pyproject.toml",
        "tests",
    }
)
#: Suffixes and names of what dimgen writes (weights, codes, run records, logs): never committed.
GENERATED = (".safetensors", ".npz", ".pt", ".pth", "run.json", "log.csv", "checkpoint")


def _tracked() -> list[str]:
    try:
        proc = subprocess.run(
            ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return proc.stdout.splitlines()


def strangers(paths: list[str]) -> list[str]:
    """Top-level entries of ``paths`` that the root may not hold."""
    return sorted({p.split("/")[0] for p in paths} - ROOT_ALLOWED)


def generated(paths: list[str]) -> list[str]:
    """Paths that look like files dimgen's commands write."""
    return sorted(p for p in paths if p.rsplit("/", 1)[-1].endswith(GENERATED))


def test_the_root_holds_no_strangers() -> None:
    tracked = _tracked()
    assert {"README.md", "pyproject.toml", "dimgen", "tests"} <= {p.split("/")[0] for p in tracked}
    assert not strangers(tracked), (
        f"files at the repository root that do not belong: {strangers(tracked)}"
    )


def test_no_generated_file_is_committed() -> None:
    assert not generated(_tracked()), f"generated files committed: {generated(_tracked())}"


def test_the_checks_see_strangers() -> None:
    """A committed run folder (as cc/, k1/, kk/ once were) fails both checks."""
    paths = ["README.md", "cc/run.json", "cc/encoder.safetensors", "kk/codes.npz", "mine.png"]
    assert strangers(paths) == ["cc", "kk", "mine.png"]
    assert generated(paths) == ["cc/encoder.safetensors", "cc/run.json", "kk/codes.npz"]


def test_gitignore_covers_what_the_docs_write() -> None:
    """Files the README's and docs' commands write at the root are ignored by git."""
    written = ["runs/digits/run.json", "new.npz", "new-codes.npz", "uncond.png", "uncond.npz",
               "mine.png", "my-images/c0/0.png", "exported/digits/config.json", "target.npz",
               "gpu-check/results.json", "data/MNIST/raw/t10k-images-idx3-ubyte.gz"]  # fmt: skip
    try:
        proc = subprocess.run(["git", "check-ignore", "--no-index", "--stdin"], cwd=REPO,
                              input="\n".join(written), capture_output=True, text=True)  # fmt: skip
    except OSError:
        pytest.skip("git is not installed")
    if proc.returncode not in (0, 1):
        pytest.skip(f"git check-ignore failed: {proc.stderr.strip()}")
    ignored = set(proc.stdout.split())
    assert ignored == set(written), f"not ignored: {sorted(set(written) - ignored)}"
