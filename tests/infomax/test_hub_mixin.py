"""The Tokenizer on ``huggingface_hub``'s ``ModelHubMixin``: save_pretrained, from_pretrained,
push_to_hub (offline, against a stub of the Hub API), the model card's metadata, and loading
today's export folders unchanged."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from dimgen.cli import cli
from safetensors.torch import load_file
from sklearn.datasets import load_digits

from dimgen.errors import RunFolderError
from dimgen.infomax.hub import HUB_FILES
from dimgen.infomax.tokenizer import Tokenizer
from dimgen.io import _sha256, save_weights

hub = pytest.importorskip("huggingface_hub")
X = load_digits().images[:100] / 16.0


def test_save_pretrained_is_the_export_with_card_metadata(digits_run: Path, tmp_path: Path) -> None:
    tok = Tokenizer.from_pretrained(digits_run)
    assert isinstance(tok, hub.ModelHubMixin)
    tok.save_pretrained(tmp_path / "saved")
    assert sorted(p.name for p in (tmp_path / "saved").iterdir()) == sorted(HUB_FILES)
    exp = tmp_path / "export"
    assert CliRunner().invoke(cli, ["export", str(digits_run), "--out", str(exp)]).exit_code == 0
    # one format: the same config and card as `dimgen export`, the same codes
    saved_cfg = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert saved_cfg == json.loads((exp / "config.json").read_text())
    assert (tmp_path / "saved" / "README.md").read_text() == (exp / "README.md").read_text()
    assert torch.equal(Tokenizer.from_pretrained(tmp_path / "saved").encode(X), tok.encode(X))
    # the card's metadata, read back with huggingface_hub: library, tags, model-index results
    metrics = json.loads((digits_run / "metrics.json").read_text())
    card = hub.ModelCard.load(tmp_path / "saved" / "README.md")
    assert card.data.library_name == "dimgen"
    assert {"dimgen", "deep-infomax"} <= set(card.data.tags)
    verdict = "prior-match-pass" if saved_cfg["verdicts"]["passes"] else "prior-match-reject"
    assert verdict in card.data.tags
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert results["kl_upper_bound_nats"] == pytest.approx(metrics["kl_upper_bound_nats"])
    assert results["prior_match_p"] == pytest.approx(saved_cfg["verdicts"]["p"])
    assert all(r.dataset_name == "digits" for r in card.data.eval_results)


def test_push_to_hub_offline_with_a_stub_of_the_hub_api(
    digits_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = tmp_path / "remote"
    calls: list[tuple[str, dict]] = []

    class Repo:
        def __init__(self, repo_id: str) -> None:
            self.repo_id = repo_id

    def create_repo(self: object, repo_id: str, **kw: object) -> Repo:  # no network
        calls.append(("create_repo", {"repo_id": repo_id, **kw}))
        return Repo(repo_id)

    def upload_folder(self: object, *, repo_id: str, folder_path: Path, **kw: object) -> str:
        calls.append(("upload_folder", {"repo_id": repo_id, **kw}))
        shutil.copytree(folder_path, remote / repo_id)
        return f"https://huggingface.co/{repo_id}/commit/0"

    monkeypatch.setattr(hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(hub.HfApi, "upload_folder", upload_folder)
    tok = Tokenizer.from_pretrained(digits_run)
    url = tok.push_to_hub("someone/dimgen-digits", private=True)
    assert url.endswith("/commit/0")
    assert [c[0] for c in calls] == ["create_repo", "upload_folder"]
    assert calls[0][1]["repo_id"] == "someone/dimgen-digits" and calls[0][1]["private"] is True
    assert calls[1][1]["repo_type"] == "model"
    pushed = remote / "someone/dimgen-digits"
    assert sorted(p.name for p in pushed.iterdir()) == sorted(HUB_FILES)

    def download(repo_id: str, allow_patterns: list[str], **kw: object) -> str:
        assert allow_patterns == list(HUB_FILES) and kw == {"revision": "main"}
        return str(remote / repo_id)

    monkeypatch.setattr(hub, "snapshot_download", download)
    back = Tokenizer.from_pretrained("someone/dimgen-digits", revision="main")
    assert torch.equal(back.encode(X), tok.encode(X))


def test_todays_exports_load_and_bad_weights_are_refused(digits_run: Path, tmp_path: Path) -> None:
    exp = tmp_path / "export"
    assert CliRunner().invoke(cli, ["export", str(digits_run), "--out", str(exp)]).exit_code == 0
    # an export of before this change: a hand-written card header, no weights digest
    old = tmp_path / "old"
    shutil.copytree(exp, old)
    cfg = json.loads((old / "config.json").read_text())
    cfg.pop("model_sha256")
    (old / "config.json").write_text(json.dumps(cfg))
    (old / "README.md").write_text("---\nlibrary_name: dimgen\ntags: [dimgen]\n---\n\n# old\n")
    tok = Tokenizer.from_pretrained(old)
    assert torch.equal(tok.encode(X), Tokenizer.from_pretrained(digits_run).encode(X))
    assert tok.hub_config()["certificate"] == cfg["certificate"]  # kept when saved again
    # non-finite weights (with a matching digest): refused in one line
    bad = tmp_path / "bad"
    shutil.copytree(exp, bad)
    tensors = load_file(str(bad / "model.safetensors"))
    key = next(k for k, v in tensors.items() if v.is_floating_point())
    tensors[key] = torch.full_like(tensors[key], float("inf"))
    save_weights(bad / "model.safetensors", tensors, {"kind": "encoder", "spec": cfg["spec"]})
    cfg_bad = {**cfg, "model_sha256": _sha256(bad / "model.safetensors")}
    (bad / "config.json").write_text(json.dumps(cfg_bad))
    with pytest.raises(RunFolderError, match=f"tensor {key} holds .* NaN or inf"):
        Tokenizer.from_pretrained(bad)
    # a pickle in place of the weights: never unpickled, refused
    torch.save(tensors, bad / "model.safetensors")
    cfg_bad["model_sha256"] = _sha256(bad / "model.safetensors")
    (bad / "config.json").write_text(json.dumps(cfg_bad))
    with pytest.raises(RunFolderError, match="not a valid safetensors file"):
        Tokenizer.from_pretrained(bad)


def test_without_huggingface_hub_save_works_and_push_says_what_to_install(
    digits_run: Path, tmp_path: Path
) -> None:
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['huggingface_hub'] = None\n"
        "from dimgen.infomax.tokenizer import Tokenizer\n"
        "from dimgen.errors import DimgenError\n"
        f"tok = Tokenizer.from_pretrained({str(digits_run)!r})\n"
        f"tok.save_pretrained({str(tmp_path / 's')!r})\n"
        f"assert Tokenizer.from_pretrained({str(tmp_path / 's')!r}).dim == 2\n"
        "try:\n    tok.push_to_hub('a/b')\nexcept DimgenError as e:\n    print(e)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-1000:]
    assert "pip install 'dimgen[hub]'" in res.stdout
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == sorted(HUB_FILES)
    assert (tmp_path / "s" / "README.md").read_text().startswith("---\nlibrary_name: dimgen")
