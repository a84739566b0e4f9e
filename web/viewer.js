// DBC policy viewer client: one websocket, JSON for control, one binary message per tick holding
// both sides' PNG frames ([uint32 BE length][PNG] x 2). Protocol: server/viewer.py.

const $ = (id) => document.getElementById(id);
const state = { tasks: {}, ws: null, running: false, paused: false, pendingTick: null, ticks: 0, resultsToken: 0 };

// Algorithm names as the evaluation JSON's keys, as people say them, and as the paper's table does.
const ALGO = { bc: "BC", dbc: "DBC", diffusion_policy: "Diffusion Policy", expert: "scripted expert", random: "random play" };
const PAPER = { bc: "BC", dbc: "DBC", diffusion_policy: "Diffusion Policy" };
const ORDER = ["bc", "dbc", "diffusion_policy"];
const algoName = (a) => ALGO[a] || String(a);
const shortName = (a) => PAPER[a] || String(a).toUpperCase(); // table rows and plot bars: BC, DBC, EXPERT, ...

const CAPTIONS = {
  maze: "Maze from above: walls dark, the goal a green ring (success within 0.5), the ball red (green on " +
    "success), its path blue, the action an orange arrow.",
  fetch: "FetchPick drawn from the state vector: the top view (x–y, the table in grey) above the side view " +
    "(x–z, the table top a line). Green ring: the goal (success = cube within 5 cm at the last of 50 steps); " +
    "square: the cube (green once within 5 cm); blue: the cube's path; the two dark bars: the fingers around " +
    "the gripper; orange: the commanded x–y move.",
  breakout: "Breakout frames (64×64) from the real game, or from the world model in dream mode.",
};

function setStatus(text) { $("status").textContent = text; }

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

// Commands in a block, each whole (a long one wraps with a hanging indent) and selectable.
function commandBlock(lines) {
  const pre = el("pre", undefined, "commands");
  pre.append(...lines.map((line) => el("code", line)));
  return pre;
}

function policyLabel(p) {
  if (p.algo === "expert") return `${p.name} (scripted expert)`;
  if (p.algo === "diffusion_policy") return `${p.name} (Diffusion Policy, seed ${p.seed})`;
  return `${p.name} (${p.algo}, λ=${p.lambda})`;
}

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
  const task = $("task").value;
  const info = state.tasks[task];
  if (!info) return;
  const pols = info.policies.map((p) => ({ value: p.name, label: policyLabel(p) }));
  const left = (info.policies.find((p) => p.algo === "bc") || info.policies[0] || {}).name;
  const right = (info.policies.find((p) => p.algo === "dbc") || info.policies.find((p) => p.name !== left) || {}).name || left;
  fillSelect($("left"), pols, left);
  fillSelect($("right"), pols, right);
  const modes = info.modes.map((m) => ({ value: m, label: m === "dream" ? "dream (world model)" : "real game" }));
  fillSelect($("mode"), modes, "real");
  $("start").disabled = pols.length === 0;
  $("view-caption").textContent = CAPTIONS[task] || "";
  renderAvailability(info);
  const token = ++state.resultsToken; // a later task change wins over a slow answer for this one
  loadResults(task, token);
  loadGeneralisation(task, token);
}

// Which policies can be watched, which the task expects but nobody trained, and the commands that
// train them (into the folder this server reads).
function renderAvailability(info) {
  const box = $("availability");
  box.replaceChildren();
  let text = `${info.title}: ${info.policies.length} ${info.policies.length === 1 ? "policy" : "policies"} available — ` +
    (info.policies.map(policyLabel).join(", ") || "none") + ".";
  if (info.missing.length) text += ` Not trained yet: ${info.missing.map(algoName).join(", ")} (none in ${info.folder}).`;
  if (!info.diffusion) text += " No diffusion model (phi) either, so no expert-likeness.";
  box.append(el("p", text, "policy-note"));
  if (info.missing.length || !info.diffusion) {
    box.append(el("p", `Train them with the repository's commands (phi first; they write into ${info.folder}), then reload this page:`));
    box.append(commandBlock(info.commands.train));
  }
}

async function loadTasks() {
  const r = await fetch("/api/viewer/tasks");
  const doc = await r.json();
  state.tasks = doc.tasks;
  const names = Object.keys(doc.tasks).filter((t) => doc.tasks[t].policies.length > 0);
  const items = (names.length ? names : Object.keys(doc.tasks)).map((t) => ({ value: t, label: doc.tasks[t].title || t }));
  fillSelect($("task"), items);
  onTaskChange();
}

// ---- results table + plot (from the evaluation JSON) ----------------------------------------
const episodes = (n) => `${n} episode${n === 1 ? "" : "s"}`;
const signed = (v) => `${v >= 0 ? "+" : "−"}${Math.abs(v).toFixed(1)}`;
const ordered = (summary) => [...ORDER.filter((a) => a in summary), ...Object.keys(summary).filter((a) => !ORDER.includes(a))];

