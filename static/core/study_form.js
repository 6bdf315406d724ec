// The new-study / edit form: show only the chosen kind's protocol options (and each shared
// option's label and help for that kind), and list only the models that kind may run.
const form = document.getElementById("study-form");
const kindSelect = document.getElementById("id_kind");
const modelSelect = document.getElementById("id_model");

function showKind(kind) {
  for (const el of form.querySelectorAll("[data-kinds]")) {
    if (el.tagName === "OPTION") continue;
    el.hidden = !el.dataset.kinds.split(" ").includes(kind);
  }
  for (const el of form.querySelectorAll("[data-kind]")) el.hidden = el.dataset.kind !== kind;
  if (!modelSelect) return;
  for (const option of modelSelect.options) {
    if (!option.value) continue;  // the empty choice
    const fits = (option.dataset.kinds || "").split(" ").includes(kind);
    option.hidden = !fits;
    option.disabled = !fits && !modelSelect.disabled;
  }
  const chosen = modelSelect.selectedOptions[0];
  if (chosen && chosen.value && chosen.hidden && !modelSelect.disabled) modelSelect.value = "";
}

if (form && kindSelect) {
  kindSelect.addEventListener("change", () => showKind(kindSelect.value));
  showKind(kindSelect.value);
}
