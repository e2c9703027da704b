"""``dimgen export``: an encoder run as a Hugging Face-style folder (config, weights, model card)."""

from __future__ import annotations

import click
from dimgen.cli.options import check_out, check_run, out_option, quiet_option

__all__ = ["register"]


@click.command("export")
@click.argument("run", type=click.Path())
@out_option("The export folder to create (config.json, model.safetensors, README.md).",
            required=True, file_okay=False)  # fmt: skip
@quiet_option()
def export_cmd(run: str, out: str, quiet: bool) -> None:
    """Write encoder RUN as --out: config.json, model.safetensors and a README.md model card.

    The folder loads with dimgen.Tokenizer.from_pretrained(OUT) and can be uploaded to the
    Hugging Face Hub as it is.
    """
    check_run(run)  # before torch: a mistyped folder, a used --out
    check_out(out, "export")
    from dimgen.infomax.hub import export_run  # numpy, torch: once the arguments are known good
    from dimgen.infomax.tokenizer import Tokenizer
    from dimgen.io import read_run

    run_dir, _ = read_run(run, "encoder")
    # the one weights loader (names, shapes, dtypes, finite values): refuse before writing
    Tokenizer.from_weights(run_dir / "encoder.safetensors", "cpu", run_dir)
    path = export_run(run, out)
    click.echo(f"wrote {path}: config.json, model.safetensors, README.md")


def register(group: click.Group) -> None:
    group.add_command(export_cmd)
