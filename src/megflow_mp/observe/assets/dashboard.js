// The live dashboard: the graph picture (dot's SVG) coloured and labelled from Server-Sent Events.
// Each event is the state of /dashboard/state: {nodes: {decl: {...}}, streams: [...]}.
"use strict";

const graphNodes = new Map(); // node declaration ("graph/name", "@/name") -> {shape, lines: [text, text]}

function fmtRate(x) {
  if (x >= 1e6) return (x / 1e6).toFixed(1) + "M";
  if (x >= 1e4) return (x / 1e3).toFixed(0) + "k";
  if (x >= 1e3) return (x / 1e3).toFixed(1) + "k";
  return x >= 10 ? x.toFixed(0) : x.toFixed(1);
}

function fmtTime(s) {
  if (s === null || s === undefined) return "-";
  if (s >= 1) return s.toFixed(2) + " s";
  if (s >= 1e-3) return (s * 1e3).toFixed(1) + " ms";
  return (s * 1e6).toFixed(0) + " us";
}

function loadOf(n) {
  const fill = n.cap > 0 ? n.queue / n.cap : 0;
  return Math.max(0, Math.min(1, Math.max(n.load, fill)));
}

async function loadGraph() {
  const box = document.getElementById("graph");
  const reply = await fetch("/dashboard/graph.svg");
  if (!reply.ok) { box.textContent = "no picture: " + await reply.text(); return; }
  box.innerHTML = await reply.text();
  for (const g of box.querySelectorAll("g.node")) {
    const title = g.querySelector("title");
    const texts = g.querySelectorAll("text");
    if (!title || texts.length < 4) continue;
    graphNodes.set(title.textContent, {
      g: g, shape: g.querySelector("path, polygon, ellipse"),
      lines: [texts[texts.length - 2], texts[texts.length - 1]],
    });
  }
}

function cell(tr, text, cls) {
  const td = document.createElement("td");
  if (cls) td.className = cls;
  if (text instanceof Node) td.appendChild(text); else td.textContent = text;
  tr.appendChild(td);
}

function showNodes(nodes) {
  for (const [decl, entry] of graphNodes) {
    const n = nodes[decl];
    if (!n) continue;
    entry.lines[0].textContent = `${fmtRate(n.in_rate)}/s in, ${fmtRate(n.out_rate)}/s out`;
    entry.lines[1].textContent = `queue ${n.queue}/${n.cap}, exec ${fmtTime(n.exec)}`;
    const load = loadOf(n);
    if (entry.shape) {
      entry.shape.setAttribute("fill", `hsl(${Math.round(120 * (1 - load))}, 70%, 85%)`);
    }
    entry.g.setAttribute("data-in-rate", n.in_rate);
    entry.g.setAttribute("data-in", n.in);
  }
  const body = document.querySelector("#nodes tbody");
  body.replaceChildren();
  for (const decl of Object.keys(nodes).sort()) {
    const n = nodes[decl], tr = document.createElement("tr");
    tr.dataset.node = decl;
    cell(tr, decl); cell(tr, n.replicas); cell(tr, fmtRate(n.in_rate)); cell(tr, fmtRate(n.out_rate));
    cell(tr, `${n.queue}/${n.cap}`); cell(tr, fmtTime(n.exec)); cell(tr, (100 * n.load).toFixed(0) + "%");
    cell(tr, n.errors); cell(tr, n.restarts);
    body.appendChild(tr);
  }
}

function showStreams(streams) {
  const body = document.querySelector("#streams tbody");
  body.replaceChildren();
  if (!streams.length) {
    const tr = document.createElement("tr");
    cell(tr, "no stream (a VideoServer starts one with POST /start/{url})", "text");
    body.appendChild(tr);
    return;
  }
  for (const s of streams) {
    const tr = document.createElement("tr");
    tr.dataset.stream = s.id;
    cell(tr, s.id); cell(tr, s.node, "text"); cell(tr, s.url || "", "url");
    cell(tr, s.state || "", "text state-" + (s.state || ""));
    cell(tr, (s.fps || 0).toFixed(1)); cell(tr, s.frames_decoded || 0); cell(tr, s.frames_sent || 0);
    cell(tr, s.frames_dropped || 0);
    cell(tr, s.latency_p50_ms == null ? "-" : `${s.latency_p50_ms.toFixed(0)} / ${s.latency_p95_ms.toFixed(0)}`);
    cell(tr, s.restarts || 0); cell(tr, s.viewers || 0);
    if (s.view_port) {
      const a = document.createElement("a");
      a.href = `${location.protocol}//${location.hostname}:${s.view_port}/view/${s.id}`;
      a.textContent = `/view/${s.id}`;
      cell(tr, a, "text");
    } else {
      cell(tr, "-", "text");
    }
    body.appendChild(tr);
  }
}

function showSinks(sinks) {
  const body = document.querySelector("#sinks tbody");
  body.replaceChildren();
  for (const k of sinks || []) {
    const tr = document.createElement("tr");
    cell(tr, k.node, "text"); cell(tr, k.replica); cell(tr, k.kind, "text"); cell(tr, k.to, "url");
    cell(tr, k.state === "down" ? `down (${k.error})` : "up", "text state-" + (k.state === "down" ? "error" : "running"));
    cell(tr, k.delivered); cell(tr, k.spooled); cell(tr, k.dropped); cell(tr, k.retries);
    body.appendChild(tr);
  }
  if (!body.children.length) {
    const tr = document.createElement("tr");
    cell(tr, "no sink (WebhookSink, MqttSink, RedisStreamSink, JsonlSink)", "text");
    body.appendChild(tr);
  }
}

function connect() {
  const status = document.getElementById("status");
  const source = new EventSource("/dashboard/events");
  source.onmessage = (event) => {
    const state = JSON.parse(event.data);
    showNodes(state.nodes);
    showStreams(state.streams);
    showSinks(state.sinks);
    status.textContent = "live, " + new Date(state.time * 1000).toLocaleTimeString();
    status.className = "live";
  };
  source.onerror = () => { status.textContent = "reconnecting"; status.className = ""; };
}

loadGraph().finally(connect);
