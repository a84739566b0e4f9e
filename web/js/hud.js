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

// The colour of each marker kind on the divergence chart (style.css colours the legend alike).
export const MARK_COLOURS = { start: "#8a8f9c", reset: "#fc6", resync: "#7d7", settings: "#c9f" };

// PSNR over the whole visit: nothing is dropped at a reset, resync, settings change or new game;
// each of them leaves a vertical line and a label. The x axis squeezes to fit once the history is
// longer than `length` points; past `keep` points (40 min at 15 fps) the oldest go.
export class Chart {
  constructor(canvas, { max = 50, length = 150, keep = 36000 } = {}) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.max = max;
    this.length = length;
    this.keep = keep;
    this.points = []; // {v} for a PSNR, {v: null, mark: kind, label} for a marker
  }
  // The latest PSNR and the mean of the last n points, or null before the first.
  latest(n = 20) {
    const values = this.points.filter((p) => p.v != null).map((p) => p.v);
    if (!values.length) return null;
    const recent = values.slice(-n);
    return { last: values[values.length - 1], mean: recent.reduce((a, b) => a + b, 0) / recent.length, n: recent.length };
  }
  // kind: "start", "reset", "resync" or "settings"; label: the text beside the line.
  mark(kind, label = kind) {
    this.add({ v: null, mark: kind, label });
  }
  push(v) {
    this.add({ v });
  }
  add(point) {
    this.points.push(point);
    if (this.points.length > this.keep) this.points.splice(0, this.points.length - this.keep);
    this.draw();
  }
  // The x of point i on the canvas.
  x(i) {
    return (i * this.canvas.width) / Math.max(this.length, this.points.length);
  }
  draw() {
    const { ctx, canvas } = this;
    const w = canvas.width, h = canvas.height;
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, w, h);
    ctx.font = "10px sans-serif";
    ctx.lineWidth = 1;
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
    // Markers: a line each; labels along the bottom, a row up where they would overlap.
    const rowEnds = [-Infinity, -Infinity, -Infinity]; // where the last label of each row ends
    this.points.forEach((p, i) => {
      if (!p.mark) return;
      const x = Math.round(this.x(i)) + 0.5;
      ctx.strokeStyle = ctx.fillStyle = MARK_COLOURS[p.mark] || "#fff";
      ctx.beginPath();
      ctx.moveTo(x, 0);
      ctx.lineTo(x, h);
      ctx.stroke();
      const free = rowEnds.findIndex((end) => x + 2 >= end);
      const row = free >= 0 ? free : rowEnds.indexOf(Math.min(...rowEnds));
      ctx.fillText(p.label, x + 2, h - 3 - 11 * row);
      rowEnds[row] = x + 2 + ctx.measureText(p.label).width + 4;
    });
    ctx.strokeStyle = "#6cf";
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    let started = false;
    this.points.forEach((p, i) => {
      if (p.mark) {
        started = false;
        return;
      }
      const x = this.x(i), y = h - (Math.min(p.v, this.max) / this.max) * h;
      if (!started) {
        ctx.moveTo(x, y);
        started = true;
      } else ctx.lineTo(x, y);
    });
    ctx.stroke();
    const last = this.latest(1);
    if (last) {
      ctx.fillStyle = "#6cf";
      ctx.fillText(`${last.last.toFixed(1)} dB`, w - 48, 12);
    }
  }
}
