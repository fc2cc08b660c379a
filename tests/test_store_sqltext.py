"""The SQL both job stores share is written with `?` placeholders; PostgreSQL's adapter hands
psycopg `%s` instead, and refuses text with a `%` (psycopg would read it as a placeholder)."""

import pytest

from faxmail.store.postgres import pg_placeholders


def test_question_marks_become_psycopg_placeholders() -> None:
    sql = "SELECT id FROM jobs WHERE sender = ? AND state IN (?,?) LIMIT ?"
    assert (
        pg_placeholders(sql)
        == b"SELECT id FROM jobs WHERE sender = %s AND state IN (%s,%s) LIMIT %s"
    )


def test_sql_text_with_a_percent_is_refused() -> None:
    with pytest.raises(ValueError, match="SQL text with a '%'"):
        pg_placeholders("SELECT id FROM jobs WHERE sender LIKE '%@example.jp'")
