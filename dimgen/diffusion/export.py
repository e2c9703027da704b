"""``dimgen export`` for a diffusion run: the run as a ``diffusers`` pipeline folder.

The folder is :class:`~dimgen.diffusion.pipeline.CodePipeline`'s ``save_pretrained`` layout
plus a ``README.md`` card, written whole like an encoder export
(:func:`dimgen.infomax.hub.write_folder`: a hidden folder inside ``out`` whose files are renamed
into place, under the folder lock).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..infomax.hub import _num, read_json_or_empty, write_folder
from ..io import read_run, write_text

__all__ = ["export_pipeline", "pipeline_card"]


def export_pipeline(run: str | Path, out: str | Path, encoder: bool = True) -> Path:
    """Write diffusion run ``run`` as a ``diffusers`` pipeline folder ``out``
    (:class:`dimgen.diffusion.pipeline.CodePipeline`: ``save_pretrained``'s layout, weights
    as safetensors, the EMA weights where the run kept them, and a ``README.md`` card).

    Written whole, as :func:`export_run` (:func:`write_folder`). ``encoder``: include the
    frozen encoder (needed for ``pipe(images=...)``).

    Raises:
        RunFolderError: an incomplete or foreign run folder, or an ``out`` in use / not empty.
        WriteError: the folder cannot be written.
    """
    from ..training.run_folder import check_new_folder
    from .model import DiffusionModel
    from .pipeline import CodePipeline

    run_dir, rec = read_run(run, "diffusion")
    check_new_folder(Path(out))
    model = DiffusionModel.from_pretrained(run_dir)  # every weights check, before writing
    pipe = CodePipeline.from_model(model, encoder=encoder)
    card = pipeline_card(run_dir, rec, model)

    def fill(tmp: Path) -> None:
        pipe.save_pretrained(tmp, safe_serialization=True)
        write_text(tmp / "README.md", card)

    return write_folder(out, fill)


def pipeline_card(run_dir: Path, rec: dict[str, Any], model: Any) -> str:
    """The ``README.md`` of a pipeline export: data, prior, sampler, the encoder's certificate."""
    metrics = read_json_or_empty(run_dir / "metrics.json")
    smoke = rec.get("smoke") or metrics.get("smoke")
    spec, cfg = model.spec, model.config
    tags = "dimgen, diffusers, deep-infomax, code-conditioned" + (", smoke-test" if smoke else "")
    lines = ["---", "library_name: diffusers", f"tags: [{tags}]", "---", ""]
    if smoke:
        lines += ["> **Smoke run, not a trained model** (DIMGEN_SMOKE=1).", ""]
    lines += [
        f"# dimgen code-conditioned diffusion: {rec.get('data', 'unknown')}, {spec['prior']} "
        f"prior, d = {spec['code_dim']}", "",
        "A `diffusers` UNet2DModel denoising under the codes of a noise-injected Deep InfoMax "
        "encoder; codes drawn from the prior give unconditional samples with no second model.",
        "", f"- sampler: {cfg.scheduler}, {cfg.sample_steps} steps, guidance scale "
        f"{cfg.guidance_scale}", f"- trained {cfg.steps} steps; encoder 5-NN accuracy: "
        f"{_num(metrics.get('encoder_knn_acc'), 3)}",
        "", "## Use", "", "```python", "import torch",
        "from dimgen.diffusion.pipeline import CodePipeline", "",
        'pipe = CodePipeline.from_pretrained("THIS_FOLDER_OR_REPO")',
        "images = pipe(num_images=16, generator=torch.Generator().manual_seed(0)).images",
        "```", "",
    ]  # fmt: skip
    return "\n".join(lines)
