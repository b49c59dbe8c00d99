"""The sweep's progress bar: on a terminal it shows runs done of total and the count of each
status; on anything else (a log, CI, a test) and when disabled it writes nothing."""
import io

from studies.run.progress import Progress


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def _sweep(stream, enabled=True):
    progress = Progress(5, already_done=1, enabled=enabled, stream=stream)
    for status in ("completed", "diverged", "completed"):
        progress.update(status)
    progress.close()
    return stream.getvalue()


def test_a_terminal_shows_done_of_total_and_counts_per_status():
    text = _sweep(_Terminal())
    last = text.replace("\r", "\n").strip().splitlines()[-1]
    assert "4/5" in last and "completed 2" in last and "diverged 1" in last


def test_not_a_terminal_or_disabled_writes_nothing():
    assert _sweep(io.StringIO()) == ""
    assert _sweep(_Terminal(), enabled=False) == ""
