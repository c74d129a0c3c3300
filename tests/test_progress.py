"""Progress off a terminal: steady plain lines (no silence for minutes, no carriage-return flood)."""

from __future__ import annotations

import io

from shoprec import progress


def test_lines_come_at_the_interval_and_once_at_the_end(monkeypatch):
    clock = iter(float(t) for t in range(0, 1000))
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    out = io.StringIO()
    bar = progress.LineProgress("encoding", total=100, stream=out, interval=10)
    for _ in range(100):
        bar.advance()
    bar.finish()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert 8 <= len(lines) <= 12, lines  # one per 10 ticks of the fake clock, plus the last
    assert lines[0].startswith("encoding: 10/100 (10%)") and "left" in lines[0]
    assert lines[-1].startswith("encoding: 100/100 (100%)") and "done in" in lines[-1]


def test_off_a_terminal_track_writes_lines_not_frames(monkeypatch, capsys):
    monkeypatch.setenv("SHOPREC_PROGRESS_INTERVAL_S", "0")
    assert list(progress.track(range(5), "users")) == [0, 1, 2, 3, 4]
    err = capsys.readouterr().err  # pytest's stderr is not a terminal
    assert err.splitlines()[0].startswith("users: 1/5 (20%), ")
    assert err.splitlines()[-1].startswith("users: 5/5 (100%)")
    assert "\r" not in err and "\x1b[" not in err


def test_disabled_progress_prints_nothing(capsys):
    assert list(progress.track(["a", "b"], "items", enabled=False)) == ["a", "b"]
    assert capsys.readouterr().err == ""
