"""Bad input: every command refuses a missing, damaged or foreign artefact in one stderr line, exit 2.

The walk discovers the subcommands the way ``egom2p.cli`` does (its argparse tree), so a new
subcommand is covered without editing this file; a new *required* argument whose kind the walk
does not know fails :func:`test_every_required_argument_has_a_role` until it is added to
:data:`ROLES`. For each input argument the command runs with good artefacts everywhere except that
argument, which is missing or damaged; it must exit 2 with one line on stderr (Prefect's own run log
aside, for the flow commands) that names the bad path, print no traceback, write no output and leave
the good artefacts byte-identical.

Foreign tokenizers (predict, eval, tokenize into an existing DB, --init/--resume) are refused naming
both sha256s; bad raw data in a curation run is quarantined with its file and reason while every
good clip is written.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

import factories
from egom2p.adapters.base import Adapter
from egom2p.annotators import get_annotator
from egom2p.cli import build_parser, main
from egom2p.clips import read_clips
from egom2p.curate import CurationRun, read_quarantine, stages
from test_curate import H, W, TreeAdapter, config, curate_chunk, ray_local, tree, write_tree  # noqa: F401 (fixtures)

from .artefacts import damage_file, damage_lance

# --- which kind of artefact each argument is ------------------------------------------------------------
# keys: (command words..., dest), then (first command word, dest), then dest. "value:X" is a fixed value.
ROLES = {
    "ckpt": "checkpoint", "tokenizers": "tokenizers", "clips": "clips", "video": "video", "raw": "raw",
    "scene": "mesh", "out": "output",
    ("clips", "path"): "clips", ("db", "path"): "db", ("db", "name"): "value:release-x",
    ("tokenizer", "info", "dir"): "tokenizers", ("tokenizer", "train", "which"): "value:cam",
    ("tokenizer", "train", "overrides"): "value:", ("curate", "dataset"): "value:egogen",
    ("curate", "out"): "clips_out", ("tokenize", "out"): "db_out", ("predict", "task"): "value:camera",
    ("eval", "task"): "value:camera", ("render", "source"): "value:egogen",
    ("db", "import-wds", "root"): "wds", ("db", "import-wds", "out"): "db_out",
    ("view", "source"): "clips", ("view", "video"): None, ("view", "clips"): None,  # (for other kinds of source)
}
# the ways each kind is broken ("missing": a path that does not exist)
VARIANTS = {
    "clips": ("missing", "damaged data", "damaged manifest"),
    "db": ("missing", "damaged data", "damaged manifest"),
    "tokenizers": ("missing", "truncated weights", "zeroed weights"),
    "checkpoint": ("missing", "truncated weights", "zeroed weights"),
    "video": ("missing", "garbage"),
    "mesh": ("missing", "garbage"),
    "raw": ("missing",),
    "wds": ("missing",),
    "db_out": ("damaged data", "damaged manifest"),  # a missing --out is a new DB
    "clips_out": ("damaged data",),  # an --out folder whose clips table is damaged
    "output": (),
}
# (command words, dest, variant): why succeeding is right
NOT_READ = {
    (("db", "tag"), "path", "damaged data"): "a tag names a version; tagging reads no rows",
}
# extra arguments that keep the refusals cheap (no Ray start where the command would start one)
EXTRA = {("tokenize",): ["--no-ray"]}
FLOW_COMMANDS = {"curate", "tokenize"}  # run a Prefect flow in-process: Prefect's run log is on stderr too
PREFECT_LOG = re.compile(r"^\d\d:\d\d:\d\d\.\d+ \| ")


def leaf_commands() -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    out = []

    def walk(p, words):
        subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            out.append((tuple(words), p))
        for a in subs:
            for name, sp in a.choices.items():
                walk(sp, [*words, name])

    walk(build_parser(), [])
    return out


def arguments(parser) -> list[argparse.Action]:
    return [a for a in parser._actions if not isinstance(a, (argparse._HelpAction, argparse._VersionAction))]


def role(words: tuple[str, ...], dest: str) -> str | None:
    for key in ((*words, dest), (words[0], dest), dest):
        if key in ROLES:
            return ROLES[key]
    return None


def cases() -> list[tuple[tuple[str, ...], str, str]]:
    out = []
    for words, parser in leaf_commands():
        for a in arguments(parser):
            for v in VARIANTS.get(role(words, a.dest) or "", ()):
                out.append((words, a.dest, v))
    return out


def test_every_required_argument_has_a_role():
    unknown = [f"egom2p {' '.join(w)}: {a.dest}" for w, p in leaf_commands() for a in arguments(p)
               if a.required and role(w, a.dest) is None]
    assert not unknown, f"add these arguments to ROLES in {__file__}: {unknown}"
    walked = {w for w, _, _ in cases()}
    # commands without any input artefact: nothing to break (demo and quality render their own data)
    assert {w for w, _ in leaf_commands()} - walked == {("demo",), ("quality",)}


# --- good and bad artefacts ------------------------------------------------------------------------------


def digest(path: Path) -> str:
    h = hashlib.sha256()
    files = sorted(p for p in Path(path).rglob("*") if p.is_file()) if Path(path).is_dir() else [Path(path)]
    for f in files:
        h.update(str(f.relative_to(path) if Path(path).is_dir() else f.name).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def raw_egogen(tmp_path_factory) -> Path:
    from egom2p.render import render_dataset

    out = tmp_path_factory.mktemp("raw") / "egogen"
    render_dataset(out, sequences=1, seconds=2.0, seed=0, size=32, progress=False)
    return out


@pytest.fixture(scope="module")
def wds_root(tmp_path_factory) -> Path:
    from test_wds import write_official_shards

    root = tmp_path_factory.mktemp("wds") / "main_model_token"
    write_official_shards(root, "egogen", ["rgb", "cam"], ["walk0_0", "walk0_1"], 2, "token")
    return root


class Inputs:
    """Good values for each role, and broken ones built on copies (cached per module)."""

    def __init__(self, artefacts, root: Path, request):
        self.a, self.root, self.request = artefacts, root, request
        self._bad: dict[tuple[str, str], Path] = {}

    def good(self, kind: str, n: int) -> str:
        a = self.a
        if kind.startswith("value:"):
            return kind[len("value:"):]
        fresh = self.root / f"out{n}"
        return str({"clips": a.clips, "db": a.db, "tokenizers": a.tokenizers, "checkpoint": a.run, "video": a.video,
                    "raw": self.request.getfixturevalue("raw_egogen") if kind == "raw" else None,
                    "output": fresh, "db_out": fresh / "new.lance", "clips_out": fresh, "mesh": None,
                    "wds": self.request.getfixturevalue("wds_root") if kind == "wds" else None}[kind])

    def bad(self, kind: str, variant: str) -> Path:
        key = (kind, variant)
        if key in self._bad:
            return self._bad[key]
        d = self.root / "bad" / f"{kind}-{variant.replace(' ', '-')}"
        d.mkdir(parents=True)
        a = self.a
        if variant == "missing":
            p = d / {"clips": "egogen.lance", "db": "tokens.lance", "tokenizers": "tokenizers", "checkpoint": "run",
                     "video": "walk.mp4", "mesh": "room.ply", "raw": "egogen", "wds": "shards"}[kind]
        elif kind in ("clips", "db", "db_out", "clips_out"):
            src = a.clips if kind in ("clips", "clips_out") else a.db
            p = a.copy("clips" if src == a.clips else "db", d)
            damage_lance(p, "data" if variant == "damaged data" else "manifest")
            if kind == "clips_out":
                p = d  # the folder holding the damaged egogen.lance
        elif kind == "tokenizers":
            p = a.copy("tokenizers", d)
            damage_file(p / "cam" / "model.safetensors", variant.split()[0])
        elif kind == "checkpoint":
            p = a.copy("run", d)
            damage_file(a.step(p, 2) / "model.safetensors", variant.split()[0])
        elif kind in ("video", "mesh"):
            p = d / ("walk.mp4" if kind == "video" else "room.ply")
            p.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x07" * 500 if kind == "video" else b"ply\nformat nonsense\n")
        else:
            raise AssertionError(f"no way to break {kind} ({variant})")
        self._bad[key] = p
        return p


@pytest.fixture(scope="module")
def inputs(artefacts, tmp_path_factory, request):
    return Inputs(artefacts, tmp_path_factory.mktemp("walk"), request)


@contextmanager
def prefect_console_to(stream):
    """Point Prefect's console log handlers (configured once per process, on another stream) at ``stream``."""
    import logging

    from prefect.logging.handlers import PrefectConsoleHandler

    loggers = [logging.getLogger(), *(v for v in logging.Logger.manager.loggerDict.values()
                                      if isinstance(v, logging.Logger))]
    handlers = {h for lg in loggers for h in lg.handlers if isinstance(h, PrefectConsoleHandler)}
    saved = [(h, h.console.file) for h in handlers]
    for h in handlers:
        h.console.file = stream
    try:
        yield
    finally:
        for h, f in saved:
            h.console.file = f


