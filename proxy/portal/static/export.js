// The export page's optional progress line: while the bundle downloads, ask the portal
// how many items are written. The page works without it (evidence.py rule 2). Its URL
// starts with the portal's path prefix, from <body data-base> (web.py rule 9).
"use strict";
(function () {
  var base = document.body.dataset.base || "";
  var form = document.getElementById("export-form");
  var shown = document.getElementById("export-progress");
  if (!form || !shown || !window.fetch) { return; }
  form.addEventListener("submit", function () {
    var token = form.elements.progress.value;
    var asked = 0;
    shown.textContent = "Preparing the bundle…";
    var timer = window.setInterval(function () {
      asked += 1;
      fetch(base + "/export/progress/" + token, {credentials: "same-origin", cache: "no-store"})
        .then(function (answer) { return answer.ok ? answer.json() : null; })
        .then(function (state) {
          if (!state) { if (asked > 20) { window.clearInterval(timer); } return; }
          if (state.failed) {
            shown.textContent = "The export stopped before it was complete. Try again.";
            window.clearInterval(timer);
          } else if (state.finished) {
            shown.textContent = "Done: " + state.done + " of " + state.total + " items.";
            window.clearInterval(timer);
          } else {
            shown.textContent = "Writing items: " + state.done + " of " + state.total + "…";
          }
        })
        .catch(function () { window.clearInterval(timer); });
    }, 500);
  });
})();
