// Refresh the job panel until the caption or a failure arrives, without a reload.
//
// The server renders the panel (already translated) and returns it as JSON with the
// job's status, so this script only swaps HTML and stops once the job is finished.
(function () {
  "use strict";

  var panel = document.querySelector("[data-job-panel]");
  if (!panel || panel.dataset.finished === "true") {
    return;
  }
  var body = panel.querySelector("[data-job-panel-body]");
  var image = document.querySelector("[data-job-image]");
  var url = panel.dataset.panelUrl;

  var intervalMs = 1000;
  // Back off while requests fail, so a restarting server does not get a burst.
  var maxIntervalMs = 10000;
  var delayMs = intervalMs;
  var lastStatus = null;

  function schedule() {
    window.setTimeout(poll, delayMs);
  }

  function apply(data) {
    if (data.status !== lastStatus) {
      body.innerHTML = data.html;
      lastStatus = data.status;
    }
    if (image && data.image_alt) {
      image.alt = data.image_alt;
    }
    if (data.title) {
      document.title = data.title;
    }
    panel.dataset.status = data.status;
    panel.dataset.finished = data.finished ? "true" : "false";
  }

  function poll() {
    fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.json();
      })
      .then(function (data) {
        apply(data);
        delayMs = intervalMs;
        if (!data.finished) {
          schedule();
        }
      })
      .catch(function () {
        delayMs = Math.min(delayMs * 2, maxIntervalMs);
        schedule();
      });
  }

  schedule();
})();
