"""The repository's example apps as they are deployed: a real server process (uvicorn)
on loopback, configured by the environment to use an emulator as the service."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from phoneconfirm_async.emulator import Emulator
from tests.conftest import API_KEY, DOMAIN, ENV_NAMES

PROJECT = Path(__file__).resolve().parent.parent


def example_env(emulator: Emulator, store: Path, **extra: str) -> dict[str, str]:
    """This process's environment without its credentials, plus the emulator's and a
    SQLite store for the example."""
    env = {name: value for name, value in os.environ.items() if name not in ENV_NAMES}
    env.update(
        PHONECONFIRM_API_KEY=API_KEY,
        PHONECONFIRM_DOMAIN=DOMAIN,
        PHONECONFIRM_BASE_URL=emulator.base_url,
        PHONECONFIRM_STORE=f"sqlite:///{store}",
        **extra,
    )
    return env


@dataclass
class Server:
    """A server process and what it logged; ``url`` once it listens."""

    process: subprocess.Popen[bytes]
    lines: list[str] = field(default_factory=list)
    url: str = ""

    @property
    def log(self) -> str:
        return "".join(self.lines)


@contextlib.contextmanager
def serve(
    module_args: Sequence[str],
    env: dict[str, str],
    listening: Callable[[list[str]], str | None],
) -> Iterator[Server]:
    """``python -m <module_args>`` from the repository, until the block ends (SIGTERM).

    ``listening`` reads the log lines so far and returns the base URL once the server
    serves (None before); the block starts then. stderr is drained by a thread, so a
    chatty server never blocks on a full pipe.
    """
    process = subprocess.Popen(
        [sys.executable, "-m", *module_args],
        cwd=PROJECT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    server = Server(process)
    up = threading.Event()

    def read_log() -> None:
        assert process.stderr is not None
        for raw in process.stderr:
            server.lines.append(raw.decode(errors="replace"))
            if not up.is_set():
                url = listening(server.lines)
                if url is not None:
                    server.url = url
                    up.set()

    reader = threading.Thread(target=read_log, daemon=True)
    reader.start()
    try:
        assert up.wait(60), server.log
        yield server
    finally:
        process.terminate()
        process.wait(timeout=30)
        reader.join(timeout=30)
        assert process.stderr is not None
        process.stderr.close()
