#include "sandrun/report.h"

#include <algorithm>
#include <cctype>
#include <iterator>
#include <map>
#include <string_view>
#include <utility>

#include <nlohmann/json.hpp>

#include "sandrun/archive.h"
#include "sandrun/util.h"

namespace sandrun {
namespace {

using Json = nlohmann::ordered_json;

constexpr std::size_t kMaxFailuresPerTask = 10;
constexpr std::size_t kMaxFailureLines = 12;
constexpr std::size_t kMaxFailureBytes = 2000;

// The last `max_bytes` of `text`, starting at a line when one begins close
// enough, never inside a UTF-8 sequence. `*cut` says whether anything went.
std::string Tail(const std::string& text, std::size_t max_bytes, bool* cut) {
  *cut = text.size() > max_bytes;
  if (!*cut) return text;
  std::size_t start = text.size() - max_bytes;
  std::size_t newline = text.find('\n', start);
  if (newline != std::string::npos && newline - start < max_bytes / 4) start = newline + 1;
  while (start < text.size() && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) ++start;
  return text.substr(start);
}

// "path:LINE: rest" or "path:LINE:COL: rest" with a path without blanks:
// sets `where` ("path:LINE") and `rest`.
bool SplitLocation(std::string_view line, std::string* where, std::string_view* rest) {
  std::size_t colon = line.find(':');
  if (colon == 0 || colon == std::string_view::npos) return false;
  std::string_view path = line.substr(0, colon);
  if (std::any_of(path.begin(), path.end(), [](char c) { return c == ' ' || c == '\t'; })) {
    return false;
  }
  std::size_t digits = colon + 1;
  while (digits < line.size() && std::isdigit(static_cast<unsigned char>(line[digits]))) ++digits;
  if (digits == colon + 1 || digits >= line.size() || line[digits] != ':') return false;
  *where = std::string(line.substr(0, digits));
  std::size_t after = digits + 1;
  // An optional column.
  std::size_t col = after;
  while (col < line.size() && std::isdigit(static_cast<unsigned char>(line[col]))) ++col;
  if (col > after && col < line.size() && line[col] == ':') after = col + 1;
  while (after < line.size() && line[after] == ' ') ++after;
  *rest = line.substr(after);
  return true;
}

bool LooksLikeError(std::string_view rest) {
  std::string lower(rest.substr(0, 200));
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const char* word : {"error", "assert", "fail", "fatal"}) {
    if (lower.find(word) != std::string::npos) return true;
  }
  return false;
}

// The failure messages in a task's output, at file:line: GoogleTest's
// "file:LINE: Failure" blocks (to the next blank line or "[ ... ]" line) and
// compiler-style "file:LINE[:COL]: error: ..." / assert() lines.
Json FailureMessages(const std::string& text) {
  Json failures = Json::array();
  std::size_t pos = 0;
  while (pos < text.size() && failures.size() < kMaxFailuresPerTask) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + pos, end - pos);
    pos = end + 1;
    std::string where;
    std::string_view rest;
    if (!SplitLocation(line, &where, &rest) || !LooksLikeError(rest)) continue;
    std::string message;
    if (rest.substr(0, 7) == "Failure") {
      for (std::size_t lines = 0; pos < text.size() && lines < kMaxFailureLines; ++lines) {
        std::size_t next = text.find('\n', pos);
        if (next == std::string::npos) next = text.size();
        std::string_view body(text.data() + pos, next - pos);
        if (body.empty() || body.substr(0, 1) == "[") break;
        message += (message.empty() ? "" : "\n") + std::string(body);
        pos = next + 1;
      }
    }
    if (message.empty()) message = std::string(rest);
    if (message.size() > kMaxFailureBytes) message = message.substr(0, kMaxFailureBytes) + " ...";
    failures.push_back({{"at", where}, {"text", message}});
  }
  return failures;
}

// Why a task that did not pass ended, in one line ("" when it passed).
std::string Reason(const ExecResult& r) {
  switch (r.outcome) {
    case Outcome::kExited:
      return r.exit_code == 0 ? "" : "exited with " + std::to_string(r.exit_code);
    case Outcome::kSignaled: return "crashed: killed by signal " + SignalText(r.signal);
    case Outcome::kTimedOut:
      return "timed out" + (r.ended_by.empty() ? "" : " (ended by " + r.ended_by + ")");
    case Outcome::kOomKilled: return "killed for exceeding its memory limit";
    default: return r.error;
  }
}

Json StreamJson(const CapturedStream& stream, std::size_t max_bytes) {
  bool cut = false;
  Json json = {{"tail", Tail(stream.text, max_bytes, &cut)}, {"bytes", stream.total_bytes}};
  if (cut || stream.truncated) json["cut"] = true;
  return json;
}

// Leaves out what is empty ("", [], a stream that wrote nothing): a
// 1,000-task page is mostly passing tasks with little to say.
void DropEmpty(Json& object) {
  for (auto it = object.begin(); it != object.end();) {
    // (json::empty() is false for every string, "" included.)
    bool empty = it->is_string() ? it->get_ref<const std::string&>().empty()
                                 : it->is_array() && it->empty();
    if (it->is_object() && it->contains("bytes") && (*it)["bytes"] == 0) empty = true;
    it = empty ? object.erase(it) : std::next(it);
  }
}

