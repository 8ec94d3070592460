"""Atomic, resumable checkpoints: weights, optimizer, scheduler, RNG states, data position, config.

Layout of one checkpoint (``RUN_DIR/checkpoints/step-00000120/``)::

    trainable.safetensors   trainable parameters by name (LoRA adapters, or every weight)
    optimizer.pt            optimizer and scheduler state dicts (loaded with weights_only=True)
    rng-<rank>.pt           random state of process <rank>: torch CPU (and CUDA), Python, NumPy
    state.json              step, data position, skip counter, loss scale, number of processes
    config.yaml             the resolved run configuration

A checkpoint is built in a temporary sibling folder (``.tmp-step-XXXXXXXX-*``) on the main process,
every file is fsync'ed, and the folder is renamed into place: a crash leaves either the previous
checkpoint or the new one, never a half-written one; the temporaries a crash leaves behind are removed
by :func:`remove_stale_temporaries` when the run is resumed (raco's own temporary names only). The
other processes' random states reach it through ``gather_to_main``. Only the newest ``keep_last``
complete checkpoints are kept.

Resuming on another number of processes (:func:`check_layout`). The trajectory depends on the
processes only through the global batch and the random state: the data order is a function of the
seed, and each global micro-batch (``train.batch_size × processes`` pairs, ``grad_accum`` of them a
step) is split among the processes (training/inputs.py), whose per-objective gradients are summed.
So a checkpoint written by N processes resumes on M exactly when the global micro-batch stays the
same (``train.batch_size`` is the resumed run's to give: B·N/M), ``method.solve_per`` is not
``microbatch`` (a solve per process's micro-batch depends on the split) and nothing draws random
numbers in training (dropout; ``model.disable_dropout`` and ``lora.dropout: 0``): anything else is
refused, naming what differs and what to set, except dropout, which is warned about (each process's
random state, ``rng-<rank>.pt``, belongs to one of N processes; the draws then differ from the
uninterrupted run's). The same number of processes restores each process's own random state exactly.

Sharded state (a model whose parameters are DTensors: FSDP2 ``fully_shard``, :func:`is_sharded`) is
saved with torch.distributed.checkpoint (DCP): ``sharded/`` holds every process's shard of the model
and optimizer states (``__<rank>_0.distcp``, from ``get_state_dict``) and their ``.metadata``, in
place of ``trainable.safetensors`` and the optimizer's state dict (``optimizer.pt`` then holds the
scheduler only). Atomic as above: the main process makes the temporary folder and tells the others its
name; every process writes its shard into it (fsync'ed); the main process writes the other files and
renames the folder; every process waits for that (:func:`save_sharded`, :func:`write_sharded_checkpoint`).
Each process loads the parts of the saved shards its own shards cover: on the same number of
processes, on another, or into an unsharded model (DCP reshards on load: :func:`load_sharded`). An
unsharded checkpoint (one process, or replicated) is loaded into a sharded model by
:func:`load_full_into_sharded` (every process keeps its shards of the whole tensors).

``state.json`` also records what a resumed run needs to end with the uninterrupted run's files: how
many ``metrics.jsonl`` records had been written, the metrics the run would report at its end so far,
the wall time spent so far, and (``final``) whether the final evaluation is in.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import secrets
import shutil
import signal
import socket
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
import yaml
from safetensors.torch import load_file, save_file
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_model_state_dict,
    set_state_dict,
)

from raco.atomic import file_mode, make_temp_dir
from raco.config import ConfigError
from raco.shard import any_across, rank_and_world
from raco.shard import is_sharded as is_sharded  # the predicate a caller picks the layout by

logger = logging.getLogger("raco.training")

CHECKPOINTS = "checkpoints"
_NAME = re.compile(r"^step-(\d{8})$")
# raco's own temporaries (tempfile's random part is 8 of [a-z0-9_]): a checkpoint being built, a
# checkpoint set aside while the same step is rewritten, and atomic_write's files in the run folder
_TMP_CHECKPOINT = re.compile(r"^\.tmp-step-\d{8}-[a-z0-9_]{8}$")
_ASIDE_CHECKPOINT = re.compile(r"^\.old-(step-\d{8})-[a-z0-9_]{8}$")
_TMP_RUN_FILE = re.compile(r"^\.(config\.yaml|metrics\.jsonl|summary\.json)\.[a-z0-9_]{8}\.tmp$")

# Test hook: the environment variable names a point (optionally `@n`: its n-th occurrence in this
# process) where the process kills itself with SIGKILL, as a crash or `kill -9` would.
FAULT_ENV = "RACO_TEST_KILL_AT"
FAULT_POINTS = ("before-first-checkpoint", "mid-checkpoint-write", "after-last-checkpoint-before-model")
_fault_hits: dict[str, int] = {}


def fault_point(name: str, condition: Callable[[], bool] | None = None) -> None:
    """Kill this process (SIGKILL) if ``$RACO_TEST_KILL_AT`` names ``name`` (``name@n``: the n-th time
    it is reached with ``condition()`` true). Does nothing, and evaluates nothing, otherwise."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    wanted, _, nth = spec.partition("@")
    if wanted != name or (condition is not None and not condition()):
        return
    _fault_hits[name] = _fault_hits.get(name, 0) + 1
    if _fault_hits[name] == int(nth or 1):
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))


