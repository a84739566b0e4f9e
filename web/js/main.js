// Dream Arcade page: game picker, the two screens, controls, HUD. Talks to the server only
// through the websocket protocol (docs/protocol.md).
import { CLOSE_REASONS, Net } from "./net.js";
import { Keyboard } from "./keyboard.js";
import { Chart, Latency, Rate, psnr } from "./hud.js";
import { Recorder } from "./recorder.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

const ERROR_SHOWN_MS = 5000; // an error stays this long, or until the next accepted action
const MODE_NAMES = { side: "Side by side", dream: "Dream", real: "Real" };
const TOUCH_BUTTONS = [
  ["UP", "▲"],
  ["LEFT", "◀"],
  ["FIRE", "FIRE"],
  ["RIGHT", "▶"],
  ["DOWN", "▼"],
];

// What each mode, Resync and Save do (the tooltips in index.html), shown again when they are allowed.
const HELP = {
  modes: Object.fromEntries([...$("mode").options].map((o) => [o.value, o.title])),
  resync: $("resync").title,
  save: $("save").title,
};

const screens = { real: $("real"), dream: $("dream") };
const contexts = { real: screens.real.getContext("2d"), dream: screens.dream.getContext("2d") };
const chart = new Chart($("chart"));
const latency = new Latency();
const dreamRate = new Rate();
const recorder = new Recorder($("rec-canvas"), [screens.real, screens.dream]);

const state = {
  games: [],
  game: null,
  ready: null,
  settings: null,
  seq: 0,
  lastHeader: null,
  lost: null,
  saving: false, // a save_episode is on its way: Save waits for its answer
};

// -- status line: what the page is doing, and errors that fade -------------------------------------
const status = { text: "connecting…", warn: false, errorTimer: null };

function renderStatus(text, warn) {
  $("status").textContent = text;
  $("status").classList.toggle("error", warn);
}

function setStatus(text, warn = false) {
  Object.assign(status, { text, warn });
  if (status.errorTimer == null) renderStatus(text, warn);
}

function showError(text) {
  clearTimeout(status.errorTimer);
  status.errorTimer = setTimeout(clearError, ERROR_SHOWN_MS);
  renderStatus(text, true);
}

function clearError() {
  clearTimeout(status.errorTimer);
  status.errorTimer = null;
  renderStatus(status.text, status.warn);
}

