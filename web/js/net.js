// One websocket to the server (opened again with backoff when it closes), a dispatcher on message
// type, and the binary frame decoder. The protocol is documented in docs/protocol.md.

const MAGIC = "DAF1";
const decoder = new TextDecoder();

export const CLOSE_REASONS = {
  1000: "closed",
  1001: "server going away",
  1006: "connection lost",
  1008: "origin not allowed",
  1009: "message too big",
  1011: "session failed on the server",
  1012: "server restarting",
  1013: "server full",
  4001: "closed after being idle",
  4008: "too many bad or rate-limited messages",
};

// Closes after which trying again at once would be refused the same way: Start reconnects.
export const NO_RETRY = new Set([1008, 1009, 4001, 4008]);
const BACKOFF_S = [1, 2, 4, 8, 15, 30]; // the wait before each try; the last one repeats

// Binary frame: "DAF1" | uint32 LE header length N | N bytes JSON header | raw RGB frames.
export function decodeFrame(buffer) {
  const bytes = new Uint8Array(buffer);
  const magic = String.fromCharCode(bytes[0], bytes[1], bytes[2], bytes[3]);
  if (magic !== MAGIC) throw new Error("bad frame magic");
  const n = new DataView(buffer).getUint32(4, true);
  const header = JSON.parse(decoder.decode(bytes.subarray(8, 8 + n)));
  const size = header.width * header.height * 3;
  const frames = {};
  header.frames.forEach((name, i) => {
    frames[name] = bytes.subarray(8 + n + i * size, 8 + n + (i + 1) * size);
  });
  return { header, frames };
}

export class Net {
  constructor(url) {
    this.url = url;
    this.handlers = new Map();
    this.ws = null;
    this.failures = 0; // closes since the last open
    this.retryAt = null; // when the next try is due (performance.now() ms), or null
    this.retryTimer = null;
  }

  on(type, fn) {
    this.handlers.set(type, fn);
    return this;
  }

  dispatch(type, msg) {
    const fn = this.handlers.get(type);
    if (fn) fn(msg);
    else console.warn("no handler for message type", type);
  }

  connect() {
    clearTimeout(this.retryTimer);
    this.retryAt = null;
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) return; // connecting or open
    const ws = new WebSocket(this.url);
    ws.binaryType = "arraybuffer";
    ws.onopen = () => {
      this.failures = 0;
      this.dispatch("open", {});
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      const retry = !NO_RETRY.has(ev.code);
      if (retry) this.retryIn(BACKOFF_S[Math.min(this.failures, BACKOFF_S.length - 1)]);
      this.failures += 1;
      this.dispatch("close", { code: ev.code, reason: ev.reason, retry });
    };
    ws.onmessage = (ev) => {
      if (typeof ev.data === "string") {
        const msg = JSON.parse(ev.data);
        this.dispatch(msg.type, msg);
      } else {
        const { header, frames } = decodeFrame(ev.data);
        this.dispatch("frame", { header, frames });
      }
    };
    this.ws = ws;
  }

  retryIn(seconds) {
    clearTimeout(this.retryTimer);
    this.retryAt = performance.now() + seconds * 1000;
    this.retryTimer = setTimeout(() => this.connect(), seconds * 1000);
  }

  // Whole seconds until the next try, or null when none is planned.
  get retrySeconds() {
    return this.retryAt == null ? null : Math.max(0, Math.ceil((this.retryAt - performance.now()) / 1000));
  }

  get open() {
    return this.ws && this.ws.readyState === WebSocket.OPEN;
  }

  send(msg) {
    if (this.open) this.ws.send(JSON.stringify(msg));
  }
}
