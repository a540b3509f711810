// Enhancements on top of pages that work without script: live updates, keyboard shortcuts, the phone menu.

const toggle = document.querySelector(".menu-toggle");
const sidebar = document.getElementById("sidebar");
if (toggle && sidebar) {
  toggle.addEventListener("click", () => {
    const open = sidebar.classList.toggle("open");
    toggle.setAttribute("aria-expanded", String(open));
  });
}

// Live updates: the server says "change" after any client changed this account; the page fetches itself
// again and swaps in what changed (folder counts, the title, the list), keeping the selection.
const content = document.querySelector("main.content");
if (content && window.EventSource) {
  let pending = null;
  const refresh = async () => {
    pending = null;
    const response = await fetch(location.href, { credentials: "same-origin", headers: { "X-Refresh": "1" } });
    if (!response.ok || response.redirected) return;
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
    document.title = fresh.title;
    const folders = fresh.querySelector(".folders");
    if (folders) document.querySelector(".folders").replaceWith(folders);
    const list = document.querySelector(".list-form");
    const freshList = fresh.querySelector(".list-form");
    if (list && freshList) {
      const checked = new Set([...list.querySelectorAll("input.select:checked")].map((box) => box.value));
      freshList.querySelectorAll("input.select").forEach((box) => { box.checked = checked.has(box.value); });
      list.replaceWith(freshList);
    }
  };
  const events = new EventSource("/events");
  events.addEventListener("change", () => {
    if (!pending) pending = setTimeout(refresh, 150); // several changes at once: one fetch
  });
}

// Keyboard shortcuts (Gmail's): j/k move, o or Enter opens, x selects, e archives, # deletes, u back to the
// list, / searches, ? shows this list.
const help = document.getElementById("help");
const rows = () => [...document.querySelectorAll(".message-row")];
let cursor = -1;
const place = (index) => {
  const all = rows();
  if (!all.length) return;
  cursor = Math.max(0, Math.min(all.length - 1, index));
  all.forEach((row, i) => row.classList.toggle("cursor", i === cursor));
  all[cursor].scrollIntoView({ block: "nearest" });
};
const submitAction = (action) => {
  const reader = document.querySelector(".reader-actions");
  const form = reader || document.getElementById("list-form");
  if (!form) return;
  if (!reader) {
    const all = rows();
    const anyChecked = form.querySelector("input.select:checked");
    if (!anyChecked && cursor >= 0 && all[cursor]) all[cursor].querySelector("input.select").checked = true;
  }
  const button = form.querySelector(`button[value="${action}"]`);
  if (button) button.click();
};
document.addEventListener("keydown", (event) => {
  if (event.target.closest("input, textarea, select, [contenteditable]") || event.ctrlKey || event.metaKey || event.altKey) return;
  const all = rows();
  switch (event.key) {
    case "j": place(cursor + 1); break;
    case "k": place(cursor - 1); break;
    case "o": case "Enter": if (all[cursor]) all[cursor].querySelector("a").click(); break;
    case "x": if (all[cursor]) { const box = all[cursor].querySelector("input.select"); box.checked = !box.checked; } break;
    case "e": submitAction("archive"); break;
    case "#": submitAction("delete"); break;
    case "u": { const back = document.querySelector(".reader-bar .back"); if (back) back.click(); break; }
    case "c": location.href = "/compose"; break;
    case "r": { const link = document.querySelector("a.reply"); if (link) link.click(); break; }
    case "a": { const link = document.querySelector("a.reply-all"); if (link) link.click(); break; }
    case "f": { const link = document.querySelector("a.forward"); if (link) link.click(); break; }
    case "?": if (help) help.hidden = !help.hidden; break;
    case "/": { const box = document.querySelector(".search input"); if (box) box.focus(); break; }
    case "Escape": if (help) help.hidden = true; break;
    default: return;
  }
  event.preventDefault();
});
if (help) help.addEventListener("click", (event) => { if (event.target === help) help.hidden = true; });

