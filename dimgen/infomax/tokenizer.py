"""`Tokenizer`: a trained encoder as a reusable map from inputs to prior-distributed codes.

With a uniform prior U[0,1]^d and channel noise U[-eps, eps], the paper shows the capacity is
reached by codes on the discrete grid {0, 2 eps, 4 eps, ..., 1} per axis: :meth:`Tokenizer.tokens`
maps inputs to integer indices on that grid and :meth:`Tokenizer.from_tokens` maps them back, so
the codes can serve as discrete tokens for other generators.

Example:
    >>> tok = Tokenizer.from_pretrained("runs/digits")     # doctest: +SKIP
    >>> codes = tok.encode(images)                         # (n, d) under tok.prior
    >>> z = tok.sample_prior(64, seed=0)                   # codes for unconditional generation
    >>> ids = tok.tokens(images)                           # uniform prior: (n, d) int64 in [0, K)
    >>> grid_codes = tok.from_tokens(ids)                  # (n, d) codes on the grid
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.distributions import Distribution

from ..arrays import as_array
from ..config import check_count, check_seed, check_temperature
from ..data.sources import unit_images
from ..errors import ConfigError, DataError, DimgenError, RunFolderError
from ..io import load_model_weights, read_run
from .channel import LEGACY_SQUASH, SQUASHES, NoiseChannel, make_channel
from .encoders import build_encoder
from .hub import CARD_TAGS

__all__ = ["Tokenizer"]

try:  # the Hub's own mixin: save_pretrained / from_pretrained / push_to_hub conventions
    from huggingface_hub import ModelHubMixin as _HubMixin
except ImportError:  # optional (dimgen[hub]): local save_pretrained still works

    class _HubMixin:  # type: ignore[no-redef]
        """Stand-in for ``huggingface_hub.ModelHubMixin`` when it is not installed."""

        def __init_subclass__(cls, **kwargs: Any) -> None:
            super().__init_subclass__()

        def save_pretrained(self, save_directory: str | Path, **kwargs: Any) -> None:
            if kwargs.get("push_to_hub"):
                self.push_to_hub()
            folder = Path(save_directory)
            folder.mkdir(parents=True, exist_ok=True)
            self._save_pretrained(folder)  # type: ignore[attr-defined]
            if not (folder / "README.md").exists():
                (folder / "README.md").write_text(str(self.generate_model_card()))  # type: ignore[attr-defined]

        def push_to_hub(self, *args: Any, **kwargs: Any) -> str:
            raise DimgenError("push_to_hub needs huggingface_hub: pip install 'dimgen[hub]'")


class Tokenizer(_HubMixin, library_name="dimgen", tags=list(CARD_TAGS)):
    """Frozen encoder + normalisation (no channel noise) loaded from an encoder run folder.

    Follows ``huggingface_hub``'s ``ModelHubMixin``: :meth:`save_pretrained` writes the folder
    ``dimgen export`` writes (``config.json``, ``model.safetensors``, a ``README.md`` model card
    with the certificate, data, prior and test verdicts as metadata), :meth:`from_pretrained`
    loads it, a run folder or a Hub repository, and ``push_to_hub("user/repo")`` uploads it.
    """

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
    def from_pretrained(  # type: ignore[override]
        cls,
        pretrained_model_name_or_path: str | Path,
        device: str | torch.device = "cpu",
        *,
        force_download: bool = False,
        token: str | bool | None = None,
        cache_dir: str | Path | None = None,
        local_files_only: bool = False,
        revision: str | None = None,
    ) -> Tokenizer:
        """Rebuild the encoder of a ``dimgen encode`` run folder, a ``dimgen export`` /
        :meth:`save_pretrained` folder, or a Hugging Face Hub repository id (``user/repo``;
        needs ``huggingface_hub``; only ``config.json``, ``model.safetensors`` and ``README.md``
        are downloaded). The keyword arguments are ``ModelHubMixin.from_pretrained``'s.

        Loading is safetensors only (never a pickle), with names, shapes, dtypes and finite
        values checked (:func:`dimgen.io.load_model_weights`).

        Raises:
            RunFolderError: missing, incomplete or foreign folder, weights that do not match, a
                repository that cannot be downloaded.
            DimgenError: a repository id without ``huggingface_hub`` installed.
        """
        return cls._from_pretrained(
            model_id=str(pretrained_model_name_or_path), revision=revision, cache_dir=cache_dir,
            force_download=force_download, local_files_only=local_files_only, token=token,
            device=device,
        )  # fmt: skip

    @classmethod
    def _from_pretrained(  # type: ignore[override]
        cls,
        *,
        model_id: str,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        force_download: bool = False,
        local_files_only: bool = False,
        token: str | bool | None = None,
        device: str | torch.device = "cpu",
        **model_kwargs: Any,
    ) -> Tokenizer:
        """``ModelHubMixin``'s loading hook: resolve ``model_id`` (folder or repository), load."""
        from .hub import check_export, resolve_pretrained

        folder = resolve_pretrained(model_id, revision=revision, cache_dir=cache_dir,
                                    force_download=force_download,
                                    local_files_only=local_files_only, token=token)  # fmt: skip
        if folder.is_file():  # a file of the folder (model.safetensors), as run folders allow
            folder = folder.parent
        export_files = (folder / "config.json", folder / "model.safetensors")
        if not (folder / "run.json").exists() and any(f.is_file() for f in export_files):
            check_export(folder)  # all files present, weights match config.json's digest
            return cls.from_weights(folder / "model.safetensors", device, folder)
        run_dir, _ = read_run(folder, "encoder")
        return cls.from_weights(run_dir / "encoder.safetensors", device, run_dir)

    @classmethod
    def from_weights(
        cls, path: str | Path, device: str | torch.device = "cpu", run_dir: Path | None = None
    ) -> Tokenizer:
        """Rebuild from an ``encoder.safetensors`` file alone (e.g. the copy a GAN run keeps)."""
        path = Path(path)

        def build(meta: dict[str, Any]) -> torch.nn.Module:
            spec = meta.get("spec")
            if not isinstance(spec, dict):
                raise RunFolderError(f"{path} is not a dimgen encoder")
            _check_spec(spec, path)
            return torch.nn.ModuleDict({
                "encoder": build_encoder(spec["encoder"], spec["in_shape"], spec["dim"],
                                         spec["encoder_hidden"]),
                "channel": channel_from_spec(spec),
            })  # fmt: skip

        # names, shapes and dtypes on the meta device (nothing allocated), finite values
        tensors, meta = load_model_weights(path, "encoder", build, "a dimgen encoder")
        spec = meta["spec"]
        run_dir = run_dir if run_dir is not None else path.parent
        try:
            encoder = build_encoder(
                spec["encoder"], spec["in_shape"], spec["dim"], spec["encoder_hidden"]
            )
            channel = channel_from_spec(spec)
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
        check_loaded_statistics(channel, path)
        return cls(encoder.to(device), channel.to(device), spec, run_dir)

    # -- the Hub's mixin ---------------------------------------------------------------------
    def hub_config(self) -> dict[str, Any]:
        """The ``config.json`` of :meth:`save_pretrained` (without the weights' digest): that of
        the export it was loaded from, or of its encoder run (certificate, data, verdicts), or,
        for bare weights, the spec with nothing measured."""
        from ..parsing import read_json
        from .hub import export_config, is_export

        folder = self.path
        if folder is not None and is_export(folder) and not (folder / "run.json").exists():
            config = read_json(folder / "config.json")
            if isinstance(config, dict):
                return {k: v for k, v in config.items() if k != "model_sha256"}
        if folder is not None and (folder / "run.json").is_file():
            try:
                run_dir, rec = read_run(folder, "encoder")
                return export_config(run_dir, rec)
            except DimgenError:
                pass
        spec = self.spec
        return {"library_name": "dimgen", "kind": "encoder", "data": "unknown",
                "prior": spec.get("prior"), "dim": spec.get("dim"), "certificate": {},
                "spec": spec, "verdicts": {"evaluated": False}}  # fmt: skip

    def _save_pretrained(self, save_directory: Path) -> None:
        """``ModelHubMixin``'s saving hook: ``model.safetensors`` (the encoder, as a run keeps
        it) and ``config.json`` (:meth:`hub_config` with the weights' sha256); the mixin adds
        the ``README.md`` card (:meth:`generate_model_card`)."""
        from ..io import _sha256, save_weights, write_json

        folder = Path(save_directory)
        tensors = {**{f"encoder.{k}": v for k, v in self.encoder.state_dict().items()},
                   **{f"channel.{k}": v for k, v in self.channel.state_dict().items()}}  # fmt: skip
        save_weights(folder / "model.safetensors", tensors, {"kind": "encoder", "spec": self.spec})
        config = {**self.hub_config(), "model_sha256": _sha256(folder / "model.safetensors")}
        write_json(folder / "config.json", config)

    def generate_model_card(self, *args: Any, **kwargs: Any) -> Any:
        """The model card (:func:`dimgen.infomax.hub.model_card`: the card template with the
        certificate, data, prior and test verdicts as metadata) as a ``huggingface_hub``
        ``ModelCard`` (plain text without huggingface_hub)."""
        from .hub import model_card

        text = model_card(self.hub_config())
        try:
            from huggingface_hub import ModelCard
        except ImportError:
            return text
        return ModelCard(text)

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
        # the one scale rule (dimgen.data): uint8 / 255, float [0, 1]; ragged lists refused there
        arr = unit_images(x, "inputs")
        want = self.in_shape
        if arr.shape == want:  # a single sample ((N, H, W) grey images are handled below)
            arr = arr[None]
        elif len(want) == 3 and want[0] == 1 and arr.shape == want[1:]:  # one (H, W) grey image
            arr = arr[None, None]
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
        """Inputs (n, *in_shape) -> (n, d) codes under the prior (CPU).

        Images follow :func:`dimgen.data.unit_images`: uint8 (divided by 255) or float in [0, 1];
        other dtypes or float outside [0, 1] raise :class:`DataError` (as every entry point does).
        A streamed folder (:class:`dimgen.data.stream.StreamedImages`) is decoded
        ``batch_size`` images at a time: the same batches, so the same codes, as in memory.
        """
        batch_size = check_count(batch_size, "batch_size")
        from ..data.stream import StreamedImages

        if isinstance(x, StreamedImages):
            parts = [self.encode(xb.cpu(), batch_size) for xb in x.chunks(batch_size)]
            return torch.cat(parts) if parts else torch.zeros(0, self.dim)
        xt = self._prepare(x)
        out = [
            self.channel.normalise(self.encoder(xt[i : i + batch_size].to(self.device))).cpu()
            for i in range(0, len(xt), batch_size)
        ]
        return torch.cat(out) if out else torch.zeros(0, self.dim)

    def sample_prior(
        self, n: int, seed: int | None = None, temperature: float | None = 1.0
    ) -> Tensor:
        """``n`` codes drawn from the prior, (n, d): the input for unconditional generation.

        ``temperature`` T (Gaussian prior only): draws from N(0, T^2 I), the same draws scaled
        (Glow's temperature; T < 1 keeps codes nearer the mode, trading diversity for typical
        samples).

        Raises:
            DataError: ``n`` is not an integer >= 1.
            ConfigError: ``seed`` is not None or an integer in [0, 2^64 - 1]; ``temperature``
                not a number in (0, 10] (None: 1), or not 1 for a uniform prior.
        """
        n, seed, t = check_count(n), check_seed(seed), check_temperature(temperature)
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        if self.prior_name == "gaussian":
            z = torch.randn(n, self.dim, generator=g)
            return z if t == 1.0 else t * z
        if t != 1.0:
            raise ConfigError(
                f"a temperature scales Gaussian codes; this encoder's prior is {self.prior_name}"
            )
        return torch.rand(n, self.dim, generator=g)

    # -- discrete tokens (uniform prior) ---------------------------------------------------------
    def _require_uniform(self) -> float:
        if self.prior_name != "uniform":
            raise ConfigError(
                f"discrete tokens need a uniform-prior encoder; this one has a {self.prior_name} "
                "prior (train with --prior uniform)"
            )
        return float(self.spec["eps"])

    @property
    def grid_step(self) -> float:
        """Spacing 2 eps of the token grid (uniform prior only)."""
        return 2.0 * self._require_uniform()

    @property
    def grid_size(self) -> int:
        """K, the number of grid points per axis (uniform prior only).

        The points are ``k * 2 eps`` for k = 0..K-1: the most points spaced 2 eps apart that fit in
        [0, 1], so noisy codes of neighbouring points never overlap. When 1/(2 eps) is an integer
        (up to 1e-6), K = 1/(2 eps) + 1 and the grid is {0, 2 eps, ..., 1} as in the paper;
        otherwise K = floor(1/(2 eps)) + 1, the last point lies below 1 and codes above it map
        to the last token.
        """
        ratio = 1.0 / self.grid_step
        near = round(ratio)
        whole = near if abs(ratio - near) < 1e-6 else int(np.floor(ratio))
        return whole + 1

    @property
    def vocabulary(self) -> dict[str, Any]:
        """The token vocabulary (uniform prior only): ``grid_size`` K per axis, ``axes`` d,
        ``grid_step`` 2 eps, ``bits_per_image`` d log2 K (K^d codes per image).

        Raises:
            ConfigError: a Gaussian-prior encoder (it has no grid).
        """
        k = self.grid_size
        return {"grid_size": k, "axes": self.dim, "grid_step": self.grid_step,
                "bits_per_image": self.dim * float(np.log2(k))}  # fmt: skip

    def token_usage(self, ids: Any) -> dict[str, Any]:
        """How evenly (n, d) token ids use the K tokens of each axis: ``histogram`` (d, K),
        ``entropy_nats``, ``entropy_ratio`` (entropy / log K), ``perplexity`` (exp of the
        entropy: K for uniform use) per axis, ``perplexity_mean`` and ``used``
        (:func:`dimgen.infomax.channel.token_usage`).

        Raises:
            ConfigError: a Gaussian-prior encoder. DataError: ids not (n, d) integers in [0, K).
        """
        from .channel import token_usage

        k = self.grid_size
        arr = as_array(ids, "token ids")
        if not np.issubdtype(arr.dtype, np.integer) or arr.ndim != 2 or arr.shape[1] != self.dim:
            raise DataError(
                f"token ids must be (n, {self.dim}) integers, got {arr.dtype} {arr.shape}"
            )
        if len(arr) == 0:
            raise DataError("token ids are empty: usage needs at least one row")
        if arr.min() < 0 or arr.max() >= k:
            raise DataError(f"token ids must lie in [0, {k - 1}], got [{arr.min()}, {arr.max()}]")
        return token_usage(arr, k)

    def quantize(self, codes: Any) -> Tensor:
        """(n, d) codes in [0, 1] -> (n, d) int64 token ids: the nearest grid point, clipped."""
        arr = as_array(codes, "codes")
        if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
            raise DataError(f"codes must be numeric, got dtype {arr.dtype}")
        c = torch.as_tensor(arr.astype(np.float64))
        if c.ndim != 2 or c.shape[1] != self.dim:
            raise DataError(f"codes must have shape (n, {self.dim}), got {tuple(c.shape)}")
        if not torch.isfinite(c).all():
            raise DataError("codes contain NaN or Inf")
        k = self.grid_size
        return torch.round(c / self.grid_step).clamp(0, k - 1).long()

    def tokens(self, x: Any, batch_size: int = 2048) -> Tensor:
        """Inputs -> (n, d) int64 token ids in [0, K): the nearest grid point of each code axis."""
        self._require_uniform()
        return self.quantize(self.encode(x, batch_size))

    def from_tokens(self, ids: Any) -> Tensor:
        """(n, d) integer token ids in [0, K) -> (n, d) float32 codes on the grid (inverse of tokens)."""
        k = self.grid_size
        arr = as_array(ids, "token ids")
        if not np.issubdtype(arr.dtype, np.integer):
            raise DataError(f"token ids must be integers, got dtype {arr.dtype}")
        if arr.ndim != 2 or arr.shape[1] != self.dim:
            raise DataError(f"token ids must have shape (n, {self.dim}), got {arr.shape}")
        if arr.size and (arr.min() < 0 or arr.max() >= k):
            raise DataError(f"token ids must lie in [0, {k - 1}], got [{arr.min()}, {arr.max()}]")
        step = self.grid_step
        # Exactly 1.0 at the top of a whole grid: divide rather than multiply by a rounded step.
        whole = abs(1.0 / step - (k - 1)) < 1e-6
        grid = arr / (k - 1) if whole else arr * step
        return torch.from_numpy(np.clip(grid, 0.0, 1.0).astype(np.float32))


