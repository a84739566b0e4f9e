// DBC policy viewer client: one websocket, JSON for control, one binary message per tick holding
// both sides' PNG frames ([uint32 BE length][PNG] x 2). Protocol: server/viewer.py.

const $ = (id) => document.getElementById(id);
const state = { tasks: {}, ws: null, running: false, paused: false, pendingTick: null, ticks: 0 };

function setStatus(text) { $("status").textContent = text; }

function fillSelect(sel, items, pick) {
  sel.innerHTML = "";
  for (const it of items) {
    const o = document.createElement("option");
    o.value = it.value; o.textContent = it.label;
    sel.appendChild(o);
  }
  if (pick !== undefined && items.some((i) => i.value === pick)) sel.value = pick;
}

function onTaskChange() {
  const info = state.tasks[$("task").value];
  if (!info) return;
  const pols = info.policies.map((p) => ({ value: p.name, label: `${p.name} (${p.algo}, λ=${p.lambda})` }));
  const bc = info.policies.find((p) => p.algo === "bc");
  const dbc = info.policies.find((p) => p.algo === "dbc");
  fillSelect($("left"), pols, bc && bc.name);
  fillSelect($("right"), pols, dbc && dbc.name);
  const modes = info.modes.map((m) => ({ value: m, label: m === "dream" ? "dream (world model)" : "real game" }));
  fillSelect($("mode"), modes, "real");
  $("start").disabled = pols.length === 0;
  loadResults($("task").value);
}

async function loadTasks() {
  const r = await fetch("/api/viewer/tasks");
  const doc = await r.json();
  state.tasks = doc.tasks;
  const names = Object.keys(doc.tasks).filter((t) => doc.tasks[t].policies.length > 0);
  fillSelect($("task"), (names.length ? names : Object.keys(doc.tasks)).map((t) => ({ value: t, label: t })));
  onTaskChange();
}

// ---- results table + plot (from the evaluation JSON) ----------------------------------------
async function loadResults(task) {
  const thead = $("table").querySelector("thead"), tbody = $("table").querySelector("tbody");
  thead.innerHTML = ""; tbody.innerHTML = "";
  const ctx = $("plot").getContext("2d");
  ctx.clearRect(0, 0, $("plot").width, $("plot").height);
  const r = await fetch(`/api/viewer/results/${task}`);
  if (!r.ok) { $("results-note").textContent = `No evaluation results for ${task} yet.`; return; }
  const doc = await r.json();
  const metric = task === "maze" ? "success %" : "return";
  thead.innerHTML = `<tr><th>method</th><th>${metric} (ours)</th><th>per seed</th><th>paper</th></tr>`;
  const rows = [];
  for (const [algo, s] of Object.entries(doc.summary)) {
    const paper = doc.paper && doc.paper[algo.toUpperCase()];
    rows.push({ label: algo.toUpperCase(), mean: s.mean, std: s.std, seeds: s.per_seed, paper });
    const tr = document.createElement("tr");
    tr.innerHTML = `<td>${algo.toUpperCase()}</td><td>${s.mean.toFixed(1)} ± ${s.std.toFixed(1)}</td>` +
      `<td>${s.per_seed.map((v) => v.toFixed(1)).join(", ")}</td>` +
      `<td>${paper ? `${paper.mean} ± ${paper.std}` : "—"}</td>`;
    tbody.appendChild(tr);
  }
  $("results-note").textContent = `${doc.episodes} episodes per policy (seeds ${doc.episode_seed}..` +
    `${doc.episode_seed + doc.episodes - 1}), identical for every method.`;
  const log = task !== "maze"; // returns: the expert's is 30 times BC's, and both must show
  drawPlot(ctx, rows, task === "maze" ? 100 : Math.max(1, ...rows.map((r) => r.mean + r.std)) * 1.15, log, metric);
}

