// vocalis web page: choose or record audio, show its spectrogram, the window timeline, the top species.
// Plain JS, no build step, no CDN. The spectrogram is computed here with a small radix-2 FFT.
"use strict";

const $ = (id) => document.getElementById(id);
let currentBlob = null;
let currentName = null;
let classes = [];

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

function colorOf(label) {
  const i = Math.max(0, classes.indexOf(label));
  const hue = (i * 137.508) % 360; // golden-angle hues stay distinct for many classes
  return `hsl(${hue}, 62%, 58%)`;
}

function fmtPct(p) { return (100 * p).toFixed(1) + " %"; }

// ---------------------------------------------------------------------------------------- model card
async function loadModel() {
  try {
    const res = await fetch("/v1/model");
    const card = await res.json();
    if (!res.ok) throw new Error(card.detail || res.statusText);
    classes = card.classes || [];
    $("model-badge").textContent = `${card.name || "model"} · ${card.version} · ${classes.length} species`;
    const rows = [
      ["name", card.name], ["version", card.version], ["architecture", card.architecture],
      ["classes", classes.join(", ")], ["sample rate", card.sample_rate + " Hz"],
      ["window / hop", `${card.window_s} s / ${card.hop_s} s`],
      ["metrics", Object.entries(card.metrics || {}).filter(([, v]) => typeof v === "number")
        .map(([k, v]) => `${k} ${k === "n" ? v : v.toFixed(3)}`).join(" · ") || "–"],
      ["quantization", card.quantization || "none"], ["created", card.created || "–"],
      ["git commit", card.git_commit || "–"],
    ];
    const dl = $("model-card");
    dl.innerHTML = "";
    for (const [k, v] of rows) {
      const dt = document.createElement("dt"); dt.textContent = k;
      const dd = document.createElement("dd"); dd.textContent = v ?? "–";
      dl.append(dt, dd);
    }
  } catch (err) {
    $("model-badge").textContent = "model unavailable";
    setStatus("Could not load the model card: " + err.message, true);
  }
}

// ---------------------------------------------------------------------------------------- spectrogram
function fft(re, im) { // in place, length a power of two
  const n = re.length;
  for (let i = 1, j = 0; i < n; i++) {
    let bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) { [re[i], re[j]] = [re[j], re[i]]; [im[i], im[j]] = [im[j], im[i]]; }
  }
  for (let len = 2; len <= n; len <<= 1) {
    const ang = -2 * Math.PI / len, wr = Math.cos(ang), wi = Math.sin(ang);
    for (let i = 0; i < n; i += len) {
      let cr = 1, ci = 0;
      for (let k = 0; k < len / 2; k++) {
        const a = i + k, b = a + len / 2;
        const tr = re[b] * cr - im[b] * ci, ti = re[b] * ci + im[b] * cr;
        re[b] = re[a] - tr; im[b] = im[a] - ti; re[a] += tr; im[a] += ti;
        const nr = cr * wr - ci * wi; ci = cr * wi + ci * wr; cr = nr;
      }
    }
  }
}

function colormap(t) { // dark blue -> teal -> yellow, t in [0, 1]
  const stops = [[4, 8, 30], [30, 70, 130], [40, 160, 160], [160, 210, 90], [250, 240, 120]];
  const x = Math.min(0.9999, Math.max(0, t)) * (stops.length - 1);
  const i = Math.floor(x), f = x - i;
  return stops[i].map((c, k) => Math.round(c + f * (stops[i + 1][k] - c)));
}

