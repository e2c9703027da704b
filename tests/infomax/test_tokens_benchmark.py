"""benchmarks/tokens.py: FSQ as a drop-in channel at equal bits, and the snapped-code bound."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location("tokens_bench", ROOT / "benchmarks" / "tokens.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize(("eps", "k"), [(0.25, 3), (0.1, 6)])
def test_fsq_channel_codes_are_the_grid_with_a_straight_through_gradient(
    eps: float, k: int
) -> None:
    pytest.importorskip("vector_quantize_pytorch")
    from dimgen.infomax.channel import grid_points, token_ids, token_usage

    bench = _module()
    ch = bench.FSQChannel(2, eps)
    assert ch.capacity() == pytest.approx(2 * np.log(k))  # d log K: dimgen's capacity at eps
    s = (3 * torch.randn(3000, 2, generator=torch.Generator().manual_seed(0))).requires_grad_()
    c = ch.squash(s)
    np.testing.assert_allclose(c.detach().numpy(), grid_points(eps)[token_ids(c, eps)], atol=1e-6)
    assert token_usage(token_ids(c, eps), k)["used"] == [k, k]  # every level reached
    c.sum().backward()
    assert s.grad is not None and float(s.grad.abs().sum()) > 0  # rounding passes gradients


def test_snapped_squash_puts_uniform_codes_on_their_tokens_and_restores() -> None:
    from dimgen.infomax.channel import UniformChannel, grid_fraction

    bench = _module()
    ch = UniformChannel(2, 0.25, "sigmoid").eval().requires_grad_(False)
    x = torch.randn(500, 2)
    before = ch.normalise(x)
    with bench.snapped(ch, 0.25):
        snapped = ch.normalise(x)
    assert grid_fraction(snapped, 0.25).tolist() == [1.0, 1.0]
    assert float((snapped - before).abs().max()) <= 0.25 + 1e-6  # the nearest point
    assert torch.equal(ch.normalise(x), before)  # the squash is back


def test_benchmark_prints_one_table(capsys: pytest.CaptureFixture[str]) -> None:
    bench = _module()
    bench.main(["--epochs", "2", "--seeds", "0", "--squashes", "sigmoid"])
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| method | MI | MI_tok |")
    assert table[1].startswith("| dimgen-sigmoid | ")
    if bench.fsq_available():
        cells = table[2].split(" | ")
        assert cells[0] == "| fsq" and float(cells[4]) == 1.0  # FSQ codes are all on the grid
    else:
        assert "skipped: vector-quantize-pytorch is not installed" in table[2]


@pytest.mark.parametrize(("flag", "points"), [([], 2), (["--curve-every", "0"], 0)])
def test_benchmark_curve_every_sets_the_encoders_certificates(
    flag: list[str], points: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--curve-every reaches every side's encoder: one held-out certificate per epoch by default,
    none with 0 (the MNIST table's setting), the final metrics still complete."""
    bench = _module()
    runs = []

    def spy(*args, **kwargs):
        runs.append(bench_train(*args, **kwargs))
        return runs[-1]

    bench_train = bench.train_encoder
    monkeypatch.setattr(bench, "train_encoder", spy)
    bench.main(["--epochs", "2", "--seeds", "0", "--squashes", "sigmoid", *flag])
    assert len(runs) == (2 if bench.fsq_available() else 1)
    for run in runs:
        assert len(run.metrics.get("curve", [])) == points
        assert "tokens" in run.metrics and np.isfinite(run.metrics["mi_lower_bound_nats"])


def test_benchmark_gan_columns(capsys: pytest.CaptureFixture[str]) -> None:
    """--gan: a GAN on each side's token codes, scored by class consistency and FID."""
    bench = _module()
    bench.main(["--epochs", "2", "--seeds", "0", "--squashes", "steps", "--gan",
                "--gan-steps", "5"])  # fmt: skip
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    head = table[0].strip("| ").split(" | ")
    assert head[-3:] == ["consist", "FID", "gan_cpu_s"]
    row = dict(zip(head, table[1].strip("| ").split(" | "), strict=True))  # dimgen-steps
    assert 0.0 <= float(row["consist"]) <= 100.0 and float(row["FID"]) > 0


def test_benchmark_lr_schedule_reaches_every_side_and_a_bad_one_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--lr-schedule cosine trains both sides with the cosine rate (equal budgets); a bad value
    is one line and exit 2 before any training."""
    bench = _module()
    configs = []

    def spy(cfg, *args, **kwargs):
        configs.append(cfg)
        return bench_train(cfg, *args, **kwargs)

    bench_train = bench.train_encoder
    monkeypatch.setattr(bench, "train_encoder", spy)
    bench.main(["--epochs", "2", "--seeds", "0", "--squashes", "sigmoid", "--curve-every", "0",
                "--lr-schedule", "cosine"])  # fmt: skip
    assert configs and all(c.lr_schedule == "cosine" for c in configs)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        bench.main(["--lr-schedule", "warm"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(configs) == (2 if bench.fsq_available() else 1)
    assert err.startswith("error: argument --lr-schedule") and "\n" not in err
