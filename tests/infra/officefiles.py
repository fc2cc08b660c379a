"""Office files made at test time: DOCX/XLSX written as their XML by hand, the other formats
converted from them by LibreOffice, OLE compound files by a small writer of our own, and a
password-protected XLSX encrypted by msoffcrypto-tool. Nothing binary is committed."""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
import tempfile
import zipfile
from pathlib import Path
from xml.sax.saxutils import escape

_RELS_NS = "http://schemas.openxmlformats.org/package/2006/relationships"
_OFFICE_DOC = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument"
_DOCX_MAIN = "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"
_DOCM_MAIN = "application/vnd.ms-word.document.macroEnabled.main+xml"
_XLSX_MAIN = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"
_SHEET = "application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"
_W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
_S = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_R = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"


def _content_types(overrides: dict[str, str], extra_defaults: str = "") -> str:
    parts = "".join(f'<Override PartName="{k}" ContentType="{v}"/>' for k, v in overrides.items())
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" ContentType='
        '"application/vnd.openxmlformats-package.relationships+xml"/>'
        f'<Default Extension="xml" ContentType="application/xml"/>{extra_defaults}{parts}</Types>'
    )


def _rels(target: str) -> str:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{_RELS_NS}">'
        f'<Relationship Id="rId1" Type="{_OFFICE_DOC}" Target="{target}"/></Relationships>'
    )


