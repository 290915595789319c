"""Table files on object storage (`s3://`, `gs://`, `abfs://`, … any fsspec URL; `file://` and
`memory://` too), with `data.storage_options` (credentials, endpoint) for the filesystem.

The files a URL or glob names are copied once into `<cache_dir>/sources/remote-<digest>/`,
hashed while they are read, and loaded from there like local files: the digest is that of their
bytes (a changed object is a new job), and `datasets` never goes to the network itself (it
refuses to when offline). A rerun reads the objects again to hash them — the only proof they
have not changed that every store offers.

fsspec and hashlib only (no torch, no datasets): the digest is computed while the config is
resolved (config/sources.py).
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trainpipe.config.secrets import mask_passwords
from trainpipe.errors import DataError

BLOCK = 1 << 20


def local_copies(data: Mapping[str, Any]) -> list[Path]:
    """The cached local copies of the files `data.path` names, in a stable order."""
    import fsspec

    paths = [data["path"]] if isinstance(data["path"], str) else list(data["path"])
    options = dict(data.get("storage_options") or {})
    urls: list[str] = []
    try:
        for pattern in paths:
            fs, local = fsspec.core.url_to_fs(str(pattern), **options)
            found = fs.glob(local) if fs.glob is not None else [local]
            urls.extend(fs.unstrip_protocol(p) for p in sorted(found) if fs.isfile(p))
    except ImportError as err:
        raise DataError(
            f"data.path: no fsspec filesystem for {mask_passwords(str(paths[0]))} installed "
            f"({err}); e.g. pip install s3fs / gcsfs / adlfs"
        ) from None
    except (OSError, ValueError) as err:
        raise DataError(f"data.path: cannot list {mask_passwords(str(paths[0]))}: {err}") from None
    if not urls:
        raise DataError(f"data.path: no file matches {mask_passwords(str(data['path']))}")
    return _copy(urls, options, Path(data["cache_dir"]).expanduser())


def _copy(urls: list[str], options: dict[str, Any], cache_dir: Path) -> list[Path]:
    import fsspec

    staging = Path(tempfile.mkdtemp(prefix="remote-", dir=_sources(cache_dir)))
    names, summary = [], hashlib.sha256()
    try:
        for number, url in enumerate(urls):
            # numbered, so two objects of one name in different folders do not collide
            name = f"{number:05d}-{url.rstrip('/').rsplit('/', 1)[-1]}"
            digest = hashlib.sha256()
            with fsspec.open(url, "rb", **options) as source, open(staging / name, "wb") as copy:
                for block in iter(lambda: source.read(BLOCK), b""):
                    digest.update(block)
                    copy.write(block)
            summary.update(f"{name}:{digest.hexdigest()}\n".encode())
            names.append(name)
        target = _sources(cache_dir) / f"remote-{summary.hexdigest()[:16]}"
        if not target.is_dir():
            staging.rename(target)  # atomic: another process sees all of it or nothing
        return [target / name for name in names]
    except OSError as err:
        raise DataError(f"data.path: cannot read {mask_passwords(urls[0])}: {err}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _sources(cache_dir: Path) -> Path:
    folder = cache_dir / "sources"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
