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

from ..errors import DimgenError, RunFolderError
from ..folders import looks_like_hub_id, missing_run_message
from ..io import read_run, write_json, write_text

__all__ = [
    "CARD_TEMPLATE",
    "HUB_FILES",
    "card_body",
    "check_export",
    "export_config",
    "export_run",
    "is_export",
    "model_card",
    "resolve_pretrained",
    "write_folder",
]

HUB_FILES = ("config.json", "model.safetensors", "README.md")
"""The files of an export folder (and all that is fetched from the Hub)."""


def is_export(path: Path) -> bool:
    """True when ``path`` looks like an export folder (it has a ``config.json`` and
    ``model.safetensors``); :func:`check_export` then says whether it is complete."""
    return (path / "config.json").is_file() and (path / "model.safetensors").is_file()


def check_export(path: Path) -> None:
    """Refuse an export folder that is incomplete or mixed, in one line.

    :func:`export_run` writes all of :data:`HUB_FILES` into a hidden folder inside ``out`` and
    renames them into place, so a complete export has them all, and ``config.json`` records the
    sha256 of ``model.safetensors`` (exports written before that record are accepted without).

    Raises:
        RunFolderError: a file of :data:`HUB_FILES` is missing, or the weights do not match the
            digest in ``config.json``.
    """
    from ..io import _sha256
    from ..parsing import read_json

    missing = [name for name in HUB_FILES if not (path / name).is_file()]
    if missing:
        raise RunFolderError(
            f"{path} is an incomplete export ({', '.join(missing)} missing): run dimgen export "
            "again into an empty --out"
        )
    config = read_json(path / "config.json")
    if not isinstance(config, dict):
        raise RunFolderError(f"{path}/config.json is corrupt (not a JSON object); export again")
    digest = config.get("model_sha256")
    if digest is not None and digest != _sha256(path / "model.safetensors"):
        raise RunFolderError(
            f"{path}/model.safetensors does not match the digest in config.json: the export was "
            "changed or mixed from two exports; export again"
        )


def export_run(run: str | Path, out: str | Path) -> Path:
    """Write the encoder of run folder ``run`` as a Hugging Face-style folder ``out``.

    The folder is written whole: into a hidden folder inside ``out``, whose files are renamed into
    place once every one is written (:func:`dimgen.io.fill_folder`), holding the folder lock training takes (a second export into the same
    ``out`` is refused), so a failed export (full disk, ...) leaves no folder a reader accepts and
    the same command can simply be rerun (``dimgen export`` also loads the weights first, so bad
    ones are refused before anything is written; readers refuse them in any case). A smoke run
    (``DIMGEN_SMOKE=1``) keeps its marker: ``"smoke"`` in ``config.json`` and a warning atop the
    card.

    Returns ``out``. Raises :class:`RunFolderError` for an incomplete or foreign run folder, an
    ``out`` that exists and is not empty or is in use; :class:`WriteError` if the
    folder cannot be written (nothing is left behind).
    """
    from ..io import _sha256
    from ..training.run_folder import check_new_folder

    run_dir, rec = read_run(run, "encoder")
    check_new_folder(Path(out))  # before the verdicts' tests run
    config = export_config(run_dir, rec)
    config["model_sha256"] = _sha256(run_dir / "encoder.safetensors")

    def fill(tmp: Path) -> None:
        shutil.copyfile(run_dir / "encoder.safetensors", tmp / "model.safetensors")
        write_json(tmp / "config.json", config)
        write_text(tmp / "README.md", model_card(config))

    return write_folder(out, fill)


def export_config(run_dir: Path, rec: dict[str, Any]) -> dict[str, Any]:
    """The ``config.json`` of an encoder export (without the weights' digest): data, prior,
    dimension, KL certificate, spec, the prior-match verdicts and the smoke marker if any."""
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
    tokens = metrics.get("tokens")
    if spec.get("prior") == "uniform" and isinstance(tokens, dict):
        # the discrete-token vocabulary, and how evenly the held-out codes used it
        keys = ("grid_size", "axes", "bits_per_image", "perplexity", "perplexity_mean",
                "entropy_ratio", "grid_fraction")  # fmt: skip
        config["vocabulary"] = {k: tokens[k] for k in keys if k in tokens}
    smoke = rec.get("smoke") or metrics.get("smoke")
    if smoke:
        config["smoke"] = smoke
    return config


