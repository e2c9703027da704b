"""``dimgen pretrain`` (noise-injected SimCLR / VICReg / Deep InfoMax) and ``dimgen probe``: thin calls into
dimgen.ssl. Arguments are checked before torch is imported."""

from __future__ import annotations

import json

import click
from dimgen.cli.options import (
    check_out,
    check_run,
    config_option,
    data_root_option,
    device_option,
    given,
    out_option,
    parse_sets,
    quiet_option,
    seed_option,
    set_option,
    smoke_note,
    with_sets,
    writing,
)

__all__ = ["register"]


@click.command("pretrain")
@out_option("The run folder to create (required unless --resume).")
@click.option("--resume", "resume_dir", type=click.Path(), help="Continue an interrupted run.")
@config_option()
@data_root_option()
@click.option(
    "--method",
    type=click.Choice(["simclr", "vicreg", "dim"]),
    help="SSL objective: simclr (NT-Xent), vicreg, or dim (noise-injected Deep InfoMax).",
)
@click.option("--sigma", type=float, help="Channel noise std on the embedding (0: off).")
@click.option("--epochs", type=int, help="Passes over the training images.")
@click.option("--batch-size", type=int, help="Images per optimiser step (two views each).")
@seed_option()
@device_option()
@set_option()
@quiet_option()
def pretrain_cmd(out: str | None, resume_dir: str | None, config_path: str | None,
                 sets: tuple[str, ...], quiet: bool, **flags: object) -> None:  # fmt: skip
    """Pre-train a ResNet-18 with SimCLR, VICReg or DIM and the noise channel on its embedding.

    --out is the run folder to create (config.yaml, model.safetensors, codes.npz, metrics.json,
    run.json). The data is the config's `data` field: cifar10 | cifar100 | cifar10-test-lossy
    (default; the lossy CIFAR-10 test copy under --data-root, split at random) | npz:PATH |
    folder:PATH (RGB images resized to image_size; probing needs PATH/<class>/<image>); set it
    with --set data=SOURCE. With --resume RUN, continue an interrupted run from its last checkpoint.
    """
    from pathlib import Path

    from dimgen.config import load_config, replace
    from dimgen.errors import ConfigError
    from dimgen.ssl.config import PretrainConfig  # torch-free

    if resume_dir is not None:
        if out or config_path or sets or any(v is not None for v in flags.values()):
            raise ConfigError("--resume uses the run's own config.yaml; pass no other options")
        run_dir = Path(resume_dir)
        if (run_dir / "run.json").is_file():
            raise ConfigError(f"{run_dir} is already complete; nothing to resume")
        if not (run_dir / "config.yaml").is_file():
            raise ConfigError(f"nothing to resume: {run_dir} has no config.yaml")
        cfg, target, resume = load_config(run_dir / "config.yaml", PretrainConfig), run_dir, True
    else:
        if out is None:
            raise ConfigError("pretrain needs --out (or --resume RUN)")
        cfg = load_config(config_path, PretrainConfig) if config_path else PretrainConfig()
        cfg = with_sets(cfg, parse_sets(sets))
        cfg = replace(cfg, **given(**flags))
        target, resume = Path(out), False
        check_out(target, "pretrain")  # before torch: a used --out is refused in a second
    from dimgen.ssl.trainer import pretrain  # torch: once the arguments are known good

    writing(target, "pretrain")
    run = pretrain(cfg, target, progress=not quiet, resume=resume)
    if run.path is None:  # a data-parallel process other than rank 0 (torchrun): rank 0 reports
        return
    m = run.metrics
    click.echo(f"wrote {target}: {m['method']} sigma {m['sigma']}, {m['steps']} steps in "
               f"{m['train_seconds']:.0f} s, final loss {m['final_loss']:.4g} ({m['data']})"
               + smoke_note())  # fmt: skip


@click.command("probe")
@click.argument("run", type=click.Path())
@click.option(
    "-k", "k", type=int, default=20, show_default=True, help="Neighbours of the kNN probe."
)
@click.option(
    "--wknn-k", type=int, default=200, show_default=True,
    help="Neighbours of the weighted kNN (the SSL benchmarks' protocol).",
)  # fmt: skip
@click.option(
    "--temperature", type=float, default=0.1, show_default=True,
    help="Temperature of the weighted kNN's exp(similarity / T) votes.",
)  # fmt: skip
@click.option(
    "--sgd-epochs", type=int, default=100, show_default=True,
    help="Epochs of the SGD-trained linear head (solo-learn's protocol).",
)  # fmt: skip
@data_root_option()
@device_option()
@seed_option()
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@out_option("Also write the result to this JSON file.")
@quiet_option()
def probe_cmd(run: str, k: int, wknn_k: int, temperature: float, sgd_epochs: int,
              data_root: str | None, device: str | None, seed: int | None, as_json: bool,
              out: str | None, quiet: bool) -> None:  # fmt: skip
    """Linear probes (top-1, top-5) and kNN accuracy on the frozen backbone of a pretrain RUN.

    scikit-learn's logistic regression and cosine kNN (-k), and the SSL literature's protocols:
    a linear head trained with SGD (solo-learn's, the paper's Table 1) and the weighted kNN
    (k = 200, T = 0.1: lightly's / InstDisc's). Every probe trains on the run's labelled
    pre-training split and scores its probe split. --out: also write the result to this JSON file.
    """
    import math
    from pathlib import Path

    from dimgen.errors import ConfigError, RunFolderError

    if k < 1:
        raise ConfigError(f"-k must be >= 1, got {k}")
    if wknn_k < 1:
        raise ConfigError(f"--wknn-k must be >= 1, got {wknn_k}")
    if not (math.isfinite(temperature) and temperature > 0):
        raise ConfigError(f"--temperature must be a positive number, got {temperature}")
    if sgd_epochs < 1:
        raise ConfigError(f"--sgd-epochs must be >= 1, got {sgd_epochs}")
    check_run(run)
    if not Path(run).is_dir():
        raise RunFolderError(f"{run} is not a run folder")
    from dimgen.io import write_json
    from dimgen.ssl.probe import probe_run  # torch: once the arguments are known good

    res = probe_run(run, data_root=data_root, device=device or "cpu", k=k, seed=seed,
                    progress=not quiet, wknn_k=wknn_k, wknn_temperature=temperature,
                    sgd_epochs=sgd_epochs)  # fmt: skip
    if out is not None:
        write_json(out, res)
    if as_json:
        click.echo(json.dumps(res, sort_keys=True))
        return
    click.echo(f"linear top-1 {res['top1']:.2f}%, top-5 {res['top5']:.2f}%, kNN (k={res['knn_k']}) "
               f"{res['knn']:.2f}%; SGD linear top-1 {res['sgd_top1']:.2f}%, top-5 "
               f"{res['sgd_top5']:.2f}%; weighted kNN (k={res['wknn_k']}, "
               f"T={res['wknn_temperature']:g}) top-1 {res['wknn_top1']:.2f}%, top-5 "
               f"{res['wknn_top5']:.2f}% ({res['data']})")  # fmt: skip


def register(group: click.Group) -> None:
    from dimgen.cli.options import show_config_defaults

    from dimgen.ssl.config import PretrainConfig  # torch-free

    show_config_defaults(pretrain_cmd, PretrainConfig)
    group.add_command(pretrain_cmd)
    group.add_command(probe_cmd)
