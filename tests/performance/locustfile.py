"""Locust load test of the vocalis service (and of the seed's serving approach, for the benchmark).

    locust -f tests/performance/locustfile.py VocalisUser --headless -u 8 -r 8 -t 30s \
        -H http://127.0.0.1:8000 --csv reports/load

``VocalisUser`` posts a recording to ``/v1/predict`` (the file in ``VOCALIS_LOAD_AUDIO``, else an 11.67 s
synthetic call written in memory) and checks the answer. ``ReferenceUser`` re-creates the reference system's
approach for comparison: the client computes a 64 x 1168 log-mel with librosa, sends it as JSON to
``/predict`` and gets a class index back (see benchmarks/bench_serving.py, which serves that endpoint).
"""

from __future__ import annotations

import io
import json
import os

import numpy as np
import soundfile as sf
from locust import FastHttpUser, constant, events, task

SR = 32_000
SECONDS = 11.67  # the seed's clip: 1 + 11.67 * 32000 / 320 = 1168 frames


def _synthetic_call(seconds: float = SECONDS, sr: int = SR) -> np.ndarray:
    """A chirped tone over noise, like a tonal whale call (deterministic)."""
    rng = np.random.default_rng(7)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * (800 * t + 150 * t**2)) * (0.5 + 0.5 * np.sin(2 * np.pi * 0.3 * t))
    return (x + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


def _audio_bytes() -> tuple[str, bytes]:
    path = os.environ.get("VOCALIS_LOAD_AUDIO")
    if path:
        with open(path, "rb") as f:
            return os.path.basename(path), f.read()
    buf = io.BytesIO()
    sf.write(buf, _synthetic_call(), SR, format="WAV", subtype="PCM_16")
    return "call.wav", buf.getvalue()


AUDIO_NAME, AUDIO = _audio_bytes()


class VocalisUser(FastHttpUser):
    """A client of the vocalis service: one recording per request, back to back."""

    wait_time = constant(0)

    @task
    def predict(self) -> None:
        """POST the recording and check that a species came back."""
        with self.client.post(
            "/v1/predict",
            files={"file": (AUDIO_NAME, AUDIO, "audio/wav")},
            catch_response=True,
            name="/v1/predict",
        ) as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}: {response.text[:200]}")
            elif not response.json().get("summary", {}).get("top_label"):
                response.failure("no top label in the answer")


def seed_log_mel(waveform: np.ndarray) -> np.ndarray:
    """The seed client's featurizer: librosa log-mel, 64 bands, cut or padded to 1168 frames."""
    import librosa

    mel = librosa.feature.melspectrogram(
        y=waveform, sr=SR, n_fft=1024, hop_length=320, n_mels=64, fmin=50, fmax=14000
    )
    db = librosa.power_to_db(mel, ref=np.max, top_db=80)
    frames = 1168
    return db[:, :frames] if db.shape[1] >= frames else np.pad(db, ((0, 0), (0, frames - db.shape[1])))


@events.init.add_listener
def _warm_up_librosa(environment: object, **_: object) -> None:
    """Import librosa and run its JIT-compiled code once before the clock starts (ReferenceUser runs only)."""
    classes = getattr(environment, "user_classes", None) or []
    if any(c.__name__ == "ReferenceUser" for c in classes):
        seed_log_mel(_synthetic_call(1.0))


class ReferenceUser(FastHttpUser):
    """The seed's approach: librosa log-mel on the client, JSON spectrogram to the server, an index back."""

    wait_time = constant(0)

    def on_start(self) -> None:
        """Decode the recording once (the seed's client loaded audio with librosa at 32 kHz)."""
        import librosa

        y, _ = librosa.load(io.BytesIO(AUDIO), sr=SR, mono=True)
        self.waveform = y

    @task
    def predict(self) -> None:
        """Featurize with librosa (as the seed's client did for every request) and POST the JSON."""
        payload = json.dumps({"spectrogram": seed_log_mel(self.waveform).tolist()})
        with self.client.post(
            "/predict",
            data=payload,
            headers={"content-type": "application/json"},
            catch_response=True,
            name="/predict (seed)",
        ) as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}: {response.text[:200]}")
            elif "index" not in response.json():
                response.failure("no class index in the answer")
