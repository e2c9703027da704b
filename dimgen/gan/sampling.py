"""The library side of ``dimgen sample`` (any generator): codes from the prior, a flow prior,
images or a file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..config import check_temperature
from ..data.sources import load_data, parse_source
from ..data.stream import StreamedImages, is_streamed, load_stream, take
from ..errors import ConfigError, DataError
from ..generators.protocol import Generator
from ..io import artefact_digest
from .evaluation import set_guidance, set_truncation

__all__ = ["Samples", "load_images", "prior_codes_from_flow", "read_codes", "sample"]


def prior_codes_from_flow(
    path: str | Path,
    n: int,
    seed: int | None,
    dim: int,
    prior_name: str | None = None,
    encoder_sha256: str | None = None,
    temperature: float | None = 1.0,
) -> Tensor:
    """``n`` codes (n, d) from a flow run (``dimgen.flows.load_prior``), in the encoder's space:
    target draws mapped back by T^-1 for a new prior (``dimgen flow --to``), or T(z), z ~ the
    encoder's prior, for a code model fitted to the encoder's own codes (``--to-codes``; clamped
    to [0, 1]^d for uniform codes, whose support the flow's tails can leave).

    ``encoder_sha256``: the generator's encoder weights digest; a code model fitted to another
    encoder's codes is refused. ``temperature`` t: a code model pushes t * N(0, I) draws
    (:meth:`dimgen.flows.Prior.sample`).

    Raises:
        DataError: n < 1, or codes of the wrong shape. ConfigError: a flow of another prior, a
        code model of another encoder, or a temperature other than 1 for a new prior (``--to``,
        ``--to-samples``) or a uniform encoder.
    """
    if n < 1:
        raise DataError(f"n must be >= 1, got {n}")
    try:
        from ..flows import load_prior  # type: ignore[attr-defined]
    except ImportError as exc:
        raise ConfigError(
            f"--prior needs dimgen.flows (flow-defined priors), which is not available here ({exc})"
        ) from None
    prior = load_prior(path)
    source = getattr(prior, "source_prior", None)
    if prior_name is not None and source is not None and source != prior_name:
        raise ConfigError(
            f"the flow prior {path} maps back to {source} codes; this GAN was trained on "
            f"{prior_name} codes"
        )
    if getattr(prior, "code_model", False):  # T#prior models the codes: its draws are codes
        fitted_on = getattr(prior, "spec", {}).get("source_encoder_sha256")
        if encoder_sha256 and fitted_on and fitted_on != encoder_sha256:
            raise ConfigError(
                f"the code model {path} was fitted to the codes of another encoder than this "
                "generator's; fit one to its own encoder run (dimgen flow ENCODER_RUN --to-codes)"
            )
        drawn = torch.as_tensor(
            prior.sample(n, seed=seed, from_model=True, temperature=temperature)
        )
        if source == "uniform":  # a flow's tails can leave [0, 1]^d, where the codes live
            drawn = drawn.clamp(0.0, 1.0)
    else:  # a new prior: its draws mapped back to the encoder's space
        if check_temperature(temperature) != 1.0:  # T^-1(T(t z)) = t z: the new law unused
            if getattr(prior, "spec", {}).get("method") == "identity":  # an encoder run
                raise ConfigError(
                    f"{path} is an encoder run, not a flow run: to sample this GAN's own "
                    "prior at a temperature, leave --prior out"
                )
            raise ConfigError(
                f"{path} is a new prior (dimgen flow --to); a temperature applies to the "
                "encoder's own prior or to a code model (dimgen flow --to-codes)"
            )
        drawn = prior.to_source(prior.sample(n, seed=seed))
    codes = torch.as_tensor(drawn).detach().float().cpu()
    if codes.ndim != 2 or codes.shape[1] != dim:
        raise DataError(
            f"the flow prior {path} gives codes of shape {tuple(codes.shape)}; this GAN needs (n, {dim})"
        )
    return codes


def load_images(
    source: str, data_root: str | None = None, test_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray | StreamedImages, np.ndarray | None]:
    """Images and labels of a data source for conditional sampling.

    ``name:split`` takes that split; a bare name takes the held-out ``test`` split; ``npz:PATH``
    takes every row, as does ``folder:PATH`` (your own images; with ``stream=1`` a
    :class:`~dimgen.data.stream.StreamedImages` view: only the rows used are decoded).
    """
    name, which = parse_source(source)
    if is_streamed(name):
        st = load_stream(name, test_fraction, seed)
        y = None
        if st.y_train is not None and st.y_test is not None:
            y = np.concatenate([st.y_train, st.y_test])
        return st.x_train.joined(st.x_test), y
    ds = load_data(name, data_root, test_fraction, seed)
    if name.startswith(("npz:", "folder:")):
        return ds.split("all")
    return ds.split(which or "test")


def read_codes(path: str | Path) -> np.ndarray:
    """The ``codes`` array (n, d) of an ``.npz`` (e.g. written by ``dimgen encode --encoder``)."""
    from ..data.npz import read_codes as read_codes_file

    return read_codes_file(path)[0].astype(np.float32)


@dataclass
class Samples:
    """Generated images (n, C, H, W) with their codes; ``real`` / ``labels`` when from images."""

    images: Tensor
    codes: Tensor
    mode: str
    real: Tensor | None = None
    labels: np.ndarray | None = None


def sample(
    run: str | Path | Generator,
    *,
    unconditional: bool = False,
    from_images: str | None = None,
    codes: Any = None,
    prior: str | Path | None = None,
    n: int | None = None,
    seed: int = 0,
    data_root: str | None = None,
    ema: bool = True,
    guidance_scale: float | None = None,
    truncation: float | None = None,
    temperature: float | None = None,
    progress: bool = True,
) -> Samples:
    """The library side of ``dimgen sample`` on any generator run (GAN or diffusion): exactly
    one of the three modes. ``guidance_scale`` overrides a diffusion run's own (GAN: an error);
    ``truncation`` t draws a GAN's noise from N(0, I) truncated to [-t, t] (BigGAN's truncation
    trick; diffusion: an error), codes untouched. ``temperature`` T (unconditional only) draws
    the codes from T * N(0, I), or pushes T * N(0, I) through a code model at ``prior`` (Glow's
    temperature, Kingma & Dhariwal 2018, section 4); None is T = 1.
    ``progress`` (default True, as the CLI): a bar over a diffusion run's denoising steps on
    stderr; ``progress=False``: silent.

    - ``unconditional``: ``n`` (default 64) codes from the encoder's prior, or from the
      flow-defined prior at ``prior``;
    - ``from_images``: a data source (``digits``, ``mnist:test``, ``npz:PATH``; a bare name means
      its held-out split), ``n`` (default 32) images picked with ``seed``, one sample each;
    - ``codes``: an (n, d) array or the path of an ``.npz`` holding ``codes`` (first ``n`` rows).
    """
    given = [m for m, on in (("unconditional", unconditional), ("from_images", from_images is not None),
                             ("codes", codes is not None)) if on]  # fmt: skip
    if len(given) != 1:
        raise ConfigError("give exactly one of unconditional, from_images, codes")
    if prior is not None and not unconditional:
        raise ConfigError("a flow prior only applies to unconditional sampling")
    if temperature is not None and not unconditional:
        raise ConfigError("a temperature only applies to unconditional sampling (codes drawn)")
    temp = check_temperature(temperature)
    if n is not None and n < 1:
        raise DataError(f"n must be >= 1, got {n}")
    if isinstance(run, (str, Path)):
        from ..generators.runs import load_generator

        gan = load_generator(run, ema=ema)
    else:
        gan = run
    set_guidance(gan, guidance_scale)
    if hasattr(gan, "progress"):  # a diffusion model: minutes of denoising on a CPU
        gan.progress = progress
    kept = getattr(gan, "truncation", None)
    set_truncation(gan, truncation)
    try:  # a GAN given as an object gets its own truncation back
        return _draw(gan, unconditional, from_images, codes, prior, n, seed, data_root, temp)
    finally:
        if truncation is not None:
            gan.truncation = kept


def _draw(
    gan: Generator,
    unconditional: bool,
    from_images: str | None,
    codes: Any,
    prior: str | Path | None,
    n: int | None,
    seed: int,
    data_root: str | None,
    temperature: float = 1.0,
) -> Samples:
    """The samples of :func:`sample`'s one mode, its arguments already checked."""
    if unconditional:
        count = 64 if n is None else n
        if prior is None:
            images, c = gan.sample_unconditional(count, seed=seed, temperature=temperature)
        else:
            folder, record = getattr(gan, "path", None), getattr(gan, "record", None)
            digest = (artefact_digest(folder, "encoder.safetensors", record)
                      if folder is not None else None)  # fmt: skip
            c = prior_codes_from_flow(prior, count, seed, gan.code_dim, gan.tokenizer.prior_name,
                                      digest, temperature)  # fmt: skip
            images = gan.generate(c, seed=seed)
        return Samples(images, c, "unconditional")
    if from_images is not None:
        frac, split_seed = gan.split
        root = data_root or (gan.config.data_root if gan.config else None)
        x, y = load_images(from_images, root, frac, split_seed)
        count = min(32 if n is None else n, len(x))
        sel = np.sort(np.random.default_rng(seed).choice(len(x), count, replace=False))
        real = torch.from_numpy(np.ascontiguousarray(take(x, sel)))
        images, c = gan.sample_conditional(real, seed=seed)
        return Samples(images, c, "conditional", real, None if y is None else y[sel])
    arr = read_codes(codes) if isinstance(codes, (str, Path)) else codes
    c = gan.check_codes(arr)
    if n is not None:
        c = c[:n]
    return Samples(gan.generate(c, seed=seed), c, "codes")
