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


@pytest.fixture
def restored_logging() -> object:
    """The root logger's handlers and level, and the quieted loggers' levels, as they were."""
    root = logging.getLogger()
    names = ("httpx", "kopf.objects", "voyage")
    saved = root.handlers[:], root.level, {n: logging.getLogger(n).level for n in names}
    yield
    root.handlers[:], root.level = saved[0], saved[1]
    for name, level in saved[2].items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.usefixtures("restored_logging")
@pytest.mark.parametrize(
    ("argv", "chatty"),
    [
        (["run"], ("httpx", "kopf.objects")),
        (["worker", "--namespace=n", "--name=r", "--job=j"], ("httpx", "voyage")),
    ],
)
def test_a_line_per_request_or_event_is_only_for_verbose(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], chatty: tuple[str, ...]
) -> None:
    """httpx logs every API request and kopf every handled event at INFO: in a burst of 1,000
    runs that was 11,000 lines and a share of the operator's CPU. Warnings still show; -v (DEBUG)
    brings the rest back."""
    import embedding_operator.controller as controller
    import embedding_operator.worker as worker
    from embedding_operator import cli

    monkeypatch.setattr(controller, "run", lambda *_: None)
    monkeypatch.setattr(worker, "run_worker", lambda *_: 0)
    cli.main(argv)
    for name in chatty:
        assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
        assert logging.getLogger(name).isEnabledFor(logging.WARNING), name
    assert logging.getLogger("embedding_operator.controller").isEnabledFor(logging.INFO)
    if argv == ["run"]:
        cli.main(["run", "-v"])
        assert all(logging.getLogger(n).isEnabledFor(logging.DEBUG) for n in chatty)
