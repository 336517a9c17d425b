"""A process for test_chain_durability to kill -9: it serves requests until killed.

Run as ``python -m tests.chain_victim HOME MANIFEST``: it starts the manifest's actor
with a saved chain under HOME, then sends it request after request, printing each
number once its reply came back (so its request and response events are recorded).
"""

from __future__ import annotations

import sys

from theater_py import Runtime


def main(home: str, manifest: str) -> None:
    runtime = Runtime(home=home)
    actor = runtime.start_actor(manifest)
    print("started", flush=True)
    number = 0
    while True:
        actor.request(number)
        print(number, flush=True)
        number += 1


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
