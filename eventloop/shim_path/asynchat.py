"""``import asynchat`` where the stdlib has none: this module hands the import over to
:mod:`eventloop.asynchat` (see the ``asyncore`` module next to it)."""
import sys

from eventloop import asynchat as _facade

sys.modules[__name__] = _facade
