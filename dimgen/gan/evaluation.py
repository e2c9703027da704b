"""Conditional vs unconditional generation, side by side, on held-out images."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.sources import Dataset, load_data
from ..data.stream import StreamedData, is_streamed, load_stream, memory_source, take
from ..errors import ConfigError, DataError
from ..generators.protocol import Generator
from ..training.devices import resolve_device
from ..training.phases import phase
from .config import MIN_EVAL_SAMPLES
from .model import check_truncation, child_seeds

__all__ = ["evaluate_gan", "evaluate_run", "set_guidance", "set_truncation"]


def evaluate_gan(
    gan: Generator,
    ds: Dataset | StreamedData,
    *,
    classifier_path: str | Path | None,
    n: int = 2000,
    seed: int = 0,
    data_name: str = "data",
    inception_weights: str | Path | None = None,
    device: str | torch.device = "cpu",
    show: bool = False,
) -> dict[str, Any]:
    """Conditional vs unconditional generation, side by side, on held-out images of ``ds``.

    ``gan`` is any :class:`~dimgen.generators.Generator` (a GAN, a diffusion model, ...).

    Conditional: G(z, code(x)) for up to ``n`` held-out x; unconditional: as many G(z, c) with
    c from the prior. With a classifier and labels: ``conditional_consistency`` (% of G(z,
    code(x)) classified as x's label), class histograms against the data's (``class_tv_*``,
    ``class_coverage_*``). FID / KID against the held-out images in the classifier's feature
    space (``fid_dimgen_classifier_*``), with a real-vs-real reference (training images); with
    local Inception weights also ``fid_*`` / ``kid_*``. ``show``: announce the two samplings
    (the slow part for a diffusion model) and their times on stderr. Of a streamed source only
    the (at most ``n``) images used are decoded.
    """
    from ..fidelity.metrics import (
        class_histogram_tv,
        conditional_consistency,
        extractor_name,
        fidelity_metrics,
        load_classifier,
        predict,
    )

    if n < MIN_EVAL_SAMPLES:
        raise DataError(
            f"n must be >= {MIN_EVAL_SAMPLES} (FID / KID need that many images), got {n}"
        )
    y_ref = ds.y_test
    rng = np.random.default_rng(seed)
    if len(ds.x_test) > n:
        sel = np.sort(rng.choice(len(ds.x_test), n, replace=False))
        x_ref, y_ref = take(ds.x_test, sel), None if y_ref is None else y_ref[sel]
    else:
        x_ref = take(ds.x_test, slice(None))
    m = len(x_ref)
    s_cond, s_uncond = child_seeds(seed, 2)
    with phase("evaluate", f"{m} conditional samples", show, 1, 2):
        imgs_c, _ = gan.sample_conditional(x_ref, seed=s_cond)
    with phase("evaluate", f"{m} unconditional samples", show, 2, 2):
        imgs_u, _ = gan.sample_unconditional(m, seed=s_uncond)
    out: dict[str, Any] = {"n_eval": m, "eval_seed": seed}
    if classifier_path is not None and y_ref is not None:
        clf, _ = load_classifier(classifier_path, device)
        k = clf.n_classes
        out["classifier_accuracy_real"] = conditional_consistency(predict(clf, x_ref), y_ref)
        out["conditional_consistency"] = conditional_consistency(predict(clf, imgs_c), y_ref)
        from ..diagnostics.probes import chance_accuracy

        y_chance = ds.y_train if ds.y_train is not None and len(ds.y_train) else y_ref
        out["chance_consistency"] = 100.0 * chance_accuracy(y_chance, y_ref)
        out["n_classes"] = k
        for mode, imgs in (("conditional", imgs_c), ("unconditional", imgs_u)):
            h = class_histogram_tv(predict(clf, imgs), y_ref, k)
            out[f"class_tv_{mode}"] = h["tv"]
            out[f"class_coverage_{mode}"] = h["coverage"]
            out[f"class_histogram_{mode}"] = h["histogram"]
        out["class_histogram_data"] = (np.bincount(y_ref, minlength=k)[:k] / len(y_ref)).tolist()
    if classifier_path is not None or inception_weights is not None:
        name = extractor_name(memory_source(data_name))  # streamed or not: one name
        x_real_ref = take(
            ds.x_train,
            np.sort(rng.choice(len(ds.x_train), min(m, len(ds.x_train)), replace=False)),
        )
        for mode, imgs in (
            ("conditional", imgs_c),
            ("unconditional", imgs_u),
            ("real", x_real_ref),
        ):
            fm = fidelity_metrics(x_ref, imgs, classifier_path, name,
                                  inception_weights=inception_weights, device=device, seed=seed)  # fmt: skip
            out.update({f"{k}_{mode}": v for k, v in fm.items()})
        if classifier_path is not None:
            out["feature_extractor"] = name
    return out


def set_guidance(gen: Generator, guidance_scale: float | None) -> None:
    """Set a diffusion generator's classifier-free guidance scale (None: keep the run's).

    Raises :class:`~dimgen.errors.ConfigError` for a generator without guidance (a GAN) or a
    negative / non-finite scale.
    """
    if guidance_scale is None:
        return
    if not hasattr(gen, "guidance_scale"):
        raise ConfigError("a guidance scale only applies to diffusion runs")
    if not (math.isfinite(guidance_scale) and guidance_scale >= 0):
        raise ConfigError(f"the guidance scale must be >= 0, got {guidance_scale}")
    gen.guidance_scale = float(guidance_scale)


def set_truncation(gen: Generator, truncation: float | None) -> None:
    """Set a GAN's truncation of its noise (BigGAN's truncation trick; None: keep it off).

    Raises :class:`~dimgen.errors.ConfigError` for a generator without noise truncation (a
    diffusion run) or a truncation that is not finite and > 0.
    """
    if truncation is None:
        return
    if not hasattr(gen, "truncation"):
        raise ConfigError("a truncation only applies to GAN runs")
    gen.truncation = check_truncation(truncation)


def evaluate_run(
    run: str | Path,
    *,
    n: int | None = None,
    seed: int = 0,
    data_root: str | None = None,
    device: str = "auto",
    inception_weights: str | Path | None = None,
    ema: bool = True,
    guidance_scale: float | None = None,
    truncation: float | None = None,
    show: bool = False,
) -> dict[str, Any]:
    """The library side of ``dimgen evaluate-gan``: :func:`evaluate_gan` on a generator run
    folder (GAN or diffusion; ``guidance_scale`` overrides a diffusion run's, ``truncation``
    truncates a GAN's noise, :func:`set_truncation`); ``show``: its phases on stderr."""
    from ..generators.runs import load_generator

    dev = resolve_device(device)
    gan = load_generator(run, device=dev, ema=ema)
    set_guidance(gan, guidance_scale)
    set_truncation(gan, truncation)
    cfg = gan.config
    frac, split_seed = gan.split
    source = str(gan.record.get("data") or cfg.data)
    if is_streamed(source):  # only the images evaluated are decoded
        ds: Dataset | StreamedData = load_stream(source, frac, split_seed)
    else:
        ds = load_data(source, data_root or cfg.data_root, frac, split_seed)
    clf = gan.path / "classifier.safetensors" if gan.path is not None else None
    metrics = evaluate_gan(gan, ds, classifier_path=clf if clf is not None and clf.is_file() else None,
                           n=n if n is not None else (cfg.eval_samples or 2000), seed=seed,
                           data_name=source, inception_weights=inception_weights, device=dev,
                           show=show)  # fmt: skip
    if truncation is not None:  # the setting the numbers were measured at
        metrics["truncation"] = gan.truncation
    return metrics