Json TaskJson(const TaskRecord& t) {
  const ExecResult& r = t.result;
  const Durations& d = r.durations;
  bool passed = Passed(r);
  // A GoogleTest case that skipped itself exited 0: a skip, not a pass.
  const std::string verdict = TestVerdictOf(t);
  std::size_t tail = passed ? kReportPassedTailBytes : kReportTailBytes;
  std::int64_t phases = d.queue_ms + d.create_ms + d.upload_ms + d.exec_ms + d.download_ms;
  Json failures = Json::array();
  if (!passed) {
    failures = FailureMessages(r.stdout_stream.text);
    for (auto& f : FailureMessages(r.stderr_stream.text)) {
      if (failures.size() < kMaxFailuresPerTask) failures.push_back(std::move(f));
    }
  }
  Json json = {
          {"run", t.run_id},
          {"id", t.task_id},
          {"name", t.test_name},
          {"backend", t.backend},
          {"image", t.image},
          {"sandbox", t.sandbox_id},
          {"isolation", t.isolation},
          {"command", QuoteForDisplay(t.argv)},
          {"verdict", verdict},
          {"exit", ExitText(r)},
          {"reason", verdict == "skipped" ? SkipMessageOf(t) : Reason(r)},
          {"started", t.started_at},
          // queue, create, upload, run, download, other (the rest of total).
          {"phases",
           {d.queue_ms, d.create_ms, d.upload_ms, d.exec_ms, d.download_ms,
            std::max<std::int64_t>(0, d.total_ms - phases)}},
          {"total_ms", d.total_ms},
          {"attempts", t.attempts},
          {"attempt_errors", t.attempt_errors},
          {"fallback", t.fallback_reason},
          {"notes", r.notes},
          {"failures", std::move(failures)},
          {"stdout", StreamJson(r.stdout_stream, tail)},
          {"stderr", StreamJson(r.stderr_stream, tail)}};
  DropEmpty(json);
  return json;
}

Json RunJson(const RunRecord& s) {
  return {{"id", s.run_id},
          {"status", std::string(RunStatusName(s.status))},
          {"backend", s.backend},
          {"host", s.host},
          // Already redacted when recorded (RedactArgv); again, for old records.
          {"command", QuoteForDisplay(RedactArgv(s.command_line))},
          {"started", s.started_at},
          {"finished", s.finished_at},
          {"wall_ms", s.wall_ms},
          {"total", s.total}};
}

