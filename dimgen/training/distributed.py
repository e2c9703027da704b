"""Data-parallel training across processes: process groups, differentiable collectives, spawning.

Two ways in, one code path: ``torchrun --nproc-per-node N -m dimgen.cli encode ...`` (the
launcher sets ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``; :func:`init_from_env` joins its group) and
``devices: N`` in the config / ``dimgen encode --devices N`` (:func:`spawn` starts N processes and
gives them a file-based rendezvous, so no port has to be free). Every process holds a full copy of
the model; each takes its shard of every global batch.

The collectives here have *sum* semantics in the backward as well (the adjoint of an all-gather is
a sum over processes of the gradients of its output). With DistributedDataParallel averaging the
parameter gradients, the update is then exactly the gradient of the mean of the per-process
losses, which is the single-process loss of the global batch: ``tests/training/test_distributed.py``
checks this to 1e-10 in float64.
"""

from __future__ import annotations

import gc
import logging
import os
import pickle
import sys
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..errors import ConfigError, DimgenError, WorkerKilledError

__all__ = [
    "GlobalBatchNorm",
    "agree",
    "all_gather_rows",
    "all_reduce_sum",
    "convert_global_batch_norm",
    "everywhere",
    "global_batch_norm",
    "global_covariance",
    "global_moments",
    "init_from_env",
    "is_active",
    "launched_externally",
    "mean_over_processes",
    "raised_everywhere",
    "rank",
    "rank_seed",
    "spawn",
    "track_running_stats",
    "world_size",
]

_ALL_RANKS = "_dimgen_all_ranks"


