"""``python -m clients.http URL [URL ...]``: a curl subset on the reactor (see :mod:`.cli`)."""
import sys

from .cli import main
from .output import remote_name

__all__ = ["main", "remote_name"]

if __name__ == "__main__":
    sys.exit(main())
