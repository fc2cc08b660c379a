"""Page 1 of a job's fax TIFF as a small PNG, for the status page's job list.

Fax pages are stored at 204 x 196 dpi (fine) or 204 x 98 (normal): the picture is stretched to
square pixels so a page looks like paper, then scaled down to `width` pixels.
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

THUMB_WIDTH = 160
# A fax page is 1728 pixels wide and a few thousand tall; anything far larger is not ours.
MAX_PIXELS = 1728 * 12000


class NoThumbnail(Exception):
    """The TIFF is gone (sent faxes' TIFFs are kept only `notify.keep_sent_tiff_days`) or
    cannot be read."""


def page_one_png(tiff: Path, width: int = THUMB_WIDTH) -> bytes:
    try:
        with Image.open(tiff) as image:
            image.seek(0)
            if image.width * image.height > MAX_PIXELS:
                raise NoThumbnail(f"{tiff.name}: {image.width} x {image.height} is no fax page")
            x_dpi, y_dpi = _dpi(image)
            height = round(image.height * x_dpi / y_dpi * width / image.width)
            page = image.convert("L").resize((width, max(height, 1)), Image.Resampling.LANCZOS)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise NoThumbnail(f"{tiff.name}: {exc}") from exc
    out = io.BytesIO()
    page.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _dpi(image: Image.Image) -> tuple[float, float]:
    dpi: object = image.info.get("dpi")
    if not isinstance(dpi, tuple) or len(dpi) != 2:
        return 1.0, 1.0
    try:
        x, y = float(dpi[0]), float(dpi[1])
    except (TypeError, ValueError):
        return 1.0, 1.0
    return (x, y) if x > 0 and y > 0 else (1.0, 1.0)


def servable_tiff(tiff: str, fax_dir: Path) -> Path | None:
    """The job's TIFF if it is still there and inside the fax folder (the only folder whose
    files the page ever reads), else None."""
    path = Path(tiff)
    try:
        resolved = path.resolve(strict=True)
        inside = resolved.is_relative_to(fax_dir.resolve())
    except (OSError, RuntimeError):
        return None
    return resolved if inside and resolved.is_file() else None
