#!/usr/bin/env python3
"""A loopback TCP relay that counts TLS handshakes by kind, for the load bench's `https` phase.

It reads the server's first record, the ServerHello, which is sent in the clear: a TLS 1.3 server
includes the pre_shared_key extension (41) only when it accepts a resumption, and a TLS 1.2 server
that resumes echoes the client's session ID. The relay costs time, so the bench runs it only in a
short probe beside the measured rounds, never in them.

Usage: tlspeek.py LISTEN_PORT TARGET_PORT. On SIGTERM it prints the counts as one JSON object:
{"tls13-full": n, "tls13-resumed": n, "tls13-hello-retry": n, "tls12-full": n,
"tls12-resumed": n, "other": n}. A HelloRetryRequest is counted as such and nothing else.
"""

import asyncio
import collections
import json
import signal
import sys

PRE_SHARED_KEY = 41
SUPPORTED_VERSIONS = 43
# A HelloRetryRequest is a ServerHello with this random (RFC 8446, 4.1.3).
HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")


def client_session_id(buf):
    """The session ID a ClientHello offers (TLS 1.2 resumption by ID), or None."""
    if len(buf) < 5 + 4 + 2 + 32 + 1 or buf[0] != 22 or buf[5] != 1:
        return None
    p = 5 + 4 + 2 + 32
    return bytes(buf[p + 1:p + 1 + buf[p]])


def server_hello_kind(buf, offered_id):
    """The handshake's kind once `buf` holds the whole first record, else None."""
    if len(buf) < 5:
        return None
    if buf[0] != 22:
        return "other"
    end = 5 + int.from_bytes(buf[3:5], "big")
    if len(buf) < end:
        return None
    hs = buf[5:end]
    if not hs or hs[0] != 2:
        return "other"
    if hs[6:38] == HRR_RANDOM:
        return "tls13-hello-retry"
    p = 4 + 2 + 32
    sid = bytes(hs[p + 1:p + 1 + hs[p]])
    p += 1 + hs[p] + 2 + 1  # session ID, cipher suite, compression
    ext_end = p + 2 + int.from_bytes(hs[p:p + 2], "big")
    p += 2
    exts = set()
    while p + 4 <= ext_end:
        exts.add(int.from_bytes(hs[p:p + 2], "big"))
        p += 4 + int.from_bytes(hs[p + 2:p + 4], "big")
    if SUPPORTED_VERSIONS in exts:
        return "tls13-resumed" if PRE_SHARED_KEY in exts else "tls13-full"
    # TLS 1.2: an echoed, non-empty session ID (offered by ID or alongside a ticket) resumes.
    return "tls12-resumed" if sid and sid == offered_id else "tls12-full"


class Relay:
    def __init__(self, target):
        self.target = target
        self.counts = collections.Counter()

    async def handle(self, c_read, c_write):
        try:
            s_read, s_write = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            c_write.close()
            return
        offered = []
        await asyncio.gather(self.copy(c_read, s_write, hello=offered),
                             self.copy(s_read, c_write, offered=offered))

    async def copy(self, src, dst, hello=None, offered=None):
        head, counted = b"", False
        try:
            while True:
                data = await src.read(65536)
                if not data:
                    break
                if not counted:
                    head += data
                    if hello is not None:
                        sid = client_session_id(head)
                        if sid is not None or len(head) > 512:
                            hello.append(sid)
                            counted = True
                    else:
                        kind = server_hello_kind(head, offered[0] if offered else None)
                        if kind:
                            self.counts[kind] += 1
                            counted = True
                dst.write(data)
                await dst.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            dst.close()


async def main(listen, target):
    relay = Relay(target)
    server = await asyncio.start_server(relay.handle, "127.0.0.1", listen, backlog=4096)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    print("ready", file=sys.stderr, flush=True)
    await stop.wait()
    server.close()
    kinds = ["tls13-full", "tls13-resumed", "tls13-hello-retry", "tls12-full", "tls12-resumed",
             "other"]
    print(json.dumps({k: relay.counts[k] for k in kinds}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