LOCK_FILE = ".raco.lock"


def lock_run_dir(run_dir: Path) -> TextIO | None:
    """Hold ``RUN_DIR/.raco.lock`` (an advisory ``flock``) until the returned handle is closed; a
    ``ConfigError`` naming the holder when another process (a run still going) holds it. None where
    the platform has no ``flock``; a file system without locks is not an error."""
    try:
        import fcntl
    except ImportError:
        return None
    handle = open(Path(run_dir) / LOCK_FILE, "a+")  # noqa: SIM115 (the caller closes it)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip()
        handle.close()
        raise ConfigError(
            f"{run_dir} is in use by another raco process ({holder or 'unknown'}); let it finish or "
            "stop it first"
        ) from None
    except OSError:
        return handle
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
    handle.flush()
    return handle


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Remove what a killed writer left in ``run_dir``: unfinished checkpoint folders and
    ``atomic_write`` temporaries of the run's own files (nothing else is touched). A checkpoint set
    aside while the same step was being rewritten is put back if the new one never arrived.
    Returns what was removed. Call on the main process only, holding :func:`lock_run_dir`."""
    run_dir = Path(run_dir)
    removed = []
    root = run_dir / CHECKPOINTS
    if root.is_dir():
        for path in sorted(root.iterdir()):
            aside = _ASIDE_CHECKPOINT.match(path.name)
            if aside and path.is_dir() and not (root / aside.group(1)).exists():
                os.replace(path, root / aside.group(1))
            elif (aside or _TMP_CHECKPOINT.match(path.name)) and path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    if run_dir.is_dir():
        for path in sorted(run_dir.iterdir()):
            if _TMP_RUN_FILE.match(path.name) and path.is_file():
                path.unlink()
                removed.append(path)
    return removed


def checkpoint_name(step: int) -> str:
    """Folder name of the checkpoint taken after optimizer step ``step``."""
    return f"step-{step:08d}"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of ``run_dir``, oldest first (temporary folders are ignored)."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found, key=lambda pair: pair[0])]


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of ``run_dir``, or None."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def _fsync_tree(folder: Path) -> None:
    for path in folder.iterdir():
        if path.is_dir():
            _fsync_tree(path)
            continue
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def python_rng_state() -> dict[str, Any]:
    """Python and NumPy global RNG states as JSON-serialisable values."""
    version, internal, gauss = random.getstate()
    numpy_state = np.random.get_state()
    if not isinstance(numpy_state, tuple):  # a dict: the global generator is no longer MT19937
        raise RuntimeError(
            "checkpoints save NumPy's global random state as MT19937 (np.random.seed); it was replaced "
            f"by {numpy_state['bit_generator']} (np.random.set_bit_generator): restore MT19937"
        )
    kind, keys, pos, has_gauss, cached = numpy_state
    return {
        "python": [version, list(internal), gauss],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
    }


def set_python_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`python_rng_state` returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


def torch_rng_state() -> dict[str, Any]:
    """This process's torch CPU (and CUDA) generator states."""
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_torch_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`torch_rng_state` returned."""
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def rng_state() -> dict[str, Any]:
    """This process's whole random state: torch CPU (and CUDA) generators, Python's and NumPy's."""
    return {**torch_rng_state(), **python_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    set_torch_rng_state(state)
    set_python_rng_state(state)


def gather_to_main(value: Any) -> list[Any] | None:
    """``value`` of every process in rank order, on the main process (rank 0); None on the others.

    Call on every process. Without ``torch.distributed`` (one process) this is ``[value]``."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [value]
    gathered = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(value, gathered, dst=0)
    return gathered


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Contiguous CPU copies of the trainable parameters of ``model`` by name."""
    return {n: p.detach().to("cpu").contiguous() for n, p in model.named_parameters() if p.requires_grad}


def write_checkpoint(
    run_dir: Path,
    step: int,
    files: dict[str, Any],
    keep_last: int,
) -> Path:
    """Atomically write checkpoint ``step`` from ``files`` and prune to the newest ``keep_last``.

    ``files`` maps a file name to content: ``*.safetensors`` → tensor dict, ``*.pt`` → torch object,
    ``*.json`` → JSON value, anything else → text. Call on the main process only.
    """
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    target = root / checkpoint_name(step)
    tmp = make_temp_dir(f".tmp-{target.name}-", root)
    try:
        write_files(tmp, files)
        publish_folder(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    prune_checkpoints(run_dir, keep_last)
    return target


def write_files(tmp: Path, files: dict[str, Any]) -> None:
    """Write ``files`` (see :func:`write_checkpoint`) into the folder ``tmp``."""
    for index, (name, content) in enumerate(files.items()):
        if index == len(files) // 2:
            fault_point("mid-checkpoint-write")
        _write_file(tmp / name, content)


def publish_folder(tmp: Path, target: Path) -> None:
    """fsync the complete folder ``tmp`` and rename it to ``target`` (a checkpoint of the same step is
    set aside until the new one is in place, then removed; put back if the rename fails)."""
    root = target.parent
    _fsync_tree(tmp)
    aside = None
    try:
        if target.exists():  # the same step again (a run resumed from it): set the old one aside
            aside = root / f".old-{target.name}-{secrets.token_hex(4)}"  # until the new one is in place
            os.replace(target, aside)
        os.replace(tmp, target)
        _fsync_dir(root)
    finally:
        if aside is not None:
            if target.exists():
                shutil.rmtree(aside, ignore_errors=True)
            else:
                os.replace(aside, target)


def prune_checkpoints(run_dir: Path, keep_last: int) -> None:
    """Remove all but the newest ``keep_last`` complete checkpoints of ``run_dir``."""
    for old in list_checkpoints(run_dir)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)


SHARDED = "sharded"  # the torch.distributed.checkpoint folder of a checkpoint of sharded state


def _dcp_state(model: nn.Module, optimizer: torch.optim.Optimizer | None) -> dict[str, Any]:
    if optimizer is None:
        return {"model": get_model_state_dict(model)}
    model_state, optim_state = get_state_dict(model, optimizer)
    return {"model": model_state, "optim": optim_state}


@contextmanager
def _single_process_quiet() -> Iterator[None]:
    """DCP warns that it assumes one process whenever it runs without torch.distributed: intended."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled", category=UserWarning)
        yield


def _broadcast_name(name: str | None) -> str:
    """The main process's ``name`` on every process."""
    if rank_and_world()[1] == 1:
        assert name is not None
        return name
    box = [name]
    dist.broadcast_object_list(box, src=0)
    assert box[0] is not None
    return box[0]


def save_sharded(
    folder: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    files: dict[str, Any] | None = None,
) -> Path:
    """Atomically write ``folder`` holding the (sharded) state of ``model`` and ``optimizer`` in
    ``folder/sharded`` (torch.distributed.checkpoint) and the main process's ``files`` (as
    :func:`write_checkpoint`'s). Call on every process: a collective. A folder already there is
    replaced only once the new one is complete; a crash leaves a ``.tmp-<name>-*`` sibling."""
    folder = Path(folder)
    rank, world = rank_and_world()
    tmp_name = None
    if rank == 0:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp_name = make_temp_dir(f".tmp-{folder.name}-", folder.parent).name
    tmp = folder.parent / _broadcast_name(tmp_name)
    failed: BaseException | None = None
    try:
        with _single_process_quiet():
            dcp.save(
                _dcp_state(model, optimizer),
                storage_writer=dcp.FileSystemWriter(tmp / SHARDED, sync_files=True),
                no_dist=world == 1,
            )  # returns on every process once every shard and the .metadata are written
        if rank == 0:
            write_files(tmp, files or {})
            publish_folder(tmp, folder)
    except Exception as err:  # the others must not wait for a process that gave up
        failed = err
    finally:
        if rank == 0:
            shutil.rmtree(tmp, ignore_errors=True)
    if any_across(failed is not None):  # also the barrier: no process goes on before the rename
        raise failed or RuntimeError(f"writing {folder} failed on another process")
    return folder


def load_sharded(folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> None:
    """Load what :func:`save_sharded` wrote into ``model`` (and ``optimizer``), in place. Call on every
    process: each reads the parts of the saved shards its own shards cover, so the number of processes
    (and whether the model is sharded at all) may differ from the writer's."""
    path = Path(folder) / SHARDED
    if not (path / ".metadata").is_file():
        raise ConfigError(f"{folder} holds no sharded state ({SHARDED}/.metadata is missing)")
    state = _dcp_state(model, optimizer)
    with _single_process_quiet():
        dcp.load(state, checkpoint_id=path, no_dist=rank_and_world()[1] == 1)
    if optimizer is None:
        set_model_state_dict(model, state["model"])
    else:
        set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])