// -- network ---------------------------------------------------------------------------------
const net = new Net(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
let countdown = null;

function start() {
  const game = $("game").value;
  if (!net.open) return net.connect(); // the server's hello starts the game
  if (!game) return;
  net.send({
    type: "start",
    game,
    mode: $("mode").value, // steps: the model's own (ready.settings sets the slider)
    sampler: $("sampler").value,
    fps: Number($("fps").value),
    control: "human",
  });
  setStatus(`starting ${game}…`);
}

function configure(fields) {
  if (state.ready) net.send({ type: "configure", ...fields });
}

function showReconnect(why) {
  const s = net.retrySeconds;
  setStatus(s == null ? `${why}: reconnecting…` : `${why}: reconnecting in ${s} s`, true);
}

net
  .on("open", () => {
    clearInterval(countdown);
    state.lost = null;
    setStatus("connected");
  })
  .on("close", ({ code, reason, retry }) => {
    // A failed try while reconnecting keeps the reason the game was lost for.
    const lost = `${CLOSE_REASONS[code] || reason || "closed"}, code ${code}`;
    if (state.ready || !state.lost) state.lost = lost;
    const why = `disconnected (${state.lost})`;
    state.ready = null;
    state.saving = false;
    keyboard.clear();
    showOverlays();
    clearInterval(countdown);
    if (retry) {
      showReconnect(why);
      countdown = setInterval(() => showReconnect(why), 250);
    } else {
      setStatus(`${why}: press Start to connect again`, true);
    }
  })
  .on("hello", (msg) => {
    state.games = msg.games;
    const wanted = $("game").value || params.get("game");
    $("game").replaceChildren(...msg.games.map((g) => new Option(g, g)));
    if (!msg.games.length) return setStatus("no games: the server has no world-model snapshot", true);
    if (wanted && msg.games.includes(wanted)) $("game").value = wanted;
    if (!state.settings && ["dream", "real", "side"].includes(params.get("mode"))) $("mode").value = params.get("mode");
    if (!state.settings && Number(params.get("fps")) >= 1) $("fps").value = params.get("fps"); // ?fps=2
    start();
  })
  .on("ready", (msg) => {
    state.ready = msg;
    state.seq = 0;
    state.saving = false;
    keyboard.setKeymap(msg.keymap);
    $("control").replaceChildren(...msg.policies.map((p) => new Option(p, p)));
    renderLegend(msg.keymap.legend);
    renderTouchpad(msg.keymap, msg.action_meanings);
    renderAgent(msg.action_meanings);
    dreamRate.reset();
    clearError();
    applySettings(msg.settings);
    if (chart.points.length) chart.mark("start", msg.game); // the history goes on across games
    const wanted = params.get("control"); // ?control=agent: watch the agent from the first tick
    if (wanted && wanted !== msg.settings.control && msg.policies.includes(wanted)) configure({ control: wanted });
    setStatus(`playing ${msg.game}`);
  })
  .on("state", (msg) => {
    clearError(); // an accepted action
    const before = state.settings;
    applySettings(msg.settings);
    if (msg.reason === "configure") chart.mark("settings", changedSettings(before, msg.settings));
    else if (msg.reason === "reset" || msg.reason === "resync") chart.mark(msg.reason);
  })
  .on("frame", ({ header, frames }) => onFrame(header, frames))
  .on("episode_end", (msg) => {
    const dream = msg.dream_return == null ? "" : `, dream return ${msg.dream_return}`;
    showBanner(`Game over after ${msg.length} steps: real return ${msg.real_return}${dream}. R to reset.`);
  })
  .on("saved", (msg) => {
    clearError();
    state.saving = false;
    setStatus(`saved ${msg.length} steps (${msg.file})`);
    const link = $("episode-link");
    link.href = msg.download;
    link.download = `${state.ready?.game || "episode"}-${msg.file}`;
    link.textContent = `Download ${msg.file}`;
    link.hidden = false;
    if (state.settings) applySettings(state.settings); // Save again
  })
  .on("error", (msg) => {
    state.saving = false; // a refused or failed save (after another error, the server refuses a second)
    showError(`${msg.code}: ${msg.message}`);
    if (state.settings) applySettings(state.settings); // the controls show what the server kept
  })
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

let prevRealLives = null; // the real lives of the last frame, to see a life the real game lost

function showScores(header) {
  const { real, dream } = header;
  const realLost = Boolean(real && prevRealLives !== null && real.lives < prevRealLives);
  prevRealLives = real ? real.lives : null;
  $("score-real").textContent = real ? fmt(real.episode_return, 0) : "–";
  $("lives-real").textContent = real ? real.lives : "–";
  $("score-dream").textContent = dream ? fmt(dream.episode_return, 0) : "–";
  $("lives-dream").textContent = dream ? dream.lives : "–";
  // A point (or a lost life) that only the dream saw: flash the dream's numbers.
  const inventedPoint = dream && dream.reward !== 0 && (!real || real.reward !== dream.reward);
  const inventedLoss = dream && dream.end && !realLost;
  const invented = inventedPoint || inventedLoss;
  if (invented) {
    const bar = $("dream-score");
    bar.classList.remove("invented");
    void bar.offsetWidth; // restart the animation
    bar.classList.add("invented");
  }
}

// "Heun, 2 steps": what a configure changed, the label of its marker on the chart.
function changedSettings(before, after) {
  const changed = (key) => !before || before[key] !== after[key];
  const parts = [];
  if (changed("mode")) parts.push(MODE_NAMES[after.mode]);
  if (changed("control")) parts.push(after.control);
  if (changed("sampler")) parts.push(after.sampler === "heun" ? "Heun" : "Euler");
  if (changed("steps")) parts.push(`${after.steps} steps`);
  if (changed("fps")) parts.push(`${after.fps} fps`);
  return parts.join(", ") || "settings";
}

let captionAt = 0;
function showChartCaption() {
  const now = performance.now();
  if (now - captionAt < 1000) return; // a caption for screen readers, not a ticker
  captionAt = now;
  const p = chart.latest();
  $("chart-caption").textContent = p
    ? `Latest PSNR ${p.last.toFixed(1)} dB; mean of the last ${p.n}: ${p.mean.toFixed(1)} dB (higher: the dream is closer to the real game).`
    : "No divergence yet: it needs Side by side.";
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
  showChartCaption();
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
  showScores(header);
  highlightLegend(header.action);
  showAgent(header.agent, header.action);
  state.lastHeader = header;
  showOverlays();
  recorder.frame({
    tick: header.tick,
    seq: header.seq,
    action: header.action,
    action_name: meanings[header.action] ?? null,
    real: header.real,
    dream: header.dream,
    agent: header.agent,
    psnr: p,
    t: Date.now(),
  });
}

// "Paused" over the screens, else the serve prompt while the game waits for FIRE.
function showOverlays() {
  const s = state.ready ? state.settings : null;
  const paused = Boolean(s && s.paused && !s.over);
  const serve = Boolean(s && !paused && !s.over && state.lastHeader && state.lastHeader.waiting_for_serve);
  $("pause-overlay").hidden = !paused;
  $("serve-overlay").hidden = !(serve && s.control === "human");
}

// -- settings and controls ------------------------------------------------------------------------
function applySettings(s) {
  const resumed = state.settings && state.settings.paused && !s.paused;
  if (resumed) dreamRate.reset(); // the figure measures play since the resume, not the pause
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
  $("screens").dataset.mode = s.mode;
  explainChoices(s);
  if (!s.over) hideBanner();
  showOverlays();
}

// Disable what the server would refuse, and say why.
function explainChoices(s) {
  const modes = state.ready ? state.ready.control_modes || {} : {};
  for (const option of $("control").options) {
    const ok = !modes[option.value] || modes[option.value].includes(s.mode);
    option.disabled = !ok;
    option.title = ok ? "" : `${option.value} reads the real emulator: not in ${MODE_NAMES[s.mode]} mode`;
  }
  const allowed = modes[s.control];
  for (const option of $("mode").options) {
    const ok = !allowed || allowed.includes(option.value);
    option.disabled = !ok;
    option.title = ok
      ? HELP.modes[option.value]
      : `the ${s.control} control reads the real emulator: switch Control first`;
  }
  $("mode").title = HELP.modes[s.mode];
  $("resync").disabled = s.mode === "real";
  $("resync").title = s.mode === "real" ? "Resync needs a dream: Dream or Side by side" : HELP.resync;
  $("save").disabled = s.mode === "dream" || state.saving; // one save at a time: a double click saves once
  $("save").title = s.mode === "dream" ? "Dream mode has no real play to save" : HELP.save;
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

// On-screen buttons for the game's buttons (shown on touch screens and narrow windows).
function renderTouchpad(keymap, meanings) {
  const used = new Set(keymap.buttons.filter((b) => meanings.some((name) => name.includes(b))));
  $("touchpad").toggleAttribute("data-updown", used.has("UP") || used.has("DOWN"));
  $("touchpad").replaceChildren(
    ...TOUCH_BUTTONS.filter(([b]) => used.has(b)).map(([b, label]) => {
      const el = document.createElement("button");
      el.type = "button";
      el.tabIndex = -1;
      el.dataset.button = b;
      el.className = `pad-${b.toLowerCase()}`;
      el.textContent = label;
      holdWhilePressed(el, () => b);
      return el;
    }),
  );
}

// Hold a button while a pointer presses el; the release is caught even off the element.
function holdWhilePressed(el, button) {
  el.addEventListener("pointerdown", (e) => {
    const b = button(e);
    if (!b || !state.ready) return;
    e.preventDefault(); // no text selection, no double-tap zoom, no focus...
    if (el.tabIndex >= 0) el.focus({ preventScroll: true }); // ...but the game area takes the keys
    el.setPointerCapture?.(e.pointerId);
    keyboard.press(e.pointerId, b);
  });
  for (const type of ["pointerup", "pointercancel", "lostpointercapture"]) {
    el.addEventListener(type, (e) => keyboard.release(e.pointerId));
  }
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
  if (!policies.includes("agent")) return showError("no trained agent for this game");
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

const keyboard = new Keyboard(
  sendInput,
  (key) => {
    if (key === "R") net.send({ type: "reset" });
    if (key === "P") net.send({ type: "pause" });
    if (key === "N") net.send({ type: "step" });
    if (key === "Y") net.send({ type: "resync" });
    if (key === "T") toggleAgent();
  },
  $("screens"),
);

// A tap or click on the screens serves while the game waits for it.
holdWhilePressed($("screens"), () => (state.lastHeader?.waiting_for_serve ? "FIRE" : null));

// A control used with the mouse or a finger gives the keys back to the game at once; one reached
// with Tab keeps the focus (keyboard.js decides where keys go).
function returnFocus(el) {
  if (keyboard.pointerFocused.has(el)) el.blur();
}

function onChange(el, fn) {
  el.addEventListener("change", () => {
    fn();
    returnFocus(el);
  });
}

function onClick(el, fn) {
  el.addEventListener("click", () => {
    fn();
    returnFocus(el);
  });
}

$("start").addEventListener("click", () => {
  start();
  $("screens").focus({ preventScroll: true }); // however Start was pressed, the keys play next
});
onChange($("game"), start);
onChange($("mode"), () => configure({ mode: $("mode").value }));
onChange($("steps"), () => configure({ steps: Number($("steps").value) }));
onChange($("sampler"), () => configure({ sampler: $("sampler").value }));
onChange($("fps"), () => configure({ fps: Number($("fps").value) }));
onChange($("control"), () => configure({ control: $("control").value }));
$("steps").addEventListener("input", () => ($("steps-out").textContent = $("steps").value));
$("fps").addEventListener("input", () => ($("fps-out").textContent = $("fps").value));
for (const type of ["reset", "pause", "step", "resync"]) onClick($(type), () => net.send({ type }));
onClick($("save"), () => {
  if (!state.ready || state.saving) return;
  state.saving = true;
  $("save").disabled = true;
  net.send({ type: "save_episode" });
  setStatus("saving episode…");
});
onClick($("record"), async () => {
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

// For the browser console (and the tests): the chart's history and markers.
window.arcade = { chart };

chart.draw();
net.connect();
