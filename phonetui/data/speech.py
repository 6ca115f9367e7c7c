"""Demo data from synthesized speech: English sentences spoken by eSpeak NG, as course rows.

eSpeak NG (GPL-3.0) is not part of phonetui: its library and voice data come from the
`espeakng-loader` package (the `speech` extra) and are loaded at run time through ctypes.

Each utterance is one sentence spoken by one speaker: an American English voice (en-us or
en-us-nyc) with a voice variant, pitch, pitch range and speaking rate of its own. Leading and
trailing silence, a first-order microphone tilt and coloured background noise at 10-40 dB SNR are
added; then 13 MFCCs (25 ms Hamming windows every 10 ms, 26 mel bands 20-8000 Hz, lifter 22) with
deltas make the course's rows (see phonetui.data.frames). A frame's label is the eSpeak phoneme
sounding at the frame's centre, from the synthesizer's own phoneme events (sample positions),
folded into the 39 classes by PHONE_CLASS.

Test utterances use voice variants and sentences that training never sees (fixed splits by name,
the same for every seed). Sentences come from the comments and docstrings of the Python standard
library that runs phonetui (PSF licence): English that ships with the system, nothing downloaded.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import re
import sys
import sysconfig
import zlib
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from ..config import PHONES
from ..errors import PhonetuiError
from . import frames

SIL = 38
CLASSES = PHONES

# eSpeak NG English phoneme mnemonics (stress marks ' , % = stripped) -> TIMIT 39-class folding.
# TIMIT folds ao into aa, ax/ax-h into ah, ix into ih, axr into er, ux into uw, el into l, en into n,
# zh into sh, hv into hh, and pauses, closures and the glottal stop into sil; eSpeak's variants
# of a phone (the digit and '#' forms, r-coloured vowels spoken before /r/) follow their base phone.
_FOLD = {
    "iy": "i i: i@ i@3",            # happy, fleece, near (US: the r follows as its own phoneme)
    "ih": "I I# I2 IR",             # kit; I#, I2 unstressed (TIMIT ix)
    "eh": "E E2 E3 e@",             # dress, square
    "ae": "a aa",                   # trap; bath (en-us says /ae/)
    "ah": "V @ @- @2 @5 a# 3#",     # strut and every schwa (TIMIT ax)
    "uw": "u: u u@",                # goose
    "uh": "U U@",                   # foot, cure
    "aa": "A: A@ 0 0# O: O2 O@ o@ Q",  # palm, start, lot, thought, north, force (TIMIT ao -> aa)
    "ey": "eI",
    "ay": "aI aI2 aI3 aI@",         # price, and price before r
    "oy": "OI",
    "aw": "aU aU@",
    "ow": "oU o: O",                # goat
    "l": "l l/ L @L",               # @L: syllabic l (TIMIT el)
    "r": "r r- R",                  # r- : linking / r-colouring r
    "y": "j",
    "w": "w w#",
    "er": "3 3: VR",                # nurse, letter (TIMIT er, axr)
    "m": "m m-",
    "n": "n n- n#",                 # n- : syllabic n (TIMIT en)
    "ng": "N",
    "ch": "tS",
    "jh": "dZ",
    "dh": "D",
    "b": "b",
    "d": "d d[",
    "dx": "t# d#",                  # the American flap
    "g": "g",
    "p": "p",
    "t": "t t2 t[",
    "k": "k x",
    "z": "z",
    "v": "v",
    "f": "f",
    "th": "T",
    "s": "s",
    "sh": "S Z",                    # Z (measure) folds into sh like TIMIT zh
    "hh": "h",
    "sil": "_ _: _! _| _; ; ? ||",  # pauses, sentence ends, the spelled-letter pause, glottal stop
}
PHONE_CLASS = {ph: CLASSES.index(cls) for cls, phones in _FOLD.items() for ph in phones.split()}

DIALECTS = ("en-us", "en-us", "en-us", "en-us-nyc")  # 3 in 4 speakers general American
UTTERANCES = "utterances.tsv"  # one line per utterance, beside the .npy files
_SHARD = 64  # utterances spoken by one worker process
_TEST_SHARE = 5  # 1 in 5 voice variants and sentences is held out for the test set
_WIN_S, _NFFT = 0.025, 1024


def available() -> str | None:
    """None when eSpeak NG can be loaded, else why not (one line)."""
    try:
        import espeakng_loader  # noqa: F401
    except ImportError:
        return "eSpeak NG is not installed (pip install 'phonetui[speech]')"
    return None


# -- text and voices -----------------------------------------------------------------------------

_WORD = re.compile(r"^[A-Za-z][a-z]*(?:'[a-z]+)?[,;:]?$")


def _held_out(name: str) -> bool:
    return zlib.crc32(name.encode()) % _TEST_SHARE == 0


@functools.cache
def sentences() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(train, test) English sentences of 5-20 plain words from the standard library's comments and
    docstrings; a sentence belongs to one side only, the same on every machine with this Python."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    found: set[str] = set()
    for path in sorted(stdlib.glob("*.py")) + sorted(stdlib.glob("*/*.py")):
        if "test" in path.parts[-2] or "idlelib" in path.parts[-2]:
            continue
        try:
            src = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        comments = re.findall(r"(?:^[ \t]*# .*\n)+", src, re.M)
        texts = [re.sub(r"\s*#\s+", " ", c) for c in comments]
        texts += [p for doc in re.findall(r'"""(.*?)"""', src, re.S) for p in re.split(r"\n\s*\n", doc)
                  if not re.search(r"^\s*(>>>|[-*:=])", p, re.M)]
        for text in texts:
            for s in re.split(r"(?<=[.!?])\s+", " ".join(text.split())):
                words = s[:-1].split()
                if s.endswith((".", "?", "!")) and 5 <= len(words) <= 20 and all(map(_WORD.match, words)):
                    found.add(s)
    ordered = sorted(found)
    return tuple(s for s in ordered if not _held_out(s)), tuple(s for s in ordered if _held_out(s))


def _speechlike(variant: Path) -> bool:
    """False for whispers (no voicing) and novelty voices whose echo feeds back above 100 %, which
    crash eSpeak NG on some sentences (Demonic, UniRobot...)."""
    echo = re.search(r"^\s*echo\s+\d+\s+(\d+)", variant.read_text(errors="replace"), re.M)
    return "whisper" not in variant.name and not (echo and int(echo.group(1)) > 100)


def variants() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(train, test) eSpeak voice variants (voice qualities) that sound like speech."""
    import espeakng_loader

    names = sorted(p.name for p in (Path(espeakng_loader.get_data_path()) / "voices" / "!v").iterdir()
                   if _speechlike(p))
    return tuple(n for n in names if not _held_out(n)), tuple(n for n in names if _held_out(n))


