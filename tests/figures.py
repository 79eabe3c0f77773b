"""Figures that tests measure, for the README: printed after the module (``pytest -s``) and saved as
JSON under ``$ROBUST_REPORT`` when that variable names a directory."""
import json
import os
import sys

import pytest


def report_fixture(filename, build):
    """A module-scoped autouse fixture that, after the module, prints the text and saves the data
    that ``build()`` returns (``(text, data)``) in ``$ROBUST_REPORT/filename``; assign it to a
    name in the module."""
    @pytest.fixture(scope="module", autouse=True)
    def report():
        yield
        text, data = build()
        sys.stdout.write("\n%s\n" % text)
        where = os.environ.get("ROBUST_REPORT")
        if where:
            os.makedirs(where, exist_ok=True)
            with open(os.path.join(where, filename), "w") as f:
                json.dump(data, f, indent=1, sort_keys=True)
    return report


def figures_fixture(label, filename, figures):
    """:func:`report_fixture` for ``figures`` (a dict the tests fill), printed as ``label: {...}``."""
    return report_fixture(filename, lambda: ("%s: %s" % (label, json.dumps(figures, sort_keys=True)),
                                             figures))


def counts_fixture(label, filename, counts, what, extra=None):
    """:func:`report_fixture` for a Counter of inputs or faults by kind, printed as ``label: N
    {what} {...}``; ``extra`` (a dict, or a function returning one) is saved beside them."""
    def build():
        data = {what.split()[0]: dict(sorted(counts.items())), "total": sum(counts.values())}
        data.update(extra() if callable(extra) else extra or {})
        return "%s: %d %s %s" % (label, data["total"], what, data[what.split()[0]]), data
    return report_fixture(filename, build)
