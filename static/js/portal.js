/* Billable portal: small progressive enhancements; every page works without it. */
(function () {
  "use strict";
  // Move focus to the main region after an htmx swap of the whole page body,
  // so keyboard and screen-reader users land on the new content.
  document.addEventListener("htmx:afterSettle", function (event) {
    var target = event.detail && event.detail.target;
    if (target && target.id === "main") {
      target.focus({ preventScroll: true });
    }
  });
  // Buttons with data-confirm ask before a state change (e.g. reject, cancel).
  document.addEventListener("click", function (event) {
    var el = event.target.closest("[data-confirm]");
    if (el && !window.confirm(el.getAttribute("data-confirm"))) {
      event.preventDefault();
      event.stopPropagation();
    }
  }, true);
  // data-print buttons print the page; data-autosubmit selects submit their form on change
  // (handlers here, not in onclick/onchange attributes, which the Content-Security-Policy forbids).
  document.addEventListener("click", function (event) {
    if (event.target.closest("[data-print]")) {
      window.print();
    }
  });
  document.addEventListener("change", function (event) {
    var el = event.target.closest("[data-autosubmit]");
    if (el && el.form) {
      el.form.submit();
    }
  });
})();
