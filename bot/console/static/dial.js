// Dialling a callback task: asks a bot with phone lines to ring the customer,
// then follows the call until it is answered or not reached.
"use strict";

(function () {
  const panel = document.getElementById("dial");
  if (!panel) return;
  const url = panel.dataset.dial;
  const button = document.getElementById("dial-now");
  const status = document.getElementById("dial-status");
  const csrfMeta = document.querySelector('meta[name="csrf-token"]');
  const csrfToken = csrfMeta ? csrfMeta.content : "";
  const settled = [
    "answered", "no_answer", "busy", "rejected", "failed", "voicemail", "outside_hours", "unserved",
  ];

  function follow(requestId) {
    const timer = setInterval(async function () {
      const response = await fetch(url + "/" + requestId, { credentials: "same-origin" });
      if (!response.ok) return;
      const state = await response.json();
      status.textContent = state.message;
      if (settled.indexOf(state.state) >= 0) {
        clearInterval(timer);
        button.disabled = state.state === "answered";
      }
    }, 1000);
  }

  button.addEventListener("click", async function () {
    button.disabled = true;
    status.textContent = "Asking for a phone line…";
    const body = new FormData();
    body.append("csrf_token", csrfToken);
    const response = await fetch(url, { method: "POST", body: body, credentials: "same-origin" });
    const reply = await response.json();
    status.textContent = reply.message;
    if (!response.ok || settled.indexOf(reply.state) >= 0) {
      button.disabled = reply.state === "answered";
      return;
    }
    follow(reply.request_id);
  });
})();