@dataclass(frozen=True)
class Utterance:
    """What one utterance says and who says it (also written to utterances.tsv)."""

    split: str
    index: int
    dialect: str
    variant: str
    speaker: int
    rate: int  # words per minute
    pitch: int  # eSpeak 0..100
    pitch_range: int  # eSpeak 0..100
    tilt: float  # first-order microphone filter coefficient
    snr_db: float
    noise_colour: float  # spectral slope exponent: 0 white, 1 pink, 2 brown
    lead_s: float
    trail_s: float
    seed: int
    text: str


def plan(split: str, n: int, seed: int) -> list[Utterance]:
    """The utterances of one split: speakers (about 8 utterances each) and their sentences."""
    texts = sentences()[split == "test"]
    voices = variants()[split == "test"]
    rng = np.random.default_rng([seed, split == "test", 7])
    n_speakers = max(1, n // 8)
    speakers = [(str(rng.choice(DIALECTS)), str(voices[i % len(voices)] if i < len(voices) else rng.choice(voices)),
                 int(rng.integers(130, 231)), int(rng.integers(25, 76)), int(rng.integers(20, 91)),
                 round(float(rng.uniform(-0.3, 0.6)), 3)) for i in range(n_speakers)]
    order = rng.permutation(len(texts))
    out = []
    for i in range(n):
        k = int(rng.integers(n_speakers))
        dialect, variant, rate, pitch, prange, tilt = speakers[k]
        out.append(Utterance(split, i, dialect, variant, k, int(rate * rng.uniform(0.9, 1.1)), pitch, prange, tilt,
                             round(float(rng.uniform(10, 40)), 1), round(float(rng.uniform(0, 2)), 2),
                             round(float(rng.uniform(0.1, 0.5)), 3), round(float(rng.uniform(0.1, 0.5)), 3),
                             int(rng.integers(2**31)), texts[order[i % len(texts)]]))
    return out


# -- eSpeak NG through ctypes --------------------------------------------------------------------

class _Event(ctypes.Structure):
    """espeak_EVENT from speak_lib.h (the id union read as its 8-byte string member)."""

    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", ctypes.c_char * 8)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))
_SYNCHRONOUS, _PHONEME_EVENTS, _DONT_EXIT = 2, 0x0001, 0x8000
_EVENT_END_OF_LIST, _EVENT_PHONEME = 0, 7
_RATE, _PITCH, _RANGE = 1, 3, 4


class Espeak:
    """One process's eSpeak NG: speak a text, get 16-bit samples and (sample, phoneme) events."""

    def __init__(self) -> None:
        import espeakng_loader

        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        data_parent = str(Path(espeakng_loader.get_data_path()).parent).encode()
        self.rate = self.lib.espeak_Initialize(_SYNCHRONOUS, 0, data_parent, _PHONEME_EVENTS | _DONT_EXIT)
        if self.rate <= 0:
            raise PhonetuiError("eSpeak NG failed to initialise from the espeakng-loader package")
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, str]] = []
        self._callback = _CALLBACK(self._collect)  # kept referenced for as long as eSpeak may call it
        self.lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav, n: int, events) -> int:
        if n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, (n,)).copy())
        i = 0
        while events[i].type != _EVENT_END_OF_LIST:
            if events[i].type == _EVENT_PHONEME:
                self._events.append((events[i].sample, events[i].id.decode("ascii", "replace")))
            i += 1
        return 0

    def speak(self, text: str, voice: str, rate: int, pitch: int, pitch_range: int, seed: int = 0
              ) -> tuple[np.ndarray, list[tuple[int, str]]]:
        """Samples and phoneme events; `seed` fixes eSpeak's own randomness (breath, jitter)."""
        self.lib.espeak_ng_SetRandSeed(ctypes.c_long(seed))
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise PhonetuiError(f"eSpeak NG has no voice {voice!r}")
        for param, value in ((_RATE, rate), (_PITCH, pitch), (_RANGE, pitch_range)):
            self.lib.espeak_SetParameter(param, value, 0)
        self._chunks, self._events = [], []
        data = text.encode()
        self.lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, 0, None, None)
        wav = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        return wav, self._events


