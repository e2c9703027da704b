"""A dimgen diffusion run as a ``diffusers`` pipeline: ``CodePipeline``.

The pipeline holds the run's ``UNet2DModel`` and scheduler, the code embedding
(:class:`CodeEmbeddingModel`), the code prior (:class:`CodePrior`) and, optionally, the frozen
encoder (:class:`EncoderModel`) for variations of real images. Every component is a
``ModelMixin`` / ``ConfigMixin`` (or a ``diffusers`` scheduler), so ``save_pretrained`` writes
diffusers' own layout (``model_index.json`` and one subfolder per component, weights as
``diffusion_pytorch_model.safetensors``). Sampling runs dimgen's own sampler
(:func:`~dimgen.integrations.diffusers.sample_with_scheduler`), so a seed gives bit-identical
images to :class:`dimgen.diffusion.DiffusionModel` on the same device.

Example:
    >>> pipe = CodePipeline.from_pretrained("exports/digits-ddpm")      # doctest: +SKIP
    >>> out = pipe(num_images=16, generator=torch.Generator().manual_seed(0))  # doctest: +SKIP
    >>> out.images[0]                                                    # a PIL image
    >>> var = pipe(images=x, seed=0, output_type="pt").images            # (n, C, H, W) in [0, 1]

Loading checks the folder before building anything: the files it may hold (and no other),
safetensors only (never a pickle), the declared classes, tensor names, shapes, dtypes and
finite values (:func:`dimgen.io.check_state_shapes`). Needs ``pip install 'dimgen[diffusers]'``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..errors import ConfigError, DataError, DimgenError, RunFolderError
from ..integrations.diffusers import (
    CodeConditionedUNet,
    CodeEmbedding,
    require_diffusers,
    sample_with_scheduler,
)

require_diffusers()

from diffusers import DiffusionPipeline, ModelMixin, SchedulerMixin  # noqa: E402
from diffusers.configuration_utils import ConfigMixin, register_to_config  # noqa: E402
from diffusers.utils import BaseOutput  # noqa: E402

__all__ = [
    "PIPELINE_FILES",
    "CodeEmbeddingModel",
    "CodePipeline",
    "CodePipelineOutput",
    "CodePrior",
    "EncoderModel",
    "check_pipeline_folder",
]

WEIGHTS = "diffusion_pytorch_model.safetensors"
COMPONENTS = {  # name -> (library, class) as model_index.json records them
    "unet": ("diffusers", "UNet2DModel"),
    "code_embedding": (__name__, "CodeEmbeddingModel"),
    "prior": (__name__, "CodePrior"),
    "encoder": (__name__, "EncoderModel"),
}
PIPELINE_FILES = (
    "model_index.json",
    "README.md",
    "scheduler/scheduler_config.json",
    *(f"{name}/{f}" for name in COMPONENTS for f in ("config.json", WEIGHTS)),
)
"""Every file a pipeline folder may hold (``encoder/`` is optional); all a Hub download fetches."""
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


class CodePrior(ModelMixin, ConfigMixin):
    """The codes' prior, N(0, I) or U[0, 1]^d, as a saveable component (no trained weights).

    ``sample(n, generator)`` draws (n, d) codes on the CPU exactly as
    :meth:`dimgen.Tokenizer.sample_prior` does (``randn`` / ``rand`` from the generator), so the
    same seed gives the same codes.
    """

    @register_to_config
    def __init__(self, code_dim: int = 2, prior: str = "gaussian") -> None:
        super().__init__()
        if type(code_dim) is not int or code_dim < 1:
            raise ConfigError(f"code_dim must be an integer >= 1, got {code_dim!r}")
        if prior not in ("gaussian", "uniform"):
            raise ConfigError(f"prior must be gaussian or uniform, got {prior!r}")
        # location and scale (gaussian: mean 0, sd 1; uniform: low 0, width 1), kept as weights
        self.register_buffer("loc", torch.zeros(code_dim))
        self.register_buffer("scale", torch.ones(code_dim))

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """(n, d) float32 codes drawn from the prior on the CPU."""
        if type(n) is not int or n < 1:
            raise DataError(f"num_images must be an integer >= 1, got {n!r}")
        draw = torch.randn if self.config.prior == "gaussian" else torch.rand
        z = draw(n, self.config.code_dim, generator=generator)
        return z * self.scale.cpu() + self.loc.cpu()


class CodeEmbeddingModel(ModelMixin, ConfigMixin):
    """:class:`~dimgen.integrations.diffusers.CodeEmbedding` (codes -> the UNet's class embedding,
    with the learned null code) as a saveable component; the module is ``.embedding``."""

    @register_to_config
    def __init__(self, code_dim: int = 2, embed_dim: int = 64, prior: str = "gaussian") -> None:
        super().__init__()
        self.embedding = CodeEmbedding(code_dim, embed_dim, prior)

    def forward(self, codes: Tensor | None, drop: Tensor | None = None) -> Tensor:
        """(n, d) codes -> (n, E) embeddings (see :class:`CodeEmbedding`)."""
        return self.embedding(codes, drop)


class EncoderModel(ModelMixin, ConfigMixin):
    """The frozen dimgen encoder (network + normalisation) as a saveable component.

    ``spec`` is the encoder's metadata (as in ``encoder.safetensors``); :meth:`tokenizer` gives
    the :class:`dimgen.Tokenizer` that encodes images for :meth:`CodePipeline.__call__`.
    """

    @register_to_config
    def __init__(self, spec: dict[str, Any] | None = None) -> None:
        super().__init__()
        from ..infomax.encoders import build_encoder
        from ..infomax.tokenizer import _check_spec, channel_from_spec

        if not isinstance(spec, dict):
            raise RunFolderError(f"the encoder's config has no spec (got {type(spec).__name__})")
        _check_spec(spec, Path("encoder/config.json"))
        self.encoder = build_encoder(spec["encoder"], spec["in_shape"], spec["dim"],
                                     spec["encoder_hidden"])  # fmt: skip
        self.channel = channel_from_spec(spec)

    def tokenizer(self) -> Any:
        """A :class:`dimgen.Tokenizer` sharing this component's modules."""
        from ..infomax.tokenizer import Tokenizer

        return Tokenizer(self.encoder, self.channel, dict(self.config.spec))