def write_sharded_checkpoint(
    run_dir: Path,
    step: int,
    files: dict[str, Any],
    keep_last: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
) -> Path:
    """:func:`write_checkpoint` for sharded state: checkpoint ``step`` with the model and optimizer
    in ``sharded/`` (:func:`save_sharded`) and the main process's ``files`` (the scheduler, RNG
    states, state.json, config); pruned to the newest ``keep_last``. Call on every process."""
    target = save_sharded(Path(run_dir) / CHECKPOINTS / checkpoint_name(step), model, optimizer, files)
    if rank_and_world()[0] == 0:
        prune_checkpoints(run_dir, keep_last)
    return target


def _write_file(path: Path, content: Any) -> None:
    if path.suffix == ".safetensors":
        save_file(content, str(path))
        os.chmod(path, file_mode())  # safetensors writes 0o600 whatever the umask
    elif path.suffix == ".pt":
        torch.save(content, path)
    elif path.suffix == ".json":
        path.write_text(json.dumps(content, indent=1))
    else:
        path.write_text(str(content))


@dataclass(frozen=True)
class BatchLayout:
    """How the resuming run splits its optimizer steps, and whether anything in it is random: what
    :func:`check_layout` compares with the checkpoint's."""

    batch_size: int  # train.batch_size: pairs per process per micro-batch
    rank_local_solve: bool = False  # method.solve_per: microbatch (a solve per process's micro-batch)
    random_draws: bool = False  # the model draws random numbers in training (dropout: random_draws)


