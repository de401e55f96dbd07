"""Concurrent writers: two runs on the same output never both write; nothing lost, nothing duplicated.

* two ``curate`` runs of the same dataset into the same folder: the second is refused by the run lock
  (another dataset into the same folder is fine), and the lock is released when the first ends.

Concurrent token DB writers (two processes creating or appending at the same instant) are issue 18
item 1; their test joins this module with the writer that makes them safe.
"""

from __future__ import annotations

import pytest

from egom2p.curate import CurateConfig, CurateError, CurationRun
from test_curate import TreeAdapter, config, tree  # noqa: F401 (fixture)


def test_a_second_run_of_the_same_dataset_and_output_is_refused(tree, tmp_path):
    first = CurationRun(config(tree, tmp_path), adapter=TreeAdapter(), executor="local")
    first.prepare()
    try:
        with pytest.raises(CurateError, match="another curate run"):
            CurationRun(config(tree, tmp_path), adapter=TreeAdapter(), executor="local").prepare()
        other = CurationRun(CurateConfig(dataset="other", raw=str(tree), out=str(tmp_path)), adapter=TreeAdapter(),
                            executor="local")
        other.prepare()  # another dataset into the same folder is fine
        other.close()
    finally:
        first.close()
    again = CurationRun(config(tree, tmp_path), adapter=TreeAdapter(), executor="local")
    again.prepare()
    again.close()
