// krefaudit report: filtering and sorting of the findings table. Without scripts the
// table is shown whole and unsorted, which is still a complete report.
(function () {
  "use strict";
  var table = document.getElementById("findings");
  if (!table) { return; }
  var form = document.querySelector("form.filters");
  var rows = Array.prototype.slice.call(table.tBodies[0].rows);
  var rule = document.getElementById("f-rule");
  var file = document.getElementById("f-file");
  var text = document.getElementById("f-text");
  var count = document.getElementById("f-count");
  form.hidden = false;

  function apply() {
    var r = rule.value, f = file.value, t = text.value.trim().toLowerCase(), shown = 0;
    rows.forEach(function (row) {
      var ok = (!r || row.dataset.rule === r) && (!f || row.dataset.file === f) &&
        (!t || row.textContent.toLowerCase().indexOf(t) >= 0);
      row.hidden = !ok;
      if (ok) { shown += 1; }
    });
    count.textContent = shown + " of " + rows.length + " shown";
  }
  [rule, file].forEach(function (el) { el.addEventListener("change", apply); });
  text.addEventListener("input", apply);
  form.addEventListener("submit", function (e) { e.preventDefault(); });

  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
    th.addEventListener("click", function () {
      var key = th.dataset.key, asc = !th.classList.contains("asc");
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function (c) {
        c.classList.remove("asc", "desc");
      });
      th.classList.add(asc ? "asc" : "desc");
      rows.sort(function (a, b) {
        var x = a.dataset[key] || "", y = b.dataset[key] || "";
        return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
      });
      rows.forEach(function (row) { table.tBodies[0].appendChild(row); });
    });
  });
  apply();
})();
