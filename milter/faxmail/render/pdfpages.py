"""What each page of a PDF draws, as far as pagelook.py cares: its box, and its one raster
image if it draws exactly one and nothing else.

From one sandboxed qpdf run (`--json-output`, every stream as a raw file: qpdf decompresses
nothing, so a decompression bomb costs only its own bytes); content streams are inflated here,
never beyond MAX_CONTENT_BYTES. Whatever is not plainly "one image" raises NoCheapLook: the
caller then paints the fax grey, as before, and loses nothing but time.
"""

from __future__ import annotations

import json
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faxmail.core.processes import run_checker

LOOK_TIMEOUT_S = 10.0
MAX_CONTENT_BYTES = 4096  # a page that only draws an image says so in a few dozen bytes
MAX_PAGES_LOOKED_AT = 200  # page-tree entries walked per file (a loop or a bomb: give up)
_ALLOWED_OPERATORS = {"q", "Q", "cm", "Do"}
_IMAGE_KEYS = {
    "/Type", "/Subtype", "/Width", "/Height", "/BitsPerComponent", "/ColorSpace", "/Filter",
    "/DecodeParms", "/Length", "/Name", "/Interpolate", "/Intent",
}  # fmt: skip
_Matrix = tuple[float, float, float, float, float, float]


class NoCheapLook(Exception):
    """This page cannot be judged without painting it grey."""


@dataclass(frozen=True)
class PlacedImage:
    """One image as a page draws it: its data, and its box on the page (PDF points)."""

    data: Path
    filter: str  # "/DCTDecode", "/FlateDecode" or "" (none)
    width: int
    height: int
    bits: int
    colour: str  # "/DeviceGray" or "/DeviceRGB"
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in page space
    turned: bool  # drawn a quarter turn round (its rows run up or down the page)


@dataclass(frozen=True)
class PageView:
    """What a page draws, as far as the look cares: its box, and its one image if any."""

    box: tuple[float, float, float, float]
    image: PlacedImage | None