def write_folder(out: str | Path, fill: Any) -> Path:
    """Write folder ``out`` whole: ``fill(tmp)`` writes every file into a hidden folder inside
    ``out``, renamed into place once complete (:func:`dimgen.io.fill_folder`), holding ``out``'s folder lock (a second writer
    is refused). ``out`` must be absent or empty (or a run stopped before its first checkpoint).

    Raises:
        RunFolderError: ``out`` exists and is not empty, or is in use.
        WriteError: the folder cannot be written (nothing is left behind).
    """
    from ..io import fill_folder, folder_lock
    from ..training.run_folder import check_new_folder

    out = Path(out)
    check_new_folder(out)
    with folder_lock(out):
        check_new_folder(out)  # again, holding the lock: another export may have finished
        fill_folder(out, fill, "the export")
    return out


def read_json_or_empty(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _config_data(run_dir: Path) -> str:
    from ..parsing import parse_yaml

    try:
        cfg = parse_yaml((run_dir / "config.yaml").read_text(), "config.yaml")
    except (OSError, DimgenError):
        return "unknown"
    return str(cfg.get("data", "unknown")) if isinstance(cfg, dict) else "unknown"


def _verdicts(run_dir: Path, prior: str) -> dict[str, Any]:
    """The prior-match tests of :func:`dimgen.evaluate` on the run's held-out codes."""
    import numpy as np

    from ..diagnostics import evaluate

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


CARD_TEMPLATE = """---
{{ card_data }}
---

{{ body }}
"""
"""The model card template (``huggingface_hub.ModelCard.from_template``): the YAML metadata
(library, tags, ``model-index`` results) and the text :func:`card_body` writes."""

CARD_TAGS = ("dimgen", "deep-infomax", "representation-learning")


def card_results(config: dict[str, Any]) -> list[tuple[str, str, float]]:
    """``(metric type, name, value)`` of the certificate and the prior-match verdict: the
    card's ``model-index`` results (values the run did not record are left out)."""
    cert, v = config.get("certificate") or {}, config.get("verdicts") or {}
    names = {
        "capacity_nats": "channel capacity (nats)",
        "mi_lower_bound_nats": "held-out MI lower bound (nats)",
        "kl_upper_bound_nats": "KL(noisy codes || noisy prior) upper bound (nats)",
        "knn_acc": "5-NN label accuracy of held-out codes",
    }
    out = [(k, name, float(cert[k])) for k, name in names.items()
           if isinstance(cert.get(k), (int, float)) and not isinstance(cert.get(k), bool)]  # fmt: skip
    if v.get("evaluated"):
        out.append(("prior_match_p", "prior-match tests: combined p (dimgen evaluate)", v["p"]))
    return out


def model_card(config: dict[str, Any]) -> str:
    """The ``README.md`` of an export: metadata (``library_name``, tags, ``model-index``-style
    results) from :data:`CARD_TEMPLATE` via ``huggingface_hub.ModelCard`` when installed (a
    plain header otherwise), then data, prior, KL certificate, test verdicts, usage."""
    smoke = config.get("smoke")
    tags = [*CARD_TAGS, *(["smoke-test"] if smoke else [])]
    v = config.get("verdicts") or {}
    if v.get("evaluated"):
        tags.append("prior-match-pass" if v.get("passes") else "prior-match-reject")
    try:
        from huggingface_hub import EvalResult, ModelCard, ModelCardData
    except ImportError:
        header = f"---\nlibrary_name: dimgen\ntags: [{', '.join(tags)}]\n---\n\n"
        return header + card_body(config)
    data = str(config.get("data", "unknown"))
    results = [
        EvalResult(task_type="feature-extraction", dataset_type=data, dataset_name=data,
                   metric_type=k, metric_name=name, metric_value=value)
        for k, name, value in card_results(config)
    ]  # fmt: skip
    card_data = ModelCardData(
        library_name="dimgen",
        tags=tags,
        model_name=f"dimgen encoder ({data}, {config.get('prior')} prior, d = {config.get('dim')})",
        eval_results=results or None,
    )
    card = ModelCard.from_template(card_data, template_str=CARD_TEMPLATE, body=card_body(config))
    return str(card)


def card_body(config: dict[str, Any]) -> str:
    """The text of the model card under its metadata."""
    cert, v = config["certificate"], config["verdicts"]
    smoke = config.get("smoke")
    warn = []
    if smoke:
        warn = [
            f"> **Smoke run, not a trained model** ({smoke.get('env', 'DIMGEN_SMOKE=1')}: "
            f"{smoke.get('trained', '?')} of {smoke.get('configured', '?')} "
            f"{smoke.get('unit', 'epoch')}s). Every number below is a walk-through, not a result.",
            "",
        ]
    lines = [
        *warn, f"# dimgen encoder: {config['data']}, {config['prior']} prior, d = {config['dim']}",
        "", "A noise-injected Deep InfoMax encoder whose codes follow the prior "
        f"({config['prior']}), trained on `{config['data']}`.", "", "## KL certificate", "",
    ]  # fmt: skip
    if "kl_upper_bound_nats" in cert:
        lines += [
            f"- channel capacity: {_num(cert.get('capacity_nats'), 4)} nats",
            f"- MI lower bound (held-out): {_num(cert.get('mi_lower_bound_nats'), 4)} "
            f"± {_num(cert.get('mi_lower_bound_stderr'), 4)} nats",
            f"- KL(noisy codes ‖ noisy prior) <= {_num(cert['kl_upper_bound_nats'], 4)} nats "
            "(capacity - MI; up to the MI estimate's error)",
        ]
    if "knn_acc" in cert:
        lines.append(f"- 5-NN label accuracy of held-out codes: {_num(cert['knn_acc'], 3)}")
    vocab = config.get("vocabulary")
    if isinstance(vocab, dict) and "grid_size" in vocab:
        lines += ["", "## Discrete tokens", "",
                  f"- vocabulary: K = {vocab['grid_size']} grid points per axis x d = "
                  f"{vocab.get('axes')} axes = {_num(vocab.get('bits_per_image'), 2)} bits per image "
                  "(`tok.tokens(images)`: (n, d) int64 ids in [0, K))",
                  f"- held-out usage: mean per-axis perplexity {_num(vocab.get('perplexity_mean'), 2)}"
                  f" of {vocab['grid_size']}"]  # fmt: skip
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


def _num(value: Any, digits: int) -> str:
    """A metric for the card; ``n/a`` where the run recorded none (NaN is stored as null)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.{digits}f}"
    return "n/a"


def resolve_pretrained(
    name: str | Path, allow_patterns: list[str] | None = None, **hub: Any
) -> Path:
    """A local folder as is; otherwise a Hub repository id, downloaded with huggingface_hub.

    Only a name that can only be a ``user/repo`` id goes to the Hub
    (:func:`dimgen.folders.looks_like_hub_id`); a path-like name that does not exist (e.g.
    ``runs/digitz`` beside a ``runs/`` folder) is reported as "no such run folder".
    Only ``allow_patterns`` (default: :data:`HUB_FILES`) are downloaded; ``hub`` holds
    ``snapshot_download``'s ``revision``, ``cache_dir``, ``token``, ``local_files_only`` and
    ``force_download`` (left out when unset, so the defaults are huggingface_hub's).

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
        extra = {k: v for k, v in hub.items() if v not in (None, False)}
        patterns = list(HUB_FILES) if allow_patterns is None else allow_patterns
        return Path(snapshot_download(text, allow_patterns=patterns, **extra))
    except Exception as exc:  # network, unknown repo, bad id: one line
        msg = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise RunFolderError(
            f"{text}: no such run folder here, and could not be loaded from the Hub ({msg})"
        ) from None
