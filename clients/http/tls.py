"""The client's TLS: the contexts it verifies with, and the writer its output queue uses on a
TLS socket.

Everything the client knows about TLS beyond the ``ssl`` module's exceptions is here:
:func:`make_ssl_context` and the shared :func:`default_ssl_context`; :class:`TLSWriter`, which
sends through a non-blocking ``ssl.SSLSocket`` for the channel's
:class:`eventloop.OutputQueue`, takes the handshake a step at a time and says which readiness
the TLS layer waits for; and :func:`only_tls_records`, which tells an idle connection's TLS
housekeeping from the server's data or hang-up.
"""
import ssl
import threading

__all__ = ["default_ssl_context", "make_ssl_context", "TLSWriter", "only_tls_records"]

_default_context = None
_context_lock = threading.Lock()


def default_ssl_context():
    """The shared verifying context (system CA store, hostname checks), made on first use."""
    global _default_context
    if _default_context is None:
        with _context_lock:
            if _default_context is None:
                _default_context = make_ssl_context()
    return _default_context


def make_ssl_context(cafile=None, insecure=False, capath=None):
    """A client TLS context: verifies against the system store, or ``cafile`` / ``capath`` (a
    directory of hashed certificates) when given; ``insecure`` turns off certificate and
    hostname verification."""
    context = ssl.create_default_context(cafile=cafile, capath=capath)
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class TLSWriter:
    """The output queue's writer on a non-blocking ``ssl.SSLSocket`` (see
    :mod:`eventloop.transport`): a send the TLS layer cannot make now sends 0, and the queue,
    still holding the bytes, keeps asking for write readiness and tries again.

    ``wants_write`` is what the TLS layer waits for outside a send: True while it must write
    before it can go on (a handshake step, or a read that has to write first), so the channel
    asks for write readiness; False while it waits for input.
    """

    __slots__ = ("sock", "wants_write")

    def __init__(self, sock):
        self.sock = sock
        self.wants_write = False

    def send(self, data):
        try:
            return self.sock.send(data)
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
            return 0

    def handshake(self):
        """Take the handshake as far as the socket allows: True once it is complete, False
        while it waits (``wants_write`` says for what).  TLS and socket errors propagate."""
        try:
            self.sock.do_handshake()
        except ssl.SSLWantReadError:
            self.wants_write = False
            return False
        except ssl.SSLWantWriteError:
            self.wants_write = True
            return False
        self.wants_write = False
        return True


def only_tls_records(sock):
    """For an idle connection that polled readable: True when what arrived is TLS housekeeping
    (TLS 1.3 session tickets can follow the response) rather than data, an EOF or an error."""
    if not isinstance(sock, ssl.SSLSocket):
        return False
    try:
        sock.recv(1)
    except ssl.SSLWantReadError:
        return True
    except (OSError, ValueError):
        return False
    return False
