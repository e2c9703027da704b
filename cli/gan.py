"""``dimgen train-gan``, ``dimgen sample`` and ``dimgen evaluate-gan``: thin calls into dimgen.gan."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from dimgen.cli.options import (
    DEFAULT_SEED,
    check_out,
    check_run,
    config_option,
    data_option,
    data_root_option,
    device_option,
    given,
    out_option,
    parse_sets,
    quiet_option,
    seed_option,
    set_option,
    smoke_note,
    tensorboard_option,
    with_sets,
    writing,
)

__all__ = ["register"]


def guidance_options() -> Any:
    """``--guidance-scale`` (as in ``train-diffusion`` and diffusers), and ``--guidance``, the
    old spelling, kept as a hidden alias."""

    def deco(f: Any) -> Any:
        f = click.option(
            "--guidance", "guidance_old", type=float, hidden=True,
            help="The old name of --guidance-scale.",
        )(f)  # fmt: skip
        return click.option(
            "--guidance-scale", "guidance", type=float,
            help="Diffusion runs: classifier-free guidance scale [default: the run's].",
        )(f)  # fmt: skip

    return deco


def truncation_option() -> Any:
    """``--truncation T``: a GAN's noise drawn from N(0, I) truncated to [-T, T] (BigGAN)."""
    return click.option(
        "--truncation", type=float, default=None,
        help="GAN runs: draw G's noise from N(0, I) truncated to [-T, T] (BigGAN's truncation "
        "trick: fewer, cleaner modes; codes untouched) [default: off].",
    )  # fmt: skip


def _check_truncation(truncation: float | None) -> None:
    from dimgen.errors import ConfigError

    if truncation is not None and not (0 < truncation < float("inf")):
        raise ConfigError(f"--truncation must be a finite number > 0, got {truncation}")


def _guidance(new: float | None, old: float | None) -> float | None:
    from dimgen.errors import ConfigError

    if new is not None and old is not None:
        raise ConfigError("give --guidance-scale only (--guidance is its old name)")
    return new if new is not None else old


@click.command("train-gan")
@click.argument("encoder_run", type=click.Path(), required=False)
@out_option("The GAN run folder to create (required unless --resume).")
@click.option(
    "--resume", "resume_dir", type=click.Path(), help="Continue an interrupted GAN run folder."
)
@config_option()
@data_option("the encoder run's data")
@data_root_option()
@click.option(
    "--arch",
    type=click.Choice(["auto", "mlp", "dcgan"]),
    help="auto: DCGAN-style conv for square images with a side divisible by 4, else MLPs.",
)
@click.option("--steps", type=int, help="Generator updates.")
@click.option("--batch-size", type=int, help="Real images per step.")
@seed_option()
@device_option()
@click.option(
    "--devices",
    type=int,
    help="Data-parallel processes: one per GPU, or CPU processes (gloo). Or use torchrun.",
)
@set_option()
@click.option(
    "--fid-extractor",
    type=click.Path(dir_okay=False),
    help="Reference classifier for FID (used if it exists, else trained and written there).  "
    "[default: one per data set in $DIMGEN_CACHE or ~/.cache/dimgen]",
)
@tensorboard_option()
@quiet_option()
def train_gan_cmd(encoder_run: str | None, out: str | None, resume_dir: str | None,
                  config_path: str | None, sets: tuple[str, ...], quiet: bool, **flags: object) -> None:  # fmt: skip
    """Train a GAN conditioned on the codes of ENCODER_RUN (a `dimgen encode` run folder).

    --out is the GAN run folder to create; --data defaults to the encoder run's data. With
    --resume RUN, continue an interrupted GAN run from its last checkpoint.
    """
    from pathlib import Path

    from dimgen.config import load_config, replace
    from dimgen.errors import ConfigError

    if resume_dir is not None:
        if encoder_run or out or config_path or sets or any(v is not None for v in flags.values()):
            raise ConfigError("--resume uses the run's own config.yaml; pass no other options")
        run_dir = Path(resume_dir)
        if (run_dir / "run.json").is_file():
            raise ConfigError(f"{run_dir} is already complete; nothing to resume")
        if not (run_dir / "config.yaml").is_file():
            raise ConfigError(f"nothing to resume: {run_dir} has no config.yaml")
        from dimgen.gan.config import GANConfig  # torch-free

        cfg = load_config(run_dir / "config.yaml", GANConfig)
        from dimgen.gan import train_gan  # torch: once the arguments are known good

        writing(run_dir, "gan")
        run = train_gan(
            cfg,
            run_dir,
            progress=not quiet,
            resume=True,
        )
    else:
        if encoder_run is None or out is None:
            raise ConfigError("train-gan needs ENCODER_RUN and --out (or --resume RUN)")
        sets_given = parse_sets(sets)
        if config_path is not None and not Path(config_path).is_file():
            raise ConfigError(f"config file not found: {config_path}")
        from dimgen.gan.config import GANConfig  # torch-free: every value is checked first

        cfg = load_config(config_path, GANConfig) if config_path else GANConfig()
        cfg = with_sets(cfg, sets_given)
        cfg = replace(cfg, encoder_run=encoder_run, **flags)
        check_run(encoder_run)  # before torch: a mistyped folder, a used --out
        check_out(out, "gan")
        from dimgen.gan import train_gan  # torch: once the arguments are known good

        writing(out, "gan")
        run = train_gan(cfg, out, progress=not quiet)
    if run.path is None:  # a data-parallel process other than rank 0 (torchrun): rank 0 reports
        return
    m = run.metrics
    parts = [f"wrote {run.path}: {m['steps']} steps in {m['train_seconds']:.0f} s"]
    if "conditional_consistency" in m:
        parts.append(f"conditional consistency {m['conditional_consistency']:.1f}%")
        parts.append(f"unconditional class TV {m['class_tv_unconditional']:.3f}")
    click.echo(", ".join(parts) + smoke_note())


