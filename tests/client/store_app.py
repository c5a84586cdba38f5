"""A small app that holds a tracker open and obeys one-word commands on stdin.

Used by tests/client/test_store_owner.py to run the CLI against a store that a real, separate process owns:
``python store_app.py STORE KEY_FILE``. Into an empty store it records three events (one of them the item ``doomed``),
prints ``ready PID`` and then, per line of stdin: ``record`` (one more event, prints its seq),
``count`` (prints ``events_seen store_count``), ``close`` (saves, closes, prints ``closed``, exits).
"""

import os
import sys
from datetime import UTC, datetime, timedelta

from vane.client.tracker import InterestTracker
from vane.shared.events import Event

T0 = datetime(2024, 6, 1, 9, tzinfo=UTC)


def event(i: int, item: str | None = None) -> Event:
    return Event.create(item or f"page-{i}", ["news"], T0 + timedelta(minutes=5 * i), title=item or f"page {i}")


def main() -> None:
    db, key_file = sys.argv[1], sys.argv[2]
    tracker = InterestTracker.open(db, key_file=key_file)
    if tracker.store.count() == 0:
        tracker.record_many([event(0), event(1, "doomed"), event(2)])
    print("ready", os.getpid(), flush=True)
    i = 10
    for line in sys.stdin:
        command = line.strip()
        if command == "record":
            print(tracker.record(event(i)), flush=True)
            i += 1
        elif command == "count":
            print(tracker.interests().events_seen, tracker.store.count(), flush=True)
        elif command == "close":
            tracker.close()
            print("closed", flush=True)
            return
    tracker.close()


if __name__ == "__main__":
    main()
