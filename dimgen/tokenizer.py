"""`Tokenizer`: a trained encoder as a reusable map from inputs to prior-distributed codes.

Example:
    >>> tok = Tokenizer.from_pretrained("runs/digits")     # doctest: +SKIP
    >>> codes = tok.encode(images)                         # (n, d) under tok.prior
    >>> z = tok.sample_prior(64, seed=0)                   # codes for unconditional generation
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.distributions import Distribution

from .channel import NoiseChannel, make_channel
from .errors import DataError, RunFolderError
from .io import load_weights, read_run
from .nets import build_encoder

__all__ = ["Tokenizer"]


class Tokenizer:
    """Frozen encoder + normalisation (no channel noise) loaded from an encoder run folder."""

    def __init__(
        self,
        encoder: torch.nn.Module,
        channel: NoiseChannel,
        spec: dict[str, Any],
        path: Path | None = None,
    ) -> None:
        self.encoder = encoder.eval()
        self.channel = channel.eval()
        self.spec = spec
        self.path = path
        self.in_shape = tuple(spec["in_shape"])

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu") -> Tokenizer:
        """Rebuild the encoder of a complete ``dimgen encode`` run folder."""
        run_dir, _ = read_run(path, "encoder")
        tensors, meta = load_weights(run_dir / "encoder.safetensors")
        spec = meta.get("spec")
        if meta.get("kind") != "encoder" or not isinstance(spec, dict):
            raise RunFolderError(f"{run_dir / 'encoder.safetensors'} is not a dimgen encoder")
        _check_spec(spec, run_dir)
        try:
            encoder = build_encoder(
                spec["encoder"], spec["in_shape"], spec["dim"], spec["encoder_hidden"]
            )
            channel = make_channel(spec["prior"], spec["dim"], spec["sigma"], spec["eps"])
            encoder.load_state_dict(
                {k[8:]: v for k, v in tensors.items() if k.startswith("encoder.")}
            )
            channel.load_state_dict(
                {k[8:]: v for k, v in tensors.items() if k.startswith("channel.")}
            )
        except (KeyError, RuntimeError, TypeError, ValueError) as exc:
            raise RunFolderError(
                f"{run_dir}: encoder weights do not match their metadata ({str(exc)[:120]})"
            ) from None
        return cls(encoder.to(device), channel.to(device), spec, run_dir)

    @property
    def dim(self) -> int:
        """Code dimension d."""
        return int(self.spec["dim"])

    @property
    def prior(self) -> Distribution:
        """The codes' prior as a ``torch.distributions`` object (on the CPU)."""
        return make_channel(
            self.spec["prior"], self.dim, self.spec["sigma"], self.spec["eps"]
        ).prior

    @property
    def prior_name(self) -> str:
        return str(self.spec["prior"])

    @property
    def device(self) -> torch.device:
        return self.channel.norm.running_mean.device

    def _prepare(self, x: Any) -> Tensor:
        arr = x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
        if arr.dtype == np.uint8:
            arr = arr.astype(np.float32) / 255.0
        elif not np.issubdtype(arr.dtype, np.number):
            raise DataError(f"inputs must be numeric, got dtype {arr.dtype}")
        arr = arr.astype(np.float32, copy=False)
        want = self.in_shape
        if arr.shape == want:  # a single sample
            arr = arr[None]
        if arr.shape[1:] != want:
            if len(want) == 3 and want[0] == 1 and arr.shape[1:] == want[1:]:
                arr = arr[:, None]  # (N, H, W) grey images
            elif len(want) == 3 and arr.ndim == 4 and arr.shape[1:] == (*want[1:], want[0]):
                arr = arr.transpose(0, 3, 1, 2)  # channels-last
            elif arr.ndim == 2 and arr.shape[1] == int(np.prod(want)):
                arr = arr.reshape(len(arr), *want)  # flattened
            else:
                raise DataError(
                    f"inputs have shape {tuple(arr.shape[1:])} per sample; this encoder expects {want}"
                )
        if not np.isfinite(arr).all():
            bad = np.flatnonzero(~np.isfinite(arr.reshape(len(arr), -1)).all(1))
            raise DataError(f"inputs contain NaN or Inf (rows {', '.join(map(str, bad[:10]))})")
        return torch.from_numpy(np.ascontiguousarray(arr))

    @torch.no_grad()
    def encode(self, x: Any, batch_size: int = 2048) -> Tensor:
        """Inputs (n, *in_shape), float in [0, 1] or uint8 -> (n, d) codes under the prior (CPU)."""
        xt = self._prepare(x)
        out = [
            self.channel.normalise(self.encoder(xt[i : i + batch_size].to(self.device))).cpu()
            for i in range(0, len(xt), batch_size)
        ]
        return torch.cat(out) if out else torch.zeros(0, self.dim)

    def sample_prior(self, n: int, seed: int | None = None) -> Tensor:
        """``n`` codes drawn from the prior: the input for unconditional generation."""
        if n < 1:
            raise DataError(f"n must be >= 1, got {n}")
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        if self.prior_name == "gaussian":
            return torch.randn(n, self.dim, generator=g)
        return torch.rand(n, self.dim, generator=g)


def _check_spec(spec: dict[str, Any], run_dir: Path) -> None:
    """Refuse metadata that could not have been written by dimgen before building anything."""

    def bad(what: str) -> RunFolderError:
        return RunFolderError(
            f"{run_dir / 'encoder.safetensors'}: invalid encoder metadata ({what})"
        )

    shape = spec.get("in_shape")
    if not (
        isinstance(shape, list)
        and 1 <= len(shape) <= 3
        and all(type(v) is int and 0 < v <= 4096 for v in shape)
    ):
        raise bad(f"in_shape {shape!r}")
    for key in ("dim", "encoder_hidden"):
        v = spec.get(key)
        if type(v) is not int or not 0 < v <= 65536:
            raise bad(f"{key} {v!r}")
    if spec.get("encoder") not in ("conv", "mlp"):
        raise bad(f"encoder {spec.get('encoder')!r}")
    if spec.get("prior") not in ("gaussian", "uniform"):
        raise bad(f"prior {spec.get('prior')!r}")
    for key in ("sigma", "eps"):
        if type(spec.get(key)) not in (int, float):
            raise bad(f"{key} {spec.get(key)!r}")
