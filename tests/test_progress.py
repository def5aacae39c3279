"""The CLI's progress bar: tqdm on a terminal, nothing off one or with --quiet."""

import io

from client.detect_run import progress_bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def finish(total: int, quiet: bool, stream: io.StringIO) -> str:
    bar = progress_bar(total, quiet, stream)
    for _ in range(total):
        bar.update()
    bar.close()
    return stream.getvalue()


def test_silent_when_not_a_terminal():
    assert finish(5, quiet=False, stream=io.StringIO()) == ""


def test_count_and_rate_on_a_terminal():
    text = finish(5, quiet=False, stream=Terminal())
    assert "5/5" in text and "img/s" in text


def test_quiet_is_silent_on_a_terminal():
    assert finish(5, quiet=True, stream=Terminal()) == ""