def build_argv(words, parser, inputs: Inputs, bad_dest: str, bad_value: str, n: int) -> list[str]:
    argv = list(words)
    for a in arguments(parser):
        kind = role(words, a.dest)
        if kind is None:
            continue
        value = bad_value if a.dest == bad_dest else inputs.good(kind, n)
        if kind.startswith("value:") and not value:
            continue
        argv += [*a.option_strings[:1], value]
    return argv + EXTRA.get(words, [])


@pytest.fixture
def harness_for_flows(request):
    """The Prefect harness for the flow commands, started before ``capfd`` (its console log keeps a live stream)."""
    if request.node.callspec.params["words"][0] in FLOW_COMMANDS:
        request.getfixturevalue("prefect_harness")


@pytest.mark.parametrize("words,dest,variant", cases(), ids=lambda x: " ".join(x) if isinstance(x, tuple) else x)
def test_every_command_refuses_bad_input_in_one_line(words, dest, variant, harness_for_flows, inputs, capfd):
    parser = dict(leaf_commands())[words]
    kind = role(words, dest)
    bad = inputs.bad(kind, variant)
    n = len(list(inputs.root.glob("out*")))
    argv = build_argv(words, parser, inputs, dest, str(bad), n)
    good = {p: digest(Path(p)) for p in argv if Path(p).exists() and not str(p).startswith(str(bad))}
    target = bad / "egogen.lance" if kind == "clips_out" else bad  # (a lock file in that folder is fine)
    before_bad = digest(target) if target.exists() else None
    capfd.readouterr()
    with prefect_console_to(sys.stderr):  # Prefect's run log (and any traceback in it) is captured here too
        rc = main(argv)
    out, err = capfd.readouterr()
    why = NOT_READ.get((words, dest, variant))
    if why:
        assert rc == 0, f"egom2p {' '.join(argv)} ({why}) failed:\n{err}"
        return
    assert rc == 2, f"egom2p {' '.join(argv)}: exit {rc}\nstdout:\n{out[-2000:]}\nstderr:\n{err[-3000:]}"
    assert "Traceback" not in err and "Traceback" not in out, err[-3000:]
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if words[0] in FLOW_COMMANDS:
        lines = [ln for ln in lines if not PREFECT_LOG.match(ln) and not ln.startswith("See https://www.prefect.io")]
    prog = "egom2p " + " ".join(words) + ":"
    assert len(lines) == 1 and lines[0].startswith(prog), f"want one line starting {prog!r}, got:\n{err[-3000:]}"
    assert str(bad) in lines[0], f"the message does not name {bad}: {lines[0]}"
    # nothing else affected: the good artefacts are byte-identical, no output was started, the bad one untouched
    assert {p: digest(Path(p)) for p in good} == good
    assert not (inputs.root / f"out{n}").exists() or not any((inputs.root / f"out{n}").rglob("*.lance"))
    if before_bad is not None:
        assert digest(target) == before_bad


