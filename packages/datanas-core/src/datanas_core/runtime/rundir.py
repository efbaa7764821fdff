"""Run directories: everything a search writes, in one place.

Layout of a run directory::

    RUN_DIR/
      config.json (+ config.yaml when PyYAML is installed)   resolved configuration
      manifest.json        versions, device, seed, git commit, data-file checksums, config hash
      metrics.jsonl        one JSON record per line ({"kind": "step"|"epoch"|"event", ...})
      tb/                  TensorBoard event files (when the ``tensorboard`` package is installed)
      genotypes/epoch_XXX.json   the derived genotype after every epoch
      genotype.json        the final derived genotype
      checkpoints/         see :mod:`datanas_core.runtime.checkpoint`
      summary.json         final metrics, derived-network size, status
      report.html, report.md, figures/   written by :mod:`datanas_core.runtime.report`
      .lock                pid and host of the process running the search (see :class:`RunLock`)
      .summary.lock        held while summary.json is read and rewritten (see :meth:`RunDir.update_summary`)

One process at a time: :func:`~datanas_core.runtime.run_search` holds an exclusive :class:`RunLock` on the
directory for the run's lifetime, so a second search started with the same directory is refused with the
holder's pid instead of interleaving its files. The lock is an ``flock`` on ``.lock``: the kernel releases it
when the holder exits or is killed, so a lock file left by a killed process is taken over.

In distributed runs only rank 0 writes: a :class:`RunDir` built with ``enabled=False`` turns every write
into a no-op (reads still work).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from datanas_core.errors import ConfigError, DataError, RunLockedError
from datanas_core.genotype import Genotype
from datanas_core.runtime._fs import atomic_write
from datanas_core.runtime._jsonutil import config_hash, dumps, is_number, to_jsonable

__all__ = [
    "RunDir",
    "RunLock",
    "prepare_run_dir",
    "build_manifest",
    "collect_data_files",
    "git_commit",
    "package_versions",
    "register_data_files",
]

logger = logging.getLogger(__name__)

_PACKAGES = (
    "torch",
    "numpy",
    "torchvision",
    "timm",
    "tqdm",
    "pyyaml",
    "tensorboard",
    "scikit-learn",
    "mmsegmentation",
    "mmengine",
    "mmcv-lite",
    "mmcv",
    "learn2learn",
    "scipy",
)


_DATANAS = ("datanas-core", "datanas-vision", "datanas-seg", "datanas-lm", "datanas-fewshot")


def package_versions(extra: Iterable[str] = ()) -> dict[str, str]:
    """Versions of the datanas packages and of well-known dependencies that are installed."""
    from importlib import metadata

    out: dict[str, str] = {}
    for name in (*_DATANAS, *_PACKAGES, *extra):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    try:
        import torch

        out.setdefault("torch", torch.__version__)
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass
    return dict(sorted(out.items()))


def git_commit(start: str | os.PathLike[str] | None = None) -> dict[str, Any] | None:
    """Commit hash and dirty flag of the git checkout containing ``start`` (default: this package's source).

    Returns ``None`` when there is no checkout or git is unavailable.
    """
    here = Path(start) if start is not None else Path(__file__).resolve().parent
    root = None
    for p in (here, *here.parents):
        if (p / ".git").exists():
            root = p
            break
    if root is None:
        return None
    try:
        rev = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if rev.returncode != 0:
            return None
        status = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": rev.stdout.strip(), "dirty": bool(status.stdout.strip()), "root": str(root)}


def _device_info(device: Any) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"device": str(device) if device is not None else "cpu"}
    info["cuda_available"] = torch.cuda.is_available()
    if torch.cuda.is_available():
        info["cuda"] = torch.version.cuda
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        info["cudnn"] = torch.backends.cudnn.version()
        info["cudnn_deterministic"] = bool(torch.backends.cudnn.deterministic)
        info["cudnn_benchmark"] = bool(torch.backends.cudnn.benchmark)
    info["deterministic_algorithms"] = torch.are_deterministic_algorithms_enabled()
    info["num_threads"] = torch.get_num_threads()
    return info


def register_data_files(obj: Any, *paths: str | os.PathLike[str]) -> Any:
    """Declare the files a dataset (or loader) reads, for the run manifest's checksums.

    Domain loaders call this on the datasets they build; :func:`~datanas_core.runtime.run_search` finds the
    files through :func:`collect_data_files` and records their size and sha256 in ``manifest.json``.
    Returns ``obj`` (so it can wrap a constructor call).

    Example:
        >>> ds = register_data_files(MyDataset(root), root / "a.bin", root / "b.bin")  # doctest: +SKIP
    """
    existing = list(getattr(obj, "data_files", None) or [])
    for p in paths:
        if Path(p) not in [Path(e) for e in existing]:
            existing.append(Path(p))
    obj.data_files = existing
    return obj


def collect_data_files(*sources: Any) -> list[Path]:
    """Data files declared by datasets/loaders through a ``data_files`` attribute.

    Domain packages register the files their loaders read by giving the dataset (or the loader, or a
    wrapped ``.dataset``) a ``data_files`` attribute: a sequence of paths. This function walks ``loader``,
    ``loader.dataset`` and ``dataset.dataset`` (Subset/wrappers) and returns the union, in order.
    """
    seen: dict[str, Path] = {}
    for src in sources:
        obj, depth = src, 0
        while obj is not None and depth < 6:
            files = getattr(obj, "data_files", None)
            if files:
                for f in [files] if isinstance(files, (str, os.PathLike)) else files:
                    p = Path(f)
                    seen.setdefault(str(p.resolve()), p)
            obj = getattr(obj, "dataset", None)
            depth += 1
    return list(seen.values())


def build_manifest(
    *,
    config: Mapping[str, Any] | None = None,
    seed: int | None = None,
    device: Any = None,
    data_files: Sequence[str | os.PathLike[str]] = (),
    checksum: str = "sha256",
    world_size: int = 1,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything needed to reproduce a run, as a JSON-able dict.

    Args:
        config: the resolved configuration (hashed into ``config_hash``).
        seed: the run's seed.
        device: the device the search runs on.
        data_files: files read by the data loaders; their size and checksum are recorded.
        checksum: ``"md5"``, ``"sha1"`` or ``"sha256"``.
        world_size: number of distributed processes.
        extra: additional entries (merged last).

    Raises:
        DataError: a declared data file does not exist.
    """
    from datanas_core.io import file_digest

    files = []
    for f in data_files:
        p = Path(f)
        if not p.is_file():
            raise DataError(
                f"declared data file {str(p)!r} does not exist (cannot checksum it for the manifest)"
            )
        files.append(
            {"path": str(p.resolve()), "bytes": p.stat().st_size, checksum: file_digest(p, checksum)}
        )
    manifest: dict[str, Any] = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "argv": list(sys.argv),
        "packages": package_versions(),
        "device": _device_info(device),
        "seed": seed,
        "world_size": world_size,
        "git": git_commit(),
        "data_files": files,
        "config_hash": config_hash(config) if config is not None else None,
    }
    if extra:
        manifest.update(to_jsonable(dict(extra)))
    return manifest


