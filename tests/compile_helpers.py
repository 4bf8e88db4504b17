"""Count the XLA compilations JAX reports, to check that refits and repeated calls reuse programs."""

from __future__ import annotations

import jax

BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"


class CompileTimes:
    """The backend compilations JAX reports while in the ``with`` block (seconds each)."""

    def __enter__(self):
        self.seconds = []
        jax.monitoring.register_event_duration_secs_listener(self._listen)
        return self

    def _listen(self, event, duration, **kwargs):
        if event == BACKEND_COMPILE:
            self.seconds.append(duration)

    def __exit__(self, *exc):
        jax.monitoring.unregister_event_duration_listener(self._listen)
