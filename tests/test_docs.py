"""Every code block of README.md and docs/*.md runs, against the fake server.

Sybil finds the blocks: each fenced ``python`` block is one test, named after its
file and line (``test_doc_block[docs/index.md:42]``); ``console`` and other blocks
are not run. The blocks of one file run in order and share one namespace, as a
reader would type them, plus:

- ``token`` and ``cookies``: credentials of the fake's demo user ``kestrel``;
- ``client``: a ``BioTorrentsClient`` with both, for fragments with top-level
  ``await`` (they run as in ``python -m asyncio``, on one event loop per file);
- the environment: ``BIOTORRENTS_TOKEN``, ``BIOTORRENTS_BASE_URL`` and
  ``BIOTORRENTS_COOKIES`` point at a fresh ``FakeBioTorrents`` for each file,
  served from a thread with its own event loop (blocks call ``asyncio.run``
  themselves), with a fast rate rule (``RULE``);
- a ``BioTorrentsClient`` made without ``base_url`` or ``rate_limit`` (so
  ``from_env()`` too) gets that fake and that rule: no block reaches the real site
  or waits for the real rule.

To skip a block, put Sybil's directive with a reason just before it::

    <!-- skip: next "needs a real account" -->

A skip without a reason fails ``test_every_skip_says_why``; skipped blocks are
listed, with their reasons, in pytest's summary.

Blocks that are pytest tests (they define ``test_*`` functions or fixtures) are
also copied, file by file, into a bare temporary project and run there with
``python -m pytest``: no configuration, so pytest-asyncio is in strict mode.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import os
import re
import subprocess
import sys
import threading
import unittest
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sybil import Document, Example
from sybil.evaluators.python import pad
from sybil.parsers.markdown import CodeBlockParser, SkipParser

from biotorrents_async import BioTorrentsClient, RateLimit, RetryPolicy
from biotorrents_async.testing import FakeBioTorrents

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: The rule of each file's fake server and, by default, of the blocks' clients.
RULE = RateLimit(2, 0.05)
_RUNNER = "__doc_runner__"
_TEST_BLOCK = re.compile(r"^\s*(async\s+)?def test_|^\s*@pytest\.fixture", re.M)


def run_python_block(example: Example) -> None:
    """Sybil evaluator: run a block; one with top-level ``await`` on the file's loop."""
    source = pad(example.parsed, example.line + example.parsed.line_offset)
    code = compile(
        source,
        example.path,
        "exec",
        flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
        dont_inherit=True,
    )
    namespace = example.namespace
    if code.co_flags & inspect.CO_COROUTINE:
        namespace[_RUNNER].run(eval(code, namespace))  # noqa: S307 - our own docs
    else:
        exec(code, namespace)  # noqa: S102 - our own docs
    namespace.pop("__builtins__", None)


PARSERS = [CodeBlockParser("python", run_python_block), SkipParser()]


