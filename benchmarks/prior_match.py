"""Prior match of real codes as a measured frontier (issue 28): one table, one run.

Trains one encoder per setting (a preset plus ``KEY=VALUE`` overrides) exactly as
``dimgen encode`` does, then reads each run's held-out codes the ways a user would:

- the calibrated prior-match test (``dimgen.diagnostics.prior_tests``: KS per coordinate and
  projection, mean and covariance tests, Simes-combined): median p over 20 random subsamples of
  2,000 (``p_2000``), the share of them with p >= 0.01 (``pass_2000``), p on every held-out
  code (``p_all``), and the median p of each part of the test at 2,000 (``p_ks``, ``p_proj``,
  ``p_mean``, ``p_cov``: which part fails);
- the sliced Epps-Pulley distance to N(0, I) relative to a matched N(0, I) sample
  (``dimgen.infomax.sigreg.prior_match_ratio``: ~1 is as Gaussian as a Gaussian sample);
- the same two for the *noisy* codes (f(X) + Z) / sqrt(1 + sigma^2), the variable the
  certificate bounds (Gaussian prior only);
- the certified MI lower bound and KL bound (nats), held-out 5-NN, and CPU minutes.

    python benchmarks/prior_match.py --config configs/mnist-cpu.yaml \\
        --setting "" --setting "sigma=0.3" --setting "dim=8" --setting "sigreg=1"

Each ``--setting`` is a comma-separated list of overrides ("" is the preset itself);
``--base`` overrides apply to all (e.g. ``--base max_train=15000,epochs=4`` for a quick frontier).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch


def _overrides(text: str) -> dict[str, Any]:
    """``"k1=v1,k2=v2"`` -> ``{k1: v1, k2: v2}`` (values read as YAML, as ``--set``).

    Raises:
        ConfigError: an item without ``=`` (it used to train the preset silently).
    """
    from dimgen.errors import ConfigError
    from dimgen.parsing import parse_yaml

    out: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            raise ConfigError(f"a setting expects KEY=VALUE items, got {item!r}")
        out[key.strip()] = parse_yaml(value, key)
    return out


def _check_out(out: Path) -> None:
    """Refuse an ``--out`` that cannot be written before any training (it used to fail with a
    traceback after all of it): its folder is created and a temporary file tried there.

    Raises:
        WriteError: naming ``out`` and why.
    """
    import tempfile

    from dimgen.errors import WriteError

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"):
            pass
    except OSError as exc:
        raise WriteError(f"cannot write --out {out}: {exc.strerror or exc}") from None


SUBSAMPLES = 20
"""Random subsamples of 2,000 held-out codes per reading: one subsample's p-value is a lottery
ticket (on the MNIST preset one read 0.028 while the median of 20 was 6.5e-4)."""


PARTS = ("ks", "proj", "mean", "cov")
"""The calibrated test's parts (KS per coordinate, KS on projections, mean, covariance)."""


def _p_2000(codes: np.ndarray, prior: str, parts: dict[str, float] | None = None
            ) -> tuple[float, float]:  # fmt: skip
    """Median calibrated p over :data:`SUBSAMPLES` random subsamples of 2,000, and the share of
    subsamples with p >= 0.01; ``parts`` (if given) receives the median p of each part."""
    from dimgen.diagnostics import prior_tests

    n = min(2000, len(codes))
    res = [prior_tests(codes[np.random.default_rng(s).permutation(len(codes))[:n]], prior)
           for s in range(SUBSAMPLES)]  # fmt: skip
    ps = np.array([r.p for r in res])
    if parts is not None:
        for name, attr in zip(PARTS, ("ks_p", "projection_ks_p", "mean_p", "cov_p"), strict=True):
            parts[f"p_{name}"] = float(np.median([getattr(r, attr) for r in res]))
    return float(np.median(ps)), float((ps >= 0.01).mean())


def read_codes(run: Any, seed: int = 0) -> dict[str, float]:
    """The prior-match readings of a trained run's held-out codes (see the module docstring)."""
    from dimgen.diagnostics import prior_tests
    from dimgen.infomax.sigreg import prior_match_ratio

    m, cfg = run.metrics, run.config
    test = run.codes[run.split == "test"].astype(np.float64)
    row = {
        "mi": m["mi_lower_bound_nats"],
        "capacity": m["capacity_nats"],
        "kl_bound": m["kl_upper_bound_nats"],
        "knn5": m.get("knn_acc", float("nan")),
        "p_all": prior_tests(test, cfg.prior).p,
        "ratio": prior_match_ratio(torch.from_numpy(test), seed),
    }
    parts: dict[str, float] = {}
    row["p_2000"], row["pass_2000"] = _p_2000(test, cfg.prior, parts)
    row.update(parts)
    if cfg.prior == "gaussian":
        rng = np.random.default_rng(seed)
        noisy = (test + cfg.sigma * rng.standard_normal(test.shape)) / np.sqrt(1 + cfg.sigma**2)
        row["noisy_p_2000"], row["noisy_pass_2000"] = _p_2000(noisy, "gaussian")
        row["noisy_p_all"] = prior_tests(noisy, "gaussian").p
        row["noisy_ratio"] = prior_match_ratio(torch.from_numpy(noisy), seed)
    return row


@click.command()
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False),
              default=None, help="Preset YAML (default: the digits defaults).")  # fmt: skip
@click.option("--base", default="", help="Overrides for every setting, e.g. max_train=15000.")
@click.option("--setting", "settings", multiple=True, default=("",), show_default=True,
              help="One row: comma-separated KEY=VALUE overrides (repeatable).")  # fmt: skip
@click.option("--out", type=click.Path(dir_okay=False), help="Also write the rows as JSON.")
def main(config_path: str | None, base: str, settings: tuple[str, ...], out: str | None) -> None:
    from dimgen.config import EncoderConfig, load_config, replace, validate
    from dimgen.errors import DimgenError
    from dimgen.infomax.trainer import train_encoder

    try:  # every setting checked before any training: one line and exit 2 on a bad one
        preset = load_config(config_path) if config_path else EncoderConfig()
        cfgs = [
            validate(replace(preset, **{**_overrides(base), **_overrides(s)})) for s in settings
        ]
        if out:
            _check_out(Path(out))
    except DimgenError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None
    rows = []
    for setting, cfg in zip(settings, cfgs, strict=True):
        c0 = time.process_time()
        run = train_encoder(cfg, progress=False)
        row = {"setting": setting or "(preset)", "cpu_min": (time.process_time() - c0) / 60}
        row.update(read_codes(run, cfg.seed))
        rows.append(row)
        print(json.dumps(row), flush=True)
    cols = ["setting", "cpu_min", "mi", "kl_bound", "knn5", "p_2000", "pass_2000", "p_all",
            "ratio", *(f"p_{k}" for k in PARTS), "noisy_p_2000", "noisy_pass_2000",
            "noisy_p_all", "noisy_ratio"]  # fmt: skip
    print("\n| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        cells = [r["setting"], *(_fmt(r.get(c)) for c in cols[1:])]
        print("| " + " | ".join(cells) + " |")
    if out:
        from dimgen.io import write_text

        write_text(out, json.dumps(rows, indent=1))  # whole or not at all


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and (v != 0 and abs(v) < 1e-3):
        return f"{v:.1e}"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


if __name__ == "__main__":
    try:  # click's usage errors (a missing value, a missing file) as one line too
        main(standalone_mode=False)
    except click.UsageError as exc:
        click.echo(f"error: {' '.join(exc.format_message().split())} "
                   "(see 'prior_match.py --help')", err=True)  # fmt: skip
        raise SystemExit(2) from None
