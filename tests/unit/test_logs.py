"""Operable log lines: timestamp, level, logger, the object, the message; text or JSON."""

from __future__ import annotations

import json
import logging
import re

import pytest

from embedding_operator import logs


def _record(**extra: object) -> logging.LogRecord:
    record = logging.LogRecord(
        "embedding_operator.x", logging.INFO, "f", 1, "phase %s", ("Running",), None
    )
    record.__dict__.update(extra)
    return record


def test_text_lines_carry_a_timestamp_and_the_object() -> None:
    ref = {"namespace": "team-a", "name": "docs", "uid": "u"}
    line = logs.TextFormatter().format(_record(k8s_ref=ref))
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO embedding_operator\.x \[team-a/docs\]: "
        r"phase Running",
        line,
    ), line


def test_json_lines_parse_and_name_the_object() -> None:
    line = logs.JsonFormatter({"namespace": "ns", "name": "default-obj"}).format(_record())
    out = json.loads(line)
    assert out["object"] == {"namespace": "ns", "name": "default-obj"}
    assert out["message"] == "phase Running" and out["level"] == "INFO"
    assert out["time"].endswith("Z")


def test_for_object_sets_the_reference_kopf_formatters_read(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO):
        logs.for_object(logging.getLogger("t"), "ns", "n").info("hello")
    assert caplog.records[0].k8s_ref == {"namespace": "ns", "name": "n"}  # type: ignore[attr-defined]


def test_an_unknown_format_is_refused_naming_the_setting() -> None:
    with pytest.raises(ValueError, match="EMBEDDING_OPERATOR_LOG_FORMAT"):
        logs.configure("yaml")
