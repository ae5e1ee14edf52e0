// Drag-and-drop onto the upload zone; the file input stays the single source of the upload.
(function () {
  const zone = document.getElementById("drop-zone");
  const input = document.getElementById("file");
  const text = document.getElementById("drop-text");
  if (!zone || !input) return;
  const show = () => { if (input.files.length) text.textContent = input.files[0].name; };
  input.addEventListener("change", show);
  ["dragenter", "dragover"].forEach((e) => zone.addEventListener(e, (ev) => {
    ev.preventDefault(); zone.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((e) => zone.addEventListener(e, (ev) => {
    ev.preventDefault(); zone.classList.remove("over");
  }));
  zone.addEventListener("drop", (ev) => {
    if (ev.dataTransfer.files.length) { input.files = ev.dataTransfer.files; show(); }
  });
})();
