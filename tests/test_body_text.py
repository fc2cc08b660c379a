"""The mail's text as fax pages: decoding, trimming, HTML, wrapping, the cover template, the
policy keys (outbound/bodytext.py, render/textlayout.py, core/covertemplate.py, content.py)."""

from __future__ import annotations

import email
import email.message
from datetime import datetime
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path

import pytest
from PIL import Image

from faxmail.core.covertemplate import DEFAULT_TEMPLATES, TemplateError, parse_template
from faxmail.core.policy import Fax, FaxAddress, Policy, Sender
from faxmail.core.replies import NO_TEXT_TO_FAX, NOTHING_TO_FAX, Refusal
from faxmail.core.yamlfile import ConfigError, load_yaml
from faxmail.outbound.bodytext import html_to_text, mail_text, trim
from faxmail.outbound.content import front_matter
from faxmail.outbound.facts import message_facts
from faxmail.outbound.recipient import parse_recipient
from faxmail.render.cover import FrontMatter, front_pages
from faxmail.render.textlayout import NO_END, NO_START, wrap
from faxmail.render.textpages import Geometry, draw_page, measure_text

JAPANESE = "お世話になっております。本日の会議資料をお送りします。"


def message(
    body: bytes, ctype: str = "text/plain", charset: str = "utf-8"
) -> email.message.Message:
    head = f"From: Alice <alice@example.jp>\nSubject: s\nContent-Type: {ctype}; charset={charset}\n"
    return email.message_from_bytes(head.encode() + b"\n" + body)


# --- decoding --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("charset", "codec"),
    [
        ("ISO-2022-JP", "iso2022_jp"),
        ("Shift_JIS", "cp932"),
        ("utf-8", "utf-8"),
        ("EUC-JP", "euc_jp"),
        ("windows-31j", "cp932"),
    ],
)
def test_japanese_charsets(charset: str, codec: str) -> None:
    assert mail_text(message(JAPANESE.encode(codec), charset=charset)) == JAPANESE


def test_shift_jis_as_windows_writes_it() -> None:
    # ① and the wave dash are cp932's, not strict Shift_JIS: mail programs send them so
    wave = "\uff5e"
    assert mail_text(message(f"①{wave}".encode("cp932"), charset="shift_jis")) == f"①{wave}"


def test_unknown_charset_and_bad_bytes_do_not_refuse() -> None:
    assert mail_text(message("größe".encode(), charset="x-nonsense")) == "größe"
    assert mail_text(message(b"ok \xff\xfe", charset="utf-8")).startswith("ok ")


def test_base64_and_quoted_printable() -> None:
    part = MIMEText(JAPANESE, "plain", "utf-8")  # base64
    assert mail_text(part) == JAPANESE
    qp = email.message_from_string(
        "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n"
        "caf=C3=A9\n"
    )
    assert mail_text(qp) == "café"


def test_text_attachment_is_not_the_body() -> None:
    outer = MIMEMultipart()
    note = MIMEText("attached notes", "plain", "utf-8")
    note.add_header("Content-Disposition", "attachment", filename="notes.txt")
    outer.attach(note)
    assert mail_text(outer) == ""
    outer = MIMEMultipart()
    outer.attach(MIMEText("the body", "plain", "utf-8"))
    outer.attach(note)
    assert mail_text(outer) == "the body"


def test_alternative_prefers_plain_and_attached_mail_is_ignored() -> None:
    alternative = MIMEMultipart("alternative")
    alternative.attach(MIMEText("<p>html version</p>", "html", "utf-8"))
    alternative.attach(MIMEText("plain version", "plain", "utf-8"))
    assert mail_text(alternative) == "plain version"
    outer = MIMEMultipart()
    forwarded = email.message.Message()
    forwarded.set_type("message/rfc822")
    forwarded.set_payload([MIMEText("someone else's text")])
    outer.attach(forwarded)
    assert mail_text(outer) == ""


# --- HTML ------------------------------------------------------------------------------------


def test_html_to_text_fetches_nothing_and_drops_scripts() -> None:
    source = (
        "<html><head><title>t</title><style>p {color: red}</style>"
        '<link rel="stylesheet" href="http://remote.invalid/x.css"></head><body>'
        '<script>document.write("no")</script><p>Hello &amp; <b>world</b></p>'
        '<img src="http://remote.invalid/track.png" alt="logo">'
        "<ul><li>one</li><li>two</li></ul>a<br>b<table><tr><td>x</td><td>y</td></tr></table>"
        "</body></html>"
    )
    text = html_to_text(source)
    assert text.split("\n") == ["Hello & world", "", "・ one", "・ two", "a", "b", "", "x  y"]
    assert "remote.invalid" not in text and "no" not in text.split()


def test_html_part_is_made_text() -> None:
    part = MIMEText(f"<div>{JAPANESE}</div><div>二行目</div>", "html", "utf-8")
    assert mail_text(part) == f"{JAPANESE}\n二行目"


# --- trimming --------------------------------------------------------------------------------


