// The call page: appends the caller's new turns as the bot's call store
// records them (Server-Sent Events), so the agent reads along live.
"use strict";

(function () {
  const list = document.getElementById("live-transcript");
  const empty = document.getElementById("live-empty");
  const streamUrl = list.dataset.stream;
  const status = document.getElementById("live-status");

  function formatCallTime(ms) {
    const seconds = Math.max(0, Math.floor(ms / 1000));
    return Math.floor(seconds / 60) + ":" + String(seconds % 60).padStart(2, "0");
  }

  function line(speaker, time, text) {
    const li = document.createElement("li");
    const when = document.createElement("span");
    when.className = "time";
    when.textContent = time;
    const who = document.createElement("span");
    who.className = "speaker";
    who.textContent = speaker + ":";
    li.append(when, " ", who, " ", text);
    return li;
  }

  function addTurn(turn) {
    if (list.querySelector('[data-turn="' + turn.turn_index + '"]')) return;
    const group = document.createElement("li");
    group.dataset.turn = String(turn.turn_index);
    const inner = document.createElement("ol");
    inner.className = "transcript";
    const time = formatCallTime(turn.t_ms);
    if (turn.caller) inner.append(line("Caller", time, turn.caller));
    turn.bot.forEach(function (text) {
      inner.append(line("Bot", time, text));
    });
    group.append(inner);
    list.append(group);
    if (empty) empty.hidden = true;
    list.scrollTop = list.scrollHeight;
  }

  const events = new EventSource(streamUrl);
  events.addEventListener("turn", function (event) {
    addTurn(JSON.parse(event.data));
  });
  events.addEventListener("open", function () {
    status.textContent = "Live";
  });
  events.addEventListener("error", function () {
    if (events.readyState !== EventSource.CLOSED) {
      status.textContent = "Reconnecting…";
      return;
    }
    status.textContent = "Live updates stopped: reload the page.";
    // The server refused the stream: if the session ran out, go to the login page.
    fetch(window.location.href).then(function (response) {
      if (response.redirected) window.location.assign("/login");
    });
  });
})();
