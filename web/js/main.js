// Dream Arcade page: game picker, the two screens, controls, HUD. Talks to the server only
// through the websocket protocol (docs/protocol.md).
import { CLOSE_REASONS, Net } from "./net.js";
import { Keyboard } from "./keyboard.js";
import { Chart, Latency, Rate, psnr } from "./hud.js";
import { Recorder } from "./recorder.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

const screens = { real: $("real"), dream: $("dream") };
const contexts = { real: screens.real.getContext("2d"), dream: screens.dream.getContext("2d") };
const chart = new Chart($("chart"));
const latency = new Latency();
const dreamRate = new Rate();
const recorder = new Recorder($("rec-canvas"), [screens.real, screens.dream]);

const state = { games: [], game: null, ready: null, settings: null, seq: 0, lastHeader: null };

// -- network ---------------------------------------------------------------------------------
const net = new Net(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);

function setStatus(text, error = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", error);
}

function start() {
  const game = $("game").value;
  if (!game) return;
  chart.clear();
  net.send({
    type: "start",
    game,
    mode: $("mode").value,
    steps: Number($("steps").value),
    sampler: $("sampler").value,
    fps: Number($("fps").value),
    control: "human",
  });
  setStatus(`starting ${game}…`);
}

function configure(fields) {
  if (state.ready) net.send({ type: "configure", ...fields });
}

net
  .on("open", () => setStatus("connected"))
  .on("close", ({ code, reason }) => {
    setStatus(`disconnected: ${CLOSE_REASONS[code] || reason || "closed"} (code ${code})`, code !== 1000);
    state.ready = null;
    keyboard.clear();
  })
  .on("hello", (msg) => {
    state.games = msg.games;
    $("game").replaceChildren(...msg.games.map((g) => new Option(g, g)));
    if (!msg.games.length) return setStatus("no games: the server has no world-model snapshot", true);
    if (params.get("game") && msg.games.includes(params.get("game"))) $("game").value = params.get("game");
    if (["dream", "real", "side"].includes(params.get("mode"))) $("mode").value = params.get("mode");
    start();
  })
  .on("ready", (msg) => {
    state.ready = msg;
    state.seq = 0;
    keyboard.setKeymap(msg.keymap);
    $("control").replaceChildren(...msg.policies.map((p) => new Option(p, p)));
    renderLegend(msg.keymap.legend);
    renderAgent(msg.action_meanings);
    applySettings(msg.settings);
    const wanted = params.get("control");  // ?control=agent: watch the agent from the first tick
    if (wanted && wanted !== msg.settings.control && msg.policies.includes(wanted)) configure({ control: wanted });
    setStatus(`playing ${msg.game}`);
  })
  .on("state", (msg) => {
    applySettings(msg.settings);
    if (msg.reason === "reset" || msg.reason === "resync" || msg.reason === "configure") chart.mark(msg.reason);
  })
  .on("frame", ({ header, frames }) => onFrame(header, frames))
  .on("episode_end", (msg) => {
    const dream = msg.dream_return == null ? "" : `, dream return ${msg.dream_return}`;
    showBanner(`Game over after ${msg.length} steps: real return ${msg.real_return}${dream}. R to reset.`);
  })
  .on("saved", (msg) => setStatus(`saved ${msg.length} steps to ${msg.path}`))
  .on("error", (msg) => setStatus(`${msg.code}: ${msg.message}`, true))
  .on("pong", () => {});

// -- frames ------------------------------------------------------------------------------------
function draw(name, rgb, header) {
  const img = contexts[name].createImageData(header.width, header.height);
  const px = img.data;
  for (let i = 0, j = 0; i < rgb.length; i += 3, j += 4) {
    px[j] = rgb[i];
    px[j + 1] = rgb[i + 1];
    px[j + 2] = rgb[i + 2];
    px[j + 3] = 255;
  }
  contexts[name].putImageData(img, 0, 0);
}

function fmt(x, digits = 1) {
  return x == null || Number.isNaN(x) ? "–" : Number(x).toFixed(digits);
}

function onFrame(header, frames) {
  for (const name of header.frames) draw(name, frames[name], header);
  latency.shown(header.seq);
  if (header.frames.includes("dream")) dreamRate.tick();
  let p = null;
  if (frames.real && frames.dream && header.tick > 0) {
    p = psnr(frames.real, frames.dream);
    chart.push(p);
  }
  const lat = latency.stats();
  const meanings = state.ready ? state.ready.action_meanings : [];
  $("hud-fps").textContent = header.frames.includes("dream") ? fmt(dreamRate.value) : "– (no dream)";
  $("hud-ms").textContent = `${fmt(header.ms)} (tick ${fmt(header.tick_ms)})`;
  $("hud-lat").textContent = lat.n ? `${fmt(lat.p50, 0)} / ${fmt(lat.p95, 0)} ms` : "– (press a key)";
  $("hud-drops").textContent = header.drops;
  $("hud-tick").textContent = `${header.tick} · ${meanings[header.action] ?? header.action}`;
  $("r-real").textContent = header.real ? fmt(header.real.reward) : "–";
  $("ret-real").textContent = header.real ? fmt(header.real.episode_return) : "–";
  $("done-real").textContent = header.real ? (header.real.done ? "yes" : "no") : "–";
  $("r-dream").textContent = header.dream ? fmt(header.dream.reward) : "–";
  $("ret-dream").textContent = header.dream ? fmt(header.dream.episode_return) : "–";
  $("done-dream").textContent = header.dream ? `p=${fmt(header.dream.end_prob, 2)}` : "–";
  highlightLegend(header.action);
  showAgent(header.agent, header.action);
  state.lastHeader = header;
  recorder.frame({
    tick: header.tick,
    seq: header.seq,
    action: header.action,
    action_name: meanings[header.action],
    real: header.real,
    dream: header.dream,
    agent: header.agent,
    psnr: p,
    t: Date.now(),
  });
}

