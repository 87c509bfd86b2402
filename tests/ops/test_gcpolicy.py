"""The worker's GC policy: survivors are frozen, and frozen cyclic garbage is still reclaimed."""

from __future__ import annotations

import gc
import weakref

import gevent

from realtime.ops import gcpolicy


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector can free it


def test_survivors_are_frozen_and_frozen_cycles_are_reclaimed_in_the_next_period() -> None:
    kept = Node()
    dropped = Node()
    gone = weakref.ref(dropped)
    runner = gcpolicy.start(freeze_every_s=0.05, reclaim_every_s=0.3)
    try:
        assert gc.get_freeze_count() > 0
        del dropped  # becomes cyclic garbage while frozen: no automatic pass can see it
        gc.collect()
        assert gone() is not None, "a frozen object was collected before the reclaim"
        with gevent.Timeout(5):
            while gone() is not None:
                gevent.sleep(0.05)
        assert kept.me is kept
        gevent.sleep(0.1)
        assert gc.get_freeze_count() > 0  # frozen again after the reclaim
    finally:
        runner.kill()
        gc.unfreeze()
