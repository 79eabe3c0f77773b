"""Figures that tests measure, for the README: printed after the module (``pytest -s``) and saved as
JSON under ``$ROBUST_REPORT`` when that variable names a directory."""
import json
import os
import sys

import pytest


def figures_fixture(label, filename, figures):
    """A module-scoped autouse fixture that reports ``figures`` (a dict the tests fill) as
    ``label: {...}`` and in ``$ROBUST_REPORT/filename``; assign it to a name in the module."""
    @pytest.fixture(scope="module", autouse=True)
    def report():
        yield
        sys.stdout.write("\n%s: %s\n" % (label, json.dumps(figures, sort_keys=True)))
        where = os.environ.get("ROBUST_REPORT")
        if where:
            os.makedirs(where, exist_ok=True)
            with open(os.path.join(where, filename), "w") as f:
                json.dump(figures, f, indent=1, sort_keys=True)
    return report