@dataclass
class CodePipelineOutput(BaseOutput):
    """``images``: PIL images, (n, H, W, C) numpy or (n, C, H, W) tensor in [0, 1];
    ``codes``: the (n, d) codes that conditioned them."""

    images: Any
    codes: Tensor


class CodePipeline(DiffusionPipeline):
    """Code-conditioned generation from a dimgen diffusion run, as a ``diffusers`` pipeline.

    ``pipe(num_images=n)`` draws n codes from the prior (no second model) and decodes them;
    ``pipe(images=x)`` encodes real images (needs the ``encoder`` component) and generates
    variations; ``pipe(codes=c)`` decodes given codes. ``guidance_scale`` s is dimgen's
    classifier-free guidance (0: the null code alone, 1: the code alone, > 1: stronger).
    """

    _optional_components: ClassVar[list[str]] = ["encoder"]
    model_cpu_offload_seq = "encoder->code_embedding->unet"

    def __init__(
        self,
        unet: Any,
        scheduler: SchedulerMixin,
        code_embedding: CodeEmbeddingModel,
        prior: CodePrior,
        encoder: EncoderModel | None = None,
        guidance_scale: float = 1.0,
        num_inference_steps: int = 25,
    ) -> None:
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler, code_embedding=code_embedding,
                              prior=prior, encoder=encoder)  # fmt: skip
        self.register_to_config(guidance_scale=float(guidance_scale),
                                num_inference_steps=int(num_inference_steps))  # fmt: skip
        if code_embedding.config.code_dim != prior.config.code_dim:
            raise ConfigError(
                f"the code embedding takes d = {code_embedding.config.code_dim}, the prior "
                f"draws d = {prior.config.code_dim}"
            )
        self._net = CodeConditionedUNet(unet, code_embedding.embedding)  # ConfigError if unfit

    @classmethod
    def from_model(cls, model: Any, encoder: bool = True) -> CodePipeline:
        """The pipeline of a :class:`dimgen.diffusion.DiffusionModel` (its weights, its sampler
        settings); ``encoder``: include the frozen encoder (for ``pipe(images=...)``)."""
        import copy

        net, spec, tok = model.net, model.spec, model.tokenizer
        emb = CodeEmbeddingModel(int(spec["code_dim"]), int(net.embedding.embed_dim),
                                 str(spec["prior"]))  # fmt: skip
        emb.embedding.load_state_dict(net.embedding.state_dict())
        enc = None
        if encoder:
            enc = EncoderModel(dict(tok.spec))
            enc.encoder.load_state_dict(tok.encoder.state_dict())
            enc.channel.load_state_dict(tok.channel.state_dict())
        return cls(
            copy.deepcopy(net.unet).cpu(),
            model.make_scheduler(),
            emb.eval(),
            CodePrior(int(spec["code_dim"]), str(spec["prior"])),
            enc.eval() if enc is not None else None,
            guidance_scale=model.guidance_scale,
            num_inference_steps=model.sample_steps,
        )

    @torch.no_grad()
    def __call__(
        self,
        num_images: int | None = None,
        *,
        images: Any = None,
        codes: Tensor | None = None,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        batch_size: int = 500,
        output_type: str = "pil",
        return_dict: bool = True,
    ) -> CodePipelineOutput | tuple[Any, Tensor]:
        """Generate images from prior codes (``num_images``), from real ``images`` or ``codes``.

        Randomness: a CPU ``generator`` (codes first, then the initial noise), or ``seed``,
        which reproduces dimgen's own sampler: ``pipe(num_images=n, seed=s)`` gives
        ``DiffusionModel.sample_unconditional(n, seed=s)``, ``pipe(images=x, seed=s)``
        ``sample_conditional(x, seed=s)``, ``pipe(codes=c, seed=s)`` ``generate(c, seed=s)``.
        ``num_inference_steps`` / ``guidance_scale``: None takes the run's. ``output_type``:
        ``pil``, ``np`` ((n, H, W, C)) or ``pt`` ((n, C, H, W)), values in [0, 1].

        Raises:
            DataError: none or several of num_images / images / codes, bad shapes or values.
            ConfigError: ``images`` without the encoder component, a bad ``output_type``, both
                ``generator`` and ``seed``, a non-finite ``guidance_scale``.
        """
        from ..gan.model import child_seeds

        given = [k for k, v in (("num_images", num_images), ("images", images),
                                ("codes", codes)) if v is not None]  # fmt: skip
        if len(given) > 1:
            raise DataError(f"give one of num_images, images, codes; got {', '.join(given)}")
        if output_type not in ("pil", "np", "pt"):
            raise ConfigError(f"output_type must be pil, np or pt, got {output_type!r}")
        if generator is not None and seed is not None:
            raise ConfigError("give a generator or a seed, not both")
        steps = (
            self.config.num_inference_steps if num_inference_steps is None else num_inference_steps
        )
        scale = self.config.guidance_scale if guidance_scale is None else guidance_scale
        if (
            isinstance(scale, bool)
            or not isinstance(scale, (int, float))
            or not math.isfinite(scale)
        ):
            raise ConfigError(f"guidance_scale must be a finite number, got {scale!r}")
        if type(steps) is not int or steps < 1:
            raise ConfigError(f"num_inference_steps must be an integer >= 1, got {steps!r}")
        if type(batch_size) is not int or batch_size < 1:
            raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        noise = generator
        if images is not None:
            if self.encoder is None:
                raise ConfigError(
                    "this pipeline was saved without its encoder: images cannot be encoded "
                    "(export it again with the encoder, or pass codes=)"
                )
            c = self.encoder.tokenizer().encode(images).cpu()
            if len(c) == 0:
                raise DataError("no images given")
            noise = torch.Generator().manual_seed(seed) if seed is not None else generator
        elif codes is not None:
            c = codes
            noise = torch.Generator().manual_seed(seed) if seed is not None else generator
        else:
            n = 1 if num_images is None else num_images
            if seed is not None:
                s_codes, s_noise = child_seeds(seed, 2)
                c = self.prior.sample(n, torch.Generator().manual_seed(s_codes))
                noise = torch.Generator().manual_seed(s_noise)
            else:
                c = self.prior.sample(n, generator)
        self._net.eval()
        x = torch.cat([
            sample_with_scheduler(self._net, self.scheduler, c[i : i + batch_size],
                                  num_inference_steps=steps, guidance_scale=float(scale),
                                  generator=noise)
            for i in range(0, len(c), batch_size)
        ])  # fmt: skip
        out: Any = ((x + 1) / 2).clamp(0, 1)
        if output_type != "pt":
            out = out.permute(0, 2, 3, 1).numpy()
            if output_type == "pil":
                out = self.numpy_to_pil(out)
        if not return_dict:
            return out, c
        return CodePipelineOutput(images=out, codes=c)

    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls,
        pretrained_model_name_or_path: str | Path,
        *,
        device: str | torch.device = "cpu",
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        token: str | bool | None = None,
        local_files_only: bool = False,
        force_download: bool = False,
    ) -> CodePipeline:
        """Load a folder written by ``save_pretrained`` / ``dimgen export`` (or a Hub repository
        id, downloading only :data:`PIPELINE_FILES`), after :func:`check_pipeline_folder`.

        Raises:
            RunFolderError: not a dimgen pipeline, a foreign or pickled file, an incomplete
                folder, weights that do not match their config or hold NaN / inf.
            DimgenError: a repository id without ``huggingface_hub``, or a failed download.
        """
        folder = _resolve(pretrained_model_name_or_path, revision=revision, cache_dir=cache_dir,
                          token=token, local_files_only=local_files_only,
                          force_download=force_download)  # fmt: skip
        index = check_pipeline_folder(folder)
        parts: dict[str, Any] = {"scheduler": _load_scheduler(folder)}
        for name in COMPONENTS:
            if index.get(name, [None, None])[0] is None:
                parts[name] = None
                continue
            parts[name] = _load_component(folder / name, COMPONENTS[name][1]).eval()
        try:
            pipe = cls(**parts, guidance_scale=index.get("guidance_scale", 1.0),
                       num_inference_steps=index.get("num_inference_steps", 25))  # fmt: skip
        except (ConfigError, TypeError, ValueError) as exc:
            msg = str(exc).splitlines()[0][:160]
            raise RunFolderError(f"{folder}: the components do not fit together ({msg})") from None
        return pipe.to(device)