# --- foreign tokenizers ----------------------------------------------------------------------------------


def test_predict_and_eval_refuse_foreign_tokenizers(artefacts, tmp_path, capfd):
    """Issue 18 item 2: a camera tokenizer with other weights used to give exit 0 and zero-translation poses."""
    from egom2p.tokenizers import load_tokenizers

    theirs = load_tokenizers(artefacts.foreign_tokenizers)["cam"].identity["sha256"]
    ours = load_tokenizers(artefacts.tokenizers)["cam"].identity["sha256"]
    assert theirs != ours
    runs = {
        "predict": ["predict", "camera", "--ckpt", str(artefacts.run), "--tokenizers",
                    str(artefacts.foreign_tokenizers), "--video", str(artefacts.video),
                    "--out", str(tmp_path / "pred")],
        "eval": ["eval", "camera", "--ckpt", str(artefacts.run), "--tokenizers", str(artefacts.foreign_tokenizers),
                 "--clips", str(artefacts.clips), "--out", str(tmp_path / "eval")],
    }
    for cmd, argv in runs.items():
        capfd.readouterr()
        assert main(argv) == 2
        out, err = capfd.readouterr()
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"egom2p {cmd}: foreign tokenizer"), err
        assert theirs in lines[0] and ours in lines[0] and "--allow-foreign-tokenizers" in lines[0]
        assert str(artefacts.foreign_tokenizers) in lines[0] and "step_0000002" in lines[0]
        assert not (tmp_path / cmd).exists()  # nothing written
    # deliberately: the flag runs it, with a one-line warning
    capfd.readouterr()
    assert main([*runs["predict"], "--allow-foreign-tokenizers"]) == 0
    out, err = capfd.readouterr()
    assert "used anyway (--allow-foreign-tokenizers)" in err and theirs in err
    assert (tmp_path / "pred" / "trajectory.tum.txt").is_file()


