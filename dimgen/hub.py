"""Hugging Face-style export of an encoder run, and loading from such a folder or the Hub.

An export folder holds ``config.json`` (the model spec that rebuilds the encoder, the data, the
prior and the KL certificate), ``model.safetensors`` (the encoder weights, never pickle) and a
``README.md`` model card. :meth:`dimgen.Tokenizer.from_pretrained` reads it, a run folder, or a
Hub repository id (``user/repo``) when the optional ``huggingface_hub`` is installed
(``pip install 'dimgen[hub]'``); only those three files are downloaded.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from .errors import DimgenError, RunFolderError
from .folders import looks_like_hub_id, missing_run_message
from .io import atomic_path, read_run, write_json, write_text

__all__ = ["HUB_FILES", "export_run", "is_export", "resolve_pretrained"]

HUB_FILES = ("config.json", "model.safetensors", "README.md")
"""The files of an export folder (and all that is fetched from the Hub)."""


def is_export(path: Path) -> bool:
    """True when ``path`` is an export folder (``config.json`` + ``model.safetensors``)."""
    return (path / "config.json").is_file() and (path / "model.safetensors").is_file()


def export_run(run: str | Path, out: str | Path) -> Path:
    """Write the encoder of run folder ``run`` as a Hugging Face-style folder ``out``.

    Returns ``out``. Raises :class:`RunFolderError` for an incomplete or foreign run folder or
    an ``out`` that exists and is not empty.
    """
    from .training.run_folder import check_new_folder

    run_dir, rec = read_run(run, "encoder")
    out = Path(out)
    check_new_folder(out)
    metrics = read_json_or_empty(run_dir / "metrics.json")
    spec = rec.get("spec") or {}
    keys = ("capacity_nats", "mi_lower_bound_nats", "mi_lower_bound_stderr",
            "kl_upper_bound_nats", "knn_acc", "n_train", "n_test")  # fmt: skip
    config = {
        "library_name": "dimgen",
        "kind": "encoder",
        "data": _config_data(run_dir),
        "prior": spec.get("prior"),
        "dim": spec.get("dim"),
        "certificate": {k: metrics[k] for k in keys if k in metrics},
        "spec": spec,
        "verdicts": _verdicts(run_dir, str(spec.get("prior", "gaussian"))),
    }
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "model.safetensors") as tmp:
        shutil.copyfile(run_dir / "encoder.safetensors", tmp)
    write_json(out / "config.json", config)
    write_text(out / "README.md", model_card(config))  # last: a folder with a card is complete
    return out


def read_json_or_empty(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _config_data(run_dir: Path) -> str:
    from .parsing import parse_yaml

    try:
        cfg = parse_yaml((run_dir / "config.yaml").read_text(), "config.yaml")
    except (OSError, DimgenError):
        return "unknown"
    return str(cfg.get("data", "unknown")) if isinstance(cfg, dict) else "unknown"


def _verdicts(run_dir: Path, prior: str) -> dict[str, Any]:
    """The prior-match tests of :func:`dimgen.evaluate` on the run's held-out codes."""
    import numpy as np

    from .diagnostics import evaluate

    try:
        with np.load(run_dir / "codes.npz", allow_pickle=False) as f:
            codes, split = f["codes"], f["split"].astype(str)
    except (OSError, KeyError, ValueError):
        return {"evaluated": False}
    held = codes[split == "test"]
    if len(held) < 20:
        return {"evaluated": False}
    ev = evaluate(held, labels=None, prior=prior)
    return {"evaluated": True, "n": len(held), "passes": bool(ev.passes), "p": float(ev.p)}


def model_card(config: dict[str, Any]) -> str:
    """The ``README.md`` of an export: data, prior, KL certificate, test verdicts, usage."""
    cert, v = config["certificate"], config["verdicts"]
    lines = [
        "---", "library_name: dimgen", "tags: [dimgen, deep-infomax, representation-learning]",
        "---", "", f"# dimgen encoder: {config['data']}, {config['prior']} prior, d = {config['dim']}",
        "", "A noise-injected Deep InfoMax encoder whose codes follow the prior "
        f"({config['prior']}), trained on `{config['data']}`.", "", "## KL certificate", "",
    ]  # fmt: skip
    if "kl_upper_bound_nats" in cert:
        lines += [
            f"- channel capacity: {cert['capacity_nats']:.4f} nats",
            f"- MI lower bound (held-out): {cert['mi_lower_bound_nats']:.4f} "
            f"± {cert.get('mi_lower_bound_stderr', float('nan')):.4f} nats",
            f"- KL(noisy codes ‖ noisy prior) <= {cert['kl_upper_bound_nats']:.4f} nats "
            "(capacity - MI; up to the MI estimate's error)",
        ]
    if "knn_acc" in cert:
        lines.append(f"- 5-NN label accuracy of held-out codes: {cert['knn_acc']:.3f}")
    lines += ["", "## Do the clean codes follow the prior?", ""]
    if v.get("evaluated"):
        verdict = "yes: no test rejects" if v["passes"] else "no: the tests reject"
        lines.append(f"{verdict} (combined p = {v['p']:.3g} on {v['n']} held-out codes, "
                     "`dimgen evaluate`).")  # fmt: skip
    else:
        lines.append("Not evaluated (too few held-out codes); run `dimgen evaluate`.")
    lines += ["", "## Use", "", "```python", "import dimgen", "",
              'tok = dimgen.Tokenizer.from_pretrained("THIS_FOLDER_OR_REPO")',
              "codes = tok.encode(images)  # (n, d) under the prior", "```", ""]  # fmt: skip
    return "\n".join(lines)


def resolve_pretrained(name: str | Path) -> Path:
    """A local folder as is; otherwise a Hub repository id, downloaded with huggingface_hub.

    Only a name that can only be a ``user/repo`` id goes to the Hub
    (:func:`dimgen.folders.looks_like_hub_id`); a path-like name that does not exist (e.g.
    ``runs/digitz`` beside a ``runs/`` folder) is reported as "no such run folder".

    Raises:
        RunFolderError: not a local folder and not a valid ``user/repo`` id, or the download
            failed.
        DimgenError: a repository id without huggingface_hub installed.
    """
    path = Path(name).expanduser()
    if path.exists():
        return path
    text = str(name)
    if not looks_like_hub_id(text):  # a path-like name: a mistyped local folder, not a Hub id
        raise RunFolderError(missing_run_message(text))
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise DimgenError(
            f"{text} is not a local folder; to load it from the Hugging Face Hub install "
            "huggingface_hub (pip install 'dimgen[hub]')"
        ) from None
    try:
        return Path(snapshot_download(text, allow_patterns=list(HUB_FILES)))
    except Exception as exc:  # network, unknown repo, bad id: one line
        msg = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise RunFolderError(
            f"{text}: no such run folder here, and could not be loaded from the Hub ({msg})"
        ) from None
