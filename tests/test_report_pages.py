"""Report building without a browser: atomic output, self-contained pages, codec-space edits, CLI."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from calyx.cli.main import build_parser, main
from calyx.core.audio import write_audio
from calyx.errors import ParameterError
from calyx.events import EVENT_PARAMS, EventList, decode, save
from calyx.events.params import default_params, default_room, param_index
from calyx.report import events_report
from calyx.report._events import embed_1d, event_colours, manipulations, pursuit_residuals
from calyx.report._instrument import FactorView, NoteEntry, build_instrument_report
from calyx.report._page import markdown_tables_html, staged_dir

SR = 16000


def _events(n_samples: int = int(1.2 * SR)) -> EventList:
    rows = default_params(3)
    rows[:, param_index("pitch_midi")] = [55.0, 62.0, 67.0]
    rows[:, param_index("level_db")] = [-22.0, -25.0, -28.0]
    rows[:, param_index("inharmonicity_log10")] = -3.7
    rows[:, param_index("duration_s")] = 0.4
    return EventList(np.array([0.1, 0.45, 0.8]), rows, default_room(), SR, n_samples)


@pytest.fixture
def recording(tmp_path: Path) -> tuple[Path, Path]:
    events = _events()
    wav, cxe = tmp_path / "in.wav", tmp_path / "in.cxe"
    write_audio(wav, decode(events), sample_rate=SR)
    save(events, cxe)
    return wav, cxe


def test_staged_dir_refuses_then_replaces_atomically(tmp_path: Path) -> None:
    out = tmp_path / "report"
    out.mkdir()
    (out / "old.txt").write_text("old", encoding="utf-8")
    with pytest.raises(FileExistsError, match="force"), staged_dir(out):
        pass
    with pytest.raises(RuntimeError), staged_dir(out, force=True) as tmp:
        (tmp / "new.txt").write_text("half", encoding="utf-8")
        raise RuntimeError("interrupted")
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"]
    with staged_dir(out, force=True) as tmp:
        (tmp / "new.txt").write_text("new", encoding="utf-8")
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["report"]  # no temporary folders left behind
    (tmp_path / "file").write_text("x", encoding="utf-8")
    with pytest.raises(ParameterError, match="not a report folder"), staged_dir(tmp_path / "file", force=True):
        pass


def test_events_report_is_self_contained(recording: tuple[Path, Path], tmp_path: Path) -> None:
    wav, cxe = recording
    out = events_report(wav, cxe, out_dir=tmp_path / "r", residual_steps=3)
    html = (out / "index.html").read_text(encoding="utf-8")
    refs = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert refs
    for ref in refs:
        if ref.startswith(("#", "data:")):
            continue
        assert "://" not in ref and not ref.startswith("/"), ref
        assert (out / ref).is_file(), ref
    assert re.findall(r"https?://[^\s\"'<>]*", html) == ["http://www.w3.org/2000/svg"]  # the SVG namespace only
    audio = [r for r in refs if r.endswith(".wav")]
    assert {"audio/original.wav", "audio/reconstruction.wav", "audio/random-vectors.wav", "audio/random-times.wav",
            "audio/perturbed.wav"} <= set(audio)
    for name in audio + [f"events/e{i:04d}.wav" for i in range(3)]:
        info = sf.info(str(out / name))
        assert info.samplerate == SR and info.subtype == "PCM_16" and info.frames > 0
    assert html.count('class="ev"') == 3
    assert len(list((out / "img").glob("residual-*.png"))) >= 3
    with pytest.raises(FileExistsError, match="exists"):
        events_report(wav, cxe, out_dir=out)


def test_events_report_refuses_another_sample_rate(recording: tuple[Path, Path], tmp_path: Path) -> None:
    _wav, cxe = recording
    other = tmp_path / "other.wav"
    write_audio(other, np.zeros(SR), sample_rate=2 * SR)
    with pytest.raises(ParameterError, match="Hz"):
        events_report(other, cxe, out_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_manipulations_edit_what_they_say() -> None:
    events = _events()
    a = manipulations(events, seed=3)
    b = manipulations(events, seed=3)
    by = {m.key: m.events for m in a}
    assert set(by) == {"random-vectors", "random-times", "perturbed"}
    np.testing.assert_array_equal(by["random-vectors"].times_s, events.times_s)
    assert not np.allclose(by["random-vectors"].params, events.params)
    np.testing.assert_array_equal(by["random-times"].params, events.params)
    assert not np.allclose(by["random-times"].times_s, events.times_s)
    assert np.all((by["random-times"].times_s >= 0) & (by["random-times"].times_s <= events.duration_s))
    # one common offset: where nothing was clipped, every event moved by the same amount
    delta = by["perturbed"].params - events.params
    lo = np.array([p.low for p in EVENT_PARAMS])
    hi = np.array([p.high for p in EVENT_PARAMS])
    inside = np.all((by["perturbed"].params > lo) & (by["perturbed"].params < hi), axis=0)
    assert inside.sum() > 10
    np.testing.assert_allclose(delta[:, inside], np.broadcast_to(delta[0, inside], delta[:, inside].shape))
    for m, n in zip(a, b, strict=True):
        np.testing.assert_array_equal(m.events.params, n.events.params)


def test_embedding_and_colours_separate_different_events() -> None:
    rng = np.random.default_rng(0)
    base = default_params(1)[0]
    other = base.copy()
    other[param_index("pitch_midi")] += 24.0
    other[param_index("tilt_db_per_octave")] -= 12.0

    span = np.array([p.high - p.low for p in EVENT_PARAMS])

    def two_kinds(n: int) -> tuple[np.ndarray, np.ndarray]:
        """Two kinds of events, 24 semitones and 12 dB/octave apart, each spread by 1 % of every range."""
        noise = rng.normal(0.0, 0.01, (2 * n, base.size)) * span
        rows = np.vstack([np.tile(base, (n, 1)), np.tile(other, (n, 1))]) + noise
        return rows, np.repeat([0, 1], n)

    rows, kind = two_kinds(10)
    coord, method = embed_1d(rows, tsne_min_events=30)
    assert method.startswith("PCA")
    a, b = coord[kind == 0], coord[kind == 1]
    assert a.max() < b.min() or b.max() < a.min()
    rows40, kind40 = two_kinds(30)
    coord, method = embed_1d(rows40, tsne_min_events=30)
    assert method.startswith("t-SNE")
    # t-SNE keeps neighbourhoods: each event's nearest neighbour on the axis is of its own kind
    d = np.abs(coord[:, None] - coord[None, :]) + np.diag(np.full(coord.size, np.inf))
    assert np.mean(kind40[np.argmin(d, axis=1)] == kind40) >= 0.9

    rgb = event_colours(rows)
    assert rgb.shape == (20, 3) and np.all((rgb > 0) & (rgb < 1))
    assert np.linalg.norm(rgb[:10].mean(0) - rgb[10:].mean(0)) > 0.2
    np.testing.assert_array_equal(rgb, event_colours(rows))


def test_pursuit_residuals_shrink_step_by_step() -> None:
    events = _events()
    frames, n_found = pursuit_residuals(decode(events), sample_rate=SR, max_frames=8)
    assert n_found >= 3 and frames[0].energy_ratio == 1.0
    ratios = [f.energy_ratio for f in frames]
    assert all(b <= a + 1e-12 for a, b in itertools.pairwise(ratios))
    assert ratios[-1] < 0.3


def test_markdown_tables_are_escaped() -> None:
    html = markdown_tables_html("# T <b>\n\n| a | <script>x</script> |\n|---|---|\n| 1 | 2 |\n")
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<table" in html and "<td>1</td>" in html


def test_cli_report_and_events_report(recording: tuple[Path, Path], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    wav, cxe = recording
    out = tmp_path / "r"
    assert main(["events", "report", str(wav), str(cxe), "-o", str(out), "--residual-steps", "0"]) == 0
    assert (out / "index.html").is_file()
    assert main(["report", str(wav), str(cxe), "-o", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["report", str(wav), str(cxe), "-o", str(out), "--force"]) == 0
    assert main(["report", str(wav), "-o", str(tmp_path / "x")]) == 2
    assert "cannot tell" in capsys.readouterr().err
    args = build_parser().parse_args(["serve", str(tmp_path)])
    assert args.host == "127.0.0.1" and args.port == 9999


class _Tones:
    """A stand-in instrument: two articulations, one dynamic, harmonic tones (the page builder's interface)."""

    name = "tones <b>"
    method = "cp"
    sample_rate = SR
    file_bytes = 2000
    pcm16_bytes = 4 * 2 * SR
    duration_s = 4.0
    articulations = ("plain", "bright")

    def __init__(self) -> None:
        self.notes = [NoteEntry(p, 0.5, a, 0, f"{a}-{p}.wav") for a in self.articulations for p in (48.0, 60.0)]
        self.rendered: list[tuple[float, float, str]] = []

    def facts(self) -> list[tuple[str, str]]:
        return [("factor model", "cp")]

    def _tone(self, pitch_midi: float, n: int) -> np.ndarray:
        t = np.arange(n) / SR
        f0 = 440.0 * 2.0 ** ((pitch_midi - 69.0) / 12.0)
        return (0.2 * np.exp(-3 * t) * np.sin(2 * np.pi * f0 * t))[None, :]

    def decode_note(self, index: int) -> np.ndarray:
        return self._tone(self.notes[index].pitch_midi, SR)

    def render(self, pitch_midi: float, dynamic: float, articulation: str, *, duration_s: float) -> np.ndarray:
        self.rendered.append((pitch_midi, dynamic, articulation))
        return self._tone(pitch_midi, int(duration_s * SR))

    def factors(self, articulation: str) -> FactorView:
        rng = np.random.default_rng(0)
        arrays = {"pitch": rng.normal(size=(2, 3)), "layer": rng.normal(size=(1, 3)),
                  "time": rng.normal(size=(10, 3)), "feature": rng.normal(size=(12, 3))}
        return FactorView("cp", arrays, (10, 1, 12), 8, np.linspace(0, 1, 10), np.array([48.0, 60.0]),
                          ["vel 0-127"], [0, 1] if articulation == "plain" else [2, 3], rng.normal(size=(2, 3)))


def test_instrument_page_without_source(tmp_path: Path) -> None:
    tones = _Tones()
    out = build_instrument_report(tones, out_dir=tmp_path / "r", slider_note_s=0.2, pitch_step=1.0)
    html = (out / "index.html").read_text(encoding="utf-8")
    assert "tones &lt;b&gt;" in html and "tones <b>" not in html
    assert html.count('class="decoded"') == 4 and 'class="original"' not in html
    assert "One dynamic layer only" in html and 'id="dynamic-slider"' not in html
    for ref in re.findall(r'(?:src|href)="([^"]+)"', html):
        if not ref.startswith(("#", "data:")):
            assert (out / ref).is_file(), ref
    # the pitch slider covers an octave from the middle grid pitch, at 1-semitone steps here
    pitches = [p for p, _, _ in tones.rendered]
    assert pitches == [48.0 + k for k in range(13)]
    assert len(list((out / "img").glob("factors-*-factors.png"))) == 2