def prepare_run_dir(path: str | os.PathLike[str], *, create: bool = True) -> Path:
    """Check that ``path`` can be a run directory and create it (with ``create``).

    Raises:
        ConfigError: ``path`` (or a parent) is a file, or the directory cannot be created or written
            (read-only file system, no permission); the message names the path and the reason.
    """
    p = Path(path)
    for q in (p, *p.parents):
        if q.exists() and not q.is_dir():
            raise ConfigError(
                f"run directory {str(p)!r}: {str(q)!r} is a file, not a directory; pass --out with a new "
                "or existing directory"
            )
        if q.exists():
            break
    if create:
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create run directory {str(p)!r}: {exc.strerror or exc}; pass --out with a "
                "writable directory"
            ) from None
        if not os.access(p, os.W_OK | os.X_OK):
            raise ConfigError(
                f"run directory {str(p)!r} is not writable; pass --out with a writable directory"
            )
    return p


class RunLock:
    """An exclusive, process-lifetime lock on a run directory (``RUN_DIR/.lock``).

    The lock is ``fcntl.flock`` on the file, which the kernel releases when the process exits or dies; the
    file holds the holder's pid and host so a refused process can name it. A lock file whose flock is free
    (its process was killed) is taken over. Where ``fcntl`` is unavailable, :mod:`filelock` is used.

    Example:
        >>> with RunLock(run_dir):  # doctest: +SKIP
        ...     ...  # the run
    """

    NAME = ".lock"

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.path = self.directory / self.NAME
        self._fd: int | None = None
        self._fallback: Any = None

    @property
    def held(self) -> bool:
        return self._fd is not None or self._fallback is not None

    def _holder(self) -> tuple[int | None, str]:
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None, ""
        doc: dict[str, Any] = {}
        try:
            loaded = json.loads(text)
            doc = loaded if isinstance(loaded, dict) else {}
        except json.JSONDecodeError:
            pass
        pid = doc.get("pid")
        return (pid if isinstance(pid, int) and not isinstance(pid, bool) else None), str(doc.get("host", ""))

    def acquire(self) -> RunLock:
        """Take the lock (the directory must exist).

        Raises:
            RunLockedError: another live process holds it (the message names its pid).
            ConfigError: the lock file cannot be created (read-only directory, ...).
        """
        if self.held:
            return self
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return self._acquire_filelock()
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ConfigError(
                f"cannot write to run directory {str(self.directory)!r}: {exc.strerror or exc}; pass --out "
                "with a writable directory"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            pid, host = self._holder()
            who = f"pid {pid}" if pid is not None else "an unknown process"
            if host and host != socket.gethostname():
                who += f" on {host}"
            raise RunLockedError(
                f"run directory {str(self.directory)!r} is in use by another search ({who}); wait for it "
                "to finish or pass another --out",
                pid=pid,
            ) from None
        old_pid, _ = self._holder()
        if old_pid is not None and old_pid != os.getpid():
            logger.info("taking over the stale lock of %s (pid %d is gone)", self.directory, old_pid)
        doc = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(doc) + "\n").encode(), 0)
        self._fd = fd
        return self

    def _acquire_filelock(self) -> RunLock:  # pragma: no cover - not POSIX
        import filelock

        lock = filelock.FileLock(str(self.path))
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            raise RunLockedError(
                f"run directory {str(self.directory)!r} is in use by another search; wait for it to finish "
                "or pass another --out"
            ) from None
        self._fallback = lock
        return self

    def release(self) -> None:
        """Release the lock (the file stays; an unlocked file is free for the next run)."""
        if self._fd is not None:
            import fcntl

            try:
                os.ftruncate(self._fd, 0)
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            except OSError:
                pass
            finally:
                os.close(self._fd)
                self._fd = None
        if self._fallback is not None:  # pragma: no cover - not POSIX
            self._fallback.release()
            self._fallback = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_json_dict(p: Path) -> dict[str, Any]:
    if not p.is_file():
        return {}
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        logger.warning("ignoring unreadable %s: %s", p, exc)
        return {}
    return doc if isinstance(doc, dict) else {}


