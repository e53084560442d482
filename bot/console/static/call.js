// The call page: appends the caller's new turns as the bot's call store
// records them (Server-Sent Events), so the agent reads along live; each
// caller line gets the form that flags it as misunderstood.
"use strict";

(function () {
  const list = document.getElementById("live-transcript");
  const empty = document.getElementById("live-empty");
  const streamUrl = list.dataset.stream;
  const status = document.getElementById("live-status");
  const flagBase = list.dataset.flagBase;
  const csrfMeta = document.querySelector('meta[name="csrf-token"]');
  const csrfToken = csrfMeta ? csrfMeta.content : "";

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

  // The same form the page renders for the caller lines it starts with.
  function flagControl(turn) {
    if (turn.flagged) {
      const mark = document.createElement("span");
      mark.className = "flagged";
      mark.textContent = "Flagged: the bot misunderstood this";
      return mark;
    }
    const form = document.createElement("form");
    form.method = "post";
    form.action = flagBase + turn.turn_index + "/flag";
    form.className = "flag-form";
    const token = document.createElement("input");
    token.type = "hidden";
    token.name = "csrf_token";
    token.value = csrfToken;
    const note = document.createElement("input");
    note.type = "text";
    note.name = "note";
    note.maxLength = 500;
    note.placeholder = "What they meant (optional)";
    note.setAttribute("aria-label", "What the caller meant (optional)");
    const button = document.createElement("button");
    button.type = "submit";
    button.textContent = "The bot misunderstood this";
    form.append(token, note, button);
    return form;
  }

  function addTurn(turn) {
    if (list.querySelector('[data-turn="' + turn.turn_index + '"]')) return;
    const group = document.createElement("li");
    group.dataset.turn = String(turn.turn_index);
    const inner = document.createElement("ol");
    inner.className = "transcript";
    const time = formatCallTime(turn.t_ms);
    if (turn.caller) {
      const said = line("Caller", time, turn.caller);
      said.append(flagControl(turn));
      inner.append(said);
    }
    if (turn.agent) inner.append(line("Agent", time, turn.agent));
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
