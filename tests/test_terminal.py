"""On a terminal, the progress bar and the log lines of `samedge train` do not print onto each other."""
from __future__ import annotations

import fcntl
import os
import pty
import struct
import termios
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def read_all(fd: int) -> str:
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks).decode(errors="replace")


def test_log_lines_print_above_the_bar_on_a_terminal(tmp_path):
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a 120-column terminal
    args = [sys.executable, "-m", "samedge.cli", "train", "--task", "teacher", "--lr", "2", "--rho", "0",
            "--profile", "example", "--device", "cpu", "--params", str(REPO / "params.yaml"),
            "--set", "train.max_steps=60", "--set", "train.measure_every_steps=20", "--out", str(tmp_path / "run")]
    child = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, cwd=tmp_path)
    os.close(slave)
    screen = read_all(master)
    os.close(master)
    assert child.wait(timeout=300) == 0, screen
    pieces = re.split(r"[\r\n]", screen)   # what ends up on one line of the terminal
    logs = [p for p in pieces if "samedge.train step " in p]
    assert len(logs) == 3, screen          # steps 0, 20, 40
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ samedge\.train step ", p) for p in logs), logs
    assert any("step/s" in p or "60/60" in p for p in pieces), screen   # the bar was drawn
