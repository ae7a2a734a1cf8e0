"""Log lines an SRE can use, for the operator and the worker alike: a timestamp, the level, the
logger, the object (``namespace/name``) the line is about, and the message, as text or as one JSON
object per line (``--log-format json`` / ``EMBEDDING_OPERATOR_LOG_FORMAT=json``).

The object comes from ``record.k8s_ref``, which kopf's per-object loggers set and
:func:`for_object` sets for the project's own lines, or from the process-wide default (a worker
serves one resource). Nothing here logs a spec: lines carry names, phases and reasons only.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from typing import Any, Final

FORMATS: Final = ("text", "json")
ENV: Final = "EMBEDDING_OPERATOR_LOG_FORMAT"


def _object(record: logging.LogRecord, default: dict[str, str] | None) -> dict[str, str] | None:
    ref = getattr(record, "k8s_ref", None) or default
    if not ref:
        return None
    return {k: str(ref[k]) for k in ("namespace", "name") if ref.get(k)}


def _timestamp(record: logging.LogRecord) -> str:
    stamp = datetime.fromtimestamp(record.created, UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


class TextFormatter(logging.Formatter):
    def __init__(self, default: dict[str, str] | None = None) -> None:
        super().__init__()
        self.default = default

    def format(self, record: logging.LogRecord) -> str:
        obj = _object(record, self.default)
        where = f" [{obj.get('namespace', '')}/{obj.get('name', '')}]" if obj else ""
        line = (
            f"{_timestamp(record)} {record.levelname} {record.name}{where}: {record.getMessage()}"
        )
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(TextFormatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        obj = _object(record, self.default)
        if obj:
            out["object"] = obj
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out)


def configure(
    log_format: str | None = None,
    level: int = logging.INFO,
    default_object: dict[str, str] | None = None,
    quiet: tuple[str, ...] = (),
) -> None:
    """Route every log line through one formatter (``text`` or ``json``; default: the
    ``EMBEDDING_OPERATOR_LOG_FORMAT`` environment variable, else text). The ``quiet`` loggers
    keep only warnings unless ``level`` is DEBUG: libraries that log every request or event at
    INFO, which in a burst is thousands of lines a minute and a share of the CPU."""
    log_format = log_format or os.environ.get(ENV) or "text"
    if log_format not in FORMATS:
        raise ValueError(f"{ENV}/--log-format: {log_format!r} is not one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler()
    formatter = JsonFormatter if log_format == "json" else TextFormatter
    handler.setFormatter(formatter(default_object))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in quiet:
        logging.getLogger(name).setLevel(
            logging.NOTSET if level <= logging.DEBUG else logging.WARNING
        )


def for_object(logger: logging.Logger, namespace: str, name: str) -> logging.LoggerAdapter[Any]:
    """``logger`` whose lines name the object (as kopf's per-object loggers do)."""
    return logging.LoggerAdapter(logger, {"k8s_ref": {"namespace": namespace, "name": name}})
