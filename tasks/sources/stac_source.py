"""A STAC Item or Collection as a raster source: each Item is a scene whose bands are its
assets, read straight from their hrefs (local files, S3 through ``/vsis3/``, the web through
``/vsicurl/`` range reads), named by their asset keys or band names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tessera.tasks.sources.paths import as_path, as_url, is_remote
from tessera.tasks.sources.raster import BandRef
from tessera.tasks.sources.refusals import BadInputError
from tessera.tasks.sources.specs import SourceSpec

_GEOTIFF_TYPES = ("image/tiff", "image/geotiff", "image/vnd.stac.geotiff")


def _stac_io() -> Any:
    """pystac's reader, with ``s3://`` read by boto3 (the endpoint and keys of the
    environment, as GDAL's) and the web with a bound wait."""
    import urllib.request

    from pystac.stac_io import DefaultStacIO

    class TesseraStacIO(DefaultStacIO):
        def read_text_from_href(self, href: str) -> str:
            if href.startswith("s3://"):
                import boto3

                bucket, _, key = href.removeprefix("s3://").partition("/")
                body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"]
                return str(body.read().decode("utf-8"))
            if href.startswith(("http://", "https://")):
                with urllib.request.urlopen(href, timeout=10) as response:
                    return str(response.read().decode("utf-8"))
            return str(super().read_text_from_href(href))

    return TesseraStacIO()


def _items(href: str, shown: Path) -> list[Any]:
    """The Items of the STAC file at ``href``: itself, or a Collection's or Catalog's."""
    import pystac

    try:
        obj = pystac.read_file(href, stac_io=_stac_io())
        if isinstance(obj, pystac.Item):
            items = [obj]
        elif isinstance(obj, pystac.Catalog):  # a Collection is one
            items = list(obj.get_items(recursive=True))
        else:
            raise ValueError(f"a {type(obj).__name__}, not an Item or Collection")
    except Exception as exc:  # unreachable, not JSON, not STAC: pystac's and urllib's words
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise BadInputError(shown, f"not a readable STAC Item or Collection ({reason})") from None
    if not items:
        raise BadInputError(shown, "a STAC Collection without Items")
    return items


def _bands(asset: Any) -> list[dict[str, Any]]:
    """An asset's band list: ``bands`` (STAC 1.1) or ``eo:bands`` (STAC 1.0)."""
    return list(asset.extra_fields.get("bands") or asset.extra_fields.get("eo:bands") or [])


def _is_image(asset: Any) -> bool:
    media = (asset.media_type or "").lower()
    roles = asset.roles or ["data"]
    return "data" in roles and (not media or media.startswith(_GEOTIFF_TYPES))


def _whole(key: str, asset: Any) -> list[tuple[str, Any, int]]:
    """(name, asset, band index) of each band of an asset: by the band list's names where it
    lists several, else the asset's first band named by its key."""
    bands = _bands(asset)
    if len(bands) <= 1:
        return [(key, asset, 1)]
    return [(str(b.get("name") or f"{key}_{i}"), asset, i) for i, b in enumerate(bands, 1)]


def _pick(item: Any, wanted: list[str] | None, shown: Path) -> list[tuple[str, Any, int]]:
    """(name, asset, band index) of each band: ``wanted`` in its order, each an asset key or
    a band's ``name`` or ``common_name``; else every GeoTIFF data asset's bands."""
    assets = item.assets
    if wanted is None:
        picked = [band for key, a in assets.items() if _is_image(a) for band in _whole(key, a)]
        if not picked:
            raise BadInputError(shown, f"Item {item.id}: no GeoTIFF data asset")
        return picked
    out: list[tuple[str, Any, int]] = []
    for name in wanted:
        hits = [(name, a, 1) for key, a in assets.items() if key.lower() == name.lower()]
        if hits and len(_bands(hits[0][1])) > 1:
            hits = _whole(name, hits[0][1])
        elif not hits:
            hits = [
                (name, a, i)
                for a in assets.values()
                for i, b in enumerate(_bands(a) or [{}], 1)
                if name.lower() in {str(b.get(k, "")).lower() for k in ("name", "common_name")}
            ]
        if not hits or (len(hits) > 1 and len({id(a) for _, a, _ in hits}) > 1):
            what = "no asset or band" if not hits else "several assets"
            keys = ", ".join(assets)
            raise BadInputError(shown, f"Item {item.id}: {what} named {name} (assets: {keys})")
        out += hits
    return out


def _href_path(asset: Any, item: Any, shown: Path) -> Path:
    """Where GDAL reads an asset: its href made absolute (beside the Item's own file)."""
    href = asset.get_absolute_href() or asset.href
    if href.startswith("file://"):
        href = href.removeprefix("file://")
    if "://" in href and not href.startswith(("s3://", "http://", "https://")):
        raise BadInputError(shown, f"Item {item.id}: asset href {href} is not a path, s3 or http")
    return as_path(href)


def stac_scenes(spec: SourceSpec, base: Path) -> dict[str, list[BandRef]]:
    """The scenes of a ``stac`` source: each Item's id and its bands (:class:`BandRef`)."""
    given = as_path(spec.paths[0])
    shown = given if is_remote(given) else base / given
    href = as_url(given) if is_remote(given) else str((base / given).resolve())
    scenes: dict[str, list[BandRef]] = {}
    for item in _items(href, shown):
        picked = _pick(item, spec.stac.assets, shown)
        scenes[item.id] = [BandRef(n, _href_path(a, item, shown), i) for n, a, i in picked]
    return scenes
