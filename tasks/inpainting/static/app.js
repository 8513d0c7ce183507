// The cloak page: one server session per tab (created on load), strokes drawn on <canvas id="draw">.
"use strict";
const $ = (id) => document.getElementById(id);
const state = { sid: null, video: null, frame: 0, round: 0, hasMasks: false, drawing: null, polling: false };
const COLORS = { 1: "#22dd44", 0: "#2288ff" };

async function api(path, opts = {}) {
  const r = await fetch(`/api/s/${state.sid}/${path}`, opts);
  const type = r.headers.get("content-type") || "";
  const body = type.includes("json") ? await r.json() : null;
  if (!r.ok) throw new Error((body && body.error) || `${r.status} ${r.statusText}`);
  return body;
}
function say(text) { $("message").textContent = text; $("error").textContent = ""; }
function fail(e) { $("error").textContent = e.message || String(e); }
async function guarded(fn) { try { await fn(); } catch (e) { fail(e); } }

async function init() {
  const r = await fetch("/api/session", { method: "POST" });
  const s = await r.json();
  state.sid = s.id;
  document.body.dataset.session = s.id;
  for (const v of s.videos) $("videos").add(new Option(v, v));
  say(`Open a video (uploads up to ${s.max_upload_mb} MB, ${s.max_frames} frames).`);
  document.body.dataset.ready = "1";
}

function opened(v) {
  state.video = v; state.round = 0; state.hasMasks = false; state.frame = 0;
  const [w, h] = v.display;
  for (const id of ["frame", "mask", "draw"]) { $(id).width = w; $(id).height = h; }
  $("slider").max = v.n_frames - 1; $("slider").value = 0; $("slider").disabled = false;
  $("video-info").textContent = `${v.name}: ${v.n_frames} frames, ${v.width}×${v.height}`;
  $("result-box").hidden = true; $("round").textContent = "Round 0"; $("changed").textContent = "";
  for (const id of ["dl-mp4", "dl-masks", "dl-scribbles"]) $(id).classList.add("disabled");
  $("dl-masks").href = `/api/s/${state.sid}/masks.zip`;
  $("dl-scribbles").href = `/api/s/${state.sid}/scribbles.json`;
  say(`Opened ${v.name}. Draw on the object with the Object brush, then press Segment.`);
  document.body.dataset.video = v.name;
  return show(0);
}

async function show(i) {
  state.frame = i;
  $("frame-label").textContent = `frame ${i + 1} / ${state.video.n_frames}`;
  const img = new Image();
  img.src = `/api/s/${state.sid}/frame/${i}.jpg`;
  await img.decode();
  if (state.frame !== i) return;
  $("frame").getContext("2d").drawImage(img, 0, 0);
  await drawMask(i);
  await drawStrokes(i);
  document.body.dataset.shown = `${i}:${state.round}`;
}

async function drawMask(i) {
  const ctx = $("mask").getContext("2d");
  ctx.clearRect(0, 0, $("mask").width, $("mask").height);
  if (!state.hasMasks || !$("show-mask").checked) return;
  const img = new Image();
  img.src = `/api/s/${state.sid}/mask/${i}.png?round=${state.round}`;
  await img.decode();
  if (state.frame === i) ctx.drawImage(img, 0, 0);
}

