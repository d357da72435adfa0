// The console's small enhancements: every page works without them.
"use strict";

const labels = (() => {
  const block = document.getElementById("labels");
  return block ? JSON.parse(block.textContent) : { states: {}, day: "d", hm: "%(hours)d h %(minutes)d min", m: "%(minutes)d min" };
})();

function two(n) {
  return String(n).padStart(2, "0");
}

// A duration as the server writes it: 03:04:05, or 2 d 03:04:05.
function duration(seconds) {
  const total = Math.max(Math.floor(seconds), 0);
  const days = Math.floor(total / 86400);
  const rest = total % 86400;
  const clock = `${two(Math.floor(rest / 3600))}:${two(Math.floor((rest % 3600) / 60))}:${two(rest % 60)}`;
  return days ? `${days} ${labels.day} ${clock}` : clock;
}

// Minutes as the server writes them (time left, or running for): 25 min, 2 h 5 min.
function minutesLeft(seconds) {
  const total = Math.max(Math.round(seconds / 60), 0);
  const fill = (pattern) => pattern.replace("%(hours)d", Math.floor(total / 60)).replace("%(minutes)d", total % 60);
  return total >= 60 ? fill(labels.hm) : fill(labels.m);
}

function tick() {
  const now = Date.now();
  document.querySelectorAll("[data-since]").forEach((el) => {
    el.textContent = duration((now - Date.parse(el.dataset.since)) / 1000);
  });
  document.querySelectorAll("[data-minutes-until]").forEach((el) => {
    el.textContent = minutesLeft((Date.parse(el.dataset.minutesUntil) - now) / 1000);
  });
  document.querySelectorAll("[data-minutes-since]").forEach((el) => {
    el.textContent = minutesLeft((now - Date.parse(el.dataset.minutesSince)) / 1000);
  });
}

