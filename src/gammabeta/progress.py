"""What a user sees and does while ``gammabeta train`` runs: the progress bar, and Ctrl-C
(or SIGTERM) stopping after the current step with the training state saved."""

from __future__ import annotations

import sys

__all__ = ["Progress", "StopOnSignal"]


class Progress:
    """A tqdm bar over the epochs of a run, with the last epoch's loss and accuracy."""

    def __init__(self, desc: str, enabled: bool, initial: int = 0):
        self.desc, self.enabled, self.bar, self.initial = desc, enabled, None, initial

    def on_start(self, cfg, dataset):
        if dataset.note:
            print(f"note: {dataset.note}", file=sys.stderr)
        if self.enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=cfg.epochs, desc=self.desc, unit="epoch", file=sys.stderr,
                            dynamic_ncols=True, initial=self.initial)

    def on_epoch(self, rec):
        if self.bar is None:
            return
        self.bar.update(1)
        post = {"loss": f"{rec['train_loss']:.3f}"}
        if "val_accuracy" in rec:
            post["val_acc"] = f"{100 * rec['val_accuracy']:.1f}%"
        self.bar.set_postfix(post)

    def compiling(self):
        """Said once, when the first run after an install compiles the BatchNorm kernels."""
        text = ("gammabeta: compiling the BatchNorm kernels for this machine (first run after "
                "install only; 1-2 minutes on 2 cores)...")
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


class StopOnSignal:
    """First Ctrl-C (or SIGTERM) asks the loop to stop after the current step and save the
    training state; a second one interrupts at once (atomic writes keep every file whole
    either way). The command then exits 130."""

    _SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self):
        self.requested = False
        self.previous: dict = {}

    def __enter__(self):
        import signal

        def handler(signum, frame):
            if self.requested:
                raise KeyboardInterrupt
            self.requested = True
            print("\ngammabeta: stopping after this step (Ctrl-C again to abort)",
                  file=sys.stderr)

        for name in self._SIGNALS:
            try:
                sig = getattr(signal, name)
                self.previous[sig] = signal.signal(sig, handler)
            except (ValueError, AttributeError):  # not the main thread: leave it alone
                pass
        return self

    def __exit__(self, *exc):
        import signal

        for sig, previous in self.previous.items():
            signal.signal(sig, previous)
        return False
