"""``dimgen encode``: train a noise-injected encoder, or encode new data with a trained one."""

from __future__ import annotations

from pathlib import Path

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
    tensorboard_option,
    with_sets,
    writing,
)

__all__ = ["register"]


@click.command("encode")
@config_option()
@data_option()
@data_root_option()
@click.option(
    "--prior", type=click.Choice(["gaussian", "uniform"]), help="Target distribution of the codes."
)
@click.option("--sigma", type=float, help="Gaussian channel noise std (> 0).")
@click.option("--eps", type=float, help="Uniform channel noise half-width, in (0, 0.5].")
@click.option("--dim", type=int, help="Code dimension.")
@click.option(
    "--epochs", type=int, help="Training epochs (an epoch: floor(n_train / batch) steps)."
)
@click.option("--batch-size", type=int, help="Batch size (the global batch with --devices).")
@click.option("--lr", type=float, help="Adam learning rate.")
@click.option("--aug-noise", type=float, help="Std of the pixel-noise augmentation.")
@click.option("--critic", type=click.Choice(["mlp", "separable"]), help="MI critic network.")
@click.option("--bound", type=click.Choice(["infonce", "dv", "nwj"]), help="MI lower bound.")
@seed_option()
@device_option()
@click.option(
    "--devices",
    type=int,
    help="Data-parallel processes: one per GPU, or CPU processes (gloo). Or use torchrun.",
)
@set_option()
@click.option(
    "--encoder",
    "encoder_run",
    type=click.Path(),
    help="Encode --data with this trained encoder (a run or export folder, or a Hub id "
    "user/repo) instead of training.",
)
@click.option(
    "--resume", "resume_dir", type=click.Path(), help="Continue an interrupted run folder."
)
@tensorboard_option()
@out_option(
    "The run folder to create (required unless --resume); with --encoder, the .npz of codes "
    "to write."
)
@quiet_option()
def encode(config_path: str | None, encoder_run: str | None, resume_dir: str | None, out: str | None,
           quiet: bool, sets: tuple[str, ...], **flags: object) -> None:  # fmt: skip
    """Train an encoder whose codes follow a Gaussian or uniform prior, and write a run folder.

    --out (required unless --resume) is the run folder to create. With --resume RUN, continue an
    interrupted run from its last checkpoint. With --encoder RUN, encode --data with an already
    trained encoder and write the codes to --out, an .npz file.
    """
    from dimgen.config import EncoderConfig, load_config, load_run_config, replace
    from dimgen.errors import ConfigError

    if encoder_run is not None:
        if resume_dir is not None:
            raise ConfigError("--encoder and --resume cannot be combined")
        _encode_only(encoder_run, flags.get("data"), flags.get("data_root"), out)
        return
    if resume_dir is not None:
        run_dir = Path(resume_dir)
        if out is not None and Path(out) != run_dir:
            raise ConfigError("--resume continues the given folder; drop --out")
        if not (run_dir / "config.yaml").is_file():
            raise ConfigError(f"nothing to resume: {run_dir} has no config.yaml")
        if (run_dir / "run.json").is_file():
            raise ConfigError(f"{run_dir} is already complete; nothing to resume")
        if config_path or any(v is not None for v in flags.values()) or sets:
            raise ConfigError("--resume uses the run's own config.yaml; do not pass other options")
        cfg = load_run_config(run_dir / "config.yaml")
        target, resume = run_dir, True
    else:
        if out is None:
            raise ConfigError("--out is required (the run folder to create), unless --resume RUN")
        cfg = load_config(config_path) if config_path else EncoderConfig()
        cfg = with_sets(cfg, parse_sets(sets))
        cfg = replace(cfg, **flags)
        check_out(out, "encoder")  # before torch: a used --out is refused in a second
        target, resume = out, False
    from dimgen.infomax.trainer import (
        train_encoder,  # torch: only once the arguments are known to be good
    )

    writing(target, "encoder")
    run = train_encoder(cfg, target, progress=not quiet, resume=resume)
    if run.path is None and not run.metrics:  # a data-parallel worker other than rank 0
        return
    m = run.metrics
    click.echo(
        f"wrote {run.path}: capacity {m['capacity_nats']:.3f} nats, MI >= {m['mi_lower_bound_nats']:.3f}, "
        f"KL <= {m['kl_upper_bound_nats']:.3f}"
        + (f", kNN acc {m['knn_acc']:.3f}" if "knn_acc" in m else "")
        + smoke_note()
    )


def _encode_only(encoder_run: str, data: object, data_root: object, out: str | None) -> None:
    from dimgen.errors import ConfigError

    if out is None:
        raise ConfigError("--out is required (the .npz file to write)")
    if data is None:
        raise ConfigError("--encoder needs --data (what to encode)")
    if Path(out).suffix != ".npz":
        raise ConfigError(f"--out must end in .npz when encoding with --encoder, got {out}")
    check_run(encoder_run, hub=True)  # a mistyped local folder is not sent to the Hub
    import numpy as np

    from dimgen.data import load_data, parse_source, read_npz
    from dimgen.data.stream import is_streamed, load_stream
    from dimgen.infomax.tokenizer import Tokenizer
    from dimgen.io import save_npz

    tok = Tokenizer.from_pretrained(encoder_run)
    name, which = parse_source(str(data))
    if name.startswith("npz:"):  # keep the file's row order
        x, y, file_split = read_npz(name[4:])
        split = file_split if file_split is not None else np.array(["all"] * len(x))
    elif is_streamed(name):  # decoded a batch at a time, in the order of the in-memory path
        st = load_stream(name)
        got = {"train": (st.x_train, st.y_train), "test": (st.x_test, st.y_test)}
        parts = ["train", "test"] if which in (None, "all") else [which]
        x = got[parts[0]][0] if len(parts) == 1 else st.x_train.joined(st.x_test)
        ys = [got[p][1] for p in parts]
        y = None if any(v is None for v in ys) else np.concatenate(ys)  # type: ignore[arg-type]
        split = np.concatenate([np.array([p] * len(got[p][0])) for p in parts])
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
    save_npz(path, **arrays)
    click.echo(
        f"wrote {path}: {len(codes)} codes of dimension {codes.shape[1]} ({tok.prior_name} prior)"
    )


def register(group: click.Group) -> None:
    from dimgen.cli.options import show_config_defaults

    from dimgen.config import EncoderConfig

    show_config_defaults(encode, EncoderConfig)
    group.add_command(encode)
