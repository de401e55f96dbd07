"""Token DB: schema from the registry, appends as Lance versions with lineage, time travel, tags, refusals."""

from __future__ import annotations

import json

import lance
import numpy as np
import pyarrow as pa
import pytest

from egom2p.modalities import get_registry
from egom2p.tokendb import (
    TOKENS_FORMAT, TokenDBError, existing_ids, open_token_db, rows_to_table, tag, token_schema, write_tokens,
)

REG = get_registry("tiny")
IDENT = {m: {"kind": "test", "sha256": f"{i:064x}"} for i, m in enumerate(("rgb", "depth", "gaze", "cam"))}


def _rows(dataset: str, n: int, seed: int, missing: dict | None = None) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        r = {"clip_id": f"{dataset}/s{i // 3}/{i:06d}", "dataset": dataset, "sequence": f"s{i // 3}", "split": "train"}
        for m in ("rgb", "depth", "gaze", "cam"):
            if missing and i in missing.get(m, ()):
                continue
            spec = REG[m]
            r[f"tok_{m}"] = rng.integers(0, spec.vocab_size, spec.num_tokens)
        rows.append(r)
    return rows


def test_schema_from_registry():
    s = token_schema(get_registry("base"))
    assert s.field("tok_rgb").type == pa.list_(pa.uint16(), 5 * 32 * 32)
    assert s.field("tok_gaze").type == pa.list_(pa.uint16(), 30)
    assert s.field("tok_cam").nullable
    s = token_schema(REG)
    assert s.field("tok_depth").type == pa.list_(pa.uint16(), 5 * 8 * 8)


def test_out_of_range_tokens_refused():
    rows = _rows("a", 1, 0)
    rows[0]["tok_gaze"] = np.full(30, REG["gaze"].vocab_size)
    with pytest.raises(TokenDBError, match="outside"):
        rows_to_table(rows, REG)


def test_versions_lineage_time_travel_and_tags(tmp_path):
    path = tmp_path / "tokens" / "v.lance"
    rows_a = _rows("egogen", 5, 0, missing={"gaze": [1], "depth": [2, 3]})
    v1 = write_tokens(path, rows_a, registry=REG, tokenizers=IDENT,
                      lineage=[{"clips": "/data/clips/egogen.lance", "clips_version": 3}])
    assert v1 == 1
    # re-writing the same clips adds nothing (no new version)
    assert write_tokens(path, rows_a, registry=REG, tokenizers=IDENT, lineage=[{"clips": "x", "clips_version": 1}]) is None
    rows_b = _rows("adt", 4, 1)
    v2 = write_tokens(path, rows_a[:2] + rows_b, registry=REG, tokenizers=IDENT,
                      lineage=[{"clips": "/data/clips/adt.lance", "clips_version": 7}])
    assert v2 == 2

    db = open_token_db(path)
    assert db.version == 2 and db.num_rows == 9
    assert db.meta["format"] == TOKENS_FORMAT
    assert [e["clips"] for e in db.lineage] == ["/data/clips/egogen.lance", "/data/clips/adt.lance"]
    assert [e["clips_version"] for e in db.lineage] == [3, 7]
    assert [e["db_version"] for e in db.lineage] == [1, 2]
    assert db.lineage[1]["rows"] == 4
    assert db.tokenizers["rgb"]["sha256"] == IDENT["rgb"]["sha256"]
    assert db.counts() == {"adt": {"rgb": 4, "depth": 4, "gaze": 4, "cam": 4},
                           "egogen": {"rgb": 5, "depth": 3, "gaze": 4, "cam": 5}}

    # time travel: version 1 has its own rows and its own lineage
    old = open_token_db(path, version=1)
    assert old.num_rows == 5 and set(old.counts()) == {"egogen"}
    assert [e["clips"] for e in old.lineage] == ["/data/clips/egogen.lance"]

    # missing modality is null, never zeros; tokens round-trip
    ids = db.clip_ids()
    i1 = ids.index("egogen/s0/000001")
    t = db.take([i1], ["clip_id", "tok_gaze", "tok_rgb"])
    assert t.column("tok_gaze")[0].as_py() is None
    assert t.column("tok_rgb")[0].as_py() == rows_a[1]["tok_rgb"].tolist()
    toks, present = db.tokens(list(range(db.num_rows)), "depth")
    assert toks.shape == (9, REG["depth"].num_tokens) and present.sum() == 7
    i0 = ids.index("egogen/s0/000000")
    np.testing.assert_array_equal(toks[i0], rows_a[0]["tok_depth"])
    # batched take in any order
    order = np.random.default_rng(0).permutation(9)
    assert db.take(order, ["clip_id"], batch_size=2).column("clip_id").to_pylist() == [ids[i] for i in order]

    # tags name releases; opening by tag gives that version
    assert tag(path, "release-1", version=1) == 1
    assert open_token_db(path, version="release-1").num_rows == 5
    assert open_token_db(path).tags() == {"release-1": 1}
    with pytest.raises(TokenDBError, match="already"):
        tag(path, "release-1")
    with pytest.raises(TokenDBError, match="no version 99"):
        tag(path, "bad", version=99)
    assert len(existing_ids(path)) == 9


def test_refusals(tmp_path):
    path = tmp_path / "t.lance"
    write_tokens(path, _rows("a", 2, 0), registry=REG, tokenizers=IDENT, lineage=[])
    # another tokenizer checkpoint for a modality
    other = dict(IDENT, gaze={"kind": "vqvae", "sha256": "f" * 64})
    with pytest.raises(TokenDBError, match="gaze.*cannot share"):
        write_tokens(path, _rows("b", 1, 1), registry=REG, tokenizers=other)
    # another registry
    base = get_registry("base")
    with pytest.raises((TokenDBError, ValueError), match="registry"):
        write_tokens(path, [{"clip_id": "c/s/000000", "dataset": "c", "sequence": "s", "split": "train"}], registry=base)
    # another format version
    ds = lance.dataset(str(path))
    ds.update_schema_metadata({"egom2p.format": "egom2p-tokens/0"})
    with pytest.raises(TokenDBError, match="format 'egom2p-tokens/0'.*reads 'egom2p-tokens/2'"):
        open_token_db(path)
    # but the older version still opens
    assert open_token_db(path, version=1).num_rows == 2
    with pytest.raises(TokenDBError, match="not found"):
        open_token_db(tmp_path / "nope.lance")
    assert json.loads(ds.schema.metadata[b"egom2p.tokendb"])["registry"]["config"] == "tiny"
