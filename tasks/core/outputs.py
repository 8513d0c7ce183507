"""Outputs: atomic writes that never touch what a stage does not own.

    Everything is written to a temp path beside the target and renamed over it only when the block
    succeeds, so a failed stage leaves the previous output whole. The rules:

    - *A stage writes only what it owns.* :func:`atomic_dir` writes a manifest (``.mokuflow-owned``,
      the relative paths it wrote) inside every output folder. It refuses, with one line naming the
      folder and the first foreign files, a target that holds anything the manifest does not list.
      A folder without a manifest (written before manifests existed, or by someone else) is adopted
      only if each of its files is one the new output also writes, or matches the stage's declared
      ``owns`` patterns; an empty or missing folder is always fine. A target that is a regular file,
      the filesystem root, the current working directory (or one of its parents) or a folder holding
      one of the stage's ``inputs`` is refused. Nothing outside the target is ever deleted or renamed,
      and a user's file is never moved aside.
    - *Replacing a folder survives a kill.* The swap (target -> ``.<name>.old-<pid>-<ns>``, temp ->
      target) runs under a lock (``fcntl.flock`` on ``.<name>.lock`` beside the target, held for
      milliseconds; the file is removed on release). The next :func:`atomic_dir` on that target, under
      the same lock, first repairs what an interrupted swap left: a lone ``.old`` is renamed back when
      the target is missing, leftover ``.old`` / ``.trash`` folders are deleted when it is present,
      and temp folders of dead writers (each live writer holds a lock on its own temp folder) are
      deleted.
    - *Concurrent writers of one output* both compute into their own temp folder, then swap one after
      the other under the lock: both succeed, the last one wins, the output is always one whole
      version. A writer that cannot get the lock within ``MOKUFLOW_LOCK_TIMEOUT`` seconds (default
      120; the lock is only held during the swap) fails with one line naming the lock.
    - OSErrors of these operations (a parent that is a file, no permission, ``/``) are one-line
      :class:`MokuflowError` s naming the path; errors raised inside the ``with`` block pass through.
"""
from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import glob
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from tasks.core.errors import MokuflowError

MANIFEST = ".mokuflow-owned"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()


def _lock_timeout() -> float:
    try:
        return float(os.environ.get("MOKUFLOW_LOCK_TIMEOUT", "120"))
    except ValueError:
        return 120.0


def _why(e: OSError) -> str:
    return e.strerror or type(e).__name__


