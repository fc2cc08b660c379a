"""Legibility of a fax page as OCR character accuracy (tesseract at 300 dpi, as described below).

The 1-bit page is converted to grey and resized bicubically to 300 dpi with square pixels
(2541x3508 for a fine A4 page), then read by Debian's tesseract (`--psm 3 --dpi 300`, eng or
jpn). Score: 1 − Levenshtein distance / reference length, after NFKC and whitespace folding
(whitespace removed for Japanese), floored at 0. Applied identically to every variant.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import unicodedata
from pathlib import Path

from PIL import Image

_SPACE = re.compile(r"\s+")


def levenshtein(a: str, b: str) -> int:
    """Edit distance by Myers' bit-parallel algorithm (Hyyrö's formulation): one pass over
    ``a`` with Python integers as bit vectors over ``b`` — fast enough for whole pages."""
    if len(a) < len(b):
        a, b = b, a
    m = len(b)
    if m == 0:
        return len(a)
    peq: dict[str, int] = {}
    for i, ch in enumerate(b):
        peq[ch] = peq.get(ch, 0) | (1 << i)
    full = (1 << m) - 1
    top = 1 << (m - 1)
    pv, mv, score = full, 0, m
    for ch in a:
        eq = peq.get(ch, 0)
        xv = eq | mv
        xh = (((eq & pv) + pv) ^ pv) | eq
        ph = (mv | ~(xh | pv)) & full
        mh = pv & xh
        if ph & top:
            score += 1
        elif mh & top:
            score -= 1
        ph = ((ph << 1) | 1) & full  # row 0 of the matrix grows by one per character of a
        mh = (mh << 1) & full
        pv = (mh | ~(xv | ph)) & full
        mv = ph & xv
    return score


def normalise(text: str, lang: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    if lang == "jpn":
        return _SPACE.sub("", text)
    return _SPACE.sub(" ", text).strip()


def accuracy(ocr: str, reference: str, lang: str) -> float:
    ref = normalise(reference, lang)
    got = normalise(ocr, lang)
    return max(0.0, 1.0 - levenshtein(got, ref) / len(ref))


def page_image(tiff: Path, page: int) -> Image.Image:
    """Page ``page`` of a fax TIFF as grey at 300 dpi, square pixels."""
    with Image.open(tiff) as img:
        img.seek(page)
        xdpi, ydpi = (float(v) for v in img.info.get("dpi", (204, 196)))
        size = (round(img.width / xdpi * 300), round(img.height / ydpi * 300))
        return img.convert("L").resize(size, Image.Resampling.BICUBIC)


def tesseract(img: Image.Image, lang: str) -> str:
    with tempfile.TemporaryDirectory(prefix="fxb-ocr-") as tmp:
        path = Path(tmp) / "page.png"
        img.save(path)
        # one thread each: the caller runs two pages at once on the two cores
        env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
        out = subprocess.run(
            ["tesseract", str(path), "stdout", "-l", lang, "--psm", "3", "--dpi", "300"],
            capture_output=True,
            env=env,
            timeout=300,
            check=True,
        )
    return out.stdout.decode("utf-8", "replace")


def read_page(
    img: Image.Image,
    reference: str,
    lang: str,
    *,
    turn: bool = False,
    band: tuple[float, float] | None = None,
) -> tuple[float, int]:
    """(accuracy, angle). ``band``: read only that horizontal band (fractions of the height).
    ``turn``: also read the page turned a quarter either way and keep the best (a landscape
    page rotated onto portrait paper is read turned, as a person would turn it)."""
    if band is not None:
        img = img.crop((0, round(band[0] * img.height), img.width, round(band[1] * img.height)))
    best = (accuracy(tesseract(img, lang), reference, lang), 0)
    for angle in (90, 270) if turn else ():
        score = accuracy(tesseract(img.rotate(angle, expand=True), lang), reference, lang)
        if score > best[0]:
            best = (score, angle)
    return best