function tableRow(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) tr.append(el("td", c));
  return tr;
}

function headRow(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) tr.append(el("th", c));
  return tr;
}

// "No results yet": say so, where they would be, and the command that makes them.
function missingNote(box, what, info, file, lines) {
  box.replaceChildren(el("p", `No ${what} for ${info.title} yet (${info.folder}/${file} is missing). Make them with:`));
  box.append(commandBlock(lines));
}

async function loadResults(task, token) {
  const thead = $("table").querySelector("thead"), tbody = $("table").querySelector("tbody");
  thead.replaceChildren(); tbody.replaceChildren(); $("results-note").replaceChildren();
  const ctx = $("plot").getContext("2d");
  ctx.clearRect(0, 0, $("plot").width, $("plot").height);
  delete ctx.canvas.dataset.bars;
  const info = state.tasks[task];
  const r = await fetch(`/api/viewer/results/${task}`);
  const doc = r.ok ? await r.json() : null;
  if (token !== state.resultsToken) return;
  $("plot").hidden = !doc;
  if (!doc) { missingNote($("results-note"), "evaluation results", info, "eval.json", info.commands.evaluate); return; }
  const success = task !== "breakout";
  const metric = success ? "success %" : "return";
  // Differences to BC with their paired-bootstrap intervals (evaluations that wrote them).
  const diffs = Object.fromEntries((doc.comparisons || []).filter((c) => c.b === "bc").map((c) => [c.a, c]));
  const hasDiffs = Object.keys(diffs).length > 0;
  thead.append(headRow(["method", `${metric} (ours)`, "per seed",
    ...(hasDiffs ? ["difference to BC, 95 % CI (episodes / seeds + episodes)"] : []), "paper"]));
  const rows = [];
  for (const algo of ordered(doc.summary)) {
    const s = doc.summary[algo];
    const paper = doc.paper && doc.paper[PAPER[algo] || algo.toUpperCase()];
    rows.push({ label: shortName(algo), mean: s.mean, std: s.std, seeds: s.per_seed, paper });
    const c = diffs[algo];
    const diff = c ? `${signed(c.diff)} [${signed(c.ci95_episodes[0])}, ${signed(c.ci95_episodes[1])}] / ` +
      `[${signed(c.ci95_seeds_episodes[0])}, ${signed(c.ci95_seeds_episodes[1])}]` : "—";
    const name = algo in PAPER ? shortName(algo) : `${shortName(algo)} (${algoName(algo)})`;
    tbody.append(tableRow([name, `${s.mean.toFixed(1)} ± ${s.std.toFixed(1)}`,
      s.per_seed.map((v) => v.toFixed(1)).join(", "), ...(hasDiffs ? [diff] : []),
      paper ? `${paper.mean} ± ${paper.std}` : "—"]));
  }
  const noise = doc.noise ? `, start and goal moved by up to ${doc.noise} m` : "";
  $("results-note").replaceChildren(el("p", `${episodes(doc.episodes)} per policy (seeds ${doc.episode_seed}..` +
    `${doc.episode_seed + doc.episodes - 1}${noise}), identical for every method; ± is the spread over training seeds.`));
  const log = !success; // returns: the expert's is 30 times BC's, and both must show
  drawPlot(ctx, rows, success ? 100 : Math.max(1, ...rows.map((r) => r.mean + r.std)) * 1.15, log, metric);
}