function drawSpectrogram(samples) {
  const canvas = $("spectrogram");
  const ctx = canvas.getContext("2d");
  const N = 512, W = canvas.width, H = canvas.height;
  const cols = Math.min(W, Math.max(1, Math.floor((samples.length - N) / 64) + 1));
  const hop = Math.max(1, Math.floor((samples.length - N) / Math.max(1, cols - 1)));
  const win = new Float32Array(N).map((_, i) => 0.5 - 0.5 * Math.cos(2 * Math.PI * i / N));
  const mags = [];
  let max = -Infinity;
  for (let c = 0; c < cols; c++) {
    const re = new Float32Array(N), im = new Float32Array(N);
    for (let i = 0; i < N; i++) re[i] = (samples[c * hop + i] || 0) * win[i];
    fft(re, im);
    const col = new Float32Array(N / 2);
    for (let k = 0; k < N / 2; k++) {
      col[k] = 10 * Math.log10(re[k] * re[k] + im[k] * im[k] + 1e-12);
      if (col[k] > max) max = col[k];
    }
    mags.push(col);
  }
  const img = ctx.createImageData(W, H);
  for (let x = 0; x < W; x++) {
    const col = mags[Math.min(cols - 1, Math.floor(x * cols / W))];
    for (let y = 0; y < H; y++) {
      const k = Math.floor((H - 1 - y) * (N / 2) / H);
      const [r, g, b] = colormap((col[k] - max + 80) / 80); // 80 dB range, like the model's featurizer
      const o = 4 * (y * W + x);
      img.data[o] = r; img.data[o + 1] = g; img.data[o + 2] = b; img.data[o + 3] = 255;
    }
  }
  ctx.putImageData(img, 0, 0);
}

async function decodeForDisplay(blob) {
  const Ctx = window.AudioContext || window.webkitAudioContext;
  const ctx = new Ctx();
  try {
    const buf = await ctx.decodeAudioData(await blob.arrayBuffer());
    const mono = new Float32Array(buf.length);
    for (let c = 0; c < buf.numberOfChannels; c++) {
      const d = buf.getChannelData(c);
      for (let i = 0; i < d.length; i++) mono[i] += d[i] / buf.numberOfChannels;
    }
    return { samples: mono, sampleRate: buf.sampleRate };
  } finally {
    ctx.close();
  }
}

// ------------------------------------------------------------------------------------------ recording
function encodeWav(samples, sampleRate) { // mono 16-bit PCM
  const buf = new ArrayBuffer(44 + samples.length * 2);
  const v = new DataView(buf);
  const str = (o, s) => { for (let i = 0; i < s.length; i++) v.setUint8(o + i, s.charCodeAt(i)); };
  str(0, "RIFF"); v.setUint32(4, 36 + samples.length * 2, true); str(8, "WAVE"); str(12, "fmt ");
  v.setUint32(16, 16, true); v.setUint16(20, 1, true); v.setUint16(22, 1, true);
  v.setUint32(24, sampleRate, true); v.setUint32(28, sampleRate * 2, true);
  v.setUint16(32, 2, true); v.setUint16(34, 16, true); str(36, "data"); v.setUint32(40, samples.length * 2, true);
  for (let i = 0; i < samples.length; i++) {
    const s = Math.max(-1, Math.min(1, samples[i]));
    v.setInt16(44 + 2 * i, s < 0 ? s * 0x8000 : s * 0x7fff, true);
  }
  return new Blob([buf], { type: "audio/wav" });
}

let recorder = null;
async function toggleRecording() {
  const btn = $("record-button");
  if (recorder && recorder.state === "recording") { recorder.stop(); return; }
  if (!navigator.mediaDevices || !window.MediaRecorder) { setStatus("Recording is not supported here.", true); return; }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    const chunks = [];
    recorder = new MediaRecorder(stream);
    recorder.ondataavailable = (e) => chunks.push(e.data);
    recorder.onstop = async () => {
      stream.getTracks().forEach((t) => t.stop());
      btn.textContent = "● Record"; btn.classList.remove("recording");
      // the browser records webm/ogg; the server is sent plain WAV so any decoder reads it
      const { samples, sampleRate } = await decodeForDisplay(new Blob(chunks));
      useBlob(encodeWav(samples, sampleRate), "recording.wav");
    };
    recorder.start();
    btn.textContent = "■ Stop"; btn.classList.add("recording");
    setStatus("Recording… press Stop when done.");
  } catch (err) {
    setStatus("Microphone unavailable: " + err.message, true);
  }
}

