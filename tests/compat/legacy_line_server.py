"""A legacy asyncore/asynchat program, as written for Python 3.11 and earlier; tests run it
unchanged (through ``python -m eventloop.run`` or the ``eventloop.shim``).

    python legacy_line_server.py [PORT]

Listens on 127.0.0.1:PORT (0: any free port) and prints ``READY <port> <asyncore module>
<its file>``.  Each line a client sends comes back upper-cased; ``bye`` closes that
connection; ``shutdown`` closes everything, so ``asyncore.loop()`` returns and the program
exits with status 0.
"""
import asynchat
import asyncore
import socket
import sys


class LineHandler(asynchat.async_chat):
    def __init__(self, sock, server):
        asynchat.async_chat.__init__(self, sock)
        self.server = server
        self.set_terminator(b"\n")
        self.buffer = []

    def collect_incoming_data(self, data):
        self.buffer.append(data)

    def found_terminator(self):
        line = b"".join(self.buffer).strip()
        self.buffer = []
        if line == b"bye":
            self.push(b"BYE\n")
            self.close_when_done()
        elif line == b"shutdown":
            self.push(b"SHUTDOWN\n")
            self.close_when_done()
            self.server.close()
        else:
            self.push(line.upper() + b"\n")


class LineServer(asyncore.dispatcher):
    def __init__(self, port):
        asyncore.dispatcher.__init__(self)
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.set_reuse_addr()
        self.bind(("127.0.0.1", port))
        self.listen(5)

    def handle_accepted(self, sock, addr):
        LineHandler(sock, self)


def main():
    server = LineServer(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    print("READY %d %s %s" % (server.socket.getsockname()[1], asyncore.__name__,
                              asyncore.__file__), flush=True)
    asyncore.loop(timeout=1.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
