"""``dimgen evaluate`` (tests, probes, plots for codes) and ``dimgen sweep`` (the noise sweep)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from dimgen.cli.options import (
    check_run,
    config_option,
    data_option,
    data_root_option,
    device_option,
    given,
    out_option,
    parse_sets,
    protocol_option,
    quiet_option,
    refuse_non_run,
    seed_option,
    set_option,
    smoke_note,
    tensorboard_option,
    with_sets,
    writing,
)

__all__ = ["register"]


@click.command("evaluate")
@click.argument("run", required=False, type=click.Path())
@click.option(
    "--codes",
    "codes_path",
    type=click.Path(dir_okay=False),
    help="Evaluate this .npz (arrays codes, optional labels and split) instead of a run folder.",
)
@click.option(
    "--prior",
    type=click.Choice(["gaussian", "uniform"]),
    help="Prior of --codes [default: gaussian]; a run folder names its own.",
)
@out_option(
    "Folder to write evaluation.json, report.md and plots to instead of RUN (default: into RUN, "
    "except with --json; nothing for --codes).",
    file_okay=False,
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object only.")
@click.option("--alpha", type=float, help="Significance level of the verdicts [default: 0.05].")
@seed_option()
@click.option(
    "--projections",
    "n_projections",
    type=int,
    help="Random orthonormal projections per subsample (at most d) [default: 16].",
)
@click.option(
    "--subsample", type=int, help="Subsample size of the univariate tests [default: 1000]."
)
@click.option(
    "--n-subsamples", type=int, help="Disjoint subsamples when there are more codes [default: 8]."
)
@protocol_option()
@click.option(
    "--paper-subsample",
    type=int,
    help="Codes per subsample of the paper protocol (its small bootstrap subsamples) [default: 100].",
)
@click.option(
    "--paper-resamples",
    type=int,
    help="Subsamples whose p-values the paper protocol averages [default: 100].",
)
@click.option("--no-plots", is_flag=True, help="Skip qq.png and codes.png.")
@click.option("--no-probes", is_flag=True, help="Skip the downstream classifiers.")
@quiet_option()
def evaluate_cmd(
    run: str | None,
    codes_path: str | None,
    prior: str | None,
    out: str | None,
    as_json: bool,
    no_plots: bool,
    no_probes: bool,
    quiet: bool,
    **opts: Any,
) -> None:
    """Test whether codes follow their prior and measure what they keep about the labels.

    RUN is an encoder run folder (from `dimgen encode`; or `dimgen pretrain`, whose codes are
    the probe split's embeddings after the noise channel): its held-out codes are tested and
    evaluation.json, report.md, metrics.json["evaluation"], qq.png and codes.png are written
    into it. With --codes FILE.npz any codes are evaluated. --out: the folder to write
    evaluation.json, report.md and plots to instead (default: into RUN, except with --json; nothing for --codes).
    The seed fixes projections, subsamples and probes. --protocol paper leads with the paper's
    Figure-1 statistic (mean p-values over small subsamples: descriptive, not a test); both are
    always computed and written, and the verdict is always the calibrated one.
    """
    import json

    from dimgen.config import replace
    from dimgen.diagnostics import EvalConfig
    from dimgen.errors import ConfigError

    overrides = given(**opts)  # the defaults live in dimgen.diagnostics.EvalConfig
    plots, probes = not no_plots, not no_probes
    if (run is None) == (codes_path is None):
        raise ConfigError("give either a run folder or --codes FILE.npz (not both)")
    replace(EvalConfig(), **overrides)  # refuse bad values before the heavy imports
    if run is not None:
        check_run(run)
        refuse_non_run(run, "an encoder or pretrain run")
    show = not quiet  # phase lines start once the codes are read (an error stays one line)
    from dimgen.diagnostics.runs import (
        evaluate_file,
        evaluate_run,
        load_codes,
        summary_lines,
        write_outputs,
    )

    if run is not None:
        ev = evaluate_run(
            run,
            prior=prior,
            write=out is None and not as_json,
            plots=plots,
            probes=probes,
            progress=show,
            **overrides,
        )
        target = Path(run) if out is None else Path(out)  # --json alone writes nothing
        if out is not None:
            codes, labels, split = load_codes(_run_dir(run) / "codes.npz")
            write_outputs(ev, Path(out), codes, labels, split, plots=plots)
    else:
        assert codes_path is not None
        ev = evaluate_file(codes_path, prior or "gaussian", out=out, plots=plots, probes=probes,
                           progress=show, **overrides)  # fmt: skip
        target = None if out is None else Path(out)
    if as_json:
        click.echo(json.dumps(ev.to_dict(), allow_nan=False))
        return
    what = run if run is not None else codes_path
    click.echo(f"evaluated {what}: {ev.n} {ev.tested_on}, d = {ev.dim}, {ev.prior} prior")
    for line in summary_lines(ev):
        click.echo(line)
    if target is not None:
        names = "evaluation.json, report.md" + (", qq.png, codes.png" if plots else "")
        click.echo(f"wrote {names} in {target}")


def _run_dir(run: str) -> Path:
    from dimgen.io import resolve_run_dir

    return resolve_run_dir(run)


@click.command("sweep")
@config_option()
@click.option("--sigmas", help="Comma-separated Gaussian noise levels, e.g. 0.05,0.1,0.3,1.")
@click.option("--epses", help="Comma-separated uniform noise half-widths (uniform prior).")
@click.option(
    "--runs", type=int, help="Encoders per noise level (seeds seed, seed+1, ...) [default: 5]."
)
@out_option(
    "The sweep folder to create, or to continue (the same command again).",
    required=True,
    file_okay=False,
)
@click.option("--prior", type=click.Choice(["gaussian", "uniform"]), help="Prior of the codes.")
@data_option()
@data_root_option()
@click.option("--dim", type=int, help="Code dimension.")
@click.option("--epochs", type=int, help="Training epochs of every run.")
@seed_option()
@device_option()
@set_option()
@click.option("--alpha", type=float, help="Significance level of the verdicts [default: 0.05].")
@protocol_option()
@tensorboard_option()
@quiet_option()
def sweep_cmd(
    config_path: str | None,
    sigmas: str | None,
    epses: str | None,
    runs: int | None,
    out: str,
    sets: tuple[str, ...],
    alpha: float | None,
    protocol: str | None,
    quiet: bool,
    **flags: Any,
) -> None:
    """Train RUNS encoders per noise level, evaluate each, and draw the paper's Figure 1.

    Writes sweep.csv, sweep_summary.csv, sweep.png and report.md into --out, the sweep folder
    (both p-value protocols in the CSVs; --protocol picks the one sweep.png draws);
    rerunning the same command reuses finished runs and resumes interrupted ones. Runs of one
    level use the seeds seed, seed + 1, ...
    """
    from dimgen.config import EncoderConfig, load_config, replace
    from dimgen.diagnostics import EvalConfig

    cfg = load_config(config_path) if config_path else EncoderConfig()
    cfg = with_sets(cfg, parse_sets(sets))
    cfg = replace(cfg, **flags)
    kwargs: dict[str, Any] = given(runs=runs)
    eval_cfg = replace(EvalConfig(), **given(alpha=alpha, protocol=protocol))
    from dimgen.infomax.sweep import (  # numpy, scipy: once the options are good
        parse_levels,
        run_sweep,
    )

    writing(out, "sweep")
    res = run_sweep(
        cfg,
        None if sigmas is None else parse_levels(sigmas, "--sigmas"),
        out=out,
        epses=None if epses is None else parse_levels(epses, "--epses"),
        eval_config=eval_cfg,
        progress=not quiet,
        log=None if quiet else (lambda line: click.echo(line, err=True)),
        **kwargs,
    )
    click.echo(
        f"wrote {res.path}: {len(res.rows)} runs over {len(res.summary)} {res.param} levels; "
        "sweep.csv, sweep_summary.csv, sweep.png, report.md" + smoke_note()
    )


def register(group: click.Group) -> None:
    from dimgen.cli.options import show_config_defaults

    from dimgen.config import EncoderConfig
    from dimgen.diagnostics.settings import EvalConfig

    show_config_defaults(evaluate_cmd, EvalConfig)
    show_config_defaults(sweep_cmd, EncoderConfig)
    group.add_command(evaluate_cmd)
    group.add_command(sweep_cmd)
