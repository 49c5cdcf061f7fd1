#!/usr/bin/python3
"""
Reference WebSocket echo server for the conformance suite: Debian's python3-websockets
(the asyncio legacy server API), echoing every text and binary message unchanged.

    /usr/bin/python3 tests/conformance/reference_echo.py --port 0 --port-file PATH

Binds 127.0.0.1 by default; with --port 0 the kernel picks a free port, which is printed
("listening on ws://HOST:PORT/") and, with --port-file, written to that file. Stops on
SIGTERM or SIGINT.
"""

import argparse
import asyncio
import os
import signal
import sys

import websockets


async def echo(ws, path=None):
    try:
        async for msg in ws:
            await ws.send(msg)
    except websockets.ConnectionClosed:
        pass


async def serve(args):
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with websockets.serve(
            echo, args.host, args.port,
            max_size=args.max_size,       # close 1009 above
            compression=None,             # as the fuzzing client offers none
            ping_interval=None,           # no unsolicited pings during a case
            close_timeout=2) as server:
        port = server.sockets[0].getsockname()[1]
        print("listening on ws://%s:%d/ (websockets %s)" % (args.host, port, websockets.__version__),
              flush=True)
        if args.port_file:
            tmp = args.port_file + ".tmp"
            with open(tmp, "w") as f:
                f.write("%d\n" % port)
            os.replace(tmp, args.port_file)
        await stop


def main():
    ap = argparse.ArgumentParser(description="websockets echo server (conformance reference)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--max-size", type=int, default=16 * 2 ** 20,
                    help="largest message accepted, bytes [16 MiB, as the gateway in run.sh]")
    args = ap.parse_args()
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
