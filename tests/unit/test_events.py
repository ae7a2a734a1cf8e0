"""Events off the reconcile's path (``controller.events``), over the in-memory API."""

from __future__ import annotations

import threading
from collections.abc import Callable

import httpx
import pytest

from embedding_operator.controller import events as events_module
from embedding_operator.controller.events import DROPPED, EventRecorder
from embedding_operator.controller.loop import Controller
from tests.fake_kube import FakeApi
from tests.unit.test_glue import controller, events, new_api, status

BODY = {"metadata": {"name": "demo", "namespace": "ns", "uid": "u-1", "resourceVersion": "7"}}


class Gate:
    """Holds every Event POST at the API until ``open``; ``entered`` is set by the first."""

    def __init__(self, api: FakeApi) -> None:
        self.entered = threading.Event()
        self.opened = threading.Event()
        handle: Callable[[httpx.Request], httpx.Response] = api.handle

        def gated(request: httpx.Request) -> httpx.Response:
            if request.method == "POST" and request.url.path.endswith("/events"):
                self.entered.set()
                assert self.opened.wait(30), "the gate was never opened"
            return handle(request)

        api.handle = gated  # type: ignore[method-assign]

    def open(self) -> None:
        self.opened.set()


def dropped() -> float:
    return DROPPED._value.get()


def test_a_reconcile_does_not_wait_for_its_event() -> None:
    """The reconcile writes the Job and the status and returns while the API still holds the
    Event's POST; the Event follows once the API answers."""
    api = new_api()
    gate = Gate(api)
    control = controller(api)
    control.watch.deliver()
    assert Controller.reconcile(control, "ns", "demo") is None  # without the test's flush
    assert gate.entered.wait(30)
    assert status(api)["phase"] == "Running" and api.all("batch/v1", "jobs", "ns")
    assert events(api) == []
    gate.open()
    assert control.events.flush(30)
    assert events(api) == [("Normal", "Accepted")]


def test_events_beyond_the_queue_are_dropped_counted_and_never_block() -> None:
    api = new_api()
    gate = Gate(api)
    recorder = EventRecorder(api.kube("embedding-operator"), capacity=2)
    before = dropped()
    recorder.record(BODY, "Normal", "First", "posting, held by the API", "2026-11-29T00:00:00Z")
    assert gate.entered.wait(30)
    for i in range(4):  # two fit in the queue, two do not
        recorder.record(BODY, "Normal", f"Next{i}", "m", "2026-11-29T00:00:00Z")
    assert dropped() - before == 2
    assert not recorder.flush(0.2)  # still held
    gate.open()
    assert recorder.flush(30)
    assert [e[1] for e in events(api)] == ["First", "Next0", "Next1"]


def test_a_refused_event_is_counted_and_the_next_one_is_posted() -> None:
    api = FakeApi()
    api.fail("POST", "/events", 403, message="events is forbidden")
    recorder = EventRecorder(api.kube("embedding-operator"))
    before = dropped()
    recorder.record(BODY, "Warning", "Refused", "m", "2026-11-29T00:00:00Z")
    recorder.record(BODY, "Normal", "Posted", "m", "2026-11-29T00:00:00Z")
    assert recorder.flush(30)
    assert dropped() - before == 1
    [posted] = api.all("v1", "events", "ns")
    assert posted["reason"] == "Posted"
    assert posted["involvedObject"]["uid"] == "u-1"
    assert posted["involvedObject"]["resourceVersion"] == "7"


def test_while_reconciles_run_events_wait_then_follow(monkeypatch: pytest.MonkeyPatch) -> None:
    """During a burst kube-apiserver's time goes to the Jobs: an Event waits while reconciles
    are running (up to its trickle interval), and is posted as soon as they end."""
    monkeypatch.setattr(events_module, "TRICKLE_SECONDS", 60.0)
    api = FakeApi()
    busy = threading.Event()
    busy.set()
    recorder = EventRecorder(api.kube("embedding-operator"), busy=busy.is_set)
    recorder.record(BODY, "Normal", "Accepted", "m", "2026-11-29T00:00:00Z")
    assert not recorder.flush(0.5)
    assert api.all("v1", "events", "ns") == []
    busy.clear()
    assert recorder.flush(30)
    assert [e["reason"] for e in api.all("v1", "events", "ns")] == ["Accepted"]
