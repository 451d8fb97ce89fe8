// Broadcast admin panel: the little script the pages need (no framework, no CDN).
// - live progress over server-sent events (broadcast page, dashboard and broadcast list);
// - the live audience count of the filter builder;
// - confirmation of dangerous forms (data-confirm).
"use strict";

function setText(root, selector, value) {
  root.querySelectorAll(selector).forEach(function (el) { el.textContent = value; });
}

function formatRate(rate) {
  return rate ? rate.toFixed(1) + " /s" : "–";
}

function formatEta(seconds, open, status) {
  if (!open || status !== "running") { return "–"; }
  if (seconds === null || seconds === undefined) { return "estimating…"; }
  var s = Math.round(seconds);
  if (s < 60) { return s + " s"; }
  if (s < 3600) { return Math.floor(s / 60) + " min " + (s % 60) + " s"; }
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
}

var FINAL = ["completed", "cancelled", "failed"];

// The broadcast page: one stream for this broadcast.
function watchBroadcast(section) {
  var initial = section.dataset.status;
  if (FINAL.indexOf(initial) >= 0 || initial === "draft") { return; }
  var source = new EventSource(section.dataset.progressEvents);
  source.addEventListener("progress", function (event) {
    var p = JSON.parse(event.data);
    section.querySelectorAll("[data-p=percent]").forEach(function (el) { el.value = p.percent; });
    setText(section, "[data-p=percent-text]", p.percent);
    ["done", "total", "sent", "failed", "skipped", "open"].forEach(function (k) {
      setText(section, "[data-p=" + k + "]", p[k]);
    });
    setText(section, "[data-p=rate]", formatRate(p.rate));
    setText(section, "[data-p=eta]", formatEta(p.eta_seconds, p.open, p.status));
    setText(document, "[data-testid=status]", p.status);
    if (p.status !== initial) {
      // A new status changes the actions and the statistics: show the fresh page.
      source.close();
      window.location.replace(window.location.pathname);
    }
  });
}

// Tables of broadcasts: one stream for every broadcast that is still active.
function watchTable(table) {
  var source = new EventSource(table.dataset.liveEvents);
  source.addEventListener("progress", function (event) {
    var p = JSON.parse(event.data);
    var row = table.querySelector("tr[data-broadcast='" + p.broadcast_id + "']");
    if (!row) { return; }
    row.querySelectorAll("[data-field=percent]").forEach(function (el) { el.value = p.percent; });
    setText(row, "[data-field=percent-text]", p.percent + " %");
    setText(row, "[data-field=counts]", p.sent + " / " + p.failed + " / " + p.skipped);
    row.querySelectorAll("[data-field=status]").forEach(function (el) {
      el.textContent = p.status;
      el.className = "badge s-" + p.status;
    });
  });
}

// The filter builder: recount the audience whenever the form changes.
function watchAudienceForm(form) {
  var box = document.querySelector(".audience-count");
  var pending = null;
  var serial = 0;
  function recount() {
    var params = new URLSearchParams();
    new FormData(form).forEach(function (value, key) {
      if (key !== "csrf" && key !== "name" && key !== "scheduled_at") { params.append(key, value); }
    });
    var mine = ++serial;
    box.classList.add("loading");
    fetch(form.dataset.countUrl + "?" + params.toString(), { headers: { "Accept": "application/json" }, credentials: "same-origin" })
      .then(function (response) { return response.json().then(function (body) { return { ok: response.ok, body: body }; }); })
      .then(function (result) {
        if (mine !== serial) { return; }
        box.classList.remove("loading");
        var error = box.querySelector("[data-count=error]");
        if (!result.ok) {
          error.textContent = result.body.error ? result.body.error.message : "cannot count the audience";
          error.hidden = false;
          return;
        }
        error.hidden = true;
        ["users", "describe"].forEach(function (k) {
          setText(box, "[data-count=" + k + "]", result.body[k]);
        });
        // One line per channel of the chosen policy, built from text only.
        var list = box.querySelector("[data-count=channels]");
        list.replaceChildren();
        result.body.channels.forEach(function (c) {
          var item = document.createElement("li");
          var n = document.createElement("span");
          n.dataset.count = "messages-" + c.channel;
          n.textContent = String(c.messages);
          item.append(n, " " + c.label);
          list.append(item);
        });
        box.dataset.counted = String(mine);
      })
      .catch(function () { box.classList.remove("loading"); });
  }
  form.addEventListener("change", function () {
    if (pending) { clearTimeout(pending); }
    pending = setTimeout(recount, 150);
  });
  recount();
}

// The template editor: render the form, unsaved, for the sample recipient as it changes.
// The medium above a Telegram message: a photo shown, any other file named.
function showMedium(pane, medium) {
  var photo = pane.querySelector("[data-live=photo]");
  var file = pane.querySelector("[data-live=file]");
  photo.hidden = !(medium && medium.photo);
  file.hidden = !(medium && !medium.photo);
  if (medium && medium.photo) {
    if (photo.getAttribute("src") !== medium.url) { photo.src = medium.url; }
    photo.alt = medium.name;
  } else if (medium) {
    file.textContent = "\uD83D\uDCCE " + medium.name + " (" + medium.kind + ")";
  }
}

