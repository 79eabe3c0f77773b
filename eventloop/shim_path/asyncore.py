"""``import asyncore`` where the stdlib has none: this module hands the import over to
:mod:`eventloop.asyncore`, so the name refers to the facade itself (one module, one
``socket_map``).

This directory is on ``sys.path`` only where ``python -m eventloop.shim enable`` put it,
and after the standard library, so a Python that still has ``asyncore`` keeps its own.
"""
import sys

from eventloop import asyncore as _facade

sys.modules[__name__] = _facade