function line(ctx, pts, oid) {
  ctx.strokeStyle = ctx.fillStyle = COLORS[oid]; ctx.lineWidth = 3; ctx.lineCap = ctx.lineJoin = "round";
  ctx.beginPath();
  if (pts.length === 1) { ctx.arc(pts[0][0], pts[0][1], 2, 0, 7); ctx.fill(); return; }
  pts.forEach(([x, y], k) => (k ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
  ctx.stroke();
}

async function drawStrokes(i) {
  const { strokes } = await api(`strokes/${i}`);
  if (state.frame !== i) return;
  const ctx = $("draw").getContext("2d");
  ctx.clearRect(0, 0, $("draw").width, $("draw").height);
  for (const s of strokes) line(ctx, s.points, s.object_id);
}

function point(ev) {
  const c = $("draw"), r = c.getBoundingClientRect();
  return [(ev.clientX - r.left) * c.width / r.width, (ev.clientY - r.top) * c.height / r.height];
}
function brush() { return Number(document.querySelector("input[name=brush]:checked").value); }

$("draw").addEventListener("pointerdown", (ev) => {
  if (!state.video) return;
  $("draw").setPointerCapture(ev.pointerId);
  state.drawing = { frame: state.frame, object_id: brush(), points: [point(ev)] };
});
$("draw").addEventListener("pointermove", (ev) => {
  const d = state.drawing;
  if (!d) return;
  const p = point(ev), q = d.points[d.points.length - 1];
  line($("draw").getContext("2d"), [q, p], d.object_id);
  d.points.push(p);
});
$("draw").addEventListener("pointerup", () => guarded(async () => {
  const d = state.drawing;
  state.drawing = null;
  if (!d) return;
  try {
    const s = await api("stroke", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(d) });
    document.body.dataset.strokes = String(s.n_strokes);
    say(`${s.n_strokes} stroke(s) on frames ${s.stroked_frames.map((f) => f + 1).join(", ")}. Press Segment.`);
    $("dl-scribbles").classList.remove("disabled");
  } finally { await drawStrokes(d.frame); }
}));

$("slider").addEventListener("input", () => guarded(() => show(Number($("slider").value))));
$("show-mask").addEventListener("change", () => guarded(() => drawMask(state.frame)));
$("open-listed").addEventListener("click", () => guarded(async () => {
  say(`Opening ${$("videos").value}…`);
  const r = await api(`open?video=${encodeURIComponent($("videos").value)}`, { method: "POST" });
  await opened(r.video);
}));
$("upload").addEventListener("change", () => guarded(async () => {
  const f = $("upload").files[0];
  if (!f) return;
  say(`Uploading ${f.name} (${(f.size / 1e6).toFixed(1)} MB)…`);
  try {
    const r = await api(`upload?filename=${encodeURIComponent(f.name)}`, { method: "POST", body: f });
    await opened(r.video);
  } finally { $("upload").value = ""; }
}));
async function edit(path, what) {
  const s = await api(path, { method: "POST" });
  document.body.dataset.strokes = String(s.n_strokes);
  say(`${what}: ${s.n_strokes} stroke(s) left.`);
  await drawStrokes(state.frame);
}
$("undo").addEventListener("click", () => guarded(() => edit("undo", "Undone")));
$("clear").addEventListener("click", () => guarded(() => edit(`clear/${state.frame}`, `Frame ${state.frame + 1} cleared`)));
document.addEventListener("keydown", (ev) => {
  if ((ev.ctrlKey || ev.metaKey) && ev.key === "z") { ev.preventDefault(); guarded(() => edit("undo", "Undone")); }
});

async function startJob(kind) {
  const t0 = performance.now();
  await api(kind, { method: "POST" });
  say(kind === "segment" ? "Segmenting…" : "Removing the object…");
  $("cancel").disabled = false;
  document.body.dataset.job = "running";
  const job = await poll();
  $("cancel").disabled = true;
  const s = await api("status");
  if (job.state === "done") {
    state.round = s.round; state.hasMasks = s.has_masks;
    const changed = s.changed_frames;
    $("round").textContent = `Round ${s.round}`;
    $("changed").textContent = `${changed.length} frame(s) changed: ${changed.map((f) => f + 1).join(", ")}`;
    for (const id of ["dl-masks", "dl-scribbles"]) $(id).classList.remove("disabled");
    await show(state.frame);
    const seconds = ((performance.now() - t0) / 1000).toFixed(1);
    if (kind === "remove") {
      $("result").src = `/api/s/${state.sid}/result.mp4?round=${s.round}`;
      $("result-box").hidden = false;
      $("dl-mp4").href = $("result").src; $("dl-mp4").classList.remove("disabled");
      $("result").play().catch(() => {});
      say(`Object removed in ${seconds} s. Download the video, the masks or the scribbles.`);
    } else {
      say(`Round ${s.round}: masks on all ${state.video.n_frames} frames in ${seconds} s. Correct any frame and Segment again, or Remove.`);
    }
    document.body.dataset.seconds = seconds;
  } else if (job.state === "cancelled") {
    say("Cancelled: the previous masks are kept.");
  } else {
    fail(new Error(job.error || "failed"));
  }
  document.body.dataset.job = job.state;
  document.body.dataset.round = String(state.round);
}

async function poll() {
  for (;;) {
    const s = await api("status");
    const j = s.job;
    $("progress").max = Math.max(1, j.total); $("progress").value = j.done;
    $("progress-text").textContent = j.state === "queued" ? "waiting for the machine…" : `${j.stage} ${j.done}/${j.total}`;
    if (!["queued", "running"].includes(j.state)) return j;
    await new Promise((r) => setTimeout(r, 150));
  }
}
$("segment").addEventListener("click", () => guarded(() => startJob("segment")));
$("remove").addEventListener("click", () => guarded(() => startJob("remove")));
$("cancel").addEventListener("click", () => guarded(() => api("cancel", { method: "POST" })));

init().catch(fail);
