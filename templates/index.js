(function () {
  "use strict";
  /* index.html's one script, inline and allowed by the page's Content-Security-Policy by its hash.
     The table is complete without it; this only sorts, filters and groups the rows already there. */
  var table = document.getElementById("model-table");
  var controls = document.getElementById("controls");
  if (!table || !controls) { return; }
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.querySelectorAll("tr.entry"));
  var text = document.getElementById("filter-text");
  var status = document.getElementById("filter-status");
  var grouping = document.getElementById("group-by");
  var shown = document.getElementById("shown");
  var headings = Array.prototype.slice.call(table.tHead.querySelectorAll("th[data-key]"));
  var buttons = headings.map(function (heading) {
    var button = document.createElement("button");
    button.type = "button";
    button.dataset.key = heading.dataset.key;
    button.dataset.numeric = heading.dataset.numeric;
    button.textContent = heading.firstChild.textContent;
    heading.replaceChild(button, heading.firstChild);
    heading.setAttribute("aria-sort", "none");
    return button;
  });
  var columns = table.tHead.rows[0].cells.length;
  var sort = { key: "", numeric: false, direction: 1 };
  rows.forEach(function (row, index) { row.dataset.order = String(index); });
  controls.hidden = false;

  function matches(row) {
    var query = text.value.trim().toLowerCase();
    if (query && row.dataset.search.indexOf(query) < 0) { return false; }
    var wanted = status.value;
    if (!wanted) { return true; }
    var split = wanted.indexOf(":");
    var field = wanted.slice(0, split), value = wanted.slice(split + 1);
    if (field === "attention") {
      return row.dataset.status !== "ok" || row.dataset.merge === "failed" || row.dataset.merge === "error";
    }
    return row.dataset[field] === value;
  }

  function compare(a, b) {
    var result = 0;
    if (grouping.value) {
      var ga = a.dataset[grouping.value], gb = b.dataset[grouping.value];
      result = ga < gb ? -1 : (ga > gb ? 1 : 0);
    }
    if (!result && sort.key) {
      var va = a.dataset[sort.key] || "", vb = b.dataset[sort.key] || "";
      if (!va || !vb) {
        result = va ? -1 : (vb ? 1 : 0);  /* a line without a value sorts last, either way */
      } else if (sort.numeric) {
        result = sort.direction * (Number(va) - Number(vb));
      } else {
        result = sort.direction * (va < vb ? -1 : (va > vb ? 1 : 0));
      }
    }
    return result || Number(a.dataset.order) - Number(b.dataset.order);
  }

  function count(list, test) { return list.filter(test).length; }

  function apply() {
    Array.prototype.slice.call(body.querySelectorAll("tr.group-row")).forEach(function (row) { row.remove(); });
    var ordered = rows.slice().sort(compare);
    var visible = [];
    var groups = {};
    ordered.forEach(function (row) {
      var keep = matches(row);
      row.hidden = !keep;
      if (keep) {
        visible.push(row);
        var name = grouping.value ? row.dataset[grouping.value] : "";
        groups[name] = (groups[name] || 0) + 1;
      }
      body.appendChild(row);
    });
    if (grouping.value) {
      var seen = {};
      visible.forEach(function (row) {
        var name = row.dataset[grouping.value];
        if (seen[name]) { return; }
        seen[name] = true;
        var head = document.createElement("tr");
        head.className = "group-row";
        var cell = document.createElement("th");
        cell.colSpan = columns;
        cell.scope = "rowgroup";
        cell.textContent = name + " (" + groups[name] + " model" + (groups[name] === 1 ? "" : "s") + ")";
        head.appendChild(cell);
        body.insertBefore(head, row);
      });
    }
    var numbers = {
      "reported": count(visible, function (row) { return row.dataset.status !== "failed"; }),
      "failed": count(visible, function (row) { return row.dataset.status === "failed"; }),
      "mismatch": count(visible, function (row) { return row.dataset.status === "mismatch"; }),
      "merge-passed": count(visible, function (row) { return row.dataset.merge === "passed"; })
    };
    Object.keys(numbers).forEach(function (key) {
      var target = document.querySelector('[data-count="' + key + '"]');
      if (target) { target.textContent = numbers[key].toLocaleString("en-US"); }
    });
    shown.textContent = visible.length === rows.length
      ? "all " + rows.length + " models shown"
      : visible.length + " of " + rows.length + " models shown";
  }

  buttons.forEach(function (button) {
    button.addEventListener("click", function () {
      var key = button.dataset.key;
      sort.direction = sort.key === key ? -sort.direction : 1;
      sort.key = key;
      sort.numeric = button.dataset.numeric === "true";
      buttons.forEach(function (other) {
        other.parentNode.setAttribute("aria-sort", other === button
          ? (sort.direction === 1 ? "ascending" : "descending") : "none");
      });
      apply();
    });
  });
  text.addEventListener("input", apply);
  status.addEventListener("change", apply);
  grouping.addEventListener("change", apply);
  apply();
})();
