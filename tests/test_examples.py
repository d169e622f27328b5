"""The examples run as a new user would run them, against the fake server."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import SECRETS, fake_server_process

EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.fixture
def fake_url() -> Iterator[str]:
    with fake_server_process() as (url, _):
        yield url


def test_examples_print_what_they_promise_and_no_secret(fake_url: str) -> None:
    env = {
        **os.environ,
        "BIOTORRENTS_BASE_URL": fake_url,
        "BIOTORRENTS_TOKEN": "fake-token-kestrel-0002",
    }
    # Both at once: each paces itself to 2 requests per 7 s, so ~7 s in all.
    runs = {
        name: subprocess.Popen(  # noqa: S603 - our own interpreter and files
            [sys.executable, str(EXAMPLES / name)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("quickstart.py", "read_inbox.py")
    }
    outputs = {name: proc.communicate(timeout=60) for name, proc in runs.items()}
    for name, proc in runs.items():
        assert proc.returncode == 0, outputs[name][1]
    quick, _ = outputs["quickstart.py"]
    assert "You are kestrel (id 2), class Power User" in quick
    assert "Inbox, page 1 of 3:" in quick
    inbox, _ = outputs["read_inbox.py"]
    assert inbox.strip().endswith("55 conversations, 11 unread")
    for out, err in outputs.values():
        assert not [s for s in SECRETS if s in out + err]


def test_examples_without_a_token_say_so() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BIOTORRENTS_")}
    done = subprocess.run(  # noqa: S603 - our own interpreter and files
        [sys.executable, str(EXAMPLES / "quickstart.py")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "error: set BIOTORRENTS_TOKEN or BIOTORRENTS_COOKIES (or both) to build "
        "a client from the environment"
    )
