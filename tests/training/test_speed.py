"""Speed levers keep results: compile fallback, allocator tuning, thread settings."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
import torch

from dimgen.config import EncoderConfig, replace
from dimgen.data import Dataset, load_data
from dimgen.infomax.trainer import train_encoder
from dimgen.training.speed import CompiledStep, tune_cpu_allocator


def _small() -> Dataset:
    ds = load_data("digits")
    return Dataset("digits", ds.x_train[:512], ds.y_train[:512], ds.x_test[:128], ds.y_test[:128])


CFG = EncoderConfig(epochs=3, eval_batches=2, compile=True, device="cpu")


def _lazy_failure(fn: Any, **_: Any) -> Any:
    """A compiled function that runs part of the step, then fails as lazy compilation can."""

    def compiled(*args: Any) -> Any:
        fn(*args)  # weights, optimizer state, running statistics and RNG all move ...
        raise RuntimeError("backend compiler failed\nwith a long story")  # ... then it fails

    return compiled


def test_compile_failing_at_first_call_falls_back_to_identical_eager(monkeypatch) -> None:
    eager = train_encoder(replace(CFG, compile=False), data=_small())
    monkeypatch.setattr(torch, "compile", _lazy_failure)
    msg = r"torch.compile failed \(RuntimeError: backend compiler failed\); training continues"
    with pytest.warns(RuntimeWarning, match=msg):
        fallback = train_encoder(CFG, data=_small())
    assert fallback.history == eager.history
    sd_a, sd_b = fallback.model.state_dict(), eager.model.state_dict()
    assert sd_a.keys() == sd_b.keys()
    for k in sd_a:
        assert torch.equal(sd_a[k], sd_b[k]), k
    assert np.array_equal(fallback.codes, eager.codes)


def test_compile_unavailable_at_wrap_time(monkeypatch) -> None:
    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", broken)
    lin = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(lin.parameters(), lr=0.1)
    with pytest.warns(RuntimeWarning, match="no compiler here"):
        step = CompiledStep(lambda x: lin(x).sum().detach(), [lin], opt)
    assert not step.compiled and float(step(torch.ones(1, 2))) == float(
        lin(torch.ones(1, 2)).detach()
    )


def test_compile_success_is_used_after_the_first_call(monkeypatch) -> None:
    calls = {"compiled": 0}

    def fake(fn: Any, **_: Any) -> Any:
        def compiled(*args: Any) -> Any:
            calls["compiled"] += 1
            return fn(*args)

        return compiled

    monkeypatch.setattr(torch, "compile", fake)
    lin = torch.nn.Linear(2, 1)
    step = CompiledStep(lambda x: lin(x).sum(), [lin], torch.optim.SGD(lin.parameters(), lr=0.1))
    for _ in range(3):
        step(torch.ones(1, 2))
    assert step.compiled and calls["compiled"] == 3


@pytest.mark.slow
def test_real_torch_compile_matches_eager_on_cpu(monkeypatch) -> None:
    """Inductor on the CPU (needs a C++ compiler; 10-100 s to compile on 2 cores).

    Compiled code draws random numbers its own way unless ``fallback_random`` is set; with it,
    the compiled step (fused critic included) follows the eager loss curve up to fusion roundoff.
    """
    import torch._inductor.config as inductor_config

    monkeypatch.setattr(inductor_config, "fallback_random", True)
    eager = train_encoder(replace(CFG, compile=False, epochs=2), data=_small())
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no silent fallback to eager
        compiled = train_encoder(replace(CFG, epochs=2), data=_small())
    assert compiled.history == pytest.approx(eager.history, abs=1e-3)


def test_allocator_tuning_is_idempotent_and_harmless() -> None:
    first = tune_cpu_allocator()
    assert tune_cpu_allocator() == first
    x = torch.randn(256, 256, 64)
    assert torch.equal(x.relu() * 2, torch.relu(x) + torch.relu(x))


def test_training_restores_the_callers_thread_count() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        train_encoder(replace(CFG, compile=False, epochs=1, threads=1), data=_small())
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
