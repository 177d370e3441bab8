"""Crash-safe checkpoint files and records of runs: each one is written beside its final name, synced to disk, then
renamed over it.

Lightning's own ``TorchCheckpointIO`` serialises the checkpoint into memory and moves a file from the system's
temporary directory into place, which is a copy (not atomic) when that directory is on another file system, and
never syncs. Here a checkpoint is written straight into a hidden temporary file in its own directory, flushed and
``fsync``-ed, and ``os.replace``-d over the old file, whose directory is synced too: a run killed, or a machine
that loses power, in the middle of a save leaves the previous file whole (and at worst a stray ``.*.tmp`` file).
A save that fails (a full disk, a quota, a read-only or unwritable directory) removes its temporary file, keeps
the previous checkpoint and ends the run in one line. The trainer's saves (``AtomicCheckpointIO``) are written by a
background thread while training goes on. The records of a run (``metrics.json``, ``config.yaml``,
``predictions.json``, reports) are written the same way (``write_record``).

``read_net_weights`` reads the network's weights back out of a checkpoint, for ``model.pretrained``: ``models``
takes state dicts and knows nothing of how a run stores its LightningModule.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import shutil
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO

import torch
from fsspec.utils import get_protocol
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from typing_extensions import override

from models import as_state_dict, load_weights_file
from training.config import UserError

NET_PREFIX = "net."  # the LightningModule's network (``TrainingModule.net``) in its state dict


class CheckpointWriteError(UserError):
    """A checkpoint could not be written (full disk, quota, read-only or unwritable directory)."""


class RecordWriteError(UserError):
    """A record of a run (metrics, config, predictions) could not be written."""


def _in_chain(
    error: BaseException, kind: type[BaseException] | tuple[type[BaseException], ...]
) -> BaseException | None:
    """The first exception of ``kind`` among ``error`` and its causes: ``torch.save`` reports a failed or
    interrupted write as a ``RuntimeError`` raised while handling it."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, kind):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _describe(error: OSError) -> str:
    return os.strerror(error.errno) if error.errno else str(error)


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (a no-op where directories cannot be opened, as on Windows)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # some file systems refuse to sync a directory; the rename itself is still atomic
    finally:
        os.close(descriptor)


def _atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write`` on a hidden temporary file beside ``path``, sync it and rename it over ``path``. An ``OSError``
    of the file system (also one that ``write`` wraps in another error) is raised as such, and an interruption
    re-raised, after the temporary file is removed."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with open(descriptor, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            temporary.unlink()
        interruption = _in_chain(error, (KeyboardInterrupt, SystemExit))
        if interruption is not None:
            raise interruption from None
        cause = _in_chain(error, OSError)
        if cause is None or cause is error:
            raise
        raise cause from error
    _fsync_directory(path.parent)


def _reason(error: OSError) -> str:
    """Why a write failed: the system's words, or a file where a directory should be (mkdir says "File exists")."""
    return f"{error.filename} is not a directory" if isinstance(error, FileExistsError) else _describe(error)


def atomic_save(checkpoint: Any, path: str | Path) -> None:
    """``torch.save(checkpoint, path)`` such that ``path`` is either the old file or the complete new one.

    Raises ``CheckpointWriteError`` (one line naming the file and the reason) when the file system refuses the
    write; any other failure, an interruption included, is re-raised after the temporary file is removed.
    """
    _write_checkpoint(Path(path), lambda file: torch.save(checkpoint, file))


