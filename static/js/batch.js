// Live captions, copy to clipboard and inline corrections on the batch page.
//
// The server renders every card (already translated) and returns them as JSON with
// the batch's progress. This script swaps a card when its status changes, reads out
// each caption as it arrives, and stops polling once every photo is finished.
(function () {
  "use strict";

  var batch = document.querySelector("[data-batch]");
  if (!batch) {
    return;
  }
  var strings = JSON.parse(document.getElementById("batch-strings").textContent);
  var progressBar = batch.querySelector("[data-batch-progress]");
  var summary = batch.querySelector("[data-batch-summary]");
  var announcer = document.querySelector("[data-batch-announcer]");

  var intervalMs = 1500;
  // Back off while requests fail, so a restarting server does not get a burst.
  var maxIntervalMs = 15000;
  var delayMs = intervalMs;
  var copyResetMs = 2500;

  function csrfToken(form) {
    return form.querySelector("input[name=csrfmiddlewaretoken]").value;
  }

  function announce(text) {
    if (text) {
      announcer.textContent = text;
    }
  }

  function card(jobId) {
    return document.querySelector('[data-job-card="' + jobId + '"]');
  }

  // Enables the copy button of each card; without this script the button stays hidden.
  function enhance(root) {
    root.querySelectorAll("[data-copy]").forEach(function (button) {
      button.hidden = false;
    });
  }

  function replaceCard(job) {
    var element = card(job.id);
    if (!element) {
      return;
    }
    element.innerHTML = job.html;
    element.dataset.status = job.status;
    enhance(element);
  }

  function applyStatus(data) {
    progressBar.max = data.total;
    progressBar.value = data.done;
    progressBar.textContent = data.summary;
    summary.textContent = data.summary;
    data.jobs.forEach(function (job) {
      var element = card(job.id);
      if (element && element.dataset.status !== job.status) {
        replaceCard(job);
        announce(job.announcement);
      }
    });
    batch.dataset.finished = data.finished ? "true" : "false";
    if (data.finished) {
      announce(strings.finished);
    }
  }

  function poll() {
    fetch(batch.dataset.statusUrl, { headers: { Accept: "application/json" }, cache: "no-store" })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.json();
      })
      .then(function (data) {
        applyStatus(data);
        delayMs = intervalMs;
        if (!data.finished) {
          window.setTimeout(poll, delayMs);
        }
      })
      .catch(function () {
        summary.textContent = strings.offline;
        delayMs = Math.min(delayMs * 2, maxIntervalMs);
        window.setTimeout(poll, delayMs);
      });
  }

  // The Clipboard API needs a secure context; elsewhere a hidden text area and
  // execCommand do the copy.
  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    return new Promise(function (resolve, reject) {
      var area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.className = "visually-hidden";
      document.body.appendChild(area);
      area.select();
      var copied = document.execCommand("copy");
      document.body.removeChild(area);
      if (copied) {
        resolve();
      } else {
        reject(new Error("copy"));
      }
    });
  }

  function onCopy(button) {
    var status = button.parentElement.querySelector("[data-copy-status]");
    copyText(button.dataset.copyText)
      .then(function () {
        status.textContent = strings.copied;
        button.classList.add("is-copied");
      })
      .catch(function () {
        status.textContent = strings.copyFailed;
      })
      .then(function () {
        window.setTimeout(function () {
          status.textContent = "";
          button.classList.remove("is-copied");
        }, copyResetMs);
      });
  }

  function onCorrect(form) {
    var element = form.closest("[data-job-card]");
    var button = form.querySelector("button[type=submit]");
    button.disabled = true;
    fetch(form.action, {
      method: "POST",
      body: new FormData(form),
      headers: { "X-CSRFToken": csrfToken(form), Accept: "application/json" },
      credentials: "same-origin",
    })
      .then(function (response) {
        return response.json().then(function (data) {
          if (!response.ok) {
            throw new Error(data.error ? data.error.message : strings.saveFailed);
          }
          return data;
        });
      })
      .then(function (job) {
        replaceCard(job);
        announce(strings.saved);
        // The saved caption now has focus, so keyboard users land on the result.
        var caption = element.querySelector("[data-caption]");
        if (caption) {
          caption.tabIndex = -1;
          caption.focus();
        }
      })
      .catch(function (error) {
        button.disabled = false;
        announce(error.message || strings.saveFailed);
        var hint = form.querySelector(".hint");
        hint.textContent = error.message || strings.saveFailed;
        hint.classList.add("field-errors");
      });
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (button) {
      onCopy(button);
    }
  });

  document.addEventListener("submit", function (event) {
    var form = event.target.closest("[data-correction-form]");
    if (form && form.closest("[data-job-card]")) {
      event.preventDefault();
      onCorrect(form);
    }
  });

  enhance(document);
  if (batch.dataset.finished !== "true") {
    window.setTimeout(poll, intervalMs);
  }
})();
