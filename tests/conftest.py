"""Test configuration: Hypothesis profiles (``HYPOTHESIS_PROFILE=ci`` is bounded and derandomized)
and the ``env`` fixture of the contract suites (one reactor per backend, see backends.py)."""
import os

import pytest
from hypothesis import HealthCheck, settings

from backends import BACKENDS, Env
from eventloop.pollers import available_pollers

settings.register_profile(
    "ci", max_examples=60, derandomize=True, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture(params=BACKENDS)
def env(request):
    if request.param != "memory" and request.param not in available_pollers():
        pytest.skip("%s is not available here" % request.param)
    e = Env(request.param)
    yield e
    e.close()


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """A CA made at test time and a server certificate signed by it (see tests/pki.py)."""
    import shutil
    if shutil.which("openssl") is None:
        pytest.fail("the openssl command is needed to make the test CA (.ci/run installs it)")
    from pki import make_pki
    return make_pki(tmp_path_factory.mktemp("pki"))
