"""The words of our mails, in Japanese (the seed's language) and English.

Only fixed text lives here; values are filled in by results.py and received.py. Keys missing
from a language fall back to English.
"""

from __future__ import annotations

from typing import Literal

Language = Literal["ja", "en"]

TEXT: dict[str, dict[str, str]] = {
    "en": {
        "sent_subject": "Fax sent: {subject}",
        "failed_subject": "[FAILED] Fax not sent: {subject}",
        "cancelled_subject": "[CANCELLED] Fax not sent: {subject}",
        "sent_intro": "Your fax to {number} has been sent.",
        "failed_intro": "Your fax to {number} could not be sent.",
        "cancelled_intro": "Your fax to {number} was cancelled by the administrator; "
        "it has not been sent.",
        "number": "Number",
        "status": "Status",
        "status_sent": "sent",
        "status_failed": "FAILED",
        "status_cancelled": "CANCELLED",
        "cancelled_error": "cancelled by the administrator",
        "pages": "Pages",
        "pages_of": "{sent} of {total}",
        "bitrate": "Bit rate",
        "resolution": "Resolution",
        "mode": "Mode",
        "station": "Remote station",
        "error": "Error",
        "subject": "Subject",
        "queued": "Queued",
        "job": "Job",
        "attempts": "Attempts",
        "attached_pdf": "The document as faxed is attached as PDF.",
        "no_pdf": "The faxed document is no longer available and is not attached.",
        "fine": "fine",
        "standard": "standard",
        "audio": "audio (G.711)",
        "t38": "T.38",
        "answered": "answered",
        "then": ", ",
        "fax_ok": "fax sent",
        "fax_failed": "fax failed",
        "no_fax": "the call ended before the fax started",
        "no_report": "the call was answered, but Asterisk reported no fax result",
        "lease_expired": (
            "the host that placed the call stopped reporting during it; the fax may or may not"
            " have reached the recipient, and is not sent again: please check with them"
        ),
        "reason_0": "call failed",
        "reason_1": "hung up",
        "reason_3": "no answer",
        "reason_5": "busy",
        "reason_8": "congestion",
        "reason_other": "not answered (reason {code})",
        "unanswered_error": "{attempts} call attempt(s), none answered (last: {reason})",
        # received faxes
        "in_subject": "Fax from {caller} ({pages} pages)",
        "in_failed_subject": "[FAILED] Fax from {caller} ({pages} pages)",
        "in_intro": "A fax has arrived from {caller}.",
        "in_failed_intro": "A fax from {caller} was not received completely.",
        "received": "Received",
        "did": "Called number",
        "caller": "Caller",
        "unknown_caller": "unknown number",
        "in_pages": "{pages} page(s) in the PDF, {reported} reported by the fax line",
        "in_attached": "The fax is attached as PDF.",
        "in_tiff_attached": "No PDF could be made; the received TIFF is attached as it is.",
        "in_nothing": "No page arrived.",
        "preview": "Page 1",
        "footer": "-- \nfaxmail (automatic message; replies are not read)",
    },
    "ja": {
        "sent_subject": "FAX送信完了: {subject}",
        "failed_subject": "[FAILED] FAX送信失敗: {subject}",
        "cancelled_subject": "[CANCELLED] FAX送信取消: {subject}",
        "sent_intro": "{number} へのFAXを送信しました。",
        "failed_intro": "{number} へのFAXを送信できませんでした。",
        "cancelled_intro": "{number} へのFAXは管理者により取り消されました。送信されていません。",
        "number": "宛先番号",
        "status": "結果",
        "status_sent": "送信完了",
        "status_failed": "失敗",
        "status_cancelled": "取消",
        "cancelled_error": "管理者により取り消されました",
        "pages": "ページ数",
        "pages_of": "{sent} / {total}",
        "bitrate": "通信速度",
        "resolution": "解像度",
        "mode": "方式",
        "station": "相手局ID",
        "error": "エラー",
        "subject": "件名",
        "queued": "受付日時",
        "job": "ジョブID",
        "attempts": "発信記録",
        "attached_pdf": "送信した文書をPDFで添付します。",
        "no_pdf": "送信した文書はもう残っていないため、添付していません。",
        "fine": "ファイン",
        "standard": "標準",
        "audio": "音声 (G.711)",
        "t38": "T.38",
        "answered": "応答あり",
        "then": "、",
        "fax_ok": "送信完了",
        "fax_failed": "FAX送信失敗",
        "no_fax": "FAX送信開始前に切断されました",
        "no_report": "相手は応答しましたが、Asteriskから送信結果の報告がありませんでした",
        "lease_expired": (
            "発信したホストが通話中に応答しなくなりました。FAXが届いたかどうかは不明で、"
            "再送はしていません。受信者にご確認ください"
        ),
        "reason_0": "発信失敗",
        "reason_1": "切断",
        "reason_3": "応答なし",
        "reason_5": "話し中",
        "reason_8": "回線混雑",
        "reason_other": "不応答 (理由 {code})",
        "unanswered_error": "{attempts} 回発信しましたが応答がありませんでした (最後: {reason})",
        "in_subject": "FAX受信: {caller} ({pages}枚)",
        "in_failed_subject": "[FAILED] FAX受信: {caller} ({pages}枚)",
        "in_intro": "{caller} からFAXを受信しました。",
        "in_failed_intro": "{caller} からのFAXを最後まで受信できませんでした。",
        "received": "受信日時",
        "did": "着信番号",
        "caller": "発信元",
        "unknown_caller": "番号通知なし",
        "in_pages": "PDF {pages} ページ (回線上の報告: {reported} ページ)",
        "in_attached": "受信したFAXをPDFで添付します。",
        "in_tiff_attached": "PDFに変換できなかったため、受信したTIFFをそのまま添付します。",
        "in_nothing": "ページを受信できませんでした。",
        "preview": "1ページ目",
        "footer": "-- \nfaxmail (自動送信メールです。返信されても読まれません)",
    },
}


def words(language: str) -> dict[str, str]:
    """The texts of `language` ("ja"/"en"), English for anything else."""
    return {**TEXT["en"], **TEXT.get(language, {})}


def reason_text(language: str, code: str | None) -> str:
    """Asterisk's REASON of an unanswered call (5 busy, 8 congestion, 3 no answer...)."""
    text = words(language)
    if code is not None and f"reason_{code}" in text:
        return text[f"reason_{code}"]
    return text["reason_other"].format(code=code if code is not None else "?")


def resolution_text(language: str, value: str | None) -> str:
    """FAXRESOLUTION is pixels per metre ("8031x7700"): show dpi and fine/standard."""
    if not value or "x" not in value:
        return "-"
    x, y = (int(v) for v in value.split("x", 1))
    xdpi, ydpi = round(x / 39.37), round(y / 39.37)
    name = words(language)["fine" if ydpi >= 150 else "standard"]
    return f"{name} ({xdpi}x{ydpi} dpi)"


def mode_text(language: str, value: str | None) -> str:
    if not value:
        return "-"
    key = {"audio": "audio", "t38": "t38"}.get(value.lower())
    return words(language)[key] if key else value