def test_training_refuses_a_db_of_other_tokenizers(artefacts, tmp_path, capsys):
    """--init (post-training) and --resume on a token DB whose tokens come from other tokenizers."""
    from egom2p.checkpoint import read_state
    from egom2p.tokendb import open_token_db, write_tokens
    from egom2p.tokenizers import load_tokenizers
    from egom2p.train import main as train_main

    db = open_token_db(artefacts.db)
    foreign = {m: t.identity for m, t in load_tokenizers(artefacts.foreign_tokenizers).items()}
    rows = db.take(range(db.num_rows)).to_pylist()
    other = tmp_path / "other.lance"
    write_tokens(other, rows, registry=db.registry, tokenizers=foreign)
    run = artefacts.copy("run", tmp_path)
    before = digest(run)
    for flag in ("--init", "--resume"):
        argv = ["--db", str(other), flag, str(run), *artefacts.train_overrides, "train.steps=3"]
        if flag == "--init":
            argv += ["--out", str(tmp_path / "post")]
        else:
            argv = [a for a in argv if "=" not in a or a.startswith("train.steps")]
        assert train_main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("egom2p-train: error: foreign tokenizer"), err
        assert foreign["cam"]["sha256"] in err[0] and str(other) in err[0] and "--allow-foreign-tokenizers" in err[0]
    assert not (tmp_path / "post").exists() and digest(run) == before  # nothing written, the run untouched
    # deliberately: post-training on the foreign DB
    assert train_main(["--db", str(other), "--init", str(run), "--out", str(tmp_path / "post"),
                       *artefacts.train_overrides, "train.steps=1", "--allow-foreign-tokenizers"]) == 0
    assert read_state(tmp_path / "post")["db"]["tokenizers"]["cam"]["sha256"] == foreign["cam"]["sha256"]


@pytest.mark.slow
def test_tokenize_refuses_foreign_tokenizers_into_an_existing_db(prefect_harness, artefacts, tmp_path, capfd):
    from egom2p.tokendb import open_token_db

    db = artefacts.copy("db", tmp_path)
    before, version = digest(db), open_token_db(db).version
    capfd.readouterr()
    with prefect_console_to(sys.stderr):
        rc = main(["tokenize", "--clips", str(artefacts.clips), "--tokenizers", str(artefacts.foreign_tokenizers),
                   "--out", str(db), "--no-ray"])
    out, err = capfd.readouterr()
    assert rc == 2 and "Traceback" not in err
    mine = [ln for ln in err.splitlines() if ln.startswith("egom2p tokenize:")]
    assert len(mine) == 1 and "foreign tokenizer" in mine[0] and "use a new token DB" in mine[0], err[-2000:]
    assert digest(db) == before and open_token_db(db).version == version  # nothing written


# --- the error mechanism ----------------------------------------------------------------------------------