def random_draws(model: nn.Module) -> bool:
    """Whether ``model`` draws random numbers in training: a dropout (``nn.Dropout``, LoRA's included,
    or an ``attention_dropout`` rate) above 0 (``model.disable_dropout`` sets the model's own to 0)."""
    for module in model.modules():
        if isinstance(module, nn.Dropout) and module.p > 0:
            return True
        rate = getattr(module, "attention_dropout", None)
        if isinstance(rate, float) and rate > 0:
            return True
    return False


def _saved_batch_size(folder: Path, state: dict[str, Any]) -> int | None:
    """``train.batch_size`` of the run that wrote checkpoint ``folder`` (state.json; its config.yaml
    for checkpoints written before state.json recorded it), or None when neither says."""
    if "batch_size" in state:
        return int(state["batch_size"])
    try:
        tree = yaml.safe_load((folder / "config.yaml").read_text())
        return int(tree["train"]["batch_size"])
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError):
        return None


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def check_layout(folder: Path, state: dict[str, Any], processes: int, layout: BatchLayout | None) -> None:
    """A ``ConfigError`` unless checkpoint ``folder`` (its ``state``) resumed on ``processes`` processes
    with ``layout`` continues its trajectory: the same global micro-batch (``train.batch_size ×
    processes``) and, on another number of processes, no per-process solve. A ``RuntimeWarning`` when
    the number of processes changes and ``layout.random_draws``. Without ``layout`` only the same
    number of processes is accepted."""
    saved = state.get("processes")
    saved_batch = _saved_batch_size(folder, state)
    now = f"{processes} process{'es' if processes != 1 else ''}"
    if layout is None or saved is None or saved_batch is None:
        if saved is not None and saved != processes:
            raise ConfigError(
                f"{folder} was written by {saved} processes; resume it with {saved} (this run has "
                f"{processes}): the global batch, the data order and each process's random state depend "
                "on the number of processes"
            )
        return
    pairs, resumed_pairs = saved_batch * saved, layout.batch_size * processes
    if pairs != resumed_pairs:
        if pairs % processes == 0:
            fix = f"resume with --train.batch_size {pairs // processes} ({pairs} pairs over {now})"
        else:
            fix = (
                f"no train.batch_size gives {pairs} pairs over {now}; resume on a number of processes "
                f"that divides {pairs} ({', '.join(map(str, _divisors(pairs)))}) with --train.batch_size "
                f"{pairs} / processes"
            )
        if saved != processes:
            fix += f", or on {saved} processes with train.batch_size {saved_batch}"
        raise ConfigError(
            f"{folder} was written by {saved} process{'es' if saved != 1 else ''} with train.batch_size "
            f"{saved_batch}: global micro-batches of {pairs} pairs; this run has {now} with "
            f"train.batch_size {layout.batch_size}: {resumed_pairs} pairs, so every later optimizer step "
            f"would read other pairs than the uninterrupted run; {fix}"
        )
    if saved == processes:
        return
    if layout.rank_local_solve:
        raise ConfigError(
            f"{folder} was written by {saved} processes and this run has {processes}: with "
            "method.solve_per: microbatch each process solves on its own share of a micro-batch, so "
            f"the trajectory depends on the number of processes; resume it with {saved}"
        )
    if layout.random_draws:  # a notice the user acts on: console (main process) and warnings.log
        logger.warning(
            "resuming %s (written by %d processes) on %d: the global batches are the same, but the "
            "model draws random numbers (dropout) and each process's random state belongs to one of %d "
            "processes: the dropout draws, and so the numbers, will differ from the uninterrupted run's "
            "(resume with %d processes, or train with model.disable_dropout and lora.dropout: 0, for an "
            "exact resume)",
            folder,
            saved,
            processes,
            saved,
            saved,
        )


