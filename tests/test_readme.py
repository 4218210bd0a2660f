"""README.md's examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def _examples() -> dict[str, str]:
    text = README.read_text(encoding="utf-8")
    pattern = re.compile(r"<!-- readme-example: ([\w-]+) -->\n```python\n(.*?)```", re.DOTALL)
    return {name: code for name, code in pattern.findall(text)}


def test_readme_has_the_sans_io_example() -> None:
    assert "sans-io" in _examples()


def test_sans_io_example_runs() -> None:
    code = _examples()["sans-io"]
    exec(compile(code, str(README), "exec"), {"__name__": "readme_example"})  # noqa: S102 (our own README)


def test_asyncio_example_runs() -> None:
    code = _examples()["asyncio"]
    exec(compile(code, str(README), "exec"), {"__name__": "readme_asyncio"})  # noqa: S102 (our own README)


def test_readme_starts_with_the_two_commands() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    block = lines[lines.index("```sh") + 1 : lines.index("```sh") + 3]
    assert block[0].startswith("python3 -m pip install -e . && python3 -m rfc6455 serve")
    assert block[1].startswith("bash .ci/run")
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert "bash .ci/test" in ci


def test_server_and_client_examples_run_together() -> None:
    """The handler example serves (on a free port), and the client example talks to it."""
    import threading

    examples = _examples()
    server_code = examples["server"].replace("port=8765", "port=0")
    server_code = server_code.replace("server.serve_forever()", "server.start()")
    namespace: dict[str, object] = {"__name__": "readme_server"}
    exec(compile(server_code, str(README), "exec"), namespace)  # noqa: S102 (our own README)
    server = namespace["server"]
    thread = threading.Thread(target=server.serve_forever, daemon=True)  # type: ignore[attr-defined]
    thread.start()
    try:
        port = server.port  # type: ignore[attr-defined]
        client_code = examples["client"].replace("8765", str(port))
        exec(compile(client_code, str(README), "exec"), {"__name__": "readme_client"})  # noqa: S102 (our own README)
    finally:
        server.shutdown()  # type: ignore[attr-defined]
        thread.join(10)
    assert not thread.is_alive()
