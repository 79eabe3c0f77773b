"""The client's TLS contexts, and a look at idle TLS connections.

The TLS itself is the core's layer (:mod:`eventloop.tls`, started with
:meth:`eventloop.Dispatcher.start_tls`), the one TLS code path of the project.  Here are the
contexts the client verifies with, :func:`make_ssl_context` and the shared
:func:`default_ssl_context`, and :func:`only_tls_records`, which tells an idle connection's
TLS housekeeping from the server's data or hang-up.
"""
import ssl
import threading

from eventloop import TLSSocket

__all__ = ["default_ssl_context", "make_ssl_context", "only_tls_records"]

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


def only_tls_records(sock):
    """For an idle connection that polled readable: True when what arrived is TLS housekeeping
    (TLS 1.3 session tickets can follow the response) rather than data, an EOF or an error."""
    if not isinstance(sock, (TLSSocket, ssl.SSLSocket)):
        return False
    try:
        sock.recv(1)
    except (BlockingIOError, ssl.SSLWantReadError):
        return True             # records, but no data: still a usable connection
    except (OSError, ValueError):
        return False
    return False