def is_active() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 outside a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """Number of processes (1 outside a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def launched_externally() -> int:
    """The world size announced by a launcher such as torchrun (``WORLD_SIZE``), else 0."""
    value = os.environ.get("WORLD_SIZE", "")
    return int(value) if value.isdigit() and int(value) > 1 else 0


def init_from_env(device_type: str) -> torch.device:
    """Join the process group a launcher described in the environment; return this rank's device.

    nccl on CUDA (device ``cuda:LOCAL_RANK``), gloo on the CPU.
    """
    local = int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0")))
    if device_type == "cuda":
        if local >= torch.cuda.device_count():
            raise ConfigError(
                f"LOCAL_RANK {local} but only {torch.cuda.device_count()} CUDA device(s) here"
            )
        torch.cuda.set_device(local)
    backend = "nccl" if device_type == "cuda" else "gloo"
    dist.init_process_group(backend, init_method="env://")
    return torch.device(f"cuda:{local}") if device_type == "cuda" else torch.device("cpu")


# ---------------------------------------------------------------------------------------------
# differentiable collectives (equal shapes on every process); dimgen's own, not
# torch.distributed.nn.functional's: those pass the 1e-10 tests but are deprecated (torch 2.14)


class _AllGatherRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        x = x.contiguous()
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x)
        ctx.rows, ctx.rank = x.shape[0], dist.get_rank()
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)  # sum of every process's gradient w.r.t. the gathered rows
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


class _AllReduceSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        out = x.contiguous().clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad


def all_gather_rows(x: Tensor) -> Tensor:
    """(R, ...) on each of W processes -> (W * R, ...) in rank order; differentiable."""
    if not is_active():
        return x
    return _AllGatherRows.apply(x)


def all_reduce_sum(x: Tensor) -> Tensor:
    """Sum of ``x`` over processes; differentiable."""
    if not is_active():
        return x
    return _AllReduceSum.apply(x)


def global_moments(h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(B, d) or (B, C, ...) shard -> per-feature (channel) mean (C,), biased variance (C,) and
    count (0-d) of the *global* batch, over the batch and any spatial dimensions.

    Two differentiable all-reduces (the variance from centred squares, for accuracy), so the
    gradients of every process reach every shard, as in one process's batch-norm.
    """
    dims = [0, *range(2, h.ndim)]
    n_local = torch.tensor([h.numel() // h.shape[1]], dtype=h.dtype, device=h.device)
    s = all_reduce_sum(torch.cat([h.sum(dims), n_local]))
    n = s[-1]
    mean = s[:-1] / n
    centred = h - mean.view(1, -1, *[1] * (h.ndim - 2))
    var = all_reduce_sum((centred * centred).sum(dims)) / n
    return mean, var, n


def global_covariance(h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(B, d) shard -> mean (d,), biased covariance (d, d) and count (0-d) of the *global* batch.

    Differentiable all-reduces, as :func:`global_moments`; one process: the batch's own moments.
    """
    n_local = torch.tensor([h.shape[0]], dtype=h.dtype, device=h.device)
    reduce = all_reduce_sum if is_active() else (lambda t: t)
    s = reduce(torch.cat([h.sum(0), n_local]))
    n = s[-1]
    mean = s[:-1] / n
    centred = h - mean
    return mean, reduce(centred.T @ centred) / n, n


def track_running_stats(
    bn: nn.modules.batchnorm._BatchNorm, mean: Tensor, var: Tensor, n: Tensor | int
) -> None:
    """Update ``bn``'s running statistics from a batch's mean and biased variance, exactly as
    ``BatchNorm`` does (momentum, unbiased variance), without a host sync."""
    if not (bn.track_running_stats and bn.running_mean is not None and bn.running_var is not None):
        return
    with torch.no_grad():
        bn.num_batches_tracked.add_(1)
        m = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
        n = torch.as_tensor(n, dtype=var.dtype, device=var.device)
        unbiased = var * (n / (n - 1.0).clamp_min(1.0))
        bn.running_mean.mul_(1 - m).add_(mean.detach().to(bn.running_mean), alpha=m)
        bn.running_var.mul_(1 - m).add_(unbiased.detach().to(bn.running_var), alpha=m)


def global_batch_norm(h: Tensor, bn: nn.BatchNorm1d) -> Tensor:
    """Training-mode ``bn(h)`` (no affine) with the statistics of the *global* batch.

    ``SyncBatchNorm`` is CUDA-only; this works on any backend. Running statistics are updated
    with the unbiased variance, exactly as ``BatchNorm1d`` does, and identically on every process.
    """
    if bn.affine:
        raise ValueError("global_batch_norm supports affine=False only")
    x = h.float() if h.dtype in (torch.float16, torch.bfloat16) else h
    mean, var, n = global_moments(x)
    out = (x - mean) * torch.rsqrt(var + bn.eps)
    track_running_stats(bn, mean, var, n)
    return out


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """``BatchNorm1d/2d/3d`` whose training statistics span every process's shard (any backend).

    The CPU (gloo) counterpart of ``torch.nn.SyncBatchNorm``: in training mode inside a process
    group, the per-channel mean and biased variance over (batch, spatial...) are those of the
    global batch (:func:`global_moments`), so W processes of B/W rows normalise as one process of
    B rows does, gradients included. Outside a group, or in eval mode, it is exactly
    ``BatchNorm``. Same parameters and buffers (state-dict keys) as the module it replaces
    (:func:`convert_global_batch_norm`).
    """

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected an input of 2 or more dimensions, got {input.dim()}")

    def forward(self, input: Tensor) -> Tensor:
        """(N, C, ...) -> (N, C, ...), normalised per channel C."""
        if not (self.training and is_active()):
            return super().forward(input)
        self._check_input_dim(input)
        x = input.float() if input.dtype in (torch.float16, torch.bfloat16) else input
        mean, var, n = global_moments(x)
        shape = [1, -1] + [1] * (x.ndim - 2)
        out = (x - mean.view(shape)) * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        track_running_stats(self, mean, var, n)
        return out.to(input.dtype)


def convert_global_batch_norm(module: nn.Module) -> nn.Module:
    """``module`` with every ``BatchNorm1d/2d/3d`` replaced by a :class:`GlobalBatchNorm` that
    holds the same parameters and buffers (in place where possible, as
    ``SyncBatchNorm.convert_sync_batchnorm`` does); returns the converted module."""
    out = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(
        module, (GlobalBatchNorm, nn.SyncBatchNorm)
    ):
        out = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats)  # fmt: skip
        if module.affine:
            out.weight, out.bias = module.weight, module.bias
        out.running_mean, out.running_var = module.running_mean, module.running_var
        out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, convert_global_batch_norm(child))
    return out


def mean_over_processes(x: Tensor) -> Tensor:
    """The mean of ``x`` over processes (no gradient): e.g. a loss to log, equal everywhere."""
    if not is_active():
        return x
    out = x.detach().clone()
    dist.all_reduce(out)
    return out / dist.get_world_size()


# ---------------------------------------------------------------------------------------------
# errors: every process agrees, or the first failure wins


def everywhere(exc: BaseException) -> BaseException:
    """Mark an error as raised identically by every process (so only rank 0 need print it)."""
    setattr(exc, _ALL_RANKS, True)
    return exc


def raised_everywhere(exc: BaseException) -> bool:
    """True for errors marked by :func:`everywhere`."""
    return bool(getattr(exc, _ALL_RANKS, False))


def agree(error: DimgenError | None) -> None:
    """Collective: if any process hit a ``DimgenError``, every process raises the lowest rank's.

    Call it where processes may disagree (one rank checks the output folder, every rank loads the
    data), so that one failure ends the run everywhere with the same one-line message instead of
    leaving the others waiting in the next collective.
    """
    if not is_active():
        if error is not None:
            raise error
        return
    errors: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(errors, error)
    for r, exc in enumerate(errors):
        if exc is not None:
            if r != 0 and not str(exc).startswith("rank "):
                exc = type(exc)(f"rank {r}: {exc}")
            raise everywhere(exc)


# ---------------------------------------------------------------------------------------------
# spawning


def _child(
    index: int,
    nprocs: int,
    init_method: str,
    backend: str,
    outbox: str,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
) -> None:
    os.environ.update(RANK=str(index), LOCAL_RANK=str(index), WORLD_SIZE=str(nprocs))
    code = 1
    try:
        if backend == "nccl":
            torch.cuda.set_device(index)
        dist.init_process_group(backend, init_method=init_method, rank=index, world_size=nprocs)
        _post(outbox, index, ("ok", fn(*args)))
        code = 0
    except BaseException as exc:  # reported to the parent, which raises it as one line
        if isinstance(exc, DimgenError):
            payload: Any = exc
        else:
            payload = RuntimeError(f"process {index}: {type(exc).__name__}: {exc}")
        try:
            _post(outbox, index, ("error", payload))
        except Exception:
            _post(outbox, index, ("error", RuntimeError(f"process {index}: {type(exc).__name__}")))
    finally:
        gc.collect()  # data loaders going out of scope stop their worker processes
        if dist.is_initialized():
            dist.destroy_process_group()
        sys.stdout.flush()
        sys.stderr.flush()
        # Skip the interpreter's teardown: with gloo's threads it aborts now and then ("terminate
        # called without an active exception", SIGABRT) after the work is done and posted.
        os._exit(code)


def _post(outbox: str, index: int, message: tuple[str, Any]) -> None:
    """Write one child's outcome to ``outbox/index.pkl`` atomically (written, then renamed).

    A file, not a pipe: a child that writes a large result into a pipe blocks until the parent
    reads it, and a child stopped mid-write (the others are terminated when one fails) would leave
    a partial message on which the parent's read waits forever. A half-written file is never
    renamed, so the parent sees a whole message or none. The files are this run's own, in a private
    temporary folder.
    """
    # plain pickle: tensors are copied into the file, not shared through memory that would
    # vanish with this process
    final = os.path.join(outbox, f"{index}.pkl")
    with open(final + ".part", "wb") as fh:
        pickle.dump(message, fh)
    os.replace(final + ".part", final)


def _collect(outbox: str, nprocs: int) -> tuple[dict[int, Any], list[tuple[int, BaseException]]]:
    """Results and errors the children posted; errors in the order they were written."""
    results: dict[int, Any] = {}
    posted: list[tuple[int, int, BaseException]] = []
    for index in range(nprocs):
        path = os.path.join(outbox, f"{index}.pkl")
        if not os.path.exists(path):
            continue
        with open(path, "rb") as fh:
            kind, payload = pickle.load(fh)
        if kind == "ok":
            results[index] = payload
        else:
            posted.append((os.stat(path).st_mtime_ns, index, payload))
    return results, [(index, exc) for _, index, exc in sorted(posted, key=lambda e: e[:2])]


def spawn(
    fn: Callable[..., Any], nprocs: int, args: tuple[Any, ...] = (), *, backend: str
) -> list[Any]:
    """Run ``fn(*args)`` in ``nprocs`` fresh processes joined in a process group; return results.

    Each child is rank ``i`` of ``nprocs`` (``backend`` ``gloo`` or ``nccl``; with nccl, child i
    uses ``cuda:i``). If any child fails, the others are stopped and the first error is raised
    here: a ``DimgenError`` as itself, anything else as a one-line ``RuntimeError``.
    """
    import torch.multiprocessing as mp
    from torch.multiprocessing.spawn import ProcessException

    if nprocs < 1:
        raise ConfigError(f"need at least 1 process, got {nprocs}")
    spawn_log = logging.getLogger("torch.multiprocessing.spawn")
    level = spawn_log.level
    spawn_log.setLevel(logging.ERROR)  # no "Terminating process ..." lines: we report one line
    failed: BaseException | None = None
    killed: tuple[int, str] | None = None
    try:
        with tempfile.TemporaryDirectory(prefix="dimgen-spawn-") as tmp:
            init = f"file://{os.path.join(tmp, 'rendezvous')}"
            pc = mp.start_processes(
                _child,
                args=(nprocs, init, backend, tmp, fn, args),
                nprocs=nprocs,
                join=False,
                start_method="spawn",
            )
            try:
                while True:
                    try:
                        if pc.join(timeout=0.2, grace_period=5.0):
                            break
                    except ProcessException as exc:
                        failed = exc
                        break
            except BaseException:
                for p in pc.processes:
                    if p.is_alive():
                        p.terminate()
                raise
            results, errors = _collect(tmp, nprocs)
            killed = _killed_worker(pc.processes, failed)
    finally:
        spawn_log.setLevel(level)
    if killed is not None:  # the root cause: the others' errors (gloo: peer gone) follow from it
        index, name = killed
        hint = " (possibly out of memory: the kernel's OOM killer sends SIGKILL)"
        raise WorkerKilledError(
            f"data-parallel worker rank {index} was killed by {name}"
            f"{hint if name == 'SIGKILL' else ''}; the other workers were stopped: continue "
            "from the last checkpoint with --resume"
        )
    if errors:
        # An error every process agreed on is the same everywhere: report it as rank 0 saw it.
        # Otherwise the first to arrive is the root cause (the others' are knock-on failures);
        # the same message from rank 0 too means every process hit it: no rank to name.
        agreed = [e for e in errors if raised_everywhere(e[1])]
        index, exc = min(agreed, key=lambda e: e[0]) if agreed else errors[0]
        on_rank0 = any(i == 0 and str(e) == str(exc) for i, e in errors)
        if not agreed and not on_rank0 and isinstance(exc, DimgenError) and index != 0:
            exc = type(exc)(f"rank {index}: {exc}")
        raise exc
    if failed is not None:
        raise RuntimeError(f"a worker process failed: {' '.join(str(failed).split())[:300]}")
    missing = [i for i in range(nprocs) if i not in results]
    if missing:
        raise RuntimeError(f"worker process(es) {missing} ended without a result")
    return [results[i] for i in range(nprocs)]


def _killed_worker(processes: list[Any], failed: BaseException | None) -> tuple[int, str] | None:
    """``(rank, signal name)`` of a worker that died by a signal, or None.

    The first failure torch reports names it; failing that, the lowest rank whose exit code is a
    signal other than the SIGTERM with which the survivors are stopped.
    """
    import signal

    def name(num: int) -> str:
        try:
            return signal.Signals(num).name
        except ValueError:
            return f"signal {num}"

    index, code = getattr(failed, "error_index", None), getattr(failed, "exit_code", None)
    if index is not None and isinstance(code, int) and code < 0:
        return int(index), name(-code)
    for i, p in enumerate(processes):
        code = p.exitcode
        if code is not None and code < 0 and -code != signal.SIGTERM:
            return i, name(-code)
    return None


def rank_seed(seed: int, rank_index: int) -> int:
    """A per-process seed for noise and augmentation, independent of the model's init stream."""
    return int(np.random.SeedSequence([seed, 7919, rank_index]).generate_state(1)[0])