// Drafts: the message being written is saved to Drafts two seconds after the last keystroke (text fields;
// attachments go with the message when it is sent). The server answers with the draft's new UID, which the
// next save replaces.
const composeForm = document.querySelector(".compose-form");
if (composeForm) {
  // The small editor: formatted text (bold, italic, lists, quotes, links), sent as HTML beside a text part.
  const bar = composeForm.querySelector(".editor-bar");
  const tools = composeForm.querySelector(".editor-tools");
  const editor = composeForm.querySelector(".editor");
  const textarea = composeForm.querySelector("#body");
  const htmlField = composeForm.elements.namedItem("html");
  const formatted = () => composeForm.querySelector("input[name=format]:checked").value === "html";
  const toEditor = () => {
    editor.textContent = "";
    for (const line of textarea.value.split("\n")) {
      const div = document.createElement("div");
      if (line) div.textContent = line; else div.appendChild(document.createElement("br"));
      editor.appendChild(div);
    }
  };
  const fromEditor = () => {
    textarea.value = editor.innerText.replace(/\n$/, "");
    htmlField.value = editor.innerHTML;
  };
  if (bar && editor) {
    bar.hidden = false;
    composeForm.querySelectorAll("input[name=format]").forEach((radio) => radio.addEventListener("change", () => {
      if (formatted()) { toEditor(); textarea.hidden = true; editor.hidden = false; tools.hidden = false; editor.focus(); }
      else { fromEditor(); htmlField.value = ""; editor.hidden = true; tools.hidden = true; textarea.hidden = false; }
    }));
    tools.querySelectorAll("button[data-command]").forEach((button) => button.addEventListener("click", () => {
      let value = button.dataset.value || null;
      if (button.dataset.command === "createLink") {
        value = window.prompt(button.dataset.prompt, "https://");
        if (!value) return;
      }
      editor.focus();
      document.execCommand(button.dataset.command, false, value);
      fromEditor();
    }));
    editor.addEventListener("input", () => { fromEditor(); composeForm.dispatchEvent(new Event("input")); });
    composeForm.addEventListener("submit", () => { if (formatted()) fromEditor(); else htmlField.value = ""; });
  }
  // Attachments: dropped on the form or picked; the message goes with XMLHttpRequest so that a progress bar
  // shows the upload (the form still works as a plain form without script).
  const fileInput = composeForm.querySelector("#attachments");
  const zone = composeForm.querySelector(".drop-zone");
  const chosen = composeForm.querySelector(".chosen-files");
  const progress = composeForm.querySelector(".upload-progress");
  const listFiles = () => {
    chosen.textContent = "";
    for (const file of fileInput.files) {
      const item = document.createElement("li");
      item.textContent = `${file.name} (${Math.max(1, Math.round(file.size / 1024))} KB)`;
      chosen.appendChild(item);
    }
  };
  if (fileInput && zone) {
    composeForm.querySelector(".drop-hint").hidden = false;
    fileInput.addEventListener("change", listFiles);
    composeForm.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
    composeForm.addEventListener("dragleave", () => zone.classList.remove("over"));
    composeForm.addEventListener("drop", (event) => {
      event.preventDefault();
      zone.classList.remove("over");
      const all = new DataTransfer();
      for (const file of fileInput.files) all.items.add(file);
      for (const file of event.dataTransfer.files) all.items.add(file);
      fileInput.files = all.files;
      listFiles();
    });
    composeForm.addEventListener("submit", (event) => {
      if (!fileInput.files.length || !window.XMLHttpRequest) return; // small messages: the plain form
      event.preventDefault();
      if (formatted()) fromEditor();
      const request = new XMLHttpRequest();
      request.open("POST", composeForm.action);
      progress.hidden = false;
      request.upload.addEventListener("progress", (e) => { if (e.lengthComputable) progress.value = (100 * e.loaded) / e.total; });
      request.addEventListener("load", () => {
        if (request.responseURL && !request.responseURL.endsWith("/compose")) { location.href = request.responseURL; return; }
        document.open(); document.write(request.responseText); document.close();
      });
      request.send(new FormData(composeForm));
    });
  }
  const status = composeForm.querySelector(".draft-status");
  let timer = null;
  let saving = false;
  const save = async () => {
    if (saving) { timer = setTimeout(save, 1000); return; }
    saving = true;
    const body = new URLSearchParams();
    for (const name of ["csrf", "to", "cc", "bcc", "subject", "body", "in_reply_to", "references", "draft_uid", "identity"]) {
      const field = composeForm.elements.namedItem(name);
      if (field) body.append(name, field.value);
    }
    try {
      const response = await fetch("/drafts", { method: "POST", body, credentials: "same-origin" });
      if (!response.ok) throw new Error(String(response.status));
      const saved = await response.json();
      composeForm.elements.namedItem("draft_uid").value = String(saved.uid);
      if (status) status.textContent = status.dataset.saved;
    } catch (error) {
      if (status) status.textContent = status.dataset.failed;
    } finally {
      saving = false;
    }
  };
  composeForm.addEventListener("input", (event) => {
    if (event.target.type === "file") return;
    clearTimeout(timer);
    timer = setTimeout(save, 2000);
  });
  composeForm.addEventListener("submit", () => clearTimeout(timer));
}