// Bars of the mean (ours, and the paper's where known), ±1 std whiskers and a dot per seed. The
// log axis plots log10(1 + v), so 0 stays at the bottom and a return of 3 beside the expert's 97
// is still a bar to see. What is drawn is also in the canvas's aria-label and, in canvas pixels,
// in its data-bars.
function drawPlot(ctx, rows, ymax, log, metric) {
  const W = ctx.canvas.width, H = ctx.canvas.height, pad = 36, top = 24;
  const f = log ? (v) => Math.log10(1 + Math.max(0, v)) : (v) => Math.max(0, v);
  const y = (v) => H - pad - (f(v) / f(ymax)) * (H - pad - top);
  ctx.fillStyle = "#000"; ctx.fillRect(0, 0, W, H);
  ctx.font = "11px system-ui"; ctx.textAlign = "right";
  const ticks = log ? [0, 1, 10, 100, 1000, 10000].filter((t) => t <= ymax) : [0, ymax / 2, ymax];
  for (const t of ticks) {
    ctx.strokeStyle = "#222"; ctx.beginPath(); ctx.moveTo(pad, y(t)); ctx.lineTo(W - 10, y(t)); ctx.stroke();
    ctx.fillStyle = "#8a8f9c"; ctx.fillText(String(t), pad - 4, y(t) + 4);
  }
  ctx.textAlign = "left"; ctx.fillText(`${metric}${log ? " (log scale)" : ""}`, pad + 4, 12);
  ctx.strokeStyle = "#555"; ctx.beginPath();
  ctx.moveTo(pad, top - 4); ctx.lineTo(pad, H - pad); ctx.lineTo(W - 10, H - pad); ctx.stroke();
  const bars = [];
  for (const r of rows) {
    bars.push({ label: `${r.label} ours`, mean: r.mean, std: r.std, seeds: r.seeds, color: r.label === "DBC" ? "#e1812c" : "#7f8fa6" });
    if (r.paper) bars.push({ label: `${r.label} paper`, mean: r.paper.mean, std: r.paper.std, seeds: [], color: "#cfd8e3" });
  }
  const bw = (W - pad - 20) / Math.max(1, bars.length);
  ctx.textAlign = "center";
  const drawn = bars.map((b, i) => {
    const x = pad + 10 + i * bw, mid = x + bw * 0.35;
    ctx.fillStyle = b.color; ctx.fillRect(x, y(b.mean), bw * 0.7, y(0) - y(b.mean));
    ctx.strokeStyle = "#ccc"; ctx.beginPath();
    ctx.moveTo(mid, y(b.mean - b.std)); ctx.lineTo(mid, y(b.mean + b.std)); ctx.stroke();
    ctx.fillStyle = "#e6e6e6";
    for (const v of b.seeds) { ctx.beginPath(); ctx.arc(mid, y(v), 2.5, 0, 7); ctx.fill(); }
    ctx.fillText(b.label, mid, H - pad + 14);
    ctx.fillText(b.mean.toFixed(1), mid, y(b.mean) - 4);
    const [left, width, barTop, bottom] = [x, bw * 0.7, y(b.mean), y(0)].map(Math.round);
    return { label: b.label, mean: b.mean, x: left, width, top: barTop, bottom };
  });
  ctx.canvas.dataset.bars = JSON.stringify(drawn);
  ctx.canvas.setAttribute("aria-label", `Mean ${metric} per method${log ? " (log scale)" : ""}: ` +
    drawn.map((b) => `${b.label} ${b.mean.toFixed(1)}`).join(", "));
}

// ---- live session ------------------------------------------------------------------------------
function connect() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${proto}://${location.host}/ws/viewer`);
  ws.binaryType = "arraybuffer";
  ws.onopen = () => setStatus("connected");
  ws.onclose = () => { setStatus("disconnected"); state.running = false; updateButtons(); };
  ws.onmessage = (ev) => (typeof ev.data === "string" ? onJSON(JSON.parse(ev.data)) : onFrames(ev.data));
  state.ws = ws;
}

const handlers = {
  started(msg) {
    state.running = true; state.paused = false; state.ticks = 0; state.task = msg.task;
    msg.sides.forEach((s, i) => {
      $(`side-${i}`).querySelector(".name").textContent = `${s.name} — ${s.algo.toUpperCase()} (λ=${s.lambda}, seed ${s.seed})`;
    });
    setStatus(`running ${msg.task} (${msg.mode}), seed ${msg.seed}`);
    updateButtons();
  },
  tick(msg) { state.pendingTick = msg; state.ticks += 1; renderInfo(msg); },
  stopped() { state.running = false; setStatus("stopped"); updateButtons(); },
  error(msg) { setStatus(`error: ${msg.message}`); },
};