@click.command("sample")
@click.argument("run", type=click.Path())
@click.option("--unconditional", is_flag=True, help="Codes drawn from the encoder's prior.")
@click.option(
    "--from-images",
    "from_images",
    metavar="SOURCE",
    help="Codes of real images: digits | mnist:test | npz:PATH ... (bare names: the test split).",
)
@click.option(
    "--codes", "codes_path", type=click.Path(), help=".npz with an array 'codes' of shape (n, d)."
)
@click.option(
    "--prior",
    "prior_path",
    type=click.Path(),
    help="With --unconditional: draw codes from this dimgen flow run: a new prior (--to), or a "
    "code model of the encoder's codes (--to-codes: a flow or a Gaussian mixture).",
)
@click.option(
    "--temperature", type=float, default=None,
    help="With --unconditional, Gaussian codes: draw codes from T * N(0, I), or push T * N(0, I) "
    "through the --prior code model (dimgen flow --to-codes; Glow's temperature: T < 1 trades "
    "diversity for typical codes; a mixture scales each component's spread), T in (0, 10] "
    "[default: 1].",
)  # fmt: skip
@click.option(
    "-n", "--num-samples", "n", type=int, help="Number of samples [default: 64; with --codes: all]."
)
@seed_option()
@out_option("The PNG grid to write; an .npz of the images and codes is written beside it.",
            required=True)  # fmt: skip
@click.option("--nrow", type=int, default=8, show_default=True, help="Images per grid row.")
@data_root_option()
@click.option("--no-ema", is_flag=True, help="Use the raw generator instead of its EMA.")
@guidance_options()
@truncation_option()
@quiet_option()
def sample_cmd(run: str, unconditional: bool, from_images: str | None, codes_path: str | None,
               prior_path: str | None, temperature: float | None, n: int | None,
               seed: int | None, out: str, nrow: int, data_root: str | None, no_ema: bool,
               guidance: float | None, guidance_old: float | None, truncation: float | None,
               quiet: bool) -> None:  # fmt: skip
    """Generate images with a trained generator RUN (GAN or diffusion): from the prior, from
    real images, or given codes.

    --out is the PNG grid to write; an .npz with the images and codes is written beside it.
    """
    from dimgen.config import check_temperature
    from dimgen.errors import ConfigError, DataError

    guidance = _guidance(guidance, guidance_old)
    modes = [unconditional, from_images is not None, codes_path is not None]
    if sum(modes) != 1:
        raise ConfigError("give exactly one of --unconditional, --from-images SOURCE, --codes NPZ")
    if prior_path is not None and not unconditional:
        raise ConfigError("--prior only applies with --unconditional")
    if temperature is not None and not unconditional:
        raise ConfigError("--temperature only applies with --unconditional")
    check_temperature(temperature, "--temperature")
    if n is not None and n < 1:
        raise DataError(f"-n must be >= 1, got {n}")
    if nrow < 1:
        raise ConfigError(f"--nrow must be >= 1, got {nrow}")
    if guidance is not None and not (guidance >= 0 and guidance != float("inf")):
        raise ConfigError(f"--guidance-scale must be >= 0, got {guidance}")
    _check_truncation(truncation)
    if Path(out).suffix.lower() != ".png":  # before torch, as write_samples would after it
        raise ConfigError(f"--out must be a .png file, got {out}")
    check_run(run)  # before torch: a mistyped folder
    seed = DEFAULT_SEED if seed is None else seed
    from dimgen.gan import sample, write_samples  # torch: once the arguments are known good
    from dimgen.training.phases import status

    # loading the run, its data and the grid writer: 5 s under load, announced on a terminal
    with status("sample", f"loading {run}, sampling and writing {out}", not quiet):
        s = sample(run, unconditional=unconditional, from_images=from_images, codes=codes_path,
                   prior=prior_path, n=n, seed=seed, data_root=data_root, ema=not no_ema,
                   guidance_scale=guidance, truncation=truncation, temperature=temperature,
                   progress=not quiet)  # fmt: skip
        png, npz = write_samples(
            out, s.images, s.codes, real=s.real, labels=s.labels, seed=seed, nrow=nrow
        )
    click.echo(f"wrote {png} and {npz}: {len(s.images)} samples ({s.mode})")