def _write_checkpoint(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """``_atomic_write`` of a checkpoint, a refusal of the file system raised as ``CheckpointWriteError``."""
    kept = "the previous checkpoint is kept" if path.is_file() else "earlier checkpoints are untouched"
    try:
        _atomic_write(path, write)
    except OSError as error:
        raise CheckpointWriteError(f"could not write checkpoint {path}: {_reason(error)}; {kept}") from error


def _link_or_copy(source: Path, path: Path) -> None:
    """``path`` the same checkpoint as ``source``: a hard link (``atomic_link``), else a crash-safe copy."""
    if not atomic_link(source, path):
        with open(source, "rb") as original:
            _write_checkpoint(path, lambda file: shutil.copyfileobj(original, file))


def atomic_link(source: str | Path, path: str | Path) -> bool:
    """Make ``path`` a hard link to the file ``source`` (the same bytes, written once), put in place as atomically as
    ``atomic_save`` puts a file; False, with nothing changed, where that cannot be (a file system without hard links,
    another device), for the caller to write the file instead."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        os.link(source, temporary)
    except OSError:
        return False
    try:
        os.replace(temporary, path)
    except OSError:
        temporary.unlink(missing_ok=True)
        return False
    _fsync_directory(path.parent)
    return True


def write_record(path: str | Path, text: str | bytes, kept: str) -> Path:
    """Write a record of a run (``metrics.json``, ``config.yaml``, ``predictions.json``, a report, a picture's
    bytes) as crash-safely as a checkpoint: ``path`` is either the old file or the complete new one. Raises
    ``RecordWriteError`` naming the file, the reason and ``kept``, what the run keeps (the earlier records are never
    touched)."""
    path = Path(path)
    data = text.encode() if isinstance(text, str) else text
    try:
        _atomic_write(path, lambda file: file.write(data))
    except OSError as error:
        raise RecordWriteError(f"could not write {path}: {_reason(error)}; {kept}") from error
    return path


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``TorchCheckpointIO`` with crash-safe local saves, written in the background; remote paths go
    through Lightning's own code. Set in ``configs/trainer/default.yaml`` as ``trainer.plugins``.

    A local save serialises the checkpoint at once (the state as it is when it is asked for) and a background thread
    writes, syncs and renames the file (``atomic_save``'s steps) while training goes on: on a small network the
    ``fsync`` alone costs as much as a training step. Saves, removals and links are carried out one at a time in the
    order they were asked for, so a top-k checkpoint is removed only after its successor is on disk. A save waits for
    the one before it (one checkpoint in memory at most), and so do a load and ``teardown``, at the end of every fit
    or test: each of them raises the error of a write that failed (``CheckpointWriteError``), which ends a run at its
    next checkpoint at the latest, the files written before it kept.
    """

    def __init__(self) -> None:
        super().__init__()
        self._worker: ThreadPoolExecutor | None = None
        self._queued: list[Future[None]] = []

    def _submit(self, job: Callable[..., None], *args: Any) -> None:
        if self._worker is None:
            self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint-writer")
        self._queued.append(self._worker.submit(job, *args))

    def wait(self) -> None:
        """Wait until the saves, removals and links asked for so far are done; raise the first of their errors."""
        queued, self._queued = self._queued, []
        errors = [future.exception() for future in queued]
        first = next((error for error in errors if error is not None), None)
        if first is not None:
            raise first

    @override
    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        self.wait()
        if storage_options is not None or get_protocol(str(path)) != "file":
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        self._submit(_write_checkpoint, Path(path), lambda file: file.write(buffer.getbuffer()))

    def link_checkpoint(self, source: str | Path, path: str | Path) -> None:
        """Make the local file ``path`` the checkpoint just saved as ``source``, once that is written: a hard link
        (the bytes written once), or a copy where the file system has no hard links."""
        self._submit(_link_or_copy, Path(source), Path(path))

    @override
    def remove_checkpoint(self, path: Any) -> None:
        self._submit(super().remove_checkpoint, path)

    @override
    def load_checkpoint(self, path: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self.wait()
        return super().load_checkpoint(path, *args, **kwargs)

    @override
    def teardown(self) -> None:
        try:
            self.wait()
        finally:
            if self._worker is not None:
                self._worker.shutdown()
                self._worker = None


def _trained_as(checkpoint: Mapping) -> str | None:
    """The model name in a checkpoint's ``hyper_parameters.run_config.model.name``, if each level is what a run
    writes (a file handed to a user may hold anything there)."""
    node: Any = checkpoint
    for key in ("hyper_parameters", "run_config", "model", "name"):
        node = node.get(key) if isinstance(node, Mapping) else None
    return node if isinstance(node, str) else None


def read_net_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], str | None]:
    """The network's state dict in the weights file ``path`` and, for a checkpoint of ``scripts/train.py``, the
    name of the model it trained (else None), to give to ``models.create_model(name, pretrained=...)``.

    Told apart by content: a checkpoint (its ``net.`` weights, renamed as the network names them), a state dict of
    a LightningModule (likewise), or any other state dict saved with ``torch.save`` (possibly under
    ``"state_dict"``) or safetensors, ours or torchvision's, as it is. Read as untrusted data
    (``models.load_weights_file``: no code runs, a damaged file is named damaged, and so is a weight that is not
    finite). ``FileNotFoundError`` for a missing file, ``ValueError`` naming it for anything unreadable.
    """
    content = load_weights_file(path)
    trained_as = None
    is_checkpoint = isinstance(content, Mapping) and "state_dict" in content
    if is_checkpoint:
        trained_as = _trained_as(content)
        content = content["state_dict"]
    state_dict = as_state_dict(content, path)
    net = {key.removeprefix(NET_PREFIX): value for key, value in state_dict.items() if key.startswith(NET_PREFIX)}
    if net and (is_checkpoint or len(net) == len(state_dict)):  # a LightningModule's state dict: the network's part
        return net, trained_as
    return state_dict, trained_as
