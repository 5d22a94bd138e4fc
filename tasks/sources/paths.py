"""File discovery, natural sorting, hashing and display of input paths."""

from __future__ import annotations

import glob as globlib
import hashlib
import re
from pathlib import Path
from typing import Any

_NATURAL = re.compile(r"(\d+)")


def natural_key(s: str) -> list[Any]:
    """Sort key that puts B2 before B10."""
    return [int(t) if t.isdigit() else t.lower() for t in _NATURAL.split(s)]


# object-store and web URLs, and the GDAL virtual file systems that read them by ranges; a
# Path keeps one slash of ``https://`` (``/vsicurl/https:/host/key``), which GDAL reads too
_SCHEMES = {
    "s3://": "/vsis3/",
    "https://": "/vsicurl/https:/",
    "http://": "/vsicurl/http:/",
}


def as_path(text: str | Path) -> Path:
    """A path a user gave: ``s3://bucket/key`` becomes GDAL's ``/vsis3/bucket/key`` and an
    ``https://`` URL ``/vsicurl/https:/host/key`` (absolute paths, so ``base / path`` leaves
    them as they are); anything else is a local path."""
    text = str(text)
    for scheme, vsi in _SCHEMES.items():
        if text.startswith(scheme):
            return Path(vsi + text[len(scheme) :])
    return Path(text)


def is_remote(path: str | Path) -> bool:
    """Whether ``path`` is in an object store or on the web (read through GDAL's
    ``/vsis3/`` or ``/vsicurl/``)."""
    return str(path).startswith(("/vsis3/", "/vsicurl/"))


def as_url(path: str | Path) -> str:
    """``/vsis3/bucket/key`` as ``s3://bucket/key``, ``/vsicurl/https:/host/key`` as
    ``https://host/key`` (a local path as it is)."""
    text = str(path)
    for scheme, vsi in _SCHEMES.items():
        if text.startswith(vsi):
            return scheme + text[len(vsi) :]
    if text.startswith("/vsicurl/"):  # written with both slashes
        return text.removeprefix("/vsicurl/")
    return text


def _http_head(path: Path) -> dict[str, str]:
    """The headers of a ``HEAD`` request for a ``/vsicurl/`` path (10 s at most)."""
    import urllib.request

    request = urllib.request.Request(as_url(path), method="HEAD")
    with urllib.request.urlopen(request, timeout=10) as response:
        return {k.lower(): v for k, v in response.headers.items()}


def serves_byte_ranges(path: Path) -> bool:
    """Whether the server of a ``/vsicurl/`` path answers a range request with that range
    (``206``), as GDAL's range reads of a COG need (10 s at most)."""
    import urllib.request

    request = urllib.request.Request(as_url(path), headers={"Range": "bytes=0-0"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return bool(response.status == 206)


def _s3_object(path: Path) -> Any:
    """``head_object`` of an ``/vsis3/`` path (boto3 reads the endpoint and keys from the
    environment, as GDAL does)."""
    try:
        import boto3
    except ImportError:
        raise FileNotFoundError(f"{as_url(path)}: S3 needs boto3 (tessera[cluster])") from None
    bucket, _, key = str(path).removeprefix("/vsis3/").partition("/")
    return boto3.client("s3").head_object(Bucket=bucket, Key=key)


def exists(path: Path) -> bool:
    """Whether a local file or folder, or an object in the store or on the web, exists."""
    if not is_remote(path):
        return path.exists()
    try:
        _http_head(path) if str(path).startswith("/vsicurl/") else _s3_object(path)
    except Exception:
        return False
    return True


def resolve_paths(paths: list[str], pattern: str | None, base: Path) -> list[Path]:
    """Explicit paths plus the matches of ``pattern``, relative to ``base``, without duplicates.
    An ``s3://`` path is an object read in place (:func:`as_path`)."""
    out: list[Path] = [base / as_path(p) for p in paths]
    if pattern:
        hits = globlib.glob(str(base / pattern), recursive=True)
        out += [Path(h) for h in sorted(hits, key=natural_key)]
    seen: set[Path] = set()
    return [p for p in out if not (p in seen or seen.add(p))]  # type: ignore[func-returns-value]


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file (or of every file below a directory, in sorted order). An object
    in a store is named by its ETag and size instead (``s3-etag:...``): reading it whole to
    hash it would double what tiling reads; a file on the web by its ETag (else its
    modification time) and size (``http-etag:...``)."""
    if str(path).startswith("/vsicurl/"):
        head = _http_head(path)
        tag = head.get("etag") or head.get("last-modified") or "unknown"
        return f"http-etag:{tag.strip(chr(34))}:{head.get('content-length', '')}"
    if is_remote(path):
        head = _s3_object(path)
        return f"s3-etag:{str(head['ETag']).strip(chr(34))}:{head['ContentLength']}"
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        with open(f, "rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
    return h.hexdigest()


def display_path(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` when it lies below it, else absolute (an object in a
    store: its ``/vsis3/`` path, which every reader of the catalogue opens as it is)."""
    if is_remote(path):
        return str(path)
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path.resolve())