def _zip(members: dict[str, str | bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def docx(pages: list[list[str]], *, macro: bool = False, size_pt: int = 16) -> bytes:
    """A Word document, one list of paragraphs per page (a page break between them).

    macro: saved as a macro-enabled document (docm content type and word/vbaProject.bin)."""
    body = []
    for number, paragraphs in enumerate(pages):
        for text in paragraphs:
            body.append(
                f'<w:p><w:r><w:rPr><w:sz w:val="{size_pt * 2}"/></w:rPr>'
                f"<w:t>{escape(text)}</w:t></w:r></w:p>"
            )
        if number < len(pages) - 1:
            body.append('<w:p><w:r><w:br w:type="page"/></w:r></w:p>')
    document = (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:document xmlns:w="{_W}">'
        f"<w:body>{''.join(body)}</w:body></w:document>"
    )
    members: dict[str, str | bytes] = {
        "[Content_Types].xml": _content_types(
            {"/word/document.xml": _DOCM_MAIN if macro else _DOCX_MAIN},
            '<Default Extension="bin" ContentType="application/vnd.ms-office.vbaProject"/>'
            if macro
            else "",
        ),
        "_rels/.rels": _rels("word/document.xml"),
        "word/document.xml": document,
    }
    if macro:
        members["word/vbaProject.bin"] = cfb({"PROJECT": b'ID="{00000000}"\r\n'})
    return _zip(members)


def xlsx(rows: list[list[str | float]], *, macro_sheet: bool = False) -> bytes:
    """A workbook of one sheet holding `rows` (inline strings, numbers)."""
    xml_rows = []
    for r, row in enumerate(rows, 1):
        cells = []
        for c, value in enumerate(row):
            ref = f"{chr(65 + c)}{r}"
            if isinstance(value, str):
                cells.append(f'<c r="{ref}" t="inlineStr"><is><t>{escape(value)}</t></is></c>')
            else:
                cells.append(f'<c r="{ref}"><v>{value}</v></c>')
        xml_rows.append(f'<row r="{r}">{"".join(cells)}</row>')
    sheet = (
        f'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="{_S}">'
        # wide columns: a cell's text is cut at the next filled cell, and OCR reads what shows
        '<cols><col min="1" max="4" width="22" customWidth="1"/></cols>'
        f"<sheetData>{''.join(xml_rows)}</sheetData></worksheet>"
    )
    workbook = (
        f'<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="{_S}" xmlns:r="{_R}">'
        '<sheets><sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>'
    )
    workbook_rels = (
        f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{_RELS_NS}">'
        '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
        'relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>'
    )
    members: dict[str, str | bytes] = {
        "[Content_Types].xml": _content_types(
            {"/xl/workbook.xml": _XLSX_MAIN, "/xl/worksheets/sheet1.xml": _SHEET}
        ),
        "_rels/.rels": _rels("xl/workbook.xml"),
        "xl/workbook.xml": workbook,
        "xl/_rels/workbook.xml.rels": workbook_rels,
        "xl/worksheets/sheet1.xml": sheet,
    }
    if macro_sheet:
        members["xl/macrosheets/sheet2.xml"] = f'<xm:macrosheet xmlns:xm="{_S}"/>'
    return _zip(members)


def encrypted_xlsx(plain: bytes, password: str = "secret") -> bytes:
    """`plain` (an XLSX) encrypted as Excel does (ECMA-376 agile encryption, an OLE file)."""
    from msoffcrypto.format.ooxml import OOXMLFile

    out = io.BytesIO()
    OOXMLFile(io.BytesIO(plain)).encrypt(password, out)
    return out.getvalue()


def odf(mimetype: str, extra: dict[str, str | bytes] | None = None) -> bytes:
    """The shape of an ODF package: `mimetype` first, a manifest, and `extra` members."""
    manifest = (
        '<?xml version="1.0" encoding="UTF-8"?><manifest:manifest xmlns:manifest='
        '"urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2">'
        f'<manifest:file-entry manifest:full-path="/" manifest:media-type="{mimetype}"/>'
        "</manifest:manifest>"
    )
    members: dict[str, str | bytes] = {"mimetype": mimetype, "META-INF/manifest.xml": manifest}
    return _zip(members | (extra or {}))


def fodp(slides: list[str]) -> str:
    """A flat ODF presentation (one XML file), for LibreOffice to make a PPTX of."""
    pages = "".join(
        f'<draw:page draw:name="s{n}"><draw:frame svg:x="2cm" svg:y="3cm" svg:width="24cm"'
        f' svg:height="6cm"><draw:text-box><text:p>{escape(text)}</text:p></draw:text-box>'
        "</draw:frame></draw:page>"
        for n, text in enumerate(slides, 1)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><office:document'
        ' xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"'
        ' xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0"'
        ' xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"'
        ' xmlns:svg="urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0"'
        ' office:version="1.2" office:mimetype="application/vnd.oasis.opendocument.presentation">'
        f"<office:body><office:presentation>{pages}</office:presentation></office:body>"
        "</office:document>"
    )


def libreoffice_convert(data: bytes, source_ext: str, target: str) -> bytes:
    """`data` (a .`source_ext` file) saved by LibreOffice as `target` (doc, xls, odt, ...)."""
    work = Path(tempfile.mkdtemp(prefix="officefiles-"))
    try:
        source = work / f"in.{source_ext}"
        source.write_bytes(data)
        subprocess.run(
            ["soffice", "--headless", "--norestore", f"-env:UserInstallation={work.as_uri()}/p",
             "--convert-to", target, "--outdir", str(work / "out"), str(source)],
            capture_output=True, timeout=120, check=True, env={"PATH": "/usr/bin:/bin",
            "HOME": str(work)},
        )  # fmt: skip
        return (work / "out" / f"in.{target}").read_bytes()
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --- OLE compound files ---------------------------------------------------------------------
_END, _FREE, _FATSECT = 0xFFFFFFFE, 0xFFFFFFFF, 0xFFFFFFFD
_NOSTREAM = 0xFFFFFFFF


def cfb(streams: dict[str, bytes], storages: dict[str, dict[str, bytes]] | None = None) -> bytes:
    """A minimal OLE compound file (version 3, 512-byte sectors): root streams `streams` and
    storages of streams. Every stream is padded to 4096 bytes so none needs the mini stream."""
    entries: list[tuple[str, int, bytes, list[int]]] = []  # name, type, data, children
    root_children: list[int] = []
    for name, data in streams.items():
        root_children.append(len(entries) + 1)
        entries.append((name, 2, data.ljust(4096, b"\0"), []))
    for storage, inner in (storages or {}).items():
        index = len(entries) + 1
        root_children.append(index)
        entries.append((storage, 1, b"", []))
        for name, data in inner.items():
            entries[index - 1][3].append(len(entries) + 1)
            entries.append((name, 2, data.ljust(4096, b"\0"), []))
    all_entries = [("Root Entry", 5, b"", root_children), *entries]
    sectors: list[bytes] = []
    fat: list[int] = []
    starts = []
    for _, kind, data, _ in all_entries:
        if kind != 2:
            starts.append(_END)
            continue
        starts.append(len(sectors))
        count = len(data) // 512
        for i in range(count):
            sectors.append(data[i * 512 : (i + 1) * 512])
            fat.append(len(sectors) if i < count - 1 else _END)
    directory = b"".join(
        _dir_entry(name, kind, len(data), start, children, all_entries)
        for (name, kind, data, children), start in zip(all_entries, starts, strict=True)
    )
    directory = directory.ljust(-(-len(directory) // 512) * 512, b"\0")
    first_dir = len(sectors)
    dir_count = len(directory) // 512
    for i in range(dir_count):
        sectors.append(directory[i * 512 : (i + 1) * 512])
        fat.append(first_dir + i + 1 if i < dir_count - 1 else _END)
    fat_count = 1
    while (len(fat) + fat_count) > fat_count * 128:
        fat_count += 1
    first_fat = len(sectors)
    fat += [_FATSECT] * fat_count
    fat += [_FREE] * (fat_count * 128 - len(fat))
    fat_bytes = struct.pack(f"<{len(fat)}I", *fat)
    sectors += [fat_bytes[i * 512 : (i + 1) * 512] for i in range(fat_count)]
    difat = [first_fat + i for i in range(fat_count)] + [_FREE] * (109 - fat_count)
    header = (
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 16
        + struct.pack("<HHHHH", 0x3E, 3, 0xFFFE, 9, 6) + b"\0" * 6
        + struct.pack("<IIIIIIIII", 0, fat_count, first_dir, 0, 4096, _END, 0, _END, 0)
        + struct.pack("<109I", *difat)
    )  # fmt: skip
    return header + b"".join(sectors)


def _dir_entry(
    name: str,
    kind: int,
    size: int,
    start: int,
    children: list[int],
    entries: list[tuple[str, int, bytes, list[int]]],
) -> bytes:
    encoded = (name + "\0").encode("utf-16-le")
    child = children[0] if children else _NOSTREAM
    return (
        encoded.ljust(64, b"\0")
        + struct.pack("<HBB", len(encoded), kind, 1)
        + struct.pack("<III", _NOSTREAM, _right_sibling(entries, name), child)
        + b"\0" * 16 + b"\0" * 4 + b"\0" * 16
        + struct.pack("<IQ", start, size)
    )  # fmt: skip


def _right_sibling(entries: list[tuple[str, int, bytes, list[int]]], name: str) -> int:
    """Siblings are chained through their right pointers (a valid, if lopsided, tree)."""
    for _, _, _, children in entries:
        names = [entries[c][0] for c in children]
        if name in names:
            position = names.index(name)
            return children[position + 1] if position + 1 < len(children) else _NOSTREAM
    return _NOSTREAM


def word_fib(encrypted: bool = False) -> bytes:
    """The start of a WordDocument stream: a FibBase, fEncrypted set when asked."""
    return struct.pack("<HHHHHH", 0xA5EC, 0x00C1, 0, 0x0409, 0, 0x0100 if encrypted else 0)


def biff_globals(*, filepass: bool = False, macro_sheet: bool = False) -> bytes:
    """A Workbook stream's globals: BOF, maybe FILEPASS, a BOUNDSHEET, EOF."""
    bof = struct.pack("<HH", 0x0809, 16) + struct.pack("<HHHHII", 0x0600, 0x0005, 0, 0, 0, 0)
    records = [bof]
    if filepass:
        records.append(struct.pack("<HH", 0x002F, 6) + struct.pack("<HHH", 1, 1, 1))
    name = b"Macro1" if macro_sheet else b"Sheet1"
    sheet = struct.pack("<IBBBB", 0, 0, 1 if macro_sheet else 0, len(name), 0) + name
    records.append(struct.pack("<HH", 0x0085, len(sheet)) + sheet)
    records.append(struct.pack("<HH", 0x000A, 0))
    return b"".join(records)
