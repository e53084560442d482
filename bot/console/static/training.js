// The trainer pages: "select all" in the inbox, and following background jobs
// (a job's progress page; the inbox's training data check) by polling the
// job's JSON once a second until it finishes.
"use strict";

(function () {
  const POLL_MS = 1000;

  function followJob(jobId, onUpdate) {
    async function poll() {
      let job = null;
      try {
        const response = await fetch("/training/jobs/" + encodeURIComponent(jobId) + ".json", {
          headers: { Accept: "application/json" },
        });
        if (response.redirected) {
          window.location.assign("/login");
          return;
        }
        if (response.ok) job = await response.json();
      } catch (error) {
        job = null; // the console restarting: try again
      }
      if (job) onUpdate(job);
      if (!job || job.state === "running") window.setTimeout(poll, POLL_MS);
    }
    window.setTimeout(poll, POLL_MS);
  }

  function setUpSelectAll() {
    const all = document.getElementById("select-all");
    if (!all) return;
    const boxes = function () {
      return Array.from(document.querySelectorAll('input[type="checkbox"][name="item_ids"]'));
    };
    all.hidden = boxes().length === 0;
    all.addEventListener("change", function () {
      boxes().forEach(function (box) {
        box.checked = all.checked;
      });
    });
    document.addEventListener("change", function (event) {
      if (event.target.name !== "item_ids") return;
      const found = boxes();
      const picked = found.filter(function (box) {
        return box.checked;
      }).length;
      all.checked = picked > 0 && picked === found.length;
      all.indeterminate = picked > 0 && picked < found.length;
    });
  }

  function setUpJobPage() {
    const bar = document.getElementById("job-progress");
    if (!bar || bar.dataset.state !== "running") return;
    const state = document.getElementById("job-state");
    const stage = document.getElementById("job-stage");
    const failure = document.getElementById("job-error");
    const result = document.getElementById("job-result");
    followJob(bar.dataset.jobId, function (job) {
      bar.value = job.progress;
      bar.textContent = Math.round(job.progress * 100) + "%";
      state.textContent = job.state;
      stage.textContent = job.stage;
      if (job.state === "succeeded" && job.model) {
        result.href = "/training/models/" + encodeURIComponent(job.model);
        result.textContent = "See " + job.model + " and its evaluation";
        result.hidden = false;
      } else if (job.state === "succeeded") {
        window.location.reload(); // the page shows what the job found
      } else if (job.state !== "running") {
        failure.textContent = job.error || "The job stopped (" + job.state + ").";
        failure.hidden = false;
      }
    });
  }

  function setUpValidation() {
    const box = document.getElementById("validation");
    if (!box || box.dataset.state !== "running") return;
    followJob(box.dataset.jobId, async function (job) {
      if (job.state === "running") return;
      // The inbox renders the result; take it from a fresh copy.
      const response = await fetch("/training", { headers: { Accept: "text/html" } });
      if (!response.ok) return;
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      const fresh = page.getElementById("validation");
      if (fresh) {
        box.replaceChildren(...Array.from(fresh.childNodes));
        box.dataset.state = fresh.dataset.state || job.state;
      }
    });
  }

  setUpSelectAll();
  setUpJobPage();
  setUpValidation();
})();