def _resolve(name: str | Path, **hub: Any) -> Path:
    from ..infomax.hub import resolve_pretrained

    return resolve_pretrained(name, allow_patterns=list(PIPELINE_FILES), **hub)


def check_pipeline_folder(folder: Path) -> dict[str, Any]:
    """Refuse, in one line, a folder that is not a complete dimgen ``CodePipeline``; return its
    ``model_index.json``.

    The folder may hold :data:`PIPELINE_FILES` only (``encoder/`` optional): a pickled weights
    file (``.bin``, ``.pt``, ...) or any other file is refused, as is a ``model_index.json`` of
    another pipeline class or with components of other classes.

    Raises:
        RunFolderError: naming the folder and the problem.
    """
    from ..parsing import read_json

    folder = Path(folder)
    if not folder.is_dir():
        raise RunFolderError(f"pipeline folder not found: {folder}")
    if not (folder / "model_index.json").is_file():
        what = "not a diffusers pipeline folder (no model_index.json)"
        if (folder / "run.json").is_file():
            kind = _json_or_empty(folder / "run.json").get("kind", "unknown")
            what = (f"a dimgen {kind} run folder, not a pipeline (dimgen export writes one "
                    "from a diffusion run)")  # fmt: skip
        elif (folder / "config.json").is_file() and (folder / "model.safetensors").is_file():
            what = "a dimgen encoder export, not a pipeline (load it with dimgen.Tokenizer)"
        raise RunFolderError(f"{folder} is {what}")
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                   if p.is_file() and not p.relative_to(folder).as_posix().startswith(".cache/"))  # fmt: skip
    for rel in files:
        if rel.endswith(PICKLE_SUFFIXES):
            raise RunFolderError(
                f"{folder}: {rel} is a pickled weights file; dimgen loads safetensors only "
                "(never unpickles): remove it or export again"
            )
        if rel not in PIPELINE_FILES:
            raise RunFolderError(
                f"{folder}: foreign file {rel} (a dimgen pipeline folder holds only "
                "model_index.json, README.md and its components' config and safetensors files)"
            )
    index = read_json(folder / "model_index.json")
    if not isinstance(index, dict):
        raise RunFolderError(f"{folder}/model_index.json is corrupt (not a JSON object)")
    if index.get("_class_name") != CodePipeline.__name__:
        raise RunFolderError(
            f"{folder} is a {index.get('_class_name')!r} pipeline, not a dimgen "
            f"{CodePipeline.__name__}"
        )
    for name, (_, cls_name) in COMPONENTS.items():
        entry = index.get(name)
        if name == "encoder" and (entry is None or entry == [None, None]):
            continue
        if not (isinstance(entry, list) and len(entry) == 2 and entry[1] == cls_name):
            raise RunFolderError(f"{folder}/model_index.json: {name} must be a {cls_name}, got "
                                 f"{entry!r}")  # fmt: skip
    sched = index.get("scheduler")
    if not (isinstance(sched, list) and len(sched) == 2 and sched[0] == "diffusers"):
        raise RunFolderError(f"{folder}/model_index.json: scheduler must be a diffusers "
                             f"scheduler, got {sched!r}")  # fmt: skip
    need = ["scheduler/scheduler_config.json"]
    for name in COMPONENTS:
        if name != "encoder" or index.get(name, [None])[0] is not None:
            need += [f"{name}/config.json", f"{name}/{WEIGHTS}"]
    missing = [rel for rel in need if rel not in files]
    if missing:
        raise RunFolderError(f"{folder} is an incomplete pipeline ({', '.join(missing)} "
                             "missing): export it again into an empty folder")  # fmt: skip
    return index