def test_debug_shows_the_traceback_and_bugs_keep_theirs(tmp_path, monkeypatch, capsys):
    from egom2p.clips import ClipsTableError

    missing = str(tmp_path / "nope.lance")
    assert main(["clips", "info", missing]) == 2
    assert capsys.readouterr().err == f"egom2p clips info: {missing}: clips table not found\n"
    with pytest.raises(ClipsTableError, match="clips table not found"):
        main(["--debug", "clips", "info", missing])
    monkeypatch.setenv("EGOM2P_DEBUG", "1")
    with pytest.raises(ClipsTableError):
        main(["clips", "info", missing])
    monkeypatch.delenv("EGOM2P_DEBUG")
    # a bug (not an input error) is not hidden behind a one-liner
    def broken(path, version=None):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr("egom2p.clips.clips_index", broken)  # the command imports it at call time
    with pytest.raises(ZeroDivisionError):
        main(["clips", "info", missing])


def test_one_line_and_os_errors():
    from egom2p.errors import EgoM2PError, is_user_error, one_line

    assert one_line(EgoM2PError("a.lance: bad\n  second line")) == "a.lance: bad second line"
    e = FileNotFoundError(2, "No such file or directory", "/x/y.json")
    assert is_user_error(e) and one_line(e) == "/x/y.json: No such file or directory"
    assert not is_user_error(ZeroDivisionError()) and not is_user_error(FileNotFoundError("no filename"))


# --- bad raw data is quarantined, the rest is written (moved from tests/test_curate.py) ---------------------------

def test_curating_a_chunk_quarantines_a_bad_window_and_keeps_the_others():
    seq, truth = factories.make_raw_sequence(n=130, width=W, height=H, dataset="synthetic", sequence="holey")
    truth["depth"][60:120] = 0.0  # the second window has no valid depth at all

    class One(Adapter):
        name = "synthetic"

        def load(self, ref):
            return seq

    rows, quarantined = curate_chunk(One(), get_annotator("render"), stages.WorkChunk(seq.ref, [0, 60]))
    assert [r["clip_id"] for r in rows] == ["synthetic/holey/000000"]
    (rec,) = quarantined
    assert rec.stage == "standardize" and rec.clip_id == "synthetic/holey/000060"
    assert rec.source == "/fake/holey" and "no valid depth" in rec.reason and rec.error_type == "SourceError"


def test_ray_run_quarantines_corrupt_videos_and_writes_the_rest(tree, tmp_path, ray_local):
    raw = tmp_path / "raw"
    shutil.copytree(tree, raw)
    write_tree(raw, names=("s2",))
    shutil.copytree(raw / "s0", raw / "broken")
    shutil.copytree(raw / "s0", raw / "truncated")
    (raw / "broken" / "video.mp4").write_bytes(os.urandom(4000))
    data = (raw / "s0" / "video.mp4").read_bytes()
    (raw / "truncated" / "video.mp4").write_bytes(data[: len(data) // 2])
    seen = []
    cfg = config(raw, tmp_path / "out", windows_per_task=1, write_batch=2)
    s = CurationRun(cfg, adapter=TreeAdapter(), executor="ray").run(progress=lambda d, t: seen.append((d, t)))

    ids = sorted(c.clip_id for c in read_clips(cfg.table_path, decode_rgb=False))
    assert ids == [f"synthetic/{q}/{s:06d}" for q in ("s0", "s1", "s2") for s in (0, 60)]
    assert (s.sequences_seen, s.sequences_failed, s.clips_written, s.quarantined) == (5, 2, 6, 2)
    recs = read_quarantine(cfg.quarantine_path)
    assert sorted(r.sequence for r in recs) == ["broken", "truncated"]
    for r in recs:
        assert r.stage == "split" and r.error_type == "VideoError" and r.run_id == s.run_id
        assert r.source.endswith(f"{r.sequence}/video.mp4") and "cannot decode video" in r.reason
    assert seen[-1] == (6, 6)
    clip = next(read_clips(cfg.table_path, ids=["synthetic/s2/000060"]))
    assert clip.rgb.shape == (60, 64, 64, 3) and clip.depth_source == "render"
    assert json.loads(Path(cfg.summary_path).read_text())["quarantined_by_stage"] == {"split": 2}
