"""Fax TIFF → PDF (lossless, page by page) and a small PNG preview of page 1.

What spandsp writes: CCITT G3 2-D, 1728 px wide, 204x196 or 204x98 dpi, and a fax may mix both
resolutions page by page. img2pdf keeps every page's own resolution, so each PDF page has the
physical size of the fax page: 1728 px / 204 dpi = 215 mm wide (the fax scan line, a little
wider than A4's 210 mm) and 2292 rows / 196 dpi (or 1146 / 98) = 297 mm, A4's height; Letter
pages come out 279 mm. The image data is the fax's own bits (G3 is re-encoded as G4, losslessly);
Pillow's PDF writer would give a mixed fax one resolution, ImageMagick is blocked by Debian.

A damaged TIFF (a reception cut off) is salvaged with `tiffcp -i`, which keeps the pages that
decode; what could not be read is reported, and the caller attaches the TIFF as it is if no
PDF could be made at all — nothing that arrived is dropped.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import img2pdf
from PIL import Image

log = logging.getLogger("faxmail_notify.convert")

TOOL_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Converted:
    pdf: bytes | None
    pages: int  # pages in `pdf`
    preview: bytes | None  # PNG of page 1
    problem: str | None  # what went wrong, for the mail; None when the TIFF was whole


def _tool(argv: list[str]) -> tuple[int, str, str]:
    try:
        result = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=TOOL_TIMEOUT_S,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"},
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return -1, "", str(exc)
    return (
        result.returncode,
        result.stdout.decode("utf-8", "replace"),
        result.stderr.decode("utf-8", "replace").strip(),
    )


def readable_pages(tiff: Path) -> int | None:
    """Pages of `tiff` if every strip of every page decodes (tiffinfo -D), else None."""
    if shutil.which("tiffinfo") is None:
        # A missing tool must not turn every good fax into "[FAILED] damaged": say what to
        # install, and let Pillow decode the pages instead (it is laxer on damaged strips).
        log.error("tiffinfo not found: install libtiff-tools; checking %s with Pillow", tiff)
        return _pillow_pages(tiff)
    code, report, errors = _tool(["tiffinfo", "-D", str(tiff.absolute())])
    if code != 0 or errors:
        return None
    return report.count("TIFF Directory at offset")


def _pillow_pages(tiff: Path) -> int | None:
    try:
        with Image.open(tiff) as image:
            frames = getattr(image, "n_frames", 1)
            for frame in range(frames):
                image.seek(frame)
                image.load()
    except Exception:  # noqa: BLE001 - Pillow raises many types for a damaged file
        return None
    return int(frames)


def fax_to_pdf(tiff: Path, *, preview_width: int) -> Converted:
    pages = readable_pages(tiff)
    if pages:
        return _convert(tiff, pages, None, preview_width)
    with tempfile.TemporaryDirectory(prefix="faxmail-notify-") as work:
        salvaged = Path(work) / "salvaged.tif"
        _tool(["tiffcp", "-i", str(tiff.absolute()), str(salvaged)])  # exit 1 on damage
        kept = readable_pages(salvaged) if salvaged.exists() else None
        if not kept:
            return Converted(None, 0, None, "the received TIFF is damaged; no page could be read")
        problem = f"the received TIFF is damaged; {kept} complete page(s) could be read"
        return _convert(salvaged, kept, problem, preview_width)


def _convert(tiff: Path, pages: int, problem: str | None, preview_width: int) -> Converted:
    try:
        pdf = img2pdf.convert(str(tiff))
    except Exception as exc:  # noqa: BLE001 - img2pdf raises a zoo of types; all mean "no PDF"
        log.warning("img2pdf failed on %s: %r", tiff, exc)
        return Converted(None, 0, None, f"could not convert the TIFF to PDF: {exc}")
    return Converted(bytes(pdf), pages, preview_png(tiff, preview_width), problem)


def preview_png(tiff: Path, width: int) -> bytes | None:
    """Page 1, `width` pixels wide, grey, with square pixels (a 204x98 page is not squashed)."""
    try:
        with Image.open(tiff) as image:
            image.seek(0)
            xres, yres = _resolution(image)
            height = max(1, round(image.height * (xres / yres) * width / image.width))
            small = image.convert("L").resize((width, height), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        small.save(out, "PNG", optimize=True)
        return out.getvalue()
    except (OSError, ValueError, SyntaxError, EOFError, ZeroDivisionError) as exc:
        log.warning("no preview of %s: %r", tiff, exc)
        return None


def _resolution(image: Image.Image) -> tuple[float, float]:
    dpi = image.info.get("dpi")
    if isinstance(dpi, tuple) and len(dpi) == 2 and dpi[0] and dpi[1]:
        return float(dpi[0]), float(dpi[1])
    return 204.0, 196.0  # fax fine resolution, the usual case
