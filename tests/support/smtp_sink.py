"""An SMTP server for the tests (aiosmtpd): every message it accepts is written, as
received, to a file of its own in the directory given, with the envelope's recipients in a
first header line. Prints "ready" once it listens; stops on SIGTERM or, when its standard
input is a pipe, when that closes.

    python smtp_sink.py --port 2525 --dir /tmp/mail
"""

import argparse
import asyncio
import os
import signal
import sys
import uuid

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, directory):
        self.directory = directory

    async def handle_DATA(self, server, session, envelope):
        name = uuid.uuid4().hex
        partial = os.path.join(self.directory, name + ".part")
        with open(partial, "wb") as out:
            out.write(b"X-Envelope-To: " + ",".join(envelope.rcpt_tos).encode() + b"\r\n")
            out.write(envelope.original_content or envelope.content)
        # Whole files only: readers never see a message half written.
        os.rename(partial, os.path.join(self.directory, name + ".eml"))
        return "250 Message accepted for delivery"


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", required=True)
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    controller = Controller(Sink(args.dir), hostname="127.0.0.1", port=args.port)
    controller.start()
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        loop.add_reader(sys.stdin.fileno(), lambda: sys.stdin.read() or stop.set())
    except (PermissionError, OSError):
        pass  # standard input is a file (e.g. /dev/null), not a pipe: SIGTERM stops it
    await stop.wait()
    controller.stop()


if __name__ == "__main__":
    asyncio.run(main())
