"""Append events forever, printing ``seq index`` after each append returns.

Used by tests/client/test_store.py to check durability under SIGKILL:
``python store_writer.py DB KEY_FILE FIRST_INDEX``.
"""

import sys
from datetime import UTC, datetime

from vane.client.store import EventStore
from vane.shared.events import Event


def main() -> None:
    db, key_file, first = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with EventStore.open(db, key_file=key_file) as store:
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        i = first
        while True:
            event = Event.create(f"writer-item-{i}", ["durability"], datetime.fromtimestamp(1_700_000_000 + i, UTC))
            seq = store.append(event)
            sys.stdout.write(f"{seq} {i}\n")
            sys.stdout.flush()
            i += 1


if __name__ == "__main__":
    main()
