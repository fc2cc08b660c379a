"""6. Inbound: a received fax TIFF → PDF. img2pdf (what faxmail-notify uses) vs ImageMagick.

Input as spandsp writes it: CCITT G3 2-D, reversed bit order (FillOrder 2), one strip per
page, 1728 px wide. Two faxes: 2 pages of mixed resolution (fine letter + standard scan) and
10 pages of fine text. Variants, interleaved per round:
- notify: faxmail.notify.convert.fax_to_pdf in-process (tiffinfo check + img2pdf + preview),
- img2pdf in-process (the conversion alone),
- img2pdf as a process (its CLI: Python start-up included, like `convert`),
- ImageMagick `convert` (the seed's choice). Debian's policy.xml forbids writing PDF; the
  comparison lifts that in a private policy only: MAGICK_CONFIGURE_PATH cannot do it (that
  file is read before /etc's, and the last matching rule wins), so the policy goes where
  ImageMagick 6 reads after /etc: $XDG_CONFIG_HOME/ImageMagick/policy.xml, in a temp dir.
Lossless: every PDF page rendered back by gs at the page's own resolution, compared pixel by
pixel with the TIFF page.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import img2pdf
from PIL import Image, ImageChops

from faxmail.notify.convert import fax_to_pdf

from .common import BARE_GS, Row, Section, interleaved, ratio_row, timed_run
from .config import Config
from .documents import scan, text_pdf
from .lab import Lab

CONVERT = "/usr/bin/convert"  # /usr/local/bin/convert on these machines is not ImageMagick
PDF_POLICY = """<policymap>
  <policy domain="coder" rights="read|write" pattern="PDF" />
