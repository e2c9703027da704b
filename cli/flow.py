"""``dimgen flow``: map an encoder run's codes to another prior (exact map or trained flow)."""

from __future__ import annotations

import click
from dimgen.cli.options import (
    check_out,
    check_run,
    config_option,
    out_option,
    parse_sets,
    quiet_option,
    seed_option,
    set_option,
    smoke_note,
    with_sets,
    writing,
)

from dimgen.flows.config import METHODS

__all__ = ["register"]

_TARGETS = (
    "uniform | gaussian | laplace | logistic | cauchy | exponential (scipy.stats loc/scale "
    "parameters, e.g. 'laplace(scale=2)') | scipy:NAME(k=v,...) | mixture:K(radius=3,std=0.5,seed=0)"
)


@click.command("flow")
@click.argument("run", type=click.Path())
@click.option("--to", "to", metavar="TARGET", help=f"Target prior: {_TARGETS}.")
@click.option(
    "--to-samples",
    type=click.Path(dir_okay=False),
    help="Target given as samples: .npz with array 'x' (or 'samples') of shape (n, d).",
)
@click.option(
    "--to-codes",
    is_flag=True,
    help="Fit a code model instead: a flow T with T#prior ~ RUN's own training codes (or, with "
    "--method gmm, a Gaussian mixture of them), for 'dimgen sample --unconditional --prior' when "
    "the codes miss their prior (the RCG route).",
)
@out_option("The flow run folder to create.", required=True)
@config_option()
@click.option(
    "--method",
    type=click.Choice(METHODS),
    help="auto: exact for 1-D laws, else rqs; gmm (with --to-codes): a Gaussian-mixture code model.",
)
@click.option(
    "--components",
    type=int,
    help="Gaussians of a --method gmm code model (at most the distinct training codes, and "
    "2 K (d + 1) codes are needed to fit K).",
)
@click.option(
    "--backend",
    type=click.Choice(["nflows", "zuko"]),
    help="Flow library (zuko: pip install 'dimgen[zuko]').  [default: nflows]",
)
@click.option("--layers", type=int, help="Flow layers.")
@click.option("--hidden", type=int, help="Hidden width of each flow layer.")
@click.option("--bins", type=int, help="Spline bins (rqs).")
@click.option("--steps", type=int, help="Training steps.")
@click.option("--batch-size", type=int, help="Target samples per training step.")
@click.option("--lr", type=float, help="Adam learning rate.")
@seed_option()
@set_option()
@quiet_option()
def flow(run: str, to: str | None, to_samples: str | None, to_codes: bool, out: str | None,
         config_path: str | None, sets: tuple[str, ...], quiet: bool, **flags: object) -> None:  # fmt: skip
    """Map the codes of encoder RUN to another prior and write a flow run folder (or, with
    --to-codes, fit a code model of RUN's own codes).

    An i.i.d. 1-D target is reached exactly (probability-integral transform, no training);
    --to mixture:K and sample-defined targets by a trained normalizing flow. The report gives
    the KL bound carried from RUN beside kNN and likelihood estimates. A code model
    (--to-codes) is a flow, or with --method gmm a Gaussian mixture, which suits codes in
    separated clusters (d >= 4) better. --out is the flow run folder to create; --config and
    --set fill a FlowConfig.
    """
    from dimgen.config import load_config, replace
    from dimgen.errors import ConfigError
    from dimgen.flows.config import FlowConfig, check_method_target, check_options_apply

    if out is None:
        raise ConfigError("--out is required (the flow run folder to create)")
    cfg = load_config(config_path, FlowConfig) if config_path else FlowConfig()
    overrides = parse_sets(sets)
    cfg = replace(with_sets(cfg, overrides), **flags)
    check_method_target(cfg, to_codes)
    given = {k: f"--set {k}" for k in overrides}  # and flags; not --config's fields
    given.update({k: "--" + k.replace("_", "-") for k, v in flags.items() if v is not None})
    check_options_apply(cfg.method, {k: v for k, v in given.items() if k not in ("method", "seed")})
    check_run(run)  # before torch: a mistyped folder, a used --out
    check_out(out, "flow")
    from dimgen.flows.runs import transform_codes  # torch: once the arguments are known good

    writing(out, "flow")
    res = transform_codes(run, to, to_samples=to_samples, to_codes=to_codes, config=cfg, out=out,
                          progress=not quiet)  # fmt: skip
    m = res.metrics
    if to_codes:
        click.echo(
            f"wrote {out}: {m['method']} code model of {run}'s training codes (d = {m['dim']}; "
            f"{m['n_target_train']} fitted, {m['n_target_test']} held back for the fit's NLL); "
            f"{m['code_model_gain_codes']} codes are "
            f"{m['code_model_gain_nats']:.3f} nats/code more likely under it than under the "
            f"{m['source_prior']} prior [estimate]" + smoke_note()
        )
        return
    how = "exact map" if m["method"] == "exact" else f"{m['method']} flow"
    click.echo(
        f"wrote {out}: {how} {m['source_prior']} -> {m['target']} (d = {m['dim']}); "
        f"KL bound {m['kl_upper_bound_nats']:.3f} nats [bound on the noisy codes, {m['kl_bound_applies_to']}], "
        f"kNN KL(T#codes || target) {m['kl_estimate_knn_nats']:.3f} nats [estimate]" + smoke_note()
    )
    if m["method"] != "exact":
        click.echo(
            f"  flow fit: held-out NLL {m['heldout_nll_nats']:.3f} vs target entropy "
            f"{m['target_entropy_nats']:.3f} -> KL(target || T#prior) ~ {m['kl_estimate_fit_nats']:.3f} nats [estimate]"
        )


def register(group: click.Group) -> None:
    from dimgen.cli.options import show_config_defaults

    from dimgen.flows.config import FlowConfig

    show_config_defaults(flow, FlowConfig)
    group.add_command(flow)
