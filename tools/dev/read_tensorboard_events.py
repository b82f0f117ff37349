#!/usr/bin/env python3
"""Developer check: reads a segengine TensorBoard log directory with TensorBoard's own reader and
prints every scalar, so you can confirm that TensorBoard accepts what train/logging.cpp writes.

    python3 -m venv /tmp/tb && /tmp/tb/bin/pip install tensorboard
    /tmp/tb/bin/python tools/dev/read_tensorboard_events.py RUN_DIR/tensorboard
"""
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    accumulator = EventAccumulator(sys.argv[1])
    accumulator.Reload()
    tags = accumulator.Tags()["scalars"]
    if not tags:
        print("no scalars found", file=sys.stderr)
        return 1
    for tag in tags:
        for event in accumulator.Scalars(tag):
            print(f"{tag}\tstep={event.step}\tvalue={event.value:.6g}\twall_time={event.wall_time:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