def test_signature_trimmed_by_dash_dash_space() -> None:
    assert trim("Please fax this.\n\n-- \nAlice\nACME\n") == "Please fax this."
    assert trim("a -- b\n--not a separator\nend") == "a -- b\n--not a separator\nend"


def test_quoted_reply_tail_trimmed_inline_quotes_kept() -> None:
    assert trim("Thanks.\n\nOn Mon, 1 Dec 2026, Bob wrote:\n> old\n> text\n") == "Thanks."
    assert (
        trim("了解です。\n\n2026年12月1日(月) 10:00 山田 <y@example.jp>:\n> 前\n") == "了解です。"
    )
    assert trim("Hi\n-----Original Message-----\nFrom: x\nSubject: y\n\nold\n") == "Hi"
    assert trim("Hi\n> question\nanswer\n> tail\n") == "Hi\n> question\nanswer"


def test_controls_removed_tabs_expanded() -> None:
    assert trim("a\tb\x1b[31mc\u202e\r\n") == "a   b[31mc"


# --- wrapping --------------------------------------------------------------------------------


def widths(text: str) -> float:
    return sum(2 if ord(c) > 0x2E80 else 1 for c in text)


def test_wrap_japanese_without_spaces_and_kinsoku() -> None:
    lines = wrap("お世話になっております。「会議」の資料です。", 10, widths)
    assert "".join(lines) == "お世話になっております。「会議」の資料です。"
    for line in lines:
        assert line[0] not in NO_START and line[-1] not in NO_END
        assert widths(line) <= 12  # at most one hanging mark past the width


def test_wrap_words_and_cuts_long_ones() -> None:
    assert wrap("the quick brown fox", 10, widths) == ["the quick", "brown fox"]
    assert wrap("x" * 25, 10, widths) == ["x" * 10, "x" * 10, "x" * 5]
    assert wrap("a\n\nb", 10, widths) == ["a", "", "b"]


def test_wrap_fits_the_page_width() -> None:
    geometry = Geometry()
    for line in wrap(JAPANESE * 10, geometry.text_width, measure_text):
        assert measure_text(line[:-1]) <= geometry.text_width


# --- pages -----------------------------------------------------------------------------------


def test_text_page_is_a_crisp_fax_page() -> None:
    pages = front_pages(FrontMatter(body=JAPANESE), Geometry(), 0)
    assert len(pages) == 1
    bits = draw_page(pages[0], Geometry())
    assert bits.mode == "1" and bits.size == (1728, 2292)
    standard = draw_page(pages[0], Geometry(resolution="standard"))
    assert standard.size == (1728, 1146)
    assert 0 < bits.histogram()[255] < bits.width * bits.height // 20  # ink, mostly paper
    assert bits.convert("L").histogram()[1:255] == [0] * 254  # one bit: no grey left


def test_long_text_paginates_and_counts() -> None:
    pages = front_pages(FrontMatter(body="\n".join(f"line {n}" for n in range(100))), Geometry(), 0)
    assert len(pages) == 3
    assert pages[0].lines[0].text == "line 0" and pages[-1].lines[-1].text == "line 99"


# --- the cover template ----------------------------------------------------------------------

FIELDS = {
    "date": "2026-12-02 10:00",
    "to_number": "03-1234-5678",
    "sender_name": "Alice",
    "sender_company": "",
    "sender_address": "alice@example.jp",
    "subject": "# not a title $body ${pages}",
}


def cover_text(front: FrontMatter, documents: int = 0) -> list[str]:
    return [line.text for page in front_pages(front, Geometry(), documents) for line in page.lines]


def test_default_cover_fields_and_total_pages() -> None:
    template = parse_template(DEFAULT_TEMPLATES["en"])
    front = FrontMatter(cover=template, fields=FIELDS, cover_text="Hello there")
    text = cover_text(front, documents=3)
    assert text[0] == "FAX COVER SHEET"
    assert "To fax number: 03-1234-5678" in text and "From: Alice" in text
    assert "Pages: 4 including this cover sheet" in text  # 1 cover + 3 document pages
    assert not any(line.startswith("Company") for line in text)  # no company: no line
    assert "Hello there" in text
    # mail text stays text: never a title, never a field
    assert "Subject: # not a title $body ${pages}" in text


def test_cover_text_continues_on_next_pages() -> None:
    template = parse_template(DEFAULT_TEMPLATES["ja"])
    long = "\n".join(f"行 {n}" for n in range(80))
    pages = front_pages(FrontMatter(cover=template, fields=FIELDS, cover_text=long), Geometry(), 2)
    assert len(pages) == 3  # the cover and two pages of text
    texts = [line.text for page in pages for line in page.lines]
    assert texts.count("行 0") == 1 and "行 79" in texts
    assert "枚数: 送付状を含め 5 枚" in texts


def test_template_errors_name_line_and_field() -> None:
    with pytest.raises(TemplateError, match=r"line 2: unknown field \$nmae"):
        parse_template("# Fax\nTo: $nmae\n")
    with pytest.raises(TemplateError, match="line 1: a '\\$' not followed"):
        parse_template("Price: 5$\n")
    with pytest.raises(TemplateError, match="alone"):
        parse_template("Text: $body\n")
    assert [line.kind for line in parse_template("# T\n---\n\nA $date\n$body\n")] == [
        "title",
        "rule",
        "blank",
        "text",
        "body",
    ]