# -- audio to frames -----------------------------------------------------------------------------

@functools.cache
def _mel_dct(rate: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hamming window, mel filterbank (26, NFFT/2+1) and liftered DCT-II (13, 26) for a sample rate."""
    win = np.hamming(int(_WIN_S * rate))
    edges = frames.mel_edges()
    bins = np.fft.rfftfreq(_NFFT, 1 / rate)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    bank = np.maximum(0, np.minimum((bins - lo) / (mid - lo), (hi - bins) / (hi - mid)))
    return win, bank, frames.cepstra()


def frame_starts(n_samples: int, rate: int) -> np.ndarray:
    """First sample of each 25 ms analysis window, every 10 ms, while the window fits."""
    width = int(_WIN_S * rate)
    n = 1 + max(0, n_samples - width) * 100 // rate
    return np.arange(n, dtype=np.int64) * rate // 100


def mfcc(wav: np.ndarray, rate: int) -> np.ndarray:
    """(T, 13) MFCCs c0..c12 of a float waveform."""
    win, bank, dct = _mel_dct(rate)
    x = np.append(wav[:1], wav[1:] - 0.97 * wav[:-1])
    x = np.pad(x, (0, max(0, len(win) - len(x))))
    starts = frame_starts(len(x), rate)
    power = np.abs(np.fft.rfft(x[starts[:, None] + np.arange(len(win))] * win, _NFFT)) ** 2
    return np.log(power @ bank.T + 1e-10) @ dct.T


def _noise(n: int, colour: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-power Gaussian noise with a 1/f**colour power spectrum."""
    size = 1 << (n - 1).bit_length()  # a power of two: FFTs of odd lengths are many times slower
    spectrum = np.fft.rfft(rng.standard_normal(size))
    spectrum *= np.maximum(np.arange(len(spectrum)), 1) ** (-colour / 2)
    out = np.fft.irfft(spectrum, size)[:n]
    return out / (out.std() + 1e-12)


def labels(events: list[tuple[int, str]], centres: np.ndarray) -> tuple[np.ndarray, Counter]:
    """Class of the phoneme sounding at each centre sample (sil outside speech), and the unmapped ones."""
    names = [name.lstrip("',%=") for _, name in events]
    unmapped = Counter(n for n in names if n not in PHONE_CLASS)
    starts = np.array([s for s, _ in events], np.int64)
    classes = np.array([PHONE_CLASS.get(n, -1) for n in names] + [SIL], np.int64)
    return classes[np.searchsorted(starts, centres, side="right") - 1], unmapped


def render(u: Utterance, engine: Espeak) -> tuple[np.ndarray, np.ndarray, Counter]:
    """Speak one utterance: (features (T, 39) float32, labels (T,), unmapped phonemes)."""
    rng = np.random.default_rng(u.seed)
    wav, events = engine.speak(u.text, f"{u.dialect}+{u.variant}", u.rate, u.pitch, u.pitch_range, u.seed)
    rate = engine.rate
    lead, trail = int(u.lead_s * rate), int(u.trail_s * rate)
    speech = wav.astype(np.float64) / 32768
    speech = np.append(speech[:1], speech[1:] - u.tilt * speech[:-1])
    active = speech[np.abs(speech) > 1e-3]
    power = float(np.mean(active**2)) if len(active) else 1e-6
    audio = np.pad(speech, (lead, trail))
    audio += _noise(len(audio), u.noise_colour, rng) * np.sqrt(power / 10 ** (u.snr_db / 10))
    static = mfcc(audio, rate)
    centres = frame_starts(len(audio), rate) + int(_WIN_S * rate) // 2 - lead
    y, unmapped = labels(events, centres)  # sil before the first event, in the leading silence too
    return frames.features(static), y, unmapped


def render_shard(shard: list[Utterance]) -> list[tuple[np.ndarray, np.ndarray, Counter]]:
    """Speak a shard of utterances in order with a new eSpeak NG (run in a fresh process)."""
    engine = Espeak()
    return [render(u, engine) for u in shard]


def _start_resource_tracker() -> None:
    """Start multiprocessing's resource tracker with a real stderr. The tracker hands its child
    sys.stderr's file descriptor, and inside a Textual app sys.stderr is a capture whose fileno() is
    -1: spawning the pool then fails with 'bad value(s) in fds_to_keep' (the app could not make its
    demo set). The tracker, once running, serves every later pool."""
    from multiprocessing import resource_tracker

    try:
        real = sys.stderr.fileno() >= 0
    except (AttributeError, OSError, ValueError):
        real = False
    if real:
        return
    with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(sys.__stderr__ or devnull):
        resource_tracker.ensure_running()


def generate(out_dir: Path, utterances: int = 1500, test_utterances: int = 400, seed: int = 0,
             progress: Callable[[int, int], None] | None = None, workers: int | None = None,
             replaces: tuple[str, ...] = (), mark: Callable[[Path, dict], None] | None = None) -> dict:
    """Write a speech demo set (plus utterances.tsv; `mark(folder, summary)` adds the marker before
    it is moved into place); return a summary (rows, unmapped phonemes, voices)."""
    why = available()
    if why:
        raise PhonetuiError(why)
    jobs = plan("train", utterances, seed) + plan("test", test_utterances, seed)
    workers = workers or min(len(os.sched_getaffinity(0)), 8)
    summary: dict = {}

    def fill(tmp: Path) -> None:
        done: dict[str, list] = {"train": [], "test": []}
        unmapped: Counter = Counter()
        skipped = 0
        shards = [jobs[i:i + _SHARD] for i in range(0, len(jobs), _SHARD)]
        spoken: list = []
        if progress:
            progress(0, len(jobs))  # the total at once: a bar that says 0/1,600, not 0/?, while eSpeak starts
        # eSpeak keeps state from one utterance to the next (echo buffers), so each shard is spoken in
        # order by a fresh process, its randomness seeded per utterance: the files depend on the seed only.
        # Spawned, not forked: the caller may be a threaded app with torch loaded.
        _start_resource_tracker()
        try:
            with ProcessPoolExecutor(workers, get_context("spawn"), max_tasks_per_child=1) as pool:
                for shard in pool.map(render_shard, shards):
                    spoken += shard
                    if progress:
                        progress(len(spoken), len(jobs))
        except BrokenProcessPool:
            raise PhonetuiError(f"eSpeak NG crashed while speaking utterance {len(spoken) + 1:,} or one after it; "
                                "try another --seed") from None
        for u, (x, y, bad) in zip(jobs, spoken):
            unmapped += bad
            if bad:
                skipped += 1
            else:
                done[u.split].append((u, x, y))
        rows = {}
        for split in ("train", "test"):
            rows[split] = frames.write_split(tmp / f"{split}_11.npy", tmp / f"{split}_label_11.npy",
                                             [(x, y) for _, x, y in done[split]])
        _write_table(tmp / UTTERANCES, [u for split in ("train", "test") for u, x, _ in done[split]],
                     [len(x) for split in ("train", "test") for _, x, _ in done[split]])
        summary.update(rows=rows, utterances={s: len(v) for s, v in done.items()}, skipped=skipped,
                       unmapped=dict(unmapped.most_common()),
                       voices={s: sorted({f"{u.dialect}+{u.variant}" for u, _, _ in done[s]}) for s in done})

    frames.build_folder(Path(out_dir), fill, replaces, mark and (lambda tmp: mark(tmp, summary)))
    return summary



def _write_table(path: Path, utts: list[Utterance], lengths: list[int]) -> None:
    """One line per utterance: its split, first row, frame count and how it was spoken."""
    names = [f for f in asdict(utts[0])] if utts else list(Utterance.__dataclass_fields__)
    lines = ["\t".join(["first_row", "frames", *names])]
    first = {"train": 0, "test": 0}
    for u, n in zip(utts, lengths):
        lines.append("\t".join([str(first[u.split]), str(n), *(str(v) for v in asdict(u).values())]))
        first[u.split] += n
    path.write_text("\n".join(lines) + "\n")


def describe(summary: dict) -> str:
    """One line for the CLI: what was written, and any eSpeak phonemes without a class."""
    u, r = summary["utterances"], summary["rows"]
    line = (f"{u['train']:,} train utterances ({r['train']:,} rows, {len(summary['voices']['train'])} voices) + "
            f"{u['test']:,} test utterances ({r['test']:,} rows, {len(summary['voices']['test'])} unseen voices)")
    if summary["unmapped"]:
        found = ", ".join(f"{p} ({n})" for p, n in summary["unmapped"].items())
        line += f"; skipped {summary['skipped']} utterances with eSpeak phonemes that have no class: {found}"
    return line


def marker(summary: dict, seed: int) -> dict:
    return {"generator": "phonetui.data.speech", "kind": "speech", "seed": seed,
            **{k: summary[k] for k in ("rows", "utterances", "skipped", "unmapped")},
            "test_voices_unseen": not set(summary["voices"]["train"]) & set(summary["voices"]["test"]),
            "espeak": "eSpeak NG via espeakng-loader (GPL-3.0), loaded at run time"}

