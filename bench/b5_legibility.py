"""5. Line time and legibility per page: faxmail's renderer against the seed's gs command.

"Ours" is faxmail.render.renderer.Renderer with the policy's default options (the daemon's own code:
qpdf check, sandboxed gs with the whitening transfer, TIFF validation). The seed ran
`gs -sDEVICE=tiffg4 -r204x196 -dPDFFitPage` (plus what any batch run needs).
Line time ≈ 12 s per call + 1.2 × bits / 14 400 per page (measured on real Asterisk at
14.4 kbit/s), with bits = the page's encoded (G4 strip) bytes × 8. OCR as in bench/ocr.py.
OCR and sizes are deterministic and measured once; render times are interleaved over rounds.
"""

from __future__ import annotations

import concurrent.futures
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import img2pdf
from PIL import Image

from faxmail.core.documents import Document
from faxmail.render.options import RenderOptions
from faxmail.render.renderer import Renderer

from . import ocr
from .common import BARE_GS, Row, Section, interleaved, ratio_row
from .config import Config
from .documents import TestDocument, legibility_documents
from .lab import Lab
from .office import office_documents
from .report import cell, fmt, goal

SEED_GS = ["gs", "-q", "-dBATCH", "-dNOPAUSE", "-sDEVICE=tiffg4", "-r204x196", "-dPDFFitPage"]
#: Not faxmail: a what-if for the README's suggestion. faxmail's transfer (light grey → white)
#: plus a black point (dark grey → black), on the bare gs command.
WHAT_IF_TRANSFER = "{dup 0.8 ge {pop 1} {dup 0.3 le {pop 0} {0.3 sub 0.5 div} ifelse} ifelse}"
WHAT_IF_GS = BARE_GS
CALL_SECONDS = 12.0
LINE_BPS = 14_400
OVERHEAD = 1.2


@dataclass
class Fax:
    tiff: Path
    page_bytes: list[int]  # encoded bytes per page
    sizes: list[tuple[int, int]]

    @property
    def line_seconds(self) -> float:
        return CALL_SECONDS + sum(OVERHEAD * b * 8 / LINE_BPS for b in self.page_bytes)


def read_fax(tiff: Path) -> Fax:
    page_bytes: list[int] = []
    sizes: list[tuple[int, int]] = []
    with Image.open(tiff) as img:
        for n in range(getattr(img, "n_frames", 1)):
            img.seek(n)
            counts = img.tag_v2.get(279)  # type: ignore[attr-defined]  # StripByteCounts
            page_bytes.append(sum(counts) if isinstance(counts, tuple) else int(counts or 0))
            sizes.append(img.size)
    return Fax(tiff, page_bytes, sizes)


def render_ours(
    renderer: Renderer, source: Path, workdir: Path, kind: str = "pdf"
) -> tuple[Path, float]:
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    fax = renderer.render([Document(kind, source, "bench document")], workdir)  # type: ignore[arg-type]
    return fax.tiff, time.perf_counter() - t0


def render_seed(pdf: Path, out: Path) -> tuple[Path, float]:
    t0 = time.perf_counter()
    subprocess.run([*SEED_GS, f"-sOutputFile={out}", str(pdf)], check=True, timeout=300)
    return out, time.perf_counter() - t0


def render_ceiling(pdf: Path, out: Path) -> Image.Image:
    """The page's own ceiling: the source at 300 dpi grey, as a viewer shows it (no fax)."""
    gs = ["gs", "-q", "-dSAFER", "-dBATCH", "-dNOPAUSE", "-sDEVICE=pgmraw", "-r300"]
    subprocess.run([*gs, f"-sOutputFile={out}", str(pdf)], check=True, timeout=300)
    with Image.open(out) as img:
        return img.convert("L")


def render_what_if(pdf: Path, out: Path) -> Path:
    transfer = ["-c", f"{WHAT_IF_TRANSFER} settransfer", "-f", str(pdf)]
    subprocess.run([*WHAT_IF_GS, f"-sOutputFile={out}", *transfer], check=True, timeout=300)
    return out


