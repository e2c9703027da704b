"""``benchmarks/gpu_check.sh --smoke``: the GPU check's CPU version writes its table and JSON."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gpu-check") / "out"
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "PYTHON": sys.executable,
    }
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), str(out), "--smoke"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def test_smoke_json_holds_meaningful_numbers(smoke: Path) -> None:
    r = json.loads((smoke / "gpu_check.json").read_text())
    assert r["mode"] == "smoke" and r["data"].startswith("digits")
    (step,) = r["train_step"]
    assert step["batch"] == 32
    assert step["reference_ms_per_step"] > 0 and step["dimgen_ms_per_step"] > 0
    ratio = step["reference_ms_per_step"] / step["dimgen_ms_per_step"]
    assert step["speedup"] == pytest.approx(ratio, rel=1e-6) or step["speedup"] > 0
    assert [e["sigma"] for e in r["encoder"]] == [0.1, 0.3]
    for e in r["encoder"]:
        cap = 0.5 * 2 * math.log1p(1 / e["sigma"] ** 2)  # d = 2 Gaussian channel capacity
        assert e["capacity_nats"] == pytest.approx(cap, rel=1e-6)
        assert e["kl_bound_nats"] == pytest.approx(e["capacity_nats"] - e["mi_nats"], abs=1e-9)
        assert 0 < e["mi_nats"] < e["capacity_nats"]  # 40 steps on digits learn something
        assert 0.0 <= e["knn_acc"] <= 1.0 and e["knn_acc"] > 0.1  # 10 classes: chance ~ 0.1
        assert 0.0 <= e["p_value"] <= 1.0 and isinstance(e["passes"], bool)
        for key in ("paper_dagostino_p", "paper_shapiro_p", "paper_henze_zirkler_p"):
            assert 0.0 <= e[key] <= 1.0  # the paper's Figure-1 statistic, beside the calibrated p
        assert e["steps"] == 40 and Path(e["run"], "metrics.json").is_file()
    g = r["gan"]
    assert g["steps"] == 20
    assert 0.0 <= g["class_tv_unconditional"] <= 1.0
    assert 0.0 <= g["conditional_consistency"] <= 100.0
    for png in g["grids"].values():
        assert Path(png).is_file() and Path(png).read_bytes()[:4] == b"\x89PNG"


def test_smoke_markdown_table_has_every_part_and_row(smoke: Path) -> None:
    md = (smoke / "gpu_check.md").read_text()
    r = json.loads((smoke / "gpu_check.json").read_text())
    for title in ("## 1. Training step", "## 2. Encoder", "## 3. GAN"):
        assert title in md
    for e in r["encoder"]:
        row = next(line for line in md.splitlines() if line.startswith(f"| {e['sigma']} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert float(cells[2]) == pytest.approx(e["knn_acc"], abs=5e-4)
        assert float(cells[5]) == pytest.approx(e["kl_bound_nats"], abs=5e-4)
        assert cells[7] == ("yes" if e["passes"] else "no")
    # the verdict column is the overall calibrated test, not normality alone ("normal?" was wrong)
    assert "| calibrated p | matches N(0, I)? |" in md and "descriptive, not a test" in md


def test_refuses_a_non_empty_output_folder(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("x")
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), str(tmp_path),
                           "--smoke"], cwd=ROOT, env={**os.environ, "PYTHON": sys.executable},
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode != 0 and "not empty" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
