"""``recsys.io.progress``: a bar on a terminal, exactly one line per step in a log."""

from __future__ import annotations

import logging

import pytest

from recsys.io.progress import Steps, mode, track


def test_without_a_terminal_every_step_is_one_line(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("RECSYS_PROGRESS", raising=False)
    assert mode() == "lines"  # pytest's stderr is no terminal
    with caplog.at_level(logging.INFO, "recsys.progress"), Steps("train", ["a", "b"]) as steps:
        steps.step("a")
        steps.step("b")
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split(":")[0] for line in lines] == ["train [1/2] a", "train [2/2] b", "train"]
    assert lines[-1].startswith("train: done in")
    assert "\r" not in capsys.readouterr().err  # no bar redrawn into the log


def test_a_loop_logs_one_line_when_it_ends(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, "recsys.progress"):
        assert list(track(range(1500), "bulk load", total=1500, unit="customers")) == list(
            range(1500)
        )
    assert len(caplog.records) == 1
    assert caplog.records[0].getMessage().startswith("bulk load: 1,500 customers in")


def test_a_bar_when_asked(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("RECSYS_PROGRESS", "bar")
    with caplog.at_level(logging.INFO, "recsys.progress"), Steps("evaluate", ["x", "y"]) as s:
        s.step("x")
        s.step("y")
    assert sum(track([1, 2, 3], "load", total=3)) == 6
    err = capsys.readouterr().err
    assert "evaluate: 100%" in err and "2/2" in err and "load: 100%" in err
    assert not caplog.records  # the bar replaces the lines


def test_off_is_silent(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("RECSYS_PROGRESS", "off")
    with caplog.at_level(logging.INFO, "recsys.progress"), Steps("train", ["a"]) as steps:
        steps.step("a")
    assert list(track([1], "x")) == [1]
    assert not caplog.records and capsys.readouterr().err == ""
