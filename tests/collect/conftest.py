"""Every test module that marks itself ``usefixtures("connection_twin")`` runs once on each
connection class: the Python ``HttpProtocol`` and its compiled twin (``HttpConnection``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from viz._fast._select import NO_EXTENSIONS

from . import support

TWIN_NAMES = ["python"] if NO_EXTENSIONS else ["python", "compiled"]


@pytest.fixture(params=TWIN_NAMES)
def connection_twin(request: pytest.FixtureRequest) -> Iterator[str]:
    name: str = request.param
    if name not in support.TWINS:
        # Extensions are on (VIZ_NO_EXTENSIONS is not 1) but the twin is not built: a failure,
        # not a skip, so a build that lost it cannot pass unnoticed.
        raise AssertionError("viz.collect._lane_c is not built: run scripts/setup.sh")
    previous = support.CONNECTION[0]
    support.CONNECTION[0] = support.TWINS[name]
    try:
        yield name
    finally:
        support.CONNECTION[0] = previous
