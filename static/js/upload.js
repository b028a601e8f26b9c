// Drag and drop, previews, a size check and per-file uploads for the upload form.
//
// The form posts as plain multipart without this script. With it, the script creates
// a batch and sends each file in its own request, so every file shows its own
// progress and its own result, and a rejected file never holds up the others. The
// server remains the only place that accepts or rejects a file.
(function () {
  "use strict";

  var form = document.querySelector("[data-upload-form]");
  if (!form) {
    return;
  }
  var input = form.querySelector("input[type=file]");
  var dropzone = form.querySelector("[data-dropzone]");
  var previews = form.querySelector("[data-previews]");
  var summary = form.querySelector("[data-selection-summary]");
  var submit = form.querySelector("[data-submit]");
  var strings = JSON.parse(document.getElementById("upload-strings").textContent);

  // Browsers without a DataTransfer constructor cannot assign dropped files to the
  // input, so they keep the plain picker.
  var canAssignFiles = typeof DataTransfer === "function";
  var selected = [];
  var previewUrls = [];
  // Per-file progress needs XMLHttpRequest's upload events and FormData.
  var canUploadEach = canAssignFiles && typeof FormData === "function" && "upload" in new XMLHttpRequest();
  // Requests in flight at once: enough to keep the connection busy without
  // queueing many large bodies behind each other.
  var parallelUploads = 3;
  var outcome = form.querySelector("[data-upload-outcome]");
  var rows = [];
  var uploading = false;

  function interpolate(template, values) {
    // The templates are Python format strings, so "%%" stands for a percent sign.
    return template
      .replace(/%\((\w+)\)s/g, function (match, name) {
        return Object.prototype.hasOwnProperty.call(values, name) ? values[name] : match;
      })
      .replace(/%%/g, "%");
  }

  function formatBytes(bytes) {
    var units = strings.units;
    var value = bytes;
    var index = 0;
    while (value >= 1024 && index < units.length - 1) {
      value /= 1024;
      index += 1;
    }
    var digits = index === 0 ? 0 : 1;
    return interpolate(strings.size, { value: value.toFixed(digits), unit: units[index] });
  }

  function fileKey(file) {
    return [file.name, file.size, file.lastModified].join("/");
  }

  function syncInput() {
    if (!canAssignFiles) {
      return;
    }
    var transfer = new DataTransfer();
    selected.forEach(function (file) {
      transfer.items.add(file);
    });
    input.files = transfer.files;
  }

  function removeFile(index) {
    selected.splice(index, 1);
    syncInput();
    render();
    choose.focus();
  }

  function renderPreview(file, index) {
    var item = document.createElement("li");
    item.className = "preview";

    // An object URL shows the photo without reading it into memory. Files the
    // browser cannot draw (TIFF in most browsers) fall back to an empty frame.
    var image = document.createElement("img");
    var url = URL.createObjectURL(file);
    previewUrls.push(url);
    image.src = url;
    image.alt = interpolate(strings.previewAlt, { name: file.name });
    image.addEventListener("error", function () {
      image.removeAttribute("src");
    });
    item.appendChild(image);

    var body = document.createElement("div");
    body.className = "preview-body";

    var name = document.createElement("span");
    name.className = "preview-name";
    name.textContent = file.name;
    name.title = file.name;
    body.appendChild(name);

    var size = document.createElement("span");
    size.className = "preview-size";
    size.textContent = formatBytes(file.size);
    body.appendChild(size);

    // The server repeats every check; this one only saves the upload time of a
    // file that is certain to be rejected.
    var warning = null;
    if (file.size === 0) {
      warning = strings.empty;
    } else if (file.size > strings.maxBytes) {
      warning = interpolate(strings.tooLarge, { limit: formatBytes(strings.maxBytes) });
    }
    if (warning) {
      item.classList.add("has-warning");
      var note = document.createElement("span");
      note.className = "preview-warning";
      note.textContent = warning;
      body.appendChild(note);
    }

    if (canAssignFiles) {
      var remove = document.createElement("button");
      remove.type = "button";
      remove.className = "button-link";
      remove.textContent = strings.remove;
      remove.setAttribute("aria-label", interpolate(strings.removeLabel, { name: file.name }));
      remove.addEventListener("click", function () {
        removeFile(index);
      });
      body.appendChild(remove);
    }

    var progress = document.createElement("progress");
    progress.max = 100;
    progress.value = 0;
    progress.hidden = true;
    progress.setAttribute("aria-label", interpolate(strings.progressLabel, { name: file.name }));
    body.appendChild(progress);

    var state = document.createElement("span");
    state.className = "preview-state";
    body.appendChild(state);

    rows[index] = { item: item, progress: progress, state: state, body: body };
    item.appendChild(body);
    return item;
  }

  function render() {
    previewUrls.forEach(function (url) {
      URL.revokeObjectURL(url);
    });
    previewUrls = [];
    previews.replaceChildren();
    rows = [];
    outcome.replaceChildren();
    selected.forEach(function (file, index) {
      previews.appendChild(renderPreview(file, index));
    });
    summary.textContent = selected.length
      ? interpolate(strings.selected, { count: String(selected.length) })
      : "";
  }

  function addFiles(files) {
    var known = {};
    selected.forEach(function (file) {
      known[fileKey(file)] = true;
    });
    Array.prototype.forEach.call(files, function (file) {
      if (!known[fileKey(file)]) {
        selected.push(file);
        known[fileKey(file)] = true;
      }
    });
    syncInput();
    render();
  }

  input.addEventListener("change", function () {
    if (canAssignFiles) {
      // A new pick from the dialog adds to the earlier choice instead of replacing it.
      addFiles(input.files);
    } else {
      selected = Array.prototype.slice.call(input.files);
      render();
    }
  });

  // With the script running, a styled button replaces the native file input, whose
  // "Choose Files" text follows the browser's language rather than the page's.
  var choose = form.querySelector("[data-choose]");
  choose.hidden = false;
  input.classList.add("visually-hidden");
  input.tabIndex = -1;
  choose.addEventListener("click", function () {
    input.click();
  });

  if (canAssignFiles) {
    form.querySelector("[data-drop-hint]").hidden = false;

    ["dragenter", "dragover"].forEach(function (type) {
      dropzone.addEventListener(type, function (event) {
        event.preventDefault();
        dropzone.classList.add("is-dragover");
      });
    });
    ["dragleave", "drop"].forEach(function (type) {
      dropzone.addEventListener(type, function (event) {
        event.preventDefault();
        dropzone.classList.remove("is-dragover");
      });
    });
    dropzone.addEventListener("drop", function (event) {
      if (event.dataTransfer && event.dataTransfer.files.length) {
        addFiles(event.dataTransfer.files);
      }
    });
  }

  function csrfToken() {
    return form.querySelector("input[name=csrfmiddlewaretoken]").value;
  }

  function optionFields() {
    var options = {};
    form.querySelectorAll(".advanced input").forEach(function (field) {
      if (field.value !== "") {
        options[field.name] = field.value;
      }
    });
    return options;
  }

  function setRowState(row, kind, text) {
    row.item.classList.remove("is-uploading", "is-done", "is-error");
    row.item.classList.add(kind);
    row.state.textContent = text;
  }

  function createBatch() {
    return fetch(form.dataset.batchCreateUrl, {
      method: "POST",
      headers: { "X-CSRFToken": csrfToken(), Accept: "application/json" },
      credentials: "same-origin",
    }).then(function (response) {
      return response.json().then(function (data) {
        if (!response.ok) {
          throw new Error(data.error ? data.error.message : strings.failed);
        }
        return data;
      });
    });
  }

  // Resolves with {job} or {error} and never rejects, so one file cannot stop the rest.
  function uploadFile(batch, file, row, options) {
    return new Promise(function (resolve) {
      var data = new FormData();
      data.append("image", file, file.name);
      Object.keys(options).forEach(function (name) {
        data.append(name, options[name]);
      });
      var request = new XMLHttpRequest();
      request.open("POST", batch.upload_url);
      request.setRequestHeader("X-CSRFToken", csrfToken());
      request.setRequestHeader("Accept", "application/json");
      row.progress.hidden = false;
      setRowState(row, "is-uploading", interpolate(strings.progress, { percent: "0" }));
      request.upload.addEventListener("progress", function (event) {
        if (event.lengthComputable) {
          var percent = Math.round((100 * event.loaded) / event.total);
          row.progress.value = percent;
          setRowState(row, "is-uploading", interpolate(strings.progress, { percent: String(percent) }));
        }
      });
      request.addEventListener("load", function () {
        var body = null;
        try {
          body = JSON.parse(request.responseText);
        } catch (error) {
          body = null;
        }
        if (request.status === 201 && body && body.job) {
          row.progress.value = 100;
          setRowState(row, "is-done", strings.queued);
          var link = document.createElement("a");
          link.href = body.job.url;
          link.textContent = strings.openJob;
          row.body.appendChild(link);
          resolve({ job: body.job });
        } else {
          var message = body && body.error ? body.error.message : strings.failed;
          row.progress.hidden = true;
          setRowState(row, "is-error", message);
          resolve({ error: message });
        }
      });
      ["error", "abort", "timeout"].forEach(function (type) {
        request.addEventListener(type, function () {
          row.progress.hidden = true;
          setRowState(row, "is-error", strings.failed);
          resolve({ error: strings.failed });
        });
      });
      request.send(data);
    });
  }

  function uploadAll(batch, files) {
    var options = optionFields();
    var results = new Array(files.length);
    var next = 0;
    function worker() {
      if (next >= files.length) {
        return Promise.resolve();
      }
      var index = next;
      next += 1;
      return uploadFile(batch, files[index], rows[index], options).then(function (result) {
        results[index] = result;
        return worker();
      });
    }
    var workers = [];
    for (var count = 0; count < Math.min(parallelUploads, files.length); count += 1) {
      workers.push(worker());
    }
    return Promise.all(workers).then(function () {
      return results;
    });
  }

  function showOutcome(batch, results) {
    var created = results.filter(function (result) {
      return result.job;
    });
    if (created.length === results.length) {
      // Everything was accepted: go where the captions will appear.
      window.location.assign(results.length === 1 ? created[0].job.url : batch.url);
      return;
    }
    var text = document.createElement("p");
    text.textContent = interpolate(strings.done, {
      created: String(created.length),
      total: String(results.length),
    });
    outcome.replaceChildren(text);
    if (created.length) {
      var link = document.createElement("a");
      link.className = "button button-primary";
      link.href = batch.url;
      link.textContent = strings.openBatch;
      outcome.appendChild(link);
    }
  }

  function finishUpload() {
    uploading = false;
    submit.disabled = false;
    submit.textContent = strings.submit;
    // The results stay on screen; the next pick starts a new selection.
    selected = [];
    syncInput();
  }

  form.addEventListener("submit", function (event) {
    if (!canUploadEach || !selected.length) {
      submit.disabled = true;
      submit.textContent = strings.uploading;
      return;
    }
    event.preventDefault();
    if (uploading) {
      return;
    }
    if (selected.length > strings.maxFiles) {
      summary.textContent = interpolate(strings.tooMany, {
        count: String(selected.length),
        max: String(strings.maxFiles),
      });
      return;
    }
    uploading = true;
    submit.disabled = true;
    submit.textContent = strings.uploading;
    form.querySelectorAll(".preview .button-link").forEach(function (button) {
      button.hidden = true;
    });
    var files = selected.slice();
    createBatch()
      .then(function (batch) {
        return uploadAll(batch, files).then(function (results) {
          showOutcome(batch, results);
        });
      })
      .catch(function (error) {
        var text = document.createElement("p");
        text.className = "field-errors";
        text.textContent = error.message || strings.failed;
        outcome.replaceChildren(text);
      })
      .then(finishUpload);
  });

  // A page restored from the back/forward cache keeps the disabled button.
  window.addEventListener("pageshow", function () {
    submit.disabled = false;
    submit.textContent = strings.submit;
  });
})();