def pdf_pages(path: Path, folder: Path) -> list[PageView]:
    """What each page of `path` draws (or NoCheapLook); qpdf writes its streams to `folder`."""
    folder.mkdir()
    output = folder / "pdf.json"
    argv = [
        "qpdf", "--json-output", "--decode-level=none", "--json-stream-data=file",
        f"--json-stream-prefix={folder.absolute() / 'stream'}", "--",
        str(path.absolute()), str(output.absolute()),
    ]  # fmt: skip
    try:
        checked = run_checker(argv, LOOK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise NoCheapLook("qpdf took too long") from None
    if checked.returncode != 0:
        raise NoCheapLook(f"qpdf exit {checked.returncode}")  # check_pdf says why, if it matters
    try:
        objects = json.loads(output.read_text("utf-8"))["qpdf"][1]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        raise NoCheapLook("qpdf's JSON cannot be read") from None
    try:
        return _Objects(objects, folder).pages()
    except (AttributeError, KeyError, TypeError, ValueError, OSError) as error:
        # a shape of JSON we did not expect (a strange but valid PDF): let gs paint it grey
        raise NoCheapLook(f"an unexpected PDF structure ({type(error).__name__})") from None


class _Objects:
    def __init__(self, objects: dict[str, Any], folder: Path) -> None:
        self._objects = objects
        self._folder = folder.absolute()

    def data(self, stream: dict[str, Any]) -> Path:
        """Where qpdf wrote a stream's data: in our folder, nowhere else."""
        path = Path(stream["datafile"])
        if path.parent != self._folder:
            raise NoCheapLook("stream data outside the look's folder")
        return path

    def get(self, value: Any) -> Any:
        """A direct value, or the object a reference ("12 0 R") names."""
        if isinstance(value, str) and value.endswith(" R"):
            found = self._objects.get(f"obj:{value}", {})
            return found.get("value", found.get("stream"))
        return value

    def dictionary(self, value: Any) -> dict[str, Any]:
        found = self.get(value)
        if isinstance(found, dict) and "dict" in found:
            found = found["dict"]  # a stream: its dictionary
        if not isinstance(found, dict):
            raise NoCheapLook("an unexpected PDF object")
        return found

    def pages(self) -> list[PageView]:
        trailer = self.dictionary(self._objects.get("trailer", {}).get("value", {}))
        root = self.dictionary(trailer.get("/Root"))
        views: list[PageView] = []
        stack: list[tuple[Any, dict[str, Any]]] = [(root.get("/Pages"), {})]
        while stack:
            node_ref, inherited = stack.pop()
            if len(views) + len(stack) > MAX_PAGES_LOOKED_AT:
                raise NoCheapLook("too many pages to look at")
            node = self.dictionary(node_ref)
            here = dict(inherited)
            for key in ("/Resources", "/MediaBox", "/CropBox"):
                if key in node:
                    here[key] = node[key]
            if node.get("/Type") == "/Pages" or "/Kids" in node:
                kids = self.get(node.get("/Kids"))
                if not isinstance(kids, list):
                    raise NoCheapLook("a page tree without kids")
                stack.extend((kid, here) for kid in reversed(kids))
            else:
                views.append(self._view(node, here))
        return views

    def _view(self, page: dict[str, Any], inherited: dict[str, Any]) -> PageView:
        if "/Annots" in page:
            raise NoCheapLook("annotations (form fields, stamps) drawn over the page")
        box = _box(self.get(inherited.get("/CropBox") or inherited.get("/MediaBox")))
        resources = self.dictionary(inherited.get("/Resources", {}))
        xobjects = self.dictionary(resources.get("/XObject", {}))
        images = {
            name: ref
            for name, ref in xobjects.items()
            if self.dictionary(ref).get("/Subtype") == "/Image"
        }
        if len(xobjects) != len(images):
            raise NoCheapLook("a form XObject")
        if not images:
            return PageView(box, None)  # vector art only (an inline image: drawn as text)
        if len(images) > 1:
            raise NoCheapLook("several images")
        ((name, ref),) = images.items()
        placement = image_placement(self._content(page.get("/Contents")), name)
        return PageView(box, self._placed(ref, placement))

    def _content(self, contents: Any) -> bytes:
        refs = contents if isinstance(contents, list) else [contents]
        data = b""
        for ref in refs:
            stream = self.get(ref)
            if not isinstance(stream, dict) or "datafile" not in stream:
                raise NoCheapLook("a content stream qpdf did not write")
            filters = _names(stream["dict"].get("/Filter"))
            if filters not in ([], ["/FlateDecode"]):
                raise NoCheapLook(f"content in {filters}")
            with open(self.data(stream), "rb") as handle:
                raw = handle.read(64 * MAX_CONTENT_BYTES)
            if filters:
                try:
                    raw = zlib.decompressobj().decompress(raw, MAX_CONTENT_BYTES + 1)
                except zlib.error:
                    raise NoCheapLook("damaged content") from None
            data += raw + b"\n"
            if len(data) > MAX_CONTENT_BYTES:
                raise NoCheapLook("more content than one image")
        return data

    def _placed(self, ref: Any, ctm: _Matrix) -> PlacedImage:
        stream = self.get(ref)
        info = self.dictionary(ref)
        if set(info) - _IMAGE_KEYS or "datafile" not in stream:
            raise NoCheapLook("an image with a mask, a decode array or more")
        filters = _names(info.get("/Filter"))
        parms = self.get(info.get("/DecodeParms"))
        if len(filters) > 1 or (parms not in (None, [None]) and filters != ["/CCITTFaxDecode"]):
            raise NoCheapLook(f"an image in {filters} with {parms}")
        colour = self.get(info.get("/ColorSpace"))
        bits = self.get(info.get("/BitsPerComponent"))
        if colour not in ("/DeviceGray", "/DeviceRGB") or bits not in (1, 8):
            raise NoCheapLook(f"a {bits}-bit image in {colour}")
        a, b, c, d, e, f = ctm
        corners = [(e + a * x + c * y, f + b * x + d * y) for x in (0, 1) for y in (0, 1)]
        xs, ys = [x for x, _ in corners], [y for _, y in corners]
        width, height = self.get(info.get("/Width")), self.get(info.get("/Height"))
        if not (isinstance(width, int) and isinstance(height, int) and width > 0 < height):
            raise NoCheapLook("an image without a size")
        return PlacedImage(
            self.data(stream),
            filters[0] if filters else "",
            width,
            height,
            bits,
            colour,
            (min(xs), min(ys), max(xs), max(ys)),
            turned=abs(a) + abs(d) < abs(b) + abs(c),
        )


def image_placement(content: bytes, name: str) -> _Matrix:
    """The matrix with which the content draws image `name`, its only drawing (or NoCheapLook)."""
    ctm: _Matrix = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0)
    saved: list[_Matrix] = []
    operands: list[str] = []
    drawn: _Matrix | None = None
    for word in content.decode("latin-1").split():
        if word[0] in "/+-.0123456789":
            operands.append(word)  # a name or a number
            continue
        if word not in _ALLOWED_OPERATORS:
            raise NoCheapLook(f"content operator {word[:10]!r}")
        if word == "q":
            saved.append(ctm)
        elif word == "Q":
            if not saved:
                raise NoCheapLook("unbalanced Q")
            ctm = saved.pop()
        elif word == "cm":
            ctm = _multiply(_numbers(operands), ctm)
        elif operands != [name] or drawn is not None:  # Do
            raise NoCheapLook("an image drawn twice, or another XObject")
        else:
            drawn = ctm
        operands = []
    if drawn is None:
        raise NoCheapLook("the image is not drawn")
    a, b, c, d, _, _ = drawn
    if not ((abs(b) < 1e-6 and abs(c) < 1e-6) or (abs(a) < 1e-6 and abs(d) < 1e-6)):
        raise NoCheapLook("an image drawn askew")
    return drawn


def _numbers(operands: list[str]) -> _Matrix:
    try:
        a, b, c, d, e, f = (float(value) for value in operands)
    except ValueError:
        raise NoCheapLook("a cm without six numbers") from None
    return a, b, c, d, e, f


def _multiply(m: _Matrix, n: _Matrix) -> _Matrix:
    """m x n: first m, then n (PDF's `cm` makes the new CTM m x CTM)."""
    a, b, c, d, e, f = m
    p, q, r, s, t, u = n
    return (
        a * p + b * r,
        a * q + b * s,
        c * p + d * r,
        c * q + d * s,
        e * p + f * r + t,
        e * q + f * s + u,
    )


def _names(value: Any) -> list[str]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _box(value: Any) -> tuple[float, float, float, float]:
    if not (isinstance(value, list) and len(value) == 4):
        raise NoCheapLook("a page without a MediaBox")
    try:
        x0, y0, x1, y1 = (float(v) for v in value)
    except (TypeError, ValueError):
        raise NoCheapLook("a MediaBox without numbers") from None
    if x1 - x0 <= 0 or y1 - y0 <= 0:
        raise NoCheapLook("an empty MediaBox")
    return x0, y0, x1, y1