// -- settings and controls ------------------------------------------------------------------------
function applySettings(s) {
  state.settings = s;
  $("mode").value = s.mode;
  $("steps").value = s.steps;
  $("steps-out").textContent = s.steps;
  $("sampler").value = s.sampler;
  $("fps").value = s.fps;
  $("fps-out").textContent = s.fps;
  $("control").value = s.control;
  $("pause").textContent = s.paused ? "Resume" : "Pause";
  $("real-fig").classList.toggle("off", s.mode === "dream");
  $("dream-fig").classList.toggle("off", s.mode === "real");
  $("resync").disabled = s.mode === "real";
  $("save").disabled = s.mode === "dream";
  if (!s.over) hideBanner();
}

function showBanner(text) {
  $("banner").textContent = text;
  $("banner").hidden = false;
}
function hideBanner() {
  $("banner").hidden = true;
}

function renderLegend(legend) {
  $("legend").replaceChildren(
    ...legend.map((row) => {
      const tr = document.createElement("tr");
      tr.dataset.index = row.index;
      tr.innerHTML = `<td></td><td></td>`;
      tr.children[0].textContent = row.action;
      tr.children[1].textContent = row.keys;
      return tr;
    }),
  );
}

function renderAgent(meanings) {
  $("agent-probs").replaceChildren(
    ...meanings.map((name) => {
      const tr = document.createElement("tr");
      tr.innerHTML = `<th></th><td class="bar"><span></span></td><td></td>`;
      tr.children[0].textContent = name;
      return tr;
    }),
  );
  $("agent-panel").hidden = true;
}

// header.agent: {probs, value} when a trained agent chose this tick's action, else null.
function showAgent(agent, action) {
  $("agent-panel").hidden = !agent;
  if (!agent) return;
  [...$("agent-probs").children].forEach((tr, i) => {
    const p = agent.probs[i] ?? 0;
    tr.children[1].firstChild.style.width = `${(100 * p).toFixed(1)}%`;
    tr.children[2].textContent = `${(100 * p).toFixed(0)}%`;
    tr.classList.toggle("active", i === action);
  });
  $("agent-value").textContent = fmt(agent.value, 2);
}

function toggleAgent() {
  const policies = state.ready ? state.ready.policies : [];
  if (!policies.includes("agent")) return setStatus("no trained agent for this game", true);
  configure({ control: state.settings?.control === "agent" ? "human" : "agent" });
}

function highlightLegend(action) {
  for (const tr of $("legend").children) tr.classList.toggle("active", Number(tr.dataset.index) === action);
}

function sendInput(action) {
  if (!state.ready) return;
  state.seq += 1;
  latency.sent(state.seq);
  net.send({ type: "input", seq: state.seq, action });
}

const keyboard = new Keyboard(sendInput, (key) => {
  if (key === "R") net.send({ type: "reset" });
  if (key === "P") net.send({ type: "pause" });
  if (key === "N") net.send({ type: "step" });
  if (key === "Y") net.send({ type: "resync" });
  if (key === "T") toggleAgent();
});

// Controls must not keep the focus, or arrow keys would change them instead of playing.
function blurAfter(el, fn) {
  el.addEventListener("change", (e) => {
    fn(e);
    el.blur();
  });
}

$("start").addEventListener("click", (e) => {
  e.target.blur();
  start();
});
blurAfter($("game"), start);
blurAfter($("mode"), () => configure({ mode: $("mode").value }));
blurAfter($("steps"), () => configure({ steps: Number($("steps").value) }));
blurAfter($("sampler"), () => configure({ sampler: $("sampler").value }));
blurAfter($("fps"), () => configure({ fps: Number($("fps").value) }));
blurAfter($("control"), () => configure({ control: $("control").value }));
$("steps").addEventListener("input", () => ($("steps-out").textContent = $("steps").value));
$("fps").addEventListener("input", () => ($("fps-out").textContent = $("fps").value));
for (const [id, type] of [["reset", "reset"], ["pause", "pause"], ["step", "step"], ["resync", "resync"]]) {
  $(id).addEventListener("click", (e) => {
    e.target.blur();
    net.send({ type });
  });
}
$("save").addEventListener("click", (e) => {
  e.target.blur();
  net.send({ type: "save_episode" });
  setStatus("saving episode…");
});
$("record").addEventListener("click", async (e) => {
  e.target.blur();
  if (!recorder.active) {
    const s = state.settings || {};
    recorder.start({ game: state.ready?.game, action_meanings: state.ready?.action_meanings, settings: s }, s.fps || 15);
    $("record").textContent = "■ Stop";
    $("rec-status").textContent = "recording…";
  } else {
    const stamp = new Date().toISOString().replace(/[:.]/g, "-");
    const n = await recorder.stop(`dream-arcade-${state.ready?.game || "session"}-${stamp}`);
    $("record").textContent = "● Record";
    $("rec-status").textContent = `saved video and ${n} ticks of actions`;
  }
});

// Keep the connection alive while the page is visible (the server closes idle connections).
setInterval(() => {
  if (!document.hidden) net.send({ type: "ping", t: performance.now() });
}, 20000);

chart.draw();
net.connect();
