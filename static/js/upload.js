// Drag and drop, previews and a size check for the upload form.
//
// The form posts as plain multipart without this script. The script only keeps the
// file input's FileList in step with what the person chose or dropped, so the server
// receives the same request either way and remains the only place that accepts or
// rejects a file.
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

  function interpolate(template, values) {
    return template.replace(/%\((\w+)\)s/g, function (match, name) {
      return Object.prototype.hasOwnProperty.call(values, name) ? values[name] : match;
    });
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

    item.appendChild(body);
    return item;
  }

  function render() {
    previewUrls.forEach(function (url) {
      URL.revokeObjectURL(url);
    });
    previewUrls = [];
    previews.replaceChildren();
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

  form.addEventListener("submit", function () {
    submit.disabled = true;
    submit.textContent = strings.uploading;
  });

  // A page restored from the back/forward cache keeps the disabled button.
  window.addEventListener("pageshow", function () {
    submit.disabled = false;
    submit.textContent = strings.submit;
  });
})();
