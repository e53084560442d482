// The dashboard follows the queue: after each queue change (at most once a
// second) and every 30 s, it reads the page again and swaps in the new
// figures and chart, without reloading.
"use strict";

(function () {
  const metrics = document.getElementById("metrics");
  const chart = document.getElementById("chart-body");
  const status = document.getElementById("live-status");
  let lastRefresh = 0;
  let timer = null;

  async function refresh() {
    timer = null;
    lastRefresh = Date.now();
    const response = await fetch("/dashboard", { headers: { Accept: "text/html" } });
    if (response.redirected) {
      window.location.assign("/login");
      return;
    }
    if (!response.ok) return;
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    const newMetrics = page.getElementById("metrics");
    const newChart = page.getElementById("chart-body");
    if (newMetrics) metrics.replaceChildren(...Array.from(newMetrics.childNodes));
    if (newChart) chart.replaceChildren(...Array.from(newChart.childNodes));
  }

  function soon() {
    if (timer !== null) return;
    const wait = Math.max(0, 1000 - (Date.now() - lastRefresh));
    timer = window.setTimeout(refresh, wait);
  }

  const events = new EventSource("/queue/events");
  events.addEventListener("queue", soon);
  events.addEventListener("open", function () {
    status.textContent = "Live";
  });
  events.addEventListener("error", function () {
    if (events.readyState === EventSource.CLOSED) {
      status.textContent = "Live updates stopped: reload the page.";
      refresh();
    } else {
      status.textContent = "Reconnecting…";
    }
  });
  window.setInterval(soon, 30000);
})();