// Rows of URL buttons under a Telegram message, as links (their URLs are http, https or tg,
// checked by the server).
function showButtons(box, rows) {
  box.replaceChildren();
  rows.forEach(function (row) {
    var line = document.createElement("div");
    line.className = "tg-row";
    row.forEach(function (b) {
      var a = document.createElement("a");
      a.className = "tg-button";
      a.href = b.url;
      a.rel = "noopener noreferrer";
      a.target = "_blank";
      a.textContent = b.text;
      line.appendChild(a);
    });
    box.appendChild(line);
  });
  box.hidden = rows.length === 0;
}

function watchTemplateForm(form, pane) {
  var pending = null;
  var serial = 0;
  function show(el, on) { el.hidden = !on; }
  function render() {
    var mine = ++serial;
    fetch(pane.dataset.livePreview, {
      method: "POST",
      body: new URLSearchParams(new FormData(form)),
      headers: { "Accept": "application/json" },
      credentials: "same-origin"
    })
      .then(function (response) { return response.json(); })
      .then(function (body) {
        if (mine !== serial) { return; }
        var problems = pane.querySelector("[data-live=problems]");
        problems.textContent = (body.problems || []).join("\n");
        show(problems, (body.problems || []).length > 0);
        if (body.recipient) { setText(pane, "[data-live=recipient]", "for " + body.recipient); }
        var tg = pane.querySelector("[data-live=telegram]");
        show(tg, !!body.telegram);
        if (body.telegram) {
          var bubble = pane.querySelector("[data-testid=live-telegram]");
          if (body.telegram.error) {
            bubble.textContent = body.telegram.error;
          } else if (body.telegram.html !== null && body.telegram.html !== undefined) {
            // Telegram's tags only, made safe by the server (the same as the preview page).
            bubble.innerHTML = body.telegram.html;
          } else {
            bubble.textContent = body.telegram.text;
          }
          setText(pane, "[data-live=length]", body.telegram.error ? "" : body.telegram.length + " characters of " + body.telegram.limit);
          showMedium(pane, body.telegram.error ? null : body.telegram.medium);
          showButtons(pane.querySelector("[data-live=buttons]"), body.telegram.error ? [] : body.telegram.buttons || []);
        }
        var mail = pane.querySelector("[data-live=email]");
        show(mail, !!body.email);
        if (body.email) {
          setText(pane, "[data-testid=live-email-subject]", body.email.error || body.email.subject);
          var frame = pane.querySelector("[data-testid=live-email-frame]");
          show(frame, !!body.email.frame);
          if (body.email.frame) { frame.src = body.email.frame; }
          var text = pane.querySelector("[data-live=email-text]");
          text.textContent = body.email.text || "";
          show(text, !!body.email.text);
        }
        pane.dataset.rendered = String(mine);
      })
      .catch(function () {});
  }
  form.addEventListener("input", function () {
    if (pending) { clearTimeout(pending); }
    pending = setTimeout(render, 300);
  });
  render();
}

// Multi-choice pickers: a search field narrows the choices (ignoring case and accents) and the
// count says how many are chosen. Without script they are plain checkboxes.
function fold(text) {
  return text.normalize("NFD").replace(/[\u0300-\u036f]/g, "").toLowerCase();
}

function enhancePicker(picker) {
  var search = picker.querySelector(".picker-search");
  var labels = Array.prototype.slice.call(picker.querySelectorAll(".picker-options label"));
  var count = picker.querySelector("[data-picker-count]");
  function counted() {
    var n = picker.querySelectorAll(".picker-options input:checked").length;
    count.textContent = n === 0 ? "any" : n + " chosen";
  }
  search.hidden = false;
  search.addEventListener("input", function () {
    var needle = fold(search.value.trim());
    labels.forEach(function (label) {
      var checked = label.querySelector("input").checked;
      label.hidden = needle !== "" && !checked && fold(label.textContent).indexOf(needle) < 0;
    });
  });
  // Typing in the search field is not a change of the filter.
  search.addEventListener("change", function (event) { event.stopPropagation(); });
  picker.addEventListener("change", counted);
  counted();
}

document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("[data-picker]").forEach(enhancePicker);
  var editor = document.querySelector("#template-form");
  var live = document.querySelector("[data-live-preview]");
  if (editor && live) { watchTemplateForm(editor, live); }
  var progress = document.querySelector("[data-progress-events]");
  if (progress) { watchBroadcast(progress); }
  document.querySelectorAll("[data-live-events]").forEach(watchTable);
  var form = document.querySelector("form[data-count-url]");
  if (form) { watchAudienceForm(form); }
  document.querySelectorAll("form[data-confirm]").forEach(function (f) {
    f.addEventListener("submit", function (event) {
      if (!window.confirm(f.dataset.confirm)) { event.preventDefault(); }
    });
  });
});
