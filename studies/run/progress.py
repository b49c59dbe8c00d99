"""A progress bar for sweeps: runs done/total, diverged and failed so far, elapsed and ETA.
On a terminal it redraws one line; otherwise it prints one plain line per finished run."""
import sys
import time


def _clock(seconds):
    seconds = int(max(0, seconds))
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    def __init__(self, total, already_done=0, enabled=True, stream=None):
        self.total, self.done, self.skipped = total, already_done, already_done
        self.counts = {}
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = time.perf_counter()
        if enabled and already_done:
            self._emit(f"{already_done} of {total} runs already finished: skipped")

    def _emit(self, text, redraw=False):
        if redraw and self.tty:
            self.stream.write("\r" + text.ljust(100)[:100])
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def line(self, status=None):
        elapsed = time.perf_counter() - self.start
        fresh = self.done - self.skipped
        left = self.total - self.done
        eta = elapsed / fresh * left if fresh else float("nan")
        width = 24
        filled = int(width * self.done / max(self.total, 1))
        bar = "#" * filled + "-" * (width - filled)
        extra = f" last {status}" if status and not self.tty else ""
        return (f"[{bar}] {self.done}/{self.total} runs, diverged {self.counts.get('diverged', 0)}"
                f", failed {self.counts.get('failed', 0)}, elapsed {_clock(elapsed)}, eta "
                f"{_clock(eta) if eta == eta else '?'}{extra}")

    def update(self, status):
        self.done += 1
        self.counts[status] = self.counts.get(status, 0) + 1
        if self.enabled:
            self._emit(self.line(status), redraw=True)

    def close(self):
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()