def _json_or_empty(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _load_scheduler(folder: Path) -> SchedulerMixin:
    import diffusers

    from ..parsing import read_json

    path = folder / "scheduler" / "scheduler_config.json"
    cfg = read_json(path)
    name = cfg.get("_class_name") if isinstance(cfg, dict) else None
    cls = getattr(diffusers, str(name), None) if isinstance(name, str) else None
    if not (isinstance(cls, type) and issubclass(cls, SchedulerMixin)):
        raise RunFolderError(f"{path}: {name!r} is not a diffusers scheduler")
    try:
        return cls.from_config(cfg)
    except (TypeError, ValueError, KeyError) as exc:
        raise RunFolderError(f"{path}: invalid scheduler config ({str(exc)[:120]})") from None


def _load_component(sub: Path, cls_name: str) -> torch.nn.Module:
    """Build a component from its ``config.json`` and load its safetensors weights with dimgen's
    checks (names, shapes and dtypes against the declared model built on the meta device, finite
    values); never through a pickle."""
    import diffusers
    from safetensors import safe_open

    from ..io import check_state_shapes
    from ..parsing import read_json

    cls = getattr(diffusers, cls_name) if cls_name == "UNet2DModel" else globals()[cls_name]
    cfg = read_json(sub / "config.json")
    if not isinstance(cfg, dict) or cfg.get("_class_name") != cls_name:
        got = cfg.get("_class_name") if isinstance(cfg, dict) else cfg
        raise RunFolderError(f"{sub}/config.json is not a {cls_name} config (got {got!r})")
    path = sub / WEIGHTS
    try:
        with safe_open(str(path), framework="pt") as fh:
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    except Exception as exc:  # safetensors raises several types for corrupt headers
        msg = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise RunFolderError(f"{path} is not a valid safetensors file ({msg})") from None

    def build() -> torch.nn.Module:
        try:
            return cls.from_config(cfg)
        except DimgenError:
            raise
        except Exception as exc:  # diffusers raises many types for an unfit config
            raise ValueError(
                str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
            ) from None

    tensors = check_state_shapes(build, tensors, path)  # RunFolderError, nothing allocated
    model = build()
    model.load_state_dict(tensors)
    if isinstance(model, EncoderModel):
        from ..infomax.tokenizer import check_loaded_statistics

        check_loaded_statistics(model.channel, path)
    return model