#: ``summary.json`` sections that other processes add to a run (``results``: retraining results appended by
#: :func:`~datanas_core.runtime.report.record_retraining`); :meth:`RunDir.write_summary` keeps them.
MERGED_SUMMARY_KEYS = ("results",)

#: The lock file of read-modify-writes of ``summary.json`` (see :meth:`RunDir.update_summary`).
SUMMARY_LOCK = ".summary.lock"


@contextlib.contextmanager
def _summary_lock(directory: Path) -> Iterator[None]:
    """An exclusive, blocking lock on ``directory/.summary.lock`` for the duration of the block."""
    path = directory / SUMMARY_LOCK
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        import filelock

        with filelock.FileLock(str(path), timeout=60):
            yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


class RunDir:
    """A run directory (see the module docstring for the layout).

    Args:
        path: the directory; created on first write.
        enabled: ``False`` makes every write a no-op (non-zero ranks of a distributed run).
        tensorboard: write TensorBoard event files when the ``tensorboard`` package is installed.
    """

    CONFIG = "config.json"
    CONFIG_YAML = "config.yaml"
    MANIFEST = "manifest.json"
    METRICS = "metrics.jsonl"
    GENOTYPE = "genotype.json"
    SUMMARY = "summary.json"

    def __init__(
        self, path: str | os.PathLike[str], *, enabled: bool = True, tensorboard: bool = True
    ) -> None:
        self.path = Path(path)
        self.enabled = enabled
        self._tb_wanted = tensorboard
        self._tb: Any = None
        self._tb_failed = False
        self._metrics_fh: Any = None

    # ----------------------------------------------------------------- paths
    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def genotypes_dir(self) -> Path:
        return self.path / "genotypes"

    @property
    def tensorboard_dir(self) -> Path:
        return self.path / "tb"

    @property
    def metrics_path(self) -> Path:
        return self.path / self.METRICS

    def exists(self) -> bool:
        """Whether the directory already holds a run (a config file)."""
        return (self.path / self.CONFIG).is_file()

    def move_aside(self) -> Path | None:
        """Move every entry of the run directory (but the lock) into ``previous/<timestamp>/`` so that a run
        can start again from step 0 in the same directory (``--restart``). Returns the new folder, or
        ``None`` when there was nothing to move."""
        if not self.enabled or not self.path.is_dir():
            return None
        entries = [p for p in self.path.iterdir() if p.name not in (RunLock.NAME, SUMMARY_LOCK, "previous")]
        if not entries:
            return None
        self.close()
        dest = self.path / "previous" / time.strftime("%Y%m%d-%H%M%S")
        n = 0
        while dest.exists():
            n += 1
            dest = dest.with_name(f"{dest.name.split('.')[0]}.{n}")
        dest.mkdir(parents=True)
        for p in entries:
            os.replace(p, dest / p.name)
        return dest

    def _mkdir(self) -> None:
        if self.enabled:
            self.path.mkdir(parents=True, exist_ok=True)

    # ---------------------------------------------------------------- config
    def write_config(self, config: Mapping[str, Any]) -> None:
        """Write the resolved configuration as JSON (and YAML when PyYAML is installed)."""
        if not self.enabled:
            return
        self._mkdir()
        doc = to_jsonable(dict(config))
        atomic_write(self.path / self.CONFIG, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode())
        try:
            import yaml
        except ImportError:
            logger.debug("PyYAML not installed: writing config.json only")
            return
        text = yaml.safe_dump(json.loads(json.dumps(doc)), sort_keys=True, default_flow_style=False)
        atomic_write(self.path / self.CONFIG_YAML, text.encode())

    def read_config(self) -> dict[str, Any]:
        """The configuration saved in the run directory.

        Raises:
            ConfigError: there is none or it is not valid JSON.
        """
        p = self.path / self.CONFIG
        if not p.is_file():
            raise ConfigError(f"{str(self.path)!r} is not a run directory: {self.CONFIG} is missing")
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise ConfigError(f"{str(p)!r} is not a readable JSON configuration: {exc}") from None
        if not isinstance(doc, dict):
            raise ConfigError(f"{str(p)!r} is not a JSON object")
        return doc

    # -------------------------------------------------------------- manifest
    def write_manifest(self, manifest: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        self._mkdir()
        atomic_write(self.path / self.MANIFEST, (dumps(manifest, indent=2) + "\n").encode())

    def read_manifest(self) -> dict[str, Any]:
        """manifest.json (``{}`` when missing or unreadable: it is informative, a damaged one is rewritten)."""
        return _read_json_dict(self.path / self.MANIFEST)

    def update_manifest(self, **entries: Any) -> None:
        """Merge entries into manifest.json (e.g. ``resumed_from``)."""
        if not self.enabled:
            return
        m = self.read_manifest()
        m.update(to_jsonable(entries))
        self.write_manifest(m)

    # --------------------------------------------------------------- metrics
    def append_metrics(self, record: Mapping[str, Any]) -> None:
        """Append one record to metrics.jsonl (flushed) and its scalar entries to TensorBoard."""
        if not self.enabled:
            return
        if self._metrics_fh is None:
            self._mkdir()
            self._metrics_fh = open(self.metrics_path, "a", encoding="utf-8")  # noqa: SIM115
        self._metrics_fh.write(dumps(record) + "\n")
        self._metrics_fh.flush()
        self._log_tensorboard(record)

    def read_metrics(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Records of metrics.jsonl (optionally only those of one ``kind``); a torn last line is ignored."""
        if not self.metrics_path.is_file():
            return []
        out = []
        with open(self.metrics_path, encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    logger.warning("ignoring a malformed line in %s (interrupted write?)", self.metrics_path)
                    continue
                if kind is None or rec.get("kind") == kind:
                    out.append(rec)
        return out

    def truncate_metrics(self, *, step: int, epoch: int) -> int:
        """Drop records written after a checkpoint (``step``/``epoch`` of the checkpoint) before resuming.

        Step records with ``step > step`` and epoch records with ``epoch >= epoch`` (epochs not finished
        at the checkpoint) are removed, so a resumed run's metrics read like an uninterrupted run's.
        Returns the number of dropped records.
        """
        if not self.enabled or not self.metrics_path.is_file():
            return 0
        self.close_metrics()
        keep, dropped = [], 0
        for rec in self.read_metrics():
            kind = rec.get("kind")
            s, e = rec.get("step"), rec.get("epoch")
            late = (kind == "epoch" and is_number(e) and e >= epoch) or (
                kind != "epoch" and is_number(s) and s > step
            )
            if late:
                dropped += 1
            else:
                keep.append(rec)
        atomic_write(self.metrics_path, "".join(dumps(r) + "\n" for r in keep).encode())
        return dropped

    def close_metrics(self) -> None:
        if self._metrics_fh is not None:
            self._metrics_fh.close()
            self._metrics_fh = None

    # ----------------------------------------------------------- tensorboard
    def tensorboard(self, purge_step: int | None = None) -> Any:
        """The TensorBoard ``SummaryWriter`` (created lazily), or ``None`` when unavailable or disabled."""
        if not (self.enabled and self._tb_wanted) or self._tb_failed:
            return None
        if self._tb is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                logger.info("tensorboard is not installed: skipping TensorBoard event files")
                self._tb_failed = True
                return None
            self._tb = SummaryWriter(log_dir=str(self.tensorboard_dir), purge_step=purge_step)
        return self._tb

    def _log_tensorboard(self, record: Mapping[str, Any]) -> None:
        kind = record.get("kind")
        if kind not in ("step", "epoch"):
            return
        tb = self.tensorboard()
        if tb is None:
            return
        # scalars, alpha histograms/images, genotype text; epoch records are plotted at their global step
        # too (resume purges by step)
        from datanas_core.runtime.tensorboard import log_record

        log_record(tb, record)

    # -------------------------------------------------------------- genotypes
    def save_epoch_genotype(self, epoch: int, genotype: Genotype) -> Path | None:
        """Write ``genotypes/epoch_XXX.json`` (epochs numbered from 0)."""
        if not self.enabled:
            return None
        self.genotypes_dir.mkdir(parents=True, exist_ok=True)
        return atomic_write(
            self.genotypes_dir / f"epoch_{epoch:03d}.json", (genotype.to_json() + "\n").encode()
        )

    def save_genotype(self, genotype: Genotype) -> Path | None:
        """Write the final ``genotype.json``."""
        if not self.enabled:
            return None
        self._mkdir()
        return atomic_write(self.path / self.GENOTYPE, (genotype.to_json() + "\n").encode())

    def epoch_genotypes(self) -> dict[int, Genotype]:
        """All per-epoch genotypes found in ``genotypes/``, keyed by epoch."""
        out = {}
        if self.genotypes_dir.is_dir():
            for p in sorted(self.genotypes_dir.glob("epoch_*.json")):
                try:
                    out[int(p.stem.split("_")[1])] = Genotype.load(p)
                except (ValueError, IndexError):
                    continue
        return out

    # ---------------------------------------------------------------- summary
    def write_summary(self, summary: Mapping[str, Any]) -> None:
        """Write ``summary.json``, keeping what other processes added to it.

        The sections of :data:`MERGED_SUMMARY_KEYS` (retraining results that ``train``/``compare`` append
        while the search may still run) are merged: the file's sections stay and ``summary``'s own sections
        of the same name replace them. The read and the write happen under the summary lock (see
        :meth:`update_summary`), so a search's final write cannot drop results appended meanwhile.
        """
        given = dict(summary)

        def merge(current: dict[str, Any]) -> dict[str, Any]:
            out = dict(given)
            for key in MERGED_SUMMARY_KEYS:
                old = current.get(key)
                if isinstance(old, Mapping):
                    new = given.get(key)
                    out[key] = {**dict(old), **(dict(new) if isinstance(new, Mapping) else {})}
            return out

        self.update_summary(merge)

    def update_summary(self, change: Callable[[dict[str, Any]], Mapping[str, Any]]) -> dict[str, Any]:
        """Read-modify-write ``summary.json`` under an exclusive lock on ``RUN_DIR/.summary.lock``.

        ``change`` gets the current summary (``{}`` when there is none) and returns the new one. The lock
        is separate from the run's :class:`RunLock` (which a running search holds for its whole lifetime),
        is held only for the read and the atomic write, and is released by the kernel if the process dies.
        Returns the summary written (``{}`` without writing when the run directory is disabled).
        """
        if not self.enabled:
            return {}
        self._mkdir()
        with _summary_lock(self.path):
            doc = dict(change(self.read_summary()))
            atomic_write(self.path / self.SUMMARY, (dumps(doc, indent=2) + "\n").encode())
        return doc

    def read_summary(self) -> dict[str, Any]:
        """summary.json (``{}`` when missing or unreadable)."""
        return _read_json_dict(self.path / self.SUMMARY)

    def close(self) -> None:
        """Flush and close open files (metrics, TensorBoard)."""
        self.close_metrics()
        if self._tb is not None:
            self._tb.flush()
            self._tb.close()
            self._tb = None

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r}, enabled={self.enabled})"