def _name(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


class Block:
    """One python block, with the skip directives that come before it."""

    def __init__(self, document: Document, example: Example, before: list[Example]):
        self.document = document
        self.example = example
        self.before = before
        self.file = _name(Path(document.path))
        self.name = f"{self.file}:{example.line}"
        self.source = str(example.parsed)
        self.is_test = bool(_TEST_BLOCK.search(self.source))

    def run(self) -> None:
        for directive in self.before:
            directive.evaluate()
        self.example.evaluate()


def _blocks() -> list[Block]:
    blocks = []
    for path in DOCUMENTS:
        document = Document.parse(str(path), *PARSERS)
        pending: list[Example] = []
        for example in document.examples():
            if example.region.evaluator is run_python_block:
                blocks.append(Block(document, example, pending))
                pending = []
            else:
                pending.append(example)
    return blocks


BLOCKS = _blocks()


class FakeInThread:
    """A ``FakeBioTorrents`` served from a thread with its own event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.fake = FakeBioTorrents(rate_limit=RULE)
        self._call(self.fake.start())

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def close(self) -> None:
        self._call(self.fake.close())
        self._call(self.loop.shutdown_asyncgens())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class DocEnvironment:
    """What the blocks of one file run against."""

    def __init__(self, document: Document, folder: Path) -> None:
        self.folder = folder
        self.server = FakeInThread()
        fake = self.server.fake
        self.environ = {
            "BIOTORRENTS_TOKEN": fake.token,
            "BIOTORRENTS_BASE_URL": fake.url,
            "BIOTORRENTS_COOKIES": "; ".join(
                f"{k}={v}" for k, v in fake.cookies.items()
            ),
        }
        self.runner = asyncio.Runner()
        self.client = BioTorrentsClient(
            fake.token,
            cookies=fake.cookies,
            base_url=fake.url,
            rate_limit=RULE,
            retry=RetryPolicy(backoff_initial=0.01, backoff_max=0.1),
        )
        self.namespace = document.namespace
        self.namespace.update(
            {
                "token": fake.token,
                "cookies": fake.cookies,
                "client": self.client,
                _RUNNER: self.runner,
            }
        )

    def close(self) -> None:
        # The blocks' own clients too: a REPL-style block may leave one open.
        clients = [
            c for c in self.namespace.values() if isinstance(c, BioTorrentsClient)
        ]
        try:
            for client in {id(c): c for c in [self.client, *clients]}.values():
                self.runner.run(client.aclose())
        finally:
            self.runner.close()
            self.server.close()


@pytest.fixture(scope="module")
def environments(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[Document], DocEnvironment]]:
    made: dict[str, DocEnvironment] = {}

    def get(document: Document) -> DocEnvironment:
        if document.path not in made:
            folder = tmp_path_factory.mktemp("doc")
            made[document.path] = DocEnvironment(document, folder)
        return made[document.path]

    yield get
    for environment in made.values():
        environment.close()


@pytest.mark.parametrize("block", [pytest.param(b, id=b.name) for b in BLOCKS])
def test_doc_block(
    block: Block,
    environments: Callable[[Document], DocEnvironment],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    environment = environments(block.document)
    for key, value in environment.environ.items():
        monkeypatch.setenv(key, value)
    # Blocks may write files (a bot's cursor file): never into the checkout.
    monkeypatch.chdir(environment.folder)
    # A client made without base_url or rate_limit (from_env() included) goes to
    # this file's fake, at its pace: no block ever reaches the real site.
    defaults = BioTorrentsClient.__init__.__kwdefaults__
    assert defaults is not None
    monkeypatch.setitem(defaults, "base_url", environment.server.fake.url)
    monkeypatch.setitem(defaults, "rate_limit", RULE)
    try:
        block.run()
    except unittest.SkipTest as skip:
        pytest.skip(f"{block.name}: {skip}")


def test_documents_have_python_blocks() -> None:
    files = {block.file for block in BLOCKS}
    assert {"README.md", "docs/index.md", "docs/testing.md"} <= files


def test_every_skip_says_why() -> None:
    """``<!-- skip: next -->`` without a reason would hide a block silently."""
    silent = []
    for path in DOCUMENTS:
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            match = re.search(r"<!--\s*skip:\s*(\w+)(.*?)-->", line)
            if (
                match
                and match.group(1) in ("next", "start")
                and not re.search(r"[\"']\S", match.group(2))
            ):
                silent.append(f"{_name(path)}:{number}: {line.strip()}")
    assert not silent, "skips need a quoted reason:\n" + "\n".join(silent)


BARE_PROJECT_FILES = sorted({b.file for b in BLOCKS if b.is_test})


@pytest.mark.parametrize("name", BARE_PROJECT_FILES)
def test_doc_tests_pass_in_a_bare_project(name: str, tmp_path: Path) -> None:
    """The test blocks of one file pass as a user's own tests, without config."""
    blocks = [b for b in BLOCKS if b.file == name and b.is_test]
    tests = sum(len(re.findall(r"def test_", b.source)) for b in blocks)
    test_file = tmp_path / "test_from_docs.py"
    test_file.write_text(
        "\n\n".join(f"# {b.name}\n{b.source}" for b in blocks), encoding="utf-8"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    assert f"{tests} passed" in report, report