// FetchPick's generalisation table: success % per method at each start/goal noise level.
async function loadGeneralisation(task, token) {
  const box = $("generalisation");
  const thead = $("gen-table").querySelector("thead"), tbody = $("gen-table").querySelector("tbody");
  thead.replaceChildren(); tbody.replaceChildren(); $("gen-note").replaceChildren();
  const info = state.tasks[task];
  box.hidden = !info.commands.generalise;
  if (box.hidden) return;
  const r = await fetch(`/api/viewer/generalisation/${task}`);
  const doc = r.ok ? await r.json() : null;
  if (token !== state.resultsToken) return;
  if (!doc) {
    missingNote($("gen-note"), "generalisation results", info, "generalisation.json", info.commands.generalise);
    return;
  }
  thead.append(headRow(["method", ...doc.noise_levels.map((n) => `noise ${n} m`)]));
  const algos = ordered(Object.assign({}, ...doc.levels.map((d) => d.summary)));
  for (const algo of algos) {
    const cells = doc.levels.map((d) => {
      const s = d.summary[algo];
      return !s ? "—" : s.n > 1 ? `${s.mean.toFixed(1)} ± ${s.std.toFixed(1)}` : s.mean.toFixed(1);
    });
    tbody.append(tableRow([algo in PAPER ? shortName(algo) : algoName(algo), ...cells]));
  }
  $("gen-note").replaceChildren(el("p", `Success % over ${episodes(doc.episodes)} per policy and level (seeds ` +
    `${doc.episode_seed}..${doc.episode_seed + doc.episodes - 1}); at each level the gripper, the cube and the goal ` +
    "start up to that far (per axis) from where the demonstrations' episodes would put them."));
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
    bars.push({ name: r.label, which: "ours", mean: r.mean, std: r.std, seeds: r.seeds, color: r.label === "DBC" ? "#e1812c" : "#7f8fa6" });
    if (r.paper) bars.push({ name: r.label, which: "paper", mean: r.paper.mean, std: r.paper.std, seeds: [], color: "#cfd8e3" });
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
    ctx.fillText(b.name, mid, H - pad + 14, bw - 4); // squeezed to its bar's width, "ours"/"paper" below
    ctx.fillText(b.which, mid, H - pad + 27, bw - 4);
    ctx.fillText(b.mean.toFixed(1), mid, y(b.mean) - 4);
    const [left, width, barTop, bottom] = [x, bw * 0.7, y(b.mean), y(0)].map(Math.round);
    return { label: `${b.name} ${b.which}`, mean: b.mean, x: left, width, top: barTop, bottom };
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
    state.running = true; state.paused = Boolean(msg.paused); state.ticks = 0; state.task = msg.task;
    msg.sides.forEach((s, i) => {
      const root = $(`side-${i}`);
      root.querySelector(".name").textContent = s.algo === "expert" ? `${s.name} — scripted expert`
        : s.algo === "diffusion_policy" ? `${s.name} — Diffusion Policy (seed ${s.seed})`
          : `${s.name} — ${s.algo.toUpperCase()} (λ=${s.lambda}, seed ${s.seed})`;
      for (const part of [".action", ".likeness", ".stats"]) root.querySelector(part).replaceChildren();
    });
    setStatus(`running ${msg.task} (${msg.mode}), seed ${msg.seed}`);
    updateButtons();
  },
  tick(msg) { state.pendingTick = msg; state.ticks += 1; renderInfo(msg); },
  stopped() { state.running = false; state.paused = false; setStatus("stopped"); updateButtons(); },
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
      score = state.task !== "breakout"
        ? `success ${st.successes}/${st.episodes} (${st.success_rate.toFixed(0)}%)`
        : `mean return ${st.mean_return.toFixed(1)} over ${st.episodes} episodes`;
    }
    root.querySelector(".stats").textContent = `episode ${msg.episode + 1}, seed ${msg.seed}, t=${s.t}` +
      (s.return !== undefined ? `, return ${s.return}` : "") +
      (s.cube_to_goal !== undefined ? `, cube to goal ${(100 * s.cube_to_goal).toFixed(1)} cm` : "") +
      (s.done ? " (done)" : "") + ` — ${score}`;
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
  } else if (Array.isArray(s.action)) {  // continuous: an arrow for x-y (FetchPick: and a z bar)
    const fetchPick = s.action.length === 4;
    const c = document.createElement("canvas"); c.width = fetchPick ? 96 : 72; c.height = 72;
    const ctx = c.getContext("2d");
    ctx.strokeStyle = "#ccc"; ctx.strokeRect(0.5, 0.5, 71, 71);
    const [ax, ay, az, fingers] = s.action;
    ctx.strokeStyle = "#e1812c"; ctx.lineWidth = 3; ctx.beginPath();
    ctx.moveTo(36, 36); ctx.lineTo(36 + ax * 30, 36 - ay * 30); ctx.stroke();
    if (fetchPick) {  // up / down as a bar from the middle of its own box
      ctx.lineWidth = 1; ctx.strokeStyle = "#ccc"; ctx.strokeRect(78.5, 0.5, 17, 71);
      ctx.fillStyle = "#e1812c"; ctx.fillRect(81, Math.min(36, 36 - az * 34), 12, Math.abs(az * 34));
    }
    const label = document.createElement("span");
    label.textContent = ` a = (${s.action.map((v) => v.toFixed(2)).join(", ")})` + (fetchPick
      ? ` — move x, y (arrow), z (bar), fingers ${fingers >= 0 ? "open" : "close"}` : "");
    wrap.append(c, label);
  }
  return wrap;
}

function updateButtons() {
  $("pause").disabled = !state.running;
  $("step").disabled = !state.running;
  $("stop").disabled = !state.running;
  $("pause").textContent = state.paused ? "Resume" : "Pause";
}

function send(obj) { if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(obj)); }

$("start").onclick = () => send({
  type: "start", task: $("task").value, left: $("left").value, right: $("right").value,
  seed: Number($("seed").value), mode: $("mode").value, fps: Number($("fps").value),
});
$("pause").onclick = () => { state.paused = !state.paused; send({ type: state.paused ? "pause" : "resume" }); updateButtons(); };
$("step").onclick = () => { state.paused = true; send({ type: "step" }); updateButtons(); };
$("stop").onclick = () => send({ type: "stop" });
$("fps").oninput = () => { $("fps-val").textContent = $("fps").value; send({ type: "speed", fps: Number($("fps").value) }); };
$("task").onchange = onTaskChange;

connect();
loadTasks();
