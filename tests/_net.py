"""Shared helpers for the tests that must not hang: a call bounded by a thread, and a server on
127.0.0.1 that accepts connections and never answers (a proxy or hub that hangs)."""
import socket
import threading


def returns_within(seconds, fn):
    "Run fn in a thread; fail (instead of hanging the test run) if it does not return in time."
    box = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed back to the test
            box["error"] = e
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"did not return within {seconds} s"
    if "error" in box:
        raise box["error"]
    return box.get("value")


class SilentServer:
    "A server on 127.0.0.1 that accepts connections and never answers; counts them. Use as a context manager."
    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.accepted = 0
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self.conns.append(conn)

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
