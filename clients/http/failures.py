"""Why a request failed, as a word: ``request.failure`` (``request.error`` says it in a sentence).

The client sets one of these names when it ends a request with an error, so that a program can
act on the class of failure (retry a timeout, map it to an exit status) without parsing the
sentence.  Consumers that end a request themselves set theirs (``WRITE``, ``DECODING``...).
"""

__all__ = ["BAD_URL", "BAD_REQUEST", "RESOLVE", "RESOLVE_PROXY", "CONNECT", "TUNNEL", "TLS",
           "CERTIFICATE", "TIMEOUT", "SEND", "RECEIVE", "EMPTY_REPLY", "PARTIAL", "BAD_RESPONSE",
           "TOO_MANY_REDIRECTS", "BAD_REDIRECT",
           "REDIRECT_SCHEME", "UPLOAD", "WRITE", "DECODING", "ABORTED",
           "INTERNAL"]

BAD_URL = "bad-url"                 # the URL cannot be parsed, or its scheme is not http(s)
BAD_REQUEST = "bad-request"         # the request cannot be written (method, header, body type)
RESOLVE = "resolve"                 # the server's name has no address
RESOLVE_PROXY = "resolve-proxy"     # the proxy's name has no address
CONNECT = "connect"                 # no TCP connection to any address (refused, unreachable)
TUNNEL = "tunnel"                   # the proxy refused the CONNECT tunnel or broke it
TLS = "tls"                         # the TLS handshake failed (not the certificate)
CERTIFICATE = "certificate"         # the server's certificate is not trusted or does not match
TIMEOUT = "timeout"                 # a connect, idle or total time limit passed
SEND = "send"                       # the connection broke while the request was being sent
RECEIVE = "receive"                 # the connection broke while waiting for the response
EMPTY_REPLY = "empty-reply"         # the server closed the connection without a byte of response
PARTIAL = "partial"                 # the body ended before its announced end
BAD_RESPONSE = "bad-response"       # the response breaks HTTP/1.1 (malformed, limits exceeded)
TOO_MANY_REDIRECTS = "too-many-redirects"   # over the hop limit, or a loop
BAD_REDIRECT = "bad-redirect"       # a Location that cannot be parsed
REDIRECT_SCHEME = "redirect-scheme" # a Location to a scheme other than http(s)
UPLOAD = "upload"                   # the request body could not be read (file changed, vanished)
WRITE = "write"                     # the consumer could not store the body
DECODING = "decoding"               # the Content-Encoding could not be (or may not be) undone
ABORTED = "aborted"                 # ended by the program with request.abort()
INTERNAL = "internal"               # a consumer callback raised, or a bug