</policymap>
"""


def _gs_tiff(pdf: Path, out: Path, yres: int) -> Path:
    subprocess.run(
        [
            *BARE_GS[:-1],
            f"-r204x{yres}",
            f"-sOutputFile={out}",
            str(pdf),
        ],
        check=True,
        timeout=120,
    )
    return out


def received_fax(parts: list[Path], out: Path) -> Path:
    """The pages of ``parts`` as one G3 2-D, LSB-first, one-strip-per-page TIFF."""
    subprocess.run(
        ["tiffcp", "-c", "g3:2d", "-f", "lsb2msb", "-r", "100000", *map(str, parts), str(out)],
        check=True,
        timeout=60,
    )
    return out


def pages_of(tiff: Path) -> list[tuple[Image.Image, tuple[float, float]]]:
    out = []
    with Image.open(tiff) as img:
        for n in range(getattr(img, "n_frames", 1)):
            img.seek(n)
            dpi = img.info.get("dpi", (204, 196))
            out.append((img.convert("1"), (float(dpi[0]), float(dpi[1]))))
    return out


def lossless(tiff: Path, pdf: Path, work: Path) -> str:
    """'yes', or how the PDF differs from the TIFF."""
    for n, (page, (xdpi, ydpi)) in enumerate(pages_of(tiff), 1):
        out = work / f"back-{n}.pbm"
        subprocess.run(
            [
                "gs",
                "-q",
                "-dSAFER",
                "-dBATCH",
                "-dNOPAUSE",
                "-sDEVICE=pbmraw",
                f"-r{xdpi:g}x{ydpi:g}",
                f"-dFirstPage={n}",
                f"-dLastPage={n}",
                f"-sOutputFile={out}",
                str(pdf),
            ],
            check=True,
            timeout=120,
        )
        with Image.open(out) as back:
            back_1 = back.convert("1")
        if back_1.size != page.size:
            (w, h), (tw, th) = back_1.size, page.size
            return f"no: page {n} is {w}×{h} px, the TIFF's {tw}×{th}"
        diff = ImageChops.logical_xor(back_1, page)
        if diff.getbbox() is not None:
            differing = diff.convert("L").histogram()[255]
            return f"no: page {n} differs in {differing} pixels"
    return "yes"


def run(cfg: Config) -> Section:
    section = Section("inbound", "6. Inbound fax TIFF → PDF: img2pdf vs ImageMagick convert")
    variants = ["notify", "img2pdf", "img2pdf-cli", "convert"]
    labels = {
        "notify": "faxmail-notify fax_to_pdf (in-process)",
        "img2pdf": "img2pdf.convert (in-process)",
        "img2pdf-cli": "img2pdf (process)",
        "convert": "ImageMagick convert (process)",
    }
    with Lab("inbound") as lab:
        policy_dir = lab.dir / "xdg" / "ImageMagick"
        policy_dir.mkdir(parents=True)
        (policy_dir / "policy.xml").write_text(PDF_POLICY)
        im_env = {"PATH": "/usr/bin:/bin", "XDG_CONFIG_HOME": str(lab.dir / "xdg")}
        src = lab.dir / "src"
        src.mkdir()
        (src / "letter.pdf").write_bytes(text_pdf(1))
        (src / "scan.pdf").write_bytes(scan().pdf)
        (src / "ten.pdf").write_bytes(text_pdf(10))
        faxes = {
            "2-page fax, mixed fine/standard": received_fax(
                [
                    _gs_tiff(src / "letter.pdf", src / "p1.tif", 196),
                    _gs_tiff(src / "scan.pdf", src / "p2.tif", 98),
                ],
                lab.dir / "two.tif",
            ),
            "10-page fax, fine": received_fax(
                [_gs_tiff(src / "ten.pdf", src / "ten.tif", 196)], lab.dir / "ten.tif"
            ),
        }
        img2pdf_cli = Path(sys.executable).parent / "img2pdf"
        for name, tiff in faxes.items():
            times: dict[str, list[float]] = {v: [] for v in variants}
            outputs: dict[str, Path] = {}

            def one(
                variant: str,
                r: int,
                tiff: Path = tiff,
                times: dict[str, list[float]] = times,
                outputs: dict[str, Path] = outputs,
            ) -> None:
                out = lab.dir / f"{tiff.stem}-{variant}-{r}.pdf"
                t0 = time.perf_counter()
                if variant == "notify":
                    converted = fax_to_pdf(tiff, preview_width=400)
                    assert converted.pdf is not None, converted.problem
                    out.write_bytes(converted.pdf)
                elif variant == "img2pdf":
                    out.write_bytes(img2pdf.convert(str(tiff)))
                elif variant == "img2pdf-cli":
                    timed_run([str(img2pdf_cli), "-o", str(out), str(tiff)], timeout=300)
                else:
                    subprocess.run(
                        [CONVERT, str(tiff), str(out)],
                        env=im_env,
                        check=True,
                        capture_output=True,
                        timeout=300,
                    )
                times[variant].append(time.perf_counter() - t0)
                outputs[variant] = out

            interleaved(cfg.inbound_rounds, variants, one)
            rows = {v: section.add(Row(f"{name}: {labels[v]}", "s", times[v])) for v in variants}
            section.add(
                ratio_row(
                    f"{name}: convert / img2pdf (both processes)",
                    rows["convert"],
                    rows["img2pdf-cli"],
                )
            )
            section.add(ratio_row(f"{name}: convert / notify", rows["convert"], rows["notify"]))
            tiff_size = tiff.stat().st_size
            sizes = {v: outputs[v].stat().st_size for v in ("notify", "convert")}
            for v in ("notify", "convert"):
                note = "lossless: " + lossless(tiff, outputs[v], lab.dir)
                section.add(
                    Row(
                        f"{name}: PDF size, {labels[v].split(' (')[0]} / TIFF",
                        "×",
                        [sizes[v] / tiff_size],
                        note=note,
                    )
                )
            section.extra[name] = {"tiff_bytes": tiff_size, "pdf_bytes": sizes}
    section.notes += [
        f"{cfg.inbound_rounds} rounds, variants interleaved; sizes of the TIFFs and PDFs in "
        "results.json.",
        "ImageMagick runs with a private policy that allows PDF (see bench/b6_inbound.py); "
        "/etc/ImageMagick-6/policy.xml is not touched.",
    ]
    return section
