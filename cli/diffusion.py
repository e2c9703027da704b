"""``dimgen train-diffusion``: a thin call into dimgen.diffusion (``sample`` / ``evaluate-gan``
work on its run folders as on a GAN's)."""

from __future__ import annotations

import click
from dimgen.cli.options import (
    check_out,
    check_run,
    config_option,
    data_option,
    data_root_option,
    device_option,
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


def _check_diffusers() -> None:
    """A one-line error naming the extra when diffusers is missing (found without importing it)."""
    from importlib.util import find_spec

    from dimgen.errors import ConfigError

    if find_spec("diffusers") is None:
        raise ConfigError(
            "train-diffusion needs the optional dependency diffusers: pip install 'dimgen[diffusers]'"
        )


@click.command("train-diffusion")
@click.argument("encoder_run", type=click.Path(), required=False)
@out_option("The diffusion run folder to create (required unless --resume).")
@click.option(
    "--resume",
    "resume_dir",
    type=click.Path(),
    help="Continue an interrupted diffusion run folder.",
)
@config_option()
@data_option("the encoder run's data")
@data_root_option()
@click.option("--steps", type=int, help="Optimiser steps.")
@click.option("--batch-size", type=int, help="Images per optimiser step.")
@click.option("--guidance-scale", type=float, help="Classifier-free guidance for sampling.")
@seed_option()
@device_option()
@click.option(
    "--devices",
    type=int,
    help="Data-parallel processes: one per GPU, or CPU processes (gloo). Or use torchrun.",
)
@set_option()
@quiet_option()
def train_diffusion_cmd(encoder_run: str | None, out: str | None, resume_dir: str | None,
                        config_path: str | None, sets: tuple[str, ...], quiet: bool,
                        **flags: object) -> None:  # fmt: skip
    """Train a diffusers UNet conditioned on the codes of ENCODER_RUN (a `dimgen encode` run).

    --out is the diffusion run folder to create; --data defaults to the encoder run's data.
    With --resume RUN, continue an interrupted diffusion run from its last checkpoint.
    """
    from pathlib import Path

    from dimgen.config import load_config, replace, validate
    from dimgen.diffusion.config import DiffusionConfig  # no torch
    from dimgen.errors import ConfigError

    flags = {k: v for k, v in flags.items() if v is not None}
    if resume_dir is not None:
        if encoder_run or out or config_path or sets or flags:
            raise ConfigError("--resume uses the run's own config.yaml; pass no other options")
        run_dir = Path(resume_dir)
        if (run_dir / "run.json").is_file():
            raise ConfigError(f"{run_dir} is already complete; nothing to resume")
        if not (run_dir / "config.yaml").is_file():
            raise ConfigError(f"nothing to resume: {run_dir} has no config.yaml")
        cfg = load_config(run_dir / "config.yaml", DiffusionConfig)
        target, resume = run_dir, True
    else:
        if encoder_run is None or out is None:
            raise ConfigError("train-diffusion needs ENCODER_RUN and --out (or --resume RUN)")
        if config_path is not None and not Path(config_path).is_file():
            raise ConfigError(f"config file not found: {config_path}")
        cfg = load_config(config_path, DiffusionConfig) if config_path else DiffusionConfig()
        cfg = replace(with_sets(cfg, parse_sets(sets)), encoder_run=encoder_run, **flags)
        check_run(encoder_run)  # before torch: a mistyped folder, a used --out
        check_out(out, "diffusion")
        target, resume = Path(out), False
    validate(cfg)
    _check_diffusers()
    from dimgen.diffusion import train_diffusion  # torch: once the arguments are known good

    writing(target, "diffusion")
    run = train_diffusion(cfg, target, progress=not quiet, resume=resume)
    if run.path is None:  # a data-parallel process other than rank 0 (torchrun): rank 0 reports
        return
    m = run.metrics
    parts = [f"wrote {run.path}: {m['steps']} steps in {m['train_seconds']:.0f} s"]
    if "conditional_consistency" in m:
        parts.append(f"conditional consistency {m['conditional_consistency']:.1f}%")
        parts.append(f"unconditional class TV {m['class_tv_unconditional']:.3f}")
    click.echo(", ".join(parts) + smoke_note())


def register(group: click.Group) -> None:
    from dimgen.cli.options import show_config_defaults

    from dimgen.diffusion.config import DiffusionConfig  # torch-free

    show_config_defaults(train_diffusion_cmd, DiffusionConfig)
    group.add_command(train_diffusion_cmd)