def read_checkpoint(
    folder: Path, rank: int = 0, processes: int | None = None, layout: BatchLayout | None = None
) -> dict[str, Any]:
    """The contents of checkpoint ``folder`` for process ``rank`` of ``processes`` (torch files loaded
    weights_only); ``"rng"`` is that process's random state. ``"sharded"``: the model and optimizer
    are in ``sharded/`` (:func:`load_sharded`; ``"trainable"`` is None, ``"optim"`` holds the
    scheduler's).

    A ``ConfigError`` when the resumed run would not continue the checkpoint's trajectory
    (:func:`check_layout`: another number of processes is accepted only with ``layout``, the
    resuming run's batch layout, giving the same global batches). A process the writer did not
    have takes process 0's random state."""
    folder = Path(folder)
    state = json.loads((folder / "state.json").read_text())
    if processes is not None:
        check_layout(folder, state, processes, layout)
    rng_file = folder / f"rng-{rank}.pt"
    if not rng_file.exists():
        saved = state.get("processes")
        if saved is None or saved > rank:  # written before every process saved its own state
            warnings.warn(
                f"{folder} holds no random state for process {rank}; using process 0's: dropout will "
                "differ from the uninterrupted run",
                RuntimeWarning,
                stacklevel=2,
            )
        rng_file = folder / "rng-0.pt"  # (a process the writer did not have: check_layout warned)
    rng = torch.load(rng_file, weights_only=True)
    if "python" not in rng:  # older layout: Python/NumPy states (of process 0) in state.json
        rng.update(state["rng"])
    sharded = (folder / SHARDED).is_dir()  # model and optimizer: load_sharded(folder, ...)
    return {
        "trainable": None if sharded else load_file(str(folder / "trainable.safetensors")),
        "optim": torch.load(folder / "optimizer.pt", weights_only=True),
        "rng": rng,
        "state": state,
        "sharded": sharded,
    }


def load_full_into_sharded(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    tensors: dict[str, torch.Tensor],
    optimizer_state: dict[str, Any],
) -> None:
    """Load an unsharded checkpoint (``trainable.safetensors`` and ``optimizer.state_dict()``, as one
    process or replicated processes write them) into a sharded (FSDP2) ``model`` and its
    ``optimizer``: each process keeps its shards of the whole tensors. Call on every process."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    missing, extra = set(names) - set(tensors), set(tensors) - set(names)
    if missing or extra:
        raise RuntimeError(
            f"checkpoint does not match the model: missing {sorted(missing)[:3]}, "
            f"unexpected {sorted(extra)[:3]}"
        )
    # optimizer.state_dict() numbers the parameters in the order the optimizer was given them, which
    # is the order of the trainable parameters (training/session.py); DCP's full form names them
    optim = {
        "state": {names[index]: value for index, value in optimizer_state["state"].items()},
        "param_groups": [
            {**group, "params": [names[index] for index in group["params"]]}
            for group in optimizer_state["param_groups"]
        ],
    }
    set_state_dict(
        model,
        optimizer,
        model_state_dict=tensors,
        optim_state_dict=optim,
        options=StateDictOptions(full_state_dict=True, strict=False),
    )


def load_trainable(model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Copy saved trainable parameters into ``model``; names must match exactly."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    missing, extra = set(params) - set(tensors), set(tensors) - set(params)
    if missing or extra:
        raise RuntimeError(
            f"checkpoint does not match the model: missing {sorted(missing)[:3]}, "
            f"unexpected {sorted(extra)[:3]}"
        )
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(tensors[name].to(param.device, param.dtype))
