"""``dimgen export``: an encoder run as a Hugging Face-style folder (config, weights, model card),
a diffusion run as a ``diffusers`` pipeline folder."""

from __future__ import annotations

import click
from dimgen.cli.options import check_out, check_run, out_option, quiet_option

__all__ = ["register"]


@click.command("export")
@click.argument("run", type=click.Path())
@out_option("The export folder to create: an encoder's model files, or a diffusion run's "
            "diffusers pipeline.", required=True, file_okay=False)  # fmt: skip
@click.option("--no-encoder", is_flag=True,
              help="Diffusion runs: leave the encoder out of the pipeline (no pipe(images=...)).")  # fmt: skip
@quiet_option()
def export_cmd(run: str, out: str, no_encoder: bool, quiet: bool) -> None:
    """Write RUN as --out, ready for the Hugging Face Hub as it is.

    An encoder run: config.json, model.safetensors and a README.md model card; it loads with
    dimgen.Tokenizer.from_pretrained(OUT). A diffusion run: a diffusers pipeline folder
    (model_index.json, unet/, scheduler/, code_embedding/, prior/, encoder/, README.md); it loads
    with dimgen.diffusion.pipeline.CodePipeline.from_pretrained(OUT).
    """
    check_run(run)  # before torch: a mistyped folder, a used --out
    check_out(out, "export")
    from dimgen.io import read_run

    run_dir, rec = read_run(run, ("encoder", "diffusion"))
    if rec.get("kind") == "diffusion":
        from dimgen.diffusion.export import export_pipeline

        path = export_pipeline(run_dir, out, encoder=not no_encoder)
        if not quiet:
            click.echo(f"wrote {path}: a diffusers pipeline (model_index.json, README.md, "
                   "unet, scheduler, code_embedding, prior" + ("" if no_encoder else ", encoder")
                       + ")")  # fmt: skip
        return
    from dimgen.infomax.hub import export_run  # numpy, torch: once the arguments are known good
    from dimgen.infomax.tokenizer import Tokenizer

    # the one weights loader (names, shapes, dtypes, finite values): refuse before writing
    Tokenizer.from_weights(run_dir / "encoder.safetensors", "cpu", run_dir)
    path = export_run(run, out)
    if not quiet:
        click.echo(f"wrote {path}: config.json, model.safetensors, README.md")


def register(group: click.Group) -> None:
    group.add_command(export_cmd)
