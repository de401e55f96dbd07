"""Fixtures of the reliability suite (tests/reliability): the shared artefacts of :mod:`.artefacts`."""

from __future__ import annotations

import pytest

from .artefacts import Artefacts, build_artefacts


@pytest.fixture(scope="session")
def artefacts(tmp_path_factory) -> Artefacts:
    return build_artefacts(tmp_path_factory.mktemp("artefacts"))