// ---------------------------------------------------------------------------------------- prediction
function useBlob(blob, name) {
  currentBlob = blob; currentName = name;
  $("file-name").textContent = `${name} (${(blob.size / 1024).toFixed(1)} KiB)`;
  $("player").src = URL.createObjectURL(blob); $("player").hidden = false;
  $("predict-button").disabled = false;
  predict();
}

async function predict() {
  if (!currentBlob) return;
  $("predict-button").disabled = true;
  setStatus("Identifying…");
  const form = new FormData();
  form.append("file", currentBlob, currentName);
  form.append("top_k", $("opt-topk").value || "3");
  if ($("opt-hop").value) form.append("hop", $("opt-hop").value);
  if ($("opt-site").value) form.append("site", $("opt-site").value);
  try {
    const res = await fetch("/v1/predict", { method: "POST", body: form });
    const body = await res.json();
    if (!res.ok) {
      const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
      throw new Error(`${body.error || res.status}: ${detail}`);
    }
    render(body);
    setStatus(`Done in ${body.processing_ms.toFixed(0)} ms.`);
    try {
      const { samples } = await decodeForDisplay(currentBlob);
      drawSpectrogram(samples);
    } catch (err) {
      const ctx = $("spectrogram").getContext("2d");
      ctx.fillStyle = "#8fa9b8"; ctx.font = "14px sans-serif";
      ctx.fillText("(this browser cannot decode the file for display)", 20, 100);
    }
  } catch (err) {
    setStatus("Could not identify: " + err.message, true);
  } finally {
    $("predict-button").disabled = false;
  }
}

function render(r) {
  $("result-panel").hidden = false;
  const s = r.summary;
  $("headline").innerHTML = "";
  const b = document.createElement("b"); b.id = "top-label"; b.textContent = s.top_label;
  $("headline").append("Most likely: ", b, ` (${fmtPct(s.top_confidence)} in its best window)`);

  const tl = $("timeline"); tl.innerHTML = "";
  const dur = r.duration_s || 1;
  const seen = new Set();
  for (const d of r.detections) {
    const seg = document.createElement("div");
    seg.className = "segment";
    seg.style.left = (100 * d.start_s / dur) + "%";
    seg.style.width = (100 * (d.end_s - d.start_s) / dur) + "%";
    seg.style.background = colorOf(d.label);
    seg.style.opacity = (0.35 + 0.65 * d.confidence).toFixed(2);
    seg.title = `${d.start_s.toFixed(2)}–${d.end_s.toFixed(2)} s: ${d.label} ${fmtPct(d.confidence)}`;
    seg.textContent = d.label;
    tl.append(seg); seen.add(d.label);
  }
  $("timeline-axis").innerHTML = `<span>0 s</span><span>${(dur / 2).toFixed(1)} s</span><span>${dur.toFixed(1)} s</span>`;
  $("legend").innerHTML = "";
  for (const label of seen) {
    const span = document.createElement("span");
    span.style.setProperty("--c", colorOf(label)); span.textContent = label;
    $("legend").append(span);
  }

  const ol = $("top-species"); ol.innerHTML = "";
  const ranked = Object.entries(s.max_probs).sort((a, b) => b[1] - a[1]).slice(0, 5);
  for (const [label, p] of ranked) {
    const li = document.createElement("li");
    li.className = "species";
    li.innerHTML = `<span class="name"></span><div class="track"><div class="fill"></div></div><span class="pct"></span>`;
    li.querySelector(".name").textContent = label;
    li.querySelector(".fill").style.width = (100 * p).toFixed(1) + "%";
    li.querySelector(".pct").textContent = fmtPct(p);
    ol.append(li);
  }
  $("request-meta").textContent =
    `request ${r.request_id} · model ${r.model_version} · ${r.duration_s.toFixed(2)} s at ${r.sample_rate} Hz, ` +
    `${r.channels} channel(s) · ${r.detections.length} window(s)`;
}

$("file-input").addEventListener("change", (e) => {
  const f = e.target.files[0];
  if (f) useBlob(f, f.name);
});
$("record-button").addEventListener("click", toggleRecording);
$("predict-button").addEventListener("click", predict);
loadModel();
