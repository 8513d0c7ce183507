"""Archive downloads for every study's ``url`` source: pooch fetches and checks the sha256, and a
download cut short resumes from its ``<name>.part`` (pooch's HTTP downloader asked for the remaining
byte range). ``extract`` unpacks zip / tar.* without letting a member escape the target folder.
"""
from __future__ import annotations

import shutil
import sys
import tarfile
import urllib.parse
import zipfile
from pathlib import Path

from tasks.core.errors import MokuflowError
from tasks.core.io import file_hash
from tasks.core.logs import log


class _Resuming:
    """A pooch downloader that keeps what arrived in ``part`` and asks only for the rest next time."""

    def __init__(self, part: Path):
        self.part = part

    def __call__(self, url: str, output_file, pooch_obj, check_only: bool = False):
        import pooch
        import requests

        start = self.part.stat().st_size if self.part.is_file() else 0
        chunk = self.part.with_name(self.part.name + ".chunk")
        headers = {"Range": f"bytes={start}-"} if start else {}
        if start:
            log(f"download {url}: resuming at {start} B")
        try:
            pooch.HTTPDownloader(headers=headers, progressbar=sys.stderr.isatty(), timeout=60)(
                url, str(chunk), pooch_obj)
        except requests.HTTPError as e:
            if not (start and e.response is not None and e.response.status_code == 416):
                raise  # 416 with a .part: it is already complete
        finally:
            if chunk.is_file():  # whatever arrived, even from a cut connection, is kept for next time
                with open(self.part, "ab") as f, open(chunk, "rb") as c:
                    shutil.copyfileobj(c, f)
                chunk.unlink()
        shutil.copyfile(self.part, output_file)


def fetch(href: str, cache_dir: Path, *, sha256: str | None, key: str) -> tuple[Path, str]:
    """Download ``href`` into ``cache_dir`` (reused when already there and matching); returns (file, sha256).

    ``key`` is the params key of the URL, named in errors. A checksum mismatch deletes the download and
    names the URL and both hashes; a network failure keeps the partial file for the next run.
    """
    import pooch
    import requests

    if not href or not str(href).startswith(("http://", "https://")):
        raise MokuflowError(f"params: {key}.href must be an http(s) URL, got {href!r}")
    name = Path(urllib.parse.urlparse(href).path).name or "download"
    cache_dir.mkdir(parents=True, exist_ok=True)
    final, part = cache_dir / name, cache_dir / f"{name}.part"
    if final.is_file():  # downloaded before: hash once, keep it if it still matches
        got = file_hash(final, "sha256")
        if sha256 is None or got == sha256.lower():
            return final, got
        final.unlink()
    known = f"sha256:{sha256.lower()}" if sha256 else None
    try:
        pooch.retrieve(href, known_hash=known, fname=name, path=cache_dir, downloader=_Resuming(part),
                       progressbar=False)
    except ValueError as e:  # pooch: the hash does not match
        got = file_hash(part, "sha256") if part.is_file() else "unknown"
        part.unlink(missing_ok=True)
        raise MokuflowError(f"{href}: sha256 mismatch: expected {sha256}, got {got} (download deleted; "
                            f"{' '.join(str(e).split())[:120]})") from None
    except requests.RequestException as e:
        raise MokuflowError(f"{href}: download failed ({e}); rerun to resume from {part}") from None
    part.unlink(missing_ok=True)
    got = file_hash(final, "sha256")
    if sha256 is None:
        log(f"download {href}: no {key}.sha256 set; got {got} (pin it for reproducibility)")
    return final, got


def extract(archive: Path, dest: Path) -> None:
    """zip / tar.* into ``dest``, refusing members that would land outside it."""
    dest = dest.resolve()
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            for m in z.namelist():
                if not (dest / m).resolve().is_relative_to(dest):
                    raise MokuflowError(f"{archive}: member {m!r} escapes the archive folder")
            z.extractall(dest)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as t:
            t.extractall(dest, filter="data")  # 'data' rejects absolute paths, '..', device files
    else:
        raise MokuflowError(f"{archive}: not a zip or tar archive")
