"""The progress bar of a sweep (tqdm): runs done of total, the count of each status so far,
elapsed time and rate. Drawn only on a terminal; silent when the stream is not a TTY (logs,
CI, tests) or when disabled."""
import sys

from tqdm import tqdm


class Progress:
    def __init__(self, total, already_done=0, enabled=True, stream=None):
        stream = stream or sys.stderr
        tty = hasattr(stream, "isatty") and stream.isatty()
        self.counts = {}
        self.bar = tqdm(total=total, initial=already_done, file=stream, unit="run",
                        desc="runs", disable=not (enabled and tty), dynamic_ncols=True,
                        leave=True)
        if already_done:
            self.bar.set_postfix_str(f"{already_done} already done", refresh=False)

    def update(self, status):
        self.counts[status] = self.counts.get(status, 0) + 1
        self.bar.set_postfix_str(", ".join(f"{k} {v}" for k, v in sorted(self.counts.items())),
                                 refresh=False)
        self.bar.update(1)

    def close(self):
        self.bar.close()
