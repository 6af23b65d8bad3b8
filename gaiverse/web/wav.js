// Audio in the browser -> 16-bit PCM mono WAV, the format the API accepts for voice (filetypes.py: wav).
// Any audio the browser can decode (a MediaRecorder webm/opus recording, mp3, ogg, m4a) is decoded with
// Web Audio, mixed down to mono and resampled by an OfflineAudioContext, then written as RIFF/WAVE.

export const WAV_RATE = 16000;

/** Whether a file already is a WAV (by name or type); the API checks the RIFF/WAVE header itself. */
export const isWav = (file) => /\.wav$/i.test(file.name || '') || /audio\/(x-)?wav/.test(file.type || '');

/** Decode ``blob`` and return a 16-bit PCM mono WAV Blob at ``rate`` Hz. */
export async function blobToWav(blob, rate = WAV_RATE) {
  const bytes = await blob.arrayBuffer();
  if (!bytes.byteLength) throw new Error('the recording is empty: no audio was captured');
  let decoded;
  try {  // an offline context decodes without needing an audio output device
    decoded = await new OfflineAudioContext(1, 1, rate).decodeAudioData(bytes);
  } catch (err) {
    throw new Error(`this audio cannot be decoded by the browser (${err.message || err})`);
  }
  const frames = Math.max(1, Math.ceil(decoded.duration * rate));
  const offline = new OfflineAudioContext(1, frames, rate);  // one channel: Web Audio mixes down
  const source = offline.createBufferSource();
  source.buffer = decoded;
  source.connect(offline.destination);
  source.start();
  const rendered = await offline.startRendering();
  return encodeWav(rendered.getChannelData(0), rate);
}

/** Float samples in [-1, 1] -> a WAV Blob (RIFF header + little-endian 16-bit PCM). */
export function encodeWav(samples, rate) {
  const buffer = new ArrayBuffer(44 + samples.length * 2);
  const view = new DataView(buffer);
  const text = (offset, s) => { for (let i = 0; i < s.length; i++) view.setUint8(offset + i, s.charCodeAt(i)); };
  text(0, 'RIFF');
  view.setUint32(4, 36 + samples.length * 2, true);
  text(8, 'WAVE');
  text(12, 'fmt ');
  view.setUint32(16, 16, true);        // fmt chunk size
  view.setUint16(20, 1, true);         // PCM
  view.setUint16(22, 1, true);         // mono
  view.setUint32(24, rate, true);
  view.setUint32(28, rate * 2, true);  // byte rate
  view.setUint16(32, 2, true);         // block align
  view.setUint16(34, 16, true);        // bits per sample
  text(36, 'data');
  view.setUint32(40, samples.length * 2, true);
  for (let i = 0; i < samples.length; i++) {
    const s = Math.max(-1, Math.min(1, samples[i]));
    view.setInt16(44 + i * 2, s < 0 ? s * 0x8000 : s * 0x7fff, true);
  }
  return new Blob([buffer], { type: 'audio/wav' });
}
