import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def test_egom2p_help_lists_subcommands():
    out = subprocess.run([BIN / "egom2p", "--help"], capture_output=True, text=True, check=True).stdout
    assert "usage: egom2p" in out and "clips" in out


def test_egom2p_train_help():
    out = subprocess.run([BIN / "egom2p-train", "--help"], capture_output=True, text=True, check=True).stdout
    assert "egom2p-train" in out and "--db" in out


def test_clips_info(tmp_path):
    from egom2p.clips import write_clips
    from factories import make_clip

    write_clips(tmp_path / "egogen.lance", [make_clip(sequence="a"), make_clip(sequence="b", modalities=("rgb",))])
    out = subprocess.run([BIN / "egom2p", "clips", "info", str(tmp_path / "egogen.lance")], capture_output=True,
                         text=True, check=True).stdout
    assert "2 clips" in out
    line = [ln for ln in out.splitlines() if ln.startswith("egogen")][0].split()
    assert line[:7] == ["egogen", "train", "2", "2", "1", "1", "1"]
