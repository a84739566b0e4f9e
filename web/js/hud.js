// Numbers shown beside the game: frame rate, server time, input-to-display latency, drops,
// and the divergence chart (PSNR of the dream against the real frame, computed here).

export function psnr(a, b) {
  let se = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i] - b[i];
    se += d * d;
  }
  const mse = se / a.length;
  return mse === 0 ? 60 : Math.min(60, 10 * Math.log10((255 * 255) / mse));
}

function percentile(sorted, p) {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

export class Latency {
  constructor() {
    this.pending = new Map(); // seq -> performance.now() when sent
    this.samples = [];
  }
  sent(seq) {
    this.pending.set(seq, performance.now());
  }
  // The frame echoes the last input the server applied: every pending input up to it is now shown.
  shown(echoedSeq) {
    const now = performance.now();
    for (const [seq, t] of this.pending) {
      if (seq <= echoedSeq) {
        this.samples.push(now - t);
        this.pending.delete(seq);
      }
    }
    if (this.samples.length > 200) this.samples.splice(0, this.samples.length - 200);
  }
  stats() {
    const s = [...this.samples].sort((a, b) => a - b);
    return { n: s.length, p50: percentile(s, 50), p95: percentile(s, 95) };
  }
}

export class Rate {
  constructor(windowMs = 10000) {
    this.windowMs = windowMs;
    this.times = [];
  }
  tick() {
    const now = performance.now();
    this.times.push(now);
    while (this.times.length > 30 || (this.times.length && this.times[0] < now - this.windowMs)) this.times.shift();
  }
  reset() {
    this.times = [];
  }
  // Ticks per second, or null before two ticks.
  get value() {
    const t = this.times;
    if (t.length < 2) return null;
    return (t.length - 1) / ((t[t.length - 1] - t[0]) / 1000);
  }
}

export class Chart {
  constructor(canvas, { max = 50, length = 150 } = {}) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.max = max;
    this.length = length;
    this.points = []; // {v, mark}
  }
  clear() {
    this.points = [];
    this.draw();
  }
  // The latest PSNR and the mean of the last n points, or null before the first.
  latest(n = 20) {
    const values = this.points.filter((p) => p.v != null).map((p) => p.v);
    if (!values.length) return null;
    const recent = values.slice(-n);
    return { last: values[values.length - 1], mean: recent.reduce((a, b) => a + b, 0) / recent.length, n: recent.length };
  }
  mark(label) {
    this.points.push({ v: null, mark: label });
  }
  push(v) {
    this.points.push({ v });
    if (this.points.length > this.length) this.points.splice(0, this.points.length - this.length);
    this.draw();
  }
  draw() {
    const { ctx, canvas } = this;
    const w = canvas.width, h = canvas.height;
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, w, h);
    ctx.font = "10px sans-serif";
    for (let db = 10; db < this.max; db += 10) {
      const y = h - (db / this.max) * h;
      ctx.strokeStyle = "#222";
      ctx.beginPath();
      ctx.moveTo(0, y);
      ctx.lineTo(w, y);
      ctx.stroke();
      ctx.fillStyle = "#555";
      ctx.fillText(`${db}`, 2, y - 2);
    }
    const dx = w / this.length;
    ctx.strokeStyle = "#6cf";
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    let started = false;
    this.points.forEach((p, i) => {
      const x = i * dx;
      if (p.mark) {
        ctx.save();
        ctx.strokeStyle = "#fc6";
        ctx.beginPath();
        ctx.moveTo(x, 0);
        ctx.lineTo(x, h);
        ctx.stroke();
        ctx.restore();
        started = false;
        return;
      }
      const y = h - (Math.min(p.v, this.max) / this.max) * h;
      if (!started) {
        ctx.moveTo(x, y);
        started = true;
      } else ctx.lineTo(x, y);
    });
    ctx.stroke();
    const last = [...this.points].reverse().find((p) => p.v != null);
    if (last) {
      ctx.fillStyle = "#6cf";
      ctx.fillText(`${last.v.toFixed(1)} dB`, w - 48, 12);
    }
  }
}