// The filter form: conditions added and removed, the inputs a condition does not use hidden, the operators
// its field has offered, an action ticked when its field is filled in.
const filterForm = document.getElementById("filter-form");
if (filterForm) {
  const list = filterForm.querySelector("#conditions");
  const template = filterForm.querySelector("#condition-template");
  const addButton = filterForm.querySelector("#add-condition");
  const isEmpty = (row) => !row.querySelector(".cond-value").value.trim() && !row.querySelector(".cond-header").value.trim();
  const kindOf = (field) => (field === "size" ? "size" : field === "header" ? "header" : "text");
  const update = (row) => {
    const field = row.querySelector(".cond-field").value;
    const kind = kindOf(field);
    const op = row.querySelector(".cond-op");
    [...op.options].forEach((option) => {
      const fits = option.dataset.kind === kind || (option.dataset.kind === "text" && kind === "header");
      option.hidden = !fits;
      option.disabled = !fits;
    });
    if (op.selectedOptions[0] && op.selectedOptions[0].disabled) op.value = [...op.options].find((o) => !o.disabled).value;
    const header = row.querySelector(".cond-header");
    header.hidden = field !== "header";
    row.classList.toggle("with-header", field === "header");
    const value = row.querySelector(".cond-value");
    value.classList.toggle("unused", op.value.endsWith("exists"));
    value.placeholder = kind === "size" ? "5 MB" : "";
  };
  const wire = (row) => {
    row.querySelector(".cond-field").addEventListener("change", () => update(row));
    row.querySelector(".cond-op").addEventListener("change", () => update(row));
    const remove = row.querySelector(".remove-condition");
    remove.hidden = false;
    remove.addEventListener("click", () => {
      if (list.querySelectorAll(".condition-row").length > 1) row.remove();
      else row.querySelectorAll(".cond-value, .cond-header").forEach((input) => { input.value = ""; });
    });
    update(row);
  };
  const rows = [...list.querySelectorAll(".condition-row")];
  // the page ends the list with an empty row for a new condition; with script, the button adds one instead
  if (rows.length > 1 && isEmpty(rows[rows.length - 1])) rows.pop().remove();
  rows.forEach(wire);
  addButton.hidden = false;
  addButton.addEventListener("click", () => {
    const row = template.content.firstElementChild.cloneNode(true);
    list.append(row);
    wire(row);
    row.querySelector(".cond-field").focus();
  });
  filterForm.querySelectorAll(".action-row").forEach((row) => {
    const box = row.querySelector("input[type=checkbox]");
    row.querySelectorAll("select, input:not([type=checkbox]), textarea").forEach((input) => {
      const tick = () => { if (input.value.trim()) box.checked = true; };
      input.addEventListener("input", tick);
      input.addEventListener("change", tick);
    });
  });
}

// The script editor: line numbers that follow the text, and the line of an error (or the one asked for
// with ?line=) selected.
const scriptArea = document.getElementById("script");
if (scriptArea) {
  const gutter = document.querySelector(".script-gutter");
  const errorLine = Number(scriptArea.dataset.errorLine || 0);
  const renumber = () => {
    const count = scriptArea.value.split("\n").length;
    scriptArea.rows = Math.max(count + 1, 14);
    if (gutter.children.length === count) return;
    gutter.replaceChildren(...Array.from({ length: count }, (_, i) => {
      const number = document.createElement("span");
      number.textContent = String(i + 1);
      if (i + 1 === errorLine) number.className = "at-fault";
      return [number, document.createTextNode("\n")];
    }).flat());
  };
  scriptArea.addEventListener("input", renumber);
  renumber();
  const line = errorLine || Number(scriptArea.dataset.focusLine || 0);
  if (line) {
    const lines = scriptArea.value.split("\n");
    const start = lines.slice(0, line - 1).reduce((sum, text) => sum + text.length + 1, 0);
    const length = (lines[line - 1] || "").length;
    const at = errorLine ? start + Math.min(Number(scriptArea.dataset.errorColumn || 1) - 1, length) : start;
    scriptArea.focus({ preventScroll: true });
    scriptArea.setSelectionRange(at, errorLine ? at : start + length);
    const editor = scriptArea.closest(".script-editor");
    editor.scrollTop = Math.max(0, (line - 4) * parseFloat(getComputedStyle(scriptArea).lineHeight));
  }
}

// Buttons that ask first (deleting a filter): the question is the button's data-confirm.
document.addEventListener("submit", (event) => {
  const button = event.submitter;
  if (button && button.dataset.confirm && !window.confirm(button.dataset.confirm)) event.preventDefault();
});