def _output_target(target: str | os.PathLike, kind: str) -> Path:
    """``target`` made absolute and checked: not the root, not under a regular file, its parent created.

    A folder target that is a symbolic link is written where it points (the link stays); a file
    target that is a link is replaced by the new file (DVC may link outputs into its cache: writing
    through the link would change the cache).
    """
    p = Path(os.path.abspath(Path(target).expanduser()))
    if kind == "folder" and p.is_symlink():
        real = p.resolve()
        if not real.exists():
            raise MokuflowError(f"{p}: the output is a broken symbolic link (to {real})")
        p = real
    if p.parent == p or not p.name:
        raise MokuflowError(f"{p}: cannot write the output {kind} there (it is the filesystem root)")
    for anc in p.parents:  # the first existing ancestor must be a folder
        if anc.exists():
            if not anc.is_dir():
                raise MokuflowError(f"{p}: cannot create the output {kind}: {anc} is a file, not a folder")
            break
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise MokuflowError(f"{p}: cannot create the folder {p.parent} for the output: {_why(e)}") from None
    return p


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp file beside ``target``; rename it over ``target`` only if the block succeeds.

    A ``target`` that is a folder, the root, or under a regular file, and a parent folder that cannot
    be written, are one-line MokuflowErrors naming the path.
    """
    target = _output_target(target, "file")
    if target.is_dir():
        raise MokuflowError(f"{target}: is a folder; the output here is a file (move the folder away)")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as e:
        raise MokuflowError(f"{target}: cannot write in {target.parent}: {_why(e)}") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs are shared data
        yield tmp_path
        try:
            os.replace(tmp_path, target)
        except OSError as e:
            raise MokuflowError(f"{target}: cannot replace it: {_why(e)}") from None
    finally:
        with contextlib.suppress(OSError):
            tmp_path.unlink()


# --------------------------------------------------------------------------------- output folders

def _entries(root: Path) -> set[str]:
    """Relative posix paths under ``root``: files, symlinks, and empty folders (with a trailing /)."""
    out: set[str] = set()
    for d, dirs, files in os.walk(root):
        rel = Path(d).relative_to(root)
        for name in files:
            out.add((rel / name).as_posix())
        for name in list(dirs):
            if os.path.islink(os.path.join(d, name)):  # not followed: an entry of its own
                out.add((rel / name).as_posix())
        if not files and not dirs and d != str(root):
            out.add(rel.as_posix() + "/")
    out.discard(MANIFEST)
    return out


def _read_manifest(folder: Path) -> set[str] | None:
    m = folder / MANIFEST
    if not m.exists() and not m.is_symlink():
        return None
    if not m.is_file():
        raise MokuflowError(f"{folder}: {MANIFEST} is not a file; this folder was not written by mokuflow")
    try:
        lines = m.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as e:
        raise MokuflowError(f"{m}: cannot read: {_why(e)}") from None
    if lines and lines[0].startswith("# written by mokuflow"):
        lines = lines[1:]
    return {ln for ln in lines if ln}


def _write_manifest(folder: Path) -> set[str]:
    written = _entries(folder)
    (folder / MANIFEST).write_text(
        "# written by mokuflow: what this stage owns in this folder (anything else makes it refuse)\n"
        + "".join(f"{e}\n" for e in sorted(written)), encoding="utf-8")
    return written


def _foreign(target: Path, *, written: set[str] | None, owns: tuple[str, ...]) -> list[str]:
    """Entries of the existing ``target`` the stage does not own (sorted); ``written`` None: not known yet."""
    if not target.exists():
        return []
    present = _entries(target)
    owned = _read_manifest(target)
    if owned is not None:
        return sorted(present - owned)
    # no manifest: adopt only files the new output also writes or the stage declares as its own
    if written is None:
        return []  # decided at swap time, when the new output is known
    return sorted(e for e in present
                  if e not in written and not any(fnmatch.fnmatchcase(e.rstrip("/"), pat) for pat in owns))


def _check_target(target: Path, *, written: set[str] | None, owns: tuple[str, ...]) -> None:
    if target.exists() and not target.is_dir():
        raise MokuflowError(f"{target}: exists and is not a folder; the output here is a folder "
                            f"(move the file away or choose another output)")
    foreign = _foreign(target, written=written, owns=owns)
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        how = "not listed in its " + MANIFEST if (target / MANIFEST).is_file() else "not written by this stage"
        raise MokuflowError(f"{target}: the output folder holds {len(foreign)} file(s) {how}: {shown}; "
                            f"nothing was changed (move them away or choose another output folder)")


def _check_placement(target: Path, inputs: Iterable[str | os.PathLike]) -> None:
    real = target.resolve()
    try:
        cwd = Path.cwd().resolve()
    except OSError:  # the cwd was deleted
        cwd = None
    if cwd is not None and (cwd == real or real in cwd.parents):
        raise MokuflowError(f"{target}: the output folder is (or contains) the current working directory; "
                            f"choose another output folder")
    for i in inputs:
        if i is None:
            continue
        ip = Path(os.path.abspath(Path(i).expanduser()))
        with contextlib.suppress(OSError):
            ip = ip.resolve()
        if ip == real or real in ip.parents:
            raise MokuflowError(f"{target}: the output folder holds this stage's input {ip}; replacing the "
                                f"folder would delete it (choose another output folder)")


@contextlib.contextmanager
def _locked(target: Path, timeout: float | None = None) -> Iterator[None]:
    """``fcntl.flock`` on ``.<name>.lock`` beside ``target``; the file is removed on release.

    The holder unlinks the file before unlocking; a waiter that then gets the lock on the unlinked
    file sees that the path no longer names its file and tries again.
    """
    lock = target.with_name(f".{target.name}.lock")
    timeout = _lock_timeout() if timeout is None else timeout
    deadline = time.monotonic() + timeout
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666 & ~_UMASK)
        except OSError as e:
            raise MokuflowError(f"{target}: cannot create the lock file {lock}: {_why(e)}") from None
        held = False
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise MokuflowError(
                            f"{target}: another process is writing this output (lock {lock} held for over "
                            f"{timeout:g} s); try again when it is done") from None
                    time.sleep(0.05)
            st = os.fstat(fd)
            try:
                cur = os.stat(lock)
                held = (cur.st_ino, cur.st_dev) == (st.st_ino, st.st_dev)
            except FileNotFoundError:
                held = False
        finally:
            if not held:
                os.close(fd)
        if held:
            break
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)
        os.close(fd)


def _suffix_ns(p: Path) -> int:
    try:
        return int(p.name.rsplit("-", 1)[-1])
    except ValueError:
        return p.stat().st_mtime_ns if p.exists() else 0


def _trash_name(target: Path) -> Path:
    return target.with_name(f".{target.name}.trash-{os.getpid()}-{time.time_ns()}")


def _recover(target: Path) -> list[Path]:
    """Under the lock: repair what an interrupted swap left; returns folders to delete after unlocking.

    A missing target with ``.old`` folders gets the newest one back (the previous output, whole: the
    interrupted writer never got to install its own). Extra ``.old`` folders, and all of them when the
    target is present (a swap that finished), go to the trash, as do temp folders of dead writers.
    """
    from tasks.core.logs import log

    parent, name = target.parent, target.name
    trash: list[Path] = []
    olds = sorted((p for p in parent.glob(f".{glob.escape(name)}.old-*") if p.is_dir() and not p.is_symlink()),
                  key=_suffix_ns)
    if olds and not target.exists() and not target.is_symlink():
        newest = olds.pop()
        try:
            os.replace(newest, target)
        except OSError as e:
            raise MokuflowError(f"{target}: missing, and its previous output {newest} could not be put back: "
                                f"{_why(e)}") from None
        log(f"{target}: restored the previous output from an interrupted swap ({newest.name})")
    for p in olds:
        t = _trash_name(target)
        with contextlib.suppress(OSError):
            os.replace(p, t)
            trash.append(t)
    for p in parent.glob(f".{glob.escape(name)}.*.tmp"):
        if not p.is_dir() or p.is_symlink() or not _is_orphan(p):
            continue
        t = _trash_name(target)
        with contextlib.suppress(OSError):
            os.replace(p, t)
            trash.append(t)
    trash.extend(p for p in parent.glob(f".{glob.escape(name)}.trash-*") if p.is_dir() and p not in trash)
    return trash


def _is_orphan(tmp: Path) -> bool:
    """A temp folder whose writer is gone: nobody holds the lock a live writer keeps on it."""
    try:
        fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # releases the probe lock


def _empty_trash(trash: Iterable[Path]) -> None:
    for t in trash:
        shutil.rmtree(t, ignore_errors=True)


def _swap(tmp: Path, target: Path) -> Path | None:
    """Under the lock: install ``tmp`` as ``target``; returns the previous output's trash folder."""
    if not target.exists():
        try:
            os.replace(tmp, target)
        except OSError as e:
            raise MokuflowError(f"{target}: cannot install the new output: {_why(e)}") from None
        return None
    old = target.with_name(f".{target.name}.old-{os.getpid()}-{time.time_ns()}")
    try:
        os.replace(target, old)
    except OSError as e:
        raise MokuflowError(f"{target}: cannot move the previous output aside: {_why(e)}") from None
    try:
        os.replace(tmp, target)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.replace(old, target)  # put the previous output back (or the next run will)
        raise MokuflowError(f"{target}: cannot install the new output: {_why(e)}") from None
    trash = _trash_name(target)
    try:
        os.replace(old, trash)
    except OSError:
        return old  # the next run's recovery deletes it
    return trash


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike, *, inputs: Iterable[str | os.PathLike] = (),
               owns: Iterable[str] = (), lock_timeout: float | None = None) -> Iterator[Path]:
    """Yield a temp folder beside ``target``; swap it in for ``target`` only if the block succeeds.

    The previous ``target`` survives any failure untouched. The rules (ownership manifest, refusals,
    lock, repair of an interrupted swap) are in the module docstring. ``inputs``: files or folders the
    stage reads; a target that contains one is refused before anything runs. ``owns``: glob patterns
    (relative posix paths, e.g. ``"videos/*"``) of files this stage writes, used to adopt an output
    folder written before manifests existed. ``lock_timeout``: seconds to wait for another writer's
    swap (default ``$MOKUFLOW_LOCK_TIMEOUT`` or 120).
    """
    target = _output_target(target, "folder")
    owns = tuple(owns)
    _check_placement(target, inputs)
    with _locked(target, lock_timeout):
        trash = _recover(target)
        _check_target(target, written=None, owns=owns)  # fail fast, before the stage's work
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        except OSError as e:
            raise MokuflowError(f"{target}: cannot write in {target.parent}: {_why(e)}") from None
        alive = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        fcntl.flock(alive, fcntl.LOCK_EX)  # marks tmp as a live writer's (see _is_orphan)
    _empty_trash(trash)
    try:
        os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes 0700
        yield tmp
        written = _write_manifest(tmp)
        with _locked(target, lock_timeout):
            trash = _recover(target)
            _check_target(target, written=written, owns=owns)
            old = _swap(tmp, target)
        _empty_trash([*trash, *([old] if old else [])])
    finally:
        os.close(alive)
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


