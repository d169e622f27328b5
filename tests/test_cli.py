"""The ``biotorrents`` command, every subcommand against the fake over loopback."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import fake_server_process

from biotorrents_async import BioTorrentsClient, RateLimit, to_dict
from biotorrents_async.cli import main
from biotorrents_async.testing import FakeBioTorrents

RULE = "2/0.05"


@pytest.fixture
def fake() -> Iterator[FakeBioTorrents]:
    """A fake server on its own loop in a thread, so the CLI can run its own loop."""
    loop = asyncio.new_event_loop()
    server = FakeBioTorrents(rate_limit=RateLimit(2, 0.05))
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(5)
    yield server
    asyncio.run_coroutine_threadsafe(server.close(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


@pytest.fixture
def env(fake: FakeBioTorrents, monkeypatch: pytest.MonkeyPatch) -> FakeBioTorrents:
    monkeypatch.setenv("BIOTORRENTS_BASE_URL", fake.url)
    monkeypatch.setenv("BIOTORRENTS_TOKEN", fake.token)
    cookie = "; ".join(f"{k}={v}" for k, v in fake.cookies.items())
    monkeypatch.setenv("BIOTORRENTS_COOKIES", cookie)
    return fake


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main([*argv, "--rate-limit", RULE])
    out, err = capsys.readouterr()
    return code, out, err


COMMANDS = [
    (["index"], "username: kestrel"),
    (["user", "2"], "joined_date: 2020-06-14 09:12:44"),
    (["search", "jim"], "Ana Jiménez"),
    (["stats", "2"], "seeding: 1204"),
    (["recents", "2", "--limit", "2"], "snatches: (2)"),
    (["posts", "2"], "page 1 of 3"),
    (["inbox"], "page 1 of 3"),
    (["inbox", "--box", "sentbox"], "page 1 of 2"),
    (["conversation", "11"], "subject: Re: Bruker raw files & converters (11)"),
    (["bookmarks"], "Arabidopsis root single-cell atlas #1"),
    (["bookmarks", "--artists"], "Escherichia Lab"),
    (["notifications"], "page 1 of 2"),
    (["alerts"], "You have a new Staff PM"),
    (["clear", "StaffPM"], "done"),
]


@pytest.mark.parametrize(("argv", "expected"), COMMANDS)
def test_every_subcommand(
    env: FakeBioTorrents,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    expected: str,
) -> None:
    code, out, err = run(capsys, *argv)
    assert (code, err) == (0, "")
    assert expected in out


@pytest.mark.parametrize(("argv", "_"), COMMANDS)
def test_every_subcommand_json_parses(
    env: FakeBioTorrents, capsys: pytest.CaptureFixture[str], argv: list[str], _: str
) -> None:
    code, out, _err = run(capsys, *argv, "--json")
    assert code == 0
    data = json.loads(out)
    assert data is None or isinstance(data, dict | list)


def test_json_content(env: FakeBioTorrents, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "inbox", "--json", "--all")
    items = json.loads(out)
    assert len(items) == 55
    assert len({i["conv_id"] for i in items}) == 55
    _, out, _ = run(capsys, "index", "--json")
    me = json.loads(out)
    assert me["username"] == "kestrel"
    assert "passkey" not in me
    assert "authkey" not in me
    assert env.data.users[2].passkey not in out


def test_json_output_is_to_dict(
    env: FakeBioTorrents, capsys: pytest.CaptureFixture[str]
) -> None:
    async def fetch() -> tuple[Any, Any]:
        async with BioTorrentsClient(
            env.token, cookies=env.cookies, base_url=env.url, rate_limit=None
        ) as client:
            return await client.users.get(2), await client.inbox.conversations()

    profile, inbox = asyncio.run(fetch())
    _, out, _ = run(capsys, "user", "2", "--json")
    assert json.loads(out) == to_dict(profile)
    _, out, _ = run(capsys, "inbox", "--json")
    assert json.loads(out) == to_dict(inbox)
    # ISO-8601 dates, read back exactly.
    date = json.loads(out)["items"][0]["date"]
    assert dt.datetime.fromisoformat(date) == inbox.items[0].date
    assert date == inbox.items[0].date.isoformat()


def test_all_pages_show_progress_on_stderr(
    env: FakeBioTorrents, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "search", "lab", "--all")
    assert code == 0
    assert out.count("\n") > 60
    lines = err.strip().splitlines()
    assert lines[0].startswith("search: [")
    assert "page 1/3" in lines[0]
    assert "s left for the rate limit" in lines[0]
    assert lines[-1].endswith("page 3/3")


def test_token_file(
    fake: FakeBioTorrents,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("BIOTORRENTS_TOKEN", raising=False)
    monkeypatch.delenv("BIOTORRENTS_COOKIES", raising=False)
    token_file = tmp_path / "token"
    token_file.write_text(fake.token + "\n")
    code, out, _ = run(
        capsys, "index", "--base-url", fake.url, "--token-file", str(token_file)
    )
    assert code == 0
    assert "id: 2" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["user", "99999"], "error: NotFoundError: user: no such user"),
        (
            ["conversation", "99999"],
            "error: NotFoundError: inbox: conversation 99999 does not exist or is "
            "not yours",
        ),
    ],
)
def test_errors_are_one_line(
    env: FakeBioTorrents,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 1
    assert out == ""
    assert err.startswith(message)
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_missing_credentials(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BIOTORRENTS_TOKEN", raising=False)
    monkeypatch.delenv("BIOTORRENTS_COOKIES", raising=False)
    code, _, err = run(capsys, "index")
    assert code == 1
    assert "BIOTORRENTS_TOKEN" in err


def test_unreachable_server(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BIOTORRENTS_TOKEN", "t")
    code = main(["index", "--base-url", "http://127.0.0.1:9", "--rate-limit", "none"])
    *notes, last = capsys.readouterr().err.splitlines()
    assert code == 1
    assert last.startswith("error: TransportError")
    # The retries' silent waits are announced, one short note each.
    assert len(notes) == 3
    assert all(
        n.startswith("note: index: cannot connect to 127.0.0.1:9") for n in notes
    )
    assert all("retrying in" in n for n in notes)


def test_bad_arguments_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for argv in (
        ["user", "0"],
        ["clear", "inbox"],
        ["index", "--rate-limit", "x"],
        ["recents", "2", "--limit", "51"],
        ["index", "--base-url", "ftp://bio.example"],
        ["watch", "--interval", "inf"],
        ["call", "bad action"],
        ["watch", "--interval", "1e400"],
        ["watch", "--interval", "86401"],
    ):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        assert err.startswith("biotorrents")
        assert "error:" in err
        assert "see biotorrents" in err


def test_a_malformed_cookies_file_is_a_clear_error(
    fake: FakeBioTorrents,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("BIOTORRENTS_TOKEN", raising=False)
    monkeypatch.delenv("BIOTORRENTS_COOKIES", raising=False)
    cookies = tmp_path / "cookies"
    cookies.write_text("session fake-session-kestrel\nuserid=2\n")
    code, out, err = run(
        capsys, "index", "--base-url", fake.url, "--cookies-file", str(cookies)
    )
    assert (code, out) == (1, "")
    assert err.startswith("error: --cookies-file")
    assert "name=value" in err
    assert "fake-session-kestrel" not in err
    assert fake.requests == []


def test_plain_http_elsewhere_needs_the_flag(
    env: FakeBioTorrents, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "index", "--base-url", "http://bio.example")
    assert code == 1
    assert "--allow-insecure-http" in err
    assert "allow_insecure_http=True" in err  # the library's name, for scripts


def test_a_base_url_with_the_api_script_works(
    env: FakeBioTorrents, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "index", "--base-url", f"{env.url}/api.php")
    assert code == 0
    assert "username: kestrel" in out


def test_token_only_notifications_say_cookies_are_needed(
    env: FakeBioTorrents,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("BIOTORRENTS_COOKIES")
    code, _, err = run(capsys, "notifications")
    assert code == 1
    assert err.startswith("error: CookiesRequiredError")
    assert "cookie session" in err
    assert env.requests == []


def test_a_long_pacing_wait_is_announced(
    env: FakeBioTorrents, capsys: pytest.CaptureFixture[str]
) -> None:
    env.rate_limit = None  # the fake does not mind; the client paces itself
    code = main(["search", "lab", "--all", "--rate-limit", "1/1"])
    err = capsys.readouterr().err
    assert code == 0
    assert "note: waiting" in err
    assert "for the rate limit" in err


def test_demo_runs_and_summarises(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--rate-limit", "2/0.05"]) == 0
    out = capsys.readouterr().out
    for section in ("index: who am I", "inbox.iter_conversations()", "Summary"):
        assert section in out
    assert "server rate-limit answers:     1" in out
    # 502, truncated body, and the second of two drops (aiohttp retries the first).
    assert "retries after faults:          4" in out


def test_python_dash_m() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "biotorrents_async", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0
    assert "demo" in done.stdout
    assert "fake-server" in done.stdout


def test_fake_server_command_serves() -> None:
    with fake_server_process() as (url, first):
        assert first.startswith("fake BioTorrents.de serving http://127.0.0.1:")
        done = subprocess.run(  # noqa: S603 - our own interpreter and module
            [
                sys.executable,
                "-m",
                "biotorrents_async",
                "stats",
                "2",
                "--json",
                "--base-url",
                url,
                "--rate-limit",
                "none",
            ],
            capture_output=True,
            text=True,
            check=False,
            env={"BIOTORRENTS_TOKEN": "fake-token-kestrel-0002", "PATH": ""},
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["seeding"] == 1204


def test_even_a_bug_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_: object) -> None:
        raise KeyError("oops")

    monkeypatch.setattr("biotorrents_async.cli.run_endpoint", broken)
    code, out, err = run(capsys, "index")
    assert (code, out) == (1, "")
    assert err.startswith("error: unexpected KeyError")
    assert err.count("\n") == 1


def _cli(*argv: str, **env: str) -> subprocess.Popen[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("BIOTORRENTS_")}
    return subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "biotorrents_async", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**base, **env},
    )


def _credentials(url: str) -> dict[str, str]:
    return {
        "BIOTORRENTS_BASE_URL": url,
        "BIOTORRENTS_TOKEN": "fake-token-kestrel-0002",
        "BIOTORRENTS_COOKIES": "session=fake-session-kestrel; userid=2",
        "BIOTORRENTS_RATE_LIMIT": "none",
    }


def test_watch_prints_json_lines_and_resumes_from_its_store(tmp_path: Path) -> None:
    options = ("watch", "--interval", "0.1", "--store", str(tmp_path / "watch.db"))
    with fake_server_process("--live", "0.25") as (url, _):
        watch = _cli(*options, **_credentials(url))
        time.sleep(4)
        watch.send_signal(signal.SIGTERM)  # a clean stop
        out, err = watch.communicate(timeout=30)
        assert watch.returncode == 0, err
        lines = [json.loads(line) for line in out.splitlines()]
        assert {line["stream"] for line in lines} == {"inbox", "torrents", "alerts"}
        # A stable key and what happened, for the receiver of each line.
        assert len({line["key"] for line in lines}) == len(lines)
        assert {line["event"] for line in lines} <= {"new", "reply", "hit", "alert"}
        assert {"new", "reply"} <= {line["event"] for line in lines}
        first = _identities(lines)
        assert len(first) == len([d for d in lines if d["stream"] != "alerts"])
        time.sleep(1)  # more arrives while it is down
        again = _cli(*options, **_credentials(url))
        time.sleep(3)
        again.send_signal(signal.SIGINT)
        out, err = again.communicate(timeout=30)
        assert again.returncode == 0, err
    second = _identities([json.loads(line) for line in out.splitlines()])
    assert second
    assert not first & second  # what was handed over is not handed over again


def _identities(lines: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
    # A conversation again with a later date is a reply, a new item; an alert
    # that went and came back is a new appearance: alerts are left out.
    return {
        (
            d["stream"],
            d["item"].get("conv_id"),
            d["item"].get("torrent_id"),
            d["item"].get("date"),
        )
        for d in lines
        if d["stream"] != "alerts"
    }


def test_fake_server_options_for_other_languages() -> None:
    with fake_server_process("--live", "0.1", "--faults", "0.3", "--seed", "4") as (
        url,
        first,
    ):
        assert first.startswith("fake BioTorrents.de serving")
        counts = []
        for _ in range(2):
            done = subprocess.run(
                [sys.executable, "-m", "biotorrents_async", "inbox", "--json"],
                capture_output=True,
                text=True,
                check=False,
                env={**_credentials(url), "PATH": ""},
            )
            assert done.returncode == 0, done.stderr  # faults were retried
            counts.append(json.loads(done.stdout)["pages"])
            time.sleep(3)
        assert "note:" in done.stderr or counts  # retries are announced
    assert counts[1] >= counts[0]


def test_fake_server_records_what_it_makes_as_json_lines(tmp_path: Path) -> None:
    record = tmp_path / "made.jsonl"
    with fake_server_process("--live", "0.1", "--record", str(record)) as (url, _):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            text = record.read_text() if record.exists() else ""
            if text.count('"kind": "news"') >= 1:
                break
            time.sleep(0.1)
        # What the fake serves is what the record says it made (before now).
        made = [json.loads(line) for line in record.read_text().splitlines()]
        done = subprocess.run(
            [sys.executable, "-m", "biotorrents_async", "inbox", "--json"],
            capture_output=True,
            text=True,
            check=False,
            env={**_credentials(url), "PATH": ""},
        )
    assert done.returncode == 0, done.stderr
    kinds = {entry["kind"] for entry in made}
    assert {"reply", "notification", "quote", "conversation", "news"} <= kinds
    new_conversations = {e["conv_id"] for e in made if e["kind"] == "conversation"}
    listed = {item["conv_id"] for item in json.loads(done.stdout)["items"]}
    assert new_conversations <= listed  # the newest are on page 1
    assert all("time" in entry for entry in made)


def test_commands_in_a_row_keep_the_rule(
    env: FakeBioTorrents, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    rule = "2/0.5"
    for _ in range(5):
        assert main(["index", "--rate-limit", rule]) == 0
    capsys.readouterr()
    times = [r.time for r in env.requests]
    # Any three requests in a row span more than a window: the rule holds
    # across processes of the command that run one after another.
    assert all(c - a >= 0.5 for a, c in zip(times, times[2:], strict=False))
    assert (tmp_path / "state" / "places.json").exists()


@pytest.mark.parametrize(
    ("option", "content", "message"),
    [
        ("--token-file", "", "--token-file '{path}' is empty"),
        ("--cookies-file", "", "needs session and userid"),
        ("--cookies-file", "session=abc\n", "--cookies-file '{path}' needs userid"),
    ],
)
def test_credential_files_that_say_nothing_are_errors(
    env: FakeBioTorrents,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    option: str,
    content: str,
    message: str,
) -> None:
    path = tmp_path / "credentials"
    path.write_text(content)
    code, out, err = run(capsys, "index", option, str(path))
    assert (code, out) == (1, "")
    assert message.format(path=path) in err
    assert err.count("\n") == 1
    assert env.requests == []


def test_a_missing_redis_extra_is_one_line_not_a_bug(
    env: FakeBioTorrents,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_redis(_: object) -> None:
        raise ImportError('Redis support needs the redis package: pip install "x"')

    monkeypatch.setattr("biotorrents_async._redis.connect", no_redis)
    code, _, err = run(capsys, "index", "--redis", "redis://127.0.0.1:1/0")
    assert code == 1
    assert err.startswith("error: Redis support needs the redis package")
    assert "bug" not in err


def test_fake_server_stops_cleanly_on_sigint() -> None:
    proc = _cli("fake-server", "--port", "0")
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("fake BioTorrents.de serving")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert err.strip() == "stopped"


def test_the_state_is_private_and_follows_no_planted_link(
    env: FakeBioTorrents, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    # Someone who can write the folder plants the old temporary file's name.
    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    (state / "places.tmp").symlink_to(victim)
    old = os.umask(0o022)
    try:
        assert main(["index", "--rate-limit", RULE]) == 0
    finally:
        os.umask(old)
    capsys.readouterr()
    assert victim.read_text() == "mine"
    assert stat.S_IMODE((state / "places.json").stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert not [p for p in state.iterdir() if p.name.startswith(".places.")]


def test_a_token_only_account_leaves_no_fingerprint(
    fake: FakeBioTorrents,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("BIOTORRENTS_BASE_URL", fake.url)
    monkeypatch.setenv("BIOTORRENTS_TOKEN", fake.token)
    monkeypatch.delenv("BIOTORRENTS_COOKIES", raising=False)
    plain = hashlib.sha256(fake.token.encode()).hexdigest()[:16]
    names = []
    for install in ("one", "two"):
        folder = tmp_path / install
        monkeypatch.setenv("BIOTORRENTS_STATE_DIR", str(folder))
        for _ in range(2):  # the second run finds its own places again
            assert main(["index", "--rate-limit", RULE]) == 0
        text = (folder / "places.json").read_text()
        assert plain not in text
        assert fake.token not in text
        (name,) = json.loads(text)["places"]
        names.append(name)
    capsys.readouterr()
    # Two installs name the same token differently: nothing links them.
    assert names[0] != names[1]


def test_watch_notes_say_who_holds_the_cursor_and_skip_pacing() -> None:
    import io
    import logging

    from biotorrents_async.cli import _notes

    out = io.StringIO()
    watch = logging.getLogger("biotorrents_async.watch")
    pacing = logging.getLogger("biotorrents_async.pacing")
    with _notes(out, watching=True):
        watch.info(
            "watch: the inbox cursor %r is held by %s; standing by", "inbox", "h:1"
        )
        pacing.debug("pacing: waiting %.3fs for a free slot", 6.1)
    with _notes(out):
        pacing.debug("pacing: waiting %.3fs for a free slot", 6.1)
    assert out.getvalue().splitlines() == [
        "note: watch: the inbox cursor 'inbox' is held by h:1; standing by",
        "note: waiting 6.1s for the rate limit",
    ]
