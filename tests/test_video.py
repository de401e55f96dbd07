import numpy as np
import pytest

from egom2p import video
from factories import moving_pattern, psnr


def test_encode_decode_round_trip(tmp_path):
    frames = moving_pattern(30, 64, 96)
    data = video.encode_h264(frames, fps=30, path=tmp_path / "a.mp4")
    assert (tmp_path / "a.mp4").read_bytes() == data
    info = video.probe(tmp_path / "a.mp4")
    assert (info.num_frames, info.width, info.height) == (30, 96, 64)
    assert abs(info.fps - 30) < 1e-3
    dec = video.decode(data)
    assert dec.shape == frames.shape and dec.dtype == np.uint8
    assert psnr(dec, frames) > 32  # H.264 at CRF 18, 4:2:0
    part = video.decode(tmp_path / "a.mp4", [0, 7, 29])
    assert np.array_equal(part, dec[[0, 7, 29]])
    ts = video.frame_timestamps(tmp_path / "a.mp4")
    assert np.allclose(np.diff(ts), 1 / 30, atol=1e-3)


def test_corrupt_and_missing_video_give_clear_errors(tmp_path):
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 20)
    with pytest.raises(video.VideoError, match="corrupt.mp4: cannot decode"):
        video.decode(bad)
    with pytest.raises(video.VideoError, match="not found"):
        video.probe(tmp_path / "missing.mp4")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(video.VideoError, match="empty"):
        video.probe(empty)
    good = video.encode_h264(moving_pattern(10, 32, 32))
    trunc = tmp_path / "truncated.mp4"
    trunc.write_bytes(good[: len(good) // 3])
    with pytest.raises(video.VideoError, match="truncated.mp4"):
        video.decode(trunc)


def test_resample_to_30fps_by_nearest_timestamp():
    src = np.arange(0, 2.0, 1 / 24)  # a 24 FPS stream with one dropped frame
    src = np.delete(src, 10)
    times, idx = video.resample_indices(src, fps=30)
    assert len(times) == int(np.floor(src[-1] * 30 + 1e-6)) + 1
    assert np.all(np.abs(src[idx] - times) <= 1 / 24)
    # a gap longer than 1.5 target periods is reported as missing
    gappy = np.concatenate([np.arange(0, 1, 1 / 30), np.arange(1.5, 2, 1 / 30)])
    _, idx = video.resample_indices(gappy, fps=30)
    assert (idx == -1).sum() > 0


def test_token_frames_and_causal_padding():
    idx = video.token_frame_indices()
    assert len(idx) == 16 and idx[0] == 0 and idx[-1] == 56
    assert np.allclose(idx / 30, np.arange(16) / 8, atol=1 / 60)
    x = np.arange(16)
    padded = video.pad_causal(x)
    assert len(padded) == 17 and padded[-1] == 15  # 1 + 4*4 frames -> 5 latent frames


def test_gray_and_crop_resize():
    g = np.random.default_rng(0).integers(0, 255, (3, 40, 60), dtype=np.uint8)
    rgb = video.gray_to_rgb(g)
    assert rgb.shape == (3, 40, 60, 3) and np.array_equal(rgb[..., 1], g)
    out = video.center_crop_resize(rgb, 20)
    assert out.shape == (3, 20, 20, 3)


@pytest.mark.parametrize("width", [16, 24, 48])
def test_widths_decord_cannot_read_decode_through_pyav(tmp_path, width):
    """decord fails on H.264 16, 24 or 48 px wide; the same calls fall back to PyAV for files and bytes."""
    frames = moving_pattern(12, 32, width)
    data = video.encode_h264(frames, path=tmp_path / "narrow.mp4")
    for src in (data, tmp_path / "narrow.mp4"):
        info = video.probe(src)
        assert (info.num_frames, info.width, info.height) == (12, width, 32)
        dec = video.decode(src, [0, 5, 11])
        assert dec.shape == (3, 32, width, 3)
        assert psnr(dec, frames[[0, 5, 11]]) > 28
        assert len(video.frame_timestamps(src)) == 12


def test_encoding_and_decoding_run_in_process(tmp_path, monkeypatch):
    """No ffmpeg command line: encoding, decoding and the 16-bit depth helpers work with subprocesses refused."""
    import subprocess

    from egom2p.adapters import _sources

    def refuse(*a, **k):
        raise AssertionError(f"a subprocess was started: {a[:1]}")

    monkeypatch.setattr(subprocess, "run", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)
    frames = moving_pattern(20, 48, 64)
    writer = video.H264Writer(tmp_path / "stream.mp4", 64, 48, fps=30)
    for f in frames:
        writer.write(f)
    assert writer.close() is None
    on_disk = (tmp_path / "stream.mp4").read_bytes()
    assert on_disk.find(b"moov") < on_disk.find(b"mdat")  # +faststart: the index comes first
    assert psnr(video.decode(tmp_path / "stream.mp4"), frames) > 32
    mm = (np.random.default_rng(0).random((7, 24, 40)) * 60000).astype(np.uint16)
    _sources.write_gray16_video(tmp_path / "depth.avi", mm, fps=15)
    info = _sources.stream_info(tmp_path / "depth.avi")
    assert (info["num_frames"], info["width"], info["height"], info["fps"]) == (7, 40, 24, 15)
    assert "16" in info["pix_fmt"]
    assert np.array_equal(_sources.decode_gray16(tmp_path / "depth.avi", [2, 3, 6], 40, 24), mm[[2, 3, 6]])
    with pytest.raises(video.VideoError, match="even width and height"):
        video.H264Writer(None, 63, 48)
    with pytest.raises(video.VideoError, match=r"frames must be uint8 \[48,64,3\]"):
        video.H264Writer(None, 64, 48).write(np.zeros((48, 64), np.uint8))


def test_reading_windows_decodes_the_same_frames_as_plain_decode(tmp_path):
    path = tmp_path / "seq.mp4"
    video.encode_h264(moving_pattern(90, 48, 64), fps=30, path=path)
    asks = [np.arange(s, s + 30) for s in (0, 10, 20, 50, 60)]  # overlapping windows in order
    asks += [np.arange(5, 35), np.array([40, 3, 3, 89, 40]), np.arange(60, 90)]  # behind, unsorted + repeats
    plain = [video.decode(path, a) for a in asks]
    with video.reading_windows():
        got = [video.decode(path, a) for a in asks]
        with pytest.raises(video.VideoError, match=r"seq.mp4: frame index out of range \[0, 90\)"):
            video.decode(path, [88, 90])
        assert np.array_equal(video.decode(path, [7]), plain[0][[7]])  # the reader survives a refused ask
        with pytest.raises(ValueError, match="read-only"):
            got[-1][0, 0, 0, 0] = 1  # the next ask copies from these frames: they cannot be changed
        # a file rewritten within the block is a new video, not the frames kept from the old one
        video.encode_h264(moving_pattern(90, 48, 64, seed=1), fps=30, path=path)
        rewritten = video.decode(path, np.arange(60, 90))
    for a, p, g in zip(asks, plain, got):
        assert g.shape == (len(a), 48, 64, 3) and np.array_equal(g, p), a
    assert np.array_equal(rewritten, video.decode(path, np.arange(60, 90)))
    assert not np.array_equal(rewritten, plain[-1])
    assert video._WINDOWS.cursors is None  # the block released its readers and frames


def test_reading_windows_can_keep_a_reader_for_the_next_block(tmp_path):
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    video.encode_h264(moving_pattern(60, 32, 64), fps=30, path=a)
    video.encode_h264(moving_pattern(60, 32, 64, seed=2), fps=30, path=b)
    with video.reading_windows(keep=True):
        first = video.decode(a, np.arange(0, 30))
    assert list(video._WINDOWS.kept) == [str(a)]  # the reader and frames of a stay for the next block
    with video.reading_windows(keep=True):
        second = video.decode(a, np.arange(20, 50))  # frames 20..29 come from the kept ones
        other = video.decode(b, np.arange(0, 10))
    assert np.array_equal(first, video.decode(a, np.arange(0, 30)))
    assert np.array_equal(second, video.decode(a, np.arange(20, 50)))
    assert np.array_equal(other, video.decode(b, np.arange(0, 10)))
    with video.reading_windows(keep=True):
        video.decode(b, np.arange(10, 20))
    assert list(video._WINDOWS.kept) == [str(b)]  # a file the last block did not read is let go
    with video.reading_windows(keep=True):
        pass
    assert video._WINDOWS.kept == {}