def run(cfg: Config) -> Section:
    section = Section("legibility", "5. Line time and OCR legibility: faxmail vs the seed's gs")
    docs = legibility_documents() + office_documents()
    renderer = Renderer(RenderOptions())
    times: dict[tuple[str, str], list[float]] = {}
    tiffs: dict[tuple[str, str], Path] = {}
    ceilings: dict[str, Image.Image] = {}
    with Lab("legibility") as lab:
        for doc in docs:
            source = lab.dir / f"{doc.key}.{doc.kind}"
            source.write_bytes(doc.pdf)
            pdf = source
            if doc.kind != "pdf":  # the seed's way to a PDF: img2pdf with its defaults
                pdf = lab.dir / f"{doc.key}.pdf"
                pdf.write_bytes(img2pdf.convert(str(source)))
            ceilings[doc.key] = render_ceiling(pdf, lab.dir / f"ceiling-{doc.key}.pgm")

            def one(
                variant: str,
                r: int,
                doc: TestDocument = doc,
                pdf: Path = pdf,
                source: Path = source,
            ) -> None:
                if variant == "ours":
                    workdir = lab.dir / f"ours-{doc.key}-{r}"
                    tiff, seconds = render_ours(renderer, source, workdir, doc.kind)
                else:
                    tiff, seconds = render_seed(pdf, lab.dir / f"seed-{doc.key}-{r}.tif")
                times.setdefault((doc.key, variant), []).append(seconds)
                tiffs[(doc.key, variant)] = tiff

            interleaved(cfg.legibility_rounds, ["ours", "seed"], one)
            tiffs[(doc.key, "what-if")] = render_what_if(pdf, lab.dir / f"whatif-{doc.key}.tif")

        faxes = {k: read_fax(p) for k, p in tiffs.items()}
        # two pages at a time, one tesseract thread each: both cores busy (every document
        # here is one page)
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            futures = {
                (doc.key, v): pool.submit(
                    ocr.read_page,
                    ocr.page_image(tiffs[(doc.key, v)], 0),
                    doc.reference,
                    doc.lang,
                    turn=doc.landscape,
                    band=doc.ocr_band,
                )
                for doc in docs
                for v in ("ours", "seed", "what-if")
            }
            for doc in docs:
                futures[(doc.key, "ceiling")] = pool.submit(
                    ocr.read_page,
                    ceilings[doc.key],
                    doc.reference,
                    doc.lang,
                    turn=doc.landscape,
                    band=doc.ocr_band,
                )
            scores = {key: f.result() for key, f in futures.items()}

    details: dict[str, object] = {}
    section.table = [
        "| document | line time faxmail | seed | faxmail / seed | OCR faxmail | OCR seed | "
        "OCR Δ (points) | OCR ceiling | G4 kB/page faxmail, seed | render time faxmail / seed "
        "| what-if black point: line / seed, OCR |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for doc in docs:
        ours, seed = faxes[(doc.key, "ours")], faxes[(doc.key, "seed")]
        what_if = faxes[(doc.key, "what-if")]
        (acc_o, rot_o), (acc_s, rot_s) = scores[(doc.key, "ours")], scores[(doc.key, "seed")]
        acc_w = scores[(doc.key, "what-if")][0]
        acc_c = scores[(doc.key, "ceiling")][0]
        section.add(Row(f"{doc.title}: OCR accuracy, ceiling (300 dpi grey)", "%", [100 * acc_c]))
        kb_o, kb_s = (sum(f.page_bytes) / len(f.page_bytes) / 1000 for f in (ours, seed))
        line_o = section.add(Row(f"{doc.title}: line time, faxmail", "s", [ours.line_seconds]))
        line_s = section.add(Row(f"{doc.title}: line time, seed", "s", [seed.line_seconds]))
        goal_line = {"scan": 0.5, "photo": None}.get(doc.key, 1.0)  # issue 5's goals
        line_r = section.add(
            ratio_row(f"{doc.title}: line time faxmail / seed", line_o, line_s, at_most=goal_line)
        )
        section.add(Row(f"{doc.title}: OCR accuracy, faxmail", "%", [100 * acc_o]))
        section.add(Row(f"{doc.title}: OCR accuracy, seed", "%", [100 * acc_s]))
        diff = Row(f"{doc.title}: OCR faxmail − seed", "points", [100 * (acc_o - acc_s)])
        diff.goal, diff.met = "≥ 0", acc_o >= acc_s
        section.add(diff)
        if rot_o or rot_s:
            diff.note = f"read turned {rot_o}° (faxmail) / {rot_s}° (seed)"
        w_line = Row("what-if line", "s", [what_if.line_seconds])
        w_r = section.add(
            ratio_row(
                f"{doc.title}: what-if black point: line time / seed",
                w_line,
                line_s,
                note=f"OCR {100 * acc_w:.1f} %",
            )
        )
        t_o = Row("render faxmail", "s", times[(doc.key, "ours")])
        t_s = Row("render seed", "s", times[(doc.key, "seed")])
        t_r = section.add(ratio_row(f"{doc.title}: render time faxmail / seed", t_o, t_s))
        sizes = {w for w, _ in seed.sizes} | {w for w, _ in ours.sizes}
        size_note = "" if sizes == {1728} else f" (page widths {sorted(sizes)})"
        section.table.append(
            f"| {doc.title}{size_note} | {fmt(line_o.median)} s | {fmt(line_s.median)} s | "
            f"{fmt(line_r.median)} × {goal(line_r)} | {100 * acc_o:.1f} % | {100 * acc_s:.1f} % | "
            f"{100 * (acc_o - acc_s):+.1f} {goal(diff)} | {100 * acc_c:.1f} % | "
            f"{kb_o:.1f}, {kb_s:.1f} | {cell(t_r, True)} | "
            f"{fmt(w_r.median)} ×, {100 * acc_w:.1f} % |"
        )
        details[doc.key] = {
            "ours_page_bytes": ours.page_bytes,
            "seed_page_bytes": seed.page_bytes,
            "what_if_page_bytes": what_if.page_bytes,
            "what_if_ocr": acc_w,
            "ceiling_ocr": acc_c,
            "ocr_turned": {"ours": rot_o, "seed": rot_s},
            "ours_sizes": ours.sizes,
            "seed_sizes": seed.sizes,
            "render_seconds": {"ours": t_o.samples, "seed": t_s.samples},
        }
    section.extra["documents"] = details
    section.notes += [
        "seed: `" + " ".join(SEED_GS) + " -sOutputFile=out.tif in.pdf`; faxmail: "
        "Renderer(RenderOptions()) = A4, fine, adaptive binarisation, no photo mode.",
        "ceiling: the source PDF at 300 dpi grey (`gs -sDEVICE=pgmraw -r300`), no fax; the "
        "phone photo goes to PDF for the seed and the ceiling by img2pdf's defaults.",
        "line time = 12 s + Σ 1.2 × 8 × (G4 bytes of the page) / 14 400; one page each.",
        "what-if (not faxmail, evidence for a suggestion): the bare gs command with "
        f"`{WHAT_IF_TRANSFER} settransfer`, i.e. faxmail's whitening plus a black point.",
        f"render time: {cfg.legibility_rounds} rounds interleaved; faxmail's includes the "
        "qpdf check, the sandbox wrappers and the TIFF validation.",
    ]
    return section