// The page around the data. The script renders everything from the JSON in
// <script id="report-data">; with scripting off the <noscript> says so.
constexpr std::string_view kPageHead = R"PAGE(<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sandrun report</title>
<style>
:root { --passed:#2e7d32; --failed:#c62828; --timed_out:#ef6c00; --infra_error:#6a1b9a;
  --cancelled:#757575; --skipped:#9e9d24; --oom:#8d1b1b; --interrupted:#5d4037; --line:#d0d0d0; --muted:#555; }
* { box-sizing: border-box; }
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; padding: 12px 16px 40px; color: #111; background: #fff; max-width: 1400px; }
h1 { font-size: 20px; margin: 4px 0 8px; } h2 { font-size: 16px; margin: 22px 0 8px; border-bottom: 1px solid var(--line); padding-bottom: 3px; }
code, pre, .mono { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, monospace; font-size: 12.5px; }
pre { white-space: pre-wrap; word-break: break-all; background: #f6f6f6; border: 1px solid #e3e3e3; padding: 6px 8px; margin: 4px 0; max-height: 420px; overflow: auto; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 0; }
dl.facts dt { color: var(--muted); } dl.facts dd { margin: 0; overflow-wrap: anywhere; }
.counts { display: flex; flex-wrap: wrap; gap: 6px; margin: 10px 0; padding: 0; list-style: none; }
.counts li { border: 1px solid var(--line); border-radius: 4px; padding: 3px 8px; }
.v { display: inline-block; min-width: 6.5em; font-weight: 600; }
.v::before { content: ""; display: inline-block; width: .7em; height: .7em; margin-right: .35em; border-radius: 2px; background: var(--c, #999); vertical-align: baseline; }
.controls { display: flex; flex-wrap: wrap; gap: 8px 14px; align-items: center; margin: 6px 0; }
.controls label { white-space: nowrap; }
.tablewrap { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 4px 6px; border-bottom: 1px solid #e6e6e6; vertical-align: top; }
th button { font: inherit; font-weight: 600; background: none; border: 0; padding: 0; cursor: pointer; }
td.num, th.num { text-align: right; white-space: nowrap; }
tr.task:hover { background: #f3f7ff; } tr.selected { background: #fff6d6 !important; }
tr.detail td { background: #fafafa; }
.failure { border-left: 3px solid var(--failed); padding-left: 6px; margin: 4px 0; }
.failure .at { font-weight: 600; }
summary { cursor: pointer; }
svg text { font: 11px system-ui, sans-serif; fill: #333; }
svg .bar { cursor: pointer; }
svg .bar.hl rect { stroke: #000; stroke-width: 1.5; }
#tip { position: fixed; pointer-events: none; background: #222; color: #fff; padding: 5px 8px; border-radius: 4px; font-size: 12px; max-width: 360px; display: none; z-index: 2; white-space: pre-line; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 14px; margin: 4px 0; font-size: 12px; }
.swatch { display: inline-block; width: 14px; height: 10px; margin-right: 4px; vertical-align: middle; border: 1px solid #999; }
.muted { color: var(--muted); }
@media (max-width: 700px) { body { padding: 8px; } .hide-narrow { display: none; } }
</style>
</head>
<body>
<h1>sandrun report</h1>
<noscript><p>This page draws its tables and charts with JavaScript; the data is in the page source (script id report-data).</p></noscript>
<main id="report"></main>
<div id="tip" role="tooltip"></div>
<script type="application/json" id="report-data">)PAGE";

constexpr std::string_view kPageTail = R"PAGE(</script>
<script>
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const tasks = data.tasks, runs = data.runs;
  const PHASES = ["queue", "create", "upload", "run", "download", "other"];
  const PHASE_OPACITY = [0, 0.35, 0.55, 1, 0.55, 0.2];
  const VERDICTS = ["passed", "skipped", "failed", "timed_out", "oom", "infra_error", "interrupted", "cancelled"];
  const SVGNS = "http://www.w3.org/2000/svg";
  const root = document.getElementById("report");
  const tip = document.getElementById("tip");

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) {
      if (k === "text") e.textContent = attrs[k]; else e.setAttribute(k, attrs[k]);
    }
    for (const kid of kids) if (kid != null) e.append(kid);
    return e;
  }
  function svg(tag, attrs) {
    const e = document.createElementNS(SVGNS, tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    return e;
  }
  function secs(ms) {
    if (ms < 1000) return ms + " ms";
    const s = ms / 1000;
    if (s < 60) return s.toFixed(s < 10 ? 2 : 1) + " s";
    const m = Math.floor(s / 60);
    return m + " min " + Math.round(s - 60 * m) + " s";
  }
  // Passed or skipped: nothing to look at.
  function ok(t) { return t.verdict === "passed" || t.verdict === "skipped"; }
  function verdict(v) { return el("span", { class: "v", style: "--c: var(--" + v + ", #999)", text: v.replace("_", " ") }); }
  function colour(v) { return getComputedStyle(document.documentElement).getPropertyValue("--" + v).trim() || "#999"; }
  const palette = {}; for (const v of VERDICTS) palette[v] = colour(v);

  // Derived facts: time in the sandbox, start on the run's clock, retries.
  let origin = Infinity;
  // The data is compact (report.cc, CompactTasks): defaults, start offsets,
  // names and delta-coded text are undone here first, in the tasks' order.
  const defaults = data.defaults || {}, t0 = Date.parse(data.t0 || "") || 0, previous = {};
  function undo(field, value, name) {
    if (value !== null && typeof value === "object" && !Array.isArray(value)) return previous[field] = value.raw;
    if (Array.isArray(value)) {
      const p = previous[field] || "";
      value = p.slice(0, value[0]) + value[1] + p.slice(p.length - value[2]);
    }
    previous[field] = value;
    return value.split("\x01").join(name);
  }
  for (const t of tasks) {
    for (const k in defaults) { if (!(k in t)) t[k] = defaults[k]; else if (t[k] === null) delete t[k]; }
    if (t.at !== undefined) t.started = new Date(t0 + t.at).toISOString();
    if (t.total_ms === undefined) t.total_ms = t.phases.reduce((a, b) => a + b, 0);
    if (t.command !== undefined) t.command = undo("command", t.command, t.name);
    for (const k of ["stdout", "stderr"]) if (t[k] && t[k].tail !== undefined) t[k].tail = undo(k, t[k].tail, t.name);
  }
  for (const t of tasks) {
    // Empty fields are left out of the data.
    for (const k of ["attempt_errors", "notes", "failures"]) t[k] = t[k] || [];
    for (const k of ["sandbox", "image", "isolation", "fallback", "reason", "command"]) t[k] = t[k] || "";
    for (const k of ["stdout", "stderr"]) t[k] = t[k] || { tail: "", bytes: 0 };
    t.begin = Date.parse(t.started) || 0;
    t.ms = Math.max(0, t.total_ms - t.phases[0]);
    origin = Math.min(origin, t.begin - t.phases[0]);
    t.key = t.run + "/" + t.id;
  }
  for (const r of runs) { const s = Date.parse(r.started); if (s) origin = Math.min(origin, s); }
  if (!isFinite(origin)) origin = 0;
  const byName = {};
  for (const t of tasks) (byName[t.name] = byName[t.name] || []).push(t);
  for (const name in byName) byName[name].sort((a, b) => a.begin - b.begin);
  const latest = tasks.filter(t => byName[t.name][byName[t.name].length - 1] === t);
  const flaky = Object.keys(byName).filter(n => {
    const l = byName[n];
    return l.length > 1 && l[l.length - 1].verdict === "passed" && l.some(t => t.verdict !== "passed");
  });
  const rerun = Object.keys(byName).filter(n => byName[n].length > 1);
  const retried = tasks.filter(t => t.attempts > 1);

  // --- The run ---
  const facts = el("dl", { class: "facts" });
  function fact(k, v) { if (v !== "" && v != null) facts.append(el("dt", { text: k }), el("dd", {}, v)); }
  const uniq = a => [...new Set(a.filter(x => x))];
  fact(runs.length > 1 ? "runs" : "run", runs.map(r => r.id + " (" + r.status + ")").join(", ") ||
       uniq(tasks.map(t => t.run)).join(", ") + " (incomplete: no run summary)");
  fact("backend", uniq(runs.map(r => r.backend).concat(tasks.map(t => t.backend))).join(", "));
  fact("host", uniq(runs.map(r => r.host)).join(", "));
  for (const c of uniq(runs.map(r => r.command))) fact("command", el("code", { text: c }));
  const starts = runs.map(r => r.started).filter(x => x).sort();
  fact("started", starts[0] || (tasks.length ? new Date(origin).toISOString() : ""));
  let end = 0;
  for (const r of runs) end = Math.max(end, Date.parse(r.finished) || 0);
  for (const t of tasks) end = Math.max(end, t.begin + t.ms);
  const wall = runs.length === 1 ? runs[0].wall_ms : Math.max(0, end - origin);
  fact("wall time", secs(wall));
  const counts = {};
  for (const t of latest) counts[t.verdict] = (counts[t.verdict] || 0) + 1;
  const countList = el("ul", { class: "counts", id: "counts" });
  countList.append(el("li", { text: latest.length + " tests" + (tasks.length !== latest.length ? " (" + tasks.length + " executions)" : "") }));
  for (const v of VERDICTS) if (counts[v]) countList.append(el("li", {}, verdict(v), " " + counts[v]));
  root.append(el("section", { id: "run" }, facts, countList));
  const notes = el("ul", { id: "run-notes" });
  if (rerun.length) notes.append(el("li", { text: "run again: " + rerun.join(", ") }));
  if (flaky.length) notes.append(el("li", { text: "flaky (failed, then passed): " + flaky.join(", ") }));
  for (const t of retried) notes.append(el("li", { text: t.name + ": " + t.attempts + " attempts (infrastructure retries): " + t.attempt_errors.join("; ") }));
  for (const f of uniq(tasks.map(t => t.fallback))) notes.append(el("li", { text: "fallback: " + f }));
  if (notes.children.length) root.append(notes);

  // --- Where the time went: every phase summed over the tasks ---
  const sums = PHASES.map((_, i) => tasks.reduce((s, t) => s + t.phases[i], 0));
  const sumAll = sums.reduce((a, b) => a + b, 0) || 1;
  const phaseList = el("p", { id: "phase-totals" });
  phaseList.append("Task time by phase (summed over tasks): ");
  phaseList.append(PHASES.map((p, i) => p + " " + secs(sums[i]) + " (" + Math.round(100 * sums[i] / sumAll) + "%)").join(", "));
  root.append(phaseList);

  // --- Timeline ---
  const tl = el("section", { id: "timeline-section" }, el("h2", { text: "Timeline" }));
  const laneSelect = el("select", { id: "lanes" }, el("option", { value: "slot", text: "worker slot" }), el("option", { value: "sandbox", text: "sandbox" }));
  const sandboxes = uniq(tasks.map(t => t.sandbox));
  if (sandboxes.length && sandboxes.length <= Math.max(4, tasks.length / 2)) laneSelect.value = "sandbox";
  tl.append(el("div", { class: "controls" }, el("label", {}, "one lane per ", laneSelect)));
  const legend = el("div", { class: "legend" });
  for (const v of VERDICTS) if (counts[v] || tasks.some(t => t.verdict === v)) legend.append(el("span", {}, el("span", { class: "swatch", style: "background:" + palette[v] }), v.replace("_", " ")));
  legend.append(el("span", { class: "muted", text: "bar = create | upload | run | download | other (paler = setup); outlined = did not pass; queue time in the tooltip" }));
  tl.append(legend);
  const timelineBox = el("div", { id: "timeline-box", class: "tablewrap" });
  tl.append(timelineBox);
  root.append(tl);

  function lanesFor(mode) {
    // Tasks in start order, each in the first lane free when it starts.
    const groups = {};
    for (const t of [...tasks].sort((a, b) => a.begin - b.begin)) {
      const g = mode === "sandbox" ? (t.sandbox || "(no sandbox)") : "";
      (groups[g] = groups[g] || []).push(t);
    }
    const lanes = [];
    for (const g of Object.keys(groups).sort()) {
      const mine = [];
      for (const t of groups[g]) {
        let lane = mine.find(l => l.free <= t.begin);
        if (!lane) { lane = { label: g ? g + (mine.length ? " #" + (mine.length + 1) : "") : "slot " + (lanes.length + mine.length + 1), free: 0, tasks: [] }; mine.push(lane); }
        lane.tasks.push(t); lane.free = t.begin + t.ms;
      }
      lanes.push(...mine);
    }
    return lanes;
  }
  function describe(t) {
    const p = t.phases;
    return t.name + "\n" + t.verdict.replace("_", " ") + (t.reason ? ": " + t.reason : "") +
      "\nsandbox " + (t.sandbox || "-") + "\nstart +" + secs(Math.max(0, t.begin - origin)) + ", time " + secs(t.ms) +
      "\nqueue " + secs(p[0]) + ", create " + secs(p[1]) + ", upload " + secs(p[2]) + ", run " + secs(p[3]) + ", download " + secs(p[4]) + ", other " + secs(p[5]);
  }
  function showTip(ev, text) { tip.textContent = text; tip.style.display = "block"; tip.style.left = Math.min(ev.clientX + 12, innerWidth - 370) + "px"; tip.style.top = (ev.clientY + 14) + "px"; }
  function hideTip() { tip.style.display = "none"; }
  function drawTimeline() {
    timelineBox.textContent = "";
    if (!tasks.length) { timelineBox.append(el("p", { text: "no tasks" })); return; }
    const lanes = lanesFor(laneSelect.value);
    const width = Math.max(320, timelineBox.clientWidth || 800);
    const labelW = width < 600 ? 70 : 170, laneH = lanes.length > 60 ? 8 : 18, top = 22;
    const span = Math.max(1, end - origin), plotW = width - labelW - 10;
    const x = ms => labelW + plotW * (ms / span);
    const s = svg("svg", { id: "timeline", width: width, height: top + lanes.length * laneH + 6, role: "img", "aria-label": "timeline of " + tasks.length + " tasks in " + lanes.length + " lanes" });
    // Seconds axis: about 8 ticks at round numbers.
    const step = [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600].find(v => span / 1000 / v <= 8) || 7200;
    for (let sec = 0; sec * 1000 <= span; sec += step) {
      const xx = x(sec * 1000);
      s.append(svg("line", { x1: xx, x2: xx, y1: top - 4, y2: top + lanes.length * laneH, stroke: "#e4e4e4" }));
      const label = svg("text", { x: xx, y: top - 8, "text-anchor": "middle" }); label.textContent = (+sec.toFixed(1)) + " s"; s.append(label);
    }
    lanes.forEach((lane, i) => {
      const y = top + i * laneH;
      if (laneH >= 12) { const l = svg("text", { x: 2, y: y + laneH - 5 }); l.textContent = lane.label.length > labelW / 6.5 ? lane.label.slice(0, Math.floor(labelW / 6.5) - 1) + "\u2026" : lane.label; s.append(l); }
      for (const t of lane.tasks) {
        const g = svg("g", { class: "bar " + t.verdict, "data-task": t.key, tabindex: 0 });
        const title = svg("title"); title.textContent = describe(t); g.append(title);
        let at = t.begin - origin;
        const h = laneH - 3, c = palette[t.verdict] || "#999";
        g.append(svg("rect", { x: x(at), y: y + 1, width: Math.max(1, x(at + t.ms) - x(at)), height: h, fill: "#fff", stroke: ok(t) ? "none" : "#000", "stroke-dasharray": t.verdict === "timed_out" ? "3 2" : "none", "stroke-width": 1 }));
        for (let p = 1; p < PHASES.length; ++p) {
          const w = x(at + t.phases[p]) - x(at);
          if (w > 0) g.append(svg("rect", { class: "phase " + PHASES[p], x: x(at), y: y + 1, width: w, height: h, fill: c, "fill-opacity": PHASE_OPACITY[p] }));
          at += t.phases[p];
        }
        g.addEventListener("mousemove", ev => showTip(ev, describe(t)));
        g.addEventListener("mouseleave", hideTip);
        g.addEventListener("click", () => select(t, true));
        g.addEventListener("keydown", ev => { if (ev.key === "Enter") select(t, true); });
        s.append(g);
      }
    });
    timelineBox.append(s);
  }
  laneSelect.addEventListener("change", drawTimeline);

  // --- Histogram of task durations ---
  const hist = el("section", { id: "histogram-section" }, el("h2", { text: "Task durations" }));
  const histBox = el("div", { id: "histogram-box" });
  hist.append(histBox);
  root.append(hist);
  function drawHistogram() {
    histBox.textContent = "";
    if (!tasks.length) return;
    const max = Math.max(1, ...tasks.map(t => t.ms));
    const n = Math.min(30, Math.max(5, Math.ceil(Math.sqrt(tasks.length)) * 2));
    const bins = Array.from({ length: n }, () => ({}));
    for (const t of tasks) { const b = bins[Math.min(n - 1, Math.floor(n * t.ms / max))]; b[t.verdict] = (b[t.verdict] || 0) + 1; }
    const tallest = Math.max(1, ...bins.map(b => Object.values(b).reduce((a, c) => a + c, 0)));
    const width = Math.max(300, histBox.clientWidth || 700), height = 150, left = 34, bottom = 20;
    const bw = (width - left - 8) / n;
    const s = svg("svg", { id: "histogram", width: width, height: height + bottom, role: "img", "aria-label": "histogram of task durations" });
    for (const frac of [0, 0.5, 1]) {
      const yy = height - frac * (height - 10);
      const l = svg("text", { x: left - 4, y: yy + 4, "text-anchor": "end" }); l.textContent = Math.round(frac * tallest); s.append(l);
      s.append(svg("line", { x1: left, x2: width - 8, y1: yy, y2: yy, stroke: "#eee" }));
    }
    bins.forEach((b, i) => {
      let yy = height;
      const from = max * i / n, to = max * (i + 1) / n;
      for (const v of VERDICTS) {
        if (!b[v]) continue;
        const h = b[v] / tallest * (height - 10);
        const r = svg("rect", { x: left + i * bw + 1, y: yy - h, width: Math.max(1, bw - 2), height: h, fill: palette[v] });
        const title = svg("title"); title.textContent = b[v] + " " + v.replace("_", " ") + ", " + secs(Math.round(from)) + " to " + secs(Math.round(to)); r.append(title);
        s.append(r); yy -= h;
      }
    });
    for (const i of [0, Math.floor(n / 2), n]) {
      const l = svg("text", { x: left + i * bw, y: height + 14, "text-anchor": i === 0 ? "start" : i === n ? "end" : "middle" });
      l.textContent = secs(Math.round(max * i / n)); s.append(l);
    }
    histBox.append(s);
  }

  // --- Task table ---
  const tableSection = el("section", { id: "tasks-section" }, el("h2", { text: "Tasks" }));
  const verdictFilter = el("select", { id: "filter-verdict" }, el("option", { value: "", text: "all" }), el("option", { value: "!passed", text: "not passed" }));
  for (const v of VERDICTS) if (tasks.some(t => t.verdict === v)) verdictFilter.append(el("option", { value: v, text: v.replace("_", " ") }));
  const backendFilter = el("select", { id: "filter-backend" }, el("option", { value: "", text: "all" }));
  for (const b of uniq(tasks.map(t => t.backend))) backendFilter.append(el("option", { value: b, text: b }));
  const nameFilter = el("input", { id: "filter-name", type: "search", placeholder: "name contains", size: 18 });
  const shown = el("span", { id: "shown", class: "muted" });
  tableSection.append(el("div", { class: "controls" }, el("label", {}, "verdict ", verdictFilter), el("label", {}, "name ", nameFilter), el("label", {}, "backend ", backendFilter), shown));
  const columns = [
    ["verdict", "Verdict", t => VERDICTS.indexOf(t.verdict)],
    ["name", "Name", t => t.name],
    ["exit", "Exit", t => t.exit, "num"],
    ["time", "Time", t => t.ms, "num"],
    ["sandbox", "Sandbox", t => t.sandbox, "hide-narrow"],
    ["backend", "Backend", t => t.backend, "hide-narrow"],
  ];
  let sortKey = "verdict", sortDir = -1;
  const head = el("tr");
  for (const [key, label, , cls] of columns) {
    const b = el("button", { type: "button", "data-sort": key, text: label });
    b.addEventListener("click", () => { sortDir = sortKey === key ? -sortDir : 1; sortKey = key; drawTable(); });
    head.append(el("th", { class: cls || "", scope: "col" }, b));
  }
  const body = el("tbody");
  tableSection.append(el("div", { class: "tablewrap" }, el("table", { id: "tasks" }, el("thead", {}, head), body)));
  root.append(tableSection);
  const rows = {};

  function streamBlock(name, s) {
    if (!s.tail) return null;
    const label = name + " (" + s.bytes + " bytes" + (s.cut ? ", the last " + s.tail.length + " characters shown; `sandrun results show` has more" : "") + ")";
    return el("details", { class: "stream " + name }, el("summary", { text: label }), el("pre", { text: s.tail }));
  }
  function detailFor(t) {
    const d = el("td", { colspan: columns.length });
    const dl = el("dl", { class: "facts" });
    const add = (k, v) => { if (v !== "" && v != null) dl.append(el("dt", { text: k }), el("dd", {}, v)); };
    add("task", t.id); add("run", t.run); add("reason", t.reason); add("command", el("code", { text: t.command }));
    add("image", t.image); add("isolation", t.isolation);
    add("phases", PHASES.map((p, i) => p + " " + secs(t.phases[i])).join(", "));
    add("started", t.started);
    if (t.attempts > 1) add("attempts", t.attempts + ": " + t.attempt_errors.join("; "));
    add("fallback", t.fallback);
    for (const n of t.notes) add("note", n);
    d.append(dl);
    for (const f of t.failures) d.append(el("div", { class: "failure" }, el("span", { class: "at mono", text: f.at }), el("pre", { text: f.text })));
    d.append(streamBlock("stdout", t.stdout) || "", streamBlock("stderr", t.stderr) || "");
    return el("tr", { class: "detail", "data-detail": t.key }, d);
  }
  function rowFor(t) {
    const summary = t.failures.length ? t.failures[0].at + ": " + t.failures[0].text.split("\n")[0] : t.reason;
    const name = el("td", { class: "name" }, el("span", { class: "mono", text: t.name }));
    if (summary) name.append(el("div", { class: "muted reason", text: summary }));
    const tr = el("tr", { class: "task " + t.verdict, "data-task": t.key, tabindex: 0 },
      el("td", {}, verdict(t.verdict)), name, el("td", { class: "num", text: t.exit }),
      el("td", { class: "num", text: secs(t.ms) }), el("td", { class: "mono hide-narrow", text: t.sandbox || "-" }),
      el("td", { class: "hide-narrow", text: t.backend }));
    tr.addEventListener("click", () => toggle(t));
    tr.addEventListener("keydown", ev => { if (ev.key === "Enter") toggle(t); });
    return tr;
  }
  function toggle(t, open) {
    const row = rows[t.key];
    const next = row.tr.nextSibling;
    const isOpen = next && next.getAttribute && next.getAttribute("data-detail") === t.key;
    if (isOpen && open !== true) next.remove();
    else if (!isOpen) row.tr.after(row.detail || (row.detail = detailFor(t)));
  }
  function select(t, scroll) {
    for (const e of document.querySelectorAll(".selected, .hl")) e.classList.remove("selected", "hl");
    if (!rows[t.key].tr.isConnected) { verdictFilter.value = ""; nameFilter.value = ""; backendFilter.value = ""; drawTable(); }
    rows[t.key].tr.classList.add("selected");
    for (const b of document.querySelectorAll('g.bar[data-task="' + CSS.escape(t.key) + '"]')) b.classList.add("hl");
    toggle(t, true);
    if (scroll) rows[t.key].tr.scrollIntoView({ block: "center" });
  }
  function drawTable() {
    const v = verdictFilter.value, b = backendFilter.value, n = nameFilter.value.toLowerCase();
    const col = columns.find(c => c[0] === sortKey);
    const list = tasks.filter(t => (!v || (v === "!passed" ? !ok(t) : t.verdict === v)) &&
      (!b || t.backend === b) && (!n || t.name.toLowerCase().includes(n)));
    list.sort((p, q) => { const a = col[2](p), c = col[2](q); return (a < c ? -1 : a > c ? 1 : p.name < q.name ? -1 : 1) * sortDir; });
    body.textContent = "";
    for (const t of list) {
      const row = rows[t.key] || (rows[t.key] = { tr: rowFor(t) });
      body.append(row.tr);
      if (!ok(t) && list.length <= 200) toggle(t, true);
    }
    shown.textContent = list.length + " of " + tasks.length + " shown";
    for (const th of head.querySelectorAll("button")) th.textContent = columns.find(c => c[0] === th.dataset.sort)[1] + (th.dataset.sort === sortKey ? (sortDir > 0 ? " \u25B2" : " \u25BC") : "");
  }
  for (const f of [verdictFilter, backendFilter]) f.addEventListener("change", drawTable);
  nameFilter.addEventListener("input", drawTable);

  drawTable();
  drawTimeline();
  drawHistogram();
  let resizing = 0;
  addEventListener("resize", () => { clearTimeout(resizing); resizing = setTimeout(() => { drawTimeline(); drawHistogram(); }, 150); });
  document.body.setAttribute("data-rendered", "true");
})();
</script>
</body>
</html>
)PAGE";

}  // namespace

struct ReportBuilder::Data {
  Json runs = Json::array();
  Json tasks = Json::array();
};

ReportBuilder::ReportBuilder() : data_(std::make_unique<Data>()) {}
ReportBuilder::~ReportBuilder() = default;
ReportBuilder::ReportBuilder(ReportBuilder&&) noexcept = default;
ReportBuilder& ReportBuilder::operator=(ReportBuilder&&) noexcept = default;

void ReportBuilder::AddRun(const RunRecord& run) { data_->runs.push_back(RunJson(run)); }
void ReportBuilder::AddTask(const TaskRecord& task) { data_->tasks.push_back(TaskJson(task)); }

namespace {

bool IsAscii(std::string_view text) {
  return std::all_of(text.begin(), text.end(), [](char c) { return (c & 0x80) == 0; });
}

// Front and back coding: `text` as [length of the prefix it shares with
// `previous`, what differs, length of the shared suffix], when that is
// shorter. ASCII only, so byte lengths are the page's string lengths.
Json Delta(const std::string& previous, const std::string& text) {
  if (!IsAscii(previous) || !IsAscii(text)) return text;
  std::size_t most = std::min(previous.size(), text.size());
  std::size_t front = 0;
  while (front < most && previous[front] == text[front]) ++front;
  std::size_t back = 0;
  while (back < most - front &&
         previous[previous.size() - 1 - back] == text[text.size() - 1 - back]) {
    ++back;
  }
  std::string middle = text.substr(front, text.size() - front - back);
  if (middle.size() + 16 >= text.size()) return text;
  return Json::array({front, middle, back});
}

// `text` with every occurrence of `name` as \x01 (the page puts it back), so
// the commands and logs of a suite's cases differ only where they really do.
// (A text with a \x01 of its own is written as {"raw": text}.)
std::string WithoutName(std::string text, const std::string& name) {
  if (name.size() < 3) return text;
  for (std::size_t at = text.find(name); at != std::string::npos; at = text.find(name, at + 1)) {
    text.replace(at, name.size(), "\x01");
  }
  return text;
}

// Makes the tasks' data small enough to attach for 1,000 tasks (the page
// undoes all of it before drawing, in the same order):
//  - "defaults": the most common value of a few fields; a task leaves out
//    a field with that value, and has null for one it does not have;
//  - "t0" and each task's "at": its start in ms after t0, instead of an
//    RFC 3339 string; no "total_ms" when it is the sum of the "phases";
//  - "command" and the output tails: with the task's name as \x01, and
//    Delta-coded against the previous task that had the field ({"raw": text}
//    for a text with a \x01 of its own).
Json CompactTasks(Json tasks, Json& defaults, std::string& t0) {
  static const char* kDefaulted[] = {"run", "backend", "image", "isolation", "verdict", "exit",
                                     "attempts"};
  for (const char* key : kDefaulted) {
    std::map<std::string, std::pair<int, Json>> counts;
    for (const Json& t : tasks) {
      if (!t.contains(key)) continue;
      auto& entry = counts[t[key].dump()];
      ++entry.first;
      entry.second = t[key];
    }
    int best = 0;
    for (const auto& [dumped, entry] : counts) {
      if (entry.first > best) {
        best = entry.first;
        defaults[key] = entry.second;
      }
    }
    if (best < 2) {
      defaults.erase(key);
      continue;
    }
    // A task without the field says so with null (the page then drops it).
    for (Json& t : tasks) {
      if (!t.contains(key)) t[key] = nullptr;
      else if (t[key] == defaults[key]) t.erase(key);
    }
  }
  for (const Json& t : tasks) {
    if (t.contains("started") && t["started"].is_string()) {
      const std::string& started = t["started"].get_ref<const std::string&>();
      if (t0.empty() || started < t0) t0 = started;
    }
  }
  const auto t0_ms = ParseRfc3339Ms(t0);
  std::map<std::string, std::string> previous;  // Field -> last templated value.
  for (Json& t : tasks) {
    if (t0_ms && t.contains("started") && t["started"].is_string()) {
      if (auto at = ParseRfc3339Ms(t["started"].get<std::string>())) {
        t["at"] = *at - *t0_ms;
        t.erase("started");
      }
    }
    // total_ms is the sum of the phases (the last one is the rest) unless
    // the phases overran it.
    if (t.contains("phases") && t.contains("total_ms") && t["phases"].is_array()) {
      std::int64_t sum = 0;
      for (const Json& ms : t["phases"]) sum += ms.is_number_integer() ? ms.get<std::int64_t>() : 0;
      if (t["total_ms"].is_number_integer() && t["total_ms"].get<std::int64_t>() == sum) {
        t.erase("total_ms");
      }
    }
    const std::string name = t.value("name", "");
    auto code = [&](const std::string& field, Json& value) {
      if (!value.is_string()) return;
      std::string text = value.get<std::string>();
      if (text.find('\x01') != std::string::npos) {  // Its own \x01: kept as it is.
        previous[field] = text;
        value = Json{{"raw", std::move(text)}};
        return;
      }
      std::string templated = WithoutName(std::move(text), name);
      value = Delta(previous[field], templated);
      previous[field] = std::move(templated);
    };
    if (t.contains("command")) code("command", t["command"]);
    for (const char* stream : {"stdout", "stderr"}) {
      if (t.contains(stream) && t[stream].contains("tail")) code(stream, t[stream]["tail"]);
    }
  }
  return tasks;
}

}  // namespace

std::string ReportBuilder::Html() const {
  Json defaults = Json::object();
  std::string t0;
  Json tasks = CompactTasks(data_->tasks, defaults, t0);
  Json doc = {{"schema", "sandrun.report/v2"}, {"runs", data_->runs}, {"defaults", defaults},
              {"t0", t0}, {"tasks", std::move(tasks)}};
  // Invalid UTF-8 in output becomes U+FFFD. '<' is written as \u003c so no
  // text in the data can end the <script> element or open a comment.
  std::string json = doc.dump(-1, ' ', false, Json::error_handler_t::replace);
  std::string html(kPageHead);
  html.reserve(kPageHead.size() + json.size() + json.size() / 50 + kPageTail.size());
  for (char c : json) {
    if (c == '<') html += "\\u003c";
    else html += c;
  }
  html += kPageTail;
  return html;
}

ReportFileListener::ReportFileListener(std::filesystem::path path) : path_(std::move(path)) {}

void ReportFileListener::OnTaskEnd(const TaskRecord& record) {
  std::lock_guard<std::mutex> lock(mu_);
  builder_.AddTask(record);
}

void ReportFileListener::OnRunEnd(const RunRecord& record) {
  std::lock_guard<std::mutex> lock(mu_);
  builder_.AddRun(record);
  // Creates no directory: a missing one is caught by CheckWritableFile
  // before the run.
  status_ = WriteFileAtomically(path_, builder_.Html(), 0644);
  if (!status_.ok()) status_ = status_.WithContext("cannot write the report " + path_.string());
}

Status ReportFileListener::status() const {
  std::lock_guard<std::mutex> lock(mu_);
  return status_;
}

}  // namespace sandrun
