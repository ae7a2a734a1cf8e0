"""GitOps health verdicts as the tools compute them: kstatus (``status.Compute`` of
sigs.k8s.io/cli-utils, Flux's health verdict, built by tests/Makefile from tests/kstatus) and
the chart's Argo CD health check (Lua, run with lupa in Lua 5.1, Argo CD's gopher-lua dialect)."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from tests.api_cases import ROOT

CHART = ROOT / "charts" / "embedding-operator"

LUA = CHART / "docs" / "argocd-health.lua"


def kstatus(objects: list[dict[str, Any]]) -> list[str]:
    subprocess.run(["make", "-s", "-C", str(ROOT / "tests"), "kstatus"], check=True)
    out = subprocess.run(
        [str(ROOT / ".cache" / "kstatus" / "kstatus")],
        input=json.dumps(objects),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [json.loads(line)["status"] for line in out.splitlines()]


def argocd(obj: dict[str, Any]) -> str:
    """The health status the Lua check returns, run as Argo CD runs it (Lua 5.1, gopher-lua's
    dialect, with the object as the global ``obj``)."""
    from lupa import lua51

    lua = lua51.LuaRuntime()
    to_lua = lua.eval("function(json) return assert(loadstring('return ' .. json))() end")
    lua.globals().obj = to_lua(_lua_literal(obj))
    result = lua.execute(LUA.read_text())
    return str(result["status"])


def _lua_literal(value: Any) -> str:
    """A Lua table constructor for a JSON value (lists become 1-based arrays, as in Argo CD)."""
    if isinstance(value, dict):
        items = ", ".join(f"[{json.dumps(k)}] = {_lua_literal(v)}" for k, v in value.items())
        return "{" + items + "}"
    if isinstance(value, list):
        return "{" + ", ".join(_lua_literal(v) for v in value) + "}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "nil"
    return json.dumps(value)