def _check_spec(spec: dict[str, Any], path: Path) -> None:
    """Refuse metadata that could not have been written by dimgen before building anything."""

    def bad(what: str) -> RunFolderError:
        return RunFolderError(f"{path}: invalid encoder metadata ({what})")

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
    if spec.get("squash", LEGACY_SQUASH) not in SQUASHES:
        raise bad(f"squash {spec.get('squash')!r}")
    if type(spec.get("whiten", False)) is not bool:
        raise bad(f"whiten {spec.get('whiten')!r}")


def channel_from_spec(spec: dict[str, Any]) -> NoiseChannel:
    """The (untrained) channel a checked spec describes; runs written before a field existed get
    the value they were trained with (``squash`` phi, ``whiten`` false)."""
    return make_channel(spec["prior"], spec["dim"], spec["sigma"], spec["eps"],
                        spec.get("squash", LEGACY_SQUASH),
                        whiten=bool(spec.get("whiten", False)))  # fmt: skip


def check_loaded_statistics(channel: NoiseChannel, path: Path) -> None:
    """Finite is not enough: a loaded channel's statistics must define its inference map.

    Raises:
        RunFolderError: naming ``path`` and the bad buffer (:meth:`NoiseChannel.check_statistics`).
    """
    try:
        channel.check_statistics()
    except ValueError as exc:
        raise RunFolderError(
            f"{path}: {exc}; the weights are corrupt (retrain, or export again from a good run)"
        ) from None
