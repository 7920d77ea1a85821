"""python -m notesvc DIRECTORY [PORT]: serve DIRECTORY on 127.0.0.1 until interrupted."""

import sys

from .server import start


def main(argv):
    if not 1 <= len(argv) <= 2:
        print("usage: python -m notesvc DIRECTORY [PORT]", file=sys.stderr)
        return 2
    server = start(argv[0], port=int(argv[1]) if len(argv) > 1 else 0)
    print(f"notesvc listening on {server.url}", flush=True)
    try:
        server.thread.join()
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
