"""extract.py, headertext.py, facts.py: documents, header text and header facts of real-world
and hostile mail."""

from __future__ import annotations

import base64
import io
import quopri
import random
from email import encoders
from email.message import EmailMessage
from email.mime.application import MIMEApplication
from email.mime.base import MIMEBase
from email.mime.image import MIMEImage
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path

import pytest
from PIL import Image

from faxmail.core.headertext import decode_header_text
from faxmail.core.replies import (
    DOCUMENT_DAMAGED,
    MIME_TOO_DEEP,
    MIME_TOO_MANY_PARTS,
    NOTHING_TO_FAX,
    Refusal,
)
from faxmail.outbound.extract import extract_documents, sniff
from faxmail.outbound.facts import message_facts
from faxmail.outbound.mimeparse import parse_message

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
PDF2 = b"%PDF-1.7\n% second document\n%%EOF\n"


def image_bytes(fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("1" if fmt == "TIFF" else "RGB", (16, 8), 1).save(buffer, format=fmt)
    return buffer.getvalue()


def mail(*parts: MIMEBase, subject: str = "fax") -> bytes:
    outer = MIMEMultipart()
    outer["From"] = "Alice <alice@example.com>"
    outer["To"] = "fax+4930123456@fax.example.com"
    outer["Subject"] = subject
    outer.attach(MIMEText("Please fax the attachment.\n"))
    for part in parts:
        outer.attach(part)
    return outer.as_bytes()


def attachment(data: bytes, ctype: str, name: str | None) -> MIMEBase:
    maintype, subtype = ctype.split("/")
    part = MIMEBase(maintype, subtype)
    part.set_payload(base64.encodebytes(data).decode("ascii"))
    part["Content-Transfer-Encoding"] = "base64"
    if name is not None:
        part.add_header("Content-Disposition", "attachment", filename=name)
    return part


def extract(raw: bytes, workdir: Path) -> list[tuple[str, str, bytes, str]]:
    documents = extract_documents(parse_message(raw), workdir)
    return [(d.kind, d.path.name, d.path.read_bytes(), d.label) for d in documents]


def refusal(raw: bytes, workdir: Path) -> Refusal:
    with pytest.raises(Refusal) as caught:
        extract_documents(parse_message(raw), workdir)
    return caught.value


# --------------------------------------------------------------------------- documents


def test_pdf_attachment(tmp_path: Path) -> None:
    raw = mail(attachment(PDF, "application/pdf", "report.pdf"))
    assert extract(raw, tmp_path) == [("pdf", "part-01.pdf", PDF, "attachment 1 (report.pdf)")]
    assert (tmp_path / "part-01.pdf").stat().st_mode & 0o777 == 0o600


def test_octet_stream_with_pdf_name_is_a_pdf(tmp_path: Path) -> None:
    raw = mail(attachment(PDF, "application/octet-stream", "Scan 2024.PDF"))
    assert extract(raw, tmp_path) == [("pdf", "part-01.pdf", PDF, "attachment 1 (Scan 2024.PDF)")]


def test_octet_stream_with_pdf_name_but_no_pdf_magic_is_ignored(tmp_path: Path) -> None:
    raw = mail(attachment(b"PK\x03\x04 not a pdf", "application/octet-stream", "x.pdf"))
    assert refusal(raw, tmp_path).reply == NOTHING_TO_FAX
    assert list(tmp_path.iterdir()) == []


def test_octet_stream_without_faxable_name_is_ignored(tmp_path: Path) -> None:
    raw = mail(attachment(PDF, "application/octet-stream", "report.bin"))
    assert refusal(raw, tmp_path).reply == NOTHING_TO_FAX


def test_declared_pdf_that_is_not_one_is_refused(tmp_path: Path) -> None:
    raw = mail(attachment(b"<html>oops</html>", "application/pdf", "report.pdf"))
    reply = refusal(raw, tmp_path).reply
    assert (reply.code, reply.enhanced) == (DOCUMENT_DAMAGED.code, DOCUMENT_DAMAGED.enhanced)
    why = "it is not a PDF, TIFF, PNG or JPEG file"
    assert reply.text == f"attachment 1 (report.pdf) cannot be read: {why}"


def test_pdf_with_junk_before_header(tmp_path: Path) -> None:
    data = b"\r\n\xef\xbb\xbf" + PDF
    assert extract(mail(attachment(data, "application/pdf", None)), tmp_path) == [
        ("pdf", "part-01.pdf", data, "attachment 1")
    ]


def test_two_pdfs_in_document_order_other_parts_ignored(tmp_path: Path) -> None:
    raw = mail(
        attachment(PDF, "application/pdf", "first.pdf"),
        # (application/msword is a document since Office files are faxed: tests/test_office.py)
        attachment(b"PK\x03\x04zip", "application/zip", "archive.zip"),
        MIMEText("a second text part"),
        attachment(PDF2, "application/octet-stream", "second.pdf"),
    )
    assert extract(raw, tmp_path) == [
        ("pdf", "part-01.pdf", PDF, "attachment 1 (first.pdf)"),
        ("pdf", "part-02.pdf", PDF2, "attachment 2 (second.pdf)"),
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part-01.pdf", "part-02.pdf"]


def test_images(tmp_path: Path) -> None:
    png, jpeg, tiff = image_bytes("PNG"), image_bytes("JPEG"), image_bytes("TIFF")
    raw = mail(
        MIMEImage(png, "png", name="a.png"),
        MIMEImage(jpeg, "jpeg"),
        MIMEImage(tiff, "tiff", name="c.tif"),
        attachment(png, "application/octet-stream", "d.PNG"),
    )
    assert [(k, n, d) for k, n, d, _ in extract(raw, tmp_path)] == [
        ("png", "part-01.png", png),
        ("jpeg", "part-02.jpeg", jpeg),
        ("tiff", "part-03.tiff", tiff),
        ("png", "part-04.png", png),
    ]


def test_kind_comes_from_magic_not_from_declared_type(tmp_path: Path) -> None:
    png = image_bytes("PNG")
    raw = mail(attachment(png, "image/jpeg", "photo.jpg"))
    assert extract(raw, tmp_path)[0][:2] == ("png", "part-01.png")


def test_declared_image_with_foreign_bytes_is_refused(tmp_path: Path) -> None:
    raw = mail(attachment(b"GIF89a......", "image/png", "x.png"))
    assert refusal(raw, tmp_path).reply.enhanced == DOCUMENT_DAMAGED.enhanced


def test_hostile_file_name_never_becomes_a_path(tmp_path: Path) -> None:
    workdir = tmp_path / "job"
    workdir.mkdir()
    name = "../../etc/passwd; rm -rf $(x)`id`\x00\n\u202egpj.pdf"
    raw = mail(attachment(PDF, "application/pdf", name))
    [(kind, filename, data, label)] = extract(raw, workdir)
    assert (kind, filename, data) == ("pdf", "part-01.pdf", PDF)
    assert [p.name for p in tmp_path.rglob("*")] == ["job", "part-01.pdf"]
    assert label.startswith("attachment 1 (")
    for bad in ("/", "\\", ";", "$", "`", "\x00", "\n", "\u202e"):
        assert bad not in label
    assert label == "attachment 1 (passwd_ rm -rf _(x)_id_ gpj.pdf)"


def test_windows_path_name_shows_basename_and_long_name_is_bounded(tmp_path: Path) -> None:
    raw = mail(
        attachment(PDF, "application/pdf", "C:\\Users\\bob\\report.pdf"),
        attachment(PDF2, "application/pdf", "x" * 500 + ".pdf"),
    )
    labels = [label for _, _, _, label in extract(raw, tmp_path)]
    assert labels[0] == "attachment 1 (report.pdf)"
    assert len(labels[1]) < 100 and labels[1].endswith("...)")


def test_encoded_file_names_are_decoded_for_the_label(tmp_path: Path) -> None:
    rfc2231 = attachment(PDF, "application/pdf", None)
    rfc2231.add_header("Content-Disposition", "attachment", filename=("utf-8", "", "請求書.pdf"))
    rfc2047 = attachment(PDF2, "application/octet-stream", None)
    rfc2047["Content-Disposition"] = 'attachment; filename="=?UTF-8?B?6KaL56mN5pu4LnBkZg==?="'
    labels = [label for _, _, _, label in extract(mail(rfc2231, rfc2047), tmp_path)]
    assert labels == ["attachment 1 (請求書.pdf)", "attachment 2 (見積書.pdf)"]


def test_raw_8bit_file_name(tmp_path: Path) -> None:
    raw = mail(attachment(PDF, "application/pdf", "NAME")).replace(
        b'filename="NAME"', 'filename="Überweisung.pdf"'.encode()
    )
    assert extract(raw, tmp_path)[0][3] == "attachment 1 (Überweisung.pdf)"


def test_no_attachment(tmp_path: Path) -> None:
    assert refusal(mail(), tmp_path).reply == NOTHING_TO_FAX
    single = EmailMessage()
    single["From"] = "a@example.com"
    single.set_content("just text")
    assert refusal(single.as_bytes(), tmp_path).reply == NOTHING_TO_FAX


def test_bad_base64_is_refused_and_earlier_files_removed(tmp_path: Path) -> None:
    bad = attachment(PDF, "application/pdf", "broken.pdf")
    bad.set_payload("JVBERi0xLjQK!!!notbase64\n")
    raw = mail(attachment(PDF, "application/pdf", "good.pdf"), bad)
    reply = refusal(raw, tmp_path).reply
    assert reply.enhanced == DOCUMENT_DAMAGED.enhanced
    assert "attachment 2 (broken.pdf)" in reply.text and "base64" in reply.text
    assert list(tmp_path.iterdir()) == []


def test_truncated_base64_is_refused(tmp_path: Path) -> None:
    bad = attachment(PDF, "application/pdf", "cut.pdf")
    bad.set_payload(base64.b64encode(PDF).decode()[:-3])
    assert refusal(mail(bad), tmp_path).reply.enhanced == DOCUMENT_DAMAGED.enhanced


def test_quoted_printable_part(tmp_path: Path) -> None:
    part = MIMEApplication(PDF, "pdf", _encoder=encoders.encode_noop)
    part.set_payload(quopri.encodestring(PDF).decode("ascii"))
    part["Content-Transfer-Encoding"] = "quoted-printable"
    assert extract(mail(part), tmp_path)[0][2] == PDF


def test_8bit_part_keeps_its_bytes(tmp_path: Path) -> None:
    raw = (
        b"From: a@example.com\r\nContent-Type: application/pdf\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\n%PDF-1.4\r\n\xff\xfe binary\r\n"
    )
    [(_, name, data, _)] = extract(raw, tmp_path)
    assert (name, data) == ("part-01.pdf", b"%PDF-1.4\r\n\xff\xfe binary\r\n")


def test_empty_declared_pdf_is_refused(tmp_path: Path) -> None:
    assert refusal(mail(attachment(b"", "application/pdf", "e.pdf")), tmp_path).reply.enhanced == (
        DOCUMENT_DAMAGED.enhanced
    )


def test_attached_mail_is_not_descended_into(tmp_path: Path) -> None:
    inner = parse_message(mail(attachment(PDF2, "application/pdf", "forwarded.pdf")))
    forwarded = MIMEMessage(inner)
    assert refusal(mail(forwarded), tmp_path).reply == NOTHING_TO_FAX
    raw = mail(forwarded, attachment(PDF, "application/pdf", "mine.pdf"))
    assert [(n, d) for _, n, d, _ in extract(raw, tmp_path)] == [("part-01.pdf", PDF)]


def test_html_body_images_are_ignored_but_related_pdfs_and_attachments_taken(
    tmp_path: Path,
) -> None:
    png = image_bytes("PNG")
    related = MIMEMultipart("related")
    related.attach(MIMEText('<p>hi</p><img src="cid:logo">', "html"))
    logo = MIMEImage(png, "png")
    logo["Content-ID"] = "<logo>"
    logo["Content-Disposition"] = "inline"
    related.attach(logo)
    related.attach(attachment(png, "image/png", "scan.png"))  # marked attachment
    related.attach(attachment(PDF, "application/pdf", None))  # inline anywhere: still a PDF
    outer = MIMEMultipart()
    outer["From"] = "a@example.com"
    outer.attach(related)
    assert [(k, n) for k, n, _, _ in extract(outer.as_bytes(), tmp_path)] == [
        ("png", "part-01.png"),
        ("pdf", "part-02.pdf"),
    ]


def test_related_start_parameter_picks_the_root(tmp_path: Path) -> None:
    png = image_bytes("PNG")
    related = MIMEMultipart("related", start="<root>")
    image = MIMEImage(png, "png")
    image["Content-ID"] = "<img>"
    related.attach(image)
    root = MIMEImage(png, "png")  # an image as the root document is the body, shown
    root["Content-ID"] = "<root>"
    related.attach(root)
    related["From"] = "a@example.com"
    assert [n for _, n, _, _ in extract(related.as_bytes(), tmp_path)] == ["part-01.png"]


def nested(depth: int, leaf: bytes) -> bytes:
    head = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
        for i in range(depth)
    )
    tail = b"".join(b"\r\n--b%d--\r\n" % i for i in reversed(range(depth)))
    return b"From: a@example.com\r\n" + head + leaf + tail


PDF_LEAF = (
    b"Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    + base64.encodebytes(PDF)
)


def test_nesting_within_the_limit(tmp_path: Path) -> None:
    assert len(extract(nested(19, PDF_LEAF), tmp_path)) == 1


def test_nesting_100_deep_is_refused(tmp_path: Path) -> None:
    assert refusal(nested(100, PDF_LEAF), tmp_path).reply == MIME_TOO_DEEP.format(limit=20)
    assert list(tmp_path.iterdir()) == []


def test_nesting_beyond_the_parser_is_refused_by_parse_message() -> None:
    with pytest.raises(Refusal) as caught:
        parse_message(nested(2000, PDF_LEAF))
    assert caught.value.reply.enhanced == MIME_TOO_DEEP.enhanced


def many_parts(count: int, *, pdf_last: bool = False) -> bytes:
    parts = [b"--B\r\nContent-Type: text/plain\r\n\r\nx\r\n"] * count
    if pdf_last:
        parts[-1] = b"--B\r\n" + PDF_LEAF
    return (
        b"From: a@example.com\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n"
        + b"".join(parts)
        + b"--B--\r\n"
    )


def test_10000_parts_are_refused_quickly(tmp_path: Path) -> None:
    # No timing assertion: the test suite's duration shows a regression.
    assert refusal(many_parts(10000), tmp_path).reply == MIME_TOO_MANY_PARTS.format(limit=200)


def test_parts_within_the_limit(tmp_path: Path) -> None:
    assert len(extract(many_parts(150, pdf_last=True), tmp_path)) == 1


def test_limits_are_parameters(tmp_path: Path) -> None:
    message = parse_message(many_parts(10, pdf_last=True))
    with pytest.raises(Refusal):
        extract_documents(message, tmp_path, max_parts=5)
    assert len(extract_documents(message, tmp_path, max_parts=11)) == 1


@pytest.mark.parametrize(
    "raw",
    [
        # multipart without a boundary parameter
        b"From: a@example.com\r\nContent-Type: multipart/mixed\r\n\r\n--x\r\n" + PDF_LEAF,
        # boundary announced but never present
        b'From: a@example.com\r\nContent-Type: multipart/mixed; boundary="zz"\r\n\r\n' + PDF_LEAF,
        # NUL bytes everywhere
        b"From: a@\x00example.com\r\nSubject: \x00\x00\r\n"
        b"Content-Type: application/p\x00df\r\n\r\n\x00",
        # 8-bit headers, wrong charset, garbage content types
        b"From: \xff\xfe <a@example.com>\r\nSubject: =?x-bogus?B?////?= \xe6\x97\xa5\r\n"
        b"Content-Type: text/plain; charset=\xff\r\nContent-Type: ///\r\n\r\n\xff",
        # a 1 MB header
        b"From: a@example.com\r\nSubject: " + b"=?UTF-8?B?QUJD?= " * 60000 + b"\r\n\r\nbody",
        b"X-Long: " + b"a" * 1_000_000 + b"\r\n\r\n",
        # headers only, nothing at all
        b"From: a@example.com\r\n",
        b"",
        b"\r\n\r\n\r\n",
        # message/rfc822 that is not a message
        b"From: a@example.com\r\nContent-Type: message/rfc822\r\n\r\n\x00\xff--\r\n",
        # attachment with an unknown transfer encoding
        b"From: a@example.com\r\nContent-Type: application/octet-stream; name=a.txt\r\n"
        b"Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 a\r\n",
    ],
)
def test_garbage_never_blows_up(raw: bytes, tmp_path: Path) -> None:
    message = parse_message(raw)
    message_facts(message)
    with pytest.raises(Refusal):
        extract_documents(message, tmp_path)


def test_missing_boundary_message_keeps_nothing_faxable(tmp_path: Path) -> None:
    raw = b"From: a@example.com\r\nContent-Type: multipart/mixed\r\n\r\n--x\r\n" + PDF_LEAF
    assert refusal(raw, tmp_path).reply == NOTHING_TO_FAX


def test_random_mutations_only_ever_refuse(tmp_path: Path) -> None:
    base = mail(
        attachment(PDF, "application/pdf", "a.pdf"),
        attachment(image_bytes("PNG"), "image/png", "b.png"),
        subject="=?ISO-2022-JP?B?GyRCJDMkcyRLJEEkTxsoQg==?=",
    )
    rng = random.Random(2047)
    for round_ in range(300):
        data = bytearray(base)
        for _ in range(rng.randint(1, 20)):
            at = rng.randrange(len(data))
            choice = rng.random()
            if choice < 0.4:
                data[at] = rng.randrange(256)
            elif choice < 0.7:
                del data[at : at + rng.randint(1, 40)]
            else:
                data[at:at] = rng.choice([b"\r\n", b"--", b"\x00", b"=?", b"?=", b";", b"\x1b$B"])
        workdir = tmp_path / str(round_)
        workdir.mkdir()
        message = parse_message(bytes(data))
        facts = message_facts(message)
        for text in (facts.subject, facts.from_name, facts.from_address):
            assert "\n" not in text and "\r" not in text and "\x00" not in text
        try:
            documents = extract_documents(message, workdir)
        except Refusal:
            assert list(workdir.iterdir()) == []
            continue
        for document in documents:
            assert document.path.parent == workdir
            assert sniff(document.path.read_bytes()) == document.kind


# --------------------------------------------------------------------------- header text


def b_word(charset: str, data: bytes) -> str:
    return f"=?{charset}?B?{base64.b64encode(data).decode('ascii')}?="


def test_rfc2047_charsets() -> None:
    assert decode_header_text(b_word("ISO-2022-JP", "日本語の件名".encode("iso2022_jp"))) == (
        "日本語の件名"
    )
    assert decode_header_text(b_word("Shift_JIS", "請求書①".encode("cp932"))) == "請求書①"
    assert decode_header_text(b_word("UTF-8", "Grüße 😀".encode())) == "Grüße 😀"
    assert decode_header_text("=?utf-8?q?Gr=C3=BC=C3=9Fe_aus_Berlin?=") == "Grüße aus Berlin"
    assert decode_header_text("=?UTF-8*de?Q?Gr=C3=BC=C3=9Fe?=") == "Grüße"  # RFC 2231 language
    assert decode_header_text("=?windows-1252?Q?=80uro?= and =?koi8-r?B?8NLJ18XU?=") == (
        "€uro and Привет"
    )


def test_iso2022jp_with_nec_characters() -> None:
    # ① is NEC row 13 (JIS 0x2D21): what Windows mailers write, not in strict ISO-2022-JP.
    assert decode_header_text(b_word("iso-2022-jp", b'\x1b$B-!$"\x1b(B')) == "①あ"


def test_encoded_words_split_mid_character_or_mid_escape_are_joined() -> None:
    jis = "件名テスト".encode("iso2022_jp")
    for cut in range(1, len(jis)):
        value = b_word("ISO-2022-JP", jis[:cut]) + "\r\n " + b_word("ISO-2022-JP", jis[cut:])
        assert decode_header_text(value) == "件名テスト"
    utf8 = "äöü".encode()
    assert decode_header_text(b_word("utf-8", utf8[:1]) + " " + b_word("utf-8", utf8[1:])) == "äöü"


def test_half_cut_iso2022jp_never_raises() -> None:
    jis = "件名テスト".encode("iso2022_jp")
    for cut in range(len(jis)):
        text = decode_header_text(b_word("ISO-2022-JP", jis[:cut]) + " tail")
        assert text.endswith("tail")
    assert decode_header_text(b_word("ISO-2022-JP", b"\x1b$B7oL>\x1b(")).startswith("件名")
    assert decode_header_text(b_word("ISO-2022-JP", b"\x1b$")) == "\ufffd"


def test_raw_7bit_jis_header() -> None:
    assert decode_header_text("\x1b$B$3$s$K$A$O\x1b(B world") == "こんにちは world"


def test_unknown_and_pseudo_charsets() -> None:
    assert decode_header_text(b_word("x-unknown", "Grüße".encode())) == "Grüße"
    assert decode_header_text(b_word("unknown-8bit", "件名".encode("cp932"))) == "件名"
    assert decode_header_text(b_word("zlib", b"plain")) == "plain"
    assert decode_header_text(b_word("unicode_escape", b"a\\x00b")) == "a\\x00b"
    assert decode_header_text("=?bogus?X?abc?= =?utf-8?B?@@@?=") == "=?bogus?X?abc?="


def test_subject_is_one_inert_line() -> None:
    value = "=?UTF-8?Q?line1=0D=0Aline2=00?= ; rm -rf /; $(id) `id` \"q\" 'q'\r\n\tfolded\x7f\x85"
    text = decode_header_text(value)
    assert text == "line1 line2 ; rm -rf /; $(id) `id` \"q\" 'q' folded"
    assert decode_header_text("a\u202eb\u2028c") == "a b c"


def test_bounded_and_total() -> None:
    assert decode_header_text(None) == ""
    assert decode_header_text("") == ""
    assert len(decode_header_text("x" * 2_000_000)) == 998
    assert len(decode_header_text("ab " * 100, limit=10)) == 10
    assert decode_header_text("\udcff\udcfe") == "ÿþ"  # not UTF-8, not CP932: Latin-1


# --------------------------------------------------------------------------- header facts


def test_facts_plain() -> None:
    facts = message_facts(
        parse_message(
            b"From: =?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?= <juergen@example.com>\r\n"
            b"Reply-To: Office <office@example.com>, other@example.com\r\n"
            b"Subject: =?ISO-2022-JP?B?GyRCN29MPhsoQg==?=\r\n"
            b"Message-ID: <abc.123@example.com>\r\n\r\nbody"
        )
    )
    assert facts.from_name == "Jürgen Müller"
    assert facts.from_address == "juergen@example.com"
    assert facts.from_count == 1
    assert facts.reply_to == "office@example.com"
    assert facts.subject == "件名"
    assert facts.message_id == "<abc.123@example.com>"


def test_facts_raw_8bit_headers() -> None:
    utf8 = message_facts(
        parse_message("From: 山田 太郎 <t@example.jp>\r\nSubject: 件名です\r\n\r\n".encode())
    )
    assert (utf8.from_name, utf8.from_address, utf8.subject) == (
        "山田 太郎",
        "t@example.jp",
        "件名です",
    )
    sjis = message_facts(
        parse_message("From: 山田 <t@example.jp>\r\nSubject: 請求書\r\n\r\n".encode("cp932"))
    )
    assert (sjis.from_name, sjis.subject) == ("山田", "請求書")


def test_facts_multiple_from_fields_are_counted() -> None:
    facts = message_facts(parse_message(b"From: a@example.com\r\nfrom: b@example.com\r\n\r\n"))
    assert facts.from_count == 2
    assert facts.from_address == "a@example.com"


def test_facts_from_with_several_mailboxes_has_no_address() -> None:
    facts = message_facts(parse_message(b"From: a@example.com, b@example.com\r\n\r\n"))
    assert (facts.from_count, facts.from_address) == (1, "")


def test_facts_quoted_comma_in_display_name() -> None:
    facts = message_facts(parse_message(b'From: "Doe, John" <john@example.com>\r\n\r\n'))
    assert (facts.from_name, facts.from_address) == ("Doe, John", "john@example.com")


@pytest.mark.parametrize(
    "value",
    [
        b"alice@example.org)<bob@example.org>",  # CVE-2023-27043 shape
        b"(alice@example.org <bob@example.org>",
        b"<>",
        b"Just A Name",
        b"a@b",  # no dot in the domain: not a usable address
        b"a b@example.com",
        b"<a@example.com\r\n\tfoo>",
        b"=?UTF-8?B?YUBleGFtcGxlLmNvbQ==?=",  # an address only inside an encoded word
        b"\x00@example.com",
    ],
)
def test_facts_garbage_from_has_no_address(value: bytes) -> None:
    facts = message_facts(parse_message(b"From: " + value + b"\r\n\r\n"))
    assert facts.from_address == ""


def test_encoded_display_name_cannot_inject_an_address() -> None:
    name = base64.b64encode(b"Boss <boss@example.com>, x").decode()
    facts = message_facts(
        parse_message(f"From: =?UTF-8?B?{name}?= <real@evil.example>\r\n\r\n".encode())
    )
    assert facts.from_address == "real@evil.example"
    assert facts.from_name == "Boss <boss@example.com>, x"


def test_facts_absent_and_garbage() -> None:
    facts = message_facts(parse_message(b"Message-ID: no brackets\r\nReply-To: ;;;\r\n\r\n"))
    assert facts == type(facts)(
        subject="", from_name="", from_address="", from_count=0, reply_to=None, message_id=None
    )
    long_id = b"<" + b"x" * 300 + b"@example.com>"
    assert message_facts(parse_message(b"Message-ID: " + long_id + b"\r\n\r\n")).message_id is None
    spaced = message_facts(parse_message(b"Message-ID: <a b@c>\r\n\r\n"))
    assert spaced.message_id is None
    folded = message_facts(parse_message(b"Message-ID:\r\n <id@example.com>\r\n\r\n"))
    assert folded.message_id == "<id@example.com>"