@click.command("evaluate-gan")
@click.argument("run", type=click.Path())
@click.option(
    "-n",
    "--num-images",
    "n",
    type=int,
    help="Held-out images (and unconditional samples) [default: the run's eval_samples].",
)
@seed_option()
@data_root_option()
@click.option(
    "--inception-weights",
    type=click.Path(),
    help="Local torch-fidelity Inception weights: also report real fid / kid.",
)
@device_option()
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as one JSON object.")
@guidance_options()
@truncation_option()
@out_option("Also write the metrics to this JSON file.")
@quiet_option()
def evaluate_gan_cmd(run: str, n: int | None, seed: int | None, data_root: str | None,
                     inception_weights: str | None, device: str | None, as_json: bool,
                     guidance: float | None, guidance_old: float | None,
                     truncation: float | None, out: str | None, quiet: bool) -> None:  # fmt: skip
    """FID/KID, conditional consistency and class balance of a generator RUN (GAN or diffusion),
    conditional vs unconditional (`evaluate-gan` and `evaluate-generator` are one command).

    --out: also write the metrics to this JSON file. Each sampling phase and its time goes to
    stderr (not with --quiet), so stdout stays one JSON object with --json.
    """
    from dimgen.errors import DataError
    from dimgen.gan.config import MIN_EVAL_SAMPLES  # torch-free

    guidance = _guidance(guidance, guidance_old)

    if n is not None and n < MIN_EVAL_SAMPLES:
        raise DataError(
            f"-n must be >= {MIN_EVAL_SAMPLES} (FID / KID need that many images), got {n}"
        )
    if guidance is not None and not (guidance >= 0 and guidance != float("inf")):
        raise DataError(f"--guidance-scale must be >= 0, got {guidance}")
    _check_truncation(truncation)
    check_run(run)  # before torch: a mistyped folder
    from dimgen.fidelity import find_inception_weights
    from dimgen.gan import evaluate_run
    from dimgen.io import write_json

    metrics = evaluate_run(run, n=n, data_root=data_root, guidance_scale=guidance,
                           truncation=truncation, show=not quiet,
                           **given(seed=seed, device=device),
                           inception_weights=find_inception_weights(inception_weights))  # fmt: skip
    if out is not None:
        write_json(out, metrics)
    if as_json:
        click.echo(json.dumps(metrics, sort_keys=True))
        return
    for key in sorted(metrics):
        value = metrics[key]
        if isinstance(value, list):
            continue
        click.echo(f"{key}: {value:.4g}" if isinstance(value, float) else f"{key}: {value}")


def register(group: click.Group) -> None:
    from dimgen.cli.options import show_config_defaults

    from dimgen.gan.config import GANConfig

    show_config_defaults(train_gan_cmd, GANConfig)
    group.add_command(train_gan_cmd)
    group.add_command(sample_cmd)
    group.add_command(evaluate_gan_cmd)
    group.add_command(evaluate_gan_cmd, name="evaluate-generator")  # a generator-neutral alias
