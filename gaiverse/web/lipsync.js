// In-browser lip-sync: the trained audio -> mouth network of gaiverse/avatar/lipsync_model.py, in plain JS.
//
// The weights and every constant the features need (Hann window, mel filterbank, log floor, silence
// frame) come from /web/lipsync_model.json (gaiverse/avatar/lipsync_export.py), so the browser computes
// the same features as Python: 16 kHz mono, 20 ms Hann windows every 10 ms, 512-point power spectrum,
// 40 log-mel bands + log energy. The network is a stack of dilated 1-D convolutions without padding
// (GELU between them); batch prediction pads with silence frames like LipsyncModel.predict, and the
// streamer mirrors LipsyncStreamer, so live output equals batch output frame for frame.

const SQRT1_2 = Math.SQRT1_2;

// erf with fractional error < 1.2e-7 everywhere (Numerical Recipes' erfc Chebyshev fit): torch's GELU is
// the exact erf form, and JS has no Math.erf.
function erf(x) {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const r = t * Math.exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418
    + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587
    + t * (-0.82215223 + t * 0.17087277)))))))));
  return x >= 0 ? 1 - r : r - 1;
}

const gelu = (x) => 0.5 * x * (1 + erf(x * SQRT1_2));

// In-place iterative radix-2 FFT of (re, im), length a power of two.
function fft(re, im, cos, sin, rev) {
  const n = re.length;
  for (let i = 0; i < n; i++) {
    const j = rev[i];
    if (j > i) { [re[i], re[j]] = [re[j], re[i]]; [im[i], im[j]] = [im[j], im[i]]; }
  }
  for (let size = 2; size <= n; size *= 2) {
    const half = size / 2, step = n / size;
    for (let start = 0; start < n; start += size) {
      for (let k = 0; k < half; k++) {
        const c = cos[k * step], s = sin[k * step];
        const a = start + k, b = a + half;
        const tr = re[b] * c + im[b] * s, ti = im[b] * c - re[b] * s;
        re[b] = re[a] - tr; im[b] = im[a] - ti;
        re[a] += tr; im[a] += ti;
      }
    }
  }
}

/** Log-mel + log-energy frames of 16 kHz audio pushed in any chunk sizes (as lipsync_model.FeatureExtractor). */
export class FeatureExtractor {
  constructor(spec) {
    const f = spec.features;
    this.f = f;
    this.buffer = new Float64Array(f.window - f.hop);
    const n = f.n_fft;
    this.cos = new Float64Array(n / 2); this.sin = new Float64Array(n / 2);
    for (let k = 0; k < n / 2; k++) { this.cos[k] = Math.cos(2 * Math.PI * k / n); this.sin[k] = Math.sin(2 * Math.PI * k / n); }
    const bits = Math.log2(n);
    this.rev = new Uint32Array(n);
    for (let i = 0; i < n; i++) { let r = 0; for (let b = 0; b < bits; b++) r |= ((i >> b) & 1) << (bits - 1 - b); this.rev[i] = r; }
    this.re = new Float64Array(n); this.im = new Float64Array(n);
    this.power = new Float64Array(n / 2 + 1);
  }

  /** Features (Float32Array of dim) of every frame completed by ``samples``. */
  push(samples) {
    const { hop, window } = this.f;
    const buffer = new Float64Array(this.buffer.length + samples.length);
    buffer.set(this.buffer); buffer.set(samples, this.buffer.length);
    const n = Math.max(0, Math.floor((buffer.length - (window - hop)) / hop));
    const out = [];
    for (let i = 0; i < n; i++) out.push(this.frame(buffer, i * hop));
    this.buffer = buffer.slice(n * hop);
    return out;
  }

  frame(buffer, offset) {
    const { window, n_fft: nfft, hann, mel, floor, dim } = this.f;
    const { re, im, power } = this;
    re.fill(0); im.fill(0);
    let energy = 0;
    for (let i = 0; i < window; i++) {
      const x = buffer[offset + i];
      energy += x * x;
      re[i] = x * hann[i];
    }
    fft(re, im, this.cos, this.sin, this.rev);
    for (let k = 0; k <= nfft / 2; k++) power[k] = (re[k] * re[k] + im[k] * im[k]) / window;
    const feats = new Float32Array(dim);
    for (let m = 0; m < mel.length; m++) {
      const { start, weights } = mel[m];
      let s = 0;
      for (let j = 0; j < weights.length; j++) s += power[start + j] * weights[j];
      feats[m] = Math.log(s + floor);
    }
    feats[dim - 1] = Math.log(energy / window + floor);
    return feats;
  }
}

