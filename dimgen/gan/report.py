"""The human-readable summary of a GAN run (``report.md``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import GANConfig

__all__ = ["comparison_section", "gan_report"]


def gan_report(metrics: dict[str, Any], cfg: GANConfig, enc_dir: Path) -> str:
    """A short human-readable summary of a GAN run (report.md)."""
    lines = [
        "# dimgen conditional GAN run",
        "",
        f"Encoder run `{enc_dir}` ({metrics['prior']} prior, d = {metrics['code_dim']}); data `{cfg.data}`; "
        f"{metrics['arch']} G/D, {cfg.conditioning} conditioning, {cfg.loss} loss"
        f"{' + spectral norm' if cfg.spectral_norm else ''}{f' + R1 ({cfg.r1_gamma})' if cfg.r1_gamma else ''}; "
        f"{cfg.steps} steps, batch {cfg.batch_size}; EMA {cfg.ema_decay or 'off'}; "
        f"{metrics['train_seconds']:.0f} s.",
        "",
    ]
    lines += comparison_section(metrics)
    lines += ["## Samples", "",
              "Conditional (columns alternate real | generated):", "", "![conditional](samples/conditional.png)", "",
              "Unconditional (codes from the prior):", "", "![unconditional](samples/unconditional.png)", ""]  # fmt: skip
    lines += ["## Training curves", "", f"Window means every {cfg.log_every} steps (`log.csv`):", "",
              "![training curves](curves.png)", ""]  # fmt: skip
    return "\n".join(lines)


def comparison_section(metrics: dict[str, Any]) -> list[str]:
    """The markdown table of conditional vs unconditional metrics (any generator's run)."""
    lines: list[str] = []
    if "n_eval" not in metrics:
        return lines
    lines += [f"## Conditional vs unconditional ({metrics['n_eval']} held-out images / samples)", "",
              "| metric | conditional (codes of real images) | unconditional (codes from the prior) |",
              "|---|---|---|"]  # fmt: skip
    if "conditional_consistency" in metrics:
        lines.append(f"| label consistency (%) | {metrics['conditional_consistency']:.1f} "
                     f"(classifier on real: {metrics['classifier_accuracy_real']:.1f}, chance "
                     f"{metrics['chance_consistency']:.1f}) | n/a |")  # fmt: skip
        lines.append(
            f"| class histogram TV vs data | {_num(metrics['class_tv_conditional'])} "
            f"| {_num(metrics['class_tv_unconditional'])} |"
        )
        lines.append(
            f"| classes covered (of {metrics['n_classes']}) | "
            f"{metrics['class_coverage_conditional']} | {metrics['class_coverage_unconditional']} |"
        )
    for key in ("fid_dimgen_classifier", "kid_dimgen_classifier", "fid", "kid"):
        if f"{key}_conditional" in metrics:
            lines.append(f"| {key} | {_num(metrics[f'{key}_conditional'])} | "
                         f"{_num(metrics[f'{key}_unconditional'])} |")  # fmt: skip
    if "encoder_knn_acc" in metrics and "conditional_consistency" in metrics:
        lines += ["", f"The codes keep {100 * metrics['encoder_knn_acc']:.1f}% 5-NN label accuracy "
                      "(held-out): roughly the ceiling for the label consistency."]  # fmt: skip
    if "fid_dimgen_classifier_real" in metrics:
        lines += ["", f"Reference: training vs held-out real images give fid_dimgen_classifier = "
                      f"{metrics['fid_dimgen_classifier_real']:.3f}, kid_dimgen_classifier = "
                      f"{metrics['kid_dimgen_classifier_real']:.4f} (the metric's floor at this sample size)."]  # fmt: skip
    if "feature_extractor" in metrics:
        lines += ["", f"`fid_dimgen_classifier` / `kid_dimgen_classifier` use the penultimate features of a "
                      f"classifier trained on the labelled training images (torch-fidelity extractor "
                      f"`{metrics['feature_extractor']}`), not Inception: compare them across runs on the same "
                      f"data, not with published FIDs."]  # fmt: skip
    lines.append("")
    return lines


def _num(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
