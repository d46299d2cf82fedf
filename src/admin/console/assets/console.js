// scangate console: small enhancements only; every page works without this file.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  // Copy buttons: <button data-copy="ID"> copies the text of the element with that id.
  document.querySelectorAll("button[data-copy]").forEach(function (b) {
    b.hidden = false;
    b.addEventListener("click", function () {
      var text = document.getElementById(b.dataset.copy).textContent;
      navigator.clipboard.writeText(text).then(function () { b.textContent = "Copied"; },
        function () { b.textContent = "Select and copy"; });
    });
  });
  // Live filter of the rows on this page as the search box is typed in.
  var q = document.getElementById("q");
  var rows = document.querySelectorAll("tbody tr[data-search]");
  if (q && rows.length) {
    q.addEventListener("input", function () {
      var needle = q.value.toLowerCase();
      rows.forEach(function (r) { r.hidden = needle !== "" && r.dataset.search.indexOf(needle) < 0; });
    });
  }
  // A second chance before destructive actions (the form also needs its checkbox).
  document.querySelectorAll("form[data-confirm]").forEach(function (f) {
    f.addEventListener("submit", function (e) {
      if (!window.confirm(f.dataset.confirm)) { e.preventDefault(); }
    });
  });
});
