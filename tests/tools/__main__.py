"""``python -m tests.tools``: fetch helm and kubectl into .cache/tools/ (tests/tools/fetch.py)."""

from tests.tools.fetch import ensure_tools

for tool in ensure_tools().values():
    print(tool)
