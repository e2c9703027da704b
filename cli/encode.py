"""``dimgen encode``: train a noise-injected encoder, or encode new data with a trained one."""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["register"]


@click.command("encode")
@click.option(
    "--config", "config_path", type=click.Path(dir_okay=False), help="YAML preset (see configs/)."
)
@click.option(
    "--data", help="digits | mnist | fashion-mnist | cifar10 | npz:PATH  [default: digits]"
)
@click.option("--data-root", help="Folder with torchvision data sets (else $DIMGEN_DATA).")
@click.option(
    "--prior", type=click.Choice(["gaussian", "uniform"]), help="Target distribution of the codes."
)
@click.option("--sigma", type=float, help="Gaussian channel noise std (> 0).")
@click.option("--eps", type=float, help="Uniform channel noise half-width, in (0, 0.5].")
@click.option("--dim", type=int, help="Code dimension.")
@click.option("--epochs", type=int)
@click.option("--batch-size", type=int)
@click.option("--lr", type=float)
@click.option("--aug-noise", type=float, help="Std of the pixel-noise augmentation.")
@click.option("--critic", type=click.Choice(["mlp", "separable"]))
@click.option("--bound", type=click.Choice(["infonce", "dv", "nwj"]))
@click.option("--seed", type=int)
@click.option("--device", help="auto | cpu | cuda | cuda:N")
@click.option(
    "--devices",
    type=int,
    help="Data-parallel processes: one per GPU, or CPU processes (gloo). Or use torchrun.",
)
@click.option(
    "--set", "sets", multiple=True, metavar="KEY=VALUE", help="Any other config field (YAML value)."
)
@click.option(
    "--encoder",
    "encoder_run",
    type=click.Path(),
    help="Encode --data with this trained run instead of training.",
)
@click.option(
    "--resume", "resume_dir", type=click.Path(), help="Continue an interrupted run folder."
)
@click.option(
    "--out", type=click.Path(), help="Run folder to create (or .npz file with --encoder)."
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def encode(config_path: str | None, encoder_run: str | None, resume_dir: str | None, out: str | None,
           quiet: bool, sets: tuple[str, ...], **flags: object) -> None:  # fmt: skip
    """Train an encoder whose codes follow a Gaussian or uniform prior, and write a run folder.

    With --encoder RUN, encode --data with an already trained encoder and write codes to --out.
    """
    from dimgen.errors import ConfigError

    if encoder_run is not None:
        if resume_dir is not None:
            raise ConfigError("--encoder and --resume cannot be combined")
        _encode_only(encoder_run, flags.get("data"), flags.get("data_root"), out)
        return
    from dimgen.config import EncoderConfig, load_config, load_run_config, replace
    from dimgen.train import train_encoder

    if resume_dir is not None:
        run_dir = Path(resume_dir)
        if out is not None and Path(out) != run_dir:
            raise ConfigError("--resume continues the given folder; drop --out")
        if not (run_dir / "config.yaml").is_file():
            raise ConfigError(f"nothing to resume: {run_dir} has no config.yaml")
        if (run_dir / "run.json").is_file():
            raise ConfigError(f"{run_dir} is already complete; nothing to resume")
        cfg = load_run_config(run_dir / "config.yaml")
        if config_path or any(v is not None for v in flags.values()) or sets:
            raise ConfigError("--resume uses the run's own config.yaml; do not pass other options")
        run = train_encoder(cfg, run_dir, progress=not quiet, resume=True)
    else:
        if out is None:
            raise ConfigError("--out is required (the run folder to create)")
        cfg = load_config(config_path) if config_path else EncoderConfig()
        cfg = replace(cfg, **_parse_sets(sets))
        cfg = replace(cfg, **flags)
        run = train_encoder(cfg, out, progress=not quiet)
    if run.path is None and not run.metrics:  # a data-parallel worker other than rank 0
        return
    m = run.metrics
    click.echo(
        f"wrote {run.path}: capacity {m['capacity_nats']:.3f} nats, MI >= {m['mi_lower_bound_nats']:.3f}, "
        f"KL <= {m['kl_upper_bound_nats']:.3f}"
        + (f", kNN acc {m['knn_acc']:.3f}" if "knn_acc" in m else "")
    )


def _parse_sets(sets: tuple[str, ...]) -> dict[str, object]:
    import yaml

    from dimgen.errors import ConfigError

    out: dict[str, object] = {}
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            out[key.strip().replace("-", "_")] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ConfigError(f"--set {key}: value {value!r} is not valid YAML") from None
    return out


def _encode_only(encoder_run: str, data: object, data_root: object, out: str | None) -> None:
    import numpy as np

    from dimgen.data import load_data, parse_source, read_npz
    from dimgen.errors import ConfigError
    from dimgen.io import save_npz
    from dimgen.tokenizer import Tokenizer

    if out is None:
        raise ConfigError("--out is required (the .npz file to write)")
    if data is None:
        raise ConfigError("--encoder needs --data (what to encode)")
    tok = Tokenizer.from_pretrained(encoder_run)
    name, which = parse_source(str(data))
    if name.startswith("npz:"):  # keep the file's row order
        x, y, file_split = read_npz(name[4:])
        split = file_split if file_split is not None else np.array(["all"] * len(x))
    else:
        ds = load_data(name, None if data_root is None else str(data_root))
        parts = ["train", "test"] if which in (None, "all") else [which]
        xs, ys, ss = [], [], []
        for part in parts:
            xp, yp = ds.split(part)
            xs.append(xp)
            ys.append(yp)
            ss.append(np.array([part] * len(xp)))
        x = np.concatenate(xs)
        y = None if any(v is None for v in ys) else np.concatenate(ys)  # type: ignore[arg-type]
        split = np.concatenate(ss)
    codes = tok.encode(x).numpy()
    arrays = {"codes": codes, "split": split}
    if y is not None:
        arrays["labels"] = y
    path = Path(out)
    if path.suffix != ".npz":
        raise ConfigError(f"--out must end in .npz when encoding with --encoder, got {out}")
    save_npz(path, **arrays)
    click.echo(
        f"wrote {path}: {len(codes)} codes of dimension {codes.shape[1]} ({tok.prior_name} prior)"
    )


def register(group: click.Group) -> None:
    group.add_command(encode)
