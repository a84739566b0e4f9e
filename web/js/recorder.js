// Record the session: both screens drawn side by side onto one canvas, captured with
// MediaRecorder as webm (its duration written in, so players can seek), plus a JSON log of every
// tick's action, rewards and PSNR.
import { fixDuration } from "./webm-duration.js";

function download(blob, name) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

export class Recorder {
  constructor(canvas, sources) {
    this.canvas = canvas; // the composite canvas
    this.sources = sources; // [realCanvas, dreamCanvas]
    this.ctx = canvas.getContext("2d");
    this.recorder = null;
    this.chunks = [];
    this.log = null;
    this.startedAt = 0; // performance.now() when the recording started
  }

  get active() {
    return this.recorder !== null;
  }

  start(meta, fps) {
    const mime = ["video/webm;codecs=vp9", "video/webm;codecs=vp8", "video/webm"].find((m) =>
      MediaRecorder.isTypeSupported(m),
    );
    this.chunks = [];
    this.log = { ...meta, started: new Date().toISOString(), ticks: [] };
    this.draw();
    const stream = this.canvas.captureStream(fps);
    this.recorder = new MediaRecorder(stream, mime ? { mimeType: mime } : undefined);
    this.canvas.dataset.recordedBytes = "0"; // how much video is encoded so far (read by the page's tests)
    this.recorder.ondataavailable = (e) => {
      if (!e.data.size) return;
      this.chunks.push(e.data);
      this.canvas.dataset.recordedBytes = String(Number(this.canvas.dataset.recordedBytes) + e.data.size);
    };
    this.recorder.onstart = () => (this.startedAt = performance.now());
    this.recorder.start(500);
  }

  // Called for every displayed tick.
  frame(entry) {
    if (!this.active) return;
    this.draw();
    this.log.ticks.push(entry);
  }

  draw() {
    const { ctx, canvas } = this;
    const size = canvas.height - 16;
    ctx.imageSmoothingEnabled = false;
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.fillStyle = "#aaa";
    ctx.font = "11px sans-serif";
    ["real", "dream"].forEach((label, i) => {
      const x = i * (size + 16);
      ctx.drawImage(this.sources[i], x, 0, size, size);
      ctx.fillText(label, x + 2, canvas.height - 3);
    });
  }

  stop(basename) {
    return new Promise((resolve) => {
      const rec = this.recorder;
      this.recorder = null;
      rec.onstop = async () => {
        const video = new Blob(this.chunks, { type: "video/webm" });
        download(await fixDuration(video, performance.now() - this.startedAt), `${basename}.webm`);
        this.log.stopped = new Date().toISOString();
        download(new Blob([JSON.stringify(this.log, null, 1)], { type: "application/json" }), `${basename}.actions.json`);
        resolve(this.log.ticks.length);
      };
      rec.stop();
    });
  }
}
