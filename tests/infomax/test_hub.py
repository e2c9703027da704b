"""``dimgen export`` and ``Tokenizer.from_pretrained`` on export folders, run folders, repo ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from dimgen.cli import cli
from sklearn.datasets import load_digits

from dimgen.errors import DimgenError, RunFolderError
from dimgen.infomax.tokenizer import Tokenizer


def test_export_round_trip_gives_identical_codes(digits_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "export"
    res = CliRunner().invoke(cli, ["export", str(digits_run), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
    ]
    x = load_digits().images[:200] / 16.0
    a = Tokenizer.from_pretrained(digits_run).encode(x)
    b = Tokenizer.from_pretrained(out).encode(x)
    assert torch.equal(a, b)
    cfg = json.loads((out / "config.json").read_text())
    metrics = json.loads((digits_run / "metrics.json").read_text())
    assert cfg["data"] == "digits" and cfg["prior"] == "gaussian" and cfg["dim"] == 2
    assert cfg["certificate"]["kl_upper_bound_nats"] == metrics["kl_upper_bound_nats"]
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: dimgen")
    assert f"<= {metrics['kl_upper_bound_nats']:.4f} nats" in card and "`digits`" in card
    assert cfg["verdicts"]["evaluated"] and f"p = {cfg['verdicts']['p']:.3g}" in card
    # The same folder again: refused, one line.
    res = CliRunner().invoke(cli, ["export", str(digits_run), "--out", str(out)])
    assert res.exit_code == 2 and "not empty" in res.output


def test_repo_ids_go_through_huggingface_hub(
    digits_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = pytest.importorskip("huggingface_hub")
    out = tmp_path / "export"
    CliRunner().invoke(cli, ["export", str(digits_run), "--out", str(out)])
    calls: list[tuple[str, list[str]]] = []

    def fake_download(repo_id: str, allow_patterns: list[str]) -> str:  # no network in tests
        calls.append((repo_id, allow_patterns))
        return str(out)

    monkeypatch.setattr(hub, "snapshot_download", fake_download)
    tok = Tokenizer.from_pretrained("someone/dimgen-digits")
    assert calls == [("someone/dimgen-digits", ["config.json", "model.safetensors", "README.md"])]
    x = load_digits().images[:50] / 16.0
    assert torch.equal(tok.encode(x), Tokenizer.from_pretrained(digits_run).encode(x))

    def offline(repo_id: str, allow_patterns: list[str]) -> str:
        raise OSError("offline: no connection")

    monkeypatch.setattr(hub, "snapshot_download", offline)
    with pytest.raises(RunFolderError, match="could not be loaded from the Hub"):
        Tokenizer.from_pretrained("someone/missing")


def test_not_a_folder_nor_a_repo_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(RunFolderError, match="no such run folder"):
        Tokenizer.from_pretrained(tmp_path / "nope")
    import builtins

    real_import = builtins.__import__

    def no_hub(name: str, *args, **kwargs):
        if name.startswith("huggingface_hub"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_hub)
    with pytest.raises(DimgenError, match=r"pip install 'dimgen\[hub\]'"):
        Tokenizer.from_pretrained("someone/repo")