function confirmForms() {
  document.querySelectorAll("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  });
}

// The API's events speak English; a page in another language shows an event's words by reloading, since the
// server renders them translated (a change of state reloads or moves on anyway).
const ENGLISH = document.documentElement.lang.startsWith("en");
let reloading = null;

function reloadSoon() {
  clearTimeout(reloading);
  reloading = setTimeout(() => window.location.reload(), 400);
}

// Show a session's new state and latest message in its row or page.
function showEvent(holder, event) {
  const label = holder.querySelector("[data-state-label]");
  if (label) {
    label.textContent = labels.states[event.state] || event.state;
    label.className = `state state-${event.state}`;
  }
  const message = holder.querySelector("[data-message]");
  if (message) message.textContent = event.message;
}

// Dashboard: one stream of all my sessions' events; a change of state reloads the page for its new controls.
function liveDashboard(section) {
  const source = new EventSource("/api/v1/sessions/events");
  let reload = null;
  const onEvent = (raw) => {
    const event = JSON.parse(raw.data);
    if (!ENGLISH && event.message) return reloadSoon();
    const row = document.querySelector(`tr[data-session="${CSS.escape(event.session_id)}"]`);
    if (row) showEvent(row, event);
    if (!row || row.dataset.state !== event.state) {
      clearTimeout(reload);
      reload = setTimeout(() => window.location.reload(), 400);
    }
  };
  ["transition", "warning", "extended"].forEach((kind) => source.addEventListener(kind, onEvent));
  section.dataset.live = "on";
}

// A session's page: its events as they happen; it opens the session once it runs.
const ACTIVE = ["pending", "starting", "running", "stopping"];

function liveSession(page) {
  if (!ACTIVE.includes(page.dataset.state)) return;
  const id = page.dataset.session;
  const list = page.querySelector("[data-events]");
  const source = new EventSource(`/api/v1/sessions/${encodeURIComponent(id)}/events?after=${page.dataset.after}`);
  const onEvent = (raw) => {
    const event = JSON.parse(raw.data);
    if (!ENGLISH && event.message && event.state === page.dataset.state) return reloadSoon();
    const item = document.createElement("li");
    const when = document.createElement("time");
    when.textContent = new Date(event.at).toLocaleString();
    item.append(when, " ", event.message || labels.states[event.state] || event.state);
    list.append(item);
    showEvent(page, event);
    if (event.state === page.dataset.state) return;
    page.dataset.state = event.state;
    if (event.state === "running" && page.dataset.open) {
      window.location.assign(page.dataset.open);
    } else if (event.kind === "transition") {
      window.location.reload();
    }
  };
  ["transition", "warning", "extended"].forEach((kind) => source.addEventListener(kind, onEvent));
  source.addEventListener("error", () => {
    if (!ACTIVE.includes(page.dataset.state)) source.close();
  });
}

const JOB_ACTIVE = ["pending", "running", "suspended", "completing"];

// A batch job's page: its events as they happen; a change of state reloads it for its new facts and controls.
function liveJob(page) {
  const names = JSON.parse(page.dataset.stateNames);
  const source = new EventSource(`/api/v1/jobs/${encodeURIComponent(page.dataset.job)}/events?after=${page.dataset.after}`);
  const onEvent = (raw) => {
    const event = JSON.parse(raw.data);
    if (!ENGLISH && event.message && event.state === page.dataset.state) return reloadSoon();
    const item = document.createElement("li");
    const when = document.createElement("time");
    when.textContent = new Date(event.at).toLocaleString();
    const state = document.createElement("strong");
    state.textContent = names[event.state] || event.state;
    item.append(when, " ", state, " ", event.message);
    page.querySelector("[data-events]").append(item);
    if (event.state !== page.dataset.state) {
      page.dataset.state = event.state;
      source.close();
      setTimeout(() => window.location.reload(), 400);
    }
  };
  page.dataset.states.split(" ").forEach((state) => source.addEventListener(state, onEvent));
  page.dataset.live = "on";
}

// Launch form: the program fields only for the kinds that need them.
function launchForm(form) {
  const kind = form.querySelector("[data-kind]");
  const sync = () => {
    form.querySelectorAll("[data-for-kind]").forEach((part) => {
      part.hidden = part.dataset.forKind !== kind.value;
    });
  };
  kind.addEventListener("change", sync);
  sync();
}

document.addEventListener("DOMContentLoaded", () => {
  tick();
  setInterval(tick, 1000);
  confirmForms();
  const dashboard = document.querySelector("[data-live-sessions]");
  if (dashboard && window.EventSource) liveDashboard(dashboard);
  const page = document.querySelector("[data-session-page]");
  if (page && window.EventSource) liveSession(page);
  const job = document.querySelector("[data-job-page]");
  if (job && window.EventSource && JOB_ACTIVE.includes(job.dataset.state)) liveJob(job);
  const form = document.querySelector("[data-launch-form]");
  if (form) launchForm(form);
});

// A copy button: puts the text of the element it names on the clipboard and says so.
function copyButtons() {
  document.querySelectorAll("button[data-copy]").forEach((button) => {
    button.addEventListener("click", async () => {
      const source = document.getElementById(button.dataset.copy);
      if (!source || !navigator.clipboard) return;
      await navigator.clipboard.writeText(source.textContent.trim());
      button.textContent = button.dataset.copied;
    });
  });
}

document.addEventListener("DOMContentLoaded", copyButtons);

// Phones show each table row as a card: every cell gets its column's name, which the stylesheet shows above it.
function labelCells() {
  document.querySelectorAll("table").forEach((table) => {
    const names = Array.from(table.querySelectorAll("thead th"), (th) => th.textContent.trim());
    table.querySelectorAll("tbody tr").forEach((row) => {
      Array.from(row.children).forEach((cell, index) => {
        if (names[index] && !cell.dataset.label) cell.dataset.label = names[index];
      });
    });
  });
}

document.addEventListener("DOMContentLoaded", labelCells);
