// Drag-and-drop onto the upload zone; the file input stays the single source of the upload.
// A file over the upload limit is refused here, before it is sent (Nginx and the apps refuse it too).
(function () {
  const form = document.getElementById("upload-form");
  const zone = document.getElementById("drop-zone");
  const input = document.getElementById("file");
  const text = document.getElementById("drop-text");
  const error = document.getElementById("upload-error");
  if (!form || !zone || !input) return;
  const maxBytes = Number(form.dataset.maxBytes);
  const tooLarge = () => input.files.length > 0 && maxBytes > 0 && input.files[0].size > maxBytes;
  const show = () => {
    if (input.files.length) text.textContent = input.files[0].name;
    const refused = tooLarge();
    error.hidden = !refused;
    if (refused) {
      const size = (input.files[0].size / 2 ** 20).toFixed(1);
      error.textContent = `This file is ${size} MB; the upload limit is ${+(maxBytes / 2 ** 20).toFixed(1)} MB.`;
    }
  };
  input.addEventListener("change", show);
  form.addEventListener("submit", (ev) => { if (tooLarge()) { ev.preventDefault(); show(); } });
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
