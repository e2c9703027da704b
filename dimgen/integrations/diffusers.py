"""dimgen codes as the conditioning of a Hugging Face ``diffusers`` UNet, in two ways.

A :class:`~dimgen.infomax.tokenizer.Tokenizer` maps an image to a code c (n, d) that follows a known
prior (N(0, I) or U[0, 1]^d). Either

* :class:`CodeEmbedding` turns codes into the vector a ``UNet2DModel(class_embed_type="identity")``
  adds to its timestep embedding (its ``class_labels`` argument, (n, E) with E = 4 *
  block_out_channels[0]); or
* :class:`CodeTokens` turns them into d cross-attention tokens (n, d, D), one per code
  coordinate, that a ``UNet2DConditionModel`` with ``cross_attention_dim`` D attends to (its
  ``encoder_hidden_states`` argument, as text tokens in Stable Diffusion).

Both standardise the codes under their prior and hold a learned *null code* that stands for "no
code", so one network predicts both the conditional and the unconditional noise and samples
with classifier-free guidance (Ho & Salimans 2022, "Classifier-Free Diffusion Guidance", eq. 6):
eps = eps(x, null) + s * (eps(x, c) - eps(x, null)).

Discrete tokens (uniform prior, :meth:`Tokenizer.tokens`) enter through
:meth:`Tokenizer.from_tokens`, which maps them back to codes on the capacity grid.

The noise schedules are ``diffusers``' own (:func:`make_scheduler`: ``DDPMScheduler`` for
training and ancestral sampling, ``DDIMScheduler`` for fast deterministic sampling), and
:func:`sample_with_scheduler` runs any ``diffusers`` scheduler with the guided network, so the
adapter works in a user's own pipeline.

Example:
    >>> tok = Tokenizer.from_pretrained("runs/digits")                       # doctest: +SKIP
    >>> net = code_conditioned_unet(tok, (1, 8, 8))                          # doctest: +SKIP
    >>> net_x = code_conditioned_unet(tok, (1, 8, 8), "tokens", token_dim=32)  # cross-attention
    >>> x_t = torch.randn(4, 1, 8, 8); t = torch.tensor([10, 500, 999, 0])   # doctest: +SKIP
    >>> eps = net(x_t, t, tok.encode(images[:4]))                            # (4, 1, 8, 8)
    >>> eps_null = net(x_t, t, None)                                         # the null code
    >>> imgs = sample_with_scheduler(net, make_scheduler("ddim"), tok.sample_prior(4, seed=0),
    ...                              num_inference_steps=25, guidance_scale=2.0)  # doctest: +SKIP

Needs the optional extra: ``pip install 'dimgen[diffusers]'``.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError, DataError

__all__ = [
    "CodeConditionedUNet",
    "CodeEmbedding",
    "CodeTokens",
    "build_unet",
    "code_conditioned_unet",
    "make_scheduler",
    "require_diffusers",
    "sample_with_scheduler",
]

SCHEDULERS = ("ddpm", "ddim")
CONDITIONINGS = ("embedding", "tokens")


def require_diffusers() -> ModuleType:
    """The ``diffusers`` module; a one-line :class:`ConfigError` naming the extra if missing."""
    try:
        import diffusers
    except ImportError:
        raise ConfigError(
            "this needs the optional dependency diffusers: pip install 'dimgen[diffusers]'"
        ) from None
    return diffusers


class _CodeInput(nn.Module):
    """Shared part of the two conditionings: codes standardised under their prior, null code.

    Gaussian codes enter as they are; uniform codes on [0, 1] as (c - 1/2) * sqrt(12) (unit
    variance). ``null_code`` (d,) is a learned parameter in the standardised space that replaces
    the code where ``drop`` is true, or everywhere when ``codes`` is None (classifier-free
    guidance, Ho & Salimans 2022).
    """

    def __init__(self, code_dim: int, width: int, prior: str, what: str) -> None:
        super().__init__()
        if code_dim < 1 or width < 1:
            raise ConfigError(f"code_dim and {what} must be >= 1, got {code_dim}, {width}")
        if prior not in ("gaussian", "uniform"):
            raise ConfigError(f"prior must be gaussian or uniform, got {prior!r}")
        self.code_dim, self.prior = code_dim, prior
        shift, scale = (0.0, 1.0) if prior == "gaussian" else (0.5, math.sqrt(12.0))
        self.register_buffer("shift", torch.tensor(shift), persistent=False)
        self.register_buffer("scale", torch.tensor(scale), persistent=False)
        self.null_code = nn.Parameter(torch.zeros(code_dim))

    def standardised(
        self, codes: Tensor | None, drop: Tensor | None, batch_size: int | None
    ) -> Tensor:
        """(n, d) codes (None: the null code for ``batch_size`` rows) -> (n, d) standardised,
        with the null code in the rows where ``drop`` (n,) bool is true.

        Raises :class:`DataError` for codes of the wrong shape or with NaN / Inf.
        """
        null = self.null_code
        if codes is None:
            if batch_size is None or batch_size < 1:
                raise DataError("without codes, give batch_size >= 1 for the null code")
            return null.expand(batch_size, -1)
        if not isinstance(codes, Tensor):
            raise DataError(f"codes must be a torch.Tensor (n, d), got {type(codes).__name__}")
        if codes.ndim != 2 or codes.shape[1] != self.code_dim:
            raise DataError(f"codes must have shape (n, {self.code_dim}), got {tuple(codes.shape)}")
        if not bool(torch.isfinite(codes).all()):
            raise DataError("codes contain NaN or Inf")
        c = (codes.to(null.dtype) - self.shift) * self.scale
        if drop is not None:
            if not isinstance(drop, Tensor) or drop.dtype != torch.bool:
                raise DataError(
                    f"drop must be a bool tensor (n,), got {getattr(drop, 'dtype', drop)}"
                )
            if drop.shape != (len(c),):
                raise DataError(f"drop must have shape ({len(c)},), got {tuple(drop.shape)}")
            c = torch.where(drop[:, None].to(c.device), null.expand_as(c), c)
        return c


class CodeEmbedding(_CodeInput):
    """Codes (n, d) -> class embeddings (n, E) for ``UNet2DModel(class_embed_type="identity")``.

    Codes are standardised under their prior (see :class:`CodeTokens`; the null code replaces
    them where dropped), then a two-layer MLP (Linear, SiLU, Linear) maps them to E.

    Args:
        code_dim: d, the code dimension.
        embed_dim: E, the UNet's time-embedding width (4 * ``block_out_channels[0]``).
        prior: ``gaussian`` or ``uniform`` (the tokenizer's prior).
    """

    def __init__(self, code_dim: int, embed_dim: int, prior: str = "gaussian") -> None:
        super().__init__(code_dim, embed_dim, prior, "embed_dim")
        self.embed_dim = embed_dim
        self.proj = nn.Sequential(
            nn.Linear(code_dim, embed_dim), nn.SiLU(), nn.Linear(embed_dim, embed_dim)
        )

    def forward(
        self, codes: Tensor | None, drop: Tensor | None = None, batch_size: int | None = None
    ) -> Tensor:
        """(n, d) codes (None: the null code for ``batch_size`` rows) -> (n, E) embeddings.

        ``drop``: (n,) bool, rows that get the null code instead (training's code dropout).
        Raises :class:`DataError` for codes of the wrong shape or with NaN / Inf.
        """
        return self.proj(self.standardised(codes, drop, batch_size))


class CodeTokens(_CodeInput):
    """Codes (n, d) -> cross-attention tokens (n, d, D) for a ``UNet2DConditionModel``.

    One token per code coordinate: the standardised coordinate c_i (the null code's where
    dropped) scales a learned direction w_i (D,) and adds a learned offset b_i (D,), which also
    tells the tokens apart (a position embedding); a shared two-layer MLP (Linear, SiLU, Linear)
    then refines each token: token_i = MLP(c_i w_i + b_i). The UNet attends to the d tokens
    through its ``encoder_hidden_states`` (cross-attention, as text tokens in Stable Diffusion:
    Rombach et al. 2022, "High-Resolution Image Synthesis with Latent Diffusion Models", eq. 3).

    Args:
        code_dim: d, the code dimension (the number of tokens).
        token_dim: D, the UNet's ``cross_attention_dim``.
        prior: ``gaussian`` or ``uniform`` (the tokenizer's prior).
    """

    def __init__(self, code_dim: int, token_dim: int, prior: str = "gaussian") -> None:
        super().__init__(code_dim, token_dim, prior, "token_dim")
        self.token_dim = token_dim
        self.weight = nn.Parameter(torch.randn(code_dim, token_dim) / math.sqrt(token_dim))
        self.bias = nn.Parameter(torch.randn(code_dim, token_dim) / math.sqrt(token_dim))
        self.mlp = nn.Sequential(
            nn.Linear(token_dim, token_dim), nn.SiLU(), nn.Linear(token_dim, token_dim)
        )

    def forward(
        self, codes: Tensor | None, drop: Tensor | None = None, batch_size: int | None = None
    ) -> Tensor:
        """(n, d) codes (None: the null code for ``batch_size`` rows) -> (n, d, D) tokens.

        ``drop``: (n,) bool, rows that get the null code instead (training's code dropout).
        Raises :class:`DataError` for codes of the wrong shape or with NaN / Inf.
        """
        c = self.standardised(codes, drop, batch_size)  # (n, d)
        return self.mlp(c[:, :, None] * self.weight + self.bias)  # (n, d, D)


class CodeConditionedUNet(nn.Module):
    """A ``diffusers`` UNet conditioned on dimgen codes, in one of two ways.

    * :class:`CodeEmbedding` with a ``UNet2DModel(class_embed_type="identity")``: the code's
      embedding (n, E) is added to the timestep embedding (``class_labels``);
    * :class:`CodeTokens` with a ``UNet2DConditionModel``: the code's d tokens (n, d, D) are
      attended to by cross-attention (``encoder_hidden_states``; D = ``cross_attention_dim``).

    ``forward(sample (n, C, H, W), timestep (n,) or scalar, codes (n, d) or None, drop)`` returns
    the UNet's prediction (n, C, H, W) (the noise eps for the default ``prediction_type``).
    :meth:`guided` combines the conditional and null-code predictions (classifier-free guidance).
    Raises :class:`ConfigError` when the UNet does not fit the conditioning.
    """

    def __init__(self, unet: nn.Module, embedding: CodeEmbedding | CodeTokens) -> None:
        super().__init__()
        cfg = getattr(unet, "config", None)
        self.tokens = isinstance(embedding, CodeTokens)
        if self.tokens:
            cross = getattr(cfg, "cross_attention_dim", None) if cfg is not None else None
            if cross is None:
                raise ConfigError("code tokens need a UNet2DConditionModel (cross-attention)")
            widths = set(cross) if isinstance(cross, (tuple, list)) else {cross}
            if widths != {embedding.token_dim}:
                raise ConfigError(
                    f"the code tokens have width {embedding.token_dim}; this UNet's "
                    f"cross_attention_dim is {cross}"
                )
        else:
            if cfg is None or getattr(cfg, "class_embed_type", None) != "identity":
                raise ConfigError(
                    'a code embedding needs a UNet2DModel with class_embed_type="identity"'
                )
            want = 4 * int(cfg.block_out_channels[0])
            if embedding.embed_dim != want:
                raise ConfigError(
                    f"the code embedding has width {embedding.embed_dim}; this UNet's time "
                    f"embedding is {want} (4 * block_out_channels[0])"
                )
        self.unet, self.embedding = unet, embedding

    @property
    def code_dim(self) -> int:
        return self.embedding.code_dim

    def forward(
        self,
        sample: Tensor,
        timestep: Tensor | int,
        codes: Tensor | None = None,
        drop: Tensor | None = None,
    ) -> Tensor:
        self._check_input(sample, timestep)
        cond = self.embedding(codes, drop, batch_size=len(sample))  # (n, E) or (n, d, D)
        if len(cond) != len(sample):
            raise DataError(f"{len(cond)} codes for {len(sample)} samples")
        if self.tokens:
            return self.unet(sample, timestep, encoder_hidden_states=cond).sample
        return self.unet(sample, timestep, class_labels=cond).sample

    def _check_input(self, sample: Tensor, timestep: Tensor | int) -> None:
        """One-line :class:`DataError` for a sample or timestep the UNet would choke on."""
        c = int(self.unet.config.in_channels)
        if not isinstance(sample, Tensor) or sample.ndim != 4 or sample.shape[1] != c:
            got = tuple(sample.shape) if isinstance(sample, Tensor) else type(sample).__name__
            raise DataError(f"sample must have shape (n, {c}, H, W), got {got}")
        if isinstance(timestep, Tensor) and timestep.ndim > 0 and timestep.shape != (len(sample),):
            raise DataError(
                f"timestep must be a scalar or have shape ({len(sample)},), "
                f"got {tuple(timestep.shape)}"
            )

    def guided(
        self, sample: Tensor, timestep: Tensor | int, codes: Tensor | None, guidance_scale: float
    ) -> Tensor:
        """eps(x, null) + s * (eps(x, c) - eps(x, null)) (Ho & Salimans 2022, eq. 6).

        s = 1: the conditional prediction alone; s = 0 or ``codes`` None: the null code alone
        (unconditional); s > 1: stronger adherence to the code. One batched UNet call.
        Raises :class:`DataError` for a non-finite ``guidance_scale`` or bad inputs.
        """
        if not math.isfinite(guidance_scale):
            raise DataError(f"guidance_scale must be finite, got {guidance_scale}")
        if codes is None or guidance_scale == 0:
            return self(sample, timestep, None)
        if guidance_scale == 1:
            return self(sample, timestep, codes)
        n = len(sample)
        drop = torch.arange(2 * n, device=sample.device) >= n
        t = (
            timestep
            if not isinstance(timestep, Tensor) or timestep.ndim == 0
            else timestep.repeat(2)
        )
        both = self(torch.cat([sample, sample]), t, torch.cat([codes, codes]), drop)
        cond, null = both[:n], both[n:]
        return null + guidance_scale * (cond - null)


def build_unet(
    shape: tuple[int, ...],
    block_out_channels: tuple[int, ...] = (16, 32),
    layers_per_block: int = 1,
    norm_num_groups: int = 8,
    cross_attention_dim: int | None = None,
    attention_heads: int = 1,
) -> nn.Module:
    """A ``diffusers`` UNet for (C, H, W) images, conditioned by a code embedding or tokens.

    Without ``cross_attention_dim``: a ``UNet2DModel`` with plain ResNet down/up blocks (no
    attention) and a code-sized class embedding (``class_embed_type="identity"``, for
    :class:`CodeEmbedding`). With it: a ``UNet2DConditionModel`` whose every block and the middle
    one cross-attend (``attention_heads`` heads) to tokens of width ``cross_attention_dim`` (for
    :class:`CodeTokens`); the transformer blocks of the down and up blocks use cross-attention
    only (no self-attention over pixels, which would cost (H W)^2 at full resolution for little
    gain at d tokens); the middle block also self-attends over its pixels (diffusers'
    ``UNetMidBlock2DCrossAttn`` has no cross-only option), at the lowest resolution only.
    One resolution halving per block after the first: H and W must be divisible by
    2^(blocks-1), every width by ``norm_num_groups`` and by ``attention_heads``.
    Raises :class:`ConfigError` / :class:`DataError` naming the unfit value.
    """
    diffusers = require_diffusers()
    if len(shape) != 3:
        raise DataError(f"diffusion generates images (C, H, W); got samples of shape {shape}")
    c, h, w = shape
    k = len(block_out_channels)
    if k < 1 or any(b < 1 or b % norm_num_groups for b in block_out_channels):
        raise ConfigError(
            f"every UNet width must be a positive multiple of norm_num_groups={norm_num_groups}, "
            f"got {tuple(block_out_channels)}"
        )
    if h % 2 ** (k - 1) or w % 2 ** (k - 1):
        raise DataError(f"images of {h}x{w} cannot be halved {k - 1} times by a {k}-level UNet")
    common = dict(sample_size=(h, w), in_channels=c, out_channels=c,
                  block_out_channels=tuple(block_out_channels), layers_per_block=layers_per_block,
                  norm_num_groups=norm_num_groups)  # fmt: skip
    if cross_attention_dim is None:
        return diffusers.UNet2DModel(
            down_block_types=("DownBlock2D",) * k,
            up_block_types=("UpBlock2D",) * k,
            class_embed_type="identity",
            **common,
        )
    if isinstance(cross_attention_dim, bool) or not isinstance(cross_attention_dim, int):
        raise ConfigError(f"cross_attention_dim must be an integer, got {cross_attention_dim!r}")
    if cross_attention_dim < 1:
        raise ConfigError(f"cross_attention_dim must be >= 1, got {cross_attention_dim}")
    if attention_heads < 1 or any(b % attention_heads for b in block_out_channels):
        raise ConfigError(
            f"every UNet width must be a multiple of attention_heads={attention_heads}, "
            f"got {tuple(block_out_channels)}"
        )
    return diffusers.UNet2DConditionModel(
        down_block_types=("CrossAttnDownBlock2D",) * k,
        up_block_types=("CrossAttnUpBlock2D",) * k,
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=attention_heads,  # diffusers' name for the head count (its issue 2011)
        only_cross_attention=True,
        **common,
    )


def code_conditioned_unet(
    tokenizer: Any,
    shape: tuple[int, ...],
    conditioning: str = "embedding",
    token_dim: int = 32,
    **unet_kwargs: Any,
) -> CodeConditionedUNet:
    """A fresh :class:`CodeConditionedUNet` for ``tokenizer``'s codes (its ``dim`` and prior).

    ``conditioning``: ``embedding`` (a ``UNet2DModel``; the code as its class embedding) or
    ``tokens`` (a ``UNet2DConditionModel``; the code as d cross-attention tokens (n, d,
    ``token_dim``)). ``unet_kwargs`` go to :func:`build_unet`.
    """
    if conditioning not in CONDITIONINGS:
        raise ConfigError(
            f"conditioning must be one of {', '.join(CONDITIONINGS)}, got {conditioning!r}"
        )
    prior = tokenizer.prior_name
    if conditioning == "tokens":
        unet = build_unet(shape, cross_attention_dim=token_dim, **unet_kwargs)
        return CodeConditionedUNet(unet, CodeTokens(tokenizer.dim, token_dim, prior))
    unet = build_unet(shape, **unet_kwargs)
    width = 4 * int(unet.config.block_out_channels[0])
    return CodeConditionedUNet(unet, CodeEmbedding(tokenizer.dim, width, prior))


def make_scheduler(kind: str = "ddpm", num_train_timesteps: int = 1000, **kwargs: Any) -> Any:
    """A ``diffusers`` ``DDPMScheduler`` or ``DDIMScheduler`` (same noise schedule for both)."""
    diffusers = require_diffusers()
    if kind not in SCHEDULERS:
        raise ConfigError(f"scheduler must be one of {', '.join(SCHEDULERS)}, got {kind!r}")
    cls = diffusers.DDPMScheduler if kind == "ddpm" else diffusers.DDIMScheduler
    return cls(num_train_timesteps=num_train_timesteps, **kwargs)


@torch.no_grad()
def sample_with_scheduler(
    model: CodeConditionedUNet,
    scheduler: Any,
    codes: Tensor | None,
    *,
    num_inference_steps: int = 25,
    guidance_scale: float = 1.0,
    n: int | None = None,
    generator: torch.Generator | None = None,
    on_step: Any = None,
) -> Tensor:
    """Run ``scheduler`` (any ``diffusers`` scheduler) from noise with the guided network.

    ``on_step()``, if given, is called after each denoising step (e.g. a progress bar's update).

    ``codes`` (n, d) condition each sample (None: ``n`` samples with the null code). The initial
    noise is drawn on the CPU from ``generator``, so a seed gives the same images on any device.
    Returns (n, C, H, W) in the model's space ([-1, 1] for dimgen's trainer), on the CPU.
    """
    if num_inference_steps < 1:
        raise ConfigError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
    device = next(model.parameters()).device
    count = len(codes) if codes is not None else n
    if count is None or count < 1:
        raise DataError("give codes (n, d) or n >= 1 for null-code samples")
    cfg = model.unet.config
    size = cfg.sample_size if isinstance(cfg.sample_size, (tuple, list)) else (cfg.sample_size,) * 2
    x = torch.randn(count, cfg.in_channels, *size, generator=generator).to(device)
    c = codes.to(device) if codes is not None else None
    scheduler.set_timesteps(num_inference_steps)
    was = model.training
    model.eval()
    for t in scheduler.timesteps:
        eps = model.guided(x, t.to(device), c, guidance_scale)
        x = scheduler.step(eps, t, x, generator=generator).prev_sample
        if on_step is not None:
            on_step()
    model.train(was)
    return x.cpu()
