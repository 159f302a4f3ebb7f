/* Timesheet: day, row and week totals as you type, and the 24 h/day limit (the server checks again). */
(function () {
  "use strict";
  var form = document.getElementById("timesheet-form");
  if (!form) { return; }
  var MAX = 24;

  function parse(text) {
    text = (text || "").trim().replace(",", ".");
    if (text === "") { return 0; }
    if (!/^\d{1,2}(\.\d{1,2})?$/.test(text) && !/^\.\d{1,2}$/.test(text)) { return NaN; }
    var value = parseFloat(text);
    return value >= 0 && value <= MAX ? value : NaN;
  }
  function fmt(n) { return (Math.round(n * 100) / 100).toString(); }
  function dayLabel(iso) {
    var d = new Date(iso + "T00:00:00");
    return d.toLocaleDateString(undefined, { weekday: "short", day: "numeric", month: "short" });
  }

  function recalc() {
    var days = {}, bad = [], week = 0;
    form.querySelectorAll("tbody tr").forEach(function (tr) {
      var rowTotal = 0;
      tr.querySelectorAll("input.ap-hours").forEach(function (input) {
        var v = parse(input.value);
        var invalid = isNaN(v);
        input.setAttribute("aria-invalid", invalid ? "true" : "false");
        if (invalid) { bad.push(input.getAttribute("aria-label")); v = 0; }
        days[input.dataset.day] = (days[input.dataset.day] || 0) + v;
        rowTotal += v;
      });
      tr.querySelectorAll(".ap-locked").forEach(function (span) {
        var v = parseFloat(span.dataset.hours) || 0;
        days[span.dataset.day] = (days[span.dataset.day] || 0) + v;
        rowTotal += v;
      });
      var cell = tr.querySelector("[data-row-total]");
      if (cell) { cell.textContent = fmt(rowTotal); }
      week += rowTotal;
    });
    var over = [];
    form.querySelectorAll("[data-day-total]").forEach(function (td) {
      var day = td.dataset.dayTotal, total = days[day] || 0;
      td.textContent = fmt(total);
      var isOver = total > MAX;
      td.classList.toggle("is-over", isOver);
      form.querySelectorAll('input.ap-hours[data-day="' + day + '"]').forEach(function (input) {
        input.classList.toggle("is-over", isOver);
      });
      if (isOver) { over.push(dayLabel(day) + ": " + fmt(total) + " h"); }
    });
    var weekCell = document.getElementById("ts-week-total");
    if (weekCell) { weekCell.textContent = fmt(week); }
    var top = document.getElementById("ts-week-total-top");
    if (top) { top.textContent = fmt(week); }

    var message = [];
    if (over.length) { message.push("More than 24 h on " + over.join(", ") + ". Nobody books more than 24 h a day."); }
    if (bad.length) { message.push("Enter hours from 0 to 24 with at most two decimals (" + bad.length + " cell" + (bad.length > 1 ? "s" : "") + ")."); }
    var box = document.getElementById("ts-limit");
    box.textContent = message.join(" ");
    box.hidden = message.length === 0;
    form.querySelectorAll("[data-ts-submit]").forEach(function (button) { button.disabled = message.length > 0; });
  }

  form.addEventListener("input", function (event) {
    if (event.target.matches("input.ap-hours")) { recalc(); }
  });
  recalc();
})();