function onJSON(msg) { (handlers[msg.type] || (() => {}))(msg); }

async function onFrames(buf) {
  const view = new DataView(buf);
  let off = 0, i = 0;
  while (off < buf.byteLength && i < 2) {
    const len = view.getUint32(off); off += 4;
    const bmp = await createImageBitmap(new Blob([new Uint8Array(buf, off, len)], { type: "image/png" }));
    off += len;
    const canvas = $(`side-${i}`).querySelector(".screen");
    const ctx = canvas.getContext("2d");
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(bmp, 0, 0, canvas.width, canvas.height);
    i += 1;
  }
  document.body.dataset.frames = String(Number(document.body.dataset.frames || 0) + 1);
}

function renderInfo(msg) {
  msg.sides.forEach((s, i) => {
    const root = $(`side-${i}`);
    if (s.action !== undefined) root.querySelector(".action").replaceChildren(renderAction(s));
    const like = s.expert_likeness;
    root.querySelector(".likeness").textContent = like === null || like === undefined
      ? "expert-likeness: —"
      : `expert-likeness L_agent − L_expert: ${like.toFixed(4)}` + (s.reference_action ? ` (vs ${s.reference_action})` : "");
    const st = s.stats;
    let score = "first episode running";
    if (st.episodes > 0) {
      score = state.task === "maze"
        ? `success ${st.successes}/${st.episodes} (${st.success_rate.toFixed(0)}%)`
        : `mean return ${st.mean_return.toFixed(1)} over ${st.episodes} episodes`;
    }
    root.querySelector(".stats").textContent = `episode ${msg.episode + 1}, seed ${msg.seed}, t=${s.t}` +
      (s.return !== undefined ? `, return ${s.return}` : "") + (s.done ? " (done)" : "") + ` — ${score}`;
  });
}

function renderAction(s) {
  const wrap = document.createElement("div");
  if (Array.isArray(s.probs)) {  // discrete: bars over the action set
    const names = ["NOOP", "FIRE", "RIGHT", "LEFT"];
    s.probs.forEach((p, k) => {
      const row = document.createElement("div");
      row.className = "bar" + (k === s.action ? " chosen" : "");
      row.innerHTML = `<span class="lbl">${names[k] || k}</span><span class="fill" style="width:${Math.round(p * 150)}px"></span><span>${p.toFixed(2)}</span>`;
      wrap.appendChild(row);
    });
  } else if (Array.isArray(s.action)) {  // continuous: an arrow
    const c = document.createElement("canvas"); c.width = 72; c.height = 72;
    const ctx = c.getContext("2d");
    ctx.strokeStyle = "#ccc"; ctx.strokeRect(0.5, 0.5, 71, 71);
    const [ax, ay] = s.action;
    ctx.strokeStyle = "#e1812c"; ctx.lineWidth = 3; ctx.beginPath();
    ctx.moveTo(36, 36); ctx.lineTo(36 + ax * 30, 36 - ay * 30); ctx.stroke();
    const label = document.createElement("span");
    label.textContent = ` a = (${ax.toFixed(2)}, ${ay.toFixed(2)})`;
    wrap.append(c, label);
  }
  return wrap;
}

function updateButtons() {
  $("pause").disabled = !state.running;
  $("stop").disabled = !state.running;
  $("pause").textContent = state.paused ? "Resume" : "Pause";
}

function send(obj) { if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(obj)); }

$("start").onclick = () => send({
  type: "start", task: $("task").value, left: $("left").value, right: $("right").value,
  seed: Number($("seed").value), mode: $("mode").value, fps: Number($("fps").value),
});
$("pause").onclick = () => { state.paused = !state.paused; send({ type: state.paused ? "pause" : "resume" }); updateButtons(); };
$("stop").onclick = () => send({ type: "stop" });
$("fps").oninput = () => { $("fps-val").textContent = $("fps").value; send({ type: "speed", fps: Number($("fps").value) }); };
$("task").onchange = onTaskChange;

connect();
loadTasks();