/** The conv stack on (T, dim) frames -> (T - receptive + 1) measures [open, dwidth, dlift]. */
function runNet(spec, frames) {
  const { feat_mean: mean, feat_std: std, target_mean: tmean, target_std: tstd, layers } = spec.net;
  let x = frames.map((fr) => {
    const out = new Float64Array(fr.length);
    for (let i = 0; i < fr.length; i++) out[i] = Math.fround((fr[i] - mean[i]) / std[i]);
    return out;
  });
  for (const layer of layers) {
    const T = x.length - (layer.kernel - 1) * layer.dilation;
    const y = [];
    for (let t = 0; t < T; t++) {
      const acc = Float64Array.from(layer.bias);
      for (let k = 0; k < layer.kernel; k++) {
        const input = x[t + k * layer.dilation];
        const w = layer.wk[k];  // (out, in) for this tap
        for (let o = 0; o < layer.out; o++) {
          let s = 0;
          const row = o * layer.in;
          for (let i = 0; i < layer.in; i++) s += w[row + i] * input[i];
          acc[o] += s;
        }
      }
      if (layer.gelu) for (let o = 0; o < layer.out; o++) acc[o] = gelu(acc[o]);
      y.push(acc);
    }
    x = y;
  }
  return x.map((v) => Array.from(v, (value, j) => value * tstd[j] + tmean[j]));
}

/** ARKit weights (lipsync_targets.BLENDSHAPES order) of one [open, dwidth, dlift] (lipsync_targets.to_blendshapes). */
export function measuresToBlendshapes(spec, measures) {
  const c = spec.outputs;
  const clip = (v) => Math.min(1, Math.max(0, v));
  const o = Math.max(measures[0], 0);
  const w = measures[1] / c.width_full;
  const rounded = clip(-w), roundOpen = clip(o / c.open_round), stretch = clip(w), smile = clip(measures[2] / c.lift_full);
  return [clip(o / c.open_full), clip(1 - o / c.open_closed), rounded * roundOpen, rounded * (1 - roundOpen),
    smile, smile, stretch, stretch].map(Math.fround);
}

/** Live: push chunks of 16 kHz audio, get the newest weights by name (null until the first frame is ready). */
export class LipsyncStreamer {
  constructor(model) {
    this.model = model;
    this.extractor = new FeatureExtractor(model.spec);
    this.window = Array.from({ length: model.spec.net.past }, () => model.silence);
    this.outputs = [];
    this.computeMs = [];
  }

  push(chunk) {
    const start = performance.now();
    const result = this.run(this.extractor.push(chunk));
    this.computeMs.push(performance.now() - start);
    return result;
  }

  flush() {
    return this.run(Array.from({ length: this.model.spec.net.lookahead }, () => this.model.silence));
  }

  run(frames) {
    const { receptive } = this.model.spec.net;
    this.window = this.window.concat(frames);
    if (this.window.length >= receptive) {
      this.outputs.push(...runNet(this.model.spec, this.window));
      this.window = this.window.slice(-(receptive - 1));
    }
    if (!this.outputs.length) return null;
    return this.model.weightsByName(this.outputs[this.outputs.length - 1]);
  }
}

export class LipsyncModel {
  constructor(spec) {
    if (spec.format !== 'gaiverse-lipsync/1') throw new Error(`unknown lip-sync model format ${spec.format}`);
    this.spec = spec;
    for (const layer of spec.net.layers) {  // weights as float32, regrouped per tap: wk[k][o * in + i]
      const w = Float32Array.from(layer.weight);
      layer.wk = Array.from({ length: layer.kernel }, (_, k) => {
        const tap = new Float32Array(layer.out * layer.in);
        for (let o = 0; o < layer.out; o++) for (let i = 0; i < layer.in; i++) tap[o * layer.in + i] = w[(o * layer.in + i) * layer.kernel + k];
        return tap;
      });
      layer.bias = Float32Array.from(layer.bias);
    }
    for (const key of ['feat_mean', 'feat_std', 'target_mean', 'target_std']) spec.net[key] = Float32Array.from(spec.net[key]);
    this.silence = Float32Array.from(spec.features.silence);
    this.blendshapes = spec.outputs.blendshapes;
  }

  get sampleRate() { return this.spec.features.sample_rate; }

  /** Batch features of a whole signal: floor(len / hop) frames. */
  features(samples) { return new FeatureExtractor(this.spec).push(samples); }

  /** Measures [open, dwidth, dlift] every 10 ms of a whole 16 kHz signal (LipsyncModel.predict). */
  predict(samples) {
    const { past, lookahead } = this.spec.net;
    const pad = (n) => Array.from({ length: n }, () => this.silence);
    return runNet(this.spec, pad(past).concat(this.features(samples), pad(lookahead)));
  }

  weightsByName(measures) {
    const w = measuresToBlendshapes(this.spec, measures);
    return Object.fromEntries(this.blendshapes.map((name, j) => [name, w[j]]));
  }

  streamer() { return new LipsyncStreamer(this); }
}

export async function loadLipsync(url = '/web/lipsync_model.json') {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`lip-sync model ${url}: HTTP ${response.status}`);
  return new LipsyncModel(await response.json());
}
