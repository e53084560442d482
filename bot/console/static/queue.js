// The live queue: re-renders the waiting list whenever the server says the
// queue changed (Server-Sent Events), and ticks the waiting times each second.
"use strict";

(function () {
  const body = document.getElementById("queue-body");
  const status = document.getElementById("live-status");
  const csrfToken = document.querySelector('meta[name="csrf-token"]').content;
  let snapshotAt = Date.now();
  let fetching = false;
  let again = false;

  function formatSeconds(total) {
    const seconds = Math.max(0, Math.floor(total));
    const minutes = Math.floor(seconds / 60);
    const rest = String(seconds % 60).padStart(2, "0");
    return minutes >= 60
      ? Math.floor(minutes / 60) + ":" + String(minutes % 60).padStart(2, "0") + ":" + rest
      : minutes + ":" + rest;
  }

  function cell(text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  function takeForm(item) {
    const form = document.createElement("form");
    form.method = "post";
    form.action = "/queue/" + encodeURIComponent(item.id) + "/take";
    const token = document.createElement("input");
    token.type = "hidden";
    token.name = "csrf_token";
    token.value = csrfToken;
    const button = document.createElement("button");
    button.type = "submit";
    button.textContent = "Take";
    button.setAttribute("aria-label", "Take call " + item.position + " (" + item.reason + ")");
    form.append(token, button);
    return form;
  }

  function render(items) {
    const elapsed = (Date.now() - snapshotAt) / 1000;
    const rows = items.map(function (item) {
      const tr = document.createElement("tr");
      tr.dataset.itemId = item.id;
      tr.append(cell(String(item.position), "num"), cell(item.kind), cell(item.reason));
      const priority = cell("");
      const pill = document.createElement("span");
      pill.className = "pill" + (item.priority_high ? " priority-high" : "");
      pill.textContent = item.priority_label;
      priority.append(pill);
      const waiting = cell(formatSeconds(item.waited_seconds + elapsed), "num waiting");
      waiting.dataset.waited = String(item.waited_seconds);
      tr.append(priority, cell(item.skill || "any"), waiting);
      tr.append(cell(item.summary, "summary"), cell(item.caller_number || "—"));
      const action = document.createElement("td");
      action.append(takeForm(item));
      tr.append(action);
      return tr;
    });
    if (rows.length === 0) {
      const tr = document.createElement("tr");
      const td = cell("No one is waiting.", "empty");
      td.colSpan = 9;
      tr.append(td);
      rows.push(tr);
    }
    body.replaceChildren.apply(body, rows);
    document.getElementById("waiting-count").textContent = String(items.length);
  }

  async function refresh() {
    if (fetching) {
      again = true;
      return;
    }
    fetching = true;
    try {
      const response = await fetch("/queue/snapshot", { headers: { Accept: "application/json" } });
      if (response.redirected || response.status === 401) {
        window.location.assign("/login");
        return;
      }
      if (response.ok) {
        const snapshot = await response.json();
        // The server shares one list between pages: its waiting times may be
        // a moment old already.
        snapshotAt = Date.now() - (Number(snapshot.age_seconds) || 0) * 1000;
        render(snapshot.items);
      }
    } finally {
      fetching = false;
      if (again) {
        again = false;
        refresh();
      }
    }
  }

  function tick() {
    const elapsed = (Date.now() - snapshotAt) / 1000;
    body.querySelectorAll("td.waiting").forEach(function (td) {
      td.textContent = formatSeconds(Number(td.dataset.waited) + elapsed);
    });
  }

  const events = new EventSource("/queue/events");
  events.addEventListener("queue", refresh);
  events.addEventListener("open", function () {
    status.textContent = "Live";
    refresh();
  });
  events.addEventListener("error", function () {
    if (events.readyState === EventSource.CLOSED) {
      // The server refused the stream; the snapshot goes to the login page
      // if the session ran out.
      status.textContent = "Live updates stopped: reload the page.";
      refresh();
    } else {
      status.textContent = "Reconnecting…";
    }
  });
  window.setInterval(tick, 1000);
})();