# --- policy ----------------------------------------------------------------------------------


def test_policy_keys_and_errors_name_the_key(tmp_path: Path) -> None:
    assert Fax().body == "never" and Fax().cover == "none" and Fax().preview
    bad = tmp_path / "policy.yaml"
    bad.write_text("fax:\n  body: sometimes\n")
    with pytest.raises(ConfigError, match=r"fax\.body"):
        load_yaml(bad, Policy)
    bad.write_text(f"fax:\n  cover_template: {tmp_path / 'missing.txt'}\n")
    with pytest.raises(ConfigError, match=r"fax\.cover_template.*cannot read"):
        load_yaml(bad, Policy)
    template = tmp_path / "cover.txt"
    template.write_text("# FAX\nTo: $to_nubmer\n")
    bad.write_text(f"fax:\n  cover: always\n  cover_template: {template}\n")
    with pytest.raises(ConfigError, match=r"fax\.cover_template.*unknown field \$to_nubmer"):
        load_yaml(bad, Policy)
    template.write_text("# FAX\nTo: $to_number\n$body\n")
    assert load_yaml(bad, Policy).fax.cover_template == template


# --- the decision's content step -------------------------------------------------------------


def decide(fax: Fax, raw: bytes, documents: int = 0) -> FrontMatter:
    parsed = email.message_from_bytes(raw)
    recipient = parse_recipient(
        "fax+0312345678@example.jp", FaxAddress(domains=("example.jp",)), "JP"
    )
    assert recipient is not None
    fake = [object()] * documents
    return front_matter(
        fax,
        parsed,
        fake,  # type: ignore[arg-type]
        facts=message_facts(parsed),
        author="alice@example.jp",
        entry=Sender(address="@example.jp", company="ACME"),
        language="en",
        recipients=[recipient],
        now=datetime(2026, 12, 2, 10, 0),
    )


RAW = b"From: Alice <alice@example.jp>\nSubject: hi\n\nPlease fax this.\n-- \nsig\n"


def test_body_policies() -> None:
    with pytest.raises(Refusal) as never:
        decide(Fax(), RAW)
    assert never.value.reply == NOTHING_TO_FAX
    assert decide(Fax(body="when_no_attachment"), RAW).body == "Please fax this."
    assert decide(Fax(body="when_no_attachment"), RAW, documents=1).empty
    assert decide(Fax(body="always"), RAW, documents=1).body == "Please fax this."
    with pytest.raises(Refusal) as empty:
        decide(Fax(body="when_no_attachment"), b"From: a@example.jp\n\n-- \nonly a signature\n")
    assert empty.value.reply.enhanced == NO_TEXT_TO_FAX.enhanced


def test_cover_carries_the_text_unless_it_has_its_own_pages() -> None:
    front = decide(Fax(cover="always"), RAW, documents=1)
    assert front.cover is not None and front.cover_text == "Please fax this." and not front.body
    assert front.fields["sender_name"] == "Alice" and front.fields["sender_company"] == "ACME"
    assert front.fields["to_number"] == "0312345678"
    front = decide(Fax(cover="always", body="always"), RAW, documents=1)
    assert front.body == "Please fax this." and front.cover_text == ""


def test_preview_address() -> None:
    pattern = FaxAddress(domains=("example.jp",))
    preview = parse_recipient("fax+preview+03-1234-5678@example.jp", pattern, "JP", previews=True)
    assert preview is not None and preview.preview and preview.number.e164 == "+81312345678"
    with pytest.raises(Refusal):  # previews off: "preview+..." is no number
        parse_recipient("fax+preview+0312345678@example.jp", pattern, "JP")
    plain = parse_recipient("fax+0312345678@example.jp", pattern, "JP", previews=True)
    assert plain is not None and not plain.preview


def test_image_is_untouched_by_pillow_globals() -> None:
    # Pillow's drawing must not leave state that changes later decoding (a sanity check)
    assert Image.MAX_IMAGE_PIXELS is None or Image.MAX_IMAGE_PIXELS > 0


def test_huge_text_is_refused_before_layout(tmp_path: Path) -> None:
    from faxmail.core.replies import TOO_MANY_PAGES
    from faxmail.render.options import RenderOptions
    from faxmail.render.renderer import Renderer

    renderer = Renderer(RenderOptions(max_pages=3))
    with pytest.raises(Refusal) as refused:
        renderer.render([], tmp_path, FrontMatter(body="x" * 1_000_000))
    assert refused.value.reply == TOO_MANY_PAGES.format(pages="more than 3", limit=3)
    with pytest.raises(Refusal) as counted:  # laid out: 4 pages of lines
        renderer.render([], tmp_path, FrontMatter(body="\n".join(["line"] * 41 * 4)))
    assert counted.value.reply == TOO_MANY_PAGES.format(pages=4, limit=3)
    assert list(tmp_path.iterdir()) == []
